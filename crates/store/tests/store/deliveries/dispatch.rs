//! Finding events turned into deliveries: claimed for a lease, stamped once dispatched.

use super::*;

contract_test! {
    async fn finding_events_are_claimed_for_a_lease_and_stamped_once_dispatched(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let findings = open_findings(
            store,
            contoso,
            &[("relay:tcp", Severity::High), ("dns:a", Severity::Medium)],
            at(10),
        )
        .await?;

        let first = store.claim_undispatched_events(1, LEASE, at(20)).await?;
        let rest = store.claim_undispatched_events(10, LEASE, at(20)).await?;
        assert_eq!((first.len(), rest.len()), (1, 1), "a limit of one, then the other one");
        let claimed: Vec<_> = first.into_iter().chain(rest).collect();
        for e in &claimed {
            let finding = findings.iter().find(|f| f.id == e.finding.id).expect("one of the opened findings");
            assert_eq!(&e.finding, finding);
            assert_eq!(
                (e.org_id, e.tenant_id, e.tenant_name.as_str()),
                (acme.org_id, contoso.tenant_id, "Contoso")
            );
            assert_eq!(
                (e.event.finding_id, e.event.kind, e.event.at, e.event.actor.as_str()),
                (finding.id, FindingEventKind::Opened, at(10), "system")
            );
        }
        assert_eq!(claimed.iter().map(|e| e.finding.id).collect::<HashSet<_>>().len(), 2);

        // Held for the lease: another dispatcher gets nothing meanwhile; after it, they come back.
        assert!(store.claim_undispatched_events(10, LEASE, at(49)).await?.is_empty());
        let again = store.claim_undispatched_events(10, LEASE, at(50)).await?;
        let ids: HashSet<Uuid> = claimed.iter().map(|e| e.event.id).collect();
        assert_eq!(again.iter().map(|e| e.event.id).collect::<HashSet<_>>(), ids);

        let event_ids: Vec<Uuid> = again.iter().map(|e| e.event.id).collect();
        let deliveries: Vec<NewDelivery> = again
            .iter()
            .map(|e| NewDelivery {
                org_id: e.org_id,
                integration_id: hook.id,
                event_id: e.event.id,
                event_type: "finding.opened".into(),
                tenant_id: Some(e.tenant_id),
                finding_id: Some(e.finding.id),
                ticket_key: Some(e.finding.fingerprint.clone()),
                payload: json!({ "title": e.finding.title, "tenant": e.tenant_name }),
                occurred_at: e.event.at,
            })
            .collect();
        assert_eq!(store.record_dispatch(&event_ids, &deliveries, at(51)).await?, 2);
        assert!(
            store.claim_undispatched_events(10, LEASE, at(10_000)).await?.is_empty(),
            "stamped events are never claimed again"
        );

        let listed = store.list_deliveries(acme, hook.id, &every_delivery()).await?;
        assert_eq!(listed.iter().map(|d| d.event_id).collect::<HashSet<_>>(), ids);
        for d in &listed {
            let sent = deliveries.iter().find(|n| n.event_id == d.event_id).expect("dispatched");
            assert_eq!(
                (d.org_id, d.integration_id, d.event_type.as_str(), d.tenant_id, d.finding_id),
                (acme.org_id, hook.id, "finding.opened", sent.tenant_id, sent.finding_id)
            );
            assert_eq!((&d.ticket_key, &d.payload, d.occurred_at), (&sent.ticket_key, &sent.payload, at(10)));
            assert_eq!(
                (d.status, d.attempts, d.next_attempt_at, d.last_attempt_at, d.last_status),
                (DeliveryStatus::Pending, 0, Some(at(51)), None, None)
            );
            assert_eq!((d.created_at, d.updated_at), (at(51), at(51)));
        }
        assert_eq!(store.count_pending_deliveries().await?, 2);

        // The same (integration, event) again — a dispatcher whose stamp was lost — is ignored.
        assert_eq!(store.record_dispatch(&event_ids, &deliveries, at(52)).await?, 0);
        let fresh = event(&hook, None, 53);
        assert_eq!(store.enqueue_deliveries(&[deliveries[0].clone(), fresh], at(53)).await?, 1);
        assert_eq!(store.list_deliveries(acme, hook.id, &every_delivery()).await?.len(), 3);
        Ok(())
    }
}

contract_test! {
    async fn one_claim_brings_events_of_many_tenants_in_the_order_they_happened(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let late = open_findings(store, contoso, &[("relay:tcp", Severity::High)], at(30)).await?;
        let early = open_findings(
            store,
            fabrikam,
            &[("dns:a", Severity::Medium), ("proxy:b", Severity::Low)],
            at(10),
        )
        .await?;

        let claimed = store.claim_undispatched_events(10, LEASE, at(40)).await?;
        let seen: Vec<_> = claimed.iter().map(|e| (e.event.at, e.tenant_name.as_str(), e.finding.id)).collect();
        let mut early_ids: Vec<_> = claimed[..2].iter().map(|e| e.event.id).collect();
        early_ids.sort();
        assert_eq!(claimed[..2].iter().map(|e| e.event.id).collect::<Vec<_>>(), early_ids, "same instant: by id");
        assert_eq!(seen[2], (at(30), "Contoso", late[0].id));
        assert_eq!(
            seen[..2].iter().map(|(at, tenant, id)| (*at, *tenant, *id)).collect::<HashSet<_>>(),
            early.iter().map(|f| (at(10), "Fabrikam", f.id)).collect::<HashSet<_>>()
        );
        for e in &claimed {
            assert_eq!(e.finding.id, e.event.finding_id);
            assert_eq!(e.org_id, acme.org_id);
            assert_eq!(e.tenant_id, if e.tenant_name == "Contoso" { contoso.tenant_id } else { fabrikam.tenant_id });
        }
        // Stamped in one call, none comes back, even after the lease.
        let ids: Vec<_> = claimed.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&ids, &[], at(41)).await?;
        assert!(store.claim_undispatched_events(10, LEASE, at(10_000)).await?.is_empty());
        Ok(())
    }
}
