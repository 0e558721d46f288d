//! Rate limits as a generic cell rate algorithm (GCRA): a limit of `n` requests per `period`
//! lets `n` through at once and then one every `period / n`. Each limited thing (a client
//! address, a credential, an organisation, a collector) keeps one number, the time at which its
//! allowance would be whole again if nothing else came ("theoretical arrival time", `tat`).
//!
//! [`RateLimit::take`] is the rule, on a value in memory; the store applies the same rule in
//! one SQL statement (`sql/rate_limits.rs`) so that every API process shares each limit.

use std::time::Duration;

/// `requests` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub period: Duration,
}

/// What a limit says of one more request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Refused; a request after this long would be allowed (if nothing else came first).
    Refused {
        retry_after: Duration,
    },
}

/// What presenting a push token came to: a replay (nothing is counted), or a first use, counted
/// against its collector's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushTokenUse {
    Replayed,
    Used(RateDecision),
}

impl RateLimit {
    /// Per minute; `None` for 0 (no limit).
    pub fn per_minute(requests: u32) -> Option<RateLimit> {
        (requests > 0).then_some(RateLimit { requests, period: Duration::from_secs(60) })
    }

    /// The period in microseconds (the unit `tat` is kept in).
    pub fn period_micros(&self) -> i64 {
        i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX).max(1)
    }

    /// Microseconds one request uses of the allowance.
    pub fn interval_micros(&self) -> i64 {
        (self.period_micros() / i64::from(self.requests.max(1))).max(1)
    }

    /// One more request at `now` (microseconds) against a thing whose `tat` is `tat` (`None`:
    /// never seen, or forgotten). Allowed: the new `tat` to keep. Refused: the wait.
    pub fn take(&self, tat: Option<i64>, now: i64) -> Result<i64, Duration> {
        let next = tat.map_or(now, |t| t.max(now)).saturating_add(self.interval_micros());
        if next <= now.saturating_add(self.period_micros()) { Ok(next) } else { Err(self.wait(next, now)) }
    }

    /// The refusal of a request the store did not let through at `now`, from the `tat` it found:
    /// how long to wait (none if the allowance came back meanwhile; the next request finds out).
    pub fn refusal(&self, tat: Option<i64>, now: i64) -> RateDecision {
        RateDecision::Refused { retry_after: self.take(tat, now).err().unwrap_or(Duration::ZERO) }
    }

    /// How long until a request refused at `now` would pass, given the `tat` it would have
    /// made (`next`).
    pub fn wait(&self, next: i64, now: i64) -> Duration {
        let micros = next.saturating_sub(now.saturating_add(self.period_micros())).max(0);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    #[test]
    fn a_whole_allowance_passes_at_once_then_one_per_interval() {
        let limit = RateLimit::per_minute(3).unwrap();
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(limit.take(tat, 0).expect("within the burst"));
        }
        assert_eq!(limit.take(tat, 0), Err(Duration::from_secs(20)), "the fourth waits one interval");
        assert_eq!(limit.take(tat, 5 * SEC), Err(Duration::from_secs(15)));
        let tat = limit.take(tat, 20 * SEC).expect("one interval later, one more");
        assert!(limit.take(Some(tat), 20 * SEC).is_err(), "and only one");
        // A long quiet spell refills the allowance, never beyond it.
        let mut tat = Some(tat);
        for _ in 0..3 {
            tat = Some(limit.take(tat, 3_600 * SEC).expect("refilled"));
        }
        assert!(limit.take(tat, 3_600 * SEC).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        assert_eq!(RateLimit::per_minute(0), None);
    }
}
