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
//!   ≥ 72 h, jitter, `Retry-After`); a `429` (or a `502`–`504` with `Retry-After`) pauses
//!   the whole integration for as long as it asks; `410 Gone` or failing for `disable_after`
//!   switches the integration off and tells the organisation's other integrations.
//! - **Exactly one ticket.** Before a create is sent the ticket is recorded as `creating`; a
//!   later attempt that finds it so looks the ticket up by its key (stored on the ticket in the
//!   PSA) before creating, so a lost answer or a killed worker never makes a second ticket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;
use wbd_notify::sealing::Sealer;
use wbd_notify::ssrf::{Guard, NetworkPolicy};
use wbd_notify::{
    Action, Connector, DeliveryError, Event, EventType, Http, IntegrationKind, Outcome, TenantRef, TicketRef,
};
use wbd_store::{
    AttemptRecord, ClaimedDelivery, Delivery, Integration, OrgScope, Routing, Store, Ticket, TicketState,
    TicketUpdate,
};

use crate::events;
use crate::secrets::{self, SecretsError};
use crate::settings::{DeliverySettings, EngineConfig};

/// Starts the dispatcher and the deliverer; they stop when `cancel` fires.
pub fn spawn(
    store: Arc<dyn Store>,
    settings: &DeliverySettings,
    database_url: &str,
    cancel: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let sealer = secrets::sealer_from_settings(settings, database_url)?.map(Arc::new);
    let policy = NetworkPolicy::new(&settings.allow_networks, settings.https_only)
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
    recorder: Recorder,
}

/// Records finished attempts in groups (group commit): an attempt that ends while another
/// group is being written waits, and the next writer takes every attempt waiting in one
/// transaction. Attempts ending together cost the store one transaction, not one each.
#[derive(Default)]
struct Recorder {
    waiting: Mutex<Vec<Waiting>>,
    /// Held by whoever is writing a group.
    turn: tokio::sync::Mutex<()>,
}

struct Waiting {
    delivery: Delivery,
    record: AttemptRecord,
    done: oneshot::Sender<Result<bool, String>>,
}

impl Recorder {
    /// Records `record`, alone or with others; whether its lease still held the delivery.
    async fn record(
        &self,
        store: &dyn Store,
        delivery: &Delivery,
        record: &AttemptRecord,
    ) -> Result<bool, String> {
        let (done, mut outcome) = oneshot::channel();
        self.waiting.lock().expect("recorder lock").push(Waiting {
            delivery: delivery.clone(),
            record: record.clone(),
            done,
        });
        let _turn = self.turn.lock().await;
        match outcome.try_recv() {
            Ok(recorded) => return recorded,
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err("the group this attempt was recorded with was interrupted".to_owned());
            }
            // Not written yet: this task writes everything waiting, its own attempt included.
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let group = std::mem::take(&mut *self.waiting.lock().expect("recorder lock"));
        let attempts: Vec<(&Delivery, &AttemptRecord)> =
            group.iter().map(|w| (&w.delivery, &w.record)).collect();
        let written = store.complete_attempts(&attempts).await.map_err(|e| e.to_string());
        drop(attempts);
        for (i, waiting) in group.into_iter().enumerate() {
            let held =
                written.as_ref().map(|held| held.get(i).copied().unwrap_or(false)).map_err(Clone::clone);
            let _ = waiting.done.send(held);
        }
        outcome.try_recv().unwrap_or_else(|_| Err("the attempt was not in its own group".to_owned()))
    }
}

/// A connector, the integration version it was built from, and when it must be built again
/// (a rotated-out signing secret it signs with expires).
struct CachedConnector {
    version: i64,
    connector: Arc<dyn Connector>,
    rebuild_at: Option<DateTime<Utc>>,
}

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
        Engine {
            store,
            sealer,
            guard,
            config,
            connectors: Mutex::new(HashMap::new()),
            recorder: Recorder::default(),
        }
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
            if !events::is_delivered(&item.event) {
                continue;
            }
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
        if let Some(cached) = self
            .connectors
            .lock()
            .expect("connector cache")
            .get(&integration.id)
            .filter(|c| c.version == integration.version && c.rebuild_at.is_none_or(|at| at > now))
        {
            return Ok(cached.connector.clone());
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
        let rebuild_at =
            opened.signing_secrets.iter().filter_map(|s| s.expires_at).filter(|at| *at > now).min();
        self.connectors.lock().expect("connector cache").insert(
            integration.id,
            CachedConnector { version: integration.version, connector: connector.clone(), rebuild_at },
        );
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
            wbd_trace::continue_trace(&span, tp);
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
        let budget = self.config.attempt_budget();
        let result = tokio::time::timeout(
            budget,
            self.attempt(&http, &delivery, lease_id, &integration, ticket.as_ref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(DeliveryError::Transport(format!(
                "the attempt took longer than {} s in all and was stopped",
                budget.as_secs()
            ))
            .into())
        });
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
            throttle_until: None,
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
                if error.throttles() {
                    // Slow down for every delivery to this destination, not only this one.
                    let pause =
                        self.config.schedule.throttle(error.retry_after(), integration.throttle_streak);
                    record.throttle_until = chrono::TimeDelta::from_std(pause).ok().map(|d| at + d);
                }
                tracing::warn!(
                    error = %error,
                    retry_at = ?record.retry_at,
                    throttled_until = ?record.throttle_until,
                    "delivery attempt failed"
                );
            }
        }
        match self.recorder.record(&*self.store, &delivery, &record).await {
            Ok(true) => count_attempt(&integration.kind, &record),
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
            Ok(true) => {
                metrics::counter!("wbd_integrations_disabled_total", "kind" => integration.kind.clone())
                    .increment(1);
                tracing::warn!(integration_id = %integration.id, reason, "integration switched off");
            }
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
            // A known ticket is made sure to be open (reopened, or a linked one opened, if a
            // person closed it meanwhile) with a note; one deleted in the destination is
            // replaced by a new ticket.
            if let Some((t, _)) = &stored {
                match connector.perform(http, Action::Reopen { event: &event, ticket: t, key }).await {
                    Ok(Outcome::Ticket(new)) => {
                        return Ok(Some(Done { ticket: Some(set(new, TicketState::Open)), finding_open }));
                    }
                    Ok(_) => {
                        return Ok(Some(Done {
                            ticket: Some(TicketUpdate::State(TicketState::Open)),
                            finding_open,
                        }));
                    }
                    Err(DeliveryError::TicketGone(gone)) => {
                        tracing::warn!(ticket = %gone, "the ticket was deleted in the destination; opening a new one");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(found) = self.find_if_uncertain(http, &*connector, &event, key, ticket).await? {
                return Ok(Some(Done { ticket: Some(set(found, TicketState::Open)), finding_open }));
            }
            // Recorded before it is sent: if the answer is lost, the next attempt looks first.
            match self.store.mark_ticket_creating(delivery, lease_id, now).await {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => {
                    return Err(
                        DeliveryError::Transport(format!("cannot record the ticket create: {e}")).into()
                    );
                }
            }
            return match connector.perform(http, Action::Create { event: &event, key }).await {
                Ok(Outcome::Ticket(new)) => {
                    Ok(Some(Done { ticket: Some(set(new, TicketState::Open)), finding_open }))
                }
                Ok(_) => Err(DeliveryError::Protocol("the create returned no ticket".into()).into()),
                // The ticket stays `creating`: the next attempt looks before it creates.
                Err(e) => Err(e.into()),
            };
        }

        if event_type.is_recovery() {
            let finding_open = delivery.finding_id.map(|_| false);
            let open_ticket = match stored {
                Some((t, TicketState::Open)) => Some(t),
                Some((_, _)) => None,
                None => match self.find_if_uncertain(http, &*connector, &event, key, ticket).await? {
                    Some(found) => Some(found),
                    // Acting on the key needs no look-up (PagerDuty resolves by dedup key, and a
                    // resolve of an alert that never opened does nothing).
                    None if creating && connector.key_is_ticket_id() => {
                        Some(TicketRef { external_id: key.to_owned(), url: None })
                    }
                    None => None,
                },
            };
            let Some(t) = open_ticket else {
                // No ticket was ever opened (or it is closed already): nothing to close.
                return Ok(Some(Done { ticket: None, finding_open }));
            };
            let found = ticket.is_some_and(|s| s.external_id.is_none());
            let (action, state) = if others_open {
                (Action::Note { event: &event, ticket: &t }, TicketState::Open)
            } else {
                (Action::Close { event: &event, ticket: &t }, TicketState::Closed)
            };
            let update = match connector.perform(http, action).await {
                Ok(_) if found => set(t, state),
                Ok(_) => TicketUpdate::State(state),
                // Deleted in the destination: nothing left to note or close. The next problem
                // event finds it gone and opens a new one.
                Err(DeliveryError::TicketGone(_)) => TicketUpdate::State(TicketState::Closed),
                Err(e) => return Err(e.into()),
            };
            return Ok(Some(Done { ticket: Some(update), finding_open }));
        }

        // Acknowledged, suppressed: a note on the open ticket, if there is one.
        match stored {
            Some((t, TicketState::Open)) => {
                match connector.perform(http, Action::Note { event: &event, ticket: &t }).await {
                    Ok(_) => Ok(Some(Done { ticket: None, finding_open: None })),
                    Err(DeliveryError::TicketGone(_)) => Ok(Some(Done {
                        ticket: Some(TicketUpdate::State(TicketState::Closed)),
                        finding_open: None,
                    })),
                    Err(e) => Err(e.into()),
                }
            }
            _ => Ok(Some(Done { ticket: None, finding_open: None })),
        }
    }

    /// The ticket an earlier create may have made, if its outcome is unknown (`ticket` is
    /// `creating`). A destination whose search lags behind its creates (Jira) proves nothing by
    /// finding nothing while the create is recent: the attempt fails and looks again later,
    /// rather than create a second ticket.
    async fn find_if_uncertain(
        &self,
        http: &Http,
        connector: &dyn Connector,
        event: &Event,
        key: &str,
        ticket: Option<&Ticket>,
    ) -> Result<Option<TicketRef>, AttemptError> {
        let Some(since) = ticket.filter(|t| t.state == TicketState::Creating).map(|t| t.updated_at) else {
            return Ok(None);
        };
        match connector.perform(http, Action::Find { event, key }).await? {
            Outcome::Ticket(t) => Ok(Some(t)),
            _ => {
                let lag =
                    chrono::TimeDelta::from_std(connector.search_lag()).unwrap_or(chrono::TimeDelta::MAX);
                let age = Utc::now() - since;
                if age < lag {
                    return Err(DeliveryError::Transport(format!(
                        "an earlier create may not show in the destination's search yet ({} s ago; it can \
                         take {} s): looking again later instead of creating a second ticket",
                        age.num_seconds(),
                        lag.num_seconds()
                    ))
                    .into());
                }
                Ok(None)
            }
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
        gather_free_slots(&slots, &wake, engine.config.concurrency).await;
    }
    // Let attempts in flight finish and record (their leases would hold them otherwise).
    while running.join_next().await.is_some() {}
}

/// How long a busy deliverer waits, after an attempt ends, for more to end before it claims.
const CLAIM_GATHER: Duration = Duration::from_millis(5);

/// Waits, at most [`CLAIM_GATHER`], until a quarter of the slots are free, so that a busy
/// deliverer claims several deliveries at a time: a claim costs about the same whether it takes
/// one delivery or eight, and claiming one each time an attempt ends spent most of the store's
/// time on claims. An idle deliverer (every slot free) claims at once.
async fn gather_free_slots(slots: &Semaphore, wake: &Notify, concurrency: usize) {
    let enough = concurrency.div_ceil(4).max(1);
    let deadline = tokio::time::Instant::now() + CLAIM_GATHER;
    while slots.available_permits() < enough {
        if tokio::time::timeout_at(deadline, wake.notified()).await.is_err() {
            return;
        }
    }
}

/// Delivery metrics of one recorded attempt: its outcome (`delivered`; `failed`, to be retried;
/// `dead`, no attempt left) and time by integration kind, and whether the destination throttled.
fn count_attempt(kind: &str, record: &AttemptRecord) {
    let outcome = match (record.succeeded, record.retry_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "failed",
        (false, None) => "dead",
    };
    metrics::counter!("wbd_deliveries_total", "kind" => kind.to_owned(), "outcome" => outcome).increment(1);
    metrics::histogram!("wbd_delivery_attempt_duration_seconds", "kind" => kind.to_owned())
        .record(record.latency_ms as f64 / 1000.0);
    if record.throttle_until.is_some() {
        metrics::counter!("wbd_integrations_throttled_total", "kind" => kind.to_owned()).increment(1);
    }
}
