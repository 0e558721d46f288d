//! Crash-safe file writes shared by the identity store and the spool.
//!
//! Every file the collector keeps is written the same way: to a temporary file in the same
//! directory, flushed to disk, renamed over the final name, and then the directory itself is
//! flushed, so that after a crash or power loss a reader sees either the old file or the
//! complete new one, never a torn write.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read a file the collector writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// Readable by the owner only (mode 0600 on Unix). Used for the private key.
    OwnerOnly,
    /// The process default (umask on Unix; inherited ACL on Windows).
    Default,
}

/// The temporary name used while `path` is being written (same directory, so the rename is
/// atomic; a leading dot so that directory scans can skip it).
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Whether a directory entry is a leftover temporary file from [`write_atomic`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `bytes` to `path` atomically and durably (tmp file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8], access: FileAccess) -> io::Result<()> {
    let tmp = temp_path_for(path);
    // A leftover from an earlier crash must go first: `create_new` below is what guarantees
    // the file is created with our mode, never reused with whatever mode it had.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = write_new_file(&tmp, bytes, access).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = result {
        // Best effort: do not leave a half-written temporary behind (e.g. on a full disk).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn write_new_file(path: &Path, bytes: &[u8], access: FileAccess) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if access == FileAccess::OwnerOnly {
            // The mode is applied by open(2) itself, so the file is never readable by others,
            // not even for the instant between creation and a later chmod.
            options.mode(0o600);
        }
    }
    // On Windows there is no mode: a private file is protected by the ACL of the state
    // directory it lives in (the installer restricts it to SYSTEM and Administrators).
    #[cfg(not(unix))]
    let _ = access;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Flushes a directory's entries (new names, renames, removals) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    // Windows cannot open a directory as a plain file; NTFS journals metadata changes such as
    // renames, which is the durability we rely on there.
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Creates `dir` and its parents; on Unix a newly created directory is private to the owner
/// (0700), because the state directory holds the collector's private key.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Reads a whole file, treating "not found" as `None`.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one", FileAccess::Default).unwrap();
        write_atomic(&path, b"two", FileAccess::Default).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn stale_temp_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(temp_path_for(&path), b"garbage from a crash").unwrap();
        write_atomic(&path, b"fresh", FileAccess::OwnerOnly).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"fresh");
        assert!(!temp_path_for(&path).exists());
    }

    #[cfg(unix)]
    #[test]
    fn owner_only_files_are_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic(&path, b"secret", FileAccess::OwnerOnly).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn temp_names_are_recognised() {
        assert!(is_temp_name(&temp_path_for(Path::new("x/1-a.json")).file_name().unwrap().to_string_lossy()));
        assert!(!is_temp_name("1-a.json"));
    }
}
