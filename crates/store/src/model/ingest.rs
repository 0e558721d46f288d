//! What a collector's push stores: facts and the batch, and the outbox message it leaves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::*;

/// One probe result as the ingest stores it: the latest fact per (collector, probe, subject).
#[derive(Debug, Clone, PartialEq)]
pub struct FactWrite {
    pub probe: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    /// The typed wire output, as JSON text (bound as it is: never parsed again on the way in).
    pub payload: String,
    /// The output's volatile fields (timings) as JSON text: an object of JSON pointers into
    /// `payload` and their values (`wbd_wire::ProbeOutput::timings`). A repeated result writes
    /// only these; reading the fact lays them over the payload of its run.
    pub timings: String,
    /// A digest of the payload without volatile fields (timings), so that an unchanged result
    /// only moves `last_seen` of the current history run.
    pub digest: String,
}

/// A stored latest fact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    pub collector_id: CollectorId,
    pub probe: String,
    pub subject: String,
    pub observed_at: DateTime<Utc>,
    pub payload: serde_json::Value,
    pub digest: String,
    /// When the current value (same digest) was first seen, and how many results repeated it.
    pub first_seen_at: DateTime<Utc>,
    pub repeat_count: u64,
}

/// A batch as the ingest stores it.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    pub collector_id: CollectorId,
    pub batch_id: Uuid,
    /// SHA-256 of the canonical batch body: a retry with the same id and another body is refused.
    pub body_hash: String,
    pub results: Vec<FactWrite>,
    pub received_at: DateTime<Utc>,
    pub collector_version: String,
    pub collector_hostname: String,
    pub collector_os: String,
    pub push_interval_secs: u32,
    pub spool_dropped: u64,
    /// New silence deadline for the collector.
    pub silent_after: DateTime<Utc>,
    /// W3C `traceparent` of the ingest span, carried through the outbox and the queue.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Stored now, with its outbox message.
    Accepted { accepted: u32 },
    /// The same batch id with the same body was stored before; nothing changed.
    Duplicate { accepted: u32 },
    /// The same batch id was stored before with another body; nothing changed.
    Conflict,
}

/// A message waiting in the transactional outbox (and, in embedded mode, the queue itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Also the message id on the queue: consumers deduplicate on it.
    pub id: Uuid,
    pub org_id: OrgId,
    pub tenant_id: TenantId,
    pub kind: MessageKind,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// How many times this row was claimed (published or handed to a local consumer).
    pub attempts: u32,
}

impl OutboxMessage {
    pub fn scope(&self) -> TenantScope {
        TenantScope { org_id: self.org_id, tenant_id: self.tenant_id }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageKind {
    /// A batch was ingested: evaluate the tenant.
    BatchIngested { collector_id: CollectorId, batch_id: Uuid },
    /// The tenant's rule overrides or custom rules changed: evaluate it again.
    RulesChanged,
}
