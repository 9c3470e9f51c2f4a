//! The simulators' own clock and timestamp renderings, written from the spec
//! (`shared/spec/gladly-api.md`, `wfm-api.md`) and not shared with the client's decoder: a
//! formatting or parsing bug on one side shows up as a disagreement instead of being mirrored.

use chrono::{
    DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

/// UTC epoch milliseconds.
pub type Ms = i64;

pub const MS_PER_HOUR: Ms = 3_600_000;
pub const MS_PER_DAY: Ms = 24 * MS_PER_HOUR;

pub fn to_utc(ms: Ms) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn now_ms() -> Ms {
    Utc::now().timestamp_millis()
}

/// `2024-05-06T15:00:02.118Z`, the form both APIs document.
pub fn fmt_ts(ms: Ms) -> String {
    to_utc(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// UTC with exactly `digits` fraction digits (0–9): the report renderings Gladly is seen to use.
pub fn fmt_ts_digits(ms: Ms, digits: u32) -> String {
    let t = to_utc(ms);
    let whole = t.to_rfc3339_opts(SecondsFormat::Nanos, true); // …:SS.nnnnnnnnnZ
    let dot = whole.rfind('.').expect("nanosecond form has a fraction");
    match digits.min(9) {
        0 => format!("{}Z", &whole[..dot]),
        d => format!("{}Z", &whole[..dot + 1 + d as usize]),
    }
}

/// What a request's query may carry: RFC 3339 with any fraction and `Z` or an offset, or
/// minute precision with `Z`.
pub fn parse_ts(s: &str) -> Option<Ms> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            let m = s.strip_suffix('Z')?;
            NaiveDateTime::parse_from_str(m, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

pub fn parse_tz(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// A local wall-clock time `minute_of_day` minutes after midnight of `day`, as an instant; a
/// time inside a spring-forward gap is the first instant after the gap.
pub fn local_to_utc(tz: Tz, day: NaiveDate, minute_of_day: u32) -> Ms {
    let wall = day.and_time(NaiveTime::MIN) + Duration::minutes(minute_of_day as i64);
    let mut probe = wall;
    // No zone shifts its clocks by more than a few hours at once.
    for _ in 0..(6 * 60) {
        if let Some(t) = tz.from_local_datetime(&probe).earliest() {
            return t.timestamp_millis();
        }
        probe += Duration::minutes(1);
    }
    wall.and_utc().timestamp_millis()
}

pub fn day_start(tz: Tz, day: NaiveDate) -> Ms {
    local_to_utc(tz, day, 0)
}

pub fn day_end(tz: Tz, day: NaiveDate) -> Ms {
    day_start(tz, day + Duration::days(1))
}

pub fn day_of(tz: Tz, ms: Ms) -> NaiveDate {
    tz.from_utc_datetime(&to_utc(ms).naive_utc()).date_naive()
}

/// The simulators' live clock: the real time, or a start instant advancing `speed` times as
/// fast (the client is given the same start and speed, so both agree on what time it is).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Option<Ms>,
    speed: f64,
    started: std::time::Instant,
}

impl Clock {
    pub fn real() -> Clock {
        Clock {
            base: None,
            speed: 1.0,
            started: std::time::Instant::now(),
        }
    }

    pub fn starting_at(base: Ms, speed: f64) -> Clock {
        Clock {
            base: Some(base),
            speed: speed.max(0.0),
            started: std::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Ms {
        match self.base {
            None => now_ms(),
            Some(b) => b + (self.started.elapsed().as_secs_f64() * self.speed * 1000.0) as Ms,
        }
    }

    pub fn real_duration(&self, ms: Ms) -> std::time::Duration {
        std::time::Duration::from_secs_f64((ms.max(0) as f64 / 1000.0) / self.speed.max(1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings() {
        let t = 1_714_999_202_118; // 2024-05-06T12:40:02.118Z
        assert_eq!(fmt_ts(t), "2024-05-06T12:40:02.118Z");
        assert_eq!(fmt_ts_digits(t, 0), "2024-05-06T12:40:02Z");
        assert_eq!(fmt_ts_digits(t, 1), "2024-05-06T12:40:02.1Z");
        assert_eq!(fmt_ts_digits(t, 6), "2024-05-06T12:40:02.118000Z");
        assert_eq!(parse_ts("2024-05-06T08:40:02.118-04:00"), Some(t));
        assert_eq!(parse_ts("2024-05-06T12:40Z"), Some(t - 2118));
    }

    #[test]
    fn a_spring_forward_gap_moves_to_its_end() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        // 02:30 does not exist that night: 03:00 EDT is 07:00Z.
        assert_eq!(
            fmt_ts(local_to_utc(tz, day, 150)),
            "2026-03-08T07:00:00.000Z"
        );
        assert_eq!(day_end(tz, day) - day_start(tz, day), 23 * MS_PER_HOUR);
    }
}
