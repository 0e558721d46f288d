//! Latency samples and their percentiles, and the parsing of run durations.

use std::time::Duration;

use serde::Serialize;

/// Latency samples in milliseconds. Every sample is kept (a run is bounded in count), so the
/// percentiles are exact, not estimated.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

/// The usual figures of a set of latency samples, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Samples {
    pub fn new() -> Samples {
        Samples::default()
    }

    pub fn push(&mut self, latency: Duration) {
        self.values.push(latency.as_secs_f64() * 1_000.0);
    }

    pub fn push_ms(&mut self, ms: f64) {
        self.values.push(ms);
    }

    pub fn extend(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `None` when there are no samples.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Some(LatencySummary {
            count: sorted.len(),
            p50_ms: nearest_rank(&sorted, 50.0),
            p90_ms: nearest_rank(&sorted, 90.0),
            p99_ms: nearest_rank(&sorted, 99.0),
            max_ms: sorted[sorted.len() - 1],
            mean_ms: mean,
        })
    }
}

/// The nearest-rank percentile of sorted, non-empty values: the smallest value such that at
/// least `p` percent of the values are less than or equal to it.
pub fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Parses `60s`, `2m`, `500ms`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 =
        number.parse().map_err(|_| format!("{text:?} is not a duration (try 60s, 2m, 500ms)"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1_000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3_600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (use ms, s, m or h)")),
    };
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{text:?} must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `n` per second over `elapsed`, or 0 for an empty interval.
pub fn per_second(n: f64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { n / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(nearest_rank(&values, 50.0), 50.0);
        assert_eq!(nearest_rank(&values, 99.0), 99.0);
        assert_eq!(nearest_rank(&values, 100.0), 100.0);
        assert_eq!(nearest_rank(&values, 0.0), 1.0);
        assert_eq!(nearest_rank(&[7.0], 99.0), 7.0);
        // p99 of 10 values is the largest: 9 values are not 99 percent.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(nearest_rank(&ten, 99.0), 10.0);
        assert_eq!(nearest_rank(&ten, 50.0), 5.0);
    }

    #[test]
    fn summary_sorts_and_is_none_when_empty() {
        assert!(Samples::new().summary().is_none());
        let mut samples = Samples::new();
        for ms in [30.0, 10.0, 20.0, 40.0] {
            samples.push_ms(ms);
        }
        samples.push(Duration::from_millis(50));
        let summary = samples.summary().unwrap();
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50_ms, 30.0);
        assert_eq!(summary.p99_ms, 50.0);
        assert_eq!(summary.max_ms, 50.0);
        assert!((summary.mean_ms - 30.0).abs() < 1e-9);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1_500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn per_second_of_an_empty_interval_is_zero() {
        assert_eq!(per_second(10.0, Duration::ZERO), 0.0);
        assert_eq!(per_second(10.0, Duration::from_secs(2)), 5.0);
    }
}
