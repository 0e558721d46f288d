//! Server secrets shared by all API processes, and organisation API keys.

use wbd_store::*;

use crate::fixtures::{at, org, t0};

contract_test! {
    async fn the_first_secret_is_kept_forever(store) {
        let first = store.get_or_create_secret("jwt", vec![1, 2, 3]).await?;
        assert_eq!(first, vec![1, 2, 3]);
        let again = store.get_or_create_secret("jwt", vec![9, 9, 9]).await?;
        assert_eq!(again, vec![1, 2, 3], "a second process must get the stored key, not its own");
        let other = store.get_or_create_secret("webhook", vec![4]).await?;
        assert_eq!(other, vec![4]);
        Ok(())
    }
}

contract_test! {
    async fn api_keys_are_found_by_hash_listed_and_revoked(store) {
        let acme = org(store, "Acme MSP").await?;
        let other = org(store, "Other MSP").await?;
        let admin = store.create_api_key(acme, "ci", Role::OrgAdmin, "wbd_ab12", "hash-1", at(1)).await?;
        let reader = store.create_api_key(acme, "dash", Role::ReadOnly, "wbd_cd34", "hash-2", at(2)).await?;
        store.create_api_key(other, "theirs", Role::Technician, "wbd_ef56", "hash-3", at(3)).await?;

        assert_eq!(admin.org_id, acme.org_id);
        assert_eq!((admin.role, admin.prefix.as_str(), admin.revoked_at), (Role::OrgAdmin, "wbd_ab12", None));
        assert_eq!(store.find_api_key_by_hash("hash-1").await?, Some(admin.clone()));
        assert_eq!(store.find_api_key_by_hash("no-such-hash").await?, None);
        assert_eq!(store.list_api_keys(acme).await?, vec![admin.clone(), reader.clone()]);

        assert_eq!(store.get_api_key(acme, reader.id).await?, Some(reader.clone()));

        // Another organisation cannot revoke (or learn about) the key.
        assert_eq!(store.get_api_key(other, admin.id).await?, None);
        assert_eq!(store.revoke_api_key(other, admin.id, at(10)).await?, None);
        assert_eq!(store.find_api_key_by_hash("hash-1").await?.and_then(|k| k.revoked_at), None);

        let revoked = store.revoke_api_key(acme, admin.id, at(10)).await?.expect("own key");
        assert_eq!(revoked.revoked_at, Some(at(10)));
        // Revoking again keeps the first time; the lookup still returns it for the caller to refuse.
        let again = store.revoke_api_key(acme, admin.id, at(20)).await?.expect("own key");
        assert_eq!(again.revoked_at, Some(at(10)));
        assert_eq!(store.find_api_key_by_hash("hash-1").await?, Some(revoked.clone()));
        assert_eq!(store.get_api_key(acme, admin.id).await?, Some(revoked));

        let duplicate = store.create_api_key(acme, "copy", Role::ReadOnly, "wbd_ab12", "hash-1", t0()).await;
        assert!(matches!(duplicate, Err(StoreError::Duplicate { .. })), "{duplicate:?}");
        Ok(())
    }
}

contract_test! {
    async fn console_sessions_are_found_by_hash_until_they_expire_end_or_their_key_is_revoked(store) {
        let acme = org(store, "Acme MSP").await?;
        let other = org(store, "Other MSP").await?;
        let admin = store.create_api_key(acme, "me", Role::OrgAdmin, "wbdk_ab12", "key-1", t0()).await?;
        let reader = store.create_api_key(acme, "you", Role::ReadOnly, "wbdk_cd34", "key-2", t0()).await?;

        assert!(store.create_console_session(acme, admin.id, "session-1", at(1), at(100)).await?);
        let found = store.find_console_session("session-1", at(2)).await?.expect("open session");
        assert_eq!(
            found,
            ConsoleSession {
                org_id: acme.org_id,
                api_key_id: admin.id,
                role: Role::OrgAdmin,
                created_at: at(1),
                expires_at: at(100),
            }
        );
        assert_eq!(store.find_console_session("no-such-session", at(2)).await?, None);
        // Valid strictly before its expiry.
        assert!(store.find_console_session("session-1", at(99)).await?.is_some());
        assert_eq!(store.find_console_session("session-1", at(100)).await?, None);

        // Another organisation's key opens nothing; another organisation cannot end the session.
        assert!(!store.create_console_session(other, admin.id, "session-x", at(1), at(100)).await?);
        assert_eq!(store.find_console_session("session-x", at(2)).await?, None);
        assert!(!store.end_console_session(other, "session-1").await?);
        assert!(store.find_console_session("session-1", at(2)).await?.is_some());

        // Sign-out ends it for good.
        assert!(store.end_console_session(acme, "session-1").await?);
        assert_eq!(store.find_console_session("session-1", at(2)).await?, None);
        assert!(!store.end_console_session(acme, "session-1").await?);

        // A revoked key ends its sessions at once, and opens no new one.
        assert!(store.create_console_session(acme, reader.id, "session-2", at(1), at(100)).await?);
        assert_eq!(store.find_console_session("session-2", at(2)).await?.map(|s| s.role), Some(Role::ReadOnly));
        store.revoke_api_key(acme, reader.id, at(3)).await?;
        assert_eq!(store.find_console_session("session-2", at(4)).await?, None);
        assert!(!store.create_console_session(acme, reader.id, "session-3", at(5), at(100)).await?);

        // Opening a session forgets the expired ones (a new one with an expired one's hash fits).
        assert!(store.create_console_session(acme, admin.id, "session-4", at(1), at(10)).await?);
        assert!(store.create_console_session(acme, admin.id, "session-5", at(20), at(100)).await?);
        assert!(store.create_console_session(acme, admin.id, "session-4", at(21), at(100)).await?);
        assert!(store.find_console_session("session-4", at(22)).await?.is_some());
        Ok(())
    }
}
