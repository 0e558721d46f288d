//! Switching an integration off raises a finding in the tenants waiting for it; its next
//! success resolves it.

use super::*;

contract_test! {
    async fn switching_an_integration_off_raises_a_finding_that_its_next_success_resolves(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let northwind = tenant(store, acme, "Northwind").await?;
        let mut problems = Vec::new();
        for scope in [contoso, fabrikam, northwind] {
            problems.extend(open_findings(store, scope, &[("relay:tcp", Severity::High)], at(10)).await?);
        }
        let psa = integration(store, acme, jira("Jira")).await?;
        let chat =
            integration(store, acme, IntegrationWrite { kind: "teams".into(), ..webhook("Teams") }).await?;
        // The findings' own events are dispatched already.
        let opened = store.claim_undispatched_events(100, LEASE, at(15)).await?;
        let opened_ids: Vec<_> = opened.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&opened_ids, &[], at(15)).await?;

        // Contoso's delivery waits for a retry, Fabrikam's failed, Northwind's went out.
        let queued: Vec<_> = problems
            .iter()
            .enumerate()
            .map(|(i, p)| finding_event(&psa, p, &p.id.to_string(), 10 + i as i64))
            .collect();
        store.enqueue_deliveries(&queued, at(20)).await?;
        let [c, f, n] = &claim(store, 20).await?[..] else { anyhow::bail!("expected three claims") };
        complete(store, c, failed(c.lease_id, 21, Some(1_000))).await?;
        complete(store, f, failed(f.lease_id, 21, None)).await?;
        complete(store, n, succeeded(n.lease_id, 21)).await?;

        let notice = NewDelivery { event_type: "integration.disabled".into(), ..event(&chat, None, 30) };
        let reason = "410 Gone from https://acme.atlassian.net";
        assert!(
            store.disable_integration(acme, psa.id, reason, std::slice::from_ref(&notice), at(30)).await?
        );
        assert!(!store.disable_integration(acme, psa.id, "again", &[event(&chat, None, 31)], at(31)).await?);
        let off = current(store, acme, psa.id).await?;
        assert_eq!(
            (off.enabled, off.disabled_reason.as_deref(), off.disabled_at, off.version),
            (false, Some(reason), Some(at(30)), 2)
        );
        // The other integration hears about it, once.
        let notices = store.list_deliveries(acme, chat.id, &every_delivery()).await?;
        assert_eq!(
            notices.iter().map(|d| (d.event_id, d.event_type.as_str())).collect::<Vec<_>>(),
            [(notice.event_id, "integration.disabled")]
        );
        let log = store.list_audit_log(acme, None, 50).await?;
        let disabled: Vec<_> = log.iter().filter(|e| e.action == "integration.disable").collect();
        assert_eq!(disabled.len(), 1);
        assert_eq!(
            (disabled[0].actor.as_str(), disabled[0].target.clone(), disabled[0].at),
            ("system", psa.id.to_string(), at(30))
        );

        // Each tenant whose events wait for it (Contoso) or failed (Fabrikam) has a finding.
        let raised_filter = FindingFilter {
            rule_id: Some(INTEGRATION_DISABLED_RULE.into()),
            limit: 100,
            ..FindingFilter::default()
        };
        let raised = store.list_findings(acme, &raised_filter).await?;
        assert_eq!(
            raised.iter().map(|r| r.tenant_id).collect::<HashSet<_>>(),
            HashSet::from([contoso.tenant_id, fabrikam.tenant_id])
        );
        for r in &raised {
            assert_eq!(
                (r.status, r.severity, r.opened_at, r.subject.clone()),
                (FindingStatus::Open, Severity::High, at(30), format!("integration:{}", psa.id))
            );
            assert!(r.title.contains("Jira") && r.summary.contains(reason), "{r:?}");
        }
        // With an event each, so they are announced like any finding.
        let announced = store.claim_undispatched_events(100, LEASE, at(31)).await?;
        assert_eq!(
            announced.iter().map(|e| (e.tenant_name.clone(), e.event.kind)).collect::<HashSet<_>>(),
            HashSet::from([
                ("Contoso".to_owned(), FindingEventKind::Opened),
                ("Fabrikam".to_owned(), FindingEventKind::Opened)
            ])
        );
        assert!(announced.iter().all(|e| e.finding.rule_id == INTEGRATION_DISABLED_RULE));
        let announced_ids: Vec<_> = announced.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&announced_ids, &[], at(31)).await?;

        // Another integration's success does not resolve them, nor does switching it on alone.
        let told = claim(store, 32).await?;
        assert_eq!(told.iter().map(|t| t.integration.id).collect::<Vec<_>>(), [chat.id]);
        complete(store, &told[0], succeeded(told[0].lease_id, 33)).await?;
        let version = current(store, acme, psa.id).await?.version;
        stored(store.update_integration(acme, psa.id, version, &jira("Jira"), ACTOR, at(999)).await?)?;
        let still_raised = store.list_findings(acme, &raised_filter).await?;
        assert!(still_raised.iter().all(|f| f.status == FindingStatus::Open));

        // Its next delivery that goes through does.
        let resumed = claim(store, 1_000).await?;
        assert_eq!(resumed.iter().map(|r| r.delivery.id).collect::<Vec<_>>(), [c.delivery.id]);
        complete(store, &resumed[0], succeeded(resumed[0].lease_id, 1_001)).await?;
        let after = store.list_findings(acme, &raised_filter).await?;
        assert_eq!(after.len(), 2);
        assert!(
            after.iter().all(|f| f.status == FindingStatus::Resolved && f.resolved_at == Some(at(1_001)))
        );
        let resolved = store.claim_undispatched_events(100, LEASE, at(1_002)).await?;
        assert_eq!(
            resolved.iter().map(|e| e.event.kind).collect::<Vec<_>>(),
            [FindingEventKind::Resolved, FindingEventKind::Resolved]
        );
        let resolved_ids: Vec<_> = resolved.iter().map(|e| e.event.id).collect();
        store.record_dispatch(&resolved_ids, &[], at(1_002)).await?;

        // Switched off again, only Fabrikam (its delivery still failed) has the finding reopened.
        assert!(store.disable_integration(acme, psa.id, reason, &[], at(2_000)).await?);
        let again = store.list_findings(acme, &raised_filter).await?;
        let states: HashSet<_> = again.iter().map(|r| (r.tenant_id, r.status, r.reopen_count)).collect();
        assert_eq!(
            states,
            HashSet::from([
                (contoso.tenant_id, FindingStatus::Resolved, 0),
                (fabrikam.tenant_id, FindingStatus::Open, 1)
            ])
        );
        let reopened = store.claim_undispatched_events(100, LEASE, at(2_001)).await?;
        assert_eq!(
            reopened.iter().map(|e| (e.tenant_id, e.event.kind)).collect::<Vec<_>>(),
            [(fabrikam.tenant_id, FindingEventKind::Reopened)]
        );
        Ok(())
    }
}
