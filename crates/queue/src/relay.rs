//! Distributed mode, the outbox relay: moves committed outbox rows to RabbitMQ.
//!
//! Owns the relay loop. Each round claims up to `relay_batch` rows (leased for
//! `relay_lease`, so that concurrent relays in other API processes skip them; Postgres claims
//! with `SKIP LOCKED`), publishes them all on a confirm-mode channel without waiting in between,
//! then awaits the confirms and deletes exactly the rows the broker confirmed. A row that was
//! nacked, returned as unroutable, or caught in a channel failure stays in the outbox: this
//! relay publishes it again as soon as it has reconnected, while it still holds the lease, and
//! otherwise any relay does once the lease has run out. So a message may reach the queue twice,
//! never zero times; consumers deduplicate on the message id.
//!
//! The relay checks its channel before claiming, so an idle relay whose connection dropped
//! reconnects before it takes rows it could not publish.

use std::sync::Arc;

use chrono::Utc;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection, PublisherConfirm};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_store::{OutboxMessage, Store};

use crate::amqp::{self, Broker};
use crate::{Backoff, QueueError, QueueSettings, error_chain};

struct Relay {
    broker: Broker,
    settings: QueueSettings,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    session: Option<PublishSession>,
    /// Claimed rows whose publish failed while their lease still holds.
    carried: Option<Claimed>,
    backoff: Backoff,
}

/// A confirm-mode channel with the topology declared on it.
struct PublishSession {
    _connection: Connection,
    channel: Channel,
}

/// Outbox rows this relay holds the lease on.
struct Claimed {
    messages: Vec<OutboxMessage>,
    /// When the lease runs out (measured from before the claim, so on the safe side).
    lease_until: Instant,
}

/// What became of one publishing round.
struct RoundOutcome {
    /// Confirmed by the broker: safe to delete from the outbox.
    confirmed: Vec<Uuid>,
    /// Nacked, returned, or lost with the channel: they stay in the outbox.
    unconfirmed: Vec<OutboxMessage>,
    /// The channel is unusable (or the topology is missing): reconnect before the next round.
    reconnect: bool,
}

/// Runs the relay until `cancel` fires. Never gives up: broker and store failures are logged
/// and retried with backoff.
#[tracing::instrument(skip_all, fields(queue = %broker.names().queue))]
pub(crate) async fn run(
    broker: Broker,
    settings: QueueSettings,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let backoff = Backoff::new(settings.max_backoff);
    let mut relay = Relay { broker, settings, store, wake, cancel, session: None, carried: None, backoff };
    relay.run().await;
    tracing::debug!("outbox relay stopped");
}

impl Relay {
    async fn run(&mut self) {
        while !self.cancel.is_cancelled() {
            // An idle relay learns of a closed connection here, before it claims rows it could
            // not publish.
            if self.session.as_ref().is_some_and(|session| !session.channel.status().connected()) {
                tracing::warn!("outbox relay lost its broker connection; reconnecting");
                self.session = None;
            }
            let Some(session) = &self.session else {
                let attempt = tokio::select! {
                    () = self.cancel.cancelled() => return,
                    attempt = open_session(&self.broker, &self.settings) => attempt,
                };
                match attempt {
                    Ok(session) => {
                        tracing::info!("outbox relay connected to the message broker");
                        self.session = Some(session);
                    }
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), url = %self.broker.display_url(), "outbox relay cannot reach the message broker; retrying");
                        if !self.backoff.wait(&self.cancel).await {
                            return;
                        }
                    }
                }
                continue;
            };
            let channel = session.channel.clone();

            let round = match self.carried.take() {
                // Rows from a failed round are still ours while their lease holds: publish them
                // again now rather than wait for the lease to run out.
                Some(carried) if carried.lease_until > Instant::now() + self.settings.relay_lease / 4 => {
                    carried
                }
                _ => match self.claim().await {
                    Ok(Some(claimed)) => claimed,
                    Ok(None) => {
                        self.backoff.reset();
                        tokio::select! {
                            () = self.cancel.cancelled() => return,
                            () = self.wake.notified() => {}
                            () = tokio::time::sleep(self.settings.poll_interval) => {}
                        }
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "outbox relay cannot claim messages; retrying");
                        if !self.backoff.wait(&self.cancel).await {
                            return;
                        }
                        continue;
                    }
                },
            };

            // A broker that stops confirming (blocked connection, partition) must not hold the
            // rows beyond their lease: after it they are another relay's to publish anyway.
            let time_left = round.lease_until.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(
                time_left,
                publish_round(&channel, self.broker.names(), &round.messages),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(
                        messages = round.messages.len(),
                        "the broker did not confirm before the lease ran out; reconnecting"
                    );
                    // Carried over but past its lease margin, so claimed afresh later.
                    RoundOutcome {
                        confirmed: Vec::new(),
                        unconfirmed: round.messages.clone(),
                        reconnect: true,
                    }
                }
            };

            if !outcome.confirmed.is_empty() {
                if let Err(error) = self.store.delete_outbox(&outcome.confirmed).await {
                    // They were published: leaving them means publishing them again, which
                    // the consumers' deduplication absorbs.
                    tracing::warn!(error = %error_chain(&error), messages = outcome.confirmed.len(), "cannot delete published outbox rows; they will be published again");
                }
                tracing::debug!(published = outcome.confirmed.len(), "outbox messages published");
            }
            if outcome.reconnect {
                self.session = None;
            }
            if outcome.unconfirmed.is_empty() {
                self.backoff.reset();
            } else {
                tracing::warn!(
                    unconfirmed = outcome.unconfirmed.len(),
                    "outbox messages not confirmed; publishing them again"
                );
                self.carried =
                    Some(Claimed { messages: outcome.unconfirmed, lease_until: round.lease_until });
                if !self.backoff.wait(&self.cancel).await {
                    return;
                }
            }
        }
    }

    /// Claims the next rows; `None` if the outbox has nothing unleased.
    async fn claim(&self) -> Result<Option<Claimed>, QueueError> {
        let batch = self.settings.relay_batch;
        let lease_until = Instant::now() + self.settings.relay_lease;
        let messages = self.store.claim_outbox(batch, self.settings.relay_lease, Utc::now()).await?;
        if messages.is_empty() {
            return Ok(None);
        }
        if messages.len() >= batch as usize {
            // More rows are likely waiting: let another relay of this process help.
            self.wake.notify_one();
        }
        Ok(Some(Claimed { messages, lease_until }))
    }
}

async fn open_session(broker: &Broker, settings: &QueueSettings) -> Result<PublishSession, QueueError> {
    let connection = broker.connect(settings, "relay", settings.connect_timeout).await?;
    let channel = connection.create_channel().await.map_err(QueueError::Broker)?;
    amqp::declare_topology(&channel, broker.names(), settings).await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(QueueError::Broker)?;
    Ok(PublishSession { _connection: connection, channel })
}

/// Publishes every message, then awaits every confirm: the round trip to the disk is paid once
/// per round, not once per message.
async fn publish_round(channel: &Channel, names: &amqp::Names, messages: &[OutboxMessage]) -> RoundOutcome {
    let mut pending: Vec<(&OutboxMessage, PublisherConfirm)> = Vec::with_capacity(messages.len());
    let mut unconfirmed = Vec::new();
    let mut reconnect = false;
    for (index, message) in messages.iter().enumerate() {
        let (body, properties) = match amqp::encode(message) {
            Ok(encoded) => encoded,
            Err(error) => {
                // Cannot happen for a well-formed message; if it does, the row stays in the
                // outbox (and in the logs) instead of blocking the rest.
                tracing::error!(message_id = %message.id, error = %error_chain(&error), "cannot encode outbox message");
                continue;
            }
        };
        // `mandatory`: if the queue is gone the broker returns the message instead of
        // confirming a publish that reached nobody.
        let options = BasicPublishOptions { mandatory: true, immediate: false };
        match channel.basic_publish("".into(), names.queue.clone(), options, &body, properties).await {
            Ok(confirm) => pending.push((message, confirm)),
            Err(error) => {
                tracing::warn!(error = %error, "publishing failed; reconnecting");
                unconfirmed.extend(messages[index..].iter().cloned());
                reconnect = true;
                break;
            }
        }
    }

    let mut confirmed = Vec::with_capacity(pending.len());
    for (message, confirm) in pending {
        let id = message.id;
        match confirm.await {
            Ok(Confirmation::Ack(None)) => {
                confirmed.push(id);
                continue;
            }
            Ok(Confirmation::Ack(Some(returned))) => {
                tracing::warn!(message_id = %id, reply = %returned.reply_text, "message returned as unroutable; re-declaring the topology");
                reconnect = true;
            }
            Ok(Confirmation::Nack(_)) => {
                tracing::warn!(message_id = %id, "the broker refused the message (nack)");
            }
            Ok(Confirmation::NotRequested) => {
                // Cannot happen on a confirm-mode channel; without a confirm nothing is proven.
                tracing::error!(message_id = %id, "publish was not confirmed: the channel is not in confirm mode");
                reconnect = true;
            }
            Err(error) => {
                tracing::warn!(message_id = %id, error = %error, "waiting for the confirm failed");
                reconnect = true;
            }
        }
        unconfirmed.push(message.clone());
    }
    RoundOutcome { confirmed, unconfirmed, reconnect }
}
