//! Windows security descriptors as AD stores them (`nTSecurityDescriptor`, self-relative
//! binary form): SIDs, GUIDs, ACEs, and the access check that tells what an account may do to
//! user objects created below a container.
//!
//! The check follows the Windows rules for one right: walk the ACEs that a child user object
//! inherits from the container (container-inherit, and either no inherited object type or the
//! `user` class), in order, and let the first ACE that names the right for one of the account's
//! SIDs decide; a deny decides as much as an allow. The container's DACL is already in canonical
//! order (explicit deny, explicit allow, inherited deny, inherited allow), which the child keeps.

use std::fmt;

use wbd_wire::AccessState;

/// `SE_DACL_PROTECTED`: the DACL does not inherit from the parent ("inheritance disabled").
pub const SE_DACL_PROTECTED: u16 = 0x1000;

// ACE types.
const ACCESS_ALLOWED: u8 = 0x00;
const ACCESS_DENIED: u8 = 0x01;
const ACCESS_ALLOWED_OBJECT: u8 = 0x05;
const ACCESS_DENIED_OBJECT: u8 = 0x06;

// ACE flags.
const CONTAINER_INHERIT: u8 = 0x02;
const INHERIT_ONLY: u8 = 0x08;

// Object ACE flags.
const OBJECT_TYPE_PRESENT: u32 = 0x1;
const INHERITED_OBJECT_TYPE_PRESENT: u32 = 0x2;

// Access mask bits (directory service rights).
pub const ADS_RIGHT_DS_WRITE_PROP: u32 = 0x20;
pub const ADS_RIGHT_DS_CONTROL_ACCESS: u32 = 0x100;
const GENERIC_ALL: u32 = 0x1000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;

/// A GUID in its usual text form; AD stores it mixed-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Guid([u8; 16]);

impl Guid {
    /// From AD's binary layout (first three fields little-endian).
    pub fn from_ad_bytes(b: &[u8]) -> Option<Guid> {
        let b: [u8; 16] = b.try_into().ok()?;
        Some(Guid([
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
            b[15],
        ]))
    }

    /// From `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    pub fn parse(s: &str) -> Option<Guid> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 || s.len() != 36 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Guid(out))
    }

    /// Parses one of the constants below; they are checked by a test.
    pub const fn from_const(bytes: [u8; 16]) -> Guid {
        Guid(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0],
            b[1],
            b[2],
            b[3],
            b[4],
            b[5],
            b[6],
            b[7],
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// Extended right "Reset Password" (User-Force-Change-Password).
pub const RESET_PASSWORD: Guid = Guid::from_const([
    0x00, 0x29, 0x95, 0x70, 0x24, 0x6d, 0x11, 0xd0, 0xa7, 0x68, 0x00, 0xaa, 0x00, 0x6e, 0x05, 0x29,
]);
/// Extended right "Change Password" (User-Change-Password).
pub const CHANGE_PASSWORD: Guid = Guid::from_const([
    0xab, 0x72, 0x1a, 0x53, 0x1e, 0x2f, 0x11, 0xd0, 0x98, 0x19, 0x00, 0xaa, 0x00, 0x40, 0x52, 0x9b,
]);
/// Attribute `lockoutTime`.
pub const LOCKOUT_TIME: Guid = Guid::from_const([
    0x28, 0x63, 0x0e, 0xbf, 0x41, 0xd5, 0x11, 0xd1, 0xa9, 0xc1, 0x00, 0x00, 0xf8, 0x03, 0x67, 0xc1,
]);
/// Attribute `pwdLastSet`.
pub const PWD_LAST_SET: Guid = Guid::from_const([
    0xbf, 0x96, 0x7a, 0x0a, 0x0d, 0xe6, 0x11, 0xd0, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2,
]);
/// Property set "User-Account-Restrictions", which contains `pwdLastSet`.
pub const USER_ACCOUNT_RESTRICTIONS: Guid = Guid::from_const([
    0x4c, 0x16, 0x42, 0x00, 0x20, 0xc0, 0x11, 0xd0, 0xa7, 0x68, 0x00, 0xaa, 0x00, 0x6e, 0x05, 0x29,
]);
/// Class `user`.
pub const USER_CLASS: Guid = Guid::from_const([
    0xbf, 0x96, 0x7a, 0xba, 0x0d, 0xe6, 0x11, 0xd0, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2,
]);

/// A security identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    revision: u8,
    authority: u64,
    sub_authorities: Vec<u32>,
}

impl Sid {
    /// From the binary form; returns the SID and the bytes it used.
    pub fn from_bytes(b: &[u8]) -> Option<(Sid, usize)> {
        let revision = *b.first()?;
        let count = usize::from(*b.get(1)?);
        let len = 8 + 4 * count;
        let raw = b.get(..len)?;
        let mut authority = 0u64;
        for byte in &raw[2..8] {
            authority = (authority << 8) | u64::from(*byte);
        }
        let sub_authorities =
            raw[8..].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Some((Sid { revision, authority, sub_authorities }, len))
    }

    /// From `S-1-5-21-…`.
    pub fn parse(s: &str) -> Option<Sid> {
        let mut parts = s.strip_prefix("S-")?.split('-');
        let revision = parts.next()?.parse().ok()?;
        let authority = parts.next()?.parse().ok()?;
        let sub_authorities = parts.map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
        Some(Sid { revision, authority, sub_authorities })
    }

    pub fn everyone() -> Sid {
        Sid { revision: 1, authority: 1, sub_authorities: vec![0] }
    }

    pub fn authenticated_users() -> Sid {
        Sid { revision: 1, authority: 5, sub_authorities: vec![11] }
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S-{}-{}", self.revision, self.authority)?;
        for sub in &self.sub_authorities {
            write!(f, "-{sub}")?;
        }
        Ok(())
    }
}

/// One access control entry of the kinds the check reads (allow/deny, plain or object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    pub allow: bool,
    pub flags: u8,
    pub mask: u32,
    pub object_type: Option<Guid>,
    pub inherited_object_type: Option<Guid>,
    pub sid: Sid,
}

/// The parts of a security descriptor the probe reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityDescriptor {
    pub control: u16,
    pub owner: Option<Sid>,
    /// `None`: no DACL present (not requested, or a NULL DACL).
    pub dacl: Option<Vec<Ace>>,
}

impl SecurityDescriptor {
    pub fn dacl_protected(&self) -> bool {
        self.control & SE_DACL_PROTECTED != 0
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a self-relative security descriptor.
pub fn parse_security_descriptor(b: &[u8]) -> Result<SecurityDescriptor, String> {
    let bad = |what: &str| format!("malformed security descriptor: {what}");
    if b.len() < 20 || b[0] != 1 {
        return Err(bad("header"));
    }
    let control = u16_at(b, 2).ok_or_else(|| bad("control"))?;
    let owner_at = u32_at(b, 4).ok_or_else(|| bad("owner offset"))? as usize;
    let dacl_at = u32_at(b, 16).ok_or_else(|| bad("dacl offset"))? as usize;
    let owner = if owner_at == 0 {
        None
    } else {
        Some(
            Sid::from_bytes(b.get(owner_at..).ok_or_else(|| bad("owner"))?)
                .ok_or_else(|| bad("owner SID"))?
                .0,
        )
    };
    let dacl = if dacl_at == 0 {
        None
    } else {
        Some(parse_acl(b.get(dacl_at..).ok_or_else(|| bad("dacl"))?).map_err(|e| bad(&e))?)
    };
    Ok(SecurityDescriptor { control, owner, dacl })
}

fn parse_acl(b: &[u8]) -> Result<Vec<Ace>, String> {
    let size = usize::from(u16_at(b, 2).ok_or("acl size")?);
    let count = usize::from(u16_at(b, 4).ok_or("ace count")?);
    let acl = b.get(..size).ok_or("acl shorter than its size")?;
    let mut aces = Vec::with_capacity(count);
    let mut at = 8;
    for i in 0..count {
        let ace_type = *acl.get(at).ok_or(format!("ace {i} type"))?;
        let flags = *acl.get(at + 1).ok_or(format!("ace {i} flags"))?;
        let ace_size = usize::from(u16_at(acl, at + 2).ok_or(format!("ace {i} size"))?);
        if ace_size < 8 {
            return Err(format!("ace {i} size {ace_size}"));
        }
        let body = acl.get(at + 4..at + ace_size).ok_or(format!("ace {i} runs past the acl"))?;
        at += ace_size;
        let (allow, object) = match ace_type {
            ACCESS_ALLOWED => (true, false),
            ACCESS_DENIED => (false, false),
            ACCESS_ALLOWED_OBJECT => (true, true),
            ACCESS_DENIED_OBJECT => (false, true),
            // Audit, alarm and callback ACEs do not grant or deny access here.
            _ => continue,
        };
        let mask = u32_at(body, 0).ok_or(format!("ace {i} mask"))?;
        let mut pos = 4;
        let (mut object_type, mut inherited_object_type) = (None, None);
        if object {
            let oflags = u32_at(body, 4).ok_or(format!("ace {i} object flags"))?;
            pos = 8;
            if oflags & OBJECT_TYPE_PRESENT != 0 {
                object_type =
                    Guid::from_ad_bytes(body.get(pos..pos + 16).ok_or(format!("ace {i} object type"))?);
                pos += 16;
            }
            if oflags & INHERITED_OBJECT_TYPE_PRESENT != 0 {
                inherited_object_type = Guid::from_ad_bytes(
                    body.get(pos..pos + 16).ok_or(format!("ace {i} inherited object type"))?,
                );
                pos += 16;
            }
        }
        let (sid, _) =
            Sid::from_bytes(body.get(pos..).ok_or(format!("ace {i} sid"))?).ok_or(format!("ace {i} sid"))?;
        aces.push(Ace { allow, flags, mask, object_type, inherited_object_type, sid });
    }
    Ok(aces)
}

/// Parses the DACL of an SDDL string, as the schema's `defaultSecurityDescriptor` holds it
/// (`D:(A;;RPLCLORC;;;AU)(OA;;CR;ab721a53-…;;WD)…`). SID aliases are resolved with
/// `domain_sid` where they are domain groups; ACEs whose trustee or rights cannot be read are
/// skipped (they name principals the check does not need), and returned as a count.
pub fn parse_sddl_dacl(sddl: &str, domain_sid: Option<&Sid>) -> (Vec<Ace>, usize) {
    let Some(start) = sddl.find("D:") else { return (Vec::new(), 0) };
    let rest = &sddl[start + 2..];
    // The DACL ends where the SACL starts.
    let rest = rest.split("S:(").next().unwrap_or(rest);
    let mut aces = Vec::new();
    let mut skipped = 0;
    for body in rest.split('(').skip(1).filter_map(|part| part.split(')').next()) {
        match parse_sddl_ace(body, domain_sid) {
            Some(ace) => aces.push(ace),
            None => skipped += 1,
        }
    }
    (aces, skipped)
}

fn parse_sddl_ace(body: &str, domain_sid: Option<&Sid>) -> Option<Ace> {
    let fields: Vec<&str> = body.split(';').collect();
    let [kind, flags, rights, object, inherited, trustee] = fields.get(..6)? else { return None };
    let allow = match *kind {
        "A" | "OA" => true,
        "D" | "OD" => false,
        _ => return None,
    };
    let mut flag_bits = 0u8;
    for i in (0..flags.len()).step_by(2) {
        flag_bits |= match flags.get(i..i + 2)? {
            "OI" => 0x01,
            "CI" => CONTAINER_INHERIT,
            "NP" => 0x04,
            "IO" => 0x08,
            "ID" => 0x10,
            _ => 0,
        };
    }
    let mask = if let Some(hex) = rights.strip_prefix("0x").or_else(|| rights.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()?
    } else {
        let mut mask = 0u32;
        for i in (0..rights.len()).step_by(2) {
            mask |= match rights.get(i..i + 2)? {
                "GA" => GENERIC_ALL,
                "GW" => GENERIC_WRITE,
                "GR" => 0x8000_0000,
                "GX" => 0x2000_0000,
                "CC" => 0x1,
                "DC" => 0x2,
                "LC" => 0x4,
                "SW" => 0x8,
                "RP" => 0x10,
                "WP" => ADS_RIGHT_DS_WRITE_PROP,
                "DT" => 0x40,
                "LO" => 0x80,
                "CR" => ADS_RIGHT_DS_CONTROL_ACCESS,
                "SD" => 0x1_0000,
                "RC" => 0x2_0000,
                "WD" => 0x4_0000,
                "WO" => 0x8_0000,
                _ => return None,
            };
        }
        mask
    };
    let guid = |s: &str| if s.is_empty() { Some(None) } else { Guid::parse(s).map(Some) };
    let sid = sddl_sid(trustee, domain_sid)?;
    Some(Ace {
        allow,
        flags: flag_bits,
        mask,
        object_type: guid(object)?,
        inherited_object_type: guid(inherited)?,
        sid,
    })
}

/// An SDDL trustee: a literal SID or one of the aliases AD's default descriptors use.
fn sddl_sid(trustee: &str, domain_sid: Option<&Sid>) -> Option<Sid> {
    if trustee.starts_with("S-") {
        return Sid::parse(trustee);
    }
    let well_known =
        |authority: u64, subs: &[u32]| Sid { revision: 1, authority, sub_authorities: subs.to_vec() };
    let domain_rid = |rid: u32| {
        domain_sid.map(|d| {
            let mut subs = d.sub_authorities.clone();
            subs.push(rid);
            Sid { revision: d.revision, authority: d.authority, sub_authorities: subs }
        })
    };
    match trustee {
        "WD" => Some(well_known(1, &[0])),
        "AU" => Some(well_known(5, &[11])),
        "PS" => Some(well_known(5, &[10])),
        "SY" => Some(well_known(5, &[18])),
        "AN" => Some(well_known(5, &[7])),
        "ED" => Some(well_known(5, &[9])),
        "BA" => Some(well_known(5, &[32, 544])),
        "BU" => Some(well_known(5, &[32, 545])),
        "AO" => Some(well_known(5, &[32, 548])),
        "PO" => Some(well_known(5, &[32, 550])),
        "RU" => Some(well_known(5, &[32, 554])),
        "DA" => domain_rid(512),
        "DU" => domain_rid(513),
        "CA" => domain_rid(517),
        "EA" => domain_rid(519),
        "CN" => domain_rid(522),
        _ => None,
    }
}

impl Sid {
    /// The domain part of an account SID (`S-1-5-21-a-b-c-1105` → `S-1-5-21-a-b-c`).
    pub fn domain(&self) -> Option<Sid> {
        (self.sub_authorities.len() > 1).then(|| Sid {
            revision: self.revision,
            authority: self.authority,
            sub_authorities: self.sub_authorities[..self.sub_authorities.len() - 1].to_vec(),
        })
    }
}

/// A right to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// An extended right (control access) by its rights GUID.
    Extended(Guid),
    /// Writing an attribute, which a grant on its property set also gives.
    WriteProperty { attribute: Guid, property_set: Option<Guid> },
}

impl Right {
    fn bit(self) -> u32 {
        match self {
            Right::Extended(_) => ADS_RIGHT_DS_CONTROL_ACCESS,
            Right::WriteProperty { .. } => ADS_RIGHT_DS_WRITE_PROP,
        }
    }

    fn covered_by(self, object_type: Option<Guid>) -> bool {
        match (self, object_type) {
            (_, None) => true,
            (Right::Extended(g), Some(t)) => g == t,
            (Right::WriteProperty { attribute, property_set }, Some(t)) => {
                t == attribute || property_set == Some(t)
            }
        }
    }
}

/// Whether `trustees` may exercise `right` on a user object created below the container whose
/// DACL is `dacl`. `class_default` holds the explicit ACEs every new user object gets from the
/// `user` class's `defaultSecurityDescriptor`; they come before the inherited ones.
pub fn access_on_child_users(
    class_default: &[Ace],
    dacl: &[Ace],
    trustees: &[Sid],
    right: Right,
) -> AccessState {
    let inherited = dacl.iter().filter(|ace| {
        ace.flags & CONTAINER_INHERIT != 0
            && ace.inherited_object_type.is_none_or(|class| class == USER_CLASS)
    });
    first_decision(class_default.iter().chain(inherited), trustees, right)
}

/// Whether `trustees` may exercise `right` on the object whose DACL is `dacl` itself (every ACE
/// but the inherit-only ones applies to it, in the stored order). Used for an object whose DACL
/// does not inherit: only what it holds itself counts there.
pub fn access_on_object(dacl: &[Ace], trustees: &[Sid], right: Right) -> AccessState {
    first_decision(dacl.iter().filter(|ace| ace.flags & INHERIT_ONLY == 0), trustees, right)
}

fn first_decision<'a>(aces: impl Iterator<Item = &'a Ace>, trustees: &[Sid], right: Right) -> AccessState {
    let bit = right.bit();
    for ace in aces {
        if !trustees.contains(&ace.sid) {
            continue;
        }
        let generic =
            ace.mask & GENERIC_ALL != 0 || (bit == ADS_RIGHT_DS_WRITE_PROP && ace.mask & GENERIC_WRITE != 0);
        if !(generic || ace.mask & bit != 0) || !right.covered_by(ace.object_type) {
            continue;
        }
        return if ace.allow { AccessState::Allowed } else { AccessState::Denied };
    }
    AccessState::NotGranted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_constants_match_their_text() {
        assert_eq!(RESET_PASSWORD.to_string(), "00299570-246d-11d0-a768-00aa006e0529");
        assert_eq!(CHANGE_PASSWORD.to_string(), "ab721a53-1e2f-11d0-9819-00aa0040529b");
        assert_eq!(LOCKOUT_TIME.to_string(), "28630ebf-41d5-11d1-a9c1-0000f80367c1");
        assert_eq!(PWD_LAST_SET.to_string(), "bf967a0a-0de6-11d0-a285-00aa003049e2");
        assert_eq!(USER_ACCOUNT_RESTRICTIONS.to_string(), "4c164200-20c0-11d0-a768-00aa006e0529");
        assert_eq!(USER_CLASS.to_string(), "bf967aba-0de6-11d0-a285-00aa003049e2");
        assert_eq!(Guid::parse("00299570-246d-11d0-a768-00aa006e0529"), Some(RESET_PASSWORD));
        // AD's byte order, as ldapsearch shows pwdLastSet's schemaIDGUID (CnqWv+YN0BGihQCqADBJ4g==).
        let ad =
            [0x0a, 0x7a, 0x96, 0xbf, 0xe6, 0x0d, 0xd0, 0x11, 0xa2, 0x85, 0x00, 0xaa, 0x00, 0x30, 0x49, 0xe2];
        assert_eq!(Guid::from_ad_bytes(&ad), Some(PWD_LAST_SET));
    }

    #[test]
    fn sids_round_trip() {
        let sid = Sid::parse("S-1-5-21-234483826-1906467201-3868976584-1102").unwrap();
        assert_eq!(sid.to_string(), "S-1-5-21-234483826-1906467201-3868976584-1102");
        let mut bin = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 234_483_826, 1_906_467_201, 3_868_976_584, 1102] {
            bin.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(Sid::from_bytes(&bin), Some((sid, bin.len())));
        assert_eq!(Sid::everyone().to_string(), "S-1-1-0");
    }

    fn ace(
        allow: bool,
        flags: u8,
        mask: u32,
        object_type: Option<Guid>,
        inherited: Option<Guid>,
        sid: &Sid,
    ) -> Ace {
        Ace { allow, flags, mask, object_type, inherited_object_type: inherited, sid: sid.clone() }
    }

    #[test]
    fn the_first_matching_ace_decides() {
        let me = Sid::parse("S-1-5-21-1-2-3-1102").unwrap();
        let other = Sid::parse("S-1-5-21-1-2-3-1103").unwrap();
        let reset = Right::Extended(RESET_PASSWORD);
        let pwd =
            Right::WriteProperty { attribute: PWD_LAST_SET, property_set: Some(USER_ACCOUNT_RESTRICTIONS) };
        let ci = CONTAINER_INHERIT;
        let trustees = [me.clone(), Sid::everyone()];

        // Allowed on user objects below.
        let dacl = vec![ace(true, ci, 0x100, Some(RESET_PASSWORD), Some(USER_CLASS), &me)];
        assert_eq!(access_on_child_users(&[], &dacl, &trustees, reset), AccessState::Allowed);
        // Not inheritable, for another class, or for someone else: not granted.
        for dacl in [
            vec![ace(true, 0, 0x100, Some(RESET_PASSWORD), None, &me)],
            vec![ace(
                true,
                ci,
                0x100,
                Some(RESET_PASSWORD),
                Guid::parse("bf967a86-0de6-11d0-a285-00aa003049e2"),
                &me,
            )],
            vec![ace(true, ci, 0x100, Some(RESET_PASSWORD), None, &other)],
        ] {
            assert_eq!(access_on_child_users(&[], &dacl, &trustees, reset), AccessState::NotGranted);
        }
        // A deny before the allow wins; Everyone counts.
        let dacl = vec![
            ace(false, ci, 0x100, Some(RESET_PASSWORD), None, &Sid::everyone()),
            ace(true, ci, 0x100, Some(RESET_PASSWORD), None, &me),
        ];
        assert_eq!(access_on_child_users(&[], &dacl, &trustees, reset), AccessState::Denied);
        // Write property through the property set, through "all properties", or GenericAll.
        for dacl in [
            vec![ace(true, ci, 0x20, Some(USER_ACCOUNT_RESTRICTIONS), Some(USER_CLASS), &me)],
            vec![ace(true, ci, 0x20, None, None, &me)],
            vec![ace(true, ci, GENERIC_ALL, None, None, &me)],
            vec![ace(true, ci, 0x000f_01ff, None, None, &me)],
        ] {
            assert_eq!(access_on_child_users(&[], &dacl, &trustees, pwd), AccessState::Allowed);
        }
        // Write property on another attribute does not count.
        let dacl = vec![ace(true, ci, 0x20, Some(LOCKOUT_TIME), None, &me)];
        assert_eq!(access_on_child_users(&[], &dacl, &trustees, pwd), AccessState::NotGranted);
    }

    #[test]
    fn rights_on_the_object_itself_skip_inherit_only_aces() {
        let me = Sid::parse("S-1-5-21-1-2-3-1102").unwrap();
        let reset = Right::Extended(RESET_PASSWORD);
        let trustees = [me.clone()];
        // Granted for children only: not on the object.
        let children_only =
            vec![ace(true, CONTAINER_INHERIT | INHERIT_ONLY, 0x100, Some(RESET_PASSWORD), None, &me)];
        assert_eq!(access_on_object(&children_only, &trustees, reset), AccessState::NotGranted);
        // Granted on the object (whether or not it is also inherited).
        let here = vec![ace(true, CONTAINER_INHERIT, 0x100, Some(RESET_PASSWORD), Some(USER_CLASS), &me)];
        assert_eq!(access_on_object(&here, &trustees, reset), AccessState::Allowed);
    }

    #[test]
    fn class_defaults_from_sddl_come_first() {
        let domain = Sid::parse("S-1-5-21-1-2-3").unwrap();
        let me = Sid::parse("S-1-5-21-1-2-3-1102").unwrap();
        assert_eq!(me.domain(), Some(domain.clone()));
        let sddl = "O:DAG:DAD:(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;DA)(A;;RPLCLORC;;;AU)\
                    (OA;;CR;ab721a53-1e2f-11d0-9819-00aa0040529b;;WD)(OA;;RP;4c164200-20c0-11d0-a768-00aa006e0529;;RS)\
                    (OD;;CR;00299570-246d-11d0-a768-00aa006e0529;;S-1-5-21-1-2-3-1102)S:(AU;SA;WP;;;WD)";
        let (aces, skipped) = parse_sddl_dacl(sddl, Some(&domain));
        assert_eq!((aces.len(), skipped), (4, 1), "RS is not an alias the check needs");
        assert_eq!(aces[0].sid.to_string(), "S-1-5-21-1-2-3-512");
        assert_eq!(aces[0].mask & ADS_RIGHT_DS_CONTROL_ACCESS, ADS_RIGHT_DS_CONTROL_ACCESS);
        assert_eq!(aces[2].object_type, Some(CHANGE_PASSWORD));
        let trustees = [me.clone(), Sid::everyone()];
        let change = Right::Extended(CHANGE_PASSWORD);
        assert_eq!(access_on_child_users(&aces, &[], &trustees, change), AccessState::Allowed);
        // An explicit deny of the class default beats an inherited allow.
        let allow_reset = ace(true, CONTAINER_INHERIT, 0x100, Some(RESET_PASSWORD), None, &me);
        let reset = Right::Extended(RESET_PASSWORD);
        assert_eq!(access_on_child_users(&aces, &[allow_reset], &trustees, reset), AccessState::Denied);
    }

    #[test]
    fn a_descriptor_with_object_aces_parses() {
        // O:DA D:P(OA;CI;CR;<reset>;<user>;S-1-5-21-1-2-3-1102), built by hand.
        let sid = Sid::parse("S-1-5-21-1-2-3-1102").unwrap();
        let mut sid_bin = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1, 2, 3, 1102] {
            sid_bin.extend_from_slice(&sub.to_le_bytes());
        }
        let guid_ad = |g: Guid| {
            let b = g.0;
            vec![
                b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15],
            ]
        };
        let mut ace_body = Vec::new();
        ace_body.extend_from_slice(&0x100u32.to_le_bytes());
        ace_body.extend_from_slice(&3u32.to_le_bytes());
        ace_body.extend(guid_ad(RESET_PASSWORD));
        ace_body.extend(guid_ad(USER_CLASS));
        ace_body.extend(&sid_bin);
        let mut ace_bin = vec![ACCESS_ALLOWED_OBJECT, CONTAINER_INHERIT];
        ace_bin.extend_from_slice(&u16::try_from(ace_body.len() + 4).unwrap().to_le_bytes());
        ace_bin.extend(ace_body);
        let mut acl = vec![4u8, 0];
        acl.extend_from_slice(&u16::try_from(ace_bin.len() + 8).unwrap().to_le_bytes());
        acl.extend_from_slice(&1u16.to_le_bytes());
        acl.extend_from_slice(&[0, 0]);
        acl.extend(ace_bin);
        let mut sd = vec![1u8, 0];
        sd.extend_from_slice(&(0x8004u16 | SE_DACL_PROTECTED).to_le_bytes());
        let owner_at = 20u32;
        let dacl_at = owner_at + u32::try_from(sid_bin.len()).unwrap();
        for off in [owner_at, 0, 0, dacl_at] {
            sd.extend_from_slice(&off.to_le_bytes());
        }
        sd.extend(&sid_bin);
        sd.extend(acl);

        let parsed = parse_security_descriptor(&sd).unwrap();
        assert!(parsed.dacl_protected());
        assert_eq!(parsed.owner, Some(sid.clone()));
        let dacl = parsed.dacl.unwrap();
        assert_eq!(dacl.len(), 1);
        assert_eq!(dacl[0].object_type, Some(RESET_PASSWORD));
        assert_eq!(dacl[0].inherited_object_type, Some(USER_CLASS));
        assert_eq!(dacl[0].sid, sid);
        assert!(parse_security_descriptor(&sd[..30]).is_err());
    }
}
