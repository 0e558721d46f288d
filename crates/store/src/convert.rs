//! Conversions between the model's Rust values and what both backends store, and the mapping of
//! driver errors the caller can act on. Both backends use these so they round-trip identically.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::{Result, StoreError, UnknownValue};

/// Timestamps are stored with microsecond precision: PostgreSQL's `timestamptz` cannot hold more
/// (and would round), so SQLite is truncated the same way to keep both backends comparable, and
/// a value read back equals the value that was written.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The end of a lease of `lease` from `now`; a lease too long to represent lasts forever.
pub(crate) fn lease_until(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(lease)
        .ok()
        .and_then(|d| micros(now).checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Parses an enum stored as its `as_str()` text.
pub(crate) fn parse_enum<T>(text: &str, column: &str) -> Result<T>
where
    T: FromStr<Err = UnknownValue>,
{
    text.parse().map_err(|e: UnknownValue| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn to_u32(value: i64, column: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

pub(crate) fn to_u64(value: i64, column: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

/// Counters reported by collectors are stored as BIGINT; a value beyond it saturates rather than
/// failing the whole ingest.
pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn count_to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Maps a unique violation to [`StoreError::Duplicate`], anything else to a database error.
pub(crate) fn unique_violation(err: sqlx::Error, what: &'static str, field: &'static str) -> StoreError {
    match err.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Duplicate { what, field },
        _ => StoreError::Database(err),
    }
}

/// Decodes the outbox `kind` column, stored as the serde JSON of [`crate::MessageKind`].
pub(crate) fn message_kind(value: serde_json::Value) -> Result<crate::MessageKind> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("outbox.kind: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn micros_truncates_nanoseconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).single().expect("valid time");
        assert_eq!(micros(t).timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn huge_lease_saturates() {
        let now = Utc.timestamp_opt(1_700_000_000, 0).single().expect("valid time");
        assert_eq!(lease_until(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(lease_until(now, Duration::from_secs(30)), now + TimeDelta::seconds(30));
    }

    #[test]
    fn negative_counts_are_corrupt() {
        assert!(matches!(to_u32(-1, "x"), Err(StoreError::Corrupt(_))));
        assert!(matches!(to_u64(-1, "x"), Err(StoreError::Corrupt(_))));
        assert_eq!(to_u32(7, "x").ok(), Some(7));
    }
}
