//! Integrations: they round-trip, update from the version read, switch on again, delete with
//! their deliveries, stay within their organisation, and are audited without secrets.

use super::*;

contract_test! {
    async fn an_integration_round_trips_and_an_update_replaces_it_with_a_new_version(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let write = IntegrationWrite {
            filter: IntegrationFilter {
                tenant_ids: vec![contoso.tenant_id],
                severities: vec![Severity::High, Severity::Critical],
                rule_ids: vec!["relay".into()],
                event_types: vec!["finding.opened".into(), "finding.resolved".into()],
            },
            max_in_flight: 3,
            hourly_budget: Some(50),
            ..jira("Jira")
        };
        let created = store.create_integration(acme, &write, ACTOR, at(5)).await?;
        assert_eq!(
            (created.org_id, created.name.as_str(), created.kind.as_str(), created.url.as_deref()),
            (acme.org_id, "Jira", "jira", Some("https://acme.atlassian.net"))
        );
        assert_eq!((&created.config, created.secrets.as_slice()), (&write.config, &[1u8, 2, 3][..]));
        assert_eq!(
            (&created.filter, created.routing, created.max_in_flight, created.hourly_budget),
            (&write.filter, Routing::Digest, 3, Some(50))
        );
        assert_eq!(
            (created.enabled, created.disabled_reason.as_deref(), created.disabled_at),
            (true, None, None)
        );
        assert_eq!((created.failing_since, created.last_success_at), (None, None));
        assert_eq!((created.created_at, created.updated_at, created.version), (at(5), at(5), 1));
        assert_eq!(store.get_integration(acme, created.id).await?, Some(created.clone()));
        assert_eq!(store.list_integrations(acme).await?, vec![created.clone()]);
        assert_eq!(store.enabled_integrations(acme).await?, vec![created.clone()]);

        let changed = IntegrationWrite {
            name: "Jira (ops)".into(),
            url: None,
            filter: IntegrationFilter::default(),
            routing: Routing::PerTenant,
            hourly_budget: None,
            secrets: vec![4, 5, 6],
            enabled: false,
            ..write.clone()
        };
        let updated = stored(
            store.update_integration(acme, created.id, created.version, &changed, ACTOR, at(6)).await?,
        )?;
        assert_eq!(
            (updated.name.as_str(), updated.url.as_deref(), &updated.filter, updated.routing),
            ("Jira (ops)", None, &IntegrationFilter::default(), Routing::PerTenant)
        );
        assert_eq!(
            (updated.hourly_budget, updated.secrets.as_slice(), updated.enabled),
            (None, &[4u8, 5, 6][..], false)
        );
        assert_eq!((updated.created_at, updated.updated_at, updated.version), (at(5), at(6), 2));
        assert_eq!(store.get_integration(acme, created.id).await?, Some(updated.clone()));
        assert_eq!(store.list_integrations(acme).await?, vec![updated]);
        assert!(store.enabled_integrations(acme).await?.is_empty(), "switched off");
        assert_eq!(
            store.update_integration(acme, Uuid::now_v7(), 1, &changed, ACTOR, at(7)).await?,
            IntegrationUpdate::NotFound
        );
        Ok(())
    }
}

contract_test! {
    async fn switching_an_integration_on_again_forgets_why_it_was_off_and_its_failures(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10)], at(10)).await?;
        let claimed = claim(store, 10).await?.remove(0);
        complete(store, &claimed, failed(claimed.lease_id, 11, Some(100))).await?;
        assert_eq!(current(store, acme, hook.id).await?.failing_since, Some(at(11)));

        assert!(store.disable_integration(acme, hook.id, "410 Gone", &[], at(12)).await?);
        let off = current(store, acme, hook.id).await?;
        assert_eq!(
            (off.enabled, off.disabled_reason.as_deref(), off.disabled_at, off.failing_since, off.version),
            (false, Some("410 Gone"), Some(at(12)), Some(at(11)), 2)
        );

        // Changing settings while it stays off keeps the reason.
        let renamed = IntegrationWrite { enabled: false, ..webhook("Ops hook (new URL)") };
        let still_off =
            stored(store.update_integration(acme, hook.id, off.version, &renamed, ACTOR, at(13)).await?)?;
        assert_eq!(
            (
                still_off.enabled,
                still_off.disabled_reason.as_deref(),
                still_off.failing_since,
                still_off.version
            ),
            (false, Some("410 Gone"), Some(at(11)), 3)
        );

        let on = stored(
            store
                .update_integration(
                    acme,
                    hook.id,
                    still_off.version,
                    &webhook("Ops hook (new URL)"),
                    ACTOR,
                    at(14),
                )
                .await?,
        )?;
        assert_eq!(
            (on.enabled, on.disabled_reason.as_deref(), on.disabled_at, on.failing_since, on.version),
            (true, None, None, None, 4)
        );
        assert_eq!(on.updated_at, at(14));
        Ok(())
    }
}

contract_test! {
    async fn deleting_an_integration_takes_its_deliveries_with_it(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        let other = integration(store, acme, webhook("Other hook")).await?;
        let queued = store
            .enqueue_deliveries(&[event(&hook, Some("relay"), 10), event(&other, None, 10)], at(10))
            .await?;
        assert_eq!(queued, 2);
        let claimed = claim(store, 10).await?;
        let mine = claimed.iter().find(|c| c.integration.id == hook.id).expect("hook's delivery claimed");
        assert!(store.mark_ticket_creating(&mine.delivery, mine.lease_id, at(11)).await?);
        complete(store, mine, failed(mine.lease_id, 12, Some(100))).await?;

        assert!(store.delete_integration(acme, hook.id, ACTOR, at(20)).await?);
        assert_eq!(store.get_integration(acme, hook.id).await?, None);
        assert_eq!(store.list_integrations(acme).await?, vec![other.clone()]);
        assert_eq!(store.get_delivery(acme, mine.delivery.id).await?, None);
        assert!(store.list_deliveries(acme, hook.id, &every_delivery()).await?.is_empty());
        assert_eq!(store.list_deliveries(acme, other.id, &every_delivery()).await?.len(), 1);
        assert_eq!(store.count_pending_deliveries().await?, 1, "only the other integration's is left");
        assert!(!store.delete_integration(acme, hook.id, ACTOR, at(21)).await?, "already gone");
        Ok(())
    }
}

contract_test! {
    async fn another_organisation_can_neither_see_nor_change_an_integration(store) {
        let acme = org(store, "Acme MSP").await?;
        let globex = org(store, "Globex MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        store.enqueue_deliveries(&[event(&hook, None, 10)], at(10)).await?;
        let claimed = claim(store, 10).await?.remove(0);
        complete(store, &claimed, failed(claimed.lease_id, 11, None)).await?;
        let id = claimed.delivery.id;

        assert_eq!(store.get_integration(globex, hook.id).await?, None);
        assert!(store.list_integrations(globex).await?.is_empty());
        assert!(store.enabled_integrations(globex).await?.is_empty());
        assert_eq!(
            store
                .update_integration(globex, hook.id, hook.version, &webhook("Mine now"), ACTOR, at(20))
                .await?,
            IntegrationUpdate::NotFound
        );
        assert!(!store.delete_integration(globex, hook.id, ACTOR, at(21)).await?);
        assert!(store.list_deliveries(globex, hook.id, &every_delivery()).await?.is_empty());
        assert_eq!(store.get_delivery(globex, id).await?, None);
        assert_eq!(store.replay_deliveries(globex, hook.id, Some(id), None, ACTOR, at(22)).await?, 0);
        assert_eq!(store.replay_deliveries(globex, hook.id, None, Some(t0()), ACTOR, at(23)).await?, 0);
        assert!(!store.disable_integration(globex, hook.id, "not yours", &[], at(24)).await?);
        assert!(store.list_audit_log(globex, None, 50).await?.is_empty());

        // Acme's integration and delivery are as they were.
        let mine = current(store, acme, hook.id).await?;
        assert_eq!((mine.name.as_str(), mine.enabled, mine.version), ("Ops hook", true, 1));
        let (kept, _) = delivery(store, acme, id).await?;
        assert_eq!((kept.status, kept.attempts), (DeliveryStatus::Failed, 1));
        Ok(())
    }
}

contract_test! {
    async fn integration_changes_are_audited_without_their_secrets(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = store.create_integration(acme, &webhook("Ops hook"), ACTOR, at(1)).await?;
        let renamed = IntegrationWrite { secrets: vec![1, 2, 3, 4], ..webhook("Ops hook v2") };
        stored(store.update_integration(acme, hook.id, hook.version, &renamed, "api_key:k2", at(2)).await?)?;
        assert!(store.delete_integration(acme, hook.id, ACTOR, at(3)).await?);

        let log = store.list_audit_log(acme, None, 50).await?;
        let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["integration.delete", "integration.update", "integration.create"]);
        assert!(log.iter().all(|e| e.target == hook.id.to_string() && e.tenant_id.is_none()));
        assert_eq!(
            log.iter().map(|e| (e.actor.as_str(), e.at)).collect::<Vec<_>>(),
            [(ACTOR, at(3)), ("api_key:k2", at(2)), (ACTOR, at(1))]
        );
        let name = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v["name"].clone());
        assert_eq!((name(&log[2].before), name(&log[2].after)), (None, Some(json!("Ops hook"))));
        assert_eq!(
            (name(&log[1].before), name(&log[1].after)),
            (Some(json!("Ops hook")), Some(json!("Ops hook v2")))
        );
        assert_eq!((name(&log[0].before), name(&log[0].after)), (Some(json!("Ops hook v2")), None));
        assert_eq!(
            log[2].after.as_ref().map(|a| a["url"].clone()),
            Some(json!("https://hooks.example.com/wbd"))
        );
        for entry in &log {
            let text = serde_json::to_string(&(&entry.before, &entry.after))?;
            assert!(!text.contains("secret"), "secrets in the audit log: {text}");
            assert!(!text.contains("[1,2,3"), "secret bytes in the audit log: {text}");
        }
        Ok(())
    }
}

contract_test! {
    async fn an_update_made_from_an_older_version_changes_nothing(store) {
        let acme = org(store, "Acme MSP").await?;
        let hook = integration(store, acme, webhook("Ops hook")).await?;
        assert_eq!(hook.version, 1);

        // The engine switches it off after an API request read it: the request's write, made
        // from version 1, would switch it back on and forget why it is off.
        assert!(store.disable_integration(acme, hook.id, "410 Gone", &[], at(10)).await?);
        let off = current(store, acme, hook.id).await?;
        assert_eq!(off.version, 2, "switching off is a new version");
        let renamed = webhook("Ops hook (renamed)");
        assert_eq!(
            store.update_integration(acme, hook.id, hook.version, &renamed, ACTOR, at(11)).await?,
            IntegrationUpdate::Changed { current_version: 2 }
        );
        assert_eq!(current(store, acme, hook.id).await?, off, "untouched");
        let log = store.list_audit_log(acme, None, 50).await?;
        assert!(log.iter().all(|e| e.action != "integration.update"), "nothing audited: {log:?}");

        // Made from what is there now, it is stored; a second write from the same version is not
        // (two rotations at once: the second would drop the first one's new secret).
        let keep_off = IntegrationWrite { enabled: false, secrets: vec![7], ..renamed.clone() };
        let first = stored(store.update_integration(acme, hook.id, 2, &keep_off, ACTOR, at(12)).await?)?;
        assert_eq!(
            (first.version, first.enabled, first.disabled_reason.as_deref()),
            (3, false, Some("410 Gone"))
        );
        let second = IntegrationWrite { secrets: vec![8], ..keep_off.clone() };
        assert_eq!(
            store.update_integration(acme, hook.id, 2, &second, ACTOR, at(13)).await?,
            IntegrationUpdate::Changed { current_version: 3 }
        );
        assert_eq!(current(store, acme, hook.id).await?.secrets, [7]);
        Ok(())
    }
}
