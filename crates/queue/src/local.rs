//! Embedded mode: the store's outbox table is the queue.
//!
//! Owns the local consumer (claims leased rows, hands them out, dead-letters messages past the
//! delivery limit) and the settlement of local deliveries (ack deletes the row, dead-letter
//! moves it, retry lets the lease run out). Nothing lives only in memory: a crash loses at most
//! leases, and leased rows come back when they expire.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use wbd_store::{OutboxMessage, Store};

use crate::{Backoff, Delivery, QueueError, QueueSettings, Settle, error_chain};

pub(crate) struct LocalConsumer {
    store: Arc<dyn Store>,
    settings: QueueSettings,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    /// Claimed rows not yet handed out, oldest first.
    claimed: VecDeque<Claimed>,
    backoff: Backoff,
}

struct Claimed {
    message: OutboxMessage,
    /// When the claim's lease runs out (measured from before the claim, so on the safe side).
    lease_until: Instant,
}

impl LocalConsumer {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        settings: QueueSettings,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> Self {
        let backoff = Backoff::new(settings.max_backoff);
        Self { store, settings, wake, cancel, claimed: VecDeque::new(), backoff }
    }

    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            if let Some(delivery) = self.take_claimed() {
                return Some(delivery);
            }
            match self.claim().await {
                Ok(true) => {}
                Ok(false) => {
                    tokio::select! {
                        () = self.cancel.cancelled() => return None,
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "claiming from the local queue failed; retrying");
                    if !self.backoff.wait(&self.cancel).await {
                        return None;
                    }
                }
            }
        }
    }

    /// The oldest claimed message whose lease still holds. One whose lease ran out is
    /// skipped: another consumer may have claimed it since, and it comes back by a new claim.
    fn take_claimed(&mut self) -> Option<Delivery> {
        let now = Instant::now();
        while let Some(Claimed { message, lease_until }) = self.claimed.pop_front() {
            if now < lease_until {
                let attempts = message.attempts.max(1);
                return Some(Delivery {
                    redelivered: attempts > 1,
                    delivery_count: attempts,
                    message,
                    settle: Settle::Local(LocalSettle { store: self.store.clone() }),
                });
            }
            tracing::debug!(message_id = %message.id, "lease ran out before hand-out; leaving it to a new claim");
        }
        None
    }

    /// Claims up to `prefetch` rows; `true` if any is ready to hand out.
    async fn claim(&mut self) -> Result<bool, QueueError> {
        let limit = u32::from(self.settings.prefetch);
        let lease_until = Instant::now() + self.settings.lease;
        let messages = self.store.claim_outbox(limit, self.settings.lease, Utc::now()).await?;
        self.backoff.reset();
        if messages.len() >= limit as usize {
            // More may be waiting: pass the wake-up on so that another idle consumer helps.
            self.wake.notify_one();
        }
        for message in messages {
            // `attempts` counts this claim too; RabbitMQ's delivery limit counts the failed
            // deliveries before this one, so both modes hand a message out limit + 1 times.
            let failed = message.attempts.saturating_sub(1);
            if failed > self.settings.delivery_limit {
                let reason = format!(
                    "delivered {failed} times without being acknowledged (delivery limit {})",
                    self.settings.delivery_limit
                );
                tracing::warn!(message_id = %message.id, tenant_id = %message.tenant_id, %reason, "dead-lettering message");
                self.store.dead_letter_outbox(message.id, &reason, Utc::now()).await?;
                continue;
            }
            self.claimed.push_back(Claimed { message, lease_until });
        }
        Ok(!self.claimed.is_empty())
    }
}

/// Settles a local delivery against the outbox table.
pub(crate) struct LocalSettle {
    store: Arc<dyn Store>,
}

impl LocalSettle {
    pub(crate) async fn ack(self, id: Uuid) -> Result<(), QueueError> {
        self.store.delete_outbox(&[id]).await?;
        Ok(())
    }

    /// Nothing to write: the row stays leased, and the lease running out is the retry delay.
    pub(crate) fn retry_later(self, id: Uuid) {
        tracing::debug!(message_id = %id, "retry later: the message returns when its lease runs out");
    }

    pub(crate) async fn dead_letter(self, id: Uuid, reason: &str) -> Result<(), QueueError> {
        tracing::warn!(message_id = %id, %reason, "dead-lettering message");
        self.store.dead_letter_outbox(id, reason, Utc::now()).await?;
        Ok(())
    }
}
