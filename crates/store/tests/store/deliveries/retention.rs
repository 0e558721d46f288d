//! The retention sweep of deliveries: finished ones go with their attempts once they are older
//! than the cutoff; waiting, retrying and in-flight ones stay however old, with every attempt.

use super::*;
use crate::retention::sweep_all;

contract_test! {
    async fn finished_deliveries_go_with_their_attempts_and_pending_ones_stay(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let queued = [event(&hook, None, 10), event(&hook, None, 20), event(&hook, None, 30), event(&hook, None, 40)];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [delivered, gave_up, retrying, in_flight] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };
        // Delivered on its second attempt, given up after one, retrying later after one.
        complete(store, delivered, failed(delivered.lease_id, 101, Some(150))).await?;
        complete(store, gave_up, failed(gave_up.lease_id, 102, None)).await?;
        complete(store, retrying, failed(retrying.lease_id, 103, Some(50_000))).await?;
        // At 150 the retry is due and `in_flight`'s first lease ran out: both are claimed again.
        let again = claim(store, 150).await?;
        let [second, held] = &again[..] else { anyhow::bail!("claimed again {again:?}") };
        assert_eq!((second.delivery.id, held.delivery.id), (delivered.delivery.id, in_flight.delivery.id));
        complete(store, second, succeeded(second.lease_id, 151)).await?;
        // One more event, not tried yet.
        let waiting = event(&hook, None, 160);
        store.enqueue_deliveries(std::slice::from_ref(&waiting), at(160)).await?;

        // Everything happened long before the cutoff; only the finished ones go, attempts first.
        let swept = store.sweep_expired(RetentionTable::Deliveries, at(10_000), 100).await?;
        assert_eq!(swept, SweptBatch { rows: 2, dependent_rows: 3, full: false });
        assert!(store.get_delivery(acme, delivered.delivery.id).await?.is_none());
        assert!(store.get_delivery(acme, gave_up.delivery.id).await?.is_none());
        let (kept, attempts) = delivery(store, acme, retrying.delivery.id).await?;
        assert_eq!((kept.status, attempts.len()), (DeliveryStatus::Pending, 1));
        assert_eq!(delivery(store, acme, held.delivery.id).await?.0.status, DeliveryStatus::Pending);
        // The in-flight delivery's lease still holds: it completes as if nothing happened.
        complete(store, held, succeeded(held.lease_id, 170)).await?;

        // A cutoff at the moment it finished keeps it; a later one takes it, a batch at a time
        // (a tenth of the batch size in deliveries, which carry up to ten attempts each).
        assert_eq!(sweep_all(store, RetentionTable::Deliveries, 170, 10).await?, [0]);
        assert_eq!(sweep_all(store, RetentionTable::Deliveries, 171, 10).await?, [1, 0]);
        let left = store.list_deliveries(acme, hook.id, &every_delivery()).await?;
        let mut left: Vec<Uuid> = left.iter().map(|d| d.id).collect();
        left.sort();
        let waiting_id = left.iter().copied().find(|id| *id != retrying.delivery.id);
        assert_eq!(left.len(), 2, "left: {left:?}");
        let (w, _) = delivery(store, acme, waiting_id.unwrap_or_default()).await?;
        assert_eq!((w.event_id, w.status, w.attempts), (waiting.event_id, DeliveryStatus::Pending, 0));
        Ok(())
    }
}
