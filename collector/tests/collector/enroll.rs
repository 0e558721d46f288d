//! Enrollment against a local server answering the documented shapes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;
use wbd_collector::enroll::{EnrollError, EnrollOptions, enroll};
use wbd_collector::identity::{Identity, StateDir};
use wbd_wire::{ENROLL_PATH, EnrollRequest};

use crate::helpers::*;

pub fn enrolled(collector_id: Uuid, tenant_id: Uuid) -> Reply {
    Reply::json(
        201,
        serde_json::json!({"collector_id": collector_id, "tenant_id": tenant_id, "push_interval_secs": 300})
            .to_string(),
    )
}

fn options(server: &str, state_dir: &std::path::Path) -> EnrollOptions {
    EnrollOptions {
        server: server.to_owned(),
        token: "wbd_enroll_0123456789".to_owned(),
        state_dir: state_dir.to_owned(),
        server_ca: Vec::new(),
        force: false,
        hostname: Some("site-a-connect01".to_owned()),
    }
}

#[tokio::test]
async fn enrollment_stores_a_private_key_and_the_identity() {
    init_test_log();
    let (collector_id, tenant_id) = (Uuid::new_v4(), Uuid::new_v4());
    let server = MockServer::start(enrolled(collector_id, tenant_id)).await;
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");

    let identity = enroll(options(&server.base_url, &state_dir)).await.unwrap();

    assert_eq!(
        identity,
        Identity {
            server: format!("{}/", server.base_url),
            collector_id,
            tenant_id,
            push_interval_secs: 300
        }
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, ENROLL_PATH);
    let sent: EnrollRequest = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent.enrollment_token, "wbd_enroll_0123456789");
    assert_eq!(sent.hostname, "site-a-connect01");
    assert_eq!(sent.version, env!("CARGO_PKG_VERSION"));

    let state = StateDir::new(&state_dir);
    assert_eq!(state.load_identity().unwrap(), identity);
    let key = state.load_key().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(&sent.public_key).unwrap(), key.public_key().to_vec());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.key_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
        let dir_mode = std::fs::metadata(&state_dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o077, 0, "state dir mode {dir_mode:o}");
    }
}

#[tokio::test]
async fn a_refusal_shows_the_problem_and_writes_nothing() {
    let server = MockServer::start(Reply::problem(
        401,
        "Invalid enrollment token",
        "The token has expired or was already used.",
        "enrollment_token_invalid",
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();

    let err = enroll(options(&server.base_url, dir.path())).await.unwrap_err();

    assert!(matches!(err, EnrollError::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("401"), "{text}");
    assert!(text.contains("Invalid enrollment token"), "{text}");
    assert!(text.contains("already used"), "{text}");
    assert!(text.contains("enrollment_token_invalid"), "{text}");
    let state = StateDir::new(dir.path());
    assert!(!state.identity_path().exists());
    assert!(!state.key_path().exists());
}

#[tokio::test]
async fn an_existing_identity_is_kept_unless_forced() {
    let first = (Uuid::new_v4(), Uuid::new_v4());
    let server = MockServer::start(enrolled(first.0, first.1)).await;
    let dir = tempfile::tempdir().unwrap();
    enroll(options(&server.base_url, dir.path())).await.unwrap();
    let key_before = StateDir::new(dir.path()).load_key().unwrap().public_key().to_owned();

    let err = enroll(options(&server.base_url, dir.path())).await.unwrap_err();
    assert!(matches!(err, EnrollError::AlreadyEnrolled { .. }), "{err:?}");
    assert!(err.to_string().contains("--force"));
    assert_eq!(server.requests().len(), 1, "no request when refusing to overwrite");

    let second = Uuid::new_v4();
    server.script([enrolled(second, first.1)]);
    let mut forced = options(&server.base_url, dir.path());
    forced.force = true;
    let identity = enroll(forced).await.unwrap();
    assert_eq!(identity.collector_id, second);
    let state = StateDir::new(dir.path());
    assert_eq!(state.load_identity().unwrap().collector_id, second);
    assert_ne!(state.load_key().unwrap().public_key().to_owned(), key_before);
}

#[tokio::test]
async fn https_to_a_server_with_a_private_ca_needs_server_ca() {
    let ca = TestCa::new("WBD Server Test CA");
    let server = MockServer::start_tls(enrolled(Uuid::new_v4(), Uuid::new_v4()), ca.leaf("localhost")).await;
    let dir = tempfile::tempdir().unwrap();

    let err = enroll(options(&server.base_url, dir.path())).await.unwrap_err();
    assert!(matches!(err, EnrollError::Network { .. }), "{err:?}");

    let mut with_ca = options(&server.base_url, dir.path());
    with_ca.server_ca = vec![ca.cert.clone()];
    let identity = enroll(with_ca).await.unwrap();
    assert!(identity.server.starts_with("https://localhost:"), "{}", identity.server);
}

#[tokio::test]
async fn plain_http_to_a_remote_server_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let err = enroll(options("http://wbd.example.com", dir.path())).await.unwrap_err();
    assert!(err.to_string().contains("https://"), "{err}");
    assert!(!StateDir::new(dir.path()).identity_path().exists());
}
