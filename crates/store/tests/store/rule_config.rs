//! Rule overrides and custom rules: stored per organisation and per tenant, audited, and each
//! change asks for the affected tenants to be evaluated again.

use serde_json::json;
use wbd_store::*;

use crate::fixtures::*;

contract_test! {
    async fn overrides_are_stored_per_level_audited_and_trigger_evaluation(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let outbox_before = store.count_outbox().await?;
        let versions = (facts_version(store, contoso).await?, facts_version(store, fabrikam).await?);

        let org_doc = json!({ "severity": "low" });
        let written = store
            .write_rule_config(
                acme,
                RuleScope::Org,
                RuleConfigKind::Setting,
                "endpoint-reachable",
                Some(&org_doc),
                "api_key:1",
                at(1),
            )
            .await?;
        assert_eq!(written, RuleConfigWrite::Written { before: None });
        // An organisation-wide change re-evaluates every tenant.
        assert_eq!(store.count_outbox().await?, outbox_before + 2);
        assert_eq!(facts_version(store, contoso).await?, versions.0 + 1);
        assert_eq!(facts_version(store, fabrikam).await?, versions.1 + 1);

        let tenant_doc = json!({ "disabled": true });
        store
            .write_rule_config(
                acme,
                RuleScope::Tenant(contoso.tenant_id),
                RuleConfigKind::Setting,
                "endpoint-reachable",
                Some(&tenant_doc),
                "api_key:2",
                at(2),
            )
            .await?;
        assert_eq!(
            store.count_outbox().await?,
            outbox_before + 3,
            "a tenant change re-evaluates that tenant only"
        );

        let for_contoso = store.list_rule_settings(acme, Some(contoso.tenant_id)).await?;
        assert_eq!(for_contoso.len(), 2);
        assert_eq!(
            (for_contoso[0].tenant_id, &for_contoso[0].settings),
            (None, &org_doc),
            "organisation level first"
        );
        assert_eq!(
            (for_contoso[1].tenant_id, &for_contoso[1].settings),
            (Some(contoso.tenant_id), &tenant_doc)
        );
        assert_eq!(for_contoso[1].updated_by, "api_key:2");
        let for_fabrikam = store.list_rule_settings(acme, Some(fabrikam.tenant_id)).await?;
        assert_eq!(for_fabrikam.len(), 1, "one tenant's override never reaches another");

        let replaced = json!({ "severity": "high" });
        let written = store
            .write_rule_config(
                acme,
                RuleScope::Org,
                RuleConfigKind::Setting,
                "endpoint-reachable",
                Some(&replaced),
                "api_key:1",
                at(3),
            )
            .await?;
        assert_eq!(written, RuleConfigWrite::Written { before: Some(org_doc.clone()) });
        let removed = store
            .write_rule_config(
                acme,
                RuleScope::Org,
                RuleConfigKind::Setting,
                "endpoint-reachable",
                None,
                "api_key:1",
                at(4),
            )
            .await?;
        assert_eq!(removed, RuleConfigWrite::Written { before: Some(replaced.clone()) });
        assert_eq!(store.list_rule_settings(acme, None).await?, vec![]);

        let audit = store.list_audit_log(acme, None, 10).await?;
        let actions: Vec<_> = audit.iter().map(|e| (e.action.as_str(), e.actor.as_str())).collect();
        assert_eq!(
            actions,
            vec![
                ("rule_setting.delete", "api_key:1"),
                ("rule_setting.put", "api_key:1"),
                ("rule_setting.put", "api_key:2"),
                ("rule_setting.put", "api_key:1"),
            ],
            "newest first"
        );
        assert_eq!((audit[0].before.as_ref(), audit[0].after.as_ref()), (Some(&replaced), None));
        assert_eq!(audit[1].before.as_ref(), Some(&org_doc));
        assert_eq!(audit[0].at, at(4));
        let page = store.list_audit_log(acme, Some(audit[1].id), 10).await?;
        assert_eq!(page.len(), 2, "the cursor continues below the given entry");
        Ok(())
    }
}

contract_test! {
    async fn custom_rules_and_audit_are_scoped_to_their_organisation(store) {
        let acme = org(store, "Acme MSP").await?;
        let other = org(store, "Other MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let theirs = tenant(store, other, "Theirs").await?;
        let rule =
            json!({ "id": "old-connect", "title": "Old Connect", "severity": "high", "condition": "true" });

        store
            .write_rule_config(
                acme,
                RuleScope::Tenant(contoso.tenant_id),
                RuleConfigKind::Custom,
                "old-connect",
                Some(&rule),
                "a",
                at(1),
            )
            .await?;
        let listed = store.list_custom_rules(acme, Some(contoso.tenant_id)).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].rule_id.as_str(), &listed[0].definition), ("old-connect", &rule));
        assert_eq!(listed[0].created_at, at(1));
        assert!(
            store.list_custom_rules(acme, None).await?.is_empty(),
            "a tenant's rule is not organisation-wide"
        );

        // Another organisation can neither see it nor write into a tenant it does not own.
        assert!(store.list_custom_rules(other, Some(contoso.tenant_id)).await?.is_empty());
        let outbox = store.count_outbox().await?;
        let refused = store
            .write_rule_config(
                other,
                RuleScope::Tenant(contoso.tenant_id),
                RuleConfigKind::Custom,
                "x",
                Some(&rule),
                "b",
                at(2),
            )
            .await?;
        assert_eq!(refused, RuleConfigWrite::NoSuchTenant);
        assert_eq!(store.count_outbox().await?, outbox, "a refused write changes nothing");
        assert!(store.list_audit_log(other, None, 10).await?.is_empty());
        assert_eq!(store.list_audit_log(acme, None, 10).await?.len(), 1);
        let _ = theirs;

        // Deleting what is not there changes nothing and is not audited.
        let nothing = store
            .write_rule_config(acme, RuleScope::Org, RuleConfigKind::Custom, "old-connect", None, "a", at(3))
            .await?;
        assert_eq!(nothing, RuleConfigWrite::Written { before: None });
        assert_eq!(store.list_audit_log(acme, None, 10).await?.len(), 1);
        Ok(())
    }
}

contract_test! {
    async fn deleting_a_custom_rule_resolves_its_findings_unless_another_level_still_has_it(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let rule = json!({ "id": "odd-port", "title": "Odd port", "severity": "low", "condition": "true" });
        // Organisation-wide, and again for Fabrikam.
        store
            .write_rule_config(
                acme,
                RuleScope::Org,
                RuleConfigKind::Custom,
                "odd-port",
                Some(&rule),
                "a",
                at(1),
            )
            .await?;
        store
            .write_rule_config(
                acme,
                RuleScope::Tenant(fabrikam.tenant_id),
                RuleConfigKind::Custom,
                "odd-port",
                Some(&rule),
                "a",
                at(1),
            )
            .await?;
        let c = open_findings(store, contoso, &[("odd-port:tenant", Severity::Low)], at(2)).await?;
        let f = open_findings(store, fabrikam, &[("odd-port:tenant", Severity::Low)], at(2)).await?;

        store
            .write_rule_config(
                acme,
                RuleScope::Org,
                RuleConfigKind::Custom,
                "odd-port",
                None,
                "api_key:9",
                at(3),
            )
            .await?;
        let contoso_finding = store.get_finding(acme, c[0].id).await?.expect("finding");
        assert_eq!(contoso_finding.status, FindingStatus::Resolved);
        assert_eq!(contoso_finding.resolved_at, Some(at(3)));
        let events = store.list_finding_events(acme, c[0].id).await?;
        let last = events.last().expect("events");
        assert_eq!((last.kind, last.actor.as_str()), (FindingEventKind::Resolved, "api_key:9"));
        // Fabrikam still has its own copy of the rule: its finding stays open.
        assert_eq!(store.get_finding(acme, f[0].id).await?.expect("finding").status, FindingStatus::Open);
        Ok(())
    }
}

contract_test! {
    async fn the_rules_version_moves_with_each_rule_change_of_the_tenant_and_only_then(store) {
        let site = enrolled_site(store, "Acme MSP").await?;
        let acme = site.org;
        let other = tenant(store, acme, "Fabrikam").await?;
        let rules_version = |scope: TenantScope| async move {
            anyhow::Ok(store.load_tenant_snapshot(scope, &[]).await?.expect("tenant").rules_version)
        };
        let start = rules_version(site.scope).await?;

        store.ingest_batch(site.scope, &batch(site.collector.id, vec![result("tls", "a", 1, "d1")], 1)).await?;
        assert_eq!(rules_version(site.scope).await?, start, "new facts leave the rules as they were");

        let doc = json!({ "severity": "low" });
        store
            .write_rule_config(
                acme,
                RuleScope::Tenant(site.scope.tenant_id),
                RuleConfigKind::Setting,
                "endpoint-reachable",
                Some(&doc),
                "a",
                at(2),
            )
            .await?;
        assert_eq!(rules_version(site.scope).await?, start + 1, "the tenant's own change");
        assert_eq!(rules_version(other).await?, 0, "another tenant's rules did not change");

        store
            .write_rule_config(acme, RuleScope::Org, RuleConfigKind::Setting, "endpoint-reachable", Some(&doc), "a", at(3))
            .await?;
        assert_eq!(rules_version(site.scope).await?, start + 2, "its organisation's change");
        assert_eq!(rules_version(other).await?, 1);
        Ok(())
    }
}
