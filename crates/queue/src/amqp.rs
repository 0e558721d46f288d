//! Distributed mode, the RabbitMQ side (lapin 4 on the ambient tokio runtime).
//!
//! Owns the broker address and connection set-up, the topology declaration, the wire form of a
//! message (properties, headers, JSON body), the supervised consumer and the settlement of AMQP
//! deliveries. lapin's automatic recovery stays off: each consumer (and each relay) owns one
//! connection and rebuilds it itself, because recovery in lapin 4 is opt-in and still had
//! fixes up to 4.12.3 (qos re-application, acks on old channels).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_store::OutboxMessage;

use crate::{Backoff, Delivery, QueueError, QueueSettings, Settle, TRACEPARENT_HEADER, error_chain};

/// Where the broker is and what the topology is called. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Broker {
    inner: Arc<BrokerInner>,
}

struct BrokerInner {
    uri: AMQPUri,
    /// The URL without its password, for errors and logs.
    display_url: String,
    names: Names,
    /// The connection `ready` watches; reopened by `ready` when it dropped.
    control: tokio::sync::Mutex<Option<Connection>>,
}

/// The topology's names as AMQP short strings (checked once, at open).
#[derive(Clone)]
pub(crate) struct Names {
    pub(crate) queue: ShortString,
    pub(crate) dead_exchange: ShortString,
    pub(crate) dead_queue: ShortString,
}

impl Names {
    fn new(settings: &QueueSettings) -> Result<Self, QueueError> {
        let short = |name: String| {
            ShortString::try_new(name).map_err(|_| QueueError::InvalidSettings {
                setting: "prefix",
                reason: "queue names built from it exceed 255 bytes".to_owned(),
            })
        };
        Ok(Self {
            queue: short(settings.queue_name())?,
            dead_exchange: short(settings.dead_letter_exchange())?,
            dead_queue: short(settings.dead_letter_queue())?,
        })
    }
}

/// A readiness probe should answer quickly even while the broker is away.
const READY_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl Broker {
    /// The URL parsed and the names checked; no connection yet.
    fn unconnected(url: &str, settings: &QueueSettings) -> Result<Broker, QueueError> {
        let display_url = redact_password(url);
        let uri = parse_url(url, &display_url)?;
        Ok(Broker {
            inner: Arc::new(BrokerInner {
                uri,
                display_url,
                names: Names::new(settings)?,
                control: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Parses the URL, connects and declares the topology; the connection stays open for
    /// [`Broker::ready`].
    pub(crate) async fn open(url: &str, settings: &QueueSettings) -> Result<Broker, QueueError> {
        let broker = Broker::unconnected(url, settings)?;
        let connection = broker.connect(settings, "control", settings.connect_timeout).await?;
        let channel = connection.create_channel().await.map_err(QueueError::Broker)?;
        declare_topology(&channel, broker.names(), settings).await?;
        if let Err(error) = channel.close(200, "OK".into()).await {
            tracing::debug!(error = %error, "closing the declaration channel failed");
        }
        *broker.inner.control.lock().await = Some(connection);
        tracing::info!(url = %broker.inner.display_url, queue = %broker.names().queue, "connected to the message broker");
        Ok(broker)
    }

    /// Connects once and closes, declaring nothing: whether `url` reaches a broker that lets us
    /// in (`wbd-api check-config`).
    pub(crate) async fn check(url: &str, settings: &QueueSettings) -> Result<(), QueueError> {
        let broker = Broker::unconnected(url, settings)?;
        let connection = broker.connect(settings, "check", settings.connect_timeout).await?;
        if let Err(error) = connection.close(200, "OK".into()).await {
            tracing::debug!(error = %error, "closing the check connection failed");
        }
        Ok(())
    }

    pub(crate) fn names(&self) -> &Names {
        &self.inner.names
    }

    pub(crate) fn display_url(&self) -> &str {
        &self.inner.display_url
    }

    /// One connection attempt, bounded by `timeout`. `role` names the connection in the
    /// broker's management UI.
    pub(crate) async fn connect(
        &self,
        settings: &QueueSettings,
        role: &str,
        timeout: Duration,
    ) -> Result<Connection, QueueError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("wbd-{role} ({})", settings.prefix)));
        let attempt = Connection::connect_uri(self.inner.uri.clone(), properties);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(source)) => Err(QueueError::Connect { url: self.inner.display_url.clone(), source }),
            Err(_) => Err(QueueError::ConnectTimeout { url: self.inner.display_url.clone(), timeout }),
        }
    }

    pub(crate) async fn ready(&self, settings: &QueueSettings) -> bool {
        let mut control = self.inner.control.lock().await;
        if control.as_ref().is_some_and(|connection| connection.status().connected()) {
            return true;
        }
        let timeout = settings.connect_timeout.min(READY_CONNECT_TIMEOUT);
        match self.connect(settings, "control", timeout).await {
            Ok(connection) => {
                *control = Some(connection);
                true
            }
            Err(error) => {
                tracing::debug!(error = %error_chain(&error), "message broker not reachable");
                *control = None;
                false
            }
        }
    }
}

/// Declares the work queue, the dead-letter exchange and the dead-letter queue. Idempotent;
/// fails (PRECONDITION_FAILED) if a queue exists with other arguments, e.g. another
/// `delivery_limit`.
pub(crate) async fn declare_topology(
    channel: &Channel,
    names: &Names,
    settings: &QueueSettings,
) -> Result<(), QueueError> {
    let declare_error = |what: String| move |source| QueueError::Declare { what, source };
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };

    channel
        .exchange_declare(
            names.dead_exchange.clone(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
        .map_err(declare_error(format!("exchange {}", names.dead_exchange)))?;

    let mut dead_arguments = FieldTable::default();
    dead_arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel
        .queue_declare(names.dead_queue.clone(), durable, dead_arguments)
        .await
        .map_err(declare_error(format!("queue {}", names.dead_queue)))?;
    channel
        .queue_bind(
            names.dead_queue.clone(),
            names.dead_exchange.clone(),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(declare_error(format!("binding {} → {}", names.dead_exchange, names.dead_queue)))?;

    channel
        .queue_declare(names.queue.clone(), durable, work_queue_arguments(names, settings))
        .await
        .map_err(declare_error(format!("queue {}", names.queue)))?;
    Ok(())
}

fn work_queue_arguments(names: &Names, settings: &QueueSettings) -> FieldTable {
    // Validated to fit an i32 by QueueSettings::validate.
    let delivery_limit = i32::try_from(settings.delivery_limit).unwrap_or(i32::MAX);
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(delivery_limit));
    arguments
        .insert("x-dead-letter-exchange".into(), AMQPValue::LongString(names.dead_exchange.as_str().into()));
    // At-least-once dead-lettering (quorum queues only) needs reject-publish overflow.
    arguments.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    arguments
}

/// The AMQP form of an outbox message: JSON body and persistent-message properties.
pub(crate) fn encode(message: &OutboxMessage) -> Result<(Vec<u8>, BasicProperties), QueueError> {
    let body = serde_json::to_vec(message)?;
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(message.id.to_string()))
        .with_timestamp(u64::try_from(message.created_at.timestamp()).unwrap_or(0));
    if let Some(traceparent) = &message.traceparent {
        let mut headers = FieldTable::default();
        headers.insert(TRACEPARENT_HEADER.into(), AMQPValue::LongString(traceparent.as_str().into()));
        properties = properties.with_headers(headers);
    }
    Ok((body, properties))
}

/// A consumer's connection, channel and subscription, dropped whole when any of them fails.
struct Session {
    /// Held so the connection lives as long as the session (channels also keep it open).
    _connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    opened_at: Instant,
}

/// A session that lived this long was healthy: its loss restarts the backoff from the start.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

pub(crate) struct AmqpConsumer {
    broker: Broker,
    settings: QueueSettings,
    cancel: CancellationToken,
    session: Option<Session>,
    backoff: Backoff,
}

impl AmqpConsumer {
    /// Opens the first session now, so that a worker starting against an unreachable broker
    /// fails loudly; later losses are handled inside [`AmqpConsumer::next`].
    pub(crate) async fn start(
        broker: Broker,
        settings: QueueSettings,
        cancel: CancellationToken,
    ) -> Result<Self, QueueError> {
        let session = open_session(&broker, &settings).await?;
        let backoff = Backoff::new(settings.max_backoff);
        Ok(Self { broker, settings, cancel, session: Some(session), backoff })
    }

    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.cancel.is_cancelled() {
                // Closing the channel returns prefetched, unhanded deliveries to the queue;
                // deliveries already handed out keep the channel open until settled.
                self.session = None;
                return None;
            }
            let Some(session) = self.session.as_mut() else {
                let attempt = tokio::select! {
                    () = self.cancel.cancelled() => return None,
                    attempt = open_session(&self.broker, &self.settings) => attempt,
                };
                match attempt {
                    Ok(session) => {
                        tracing::info!(queue = %self.broker.names().queue, "consumer reconnected to the message broker");
                        self.session = Some(session);
                    }
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), url = %self.broker.display_url(), "consumer cannot reach the message broker; retrying");
                        if !self.backoff.wait(&self.cancel).await {
                            return None;
                        }
                    }
                }
                continue;
            };
            let item = tokio::select! {
                () = self.cancel.cancelled() => continue,
                item = session.consumer.next() => item,
            };
            match item {
                Some(Ok(delivery)) => {
                    self.backoff.reset();
                    if let Some(delivery) = decode(delivery, session.channel.clone()).await {
                        return Some(delivery);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "consumer channel failed; reconnecting");
                    self.lose_session().await?;
                }
                None => {
                    tracing::warn!("the broker cancelled the consumer; reconnecting");
                    self.lose_session().await?;
                }
            }
        }
    }

    /// Drops a failed session and waits before the next connection attempt. `None` if
    /// cancelled meanwhile.
    async fn lose_session(&mut self) -> Option<()> {
        if let Some(session) = self.session.take()
            && session.opened_at.elapsed() >= HEALTHY_SESSION
        {
            self.backoff.reset();
        }
        self.backoff.wait(&self.cancel).await.then_some(())
    }
}

async fn open_session(broker: &Broker, settings: &QueueSettings) -> Result<Session, QueueError> {
    let connection = broker.connect(settings, "consumer", settings.connect_timeout).await?;
    let channel = connection.create_channel().await.map_err(QueueError::Broker)?;
    declare_topology(&channel, broker.names(), settings).await?;
    channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await.map_err(QueueError::Broker)?;
    let consumer = channel
        .basic_consume(
            broker.names().queue.clone(),
            ShortString::from(""),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(QueueError::Broker)?;
    Ok(Session { _connection: connection, channel, consumer, opened_at: Instant::now() })
}

/// Turns a broker delivery into a [`Delivery`]. A body that is not an outbox message can never
/// be processed: it is rejected without requeue (so dead-lettered) and `None` is returned.
async fn decode(delivery: lapin::message::Delivery, channel: Channel) -> Option<Delivery> {
    let headers = delivery.properties.headers().as_ref();
    let mut message: OutboxMessage = match serde_json::from_slice(&delivery.data) {
        Ok(message) => message,
        Err(error) => {
            let message_id = delivery.properties.message_id().as_ref().map(ShortString::as_str);
            tracing::warn!(message_id, error = %error, bytes = delivery.data.len(), "unparseable message; dead-lettering it");
            match delivery.acker.reject(BasicRejectOptions { requeue: false }).await {
                Ok(true) => {}
                Ok(false) => tracing::debug!("channel closed before the poison message was rejected"),
                Err(error) => tracing::warn!(error = %error, "rejecting a poison message failed"),
            }
            return None;
        }
    };
    if message.traceparent.is_none() {
        message.traceparent =
            headers.and_then(|headers| headers.inner().get(TRACEPARENT_HEADER)).and_then(header_text);
    }
    // Quorum queues count earlier failed deliveries in `x-delivery-count` (absent the first time).
    let failed = headers
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(header_count)
        .unwrap_or(0);
    Some(Delivery {
        message,
        redelivered: delivery.redelivered || failed > 0,
        delivery_count: u32::try_from(failed.saturating_add(1)).unwrap_or(u32::MAX),
        settle: Settle::Amqp(AmqpSettle { acker: delivery.acker, _channel: channel }),
    })
}

fn header_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        AMQPValue::ShortString(text) => Some(text.as_str().to_owned()),
        _ => None,
    }
}

fn header_count(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(n)),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(n)),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(n)),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

/// Settles an AMQP delivery on the channel it came from.
pub(crate) struct AmqpSettle {
    acker: Acker,
    /// Keeps the channel open while the delivery is being worked on, even if the consumer that
    /// received it was dropped: closing it would requeue the message under the worker's feet.
    _channel: Channel,
}

impl AmqpSettle {
    pub(crate) async fn ack(self, id: Uuid) -> Result<(), QueueError> {
        let outcome = self.acker.ack(BasicAckOptions::default()).await;
        settled(id, outcome)
    }

    pub(crate) async fn retry_later(self, id: Uuid) -> Result<(), QueueError> {
        let outcome = self.acker.nack(BasicNackOptions { multiple: false, requeue: true }).await;
        settled(id, outcome)
    }

    pub(crate) async fn dead_letter(self, id: Uuid, reason: &str) -> Result<(), QueueError> {
        tracing::warn!(message_id = %id, %reason, "dead-lettering message");
        let outcome = self.acker.reject(BasicRejectOptions { requeue: false }).await;
        settled(id, outcome)
    }
}

/// lapin answers `Ok(false)` when the channel died before the settlement could be sent, and
/// an error when it died while it was under way; either way the broker will deliver again.
fn settled(message_id: Uuid, outcome: lapin::Result<bool>) -> Result<(), QueueError> {
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => Err(QueueError::DeliveryLost { message_id, source: None }),
        Err(source) => Err(QueueError::DeliveryLost { message_id, source: Some(source) }),
    }
}

fn parse_url(url: &str, display_url: &str) -> Result<AMQPUri, QueueError> {
    let invalid = |reason: String| QueueError::InvalidUrl { url: display_url.to_owned(), reason };
    // amq-protocol-uri resolves bracketed IPv6 hosts to "localhost": refuse them rather than
    // connect somewhere else.
    if authority(url).is_some_and(|authority| authority.contains('[')) {
        return Err(invalid("IPv6 address literals are not supported; use a host name".to_owned()));
    }
    url.parse::<AMQPUri>().map_err(invalid)
}

/// The `user:password@host:port` part of a URL, if it has one.
fn authority(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// The URL with its password replaced by `***`, safe to log.
pub(crate) fn redact_password(url: &str) -> String {
    let (Some(scheme_end), Some(authority)) = (url.find("://"), authority(url)) else {
        return url.to_owned();
    };
    let Some(at) = authority.rfind('@') else { return url.to_owned() };
    let Some(colon) = authority[..at].find(':') else { return url.to_owned() };
    let userinfo_start = scheme_end + 3;
    format!("{}***{}", &url[..userinfo_start + colon + 1], &url[userinfo_start + at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_password("amqp://guest:s3cr%40t@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(redact_password("amqp://rabbit:5672/%2f"), "amqp://rabbit:5672/%2f");
        assert_eq!(redact_password("amqp://user@rabbit"), "amqp://user@rabbit");
        assert_eq!(redact_password("not a url"), "not a url");
    }

    #[test]
    fn ipv6_literal_is_refused() {
        assert!(matches!(parse_url("amqp://u:p@[::1]:5672/%2f", "x"), Err(QueueError::InvalidUrl { .. })));
        assert!(parse_url("amqp://u:p@10.1.2.3:5672/%2f", "x").is_ok());
    }

    #[test]
    fn delivery_count_header_accepts_any_integer() {
        assert_eq!(header_count(&AMQPValue::LongLongInt(3)), Some(3));
        assert_eq!(header_count(&AMQPValue::LongInt(-1)), None);
        assert_eq!(header_count(&AMQPValue::LongString("3".into())), None);
    }
}
