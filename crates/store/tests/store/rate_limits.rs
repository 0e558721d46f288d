//! Rate limits kept in the store, shared by every API process.

use std::time::Duration;

use wbd_store::*;

use crate::fixtures::at;

fn three_a_minute() -> RateLimit {
    RateLimit::per_minute(3).expect("a limit")
}

contract_test! {
    async fn an_allowance_is_spent_then_refilled_one_interval_at_a_time(store) {
        let limit = three_a_minute();
        for i in 0..3 {
            assert_eq!(store.take_rate_limit("addr:192.0.2.7", limit, at(0)).await?, RateDecision::Allowed, "request {i}");
        }
        assert_eq!(
            store.take_rate_limit("addr:192.0.2.7", limit, at(5)).await?,
            RateDecision::Refused { retry_after: Duration::from_secs(15) }
        );
        // A refusal spends nothing: the wait stays what it was.
        assert_eq!(
            store.take_rate_limit("addr:192.0.2.7", limit, at(10)).await?,
            RateDecision::Refused { retry_after: Duration::from_secs(10) }
        );
        // Another address has its own allowance.
        assert_eq!(store.take_rate_limit("addr:192.0.2.8", limit, at(10)).await?, RateDecision::Allowed);
        assert_eq!(store.take_rate_limit("addr:192.0.2.7", limit, at(20)).await?, RateDecision::Allowed);
        assert!(matches!(
            store.take_rate_limit("addr:192.0.2.7", limit, at(20)).await?,
            RateDecision::Refused { .. }
        ));
        Ok(())
    }
}

contract_test! {
    async fn forgetting_keeps_only_the_things_still_limited(store) {
        let limit = three_a_minute();
        store.take_rate_limit("org:quiet", limit, at(0)).await?;
        for _ in 0..3 {
            store.take_rate_limit("org:busy", limit, at(30)).await?;
        }
        // At 40 s the quiet one's allowance is whole again (20 s after its one request); the
        // busy one's is not (until 90 s).
        assert_eq!(store.forget_rate_limits(at(40)).await?, 1);
        assert!(matches!(store.take_rate_limit("org:busy", limit, at(40)).await?, RateDecision::Refused { .. }));
        for _ in 0..3 {
            assert_eq!(store.take_rate_limit("org:quiet", limit, at(40)).await?, RateDecision::Allowed);
        }
        Ok(())
    }
}

contract_test! {
    async fn concurrent_requests_never_spend_more_than_the_allowance(store) {
        let limit = RateLimit::per_minute(20).expect("a limit");
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.store.clone();
                tokio::spawn(async move { store.take_rate_limit("collector:c1", limit, at(0)).await })
            })
            .collect();
        let mut allowed = 0;
        for task in tasks {
            if task.await?? == RateDecision::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20);
        Ok(())
    }
}
