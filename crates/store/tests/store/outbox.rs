//! The transactional outbox, also the embedded queue: claims, leases, deletion, dead letters.

use std::collections::HashSet;
use std::time::Duration;

use crate::fixtures::{at, batch, enrolled_site, result};
use crate::harness::TestStore;

const LEASE: Duration = Duration::from_secs(30);

/// Pushes `n` batches one second apart (at 100, 101, …), each making one outbox message.
async fn pushes(store: &TestStore, n: i64) -> anyhow::Result<()> {
    let site = enrolled_site(store, "Acme MSP").await?;
    for i in 0..n {
        store
            .ingest_batch(
                site.scope,
                &batch(site.collector.id, vec![result("tcp", "relay", i, "a")], 100 + i),
            )
            .await?;
    }
    Ok(())
}

contract_test! {
    async fn claims_lease_oldest_first_count_attempts_and_expire(store) {
        pushes(store, 3).await?;

        let first = store.claim_outbox(2, LEASE, at(200)).await?;
        assert_eq!(
            first.iter().map(|m| m.created_at).collect::<Vec<_>>(),
            vec![at(100), at(101)],
            "oldest first"
        );
        assert!(first.iter().all(|m| m.attempts == 1));

        // Held messages are not handed out again while the lease runs.
        let second = store.claim_outbox(10, LEASE, at(210)).await?;
        assert_eq!(second.iter().map(|m| m.created_at).collect::<Vec<_>>(), vec![at(102)]);
        assert!(store.claim_outbox(10, LEASE, at(229)).await?.is_empty());

        // Once the lease ran out the first two come back, counting a second attempt.
        let retried = store.claim_outbox(10, LEASE, at(230)).await?;
        assert_eq!(
            retried.iter().map(|m| m.id).collect::<Vec<_>>(),
            first.iter().map(|m| m.id).collect::<Vec<_>>()
        );
        assert!(retried.iter().all(|m| m.attempts == 2));
        assert_eq!(store.count_outbox().await?, 3, "claiming does not remove");
        Ok(())
    }
}

contract_test! {
    async fn published_messages_are_deleted_and_failures_dead_lettered(store) {
        pushes(store, 3).await?;
        let claimed = store.claim_outbox(10, LEASE, at(200)).await?;
        assert_eq!(claimed.len(), 3);

        assert_eq!(store.oldest_outbox_message().await?, Some(at(100)));
        store.delete_outbox(&[claimed[0].id, claimed[1].id]).await?;
        store.delete_outbox(&[]).await?;
        assert_eq!(store.count_outbox().await?, 1);
        assert_eq!(store.oldest_outbox_message().await?, Some(at(102)), "the oldest still waiting");

        store.dead_letter_outbox(claimed[2].id, "evaluation failed 5 times", at(300)).await?;
        assert_eq!((store.count_outbox().await?, store.count_dead_letters().await?), (0, 1));
        assert_eq!(store.oldest_outbox_message().await?, None);
        // A dead letter is never claimed again, even long after its lease.
        assert!(store.claim_outbox(10, LEASE, at(99_999)).await?.is_empty());
        // Unknown ids are a no-op, not an error.
        store.dead_letter_outbox(uuid::Uuid::now_v7(), "gone", at(301)).await?;
        store.delete_outbox(&[uuid::Uuid::now_v7()]).await?;
        assert_eq!(store.count_dead_letters().await?, 1);
        Ok(())
    }
}

contract_test! {
    async fn concurrent_claimers_never_share_a_message(store) {
        pushes(store, 40).await?;
        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let shared = store.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = shared.claim_outbox(3, LEASE, at(500)).await?;
                        if claimed.is_empty() {
                            return anyhow::Ok(mine);
                        }
                        mine.extend(claimed.into_iter().map(|m| m.id));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut total = 0;
        for claimer in claimers {
            for id in claimer.await?? {
                total += 1;
                assert!(seen.insert(id), "message {id} was handed out twice");
            }
        }
        assert_eq!((total, seen.len()), (40, 40));
        Ok(())
    }
}
