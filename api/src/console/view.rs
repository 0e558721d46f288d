//! How the console shows values: times (relative, with the exact UTC time beside), severities
//! and statuses as words and CSS classes.

use chrono::{DateTime, Utc};

/// A moment as a page shows it: `<time datetime="{iso}" title="{exact}">{ago}</time>`.
pub struct When {
    pub iso: String,
    pub exact: String,
    pub ago: String,
}

impl When {
    pub fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> When {
        When {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            exact: at.format("%Y-%m-%d %H:%M UTC").to_string(),
            ago: ago(at, now),
        }
    }

    pub fn maybe(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<When> {
        at.map(|at| When::new(at, now))
    }
}

/// "just now", "5 min ago", "3 h ago", "2 days ago"; "in 4 days" for the future.
pub fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    let (amount, future) = (secs.unsigned_abs(), secs < 0);
    let text = match amount {
        0..60 => return "just now".to_owned(),
        60..3_600 => format!("{} min", amount / 60),
        3_600..86_400 => format!("{} h", amount / 3_600),
        86_400..172_800 => "1 day".to_owned(),
        _ => format!("{} days", amount / 86_400),
    };
    if future { format!("in {text}") } else { format!("{text} ago") }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        let now = Utc::now();
        assert_eq!(ago(now - TimeDelta::seconds(20), now), "just now");
        assert_eq!(ago(now - TimeDelta::minutes(5), now), "5 min ago");
        assert_eq!(ago(now - TimeDelta::hours(3), now), "3 h ago");
        assert_eq!(ago(now - TimeDelta::days(1), now), "1 day ago");
        assert_eq!(ago(now + TimeDelta::days(4), now), "in 4 days");
    }
}
