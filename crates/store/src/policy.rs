//! Decisions both backends must take identically, kept out of SQL so they cannot drift apart:
//! whether an enrollment token may be used, and the worst-first order of the tenant overview.
//! (Which finding transitions a person may make is [`crate::FindingAction::check`].)

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

/// Worst first: lowest [health score](TenantSummary::health_score), then most open critical
/// findings, then high, medium, low, info; ties by name, then id (sorted here rather than in SQL
/// so that both backends agree regardless of collation).
pub(crate) fn sort_worst_first(summaries: &mut [TenantSummary]) {
    summaries.sort_by(|a, b| {
        let key = |s: &TenantSummary| {
            (
                s.health_score(),
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

    fn summary(name: &str, counts: [u32; 5], silent: u32, unknown: u32) -> TenantSummary {
        TenantSummary {
            tenant: crate::Tenant {
                id: crate::TenantId(uuid::Uuid::from_u128(u128::from(name.len() as u32))),
                org_id: crate::OrgId(uuid::Uuid::nil()),
                name: name.to_owned(),
                entra_tenant_id: None,
                created_at: now(),
            },
            open_critical: counts[0],
            open_high: counts[1],
            open_medium: counts[2],
            open_low: counts[3],
            open_info: counts[4],
            suppressed: 0,
            consequences: 0,
            collectors: 1,
            silent_collectors: silent,
            unknown_rules: unknown,
            last_seen_at: Some(now()),
        }
    }

    #[test]
    fn health_score_follows_the_documented_formula() {
        assert_eq!(summary("a", [0; 5], 0, 0).health_score(), 100);
        assert_eq!(summary("a", [1, 0, 0, 0, 0], 0, 0).health_score(), 60);
        assert_eq!(summary("a", [0, 1, 1, 1, 7], 0, 0).health_score(), 100 - 20 - 8 - 3);
        assert_eq!(summary("a", [0; 5], 1, 0).health_score(), 85);
        assert_eq!(summary("a", [0; 5], 0, 4).health_score(), 96);
        assert_eq!(summary("a", [0; 5], 0, 40).health_score(), 90, "unknown rules cost at most ten");
        assert_eq!(summary("a", [3, 0, 0, 0, 0], 0, 0).health_score(), 0, "never below zero");
        assert_eq!(summary("a", [u32::MAX; 5], u32::MAX, u32::MAX).health_score(), 0);
    }

    #[test]
    fn worst_score_first_then_severity_then_name() {
        let mut summaries = vec![
            summary("quiet", [0; 5], 0, 0),
            summary("silent", [0; 5], 1, 0),
            summary("broken", [1, 0, 0, 0, 0], 0, 0),
            summary("busy", [0, 2, 0, 0, 0], 0, 0),
            summary("unknowns", [0; 5], 0, 3),
        ];
        sort_worst_first(&mut summaries);
        let names: Vec<_> = summaries.iter().map(|s| s.tenant.name.as_str()).collect();
        // broken and busy both score 60: the critical one comes first.
        assert_eq!(names, ["broken", "busy", "silent", "unknowns", "quiet"]);
    }
}
