//! Attempts and the tickets they keep: success, retry and giving up; one ticket per problem,
//! shown on its findings; a ticket deleted in the destination is created anew.

use super::*;

contract_test! {
    async fn an_attempt_succeeds_schedules_a_retry_or_gives_up(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let queued = [event(&hook, None, 10), event(&hook, None, 20), event(&hook, None, 30)];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [retried, exhausted, delivered] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };

        complete(store, retried, failed(retried.lease_id, 101, Some(400))).await?;
        let (d, attempts) = delivery(store, acme, retried.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.updated_at),
            (DeliveryStatus::Pending, 1, Some(at(400)), Some(at(101)), at(101))
        );
        assert_eq!((d.last_status, d.last_error.as_deref()), (Some(503), Some("503 Service Unavailable")));
        assert_eq!(attempts.len(), 1);
        let a = &attempts[0];
        assert_eq!(
            (a.delivery_id, a.attempt, a.at, a.succeeded, a.status, a.latency_ms),
            (d.id, 1, at(101), false, Some(503), 1_500)
        );
        assert_eq!(
            (a.error.as_deref(), a.response_excerpt.as_deref()),
            (Some("503 Service Unavailable"), Some("upstream down"))
        );
        assert_eq!(a.exchanges, json!([{ "request": "POST /wbd", "status": 503, "latency_ms": 1500 }]));
        let health = current(store, acme, hook.id).await?;
        assert_eq!((health.failing_since, health.last_success_at), (Some(at(101)), None));

        complete(store, exhausted, failed(exhausted.lease_id, 102, None)).await?;
        let (d, _) = delivery(store, acme, exhausted.delivery.id).await?;
        assert_eq!((d.status, d.attempts, d.next_attempt_at), (DeliveryStatus::Failed, 1, None));
        assert_eq!(current(store, acme, hook.id).await?.failing_since, Some(at(101)), "the streak's start");

        complete(store, delivered, succeeded(delivered.lease_id, 103)).await?;
        let (d, attempts) = delivery(store, acme, delivered.delivery.id).await?;
        assert_eq!(
            (d.status, d.attempts, d.next_attempt_at, d.last_status, d.last_error.as_deref()),
            (DeliveryStatus::Succeeded, 1, None, Some(200), None)
        );
        assert_eq!(
            attempts.iter().map(|a| (a.succeeded, a.status, a.exchanges.clone())).collect::<Vec<_>>(),
            [(true, Some(200), json!([{ "request": "POST /wbd", "status": 200, "latency_ms": 42 }]))]
        );
        let health = current(store, acme, hook.id).await?;
        assert_eq!((health.failing_since, health.last_success_at), (None, Some(at(103))));

        // The retry is the delivery's second attempt.
        let again = claim(store, 400).await?;
        assert_eq!(
            again.iter().map(|c| (c.delivery.id, c.delivery.attempts)).collect::<Vec<_>>(),
            [(retried.delivery.id, 1)]
        );
        complete(store, &again[0], succeeded(again[0].lease_id, 401)).await?;
        let (d, attempts) = delivery(store, acme, retried.delivery.id).await?;
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 2));
        assert_eq!(
            attempts.iter().map(|a| (a.attempt, a.succeeded)).collect::<Vec<_>>(),
            [(1, false), (2, true)]
        );
        assert_eq!(store.count_pending_deliveries().await?, 0);
        Ok(())
    }
}

contract_test! {
    async fn attempts_recorded_together_are_each_written_and_health_follows_their_order(store) {
        let acme = org(store, "Acme MSP").await?;
        let recovers = integration(store, acme, webhook("Recovers")).await?;
        let breaks = integration(store, acme, webhook("Breaks")).await?;
        let queued = [
            event(&recovers, None, 10),
            event(&recovers, None, 20),
            event(&breaks, None, 30),
            event(&breaks, None, 40),
            event(&breaks, None, 50),
        ];
        store.enqueue_deliveries(&queued, at(100)).await?;
        let claimed = claim(store, 100).await?;
        let [r1, r2, b1, b2, lost] = &claimed[..] else { anyhow::bail!("claimed {claimed:?}") };
        assert_eq!((r1.integration.id, b1.integration.id, lost.integration.id), (recovers.id, breaks.id, breaks.id));

        // One group, in the order the attempts ended: the first integration fails then
        // delivers; the second delivers then is throttled; one attempt's lease is not the
        // delivery's any more.
        let throttled = AttemptRecord {
            status: Some(429),
            throttle_until: Some(at(500)),
            ..failed(b2.lease_id, 104, Some(500))
        };
        let stale = succeeded(Uuid::now_v7(), 105);
        let group = [
            (&r1.delivery, &failed(r1.lease_id, 101, Some(400))),
            (&r2.delivery, &succeeded(r2.lease_id, 102)),
            (&b1.delivery, &succeeded(b1.lease_id, 103)),
            (&b2.delivery, &throttled),
            (&lost.delivery, &stale),
        ];
        assert_eq!(store.complete_attempts(&group).await?, [true, true, true, true, false]);

        let (d, attempts) = delivery(store, acme, r1.delivery.id).await?;
        assert_eq!((d.status, d.attempts, d.next_attempt_at), (DeliveryStatus::Pending, 1, Some(at(400))));
        assert_eq!(attempts.iter().map(|a| (a.at, a.succeeded, a.status)).collect::<Vec<_>>(), [(at(101), false, Some(503))]);
        let (d, attempts) = delivery(store, acme, b2.delivery.id).await?;
        assert_eq!((d.status, d.last_status, d.next_attempt_at), (DeliveryStatus::Pending, Some(429), Some(at(500))));
        assert_eq!(attempts.len(), 1);
        for done in [r2, b1] {
            let (d, attempts) = delivery(store, acme, done.delivery.id).await?;
            assert_eq!((d.status, d.attempts, attempts.len()), (DeliveryStatus::Succeeded, 1, 1));
        }
        // The stale attempt wrote nothing: the delivery is still held by its own lease.
        let (d, attempts) = delivery(store, acme, lost.delivery.id).await?;
        assert_eq!((d.status, d.attempts, d.last_attempt_at, attempts.len()), (DeliveryStatus::Pending, 0, None, 0));

        let health = current(store, acme, recovers.id).await?;
        assert_eq!((health.failing_since, health.last_success_at), (None, Some(at(102))), "failed, then delivered");
        let health = current(store, acme, breaks.id).await?;
        assert_eq!(
            (health.failing_since, health.last_success_at, health.throttled_until, health.throttle_streak),
            (Some(at(104)), Some(at(103)), Some(at(500)), 1),
            "delivered, then throttled"
        );

        // The lease's own holder records it later.
        complete(store, lost, succeeded(lost.lease_id, 106)).await?;
        assert_eq!(delivery(store, acme, lost.delivery.id).await?.0.status, DeliveryStatus::Succeeded);
        assert!(store.complete_attempts(&[]).await?.is_empty());
        Ok(())
    }
}

contract_test! {
    async fn a_ticket_is_kept_per_problem_and_shown_on_its_findings(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let c = open_findings(store, contoso, &[("relay:tcp", Severity::High)], at(10)).await?.remove(0);
        let f = open_findings(store, fabrikam, &[("relay:tcp", Severity::High)], at(10)).await?.remove(0);
        let psa = integration(store, acme, jira("Jira")).await?;
        const KEY: &str = "relay|relay:tcp";
        let url = Some("https://acme.atlassian.net/browse/OPS-7".to_owned());

        let queued = [finding_event(&psa, &c, KEY, 10), finding_event(&psa, &f, KEY, 11)];
        store.enqueue_deliveries(&queued, at(20)).await?;
        let first = claim(store, 20).await?;
        assert_eq!(first.len(), 1, "Fabrikam's event waits for the ticket's first");
        let first = &first[0];
        assert_eq!((first.delivery.finding_id, first.ticket.as_ref()), (Some(c.id), None));

        // The create is sent, its answer lost: the retry sees the ticket is being created.
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(21)).await?);
        complete(store, first, failed(first.lease_id, 22, Some(50))).await?;
        let retry = claim(store, 50).await?.remove(0);
        let creating = retry.ticket.clone().expect("ticket being created");
        assert_eq!(
            (creating.integration_id, creating.ticket_key.as_str(), creating.state),
            (psa.id, KEY, TicketState::Creating)
        );
        assert_eq!((creating.external_id, creating.url, creating.created_at), (None, None, at(21)));

        // It finds (or creates) the ticket and links the finding.
        let created = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-7".into(),
                url: url.clone(),
                state: TicketState::Open,
            }),
            finding_open: Some(true),
            ..succeeded(retry.lease_id, 51)
        };
        complete(store, &retry, created).await?;
        let shown = FindingTicket {
            finding_id: c.id,
            integration_id: psa.id,
            integration_name: "Jira".into(),
            kind: "jira".into(),
            external_id: Some("OPS-7".into()),
            url: url.clone(),
            state: TicketState::Open,
        };
        assert_eq!(store.list_finding_tickets(acme, &[c.id, f.id]).await?, std::slice::from_ref(&shown));

        // Fabrikam's finding joins the same ticket.
        let joined = claim(store, 52).await?.remove(0);
        assert_eq!(joined.delivery.finding_id, Some(f.id));
        let ticket = joined.ticket.clone().expect("the ticket");
        assert_eq!(
            (ticket.external_id.as_deref(), ticket.url.clone(), ticket.state, ticket.id),
            (Some("OPS-7"), url.clone(), TicketState::Open, creating.id)
        );
        let noted = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Open)),
            finding_open: Some(true),
            ..succeeded(joined.lease_id, 53)
        };
        complete(store, &joined, noted).await?;
        assert_eq!(
            store.ticket_open_findings(psa.id, KEY).await?,
            [
                (c.id, contoso.tenant_id, "Contoso".to_owned()),
                (f.id, fabrikam.tenant_id, "Fabrikam".to_owned())
            ]
        );
        assert_eq!(
            store.list_finding_tickets(acme, &[c.id, f.id]).await?,
            [shown.clone(), FindingTicket { finding_id: f.id, ..shown.clone() }]
        );

        // Both resolve: the ticket closes when its last finding does, keeping its id and link.
        let resolved = |finding: &Finding, secs| NewDelivery {
            event_type: "finding.resolved".into(),
            ..finding_event(&psa, finding, KEY, secs)
        };
        store.enqueue_deliveries(&[resolved(&c, 60), resolved(&f, 61)], at(62)).await?;
        let first_resolved = claim(store, 62).await?.remove(0);
        assert_eq!(first_resolved.delivery.finding_id, Some(c.id));
        let still_open = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Open)),
            finding_open: Some(false),
            ..succeeded(first_resolved.lease_id, 63)
        };
        complete(store, &first_resolved, still_open).await?;
        assert_eq!(
            store.ticket_open_findings(psa.id, KEY).await?,
            [(f.id, fabrikam.tenant_id, "Fabrikam".to_owned())]
        );
        let last_resolved = claim(store, 64).await?.remove(0);
        let closed = AttemptRecord {
            ticket: Some(TicketUpdate::State(TicketState::Closed)),
            finding_open: Some(false),
            ..succeeded(last_resolved.lease_id, 65)
        };
        complete(store, &last_resolved, closed).await?;
        assert!(store.ticket_open_findings(psa.id, KEY).await?.is_empty());
        assert_eq!(
            store.list_finding_tickets(acme, &[c.id]).await?,
            [FindingTicket { state: TicketState::Closed, ..shown.clone() }]
        );

        let globex = org(store, "Globex MSP").await?;
        assert!(store.list_finding_tickets(globex, &[c.id, f.id]).await?.is_empty());
        assert!(store.list_finding_tickets(acme, &[]).await?.is_empty());
        Ok(())
    }
}

contract_test! {
    async fn a_ticket_deleted_in_the_destination_is_created_anew_with_a_fresh_creating_time(store) {
        let acme = org(store, "Acme MSP").await?;
        let psa = integration(store, acme, jira("Jira")).await?;
        let queued = [event(&psa, Some("relay"), 10), event(&psa, Some("relay"), 20)];
        store.enqueue_deliveries(&queued, at(100)).await?;

        let first = claim(store, 100).await?.remove(0);
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(101)).await?);
        // Marking again (a retry after a lost answer) keeps the first create's time.
        assert!(store.mark_ticket_creating(&first.delivery, first.lease_id, at(102)).await?);
        let created = AttemptRecord {
            ticket: Some(TicketUpdate::Set {
                external_id: "OPS-1".into(),
                url: None,
                state: TicketState::Open,
            }),
            ..succeeded(first.lease_id, 103)
        };
        complete(store, &first, created).await?;

        // The next event finds OPS-1 deleted and creates a replacement: the ticket is being
        // created again, since now, and has forgotten OPS-1.
        let second = claim(store, 104).await?.remove(0);
        let known = second.ticket.clone().expect("ticket");
        assert_eq!((known.external_id.as_deref(), known.state), (Some("OPS-1"), TicketState::Open));
        assert!(store.mark_ticket_creating(&second.delivery, second.lease_id, at(105)).await?);
        complete(store, &second, failed(second.lease_id, 106, Some(110))).await?;
        let retry = claim(store, 110).await?.remove(0);
        let creating = retry.ticket.expect("ticket");
        assert_eq!(
            (creating.external_id, creating.state, creating.updated_at),
            (None, TicketState::Creating, at(105))
        );
        Ok(())
    }
}

contract_test! {
    async fn the_tickets_of_many_findings_come_in_the_order_asked(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let findings =
            open_findings(store, contoso, &[("relay:tcp", Severity::High), ("mx:25", Severity::Low)], at(10))
                .await?;
        let (a, b) = (&findings[0], &findings[1]);
        let psa = integration(store, acme, jira("Jira")).await?;
        let desk = integration(store, acme, jira("Desk")).await?;
        // `b` gets a ticket in each integration, `a` one in the second.
        let queued = [
            finding_event(&psa, b, "b", 10),
            finding_event(&desk, b, "b", 11),
            finding_event(&desk, a, "a", 12),
        ];
        store.enqueue_deliveries(&queued, at(20)).await?;
        let mut claimed = claim(store, 20).await?;
        assert_eq!(claimed.len(), 3);
        for (i, c) in claimed.drain(..).enumerate() {
            let record = AttemptRecord {
                ticket: Some(TicketUpdate::Set {
                    external_id: format!("OPS-{i}"),
                    url: None,
                    state: TicketState::Open,
                }),
                finding_open: Some(true),
                ..succeeded(c.lease_id, 21 + i as i64)
            };
            complete(store, &c, record).await?;
        }
        let shown = |ids: &[FindingId]| {
            let ids = ids.to_vec();
            async move {
                let tickets = store.list_finding_tickets(acme, &ids).await?;
                anyhow::Ok(
                    tickets
                        .into_iter()
                        .map(|t| (t.finding_id, t.integration_name, t.external_id))
                        .collect::<Vec<_>>(),
                )
            }
        };
        let b_tickets = [
            (b.id, "Jira".to_owned(), Some("OPS-0".to_owned())),
            (b.id, "Desk".to_owned(), Some("OPS-1".to_owned())),
        ];
        let a_ticket = (a.id, "Desk".to_owned(), Some("OPS-2".to_owned()));
        let mut expected = b_tickets.to_vec();
        expected.push(a_ticket.clone());
        assert_eq!(shown(&[b.id, a.id]).await?, expected);
        let mut expected = vec![a_ticket];
        expected.extend(b_tickets.iter().cloned());
        assert_eq!(shown(&[a.id, b.id]).await?, expected);

        // More ids than one query binds (and repeated ones) change nothing.
        let mut many: Vec<FindingId> = (0..1_200).map(|_| FindingId(Uuid::now_v7())).collect();
        many.insert(700, a.id);
        many.insert(10, b.id);
        many.push(a.id);
        assert_eq!(shown(&many).await?, {
            let mut e = b_tickets.to_vec();
            e.push((a.id, "Desk".to_owned(), Some("OPS-2".to_owned())));
            e
        });
        Ok(())
    }
}
