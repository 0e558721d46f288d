//! Decisions both backends must take identically, kept out of SQL so they cannot drift apart:
//! whether an enrollment token may be used, and the worst-first order of the tenant overview.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};

use crate::{CollectorStatus, EnrollError, TenantSummary};

/// What enrollment needs to know about the collector an enrollment token points at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenHolder {
    pub status: CollectorStatus,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub enrollment_expires_at: Option<DateTime<Utc>>,
}

/// Decides whether `holder` (the collector with this token, if any) may enroll at `now`.
///
/// The token stays stored after use, so a second use answers `AlreadyUsed`. A collector revoked
/// before it ever enrolled waits for nobody: its token answers `UnknownToken`. A token is valid
/// strictly before its expiry instant.
pub(crate) fn check_enrollment(holder: Option<TokenHolder>, now: DateTime<Utc>) -> Result<(), EnrollError> {
    let Some(holder) = holder else { return Err(EnrollError::UnknownToken) };
    match holder.status {
        CollectorStatus::Active => Err(EnrollError::AlreadyUsed),
        CollectorStatus::Revoked if holder.enrolled_at.is_some() => Err(EnrollError::AlreadyUsed),
        CollectorStatus::Revoked => Err(EnrollError::UnknownToken),
        CollectorStatus::Pending => match holder.enrollment_expires_at {
            Some(expires_at) if now < expires_at => Ok(()),
            _ => Err(EnrollError::Expired),
        },
    }
}

/// Worst first: most open critical findings, then high, medium, low, info; ties by name, then id
/// (sorted here rather than in SQL so that both backends agree regardless of collation).
pub(crate) fn sort_worst_first(summaries: &mut [TenantSummary]) {
    summaries.sort_by(|a, b| {
        let key = |s: &TenantSummary| {
            (
                Reverse(s.open_critical),
                Reverse(s.open_high),
                Reverse(s.open_medium),
                Reverse(s.open_low),
                Reverse(s.open_info),
            )
        };
        key(a)
            .cmp(&key(b))
            .then_with(|| a.tenant.name.cmp(&b.tenant.name))
            .then_with(|| a.tenant.id.cmp(&b.tenant.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid time")
    }

    fn holder(status: CollectorStatus, enrolled: bool, expires_in: i64) -> Option<TokenHolder> {
        Some(TokenHolder {
            status,
            enrolled_at: enrolled.then(now),
            enrollment_expires_at: Some(now() + TimeDelta::seconds(expires_in)),
        })
    }

    #[test]
    fn enrollment_cases() {
        assert_eq!(check_enrollment(None, now()), Err(EnrollError::UnknownToken));
        assert_eq!(check_enrollment(holder(CollectorStatus::Pending, false, 60), now()), Ok(()));
        assert_eq!(
            check_enrollment(holder(CollectorStatus::Pending, false, 0), now()),
            Err(EnrollError::Expired)
        );
        assert_eq!(
            check_enrollment(holder(CollectorStatus::Active, true, 60), now()),
            Err(EnrollError::AlreadyUsed)
        );
        assert_eq!(
            check_enrollment(holder(CollectorStatus::Revoked, true, 60), now()),
            Err(EnrollError::AlreadyUsed)
        );
        assert_eq!(
            check_enrollment(holder(CollectorStatus::Revoked, false, 60), now()),
            Err(EnrollError::UnknownToken)
        );
    }
}
