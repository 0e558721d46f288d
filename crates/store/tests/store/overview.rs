//! What the MSP overview and the background sweep read: tenant summaries worst first, silent
//! collectors, and the filtered, paginated findings list.

use wbd_store::*;

use crate::fixtures::{
    at, batch, enrolled_site, enrollment, only_findings, open_findings, org, pending_collector, result,
    tenant,
};

contract_test! {
    async fn the_sweep_finds_tenants_with_silent_active_collectors(store) {
        // Enrolled at(1): silent after at(901) unless they push.
        let quiet = enrolled_site(store, "Acme MSP").await?;
        let busy = enrolled_site(store, "Other MSP").await?;
        // Pushed at(950), so silent only after at(1550).
        store.ingest_batch(busy.scope, &batch(busy.collector.id, vec![], 950)).await?;
        let gone = enrolled_site(store, "Third MSP").await?;
        store.revoke_collector(gone.org, gone.collector.id, at(2)).await?;
        pending_collector(store, busy.scope, "never-enrolled").await?;
        // A second silent collector of the quiet tenant does not list it twice.
        pending_collector(store, quiet.scope, "second").await?;
        store.enroll_collector(&enrollment("second", at(1))).await?.map_err(|e| anyhow::anyhow!("{e}"))?;

        assert!(
            store.tenants_with_silent_collectors(at(901)).await?.is_empty(),
            "the deadline itself is not late"
        );
        assert_eq!(store.tenants_with_silent_collectors(at(1000)).await?, vec![quiet.scope]);
        let mut later = store.tenants_with_silent_collectors(at(2000)).await?;
        later.sort_by_key(|s| s.tenant_id);
        let mut expected = vec![quiet.scope, busy.scope];
        expected.sort_by_key(|s| s.tenant_id);
        assert_eq!(later, expected);
        Ok(())
    }
}

contract_test! {
    async fn summaries_count_open_findings_and_collectors_worst_first(store) {
        let acme = org(store, "Acme MSP").await?;
        let alpha = tenant(store, acme, "Alpha").await?;
        let bravo = tenant(store, acme, "Bravo").await?;
        let charlie = tenant(store, acme, "Charlie").await?;
        let delta = tenant(store, acme, "Delta").await?;
        let echo = tenant(store, acme, "Echo").await?;

        open_findings(store, alpha, &[("a:1", Severity::High)], at(10)).await?;
        let bravo_findings =
            open_findings(store, bravo, &[("b:1", Severity::Critical), ("b:2", Severity::Critical)], at(10))
                .await?;
        let resolve = FindingChange::Resolve {
            id: bravo_findings[1].id,
            expected_version: bravo_findings[1].version,
            summary: "fixed".into(),
        };
        assert_eq!(
            store.apply_evaluation(bravo, None, 0, &only_findings([resolve]), at(11)).await?,
            ApplyOutcome::Applied
        );
        open_findings(
            store,
            charlie,
            &[("c:1", Severity::High), ("c:2", Severity::High), ("c:3", Severity::Info)],
            at(10),
        )
        .await?;
        open_findings(
            store,
            echo,
            &[("e:1", Severity::High), ("e:2", Severity::Medium), ("e:3", Severity::Low)],
            at(10),
        )
        .await?;

        // Alpha: an active collector that pushed at(500), one pending, one revoked.
        pending_collector(store, alpha, "alpha-1").await?;
        let active = store
            .enroll_collector(&enrollment("alpha-1", at(1)))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Pushed at(500), so silent only after at(1100).
        store.ingest_batch(alpha, &batch(active.id, vec![result("tcp", "relay", 400, "a")], 500)).await?;
        pending_collector(store, alpha, "alpha-2").await?;
        let revoked = pending_collector(store, alpha, "alpha-3").await?;
        store.revoke_collector(acme, revoked.id, at(2)).await?;

        let summaries = store.list_tenant_summaries(acme, at(1000)).await?;
        let names: Vec<_> = summaries.iter().map(|s| s.tenant.name.as_str()).collect();
        assert_eq!(names, vec!["Bravo", "Charlie", "Echo", "Alpha", "Delta"]);

        let by_name =
            |name: &str| summaries.iter().find(|s| s.tenant.name == name).cloned().expect("summary");
        let bravo_summary = by_name("Bravo");
        assert_eq!(
            (bravo_summary.open_critical, bravo_summary.open_high),
            (1, 0),
            "resolved findings do not count"
        );
        let c = by_name("Charlie");
        assert_eq!((c.open_critical, c.open_high, c.open_medium, c.open_low, c.open_info), (0, 2, 0, 0, 1));
        let e = by_name("Echo");
        assert_eq!((e.open_high, e.open_medium, e.open_low), (1, 1, 1));
        let a = by_name("Alpha");
        assert_eq!(
            (a.open_high, a.collectors, a.silent_collectors, a.last_seen_at),
            (1, 2, 0, Some(at(500)))
        );
        let d = by_name("Delta");
        assert_eq!((d.open_critical, d.open_high, d.collectors, d.last_seen_at), (0, 0, 0, None));
        assert_eq!(d.tenant.id, delta.tenant_id);

        // Later, Alpha's active collector has gone silent.
        let alpha_later = store.get_tenant_summary(alpha, at(2000)).await?.expect("summary");
        assert_eq!((alpha_later.collectors, alpha_later.silent_collectors), (2, 1));
        assert_eq!(alpha_later.tenant, a.tenant);
        Ok(())
    }
}

contract_test! {
    async fn findings_filter_and_page_newest_first(store) {
        let acme = org(store, "Acme MSP").await?;
        let t1 = tenant(store, acme, "Contoso").await?;
        let t2 = tenant(store, acme, "Fabrikam").await?;
        let f1 = open_findings(store, t1, &[("relay:1", Severity::High)], at(10)).await?.remove(0);
        let f2 = open_findings(store, t1, &[("license:1", Severity::Low)], at(11)).await?.remove(0);
        let f3 = open_findings(store, t1, &[("relay:2", Severity::High)], at(12)).await?.remove(0);
        let resolve =
            FindingChange::Resolve { id: f3.id, expected_version: f3.version, summary: "fixed".into() };
        assert_eq!(
            store.apply_evaluation(t1, None, 0, &only_findings([resolve]), at(13)).await?,
            ApplyOutcome::Applied
        );
        let f4 = open_findings(store, t2, &[("relay:3", Severity::Critical)], at(14)).await?.remove(0);

        let ids = |found: Vec<Finding>| found.into_iter().map(|f| f.id).collect::<Vec<_>>();
        let filter = |f: FindingFilter| FindingFilter { limit: 50, ..f };

        assert_eq!(
            ids(store.list_findings(acme, &filter(FindingFilter::default())).await?),
            vec![f4.id, f3.id, f2.id, f1.id]
        );
        let tenant_only = filter(FindingFilter { tenant_id: Some(t2.tenant_id), ..Default::default() });
        assert_eq!(ids(store.list_findings(acme, &tenant_only).await?), vec![f4.id]);
        let open_only = filter(FindingFilter { status: Some(FindingStatus::Open), ..Default::default() });
        assert_eq!(ids(store.list_findings(acme, &open_only).await?), vec![f4.id, f2.id, f1.id]);
        let high = filter(FindingFilter { severity: Some(Severity::High), ..Default::default() });
        assert_eq!(ids(store.list_findings(acme, &high).await?), vec![f3.id, f1.id]);
        let relay_open_in_t1 = filter(FindingFilter {
            tenant_id: Some(t1.tenant_id),
            status: Some(FindingStatus::Open),
            rule_id: Some("relay".into()),
            ..Default::default()
        });
        assert_eq!(ids(store.list_findings(acme, &relay_open_in_t1).await?), vec![f1.id]);

        // Pages of two, following the cursor until it runs dry.
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = ids(store
                .list_findings(acme, &FindingFilter { before, limit: 2, ..Default::default() })
                .await?);
            if page.is_empty() {
                break;
            }
            before = page.last().copied();
            pages.push(page);
        }
        assert_eq!(pages, vec![vec![f4.id, f3.id], vec![f2.id, f1.id]]);
        Ok(())
    }
}
