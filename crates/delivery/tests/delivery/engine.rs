//! The delivery engine against local stand-ins of the real APIs, on a real (SQLite) store:
//! what the PSA or the webhook receiver ends up with after faults — receivers down for hours
//! (time-compressed), slow, failing then recovering, answers lost, a worker dying mid-delivery,
//! duplicate events — and what the MSP sees in the store (attempts, tickets, disabled
//! integrations).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_delivery::events::delivery_for;
use wbd_delivery::secrets::{self, SealedSecrets, StoredSigningSecret};
use wbd_delivery::{Engine, EngineConfig, start};
use wbd_notify::schedule::RetrySchedule;
use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::{Guard, NetworkPolicy};
use wbd_notify::{Event, EventData, EventType, TenantRef};
use wbd_receivers::connectwise::ConnectwiseState;
use wbd_receivers::jira::JiraState;
use wbd_receivers::servicenow::ServiceNowState;
use wbd_receivers::webhook::WebhookReceiver;
use wbd_receivers::{Faults, Receiver};
use wbd_store::{
    DeliveryFilter, DeliveryStatus, Finding, FindingId, FindingStatus, Integration, IntegrationFilter,
    IntegrationWrite, OrgScope, Routing, Severity, Store, TenantId, TicketState,
};

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Harness {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    org: OrgScope,
    tenants: Vec<(TenantId, String)>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    _dir: tempfile::TempDir,
}

/// Fast waits between attempts (the standard schedule's shape, compressed).
fn quick_schedule() -> RetrySchedule {
    RetrySchedule::from_delays(vec![Duration::from_millis(100); 9])
}

fn config(schedule: RetrySchedule) -> EngineConfig {
    EngineConfig {
        schedule,
        attempt_timeout: Duration::from_secs(3),
        disable_after: chrono::TimeDelta::days(5),
        concurrency: 8,
        poll_interval: Duration::from_millis(25),
        public_url: Some("https://wbd.example".into()),
    }
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = wbd_store::connect(&format!("sqlite://{}", dir.path().join("wbd.db").display()), 4)
            .await
            .unwrap();
        let now = Utc::now();
        let org = OrgScope { org_id: store.create_organization("Northwind MSP", now).await.unwrap().id };
        let mut tenants = Vec::new();
        for name in ["Contoso", "Fabrikam"] {
            tenants.push((store.create_tenant(org, name, None, now).await.unwrap().id, name.to_owned()));
        }
        let sealer = Arc::new(Sealer::new(&Sealer::generate_key(), &[]).unwrap());
        Harness {
            store,
            sealer,
            org,
            tenants,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
            _dir: dir,
        }
    }

    /// Starts an engine (call again for a second worker).
    fn start(&mut self, config: EngineConfig) {
        let policy = NetworkPolicy::new(&["127.0.0.1/32".to_owned()], false).unwrap();
        let guard = Guard::new(policy, config.attempt_timeout);
        let engine = Arc::new(Engine::new(self.store.clone(), Some(self.sealer.clone()), guard, config));
        start(engine, self.cancel.clone(), &mut self.tasks);
    }

    async fn integrate(
        &self,
        kind: &str,
        url: &str,
        config: Value,
        credentials: Value,
        tune: impl FnOnce(&mut IntegrationWrite),
    ) -> Integration {
        let signing_secrets = if kind == "webhook" {
            vec![StoredSigningSecret { secret: WHSEC.into(), expires_at: None }]
        } else {
            Vec::new()
        };
        let sealed = SealedSecrets { credentials, url: None, signing_secrets };
        let mut write = IntegrationWrite {
            name: format!("{kind} integration"),
            kind: kind.into(),
            url: Some(url.into()),
            config,
            secrets: secrets::seal(&self.sealer, self.org.org_id, &sealed),
            filter: IntegrationFilter::default(),
            routing: Routing::PerTenant,
            max_in_flight: 4,
            hourly_budget: None,
            enabled: true,
        };
        tune(&mut write);
        self.store.create_integration(self.org, &write, "test", Utc::now()).await.unwrap()
    }

    /// Queues an event about finding `n` of tenant `t` for `integration`, as the dispatcher would.
    async fn emit(&self, integration: &Integration, event_type: EventType, t: usize, n: u128) -> Event {
        let (_, finding, event) = self.event(event_type, t, n);
        let delivery = delivery_for(integration, &event, Some(&finding));
        self.store.enqueue_deliveries(&[delivery], Utc::now()).await.unwrap();
        event
    }

    fn event(&self, event_type: EventType, t: usize, n: u128) -> (TenantId, Finding, Event) {
        let (tenant, tenant_name) = self.tenants[t].clone();
        let now = Utc::now();
        let subject = format!("host{n}.servicebus.windows.net:443");
        let finding = Finding {
            id: FindingId(Uuid::from_u128(0xf000 + n * 10 + t as u128)),
            org_id: self.org.org_id,
            tenant_id: tenant,
            fingerprint: format!("endpoint-reachable|{subject}"),
            rule_id: "endpoint-reachable".into(),
            subject: subject.clone(),
            severity: Severity::High,
            status: if event_type.is_recovery() { FindingStatus::Resolved } else { FindingStatus::Open },
            title: "Password reset endpoint unreachable".into(),
            summary: "The collector could not open TCP 443 to the Service Bus endpoint.".into(),
            evidence: json!({}),
            opened_at: now,
            updated_at: now,
            resolved_at: None,
            reopen_count: 0,
            version: 1,
            collector_id: None,
            acknowledged_at: None,
            acknowledged_by: None,
            suppressed_until: None,
            suppression_reason: None,
            suppressed_by: None,
            message: None,
            root_finding_id: None,
            announced: true,
        };
        let event = Event {
            id: Uuid::now_v7(),
            event_type,
            timestamp: now,
            data: EventData {
                organization_id: self.org.org_id.0,
                tenant: Some(TenantRef { id: tenant.0, name: tenant_name }),
                finding: Some(wbd_delivery::events::finding_data(&finding, Some("https://wbd.example"))),
                actor: "system".into(),
                note: None,
                suppressed_until: None,
                integration_id: None,
                affected_tenants: Vec::new(),
            },
        };
        (tenant, finding, event)
    }

    async fn deliveries(&self, integration: &Integration) -> Vec<wbd_store::Delivery> {
        self.store
            .list_deliveries(self.org, integration.id, &DeliveryFilter { limit: 200, ..Default::default() })
            .await
            .unwrap()
    }

    async fn settled(&self, integration: &Integration) -> Vec<wbd_store::Delivery> {
        let deliveries = self.deliveries(integration).await;
        deliveries.into_iter().filter(|d| d.status != DeliveryStatus::Pending).collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Waits (up to `secs`) until `check` holds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A ConnectWise integration for `cw`, the local Manage.
async fn connectwise(h: &Harness, cw: &Receiver<ConnectwiseState>) -> Integration {
    h.integrate(
        "connectwise",
        &cw.url(),
        json!({"login_company": "northwind", "board_id": 7, "company_identifier": "Contoso"}),
        json!({"public_key": "pub", "private_key": "priv", "client_id": "client-1"}),
        |_| {},
    )
    .await
}

/// A Jira integration (per tenant) for `jira`, the local Jira Cloud.
async fn jira_integration(h: &Harness, jira: &Receiver<JiraState>) -> Integration {
    let (config_json, credentials) = jira_config();
    h.integrate("jira", &jira.url(), config_json, credentials, |_| {}).await
}

fn jira_config() -> (Value, Value) {
    (json!({"email": "wbd@msp.example", "project_key": "OPS"}), json!({"api_token": "jira-token"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_jira_issue_per_finding_noted_closed_and_reopened_and_shown_on_the_finding() {
    let jira = Receiver::spawn(JiraState::new("wbd@msp.example", "jira-token", "OPS")).await;
    let mut h = Harness::new().await;
    let integration = jira_integration(&h, &jira).await;
    h.start(config(quick_schedule()));

    let opened = h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "the issue exists", || async { jira.state.issues().len() == 1 }).await;
    h.emit(&integration, EventType::FindingAcknowledged, 0, 1).await;
    h.emit(&integration, EventType::FindingResolved, 0, 1).await;
    eventually(10, "the issue is done", || async { jira.state.issues()[0].status == "Done" }).await;
    h.emit(&integration, EventType::FindingReopened, 0, 1).await;
    eventually(10, "four deliveries settled", || async { h.settled(&integration).await.len() == 4 }).await;

    let issues = jira.state.issues();
    assert_eq!(issues.len(), 1, "one issue for the finding, whatever happened to it");
    let issue = &issues[0];
    assert_eq!(issue.status, "To Do", "reopened with the finding");
    let comments = issue.comment_texts().join("\n");
    assert!(comments.contains("Acknowledged in Contoso"), "{comments}");
    assert!(comments.contains("Resolved in Contoso"), "{comments}");
    assert!(comments.contains("Failing again in Contoso"), "{comments}");
    assert!(h.deliveries(&integration).await.iter().all(|d| d.status == DeliveryStatus::Succeeded));

    let finding = FindingId(opened.data.finding.as_ref().unwrap().id);
    let tickets = h.store.list_finding_tickets(h.org, &[finding]).await.unwrap();
    assert_eq!(tickets.len(), 1);
    assert_eq!(tickets[0].external_id.as_deref(), Some(issue.key.as_str()));
    assert_eq!(tickets[0].state, TicketState::Open);
    assert_eq!(tickets[0].kind, "jira");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_the_create_never_makes_a_second_incident() {
    let snow = Receiver::spawn(ServiceNowState::new("wbd.integration", "snow-pass")).await;
    snow.common().set_faults(Faults { lose_answer_next: 1, ..Default::default() });
    let mut h = Harness::new().await;
    let integration = h
        .integrate(
            "servicenow",
            &snow.url(),
            json!({"username": "wbd.integration"}),
            json!({"password": "snow-pass"}),
            |_| {},
        )
        .await;
    h.start(config(quick_schedule()));

    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    h.emit(&integration, EventType::FindingResolved, 0, 1).await;
    eventually(10, "both deliveries settled", || async { h.settled(&integration).await.len() == 2 }).await;

    let incidents = snow.state.incidents();
    assert_eq!(incidents.len(), 1, "the retry found the incident the lost answer had created");
    assert_eq!(incidents[0].state(), "6", "resolved when the finding resolved");
    let deliveries = h.deliveries(&integration).await;
    let open = deliveries.iter().find(|d| d.event_type == "finding.opened").unwrap();
    assert_eq!(open.status, DeliveryStatus::Succeeded);
    assert_eq!(open.attempts, 2);
    let (_, attempts) = h.store.get_delivery(h.org, open.id).await.unwrap().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(!attempts[0].succeeded);
    assert_eq!(attempts[0].status, Some(500));
    assert!(attempts[1].succeeded);
    let second: Vec<String> = attempts[1]
        .exchanges
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"].as_str().unwrap().to_owned())
        .collect();
    assert!(second[0].starts_with("GET "), "the second attempt looked before creating: {second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_psa_down_for_hours_gets_every_ticket_in_order_when_it_is_back() {
    let mut cw = Receiver::spawn(ConnectwiseState::new("northwind", "pub", "priv", "client-1")).await;
    let mut h = Harness::new().await;
    let integration = connectwise(&h, &cw).await;
    cw.stop().await;
    // The standard schedule's ten attempts over ~75 h, compressed 100,000 times (≈ 2.7 s).
    h.start(config(RetrySchedule::standard().scaled(1e-5)));
    for n in 1..=3 {
        h.emit(&integration, EventType::FindingOpened, 0, n).await;
    }
    h.emit(&integration, EventType::FindingResolved, 0, 2).await;
    eventually(10, "attempts failed while the PSA is down", || async {
        h.deliveries(&integration).await.iter().any(|d| d.attempts >= 3)
    })
    .await;
    assert!(cw.state.tickets().is_empty());
    cw.start().await;
    eventually(20, "everything delivered", || async {
        h.deliveries(&integration).await.iter().all(|d| d.status == DeliveryStatus::Succeeded)
    })
    .await;
    let tickets = cw.state.tickets();
    assert_eq!(tickets.len(), 3, "one ticket per finding");
    let closed: Vec<_> = tickets.iter().filter(|t| t.status.closed).collect();
    assert_eq!(closed.len(), 1, "the resolved finding's ticket is closed (after it was created)");
    assert!(closed[0].external_x_ref.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_then_recovering_is_delivered_once_signed_and_every_attempt_is_recorded() {
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    hook.common().set_faults(Faults { fail_next: 2, ..Default::default() });
    let mut h = Harness::new().await;
    let integration =
        h.integrate("webhook", &format!("{}/hooks/wbd", hook.url()), json!({}), json!(null), |_| {}).await;
    h.start(config(quick_schedule()));
    let event = h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "delivered", || async { h.settled(&integration).await.len() == 1 }).await;

    let received = hook.requests();
    assert_eq!(received.len(), 3, "two failures, then the success");
    let last = received.last().unwrap();
    let verifier = standardwebhooks::Webhook::new(WHSEC).unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, last.header(name).unwrap().parse().unwrap());
    }
    verifier.verify(&last.body, &headers).expect("the signature verifies with the integration's secret");
    assert_eq!(last.header("webhook-id"), Some(event.message_id().as_str()));
    assert!(
        received.iter().all(|r| r.header("webhook-id") == Some(event.message_id().as_str())),
        "one id across retries"
    );
    assert_eq!(last.json()["type"], "finding.opened");

    let delivery = &h.deliveries(&integration).await[0];
    let (_, attempts) = h.store.get_delivery(h.org, delivery.id).await.unwrap().unwrap();
    let statuses: Vec<_> = attempts.iter().map(|a| (a.succeeded, a.status)).collect();
    assert_eq!(statuses, [(false, Some(500)), (false, Some(500)), (true, Some(204))]);
    assert!(attempts[0].response_excerpt.as_deref().unwrap_or("").contains("injected failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    hook.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 2, ..Default::default() });
    let mut h = Harness::new().await;
    let integration = h.integrate("webhook", &hook.url(), json!({}), json!(null), |_| {}).await;
    h.start(config(quick_schedule()));
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "delivered", || async { h.settled(&integration).await.len() == 1 }).await;
    let received = hook.requests();
    assert_eq!(received.len(), 2);
    let waited = received[1].at - received[0].at;
    assert!(
        waited >= chrono::TimeDelta::milliseconds(1500),
        "waited {waited} although the receiver asked for 2 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_does_not_hold_up_another_integration() {
    // The slow receiver holds every request until the test lets go: as slow as it takes.
    let slow = Receiver::spawn(WebhookReceiver::new()).await;
    slow.common().hold();
    let fast = Receiver::spawn(WebhookReceiver::new()).await;
    let mut h = Harness::new().await;
    let slow_integration =
        h.integrate("webhook", &slow.url(), json!({}), json!(null), |w| w.max_in_flight = 2).await;
    let fast_integration = h.integrate("webhook", &fast.url(), json!({}), json!(null), |_| {}).await;
    for n in 1..=8 {
        h.emit(&slow_integration, EventType::FindingOpened, 0, n).await;
    }
    for n in 1..=8 {
        h.emit(&fast_integration, EventType::FindingOpened, 0, n).await;
    }
    h.start(config(quick_schedule()));
    eventually(20, "the fast receiver has everything", || async {
        h.settled(&fast_integration).await.len() == 8
    })
    .await;
    eventually(20, "the slow receiver holds its two in flight", || async { slow.requests().len() == 2 })
        .await;
    assert!(h.settled(&slow_integration).await.is_empty(), "nothing of the slow one is done yet");
    assert_eq!(slow.requests().len(), 2, "no more than its in-flight slots at once");

    slow.common().release();
    eventually(30, "the slow one catches up", || async { h.settled(&slow_integration).await.len() == 8 })
        .await;
    let delivered = h.settled(&slow_integration).await;
    assert!(delivered.iter().all(|d| d.status == DeliveryStatus::Succeeded), "{delivered:?}");
    assert_eq!(slow.state.deliveries().len(), 8, "each delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_exhausts_its_retries_ends_failed_and_is_not_tried_again() {
    let hook = Receiver::spawn(WebhookReceiver::new().with_answer_status(503)).await;
    let mut h = Harness::new().await;
    let integration = h.integrate("webhook", &hook.url(), json!({}), json!(null), |_| {}).await;
    // Four attempts in all: the first and three retries.
    let schedule = RetrySchedule::from_delays(vec![Duration::from_millis(50); 3]);
    h.start(config(schedule));
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(20, "the delivery gave up", || async { h.settled(&integration).await.len() == 1 }).await;

    let delivery = h.settled(&integration).await.remove(0);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 4);
    assert_eq!(delivery.last_status, Some(503));
    let (_, attempts) = h.store.get_delivery(h.org, delivery.id).await.unwrap().unwrap();
    assert_eq!(
        attempts.iter().map(|a| (a.attempt, a.succeeded)).collect::<Vec<_>>(),
        [(1, false), (2, false), (3, false), (4, false)]
    );
    // Nothing more is sent once it failed (the engine keeps polling meanwhile).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 4, "one request per attempt, none after the last");
    let failed = DeliveryFilter { status: Some(DeliveryStatus::Failed), limit: 10, ..Default::default() };
    let listed = h.store.list_deliveries(h.org, integration.id, &failed).await.unwrap();
    assert_eq!(listed.len(), 1, "listed as failed, ready to be replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_now_resolves_to_a_refused_address_is_never_contacted() {
    // Saved as a name; at delivery time the name resolves to loopback, which this engine's
    // network policy refuses (no allow-listed networks).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut h = Harness::new().await;
    let url = format!("http://localhost:{port}/hook");
    let integration = h.integrate("webhook", &url, json!({}), json!(null), |_| {}).await;
    let cfg = config(RetrySchedule::from_delays(vec![Duration::from_millis(50); 2]));
    let guard = Guard::new(NetworkPolicy::new(&[], false).unwrap(), cfg.attempt_timeout);
    let engine = Arc::new(Engine::new(h.store.clone(), Some(h.sealer.clone()), guard, cfg));
    start(engine, h.cancel.clone(), &mut h.tasks);
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(20, "the delivery gave up", || async { h.settled(&integration).await.len() == 1 }).await;

    let delivery = h.settled(&integration).await.remove(0);
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 3, "retried on the schedule like any failure");
    let (_, attempts) = h.store.get_delivery(h.org, delivery.id).await.unwrap().unwrap();
    for attempt in &attempts {
        let error = attempt.error.as_deref().unwrap_or("");
        assert!(error.contains("destination refused"), "a clear reason: {error}");
        assert_eq!(attempt.status, None, "no HTTP answer: nothing was sent");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection was ever made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_switches_the_integration_off_and_the_organisation_hears_of_it() {
    let dead = Receiver::spawn(WebhookReceiver::new().with_answer_status(410)).await;
    let other = Receiver::spawn(WebhookReceiver::new()).await;
    let mut h = Harness::new().await;
    let dead_integration = h.integrate("webhook", &dead.url(), json!({}), json!(null), |_| {}).await;
    let _other = h.integrate("webhook", &other.url(), json!({}), json!(null), |_| {}).await;
    h.start(config(quick_schedule()));
    h.emit(&dead_integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "the other integration is told", || async { !other.state.deliveries().is_empty() }).await;

    let told = other.state.deliveries()[0].json();
    assert_eq!(told["type"], "integration.disabled");
    assert_eq!(told["data"]["integration_id"], json!(dead_integration.id));
    assert!(told["data"]["note"].as_str().unwrap().contains("410"), "{told}");
    let now_off = h.store.get_integration(h.org, dead_integration.id).await.unwrap().unwrap();
    assert!(!now_off.enabled);
    assert!(now_off.disabled_reason.unwrap().contains("410 Gone"));
    assert_eq!(dead.state.deliveries().len(), 1, "no retry after 410");
    let audit = h.store.list_audit_log(h.org, None, 50).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "integration.disable"), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_failing_for_too_long_is_switched_off_and_nothing_waiting_for_it_is_lost() {
    let mut hook = Receiver::spawn(WebhookReceiver::new()).await;
    hook.stop().await;
    let mut h = Harness::new().await;
    let integration = h.integrate("webhook", &hook.url(), json!({}), json!(null), |_| {}).await;
    let mut cfg = config(RetrySchedule::from_delays(vec![Duration::from_millis(300); 30]));
    cfg.disable_after = chrono::TimeDelta::seconds(1);
    h.start(cfg);
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "switched off", || async {
        !h.store.get_integration(h.org, integration.id).await.unwrap().unwrap().enabled
    })
    .await;
    h.emit(&integration, EventType::FindingOpened, 0, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        h.deliveries(&integration).await.iter().all(|d| d.status == DeliveryStatus::Pending),
        "kept, waiting"
    );

    // The tenant whose events wait has a finding saying so.
    let alert = h
        .store
        .list_findings(h.org, &wbd_store::FindingFilter { limit: 100, ..Default::default() })
        .await
        .unwrap();
    let alert: Vec<_> = alert.iter().filter(|f| f.rule_id == wbd_store::INTEGRATION_DISABLED_RULE).collect();
    assert_eq!(alert.len(), 1, "{alert:?}");
    assert_eq!(alert[0].tenant_id, h.tenants[0].0);
    assert_eq!(alert[0].status, FindingStatus::Open);
    assert!(alert[0].summary.contains("was switched off"), "{}", alert[0].summary);

    hook.start().await;
    let mut on = h.store.get_integration(h.org, integration.id).await.unwrap().unwrap();
    on.enabled = true;
    let write = IntegrationWrite {
        name: on.name.clone(),
        kind: on.kind.clone(),
        url: on.url.clone(),
        config: on.config.clone(),
        secrets: on.secrets.clone(),
        filter: on.filter.clone(),
        routing: on.routing,
        max_in_flight: on.max_in_flight,
        hourly_budget: on.hourly_budget,
        enabled: true,
    };
    h.store.update_integration(h.org, integration.id, on.version, &write, "admin", Utc::now()).await.unwrap();
    eventually(10, "both delivered once switched on", || async { hook.state.deliveries().len() >= 2 }).await;
    eventually(10, "the finding resolves with the first success", || async {
        let findings = h
            .store
            .list_findings(h.org, &wbd_store::FindingFilter { limit: 100, ..Default::default() })
            .await
            .unwrap();
        findings
            .iter()
            .any(|f| f.rule_id == wbd_store::INTEGRATION_DISABLED_RULE && f.status == FindingStatus::Resolved)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_after_the_create_leaves_one_ticket() {
    let jira = Receiver::spawn(JiraState::new("wbd@msp.example", "jira-token", "OPS")).await;
    let mut h = Harness::new().await;
    let integration = jira_integration(&h, &jira).await;
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;

    // The first worker claims the delivery, records the create and sends it — and dies before it
    // can write down the answer.
    let lease = Duration::from_millis(500);
    let claimed = h.store.claim_deliveries(1, lease, Utc::now()).await.unwrap().remove(0);
    assert!(h.store.mark_ticket_creating(&claimed.delivery, claimed.lease_id, Utc::now()).await.unwrap());
    let opened: Event = serde_json::from_value(claimed.delivery.payload.clone()).unwrap();
    let sealed = secrets::open(&h.sealer, h.org.org_id, &claimed.integration.secrets).unwrap();
    let settings = secrets::connector_settings(&claimed.integration, &sealed, Utc::now()).unwrap();
    let connector = wbd_notify::connectors::build(&settings).unwrap();
    let policy = NetworkPolicy::new(&["127.0.0.1/32".to_owned()], false).unwrap();
    let http = wbd_notify::Http::new(&Guard::new(policy, Duration::from_secs(3)), false);
    let key = claimed.delivery.ticket_key.clone().unwrap();
    connector.perform(&http, wbd_notify::Action::Create { event: &opened, key: &key }).await.unwrap();
    drop(claimed);
    assert_eq!(jira.state.issues().len(), 1);

    // Another worker takes over once the lease runs out.
    h.start(config(quick_schedule()));
    eventually(10, "delivered by the second worker", || async { h.settled(&integration).await.len() == 1 })
        .await;
    assert_eq!(jira.state.issues().len(), 1, "the second worker found the issue instead of creating another");
    let finding = FindingId(opened.data.finding.as_ref().unwrap().id);
    let tickets = h.store.list_finding_tickets(h.org, &[finding]).await.unwrap();
    assert_eq!(tickets[0].external_id.as_deref(), Some("OPS-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_event_is_delivered_once() {
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    let mut h = Harness::new().await;
    let integration = h.integrate("webhook", &hook.url(), json!({}), json!(null), |_| {}).await;
    let (_, finding, event) = h.event(EventType::FindingOpened, 0, 1);
    let delivery = delivery_for(&integration, &event, Some(&finding));
    assert_eq!(
        h.store.enqueue_deliveries(&[delivery.clone(), delivery.clone()], Utc::now()).await.unwrap(),
        1
    );
    assert_eq!(h.store.enqueue_deliveries(&[delivery], Utc::now()).await.unwrap(), 0);
    h.start(config(quick_schedule()));
    h.start(config(quick_schedule()));
    eventually(10, "delivered", || async { h.settled(&integration).await.len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.state.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_budget_holds_back_what_exceeds_it() {
    let hook = Receiver::spawn(WebhookReceiver::new()).await;
    let mut h = Harness::new().await;
    let integration =
        h.integrate("webhook", &hook.url(), json!({}), json!(null), |w| w.hourly_budget = Some(3)).await;
    for n in 1..=5 {
        h.emit(&integration, EventType::FindingOpened, 0, n).await;
    }
    h.start(config(quick_schedule()));
    eventually(10, "the budget's worth delivered", || async { hook.state.deliveries().len() == 3 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.state.deliveries().len(), 3, "the rest waits for the next hour");
    let pending =
        h.deliveries(&integration).await.into_iter().filter(|d| d.status == DeliveryStatus::Pending).count();
    assert_eq!(pending, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_routing_keeps_one_ticket_per_problem_across_tenants() {
    let jira = Receiver::spawn(JiraState::new("wbd@msp.example", "jira-token", "OPS")).await;
    let mut h = Harness::new().await;
    let (config_json, credentials) = jira_config();
    let integration =
        h.integrate("jira", &jira.url(), config_json, credentials, |w| w.routing = Routing::Digest).await;
    h.start(config(quick_schedule()));
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "the issue exists", || async { jira.state.issues().len() == 1 }).await;
    h.emit(&integration, EventType::FindingOpened, 1, 1).await;
    eventually(10, "noted", || async { h.settled(&integration).await.len() == 2 }).await;
    h.emit(&integration, EventType::FindingResolved, 0, 1).await;
    eventually(10, "noted", || async { h.settled(&integration).await.len() == 3 }).await;
    let issue = jira.state.issues()[0].clone();
    assert_eq!(jira.state.issues().len(), 1, "one issue for the problem in both tenants");
    assert_ne!(issue.status, "Done", "Fabrikam still has the problem");
    let comments = issue.comment_texts().join("\n");
    assert!(comments.contains("Opened in Fabrikam"), "{comments}");
    h.emit(&integration, EventType::FindingResolved, 1, 1).await;
    eventually(10, "closed when the last tenant is fixed", || async {
        jira.state.issues()[0].status == "Done"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_every_delivery_to_that_receiver_and_no_other() {
    let limited = Receiver::spawn(WebhookReceiver::new()).await;
    limited.common().set_faults(Faults { rate_limit_next: 1, retry_after_secs: 2, ..Default::default() });
    let other = Receiver::spawn(WebhookReceiver::new()).await;
    let mut h = Harness::new().await;
    let psa = h.integrate("webhook", &limited.url(), json!({}), json!(null), |w| w.max_in_flight = 1).await;
    let calm = h.integrate("webhook", &other.url(), json!({}), json!(null), |_| {}).await;
    for n in 1..=4 {
        h.emit(&psa, EventType::FindingOpened, 0, n).await;
    }
    h.start(config(quick_schedule()));
    eventually(10, "the receiver said 429", || async { !limited.requests().is_empty() }).await;
    let paused = h.store.get_integration(h.org, psa.id).await.unwrap().unwrap();
    assert!(paused.throttled_until.is_some_and(|until| until > Utc::now()), "{paused:?}");

    // While it is paused another receiver gets its events at once.
    h.emit(&calm, EventType::FindingOpened, 1, 9).await;
    eventually(10, "the other receiver is served", || async { other.state.deliveries().len() == 1 }).await;
    assert_eq!(limited.requests().len(), 1, "nothing more was sent to the receiver that said 429");

    eventually(20, "everything delivered after the pause", || async {
        limited.state.deliveries().len() == 4
    })
    .await;
    let received = limited.requests();
    assert_eq!(received.len(), 5, "the throttled delivery once more, the others once each");
    let asked = received[0].at + chrono::TimeDelta::milliseconds(1900);
    assert!(received[1..].iter().all(|r| r.at >= asked), "a request came before the 2 s it asked for");
    let after = h.store.get_integration(h.org, psa.id).await.unwrap().unwrap();
    assert_eq!(after.throttle_streak, 0, "a success ends the streak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_is_not_repeated_while_jira_s_search_lags_behind() {
    let jira = Receiver::spawn(
        JiraState::new("wbd@msp.example", "jira-token", "OPS").with_search_lag(Duration::from_millis(400)),
    )
    .await;
    jira.common().set_faults(Faults { lose_answer_next: 1, ..Default::default() });
    let mut h = Harness::new().await;
    let integration = jira_integration(&h, &jira).await;
    h.start(config(quick_schedule()));
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "delivered", || async { h.settled(&integration).await.len() == 1 }).await;

    assert_eq!(jira.state.issues().len(), 1, "the retries waited for the search instead of creating again");
    let delivery = &h.deliveries(&integration).await[0];
    assert_eq!(delivery.status, DeliveryStatus::Succeeded);
    let (_, attempts) = h.store.get_delivery(h.org, delivery.id).await.unwrap().unwrap();
    assert!(
        attempts.len() >= 3,
        "the lost answer, at least one look that saw nothing, the find: {attempts:?}"
    );
    assert!(
        attempts[1].error.as_deref().is_some_and(|e| e.contains("may not show")),
        "{:?}",
        attempts[1].error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_deleted_in_jira_is_replaced_when_the_problem_comes_back() {
    let jira = Receiver::spawn(JiraState::new("wbd@msp.example", "jira-token", "OPS")).await;
    let mut h = Harness::new().await;
    let integration = jira_integration(&h, &jira).await;
    h.start(config(quick_schedule()));
    let opened = h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "the issue exists", || async { jira.state.issues().len() == 1 }).await;
    let first = jira.state.issues()[0].key.clone();

    // A person deletes the issue; the problem stays, and comes back after a suppression.
    jira.state.delete_issue(&first);
    h.emit(&integration, EventType::FindingSuppressed, 0, 1).await;
    h.emit(&integration, EventType::FindingReopened, 0, 1).await;
    eventually(10, "all delivered", || async { h.settled(&integration).await.len() == 3 }).await;

    assert!(h.deliveries(&integration).await.iter().all(|d| d.status == DeliveryStatus::Succeeded));
    let issues = jira.state.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_ne!(issues[0].key, first, "a new issue");
    assert_eq!(issues[0].status, "To Do");
    let finding = FindingId(opened.data.finding.as_ref().unwrap().id);
    let tickets = h.store.list_finding_tickets(h.org, &[finding]).await.unwrap();
    assert_eq!(
        tickets[0].external_id.as_deref(),
        Some(issues[0].key.as_str()),
        "the finding shows the new one"
    );

    h.emit(&integration, EventType::FindingResolved, 0, 1).await;
    eventually(10, "the new issue is closed", || async { jira.state.issues()[0].status == "Done" }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_a_person_closed_while_the_problem_stayed_is_reopened_when_it_is_announced_again() {
    let cw = Receiver::spawn(ConnectwiseState::new("northwind", "pub", "priv", "client-1")).await;
    let mut h = Harness::new().await;
    let integration = connectwise(&h, &cw).await;
    h.start(config(quick_schedule()));
    h.emit(&integration, EventType::FindingOpened, 0, 1).await;
    eventually(10, "the ticket exists", || async { cw.state.tickets().len() == 1 }).await;
    let id = cw.state.tickets()[0].id;

    // Suppressed, the ticket closed by hand; the suppression runs out with the problem still there.
    h.emit(&integration, EventType::FindingSuppressed, 0, 1).await;
    eventually(10, "noted", || async { h.settled(&integration).await.len() == 2 }).await;
    cw.state.close_by_person(id);
    h.emit(&integration, EventType::FindingReopened, 0, 1).await;
    eventually(10, "delivered", || async { h.settled(&integration).await.len() == 3 }).await;

    let tickets = cw.state.tickets();
    assert_eq!(tickets.len(), 1, "the same ticket");
    assert!(!tickets[0].status.closed, "open again: {:?}", tickets[0].status);
    assert!(tickets[0].note_texts().join("\n").contains("Failing again"), "{:?}", tickets[0].note_texts());
}
