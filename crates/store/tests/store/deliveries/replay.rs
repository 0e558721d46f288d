//! Replays: one delivery, or every failed one since a time; nothing for an integration that is
//! switched off or gone.

use super::*;

contract_test! {
    async fn failed_deliveries_are_replayed_one_or_every_one_since_a_time(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let queued =
            [event(&hook, None, 10), event(&hook, None, 20), event(&hook, None, 30), event(&hook, None, 40)];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [d10, d20, d30, d40] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };
        for gave_up in [d10, d20, d30] {
            complete(store, gave_up, failed(gave_up.lease_id, 101, None)).await?;
        }
        complete(store, d40, failed(d40.lease_id, 101, Some(5_000))).await?;

        // One failed delivery starts over, keeping its history.
        assert_eq!(
            store.replay_deliveries(acme, hook.id, Some(d10.delivery.id), None, ACTOR, at(200)).await?,
            1
        );
        let (d, attempts) = delivery(store, acme, d10.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, attempts.len()),
            (DeliveryStatus::Pending, 0, Some(at(200)), 1)
        );
        // A pending one is not replayed (it is on its way anyway).
        for pending in [d10, d40] {
            let replayed = store
                .replay_deliveries(acme, hook.id, Some(pending.delivery.id), None, ACTOR, at(201))
                .await?;
            assert_eq!(replayed, 0);
        }
        assert_eq!(delivery(store, acme, d40.delivery.id).await?.0.next_attempt_at, Some(at(5_000)));

        // Every failed one of events since 25: only the event at 30.
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(25)), ACTOR, at(202)).await?, 1);
        let status =
            async |d: &ClaimedDelivery| anyhow::Ok(delivery(store, acme, d.delivery.id).await?.0.status);
        assert_eq!(
            (status(d20).await?, status(d30).await?),
            (DeliveryStatus::Failed, DeliveryStatus::Pending)
        );
        // And since the beginning, the rest.
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(203)).await?, 1);
        assert_eq!(status(d20).await?, DeliveryStatus::Pending);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(204)).await?, 0);
        assert_eq!(occurred(&claim(store, 300).await?), [at(10), at(20), at(30)], "due again");

        let log = store.list_audit_log(acme, None, 50).await?;
        let replays: Vec<_> = log.iter().filter(|e| e.action == "delivery.replay").collect();
        assert_eq!(
            replays.iter().map(|e| (e.target.clone(), e.actor.as_str(), e.at)).collect::<Vec<_>>(),
            [
                (hook.id.to_string(), ACTOR, at(203)),
                (hook.id.to_string(), ACTOR, at(202)),
                (d10.delivery.id.to_string(), ACTOR, at(200)),
            ],
            "one entry per replay that did something"
        );
        assert!(replays.iter().all(|e| e.after.as_ref().is_some_and(|a| a["replayed"] == json!(1))));
        Ok(())
    }
}

contract_test! {
    async fn a_switched_off_or_deleted_integration_replays_nothing(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10), event(&hook, None, 20)], at(100)).await?;
        for c in claim(store, 100).await? {
            complete(store, &c, failed(c.lease_id, 101, None)).await?;
        }
        let ids: Vec<Uuid> =
            store.list_deliveries(acme, hook.id, &every_delivery()).await?.iter().map(|d| d.id).collect();
        assert_eq!(ids.len(), 2);

        assert!(store.disable_integration(acme, hook.id, "every attempt failed", &[], at(102)).await?);
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[0]), None, ACTOR, at(103)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(0)), ACTOR, at(104)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(105)).await?, 0);
        for id in &ids {
            assert_eq!(delivery(store, acme, *id).await?.0.status, DeliveryStatus::Failed);
        }
        let log = store.list_audit_log(acme, None, 50).await?;
        assert!(log.iter().all(|e| e.action != "delivery.replay"), "nothing replayed: {log:?}");

        // Switched on, they can be.
        let off = current(store, acme, hook.id).await?;
        stored(
            store
                .update_integration(acme, hook.id, off.version, &webhook("Ops hook"), ACTOR, at(106))
                .await?,
        )?;
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[0]), None, ACTOR, at(107)).await?, 1);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, Some(at(0)), ACTOR, at(108)).await?, 1);

        // Deleted, nothing is left to replay.
        assert!(store.delete_integration(acme, hook.id, ACTOR, at(109)).await?);
        assert_eq!(store.replay_deliveries(acme, hook.id, Some(ids[1]), None, ACTOR, at(110)).await?, 0);
        assert_eq!(store.replay_deliveries(acme, hook.id, None, None, ACTOR, at(111)).await?, 0);
        Ok(())
    }
}
