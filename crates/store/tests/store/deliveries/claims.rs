//! Claims: only due deliveries of enabled integrations, within each integration's in-flight
//! slots, hourly budget and throttling, a ticket's deliveries one at a time in event order, and
//! never one delivery twice.

use super::*;

contract_test! {
    async fn only_due_deliveries_of_enabled_integrations_are_claimed(store) {
        let acme = org(store, "Acme MSP").await?;
        let on = integration(store, acme, webhook("On")).await?;
        let off = integration(store, acme, IntegrationWrite { enabled: false, ..webhook("Off") }).await?;
        assert_eq!(
            store.enqueue_deliveries(&[event(&on, None, 10), event(&off, None, 10)], at(100)).await?,
            2
        );

        assert!(claim(store, 99).await?.is_empty(), "not due before it was queued");
        let claimed = claim(store, 100).await?;
        assert_eq!(claimed.len(), 1, "the switched-off integration's delivery waits");
        let first = &claimed[0];
        assert_eq!((&first.integration, first.ticket.as_ref()), (&on, None));
        assert_eq!(
            (first.delivery.integration_id, first.delivery.status, first.delivery.attempts),
            (on.id, DeliveryStatus::Pending, 0)
        );

        // A retry waits for its time.
        complete(store, first, failed(first.lease_id, 101, Some(200))).await?;
        assert!(claim(store, 199).await?.is_empty());
        let retry = claim(store, 200).await?;
        assert_eq!(
            retry.iter().map(|c| (c.delivery.id, c.delivery.attempts)).collect::<Vec<_>>(),
            [(first.delivery.id, 1)]
        );

        // Switched on, its waiting delivery goes out.
        stored(store.update_integration(acme, off.id, off.version, &webhook("Off"), ACTOR, at(201)).await?)?;
        let resumed = claim(store, 201).await?;
        assert_eq!(resumed.iter().map(|c| c.integration.id).collect::<Vec<_>>(), [off.id]);
        Ok(())
    }
}

contract_test! {
    async fn a_claim_takes_nothing_of_an_integration_switched_off_while_it_runs(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10)], at(100)).await?;

        // Another process switches it off while the claim runs: on PostgreSQL the claim has
        // chosen its candidates by then, and waits for the integration's row.
        let switch_off = "UPDATE integrations SET enabled = FALSE, version = version + 1 WHERE id = $1";
        let claimed = store
            .while_another_writes(switch_off, hook.id, Duration::from_millis(300), claim(store, 100))
            .await??;
        assert!(claimed.is_empty(), "a switched-off integration's delivery waits: {claimed:?}");

        // Switched on again, it goes out.
        let off = current(store, acme, hook.id).await?;
        stored(
            store.update_integration(acme, hook.id, off.version, &webhook("Hook"), ACTOR, at(101)).await?,
        )?;
        assert_eq!(claim(store, 101).await?.len(), 1);
        Ok(())
    }
}

contract_test! {
    async fn an_integration_never_has_more_than_max_in_flight_deliveries_leased(store) {
        let acme = org(store, "Acme MSP").await?;
        let narrow =
            integration(store, acme, IntegrationWrite { max_in_flight: 2, ..webhook("Slow PSA") }).await?;
        let wide = integration(store, acme, webhook("Fast hook")).await?;
        let mut queued: Vec<_> = (0..5).map(|i| event(&narrow, None, 10 + i)).collect();
        queued.push(event(&wide, None, 10));
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 6);

        let first = claim(store, 100).await?;
        let of = |claimed: &[ClaimedDelivery], i: &Integration| {
            claimed.iter().filter(|c| c.integration.id == i.id).cloned().collect::<Vec<_>>()
        };
        assert_eq!((of(&first, &narrow).len(), of(&first, &wide).len()), (2, 1));
        assert!(claim(store, 110).await?.is_empty(), "both slots are held");

        // A finished delivery frees its slot.
        let done = &of(&first, &narrow)[0];
        complete(store, done, succeeded(done.lease_id, 111)).await?;
        let second = claim(store, 112).await?;
        assert_eq!(of(&second, &narrow).len(), 1);
        assert!(claim(store, 113).await?.is_empty());

        // So does a lease that ran out (its worker is gone): at 130 the first lease expired, the
        // one taken at 112 still runs.
        let third = claim(store, 130).await?;
        assert_eq!(of(&third, &narrow).len(), 1, "one slot free");
        assert_eq!(
            of(&third, &narrow)[0].delivery.id,
            of(&first, &narrow)[1].delivery.id,
            "the expired one, being due first"
        );
        assert_eq!(of(&third, &wide).len(), 1, "the wide integration's expired lease too");
        Ok(())
    }
}

contract_test! {
    async fn the_hourly_budget_caps_the_deliveries_started_in_an_hour(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa =
            integration(store, acme, IntegrationWrite { hourly_budget: Some(3), ..webhook("PSA") }).await?;
        let queued: Vec<_> = (0..5).map(|i| event(&psa, None, 10 + i)).collect();
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 5);

        let first = claim(store, 100).await?;
        assert_eq!(occurred(&first), [at(10), at(11), at(12)]);
        for c in &first {
            complete(store, c, succeeded(c.lease_id, 101)).await?;
        }
        assert!(claim(store, 200).await?.is_empty(), "budget spent, though slots are free");
        assert!(claim(store, 100 + 3_599).await?.is_empty(), "still the same hour");

        let next_hour = claim(store, 100 + 3_600).await?;
        assert_eq!(occurred(&next_hour), [at(13), at(14)]);
        Ok(())
    }
}

contract_test! {
    async fn an_integration_at_its_limits_does_not_hold_up_the_others(store) {
        let acme = org(store, "Acme MSP").await?;
        let capped =
            integration(store, acme, IntegrationWrite { hourly_budget: Some(1), ..webhook("PSA") }).await?;
        let slow = integration(store, acme, IntegrationWrite { max_in_flight: 1, ..webhook("Slow") }).await?;
        let hook = integration(store, acme, webhook("Fast hook")).await?;
        // Long backlogs of the first two are due before the third's one delivery.
        let backlog: Vec<_> =
            (0..20).map(|i| event(&capped, None, i)).chain((0..20).map(|i| event(&slow, None, i))).collect();
        store.enqueue_deliveries(&backlog, at(100)).await?;
        store.enqueue_deliveries(&[event(&hook, None, 100)], at(101)).await?;

        // A worker with two free slots: once the budget is spent and the slot taken, the
        // backlogs must not crowd the third integration out of its claims.
        let mut claimed = Vec::new();
        for secs in [101, 102, 103] {
            claimed.extend(store.claim_deliveries(2, LEASE, at(secs)).await?);
        }
        let mut per_integration: Vec<_> = claimed.iter().map(|c| c.integration.name.as_str()).collect();
        per_integration.sort_unstable();
        assert_eq!(per_integration, ["Fast hook", "PSA", "Slow"]);
        assert!(store.claim_deliveries(2, LEASE, at(104)).await?.is_empty());
        Ok(())
    }
}

contract_test! {
    async fn a_ticket_s_deliveries_go_one_at_a_time_in_event_order(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        // Queued out of order, as events of different dispatcher runs may be.
        let queued = [
            event(&psa, Some("relay"), 30),
            event(&psa, Some("relay"), 10),
            event(&psa, Some("relay"), 20),
            event(&psa, Some("dns"), 15),
            event(&psa, None, 5),
        ];
        assert_eq!(store.enqueue_deliveries(&queued, at(100)).await?, 5);

        let first = claim(store, 100).await?;
        assert_eq!(occurred(&first), [at(5), at(10), at(15)], "per ticket only its oldest");
        // The oldest stays in the way while it waits for a retry.
        let relay = first.iter().find(|c| c.delivery.occurred_at == at(10)).expect("claimed");
        complete(store, relay, failed(relay.lease_id, 101, Some(300))).await?;
        for other in first.iter().filter(|c| c.delivery.id != relay.delivery.id) {
            complete(store, other, succeeded(other.lease_id, 101)).await?;
        }
        assert!(claim(store, 200).await?.is_empty());

        let retried = claim(store, 300).await?;
        assert_eq!(occurred(&retried), [at(10)]);
        complete(store, &retried[0], succeeded(retried[0].lease_id, 301)).await?;
        let second = claim(store, 302).await?;
        assert_eq!(occurred(&second), [at(20)]);
        complete(store, &second[0], succeeded(second[0].lease_id, 303)).await?;
        assert_eq!(occurred(&claim(store, 304).await?), [at(30)]);
        Ok(())
    }
}

contract_test! {
    async fn an_expired_lease_hands_the_delivery_out_again_and_the_late_worker_writes_nothing(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 10)], at(100)).await?;

        let first = claim(store, 100).await?.remove(0);
        assert!(claim(store, 129).await?.is_empty(), "held");
        let second = claim(store, 130).await?.remove(0);
        assert_eq!(second.delivery.id, first.delivery.id);
        assert_ne!(second.lease_id, first.lease_id, "a new lease");

        // The first worker comes back late: its word no longer counts.
        assert!(!store.mark_ticket_creating(&first.delivery, first.lease_id, at(131)).await?);
        let late = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-1".into(),
                url: None,
                state: TicketState::Open,
            }),
            ..succeeded(first.lease_id, 131)
        };
        assert!(!store.complete_attempt(&first.delivery, &late).await?);
        let (d, attempts) = delivery(store, acme, first.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.last_attempt_at, attempts.len()),
            (DeliveryStatus::Pending, 0, None, 0)
        );
        assert_eq!(current(store, acme, psa.id).await?.last_success_at, None);

        // The current holder's attempt counts, once.
        complete(store, &second, succeeded(second.lease_id, 132)).await?;
        assert!(!store.complete_attempt(&second.delivery, &succeeded(second.lease_id, 133)).await?);
        let (d, attempts) = delivery(store, acme, first.delivery.id).await?;
        assert_eq!((d.status, d.attempts, attempts.len()), (DeliveryStatus::Succeeded, 1, 1));
        assert!(!store.mark_ticket_creating(&second.delivery, second.lease_id, at(134)).await?);
        Ok(())
    }
}

contract_test! {
    async fn concurrent_claimers_never_share_a_delivery_nor_exceed_the_slots(store) {
        let acme = org(store, "Acme MSP").await?;
        let narrow =
            integration(store, acme, IntegrationWrite { max_in_flight: 3, ..webhook("Slow") }).await?;
        let wide =
            integration(store, acme, IntegrationWrite { max_in_flight: 1_000, ..webhook("Fast") }).await?;
        let mut queued: Vec<_> = (0..10).map(|i| event(&narrow, None, i)).collect();
        queued.extend((0..30).map(|i| event(&wide, None, i)));
        store.enqueue_deliveries(&queued, at(100)).await?;

        let claimers: Vec<_> = (0..4)
            .map(|_| {
                let shared = store.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = shared.claim_deliveries(3, LEASE, at(100)).await?;
                        if claimed.is_empty() {
                            return anyhow::Ok(mine);
                        }
                        mine.extend(claimed.into_iter().map(|c| (c.delivery.id, c.integration.id)));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut narrow_claimed = 0;
        for claimer in claimers {
            for (id, integration) in claimer.await?? {
                assert!(seen.insert(id), "delivery {id} was handed out twice");
                narrow_claimed += usize::from(integration == narrow.id);
            }
        }
        assert_eq!((seen.len(), narrow_claimed), (33, 3));
        Ok(())
    }
}

contract_test! {
    async fn a_throttled_integration_gets_nothing_until_its_pause_ends_and_others_go_on(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa =
            integration(store, acme, IntegrationWrite { max_in_flight: 2, ..webhook("Autotask") }).await?;
        let other = integration(store, acme, webhook("Ops hook")).await?;
        let queued = [event(&psa, None, 10), event(&psa, None, 11), event(&psa, None, 12)];
        store.enqueue_deliveries(&queued, at(100)).await?;

        // Two in flight at once both hear a 429: the longer pause holds, whatever the order.
        let both = claim(store, 100).await?;
        let [a, b] = &both[..] else { anyhow::bail!("claimed {both:?}") };
        complete(store, a, throttled(a.lease_id, 101, 105, 160)).await?;
        complete(store, b, throttled(b.lease_id, 102, 105, 130)).await?;
        let paused = current(store, acme, psa.id).await?;
        assert_eq!((paused.throttled_until, paused.throttle_streak), (Some(at(160)), 2));

        // Nothing of it is claimed while it is paused, not even the delivery that never heard
        // the 429; another integration's deliveries are.
        store.enqueue_deliveries(&[event(&other, None, 20)], at(110)).await?;
        let meanwhile = claim(store, 110).await?;
        assert_eq!(meanwhile.iter().map(|c| c.delivery.integration_id).collect::<Vec<_>>(), [other.id]);
        complete(store, &meanwhile[0], succeeded(meanwhile[0].lease_id, 111)).await?;
        assert!(claim(store, 159).await?.is_empty());

        // Once it is over, everything due goes; an answer that is not a throttle ends the streak.
        let resumed = claim(store, 160).await?;
        // The one due longest (since 100) first, then one of the two retried at 105.
        assert_eq!(resumed.len(), 2, "max_in_flight at a time");
        assert!(occurred(&resumed).contains(&at(12)), "{:?}", occurred(&resumed));
        for c in &resumed {
            complete(store, c, succeeded(c.lease_id, 161)).await?;
        }
        let calm = current(store, acme, psa.id).await?;
        assert_eq!((calm.throttled_until, calm.throttle_streak), (Some(at(160)), 0));
        assert_eq!(claim(store, 162).await?.len(), 1, "the last one follows");
        Ok(())
    }
}

contract_test! {
    async fn a_replayed_delivery_waits_while_a_later_one_of_its_ticket_is_in_flight(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 10)], at(100)).await?;
        let opened = claim(store, 100).await?.remove(0);
        complete(store, &opened, failed(opened.lease_id, 101, None)).await?;
        store.enqueue_deliveries(&[event(&psa, Some("relay"), 20)], at(102)).await?;
        let resolved = claim(store, 102).await?.remove(0);
        assert_eq!(resolved.delivery.occurred_at, at(20));

        // The older event is replayed while the newer one is being sent: it waits.
        assert_eq!(
            store.replay_deliveries(acme, psa.id, Some(opened.delivery.id), None, ACTOR, at(103)).await?,
            1
        );
        assert!(claim(store, 104).await?.is_empty(), "never two of one ticket at once");
        complete(store, &resolved, succeeded(resolved.lease_id, 105)).await?;
        let replayed = claim(store, 106).await?;
        assert_eq!(occurred(&replayed), [at(10)]);
        Ok(())
    }
}
