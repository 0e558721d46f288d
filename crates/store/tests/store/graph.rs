//! The central Graph connector: a consent is spent once, before it expires, by its own
//! organisation and tenant; connecting, reconnecting and disconnecting are audited.

use uuid::Uuid;
use wbd_store::*;

use crate::fixtures::{at, org, tenant};

contract_test! {
    async fn a_consent_state_is_spent_once_by_its_own_tenant_before_it_expires(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let fabrikam = tenant(store, acme, "Fabrikam").await?;
        let other = org(store, "Other MSP").await?;
        let theirs = tenant(store, other, "Theirs").await?;

        let nonce = Uuid::new_v4();
        store.create_graph_consent_request(contoso, nonce, "api_key:admin", at(600), at(0)).await?;
        let pending = store.pending_graph_consent(contoso, at(1)).await?.expect("pending");
        assert_eq!((pending.nonce, pending.created_by.as_str(), pending.expires_at), (nonce, "api_key:admin", at(600)));
        assert_eq!(store.pending_graph_consent(contoso, at(600)).await?, None, "expired: no longer pending");
        assert_eq!(store.pending_graph_consent(fabrikam, at(1)).await?, None);

        // Another tenant, another organisation, an unknown nonce, too late: nothing changes.
        for (scope, n, when) in [(fabrikam, nonce, at(5)), (theirs, nonce, at(5)), (contoso, Uuid::new_v4(), at(5)), (contoso, nonce, at(600))] {
            assert_eq!(store.complete_graph_consent(scope, n, Some("entra-1"), when).await?, GraphConsentOutcome::StateUnusable);
        }
        assert_eq!(store.get_graph_connection(contoso).await?, None);

        let GraphConsentOutcome::Connected(c) = store.complete_graph_consent(contoso, nonce, Some("entra-1"), at(10)).await? else {
            panic!("connected expected");
        };
        assert_eq!((c.entra_tenant_id.as_str(), c.state, c.consented_by.as_str()), ("entra-1", GraphConnectionState::Connected, "api_key:admin"));
        assert_eq!((c.consented_at, c.next_read_at, c.last_read_at), (at(10), at(10), None));
        assert!(c.missing_permissions.is_empty());
        assert_eq!(store.get_graph_connection(contoso).await?, Some(*c.clone()));
        assert_eq!(store.get_graph_connection(fabrikam).await?, None);
        assert_eq!(store.pending_graph_consent(contoso, at(11)).await?, None, "spent");

        // Replayed: refused, nothing changes.
        assert_eq!(store.complete_graph_consent(contoso, nonce, Some("entra-evil"), at(12)).await?, GraphConsentOutcome::StateUnusable);
        assert_eq!(store.get_graph_connection(contoso).await?.unwrap().entra_tenant_id, "entra-1");

        let audit = store.list_audit_log(acme, None, 10).await?;
        assert_eq!(audit.len(), 1);
        assert_eq!((audit[0].action.as_str(), audit[0].actor.as_str()), ("graph.connect", "api_key:admin"));
        assert_eq!(audit[0].tenant_id, Some(contoso.tenant_id));
        Ok(())
    }
}

contract_test! {
    async fn a_declined_consent_only_spends_the_state_and_a_tenant_reconnects_and_disconnects(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;

        let declined = Uuid::new_v4();
        store.create_graph_consent_request(contoso, declined, "api_key:tech", at(600), at(0)).await?;
        assert_eq!(
            store.complete_graph_consent(contoso, declined, None, at(5)).await?,
            GraphConsentOutcome::Declined { requested_by: "api_key:tech".into() }
        );
        assert_eq!(store.get_graph_connection(contoso).await?, None);
        assert!(store.list_audit_log(acme, None, 10).await?.is_empty());

        for (i, entra) in ["entra-1", "entra-2"].into_iter().enumerate() {
            let nonce = Uuid::new_v4();
            let i = i64::try_from(i)?;
            store.create_graph_consent_request(contoso, nonce, "api_key:admin", at(700 + i), at(100 + i)).await?;
            assert!(matches!(
                store.complete_graph_consent(contoso, nonce, Some(entra), at(200 + i)).await?,
                GraphConsentOutcome::Connected(_)
            ));
        }
        let connection = store.get_graph_connection(contoso).await?.unwrap();
        assert_eq!(connection.entra_tenant_id, "entra-2");
        // One collector row stands for the central reader, across reconnections.
        let collectors = store.list_collectors(acme, Some(contoso.tenant_id)).await?;
        assert_eq!(collectors.len(), 1);
        assert_eq!((collectors[0].name.as_str(), collectors[0].status), (GRAPH_READER_COLLECTOR, CollectorStatus::Active));
        assert_eq!(connection.collector_id, Some(collectors[0].id));
        assert!(collectors[0].public_key.is_some(), "a key nobody holds: no push in its name");

        // A consent pending besides the connection goes with it.
        store.create_graph_consent_request(contoso, Uuid::new_v4(), "api_key:admin", at(900), at(300)).await?;
        assert!(store.delete_graph_connection(contoso, "api_key:admin", at(301)).await?);
        assert_eq!(store.get_graph_connection(contoso).await?, None);
        assert_eq!(store.pending_graph_consent(contoso, at(302)).await?, None);
        assert!(!store.delete_graph_connection(contoso, "api_key:admin", at(303)).await?, "nothing left");
        let collectors = store.list_collectors(acme, Some(contoso.tenant_id)).await?;
        assert_eq!(collectors[0].status, CollectorStatus::Revoked, "its facts no longer count");

        let actions: Vec<String> = store.list_audit_log(acme, None, 10).await?.into_iter().map(|a| a.action).collect();
        assert_eq!(actions, vec!["graph.disconnect", "graph.connect", "graph.connect"]);
        Ok(())
    }
}

/// Connects `name` of `org` to Graph at `when` (its first read is due then).
async fn connected(
    store: &crate::harness::TestStore,
    org: OrgScope,
    name: &str,
    when: i64,
) -> anyhow::Result<TenantScope> {
    let scope = tenant(store, org, name).await?;
    let nonce = Uuid::new_v4();
    store.create_graph_consent_request(scope, nonce, "api_key:admin", at(when + 600), at(when)).await?;
    let outcome =
        store.complete_graph_consent(scope, nonce, Some(&format!("entra-{name}")), at(when)).await?;
    anyhow::ensure!(matches!(outcome, GraphConsentOutcome::Connected(_)), "{outcome:?}");
    Ok(scope)
}

contract_test! {
    async fn each_due_tenant_is_leased_to_one_reader_and_read_once_a_period(store) {
        let acme = org(store, "Acme MSP").await?;
        let a = connected(store, acme, "a", 0).await?;
        let b = connected(store, acme, "b", 1).await?;
        let c = connected(store, acme, "c", 2).await?;
        let lease = std::time::Duration::from_secs(60);

        // Two readers at once: every due tenant goes to exactly one.
        let (first, second) = tokio::join!(store.claim_graph_reads(2, lease, true, at(10)), store.claim_graph_reads(2, lease, true, at(10)));
        let mut claimed: Vec<TenantScope> = first?.into_iter().chain(second?).map(|c| c.scope).collect();
        claimed.sort_by_key(|s| s.tenant_id);
        let mut all = vec![a, b, c];
        all.sort_by_key(|s| s.tenant_id);
        assert_eq!(claimed, all);
        assert!(store.claim_graph_reads(10, lease, true, at(20)).await?.is_empty(), "all leased");

        // A lease that ran out unfinished is claimed again; the first holder can no longer finish.
        let again = store.claim_graph_reads(10, lease, true, at(71)).await?;
        assert_eq!(again.len(), 3);
        let a_claim = again.iter().find(|c| c.scope == a).unwrap().clone();
        assert_eq!((a_claim.entra_tenant_id.as_str(), a_claim.due_at), ("entra-a", at(0)));
        let stale = GraphReadResult { next_read_at: at(3671), ..GraphReadResult::default() };
        assert!(!store.finish_graph_read(a, Uuid::new_v4(), &stale, at(72)).await?, "not its lease");

        // Finished: not due again until its next read.
        let read = GraphReadResult {
            missing_permissions: vec!["Policy.Read.All".into()],
            error: Some("authorizationPolicy: 403".into()),
            next_read_at: at(3672),
            ..GraphReadResult::default()
        };
        assert!(store.finish_graph_read(a, a_claim.lease_id, &read, at(72)).await?);
        let shown = store.get_graph_connection(a).await?.unwrap();
        assert_eq!((shown.last_read_at, shown.next_read_at), (Some(at(72)), at(3672)));
        assert_eq!(shown.missing_permissions, vec!["Policy.Read.All"]);
        assert_eq!(shown.last_error.as_deref(), Some("authorizationPolicy: 403"));
        assert!(store.claim_graph_reads(10, lease, true, at(3000)).await?.iter().all(|c| c.scope != a));

        // Re-test now makes it due at once.
        assert!(store.request_graph_read(a, at(3001)).await?);
        assert!(store.claim_graph_reads(10, lease, true, at(3002)).await?.iter().any(|c| c.scope == a));
        Ok(())
    }
}

contract_test! {
    async fn throttled_tenants_wait_and_revoked_ones_are_not_read_until_connected_again(store) {
        let acme = org(store, "Acme MSP").await?;
        let a = connected(store, acme, "a", 0).await?;
        let b = connected(store, acme, "b", 0).await?;
        let lease = std::time::Duration::from_secs(60);
        for claim in store.claim_graph_reads(10, lease, true, at(1)).await? {
            let result = if claim.scope == a {
                GraphReadResult { throttled_until: Some(at(100)), next_read_at: at(2), ..GraphReadResult::default() }
            } else {
                GraphReadResult {
                    consent_revoked: true,
                    error: Some("AADSTS700016".into()),
                    next_read_at: at(2),
                    ..GraphReadResult::default()
                }
            };
            assert!(store.finish_graph_read(claim.scope, claim.lease_id, &result, at(1)).await?);
        }
        assert!(store.claim_graph_reads(10, lease, true, at(50)).await?.is_empty(), "a throttled, b revoked");
        let revoked = store.get_graph_connection(b).await?.unwrap();
        assert_eq!(revoked.state, GraphConnectionState::ConsentRevoked);
        assert!(!store.request_graph_read(b, at(51)).await?);
        let later: Vec<_> = store.claim_graph_reads(10, lease, true, at(100)).await?.into_iter().map(|c| c.scope).collect();
        assert_eq!(later, vec![a]);

        // Connected again: read at once.
        let nonce = Uuid::new_v4();
        store.create_graph_consent_request(b, nonce, "api_key:admin", at(800), at(200)).await?;
        store.complete_graph_consent(b, nonce, Some("entra-b"), at(200)).await?;
        let claims = store.claim_graph_reads(10, lease, true, at(201)).await?;
        assert!(claims.iter().any(|c| c.scope == b));
        Ok(())
    }
}

contract_test! {
    async fn a_connected_tenant_s_test_user_is_set_read_by_the_next_claim_and_audited(store) {
        let acme = org(store, "Acme MSP").await?;
        let a = connected(store, acme, "a", 0).await?;
        let lonely = tenant(store, acme, "not connected").await?;
        let lease = std::time::Duration::from_secs(60);
        assert_eq!(store.set_graph_test_user(lonely, Some("t@x.com"), "api_key:admin", at(1)).await?, None);

        // Read once, not due again for an hour.
        let claim = store.claim_graph_reads(10, lease, true, at(1)).await?.pop().unwrap();
        assert_eq!(claim.test_user, None);
        let done = GraphReadResult { next_read_at: at(3600), ..GraphReadResult::default() };
        assert!(store.finish_graph_read(a, claim.lease_id, &done, at(2)).await?);

        // Set: shown, due at once, and the next claim reads it.
        let c = store.set_graph_test_user(a, Some("sspr.test@a.com"), "api_key:admin", at(10)).await?.unwrap();
        assert_eq!((c.test_user.as_deref(), c.next_read_at), (Some("sspr.test@a.com"), at(10)));
        assert_eq!(store.get_graph_connection(a).await?.unwrap().test_user.as_deref(), Some("sspr.test@a.com"));
        let claim = store.claim_graph_reads(10, lease, true, at(11)).await?.pop().expect("due again");
        assert_eq!(claim.test_user.as_deref(), Some("sspr.test@a.com"));

        // Cleared.
        let c = store.set_graph_test_user(a, None, "api_key:admin", at(20)).await?.unwrap();
        assert_eq!(c.test_user, None);
        let audit = store.list_audit_log(acme, None, 10).await?;
        assert_eq!(audit[0].action, "graph.test_user");
        assert_eq!(audit[1].action, "graph.test_user");
        Ok(())
    }
}

/// An own app with a client secret, sealed as `sealed` (the store only keeps the bytes).
fn own_app(client_id: &str, sealed: &[u8]) -> GraphOwnAppWrite {
    GraphOwnAppWrite {
        client_id: client_id.into(),
        entra_tenant_id: "contoso.com".into(),
        cloud: "global".into(),
        credential_kind: GraphCredentialKind::ClientSecret,
        credential_expires_at: Some(at(86_400)),
        sealed_credential: sealed.to_vec(),
    }
}

contract_test! {
    async fn a_tenant_s_own_app_connects_it_at_once_is_versioned_audited_and_claimed_with_it(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        let other = org(store, "Other MSP").await?;
        let lease = std::time::Duration::from_secs(60);

        // A change from a version when there is none: refused, nothing written.
        assert_eq!(
            store.set_graph_own_app(contoso, Some(1), &own_app("app-1", b"sealed-1"), "api_key:admin", at(0)).await?,
            GraphOwnAppOutcome::Changed { current_version: None }
        );
        assert_eq!(store.get_graph_own_app(contoso).await?, None);
        assert!(store.list_audit_log(acme, None, 10).await?.is_empty());

        let GraphOwnAppOutcome::Set { app, connection } =
            store.set_graph_own_app(contoso, None, &own_app("app-1", b"sealed-1"), "api_key:admin", at(10)).await?
        else {
            panic!("set expected");
        };
        assert_eq!((app.version, app.client_id.as_str(), app.sealed_credential.as_slice()), (1, "app-1", &b"sealed-1"[..]));
        assert_eq!((app.credential_kind, app.credential_expires_at, app.updated_by.as_str()), (GraphCredentialKind::ClientSecret, Some(at(86_400)), "api_key:admin"));
        // Connected through it with no consent, its first read due at once.
        assert_eq!((connection.app, connection.state), (GraphAppKind::Own, GraphConnectionState::Connected));
        assert_eq!((connection.entra_tenant_id.as_str(), connection.next_read_at), ("contoso.com", at(10)));
        assert!(connection.collector_id.is_some());
        assert_eq!(store.get_graph_own_app(contoso).await?, Some(*app.clone()));
        assert_eq!(store.get_graph_connection(contoso).await?, Some(*connection.clone()));

        // Another organisation sees nothing of it and cannot remove it.
        let foreign = TenantScope { org_id: other.org_id, tenant_id: contoso.tenant_id };
        assert_eq!(store.get_graph_own_app(foreign).await?, None);
        assert!(!store.delete_graph_own_app(foreign, "api_key:evil", at(11)).await?);

        // Claimed with its app, also by a reader without the installation's app.
        let claims = store.claim_graph_reads(10, lease, false, at(20)).await?;
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].own_app.as_ref().map(|a| (a.version, a.sealed_credential.clone())), Some((1, b"sealed-1".to_vec())));

        // Its credential refused: the tenant's own problem; reading stops.
        let refused = GraphReadResult {
            credential_invalid: true,
            error: Some("401 invalid_client: AADSTS7000215".into()),
            next_read_at: at(3600),
            ..GraphReadResult::default()
        };
        assert!(store.finish_graph_read(contoso, claims[0].lease_id, &refused, at(21)).await?);
        assert_eq!(store.get_graph_connection(contoso).await?.unwrap().state, GraphConnectionState::CredentialInvalid);
        assert!(store.claim_graph_reads(10, lease, true, at(4000)).await?.is_empty(), "reading stopped");
        assert!(!store.request_graph_read(contoso, at(4001)).await?);

        // Replaced from a version it is no longer at: refused; from its own: version 2, and read
        // again at once.
        assert_eq!(
            store.set_graph_own_app(contoso, Some(7), &own_app("app-2", b"sealed-2"), "api_key:admin", at(30)).await?,
            GraphOwnAppOutcome::Changed { current_version: Some(1) }
        );
        let GraphOwnAppOutcome::Set { app, connection: again } =
            store.set_graph_own_app(contoso, Some(1), &own_app("app-2", b"sealed-2"), "api_key:admin", at(4100)).await?
        else {
            panic!("set expected");
        };
        assert_eq!((app.version, app.client_id.as_str()), (2, "app-2"));
        assert_eq!((again.state, again.next_read_at, again.last_error.as_deref()), (GraphConnectionState::Connected, at(4100), None));
        assert_eq!(again.collector_id, connection.collector_id, "one reader collector row");
        let claims = store.claim_graph_reads(10, lease, false, at(4101)).await?;
        assert_eq!(claims[0].own_app.as_ref().map(|a| a.client_id.as_str()), Some("app-2"));

        // Removed: the connection it read through goes with it.
        assert!(store.delete_graph_own_app(contoso, "api_key:admin", at(4200)).await?);
        assert_eq!(store.get_graph_own_app(contoso).await?, None);
        assert_eq!(store.get_graph_connection(contoso).await?, None);
        assert!(!store.delete_graph_own_app(contoso, "api_key:admin", at(4201)).await?, "nothing left");

        let audit = store.list_audit_log(acme, None, 10).await?;
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, vec!["graph.app.remove", "graph.app.set", "graph.app.set"]);
        assert_eq!(audit[1].before.as_ref().unwrap()["client_id"], "app-1");
        assert_eq!(audit[1].after.as_ref().unwrap()["client_id"], "app-2");
        let text = serde_json::to_string(&audit.iter().map(|a| (&a.before, &a.after)).collect::<Vec<_>>())?;
        assert!(!text.contains("sealed"), "no credential in the audit log: {text}");
        Ok(())
    }
}

contract_test! {
    async fn consenting_to_the_installation_s_app_replaces_an_own_app_and_disconnecting_forgets_it(store) {
        let acme = org(store, "Acme MSP").await?;
        let contoso = tenant(store, acme, "Contoso").await?;
        store.set_graph_own_app(contoso, None, &own_app("app-1", b"sealed-1"), "api_key:admin", at(0)).await?;
        let nonce = Uuid::new_v4();
        store.create_graph_consent_request(contoso, nonce, "api_key:admin", at(600), at(1)).await?;
        let GraphConsentOutcome::Connected(c) = store.complete_graph_consent(contoso, nonce, Some("entra-1"), at(2)).await? else {
            panic!("connected expected");
        };
        assert_eq!((c.app, c.entra_tenant_id.as_str()), (GraphAppKind::Installation, "entra-1"));
        assert_eq!(store.get_graph_own_app(contoso).await?, None);

        store.set_graph_own_app(contoso, None, &own_app("app-2", b"sealed-2"), "api_key:admin", at(3)).await?;
        assert_eq!(store.get_graph_connection(contoso).await?.unwrap().app, GraphAppKind::Own);
        assert!(store.delete_graph_connection(contoso, "api_key:admin", at(4)).await?);
        assert_eq!(store.get_graph_own_app(contoso).await?, None);
        let audit = store.list_audit_log(acme, None, 10).await?;
        assert_eq!(audit[0].action, "graph.disconnect");
        assert_eq!(audit[0].before.as_ref().unwrap()["own_app"]["client_id"], "app-2");
        Ok(())
    }
}

contract_test! {
    async fn an_installation_app_problem_pauses_its_tenants_only_and_marks_none_revoked(store) {
        let acme = org(store, "Acme MSP").await?;
        let shared = connected(store, acme, "shared", 0).await?;
        let own = tenant(store, acme, "own").await?;
        store.set_graph_own_app(own, None, &own_app("app-1", b"sealed-1"), "api_key:admin", at(0)).await?;
        let lease = std::time::Duration::from_secs(60);

        assert_eq!(store.graph_app_problem().await?, None);
        assert!(store.record_graph_app_problem("401 invalid_client: AADSTS7000215", at(600), at(5)).await?, "new");
        assert!(!store.record_graph_app_problem("401 invalid_client: AADSTS7000222", at(700), at(6)).await?, "known");
        let problem = store.graph_app_problem().await?.unwrap();
        assert_eq!((problem.since, problem.seen_at, problem.retry_at), (at(5), at(6), at(700)));
        assert!(problem.problem.contains("AADSTS7000222"));

        // Until the retry: only the tenant with its own app is read.
        let claims = store.claim_graph_reads(10, lease, true, at(10)).await?;
        assert_eq!(claims.iter().map(|c| c.scope).collect::<Vec<_>>(), vec![own]);
        let read = GraphReadResult { next_read_at: at(100_000), ..GraphReadResult::default() };
        assert!(store.finish_graph_read(own, claims[0].lease_id, &read, at(11)).await?);
        assert_eq!(store.get_graph_connection(shared).await?.unwrap().state, GraphConnectionState::Connected);
        // A reader without the installation's app never takes its tenants.
        assert!(store.claim_graph_reads(10, lease, false, at(701)).await?.is_empty());
        let claims: Vec<_> = store.claim_graph_reads(10, lease, true, at(702)).await?.into_iter().map(|c| c.scope).collect();
        assert_eq!(claims, vec![shared]);

        assert!(store.clear_graph_app_problem().await?);
        assert!(!store.clear_graph_app_problem().await?);
        assert_eq!(store.graph_app_problem().await?, None);
        Ok(())
    }
}
