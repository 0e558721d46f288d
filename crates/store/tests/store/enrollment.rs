//! One-time enrollment of a collector with its token.

use std::time::Duration;

use wbd_store::*;

use crate::fixtures::{at, enrollment, org, pending_collector, tenant};

contract_test! {
    async fn a_token_enrolls_once_then_reports_already_used(store) {
        let acme = org(store, "Acme MSP").await?;
        let scope = tenant(store, acme, "Contoso").await?;
        let pending = pending_collector(store, scope, "tok-1").await?;

        let active = store.enroll_collector(&enrollment("tok-1", at(60))).await?.expect("first use enrolls");
        assert_eq!(active.id, pending.id);
        assert_eq!(active.status, CollectorStatus::Active);
        assert_eq!(active.public_key, Some(vec![7; 32]));
        assert_eq!((active.hostname.as_deref(), active.version.as_deref()), (Some("aadc01"), Some("1.0.0")));
        assert_eq!((active.enrolled_at, active.silent_after), (Some(at(60)), Some(at(960))));
        assert_eq!(store.get_collector(acme, pending.id).await?, Some(active.clone()));

        let reuse = store.enroll_collector(&enrollment("tok-1", at(61))).await?;
        assert_eq!(reuse, Err(EnrollError::AlreadyUsed));
        // Even after expiry a used token says "already used", and the enrolled key stays.
        assert_eq!(
            store.enroll_collector(&enrollment("tok-1", at(99_999))).await?,
            Err(EnrollError::AlreadyUsed)
        );
        assert_eq!(store.get_collector(acme, pending.id).await?, Some(active));
        Ok(())
    }
}

contract_test! {
    async fn expired_and_unknown_tokens_are_refused(store) {
        let acme = org(store, "Acme MSP").await?;
        let scope = tenant(store, acme, "Contoso").await?;
        let pending = pending_collector(store, scope, "tok-late").await?;

        // Valid strictly before its expiry (at(3600)).
        assert_eq!(
            store.enroll_collector(&enrollment("tok-late", at(3600))).await?,
            Err(EnrollError::Expired)
        );
        assert_eq!(
            store.enroll_collector(&enrollment("tok-never-issued", at(1))).await?,
            Err(EnrollError::UnknownToken)
        );
        assert_eq!(
            store.get_collector(acme, pending.id).await?,
            Some(pending.clone()),
            "refusals change nothing"
        );

        // A collector revoked before enrolling waits for nobody.
        let withdrawn = pending_collector(store, scope, "tok-withdrawn").await?;
        store.revoke_collector(acme, withdrawn.id, at(2)).await?;
        assert_eq!(
            store.enroll_collector(&enrollment("tok-withdrawn", at(3))).await?,
            Err(EnrollError::UnknownToken)
        );
        Ok(())
    }
}

contract_test! {
    async fn concurrent_enrollments_with_one_token_have_one_winner(store) {
        let acme = org(store, "Acme MSP").await?;
        let scope = tenant(store, acme, "Contoso").await?;
        pending_collector(store, scope, "tok-race").await?;

        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let shared = store.store.clone();
                tokio::spawn(async move {
                    let mut request = enrollment("tok-race", at(10));
                    request.public_key = vec![i; 32];
                    shared.enroll_collector(&request).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for attempt in attempts {
            match attempt.await?? {
                Ok(collector) => winners.push(collector),
                Err(refused) => assert_eq!(refused, EnrollError::AlreadyUsed),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one enrollment may win");
        let stored = store.find_collector_for_auth(winners[0].id, at(20)).await?.expect("collector").collector;
        assert_eq!(stored.public_key, winners[0].public_key, "the winner's key is the one stored");
        Ok(())
    }
}

contract_test! {
    /// The once-only memory of push tokens behind replay protection, shared by every API
    /// process through the store.
    async fn a_push_token_is_used_once_until_it_expires(store) {
        let acme = org(store, "Acme MSP").await?;
        let scope = tenant(store, acme, "Contoso").await?;
        pending_collector(store, scope, "tok-a").await?;
        pending_collector(store, scope, "tok-b").await?;
        let a = store.enroll_collector(&enrollment("tok-a", at(10))).await?.expect("enrolls");
        let b = store.enroll_collector(&enrollment("tok-b", at(10))).await?.expect("enrolls");
        let jti = uuid::Uuid::new_v4();

        assert!(store.use_push_token(a.id, jti, at(120), at(0)).await?, "first use");
        assert!(!store.use_push_token(a.id, jti, at(120), at(1)).await?, "a replay");
        assert!(!store.use_push_token(a.id, jti, at(120), at(119)).await?, "a replay until it expires");
        // Another collector's token is its own, whatever its id.
        assert!(store.use_push_token(b.id, jti, at(120), at(2)).await?);
        // Once expired (the API refuses it by then) the token is forgotten as the collector
        // pushes again.
        assert!(store.use_push_token(a.id, uuid::Uuid::new_v4(), at(300), at(200)).await?);
        assert!(store.use_push_token(a.id, jti, at(400), at(201)).await?, "forgotten after its expiry");
        assert!(!store.use_push_token(b.id, jti, at(120), at(3)).await?, "b's is still remembered");
        Ok(())
    }
}

contract_test! {
    /// A push's token and its collector's rate limit, taken together (one statement on
    /// PostgreSQL): a replay counts nothing, a refusal spends nothing and says how long to wait.
    async fn a_push_token_counts_against_its_collectors_limit_only_on_its_first_use(store) {
        let acme = org(store, "Acme MSP").await?;
        let scope = tenant(store, acme, "Contoso").await?;
        pending_collector(store, scope, "tok-a").await?;
        let a = store.enroll_collector(&enrollment("tok-a", at(10))).await?.expect("enrolls");
        let limit = RateLimit::per_minute(2).expect("a limit");
        let bucket = format!("collector:{}", a.id);
        let push = |jti: uuid::Uuid, now: i64| store.use_push_token_counted(a.id, jti, at(now + 120), &bucket, limit, at(now));

        let first = uuid::Uuid::new_v4();
        assert_eq!(push(first, 0).await?, PushTokenUse::Used(RateDecision::Allowed));
        assert_eq!(push(first, 1).await?, PushTokenUse::Replayed);
        assert_eq!(push(first, 2).await?, PushTokenUse::Replayed, "replays spend no allowance");
        assert_eq!(push(uuid::Uuid::new_v4(), 3).await?, PushTokenUse::Used(RateDecision::Allowed));
        // The allowance (two a minute) is spent: the next waits until 30 s after the first.
        let refused = |secs| PushTokenUse::Used(RateDecision::Refused { retry_after: Duration::from_secs(secs) });
        assert_eq!(push(uuid::Uuid::new_v4(), 10).await?, refused(20));
        assert_eq!(push(uuid::Uuid::new_v4(), 20).await?, refused(10), "a refusal spends nothing");
        assert_eq!(push(uuid::Uuid::new_v4(), 30).await?, PushTokenUse::Used(RateDecision::Allowed));
        // The token of a refused push was still used: presenting it again is a replay.
        let late = uuid::Uuid::new_v4();
        assert!(matches!(push(late, 31).await?, PushTokenUse::Used(RateDecision::Refused { .. })));
        assert_eq!(push(late, 32).await?, PushTokenUse::Replayed);
        Ok(())
    }
}
