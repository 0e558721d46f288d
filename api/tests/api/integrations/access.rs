//! Who may see and change integrations: other organisations see nothing, whatever the role;
//! only org admins change them.

use reqwest::StatusCode;
use serde_json::json;

use super::*;
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_integrations_and_deliveries_are_not_found() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let queued = app.test_integration(&org.token, &id).await;
    let delivery = queued["delivery_id"].as_str().expect("delivery id").to_owned();

    let t = &other.token;
    let answers = [
        app.get(t, &format!("/v1/integrations/{id}")).await,
        app.patch(t, &format!("/v1/integrations/{id}"), &json!({ "enabled": false })).await,
        app.post(t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
        app.post(t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
        app.post(t, &format!("/v1/integrations/{id}/replay"), &json!({ "since": "2026-01-01T00:00:00Z" }))
            .await,
        app.get(t, &format!("/v1/integrations/{id}/deliveries")).await,
        app.get(t, &format!("/v1/deliveries/{delivery}")).await,
        app.post(t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
        app.delete(t, &format!("/v1/integrations/{id}")).await,
        app.get(t, "/v1/integrations/not-a-uuid").await,
    ];
    for res in answers {
        problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    assert!(app.integrations(t).await.is_empty());
    // Untouched.
    let still = app.integration(&org.token, &id).await;
    assert_eq!((still["enabled"].clone(), still["version"].clone()), (json!(true), hook["version"].clone()));
    assert_eq!(app.delivery(&org.token, &delivery).await["status"], "pending");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_org_admins_change_integrations() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();

    for role in ["read_only", "technician"] {
        let t = app.login_as(&org, role).await;
        assert_eq!(app.integrations(&t).await.len(), 1, "{role} reads");
        assert_eq!(app.integration(&t, &id).await["id"], hook["id"]);
        let res = app.get(&t, &format!("/v1/integrations/{id}/deliveries")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(app.delivery(&t, &delivery).await["id"], json!(delivery));
        let answers = [
            app.post(&t, "/v1/integrations", &webhook()).await,
            app.patch(&t, &format!("/v1/integrations/{id}"), &json!({ "name": "Mine now" })).await,
            app.post(&t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
            app.post(&t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
            app.post(
                &t,
                &format!("/v1/integrations/{id}/replay"),
                &json!({ "since": "2026-01-01T00:00:00Z" }),
            )
            .await,
            app.post(&t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
            app.delete(&t, &format!("/v1/integrations/{id}")).await,
        ];
        for res in answers {
            problem(res, StatusCode::FORBIDDEN, "forbidden").await;
        }
    }
    assert_eq!(app.integrations(&org.token).await.len(), 1);
    assert_eq!(app.integration(&org.token, &id).await["name"], "Our receiver");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_organisations_integration_is_not_found_whatever_the_role() {
    let app = spawn_quiet_app(|_| {}).await;
    let org = app.bootstrap_org("MSP").await;
    let other = app.bootstrap_org("Other MSP").await;
    let hook = app.add_integration(&org.token, &webhook()).await;
    let id = id_of(&hook);
    let delivery = app.test_integration(&org.token, &id).await["delivery_id"].as_str().unwrap().to_owned();

    for role in ["read_only", "technician"] {
        let t = app.login_as(&other, role).await;
        let answers = [
            app.get(&t, &format!("/v1/integrations/{id}")).await,
            app.patch(&t, &format!("/v1/integrations/{id}"), &json!({ "enabled": false })).await,
            app.post(&t, &format!("/v1/integrations/{id}/test"), &json!({})).await,
            app.post(&t, &format!("/v1/integrations/{id}/rotate-secret"), &json!({})).await,
            app.post(
                &t,
                &format!("/v1/integrations/{id}/replay"),
                &json!({ "since": "2026-01-01T00:00:00Z" }),
            )
            .await,
            app.get(&t, &format!("/v1/integrations/{id}/deliveries")).await,
            app.get(&t, &format!("/v1/deliveries/{delivery}")).await,
            app.post(&t, &format!("/v1/deliveries/{delivery}/replay"), &json!({})).await,
            app.delete(&t, &format!("/v1/integrations/{id}")).await,
        ];
        for res in answers {
            problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    let still = app.integration(&org.token, &id).await;
    assert_eq!((still["enabled"].clone(), still["version"].clone()), (json!(true), hook["version"].clone()));
    app.shutdown().await;
}
