//! The evaluation queue: carries outbox messages ([`wbd_store::OutboxMessage`]) from the
//! transactional outbox to the workers, in one of two modes chosen by [`QueueKind`].
//!
//! - **Local** (embedded, one process, SQLite): the outbox table *is* the queue. A [`Consumer`]
//!   claims rows with [`Store::claim_outbox`] (leased, attempts counted) and hands them out;
//!   [`Delivery::ack`] deletes the row; a delivery that is never acked comes back when its lease
//!   runs out; a message that failed more than [`QueueSettings::delivery_limit`] times is moved
//!   to the dead-letter table instead of being handed out again. [`Queue::notify`] wakes an idle
//!   consumer at once; [`QueueSettings::poll_interval`] is the fallback.
//! - **Amqp** (distributed, PostgreSQL + RabbitMQ): an outbox relay ([`Queue::spawn_relay`], one
//!   per API process; several may run at once) claims outbox rows, publishes each as a
//!   persistent message to a durable quorum queue with publisher confirms, and deletes the rows
//!   the broker confirmed. Consumers use manual acks and a prefetch window; RabbitMQ enforces the
//!   delivery limit and dead-letters (at-least-once) into `{prefix}.evaluate.dead`.
//!
//! Delivery is at least once in both modes: a message can arrive twice (a relay republishing
//! after a lost confirm, a worker dying before its ack), so consumers deduplicate on
//! [`OutboxMessage::id`] (`Store::apply_evaluation` does).
//!
//! # API
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn wbd_store::Store>) -> Result<(), wbd_queue::QueueError> {
//! use tokio_util::sync::CancellationToken;
//! use wbd_queue::{Queue, QueueKind, QueueSettings};
//!
//! let cancel = CancellationToken::new();
//! let kind = QueueKind::Amqp { url: "amqp://guest:guest@127.0.0.1:5672/%2f".into() };
//! // Amqp: connects and declares the topology, or fails with a clear error.
//! let queue = Queue::open(kind, QueueSettings::default(), store).await?;
//!
//! // API process: publish the outbox (None in Local mode), poke it after each committed ingest.
//! let relay = queue.spawn_relay(cancel.clone());
//! queue.notify();
//!
//! // Worker: `next` reconnects internally and answers None only once `cancel` fires.
//! let mut consumer = queue.consumer(cancel.clone()).await?;
//! while let Some(delivery) = consumer.next().await {
//!     let _tenant = delivery.message.scope();
//!     // evaluate, then exactly one of:
//!     delivery.ack().await?;
//!     // delivery.retry_later().await?;        // transient failure: deliver again later
//!     // delivery.dead_letter("reason").await?; // will never succeed: park it
//! }
//! # drop(relay);
//! # Ok(()) }
//! ```
//!
//! [`Queue::ready`] answers the readiness probe: the broker connection is up (Amqp) or the store
//! answers a ping (Local).
//!
//! # AMQP topology (declared idempotently by `open`, every relay and every consumer)
//!
//! | object | kind | arguments |
//! |---|---|---|
//! | `{prefix}.evaluate` | durable quorum queue | `x-queue-type=quorum`, `x-delivery-limit=N`, `x-dead-letter-exchange={prefix}.dead`, `x-dead-letter-strategy=at-least-once`, `x-overflow=reject-publish` |
//! | `{prefix}.dead` | durable fanout exchange | |
//! | `{prefix}.evaluate.dead` | durable quorum queue, bound to `{prefix}.dead` | `x-queue-type=quorum` |
//!
//! Messages are published to the default exchange with routing key `{prefix}.evaluate`,
//! `mandatory`, delivery mode 2 (persistent), `message_id` = outbox id, content type
//! `application/json`, body = JSON of [`OutboxMessage`], and a `traceparent` header when the
//! ingest carried one ([`TRACEPARENT_HEADER`]).
//!
//! # Broker loss
//!
//! lapin's automatic recovery is not used. Relay and consumers each own their connection and
//! rebuild it themselves with exponential backoff (capped at [`QueueSettings::max_backoff`])
//! until their cancellation token fires. Unconfirmed publishes stay in the outbox and are
//! republished when their lease ([`QueueSettings::relay_lease`]) runs out; deliveries of a dead
//! channel can no longer be acked ([`QueueError::DeliveryLost`]) and RabbitMQ delivers them
//! again.

mod amqp;
mod local;
mod relay;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_store::{OutboxMessage, Store, StoreError};

/// Name of the AMQP header that carries the W3C trace context of the ingest.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Which transport carries the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKind {
    /// In-process, backed by the store's outbox table (embedded mode).
    Local,
    /// RabbitMQ at `url` (`amqp://user:password@host:port/vhost`; `%2f` is the vhost `/`).
    Amqp { url: String },
}

/// Tuning of the queue. [`Default`] gives the production defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Prefix of every AMQP queue and exchange name (`{prefix}.evaluate`, …). Default `wbd`.
    pub prefix: String,
    /// Deliveries a consumer holds unacknowledged at most: AMQP `basic.qos` prefetch, and in
    /// Local mode the number of rows claimed at once. Default 32.
    pub prefetch: u16,
    /// How many times a message may be delivered *unsuccessfully* (not acked) before it is
    /// dead-lettered, so a message is handed out at most `delivery_limit + 1` times. This is
    /// RabbitMQ's `x-delivery-limit`; Local mode counts the same way. Default 10.
    pub delivery_limit: u32,
    /// Local mode: how long a delivery stays reserved for its consumer; one that is neither
    /// acked nor dead-lettered comes back after it. Default 30 s.
    pub lease: Duration,
    /// Amqp mode: how long a relay reserves the outbox rows it is publishing; rows whose
    /// publish was not confirmed are published again after it. Default 30 s.
    pub relay_lease: Duration,
    /// Outbox rows a relay claims and publishes per round. Default 256.
    pub relay_batch: u32,
    /// Fallback poll of the outbox when no [`Queue::notify`] arrives (another process
    /// ingested, or a lease ran out). Default 500 ms.
    pub poll_interval: Duration,
    /// Limit on one attempt to connect to the broker. Default 10 s.
    pub connect_timeout: Duration,
    /// Cap of the exponential backoff between reconnection (or store retry) attempts.
    /// Default 5 s.
    pub max_backoff: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            prefix: "wbd".to_owned(),
            prefetch: 32,
            delivery_limit: 10,
            lease: Duration::from_secs(30),
            relay_lease: Duration::from_secs(30),
            relay_batch: 256,
            poll_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl QueueSettings {
    /// The work queue: `{prefix}.evaluate`.
    pub fn queue_name(&self) -> String {
        format!("{}.evaluate", self.prefix)
    }

    /// The dead-letter exchange: `{prefix}.dead`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The dead-letter queue: `{prefix}.evaluate.dead`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.evaluate.dead", self.prefix)
    }

    /// Checks every value once, so a bad setting fails `Queue::open` with its name.
    pub fn validate(&self) -> Result<(), QueueError> {
        let invalid = |setting: &'static str, reason: &str| {
            Err(QueueError::InvalidSettings { setting, reason: reason.to_owned() })
        };
        // AMQP names are short strings (at most 255 bytes); the longest is the dead queue.
        if self.prefix.is_empty() || self.dead_letter_queue().len() > 255 {
            return invalid("prefix", "must be 1 to 241 bytes long");
        }
        if self.prefix.starts_with("amq.") {
            return invalid("prefix", "names starting with \"amq.\" are reserved by the broker");
        }
        if self.prefetch == 0 {
            return invalid("prefetch", "must be at least 1");
        }
        if self.delivery_limit == 0 || i32::try_from(self.delivery_limit).is_err() {
            return invalid("delivery_limit", "must be between 1 and 2147483647");
        }
        if self.lease.is_zero() {
            return invalid("lease", "must be positive");
        }
        if self.relay_lease.is_zero() {
            return invalid("relay_lease", "must be positive");
        }
        if self.relay_batch == 0 {
            return invalid("relay_batch", "must be at least 1");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval", "must be positive");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout", "must be positive");
        }
        if self.max_backoff.is_zero() {
            return invalid("max_backoff", "must be positive");
        }
        Ok(())
    }
}

/// Errors of the queue layer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue setting `{setting}`: {reason}")]
    InvalidSettings { setting: &'static str, reason: String },
    #[error("invalid AMQP URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot connect to the message broker at {url}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },
    #[error("no answer from the message broker at {url} within {timeout:?}")]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("cannot declare {what} on the message broker")]
    Declare {
        what: String,
        #[source]
        source: lapin::Error,
    },
    #[error("message broker error")]
    Broker(#[source] lapin::Error),
    #[error("store error")]
    Store(#[from] StoreError),
    #[error("cannot encode the outbox message as JSON")]
    Encode(#[from] serde_json::Error),
    /// The channel that carried the delivery is gone (broker restart, connection loss): the
    /// broker delivers the message again, so the caller only has to move on.
    #[error("the channel that carried message {message_id} is closed; the broker will deliver it again")]
    DeliveryLost {
        message_id: Uuid,
        #[source]
        source: Option<lapin::Error>,
    },
}

/// A handle on the queue; cheap to clone, one per process is enough.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<QueueInner>,
}

struct QueueInner {
    settings: QueueSettings,
    store: Arc<dyn Store>,
    /// Poked after each committed ingest: wakes the relay (Amqp) or an idle consumer (Local).
    wake: Arc<Notify>,
    transport: Transport,
}

enum Transport {
    Local,
    Amqp(amqp::Broker),
}

/// Checks that `url` reaches a message broker that lets us in, and closes the connection again;
/// declares nothing (for `check-config`).
pub async fn check_broker(url: &str, settings: &QueueSettings) -> Result<(), QueueError> {
    settings.validate()?;
    amqp::Broker::check(url, settings).await
}

impl Queue {
    /// Opens the queue. Amqp: parses the URL, connects and declares the topology, failing
    /// with [`QueueError::Connect`] / [`QueueError::ConnectTimeout`] if the broker is
    /// unreachable. Local: only checks the settings.
    pub async fn open(
        kind: QueueKind,
        settings: QueueSettings,
        store: Arc<dyn Store>,
    ) -> Result<Queue, QueueError> {
        settings.validate()?;
        let transport = match kind {
            QueueKind::Local => Transport::Local,
            QueueKind::Amqp { url } => Transport::Amqp(amqp::Broker::open(&url, &settings).await?),
        };
        Ok(Queue {
            inner: Arc::new(QueueInner { settings, store, wake: Arc::new(Notify::new()), transport }),
        })
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.inner.settings
    }

    /// `true` in Amqp mode.
    pub fn is_amqp(&self) -> bool {
        matches!(self.inner.transport, Transport::Amqp(_))
    }

    /// Tells the queue that an ingest committed an outbox row, so that it is carried at once
    /// rather than at the next poll. Cheap; never blocks.
    pub fn notify(&self) {
        // `notify_one` keeps a permit when nobody waits, so a poke that lands while the relay
        // or consumer is busy is not lost.
        self.inner.wake.notify_one();
    }

    /// Starts the outbox relay (Amqp mode only; `None` in Local mode, where the outbox is the
    /// queue). It runs until `cancel` fires, reconnecting as needed; run one per API process.
    pub fn spawn_relay(&self, cancel: CancellationToken) -> Option<JoinHandle<()>> {
        match &self.inner.transport {
            Transport::Local => None,
            Transport::Amqp(broker) => Some(tokio::spawn(relay::run(
                broker.clone(),
                self.inner.settings.clone(),
                self.inner.store.clone(),
                self.inner.wake.clone(),
                cancel,
            ))),
        }
    }

    /// A consumer of the work queue. Amqp: opens its own connection and channel (failing if
    /// the broker cannot be reached now) and later reconnects by itself. Its
    /// [`Consumer::next`] answers `None` once `cancel` fires.
    pub async fn consumer(&self, cancel: CancellationToken) -> Result<Consumer, QueueError> {
        let inner = match &self.inner.transport {
            Transport::Local => ConsumerInner::Local(Box::new(local::LocalConsumer::new(
                self.inner.store.clone(),
                self.inner.settings.clone(),
                self.inner.wake.clone(),
                cancel,
            ))),
            Transport::Amqp(broker) => ConsumerInner::Amqp(Box::new(
                amqp::AmqpConsumer::start(broker.clone(), self.inner.settings.clone(), cancel).await?,
            )),
        };
        Ok(Consumer { inner })
    }

    /// Readiness: the broker connection is up (Amqp; reconnects it if it dropped), or the
    /// store answers (Local).
    pub async fn ready(&self) -> bool {
        match &self.inner.transport {
            Transport::Local => self.inner.store.ping().await.is_ok(),
            Transport::Amqp(broker) => broker.ready(&self.inner.settings).await,
        }
    }
}

/// Receives deliveries from the queue. Not `Clone`: create one per worker task.
pub struct Consumer {
    inner: ConsumerInner,
}

enum ConsumerInner {
    // Boxed: the two differ much in size, and a consumer is created once per worker task.
    Local(Box<local::LocalConsumer>),
    Amqp(Box<amqp::AmqpConsumer>),
}

impl Consumer {
    /// The next delivery. Waits while the queue is empty and rides out broker or store
    /// outages (retrying with backoff); answers `None` only when the cancellation token fired.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.inner {
            ConsumerInner::Local(consumer) => consumer.next().await,
            ConsumerInner::Amqp(consumer) => consumer.next().await,
        }
    }
}

/// One message handed to a consumer. Settle it with exactly one of [`ack`](Self::ack),
/// [`retry_later`](Self::retry_later) or [`dead_letter`](Self::dead_letter); one dropped
/// unsettled is delivered again (Local: when its lease runs out; Amqp: when its channel closes).
pub struct Delivery {
    pub message: OutboxMessage,
    /// Delivered before (and not acked then), so part of its work may already be done.
    pub redelivered: bool,
    /// 1 on the first delivery, then counts up on each redelivery.
    pub delivery_count: u32,
    settle: Settle,
}

enum Settle {
    Local(local::LocalSettle),
    Amqp(amqp::AmqpSettle),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// The W3C trace context of the ingest that produced this message, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.message.traceparent.as_deref()
    }

    /// Done: the message will not be delivered again.
    pub async fn ack(self) -> Result<(), QueueError> {
        match self.settle {
            Settle::Local(settle) => settle.ack(self.message.id).await,
            Settle::Amqp(settle) => settle.ack(self.message.id).await,
        }
    }

    /// Failed for a reason that may pass (a conflict, a store hiccup): deliver it again later.
    /// Amqp: requeued at once (nack with requeue). Local: it comes back when its lease runs
    /// out, which spaces the attempts. Either way the attempt counts towards the delivery limit.
    pub async fn retry_later(self) -> Result<(), QueueError> {
        match self.settle {
            Settle::Local(settle) => {
                settle.retry_later(self.message.id);
                Ok(())
            }
            Settle::Amqp(settle) => settle.retry_later(self.message.id).await,
        }
    }

    /// Will never succeed: park the message in the dead-letter store for a human. Local: the
    /// dead-letter table keeps `reason`; Amqp: rejected without requeue into
    /// `{prefix}.evaluate.dead` (RabbitMQ records `x-death`; `reason` goes to the log).
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        match self.settle {
            Settle::Local(settle) => settle.dead_letter(self.message.id, reason).await,
            Settle::Amqp(settle) => settle.dead_letter(self.message.id, reason).await,
        }
    }
}

/// Exponential backoff with jitter between retries of a failing connection or store call.
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const INITIAL: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Self { next: Self::INITIAL.min(max), max }
    }

    /// The delay before the next attempt: doubles up to the cap, and is drawn from the upper
    /// half of that so that many processes losing the same broker do not reconnect in step.
    fn next_delay(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(self.max);
        let spread = u64::try_from(full.as_millis() / 2).unwrap_or(u64::MAX).max(1);
        let jitter = (Uuid::new_v4().as_u128() % u128::from(spread)) as u64;
        full.saturating_sub(Duration::from_millis(jitter))
    }

    fn reset(&mut self) {
        self.next = Self::INITIAL.min(self.max);
    }

    /// Sleeps for the next delay; `false` if `cancel` fired first.
    async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

/// `error: cause: cause…` on one line, for log fields.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors (lapin's IO errors) already print their source: don't say it twice.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
