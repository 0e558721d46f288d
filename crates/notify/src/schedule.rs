//! When a failed delivery is tried again.
//!
//! MSP endpoints go down for maintenance windows and weekends, so the standard schedule keeps
//! trying for over three days (10 attempts over about 75½ hours) before the engine gives up.
//! Each wait is jittered by ±20 % so deliveries that failed together (one outage, many events)
//! do not all come back at the same second. A destination that says `Retry-After` gets at
//! least that long, up to a day: a longer request would silently run out the schedule.
//!
//! A `429 Too Many Requests` (or a `502`/`503`/`504` that says `Retry-After`) is about the
//! destination, not one delivery: the whole integration pauses ([`RetrySchedule::throttle`]),
//! for as long as it asked, or — when it did not say — for a wait that doubles with each
//! throttling answer in a row (5 s, 10 s, 20 s … up to 15 min, jittered), as Atlassian and the
//! Standard Webhooks spec advise. Hammering on would only get an Autotask database's API
//! suspended for every tool of the MSP.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// How far each wait may be moved either way.
const JITTER: f64 = 0.2;
/// The longest `Retry-After` honoured in the standard schedule.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(24 * HOUR);
/// The first pause of a throttled integration that did not say how long to wait.
const THROTTLE_BASE: Duration = Duration::from_secs(5);
/// The longest pause we choose ourselves (a `Retry-After` may ask for more, up to the cap).
const THROTTLE_CAP: Duration = Duration::from_secs(15 * MINUTE);

/// The waits between attempts of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// `delays[i]` is the wait before attempt `i + 2` (the first attempt is immediate).
    delays: Vec<Duration>,
    retry_after_cap: Duration,
    throttle_base: Duration,
    throttle_cap: Duration,
}

impl RetrySchedule {
    /// Waits before attempts 2 to 10: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h:
    /// 10 attempts over 75 h 35 min 5 s, before jitter.
    pub fn standard() -> RetrySchedule {
        RetrySchedule::from_delays(
            [5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR, 20 * HOUR, 24 * HOUR]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }

    /// `delays[i]` is the wait before attempt `i + 2`; there are `delays.len() + 1` attempts.
    pub fn from_delays(delays: Vec<Duration>) -> RetrySchedule {
        RetrySchedule {
            delays,
            retry_after_cap: RETRY_AFTER_CAP,
            throttle_base: THROTTLE_BASE,
            throttle_cap: THROTTLE_CAP,
        }
    }

    /// The same schedule with every wait (and the `Retry-After` cap, and the throttle's pauses)
    /// multiplied by `factor`,
    /// for tests that run a whole schedule in seconds.
    ///
    /// # Panics
    /// If `factor` is negative or not finite.
    pub fn scaled(&self, factor: f64) -> RetrySchedule {
        assert!(factor.is_finite() && factor >= 0.0, "a schedule's scale factor must be finite and ≥ 0");
        let scale =
            |d: &Duration| Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX);
        RetrySchedule {
            delays: self.delays.iter().map(scale).collect(),
            retry_after_cap: scale(&self.retry_after_cap),
            throttle_base: scale(&self.throttle_base),
            throttle_cap: scale(&self.throttle_cap),
        }
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The sum of the waits (before jitter): how long after the first attempt the last one is.
    pub fn total(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// How long to wait before the next attempt, after `attempts_made` attempts (0: the first
    /// attempt, which is immediate), or `None` when every attempt has been made.
    /// `retry_after` is what the destination asked for in its last answer.
    pub fn next_delay(&self, attempts_made: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempts_made >= self.max_attempts() {
            return None;
        }
        let scheduled = match attempts_made.checked_sub(1) {
            None => Duration::ZERO,
            Some(i) => jittered(*self.delays.get(usize::try_from(i).ok()?)?),
        };
        let asked = retry_after.map_or(Duration::ZERO, |wait| wait.min(self.retry_after_cap));
        Some(scheduled.max(asked))
    }

    /// How long a whole integration pauses after a throttling answer: what it asked for in
    /// `Retry-After` (up to the cap), or else a wait that doubles with each throttling answer
    /// in a row (`streak` before this one: 0, 1, 2 …), jittered, up to 15 minutes.
    pub fn throttle(&self, retry_after: Option<Duration>, streak: u32) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.retry_after_cap),
            None => {
                let doubled = self.throttle_base.saturating_mul(2u32.saturating_pow(streak.min(16)));
                jittered(doubled.min(self.throttle_cap))
            }
        }
    }
}

/// `delay` moved by up to ±20 %, uniformly.
fn jittered(delay: Duration) -> Duration {
    let factor = rand::random_range((1.0 - JITTER)..=(1.0 + JITTER));
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_schedule_spans_ten_attempts_and_three_days() {
        let s = RetrySchedule::standard();
        assert!(s.max_attempts() >= 10);
        assert!(s.total() >= Duration::from_secs(72 * HOUR), "{:?}", s.total());
        assert_eq!(s.total(), Duration::from_secs(75 * HOUR + 35 * MINUTE + 5));
        // Even with every wait jittered to its shortest, the last attempt is after 60 h.
        assert!(s.total().mul_f64(1.0 - JITTER) >= Duration::from_secs(60 * HOUR));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_varies() {
        let s = RetrySchedule::standard();
        for (attempts_made, base) in (1..s.max_attempts()).zip(&s.delays) {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = s.next_delay(attempts_made, None).unwrap();
                assert!(d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2), "{d:?} vs {base:?}");
                seen.insert(d);
            }
            assert!(seen.len() > 10, "the waits vary: {seen:?}");
        }
    }

    #[test]
    fn the_first_attempt_is_immediate_unless_asked_to_wait() {
        let s = RetrySchedule::standard();
        assert_eq!(s.next_delay(0, None), Some(Duration::ZERO));
        assert_eq!(s.next_delay(0, Some(Duration::from_secs(30))), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_longer_retry_after_wins_up_to_a_day() {
        let s = RetrySchedule::standard();
        // Scheduled ≈ 5 s; the destination asks for 10 min.
        assert_eq!(s.next_delay(1, Some(Duration::from_secs(600))), Some(Duration::from_secs(600)));
        // A shorter Retry-After does not shorten the schedule (≈ 5 min ± 20 %).
        let d = s.next_delay(2, Some(Duration::from_secs(1))).unwrap();
        assert!(d >= Duration::from_secs(240), "{d:?}");
        // A week is capped at a day.
        let week = Duration::from_secs(7 * 24 * HOUR);
        assert_eq!(s.next_delay(1, Some(week)), Some(RETRY_AFTER_CAP));
        // Scaled schedules scale the cap.
        let fast = s.scaled(0.001);
        assert_eq!(fast.next_delay(1, Some(week)), Some(RETRY_AFTER_CAP.mul_f64(0.001)));
    }

    #[test]
    fn a_throttled_integration_waits_as_asked_or_ever_longer_up_to_a_cap() {
        let s = RetrySchedule::standard();
        assert_eq!(s.throttle(Some(Duration::from_secs(90)), 0), Duration::from_secs(90));
        assert_eq!(s.throttle(Some(Duration::from_secs(90)), 7), Duration::from_secs(90), "asked wins");
        assert_eq!(s.throttle(Some(Duration::from_secs(7 * 24 * HOUR)), 0), RETRY_AFTER_CAP);
        for (streak, base) in [(0, 5.0), (1, 10.0), (2, 20.0), (3, 40.0)] {
            let d = s.throttle(None, streak).as_secs_f64();
            assert!((base * 0.8..=base * 1.2).contains(&d), "streak {streak}: {d} s");
        }
        for streak in [8, 20, u32::MAX] {
            let d = s.throttle(None, streak);
            assert!(d <= THROTTLE_CAP.mul_f64(1.2) && d >= THROTTLE_CAP.mul_f64(0.8), "{d:?}");
        }
        let fast = s.scaled(0.001);
        let d = fast.throttle(None, 0).as_secs_f64();
        assert!((0.004..=0.006).contains(&d), "{d}");
    }

    #[test]
    fn scaling_compresses_every_wait() {
        let fast = RetrySchedule::standard().scaled(1.0 / 3600.0);
        assert_eq!(fast.max_attempts(), 10);
        let total = fast.total().as_secs_f64();
        assert!((total - (75.0 * 3600.0 + 35.0 * 60.0 + 5.0) / 3600.0).abs() < 0.001, "{total}");
    }

    #[test]
    fn exhausted_after_the_last_attempt() {
        let s = RetrySchedule::from_delays(vec![Duration::from_millis(10), Duration::from_millis(20)]);
        assert_eq!(s.max_attempts(), 3);
        assert!(s.next_delay(2, None).is_some());
        assert_eq!(s.next_delay(3, None), None);
        assert_eq!(s.next_delay(4, Some(Duration::from_secs(1))), None);
        assert_eq!(RetrySchedule::from_delays(Vec::new()).next_delay(1, None), None);
    }
}
