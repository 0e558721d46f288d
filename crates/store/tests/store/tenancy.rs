//! Organisation isolation: another organisation's ids answer `None` or nothing, never data.

use wbd_store::*;

use crate::fixtures::{at, batch, enrolled_site, only_findings, open_findings, org, result, tenant};

contract_test! {
    async fn another_organisation_sees_nothing(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        store
            .ingest_batch(site.scope, &batch(site.collector.id, vec![result("tcp", "relay", 10, "a")], 10))
            .await?;
        let finding =
            open_findings(store, site.scope, &[("relay:tcp", Severity::High)], at(20)).await?.remove(0);
        let key = store.create_api_key(site.org, "ci", Role::OrgAdmin, "wbd_1", "acme-key", at(1)).await?;

        let intruder = org(store, "Intruder MSP").await?;
        let own_tenant = tenant(store, intruder, "Fabrikam").await?;
        // A scope pairing the intruder's organisation with Acme's tenant, as a forged path would.
        let forged = TenantScope { org_id: intruder.org_id, tenant_id: site.scope.tenant_id };

        assert_eq!(store.get_tenant(intruder, site.scope.tenant_id).await?, None);
        assert_eq!(store.get_tenant_summary(forged, at(30)).await?, None);
        let summaries = store.list_tenant_summaries(intruder, at(30)).await?;
        assert_eq!(summaries.iter().map(|s| s.tenant.id).collect::<Vec<_>>(), vec![own_tenant.tenant_id]);
        assert_eq!(store.get_collector(intruder, site.collector.id).await?, None);
        assert!(store.list_collectors(intruder, None).await?.is_empty());
        assert!(store.list_collectors(intruder, Some(site.scope.tenant_id)).await?.is_empty());
        assert_eq!(store.revoke_collector(intruder, site.collector.id, at(30)).await?, None);
        assert_eq!(store.revoke_api_key(intruder, key.id, at(30)).await?, None);
        assert!(store.list_api_keys(intruder).await?.is_empty());
        assert_eq!(store.get_finding(intruder, finding.id).await?, None);
        assert!(store.list_finding_events(intruder, finding.id).await?.is_empty());
        let all = FindingFilter { limit: 100, ..Default::default() };
        assert!(store.list_findings(intruder, &all).await?.is_empty());
        let by_tenant =
            FindingFilter { tenant_id: Some(site.scope.tenant_id), limit: 100, ..Default::default() };
        assert!(store.list_findings(intruder, &by_tenant).await?.is_empty());
        assert!(store.list_facts(forged).await?.is_empty());
        assert!(store.load_tenant_snapshot(forged, &[]).await?.is_none());
        let resolve =
            FindingChange::Resolve { id: finding.id, expected_version: finding.version, summary: "x".into() };
        assert_eq!(
            store.apply_evaluation(forged, None, 1, &only_findings([resolve]), at(40)).await?,
            ApplyOutcome::Conflict
        );

        // Acme's data is untouched by all of the above.
        assert_eq!(
            store.get_collector(site.org, site.collector.id).await?.map(|c| c.status),
            Some(CollectorStatus::Active)
        );
        assert_eq!(store.get_finding(site.org, finding.id).await?, Some(finding));
        assert_eq!(store.find_api_key_by_hash("acme-key").await?.and_then(|k| k.revoked_at), None);
        Ok(())
    }
}

contract_test! {
    async fn tenants_and_collectors_are_listed_within_the_organisation(store) {
        let acme = org(store, "Acme MSP").await?;
        let tenant_row = store.create_tenant(acme, "Contoso", Some("8f0c-entra"), at(1)).await?;
        assert_eq!(tenant_row.entra_tenant_id.as_deref(), Some("8f0c-entra"));
        assert_eq!(store.get_tenant(acme, tenant_row.id).await?, Some(tenant_row.clone()));
        let contoso = TenantScope { org_id: acme.org_id, tenant_id: tenant_row.id };
        let fabrikam = tenant(store, acme, "Fabrikam").await?;

        let c1 = store.create_collector(contoso, "hq", "h1", at(100), 300, at(1)).await?;
        let c2 = store.create_collector(fabrikam, "branch", "h2", at(100), 60, at(2)).await?;
        assert_eq!(
            (c1.status, c1.push_interval_secs, c1.enrollment_expires_at),
            (CollectorStatus::Pending, 300, Some(at(100)))
        );
        assert_eq!(c1.scope(), contoso);

        assert_eq!(store.list_collectors(acme, None).await?, vec![c1.clone(), c2.clone()]);
        assert_eq!(store.list_collectors(acme, Some(fabrikam.tenant_id)).await?, vec![c2.clone()]);
        assert_eq!(
            store.find_collector_for_auth(c1.id, at(1)).await?,
            Some(PushingCollector { collector: c1.clone(), commands_waiting: false })
        );
        assert_eq!(store.find_collector_for_auth(CollectorId::new(), at(1)).await?, None);

        let revoked = store.revoke_collector(acme, c2.id, at(5)).await?.expect("own collector");
        assert_eq!((revoked.status, revoked.revoked_at), (CollectorStatus::Revoked, Some(at(5))));
        Ok(())
    }
}

contract_test! {
    async fn a_corrupt_stored_value_is_reported_not_guessed(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let changed = store
            .execute_raw("UPDATE collectors SET status = 'paused' WHERE id = $1", site.collector.id.0)
            .await?;
        assert_eq!(changed, 1);
        let read = store.get_collector(site.org, site.collector.id).await;
        assert!(matches!(&read, Err(StoreError::Corrupt(msg)) if msg.contains("paused")), "{read:?}");
        Ok(())
    }
}
