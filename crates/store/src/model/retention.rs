//! What the retention sweep removes, table by table.

/// A kind of record the retention sweep removes once it is older than its setting. Each is
/// removed a batch at a time ([`crate::Store::sweep_expired`]), oldest first, and never while
/// it is still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionTable {
    /// Deliveries that succeeded or failed for good, by when they finished, with their attempts
    /// (removed first; see [`ATTEMPTS_PER_DELIVERY`]). A pending delivery (waiting, in flight,
    /// or replayed) stays.
    Deliveries,
    /// Fact history runs that ended before the cutoff, except the run each subject's latest
    /// fact belongs to.
    FactHistory,
    AuditLog,
    /// Ids of evaluated queue messages, which make a redelivered message change nothing.
    ProcessedMessages,
    /// Ingest batch ids, which make a retried push answer as the first one did.
    Batches,
    /// Outbox messages dead-lettered after too many failed attempts, by when they died.
    DeadLetters,
    /// Collector commands, by when they ran out (every command is delivered, cancelled or
    /// expired by then).
    CollectorCommands,
}

impl RetentionTable {
    pub const ALL: [RetentionTable; 7] = [
        RetentionTable::Deliveries,
        RetentionTable::FactHistory,
        RetentionTable::AuditLog,
        RetentionTable::ProcessedMessages,
        RetentionTable::Batches,
        RetentionTable::DeadLetters,
        RetentionTable::CollectorCommands,
    ];

    /// The table's name, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionTable::Deliveries => "deliveries",
            RetentionTable::FactHistory => "fact_history",
            RetentionTable::AuditLog => "audit_log",
            RetentionTable::ProcessedMessages => "processed_messages",
            RetentionTable::Batches => "batches",
            RetentionTable::DeadLetters => "dead_letters",
            RetentionTable::CollectorCommands => "collector_commands",
        }
    }
}

/// What one batch of the sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweptBatch {
    /// Rows of the table swept.
    pub rows: u64,
    /// Rows of dependent tables removed first (a delivery's attempts).
    pub dependent_rows: u64,
    /// The batch was as large as allowed: there may be more to remove.
    pub full: bool,
}

/// Attempts a delivery carries at most on the default retry schedule: a batch of deliveries is
/// this many times smaller than the batch size, so that with their attempts it removes about as
/// many rows as a batch of any other table.
pub const ATTEMPTS_PER_DELIVERY: u32 = 10;
