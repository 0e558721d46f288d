//! The dispatcher and the deliverer.
//!
//! - **Dispatcher.** Finding events are the outbox: written in the transaction that changed the
//!   finding, claimed here, turned into one delivery per integration whose filter matches, and
//!   stamped — deliveries and stamp in one transaction, and a delivery is unique per
//!   (integration, event), so a dispatcher that dies half-way or runs twice delivers nothing
//!   twice. Disabled integrations get their deliveries too: they wait until it is switched on.
//! - **Deliverer.** Claims due deliveries under a lease (at most each integration's free
//!   in-flight slots and hourly budget, one at a time per ticket, in event order) and carries
//!   each out in its own task, so a slow receiver holds only its own slots. Every attempt is
//!   recorded with its requests. A failure is retried on the schedule (≥ 10 attempts over
//!   ≥ 72 h, jitter, `Retry-After`); `410 Gone` or failing for `disable_after` switches the
//!   integration off and tells the organisation's other integrations.
//! - **Exactly one ticket.** Before a create is sent the ticket is recorded as `creating`; a
//!   later attempt that finds it so looks the ticket up by its key (stored on the ticket in the
//!   PSA) before creating, so a lost answer or a killed worker never makes a second ticket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;
use wbd_notify::schedule::RetrySchedule;
use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::{Guard, NetworkPolicy};
use wbd_notify::{
    Action, Connector, DeliveryError, Event, EventType, Http, IntegrationKind, Outcome, TenantRef, TicketRef,
};
use wbd_platform::Settings;
use wbd_store::{
    AttemptRecord, ClaimedDelivery, Delivery, Integration, OrgScope, Routing, Store, Ticket, TicketState,
    TicketUpdate,
};

use super::events;
use super::secrets::{self, SecretsError};

/// How the engine runs (from `[delivery]`).
#[derive(Clone)]
pub struct EngineConfig {
    pub schedule: RetrySchedule,
    pub attempt_timeout: Duration,
    /// An integration failing for this long is switched off.
    pub disable_after: chrono::TimeDelta,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub public_url: Option<String>,
}

impl EngineConfig {
    pub fn from_settings(settings: &Settings) -> EngineConfig {
        let d = &settings.delivery;
        let schedule = if d.retry_schedule_secs.is_empty() {
            RetrySchedule::standard()
        } else {
            RetrySchedule::from_delays(
                d.retry_schedule_secs.iter().map(|s| Duration::from_secs_f64(*s)).collect(),
            )
        };
        EngineConfig {
            schedule,
            attempt_timeout: Duration::from_secs(d.attempt_timeout_secs),
            disable_after: chrono::TimeDelta::seconds(
                i64::try_from(d.disable_after_secs).unwrap_or(i64::MAX / 1000),
            ),
            concurrency: d.concurrency,
            poll_interval: Duration::from_millis(d.poll_interval_ms),
            public_url: (!d.public_url.is_empty()).then(|| d.public_url.trim_end_matches('/').to_owned()),
        }
    }

    /// How long a claimed delivery is held: an attempt is a few requests (look up, create,
    /// note), each bounded by the attempt timeout.
    fn lease(&self) -> Duration {
        self.attempt_timeout * 4 + Duration::from_secs(5)
    }
}

/// Starts the dispatcher and the deliverer; they stop when `cancel` fires.
pub fn spawn(
    store: Arc<dyn Store>,
    settings: &Settings,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let sealer = secrets::sealer_from_settings(settings)?.map(Arc::new);
    let policy = NetworkPolicy::new(&settings.delivery.allow_networks, settings.delivery.https_only)
        .map_err(|e| anyhow::anyhow!("delivery.allow_networks: {e}"))?;
    let config = EngineConfig::from_settings(settings);
    let engine = Arc::new(Engine::new(store, sealer, Guard::new(policy, config.attempt_timeout), config));
    start(engine, cancel, tasks);
    Ok(())
}

/// Runs `engine`'s dispatcher and deliverer on `tasks` until `cancel` fires.
pub fn start(engine: Arc<Engine>, cancel: CancellationToken, tasks: &mut JoinSet<()>) {
    let wake = Arc::new(Notify::new());
    tasks.spawn(dispatch_loop(engine.clone(), wake.clone(), cancel.clone()));
    tasks.spawn(deliver_loop(engine, wake, cancel));
}

pub struct Engine {
    store: Arc<dyn Store>,
    sealer: Option<Arc<Sealer>>,
    guard: Guard,
    config: EngineConfig,
    /// Connectors by (integration, version): some keep state worth keeping (HaloPSA's token).
    connectors: Mutex<HashMap<Uuid, CachedConnector>>,
}

/// A connector and the integration version it was built from.
type CachedConnector = (i64, Arc<dyn Connector>);

/// What a finished attempt leaves for the record.
struct Done {
    ticket: Option<TicketUpdate>,
    finding_open: Option<bool>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Option<Arc<Sealer>>,
        guard: Guard,
        config: EngineConfig,
    ) -> Engine {
        Engine { store, sealer, guard, config, connectors: Mutex::new(HashMap::new()) }
    }

    /// Turns waiting finding events into deliveries; returns how many deliveries it made.
    pub async fn dispatch_once(&self) -> anyhow::Result<(usize, u64)> {
        let now = Utc::now();
        let items = self.store.claim_undispatched_events(200, Duration::from_secs(60), now).await?;
        if items.is_empty() {
            return Ok((0, 0));
        }
        let mut integrations: HashMap<wbd_store::OrgId, Vec<Integration>> = HashMap::new();
        let mut deliveries = Vec::new();
        for item in &items {
            let Some(event_type) = events::event_type_of(item.event.kind, &item.finding.rule_id) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = integrations.entry(item.org_id) {
                slot.insert(self.store.list_integrations(OrgScope { org_id: item.org_id }).await?);
            }
            let event = events::finding_event(item, event_type, self.config.public_url.as_deref());
            for integration in &integrations[&item.org_id] {
                if integration.filter.matches(
                    event_type.as_str(),
                    Some(item.tenant_id),
                    Some(&item.finding.rule_id),
                    Some(item.event.severity),
                ) {
                    deliveries.push(events::delivery_for(integration, &event, Some(&item.finding)));
                }
            }
        }
        let ids: Vec<Uuid> = items.iter().map(|i| i.event.id).collect();
        let made = self.store.record_dispatch(&ids, &deliveries, Utc::now()).await?;
        Ok((items.len(), made))
    }

    fn connector(&self, integration: &Integration, now: DateTime<Utc>) -> Result<Arc<dyn Connector>, String> {
        if let Some((_, connector)) = self
            .connectors
            .lock()
            .expect("connector cache")
            .get(&integration.id)
            .filter(|(version, _)| *version == integration.version)
        {
            return Ok(connector.clone());
        }
        let sealer = self.sealer.as_ref().ok_or_else(|| SecretsError::NoKey.to_string())?;
        let opened =
            secrets::open(sealer, integration.org_id, &integration.secrets).map_err(|e| e.to_string())?;
        let settings = secrets::connector_settings(integration, &opened, now).map_err(|e| e.to_string())?;
        let connector: Arc<dyn Connector> =
            Arc::from(wbd_notify::connectors::build(&settings).map_err(|errors| {
                let list: Vec<String> =
                    errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
                format!("the integration's settings are not usable: {}", list.join("; "))
            })?);
        self.connectors
            .lock()
            .expect("connector cache")
            .insert(integration.id, (integration.version, connector.clone()));
        Ok(connector)
    }

    /// Carries out one claimed delivery and records the attempt.
    pub async fn execute(&self, claimed: ClaimedDelivery) {
        let ClaimedDelivery { delivery, lease_id, integration, ticket } = claimed;
        let span = tracing::info_span!(
            "delivery",
            delivery_id = %delivery.id,
            integration_id = %integration.id,
            kind = %integration.kind,
            event_type = %delivery.event_type,
            attempt = delivery.attempts + 1,
        );
        // One trace from the collector's push to the ticket: the attempt continues the trace of
        // the evaluation that wrote the event.
        if let Some(tp) = &delivery.traceparent {
            wbd_platform::telemetry::continue_trace(&span, tp);
        }
        self.execute_in(delivery, lease_id, integration, ticket).instrument(span).await;
    }

    async fn execute_in(
        &self,
        delivery: Delivery,
        lease_id: Uuid,
        integration: Integration,
        ticket: Option<Ticket>,
    ) {
        let http = Http::new(
            &self.guard,
            IntegrationKind::parse(&integration.kind).is_some_and(IntegrationKind::url_is_secret),
        );
        let started = std::time::Instant::now();
        let result = self.attempt(&http, &delivery, lease_id, &integration, ticket.as_ref()).await;
        let latency_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        let exchanges = http.exchanges();
        let at = Utc::now();
        let last = exchanges.last();
        let mut record = AttemptRecord {
            lease_id,
            at,
            succeeded: false,
            status: last.and_then(|e| e.status),
            latency_ms,
            error: None,
            response_excerpt: last.and_then(|e| e.response_excerpt.clone()),
            exchanges: serde_json::to_value(&exchanges).unwrap_or_default(),
            retry_at: None,
            ticket: None,
            finding_open: None,
        };
        let mut gone = false;
        match result {
            Ok(Some(done)) => {
                record.succeeded = true;
                record.ticket = done.ticket;
                record.finding_open = done.finding_open;
                tracing::info!(latency_ms, "delivered");
            }
            // The lease was lost before anything was sent: the new holder records.
            Ok(None) => return,
            Err(AttemptError { error, ticket }) => {
                record.error = Some(error.to_string());
                record.status = error.status().or(record.status);
                record.ticket = ticket;
                gone = matches!(error, DeliveryError::Gone { .. });
                if !gone {
                    let attempts_made = delivery.attempts + 1;
                    record.retry_at = self
                        .config
                        .schedule
                        .next_delay(attempts_made, error.retry_after())
                        .and_then(|d| chrono::TimeDelta::from_std(d).ok())
                        .map(|d| at + d);
                }
                tracing::warn!(error = %error, retry_at = ?record.retry_at, "delivery attempt failed");
            }
        }
        match self.store.complete_attempt(&delivery, &record).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the delivery's lease ran out before the attempt was recorded");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record the delivery attempt; it will be retried when the lease ends");
                return;
            }
        }
        if record.succeeded {
            return;
        }
        let reason = if gone {
            Some("the receiver answered 410 Gone".to_owned())
        } else {
            let since = integration.failing_since.unwrap_or(at);
            (at - since >= self.config.disable_after).then(|| {
                format!(
                    "every delivery failed since {} (last: {})",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    record.error.as_deref().unwrap_or("unknown error")
                )
            })
        };
        if let Some(reason) = reason {
            self.disable(&integration, &reason, at).await;
        }
    }

    /// Switches `integration` off and tells the organisation's other integrations.
    async fn disable(&self, integration: &Integration, reason: &str, now: DateTime<Utc>) {
        let org = OrgScope { org_id: integration.org_id };
        let event = events::disabled_event(integration.org_id, integration, reason, now);
        let others = match self.store.list_integrations(org).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "cannot list integrations to tell of a disabled one");
                Vec::new()
            }
        };
        let notify: Vec<_> = others
            .iter()
            .filter(|i| i.id != integration.id && i.enabled)
            .filter(|i| i.filter.matches(event.event_type.as_str(), None, None, None))
            .map(|i| events::delivery_for(i, &event, None))
            .collect();
        match self.store.disable_integration(org, integration.id, reason, &notify, now).await {
            Ok(true) => tracing::warn!(integration_id = %integration.id, reason, "integration switched off"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "cannot switch the failing integration off"),
        }
    }

    /// One attempt. `Ok(None)`: the lease was lost before anything was sent.
    async fn attempt(
        &self,
        http: &Http,
        delivery: &Delivery,
        lease_id: Uuid,
        integration: &Integration,
        ticket: Option<&Ticket>,
    ) -> Result<Option<Done>, AttemptError> {
        let now = Utc::now();
        let mut event: Event = serde_json::from_value(delivery.payload.clone()).map_err(|e| {
            AttemptError::from(DeliveryError::Protocol(format!("stored event unreadable: {e}")))
        })?;
        let connector =
            self.connector(integration, now).map_err(|e| AttemptError::from(DeliveryError::Protocol(e)))?;
        let Some(key) = delivery.ticket_key.as_deref() else {
            connector.perform(http, Action::Send { event: &event }).await?;
            return Ok(Some(Done { ticket: None, finding_open: None }));
        };
        let event_type = event.event_type;
        if event_type == EventType::IntegrationTest {
            // A ticket system is tested with a harmless look-up: credentials, reachability and
            // permissions, without a ticket to clean up.
            connector.perform(http, Action::Find { event: &event, key }).await?;
            return Ok(Some(Done { ticket: None, finding_open: None }));
        }
        let digest = integration.routing == Routing::Digest && delivery.finding_id.is_some();
        let others_open =
            if digest { self.others_open(delivery, integration, key, &mut event).await? } else { false };
        let stored = ticket.and_then(|t| {
            t.external_id.clone().map(|id| (TicketRef { external_id: id, url: t.url.clone() }, t.state))
        });
        let creating = ticket.is_some_and(|t| t.state == TicketState::Creating);

        if event_type.is_problem() || event_type == EventType::IntegrationDisabled {
            let finding_open = delivery.finding_id.map(|_| true);
            let done = match stored {
                Some((t, TicketState::Open)) => {
                    connector.perform(http, Action::Note { event: &event, ticket: &t }).await?;
                    Done { ticket: Some(TicketUpdate::State(TicketState::Open)), finding_open }
                }
                Some((t, TicketState::Closed)) => {
                    match connector.perform(http, Action::Reopen { event: &event, ticket: &t, key }).await? {
                        Outcome::Ticket(new) => {
                            Done { ticket: Some(set(new, TicketState::Open)), finding_open }
                        }
                        _ => Done { ticket: Some(TicketUpdate::State(TicketState::Open)), finding_open },
                    }
                }
                _ => {
                    if let Some(found) =
                        self.find_if_uncertain(http, &*connector, &event, key, creating).await?
                    {
                        return Ok(Some(Done { ticket: Some(set(found, TicketState::Open)), finding_open }));
                    }
                    match self.store.mark_ticket_creating(delivery, lease_id, now).await {
                        Ok(true) => {}
                        Ok(false) => return Ok(None),
                        Err(e) => {
                            return Err(DeliveryError::Transport(format!(
                                "cannot record the ticket create: {e}"
                            ))
                            .into());
                        }
                    }
                    match connector.perform(http, Action::Create { event: &event, key }).await {
                        Ok(Outcome::Ticket(new)) => {
                            Done { ticket: Some(set(new, TicketState::Open)), finding_open }
                        }
                        Ok(_) => {
                            return Err(
                                DeliveryError::Protocol("the create returned no ticket".into()).into()
                            );
                        }
                        // The ticket stays `creating`: the next attempt looks before it creates.
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            return Ok(Some(done));
        }

        if event_type.is_recovery() {
            let finding_open = delivery.finding_id.map(|_| false);
            let open_ticket = match stored {
                Some((t, TicketState::Open)) => Some(t),
                Some((_, _)) => None,
                None if creating => self.find_if_uncertain(http, &*connector, &event, key, true).await?,
                None => None,
            };
            let Some(t) = open_ticket else {
                // No ticket was ever opened (or it is closed already): nothing to close.
                return Ok(Some(Done { ticket: None, finding_open }));
            };
            let found = ticket.is_some_and(|s| s.external_id.is_none());
            if others_open {
                connector.perform(http, Action::Note { event: &event, ticket: &t }).await?;
                let update =
                    if found { set(t, TicketState::Open) } else { TicketUpdate::State(TicketState::Open) };
                return Ok(Some(Done { ticket: Some(update), finding_open }));
            }
            connector.perform(http, Action::Close { event: &event, ticket: &t }).await?;
            let update =
                if found { set(t, TicketState::Closed) } else { TicketUpdate::State(TicketState::Closed) };
            return Ok(Some(Done { ticket: Some(update), finding_open }));
        }

        // Acknowledged, suppressed: a note on the open ticket, if there is one.
        match stored {
            Some((t, TicketState::Open)) => {
                connector.perform(http, Action::Note { event: &event, ticket: &t }).await?;
                Ok(Some(Done { ticket: None, finding_open: None }))
            }
            _ => Ok(Some(Done { ticket: None, finding_open: None })),
        }
    }

    /// After a create whose outcome is unknown, the ticket it may have made.
    async fn find_if_uncertain(
        &self,
        http: &Http,
        connector: &dyn Connector,
        event: &Event,
        key: &str,
        uncertain: bool,
    ) -> Result<Option<TicketRef>, AttemptError> {
        if !uncertain {
            return Ok(None);
        }
        match connector.perform(http, Action::Find { event, key }).await? {
            Outcome::Ticket(t) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// Digest routing: fills the event's affected tenants and says whether findings other than
    /// this one keep the ticket open.
    async fn others_open(
        &self,
        delivery: &Delivery,
        integration: &Integration,
        key: &str,
        event: &mut Event,
    ) -> Result<bool, AttemptError> {
        let open = self.store.ticket_open_findings(integration.id, key).await.map_err(|e| {
            AttemptError::from(DeliveryError::Transport(format!("cannot read the ticket's findings: {e}")))
        })?;
        let this = delivery.finding_id;
        let others: Vec<_> = open.iter().filter(|(f, _, _)| Some(*f) != this).collect();
        let mut tenants: Vec<TenantRef> = Vec::new();
        for (_, tenant, name) in &others {
            if !tenants.iter().any(|t| t.id == tenant.0) {
                tenants.push(TenantRef { id: tenant.0, name: name.clone() });
            }
        }
        if let Some(t) = event.data.tenant.as_ref().filter(|_| event.event_type.is_problem())
            && !tenants.iter().any(|x| x.id == t.id)
        {
            tenants.push(t.clone());
        }
        event.data.affected_tenants = tenants;
        Ok(!others.is_empty())
    }
}

fn set(ticket: TicketRef, state: TicketState) -> TicketUpdate {
    TicketUpdate::Set { external_id: ticket.external_id, url: ticket.url, state }
}

/// A failed attempt, with what it learnt about the ticket on the way (a found ticket).
struct AttemptError {
    error: DeliveryError,
    ticket: Option<TicketUpdate>,
}

impl From<DeliveryError> for AttemptError {
    fn from(error: DeliveryError) -> Self {
        AttemptError { error, ticket: None }
    }
}

async fn dispatch_loop(engine: Arc<Engine>, wake: Arc<Notify>, cancel: CancellationToken) {
    loop {
        let idle = match engine.dispatch_once().await {
            Ok((0, _)) => true,
            Ok((_, made)) => {
                if made > 0 {
                    wake.notify_one();
                }
                false
            }
            Err(e) => {
                tracing::error!(error = ?e, "dispatching finding events failed; retrying");
                true
            }
        };
        if idle {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(engine.config.poll_interval) => {}
            }
        } else if cancel.is_cancelled() {
            return;
        }
    }
}

async fn deliver_loop(engine: Arc<Engine>, wake: Arc<Notify>, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(engine.config.concurrency));
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        let free = slots.available_permits();
        let mut claimed_any = false;
        if free > 0 {
            match engine.store.claim_deliveries(free as u32, engine.config.lease(), Utc::now()).await {
                Ok(claimed) => {
                    claimed_any = !claimed.is_empty();
                    for delivery in claimed {
                        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                        let engine = engine.clone();
                        let wake = wake.clone();
                        running.spawn(async move {
                            engine.execute(delivery).await;
                            drop(permit);
                            // A finished delivery may unblock the next one of its ticket.
                            wake.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "claiming deliveries failed; retrying"),
            }
        }
        if claimed_any && slots.available_permits() > 0 {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(engine.config.poll_interval) => {}
        }
    }
    // Let attempts in flight finish and record (their leases would hold them otherwise).
    while running.join_next().await.is_some() {}
}
