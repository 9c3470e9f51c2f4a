//! Instants, business days and the timestamp formats both APIs use.
//!
//! Internally every instant is UTC epoch milliseconds (`Ms`); business days are `NaiveDate`s in
//! the pipeline's timezone, whose bounds are computed here so DST days (23 or 25 hours) are right.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// UTC epoch milliseconds.
pub type Ms = i64;

pub const MS_PER_HOUR: Ms = 3_600_000;
pub const MS_PER_DAY: Ms = 24 * MS_PER_HOUR;

/// The earliest business date a run accepts: Gladly holds no data from before it.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(2010, 1, 1) {
    Some(d) => d,
    None => panic!("a valid date"),
};

/// Parses an RFC 3339 timestamp with 0–9 fraction digits and `Z` or an offset, truncated to ms.
pub fn parse_ts(s: &str) -> Option<Ms> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    // Reports and some clients write minute precision (`2024-05-06T00:00Z`).
    if let Some(stripped) = s.strip_suffix('Z') {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(stripped, "%Y-%m-%dT%H:%M") {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    None
}

/// `2024-05-06T15:00:02.118Z`: UTC with milliseconds, the form the WFM requires.
pub fn fmt_ts(ms: Ms) -> String {
    UtcMs(ms).to_string()
}

/// An instant that displays as `fmt_ts` writes it, for writing into a buffer without a
/// `String` of its own (the push writes two or three per record).
pub struct UtcMs(pub Ms);

impl std::fmt::Display for UtcMs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        // Field by field, into a stack buffer written at once: chrono's format-string parser
        // was 2% of the push's CPU, and a formatter per field another few.
        let t = to_utc(self.0);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        }
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 3, t.timestamp_subsec_millis().min(999));
        f.write_str(std::str::from_utf8(&b).expect("ASCII digits"))
    }
}

/// UTC with exactly `digits` fraction digits (0–9), for the simulator's timestamp quirk.
pub fn fmt_ts_digits(ms: Ms, digits: u32) -> String {
    let t = to_utc(ms);
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if digits == 0 {
        return format!("{base}Z");
    }
    let nanos = format!("{:09}", (ms.rem_euclid(1000)) * 1_000_000);
    format!("{base}.{}Z", &nanos[..digits.min(9) as usize])
}

pub fn to_utc(ms: Ms) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn now_ms() -> Ms {
    Utc::now().timestamp_millis()
}

/// The instant a business day starts in `tz`. A day whose midnight falls in a DST gap starts at
/// the first local time that exists.
pub fn day_start(tz: Tz, day: NaiveDate) -> Ms {
    local_to_utc(tz, day, 0)
}

/// The instant the business day ends (= the next day's start): 23, 24 or 25 hours later.
pub fn day_end(tz: Tz, day: NaiveDate) -> Ms {
    day_start(tz, day + Duration::days(1))
}

/// Local wall-clock minutes after midnight of `day` in `tz`, as UTC ms. Gaps move forward.
pub fn local_to_utc(tz: Tz, day: NaiveDate, minute_of_day: u32) -> Ms {
    let mut local = day.and_time(NaiveTime::MIN) + Duration::minutes(minute_of_day as i64);
    for _ in 0..4 {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.timestamp_millis();
        }
        local += Duration::minutes(30);
    }
    local.and_utc().timestamp_millis()
}

/// The business date of an instant in `tz`.
pub fn day_of(tz: Tz, ms: Ms) -> NaiveDate {
    to_utc(ms).with_timezone(&tz).date_naive()
}

pub fn parse_tz(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// Every date from `from` to `to`, both included.
pub fn days_between(from: NaiveDate, to: NaiveDate) -> Vec<NaiveDate> {
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        out.push(d);
        d += Duration::days(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_ts_writes_what_the_strftime_pattern_wrote() {
        let mut ms: Ms = 0;
        while ms < 4_102_444_800_000 {
            let want = to_utc(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            assert_eq!(fmt_ts(ms), want);
            ms += 7_777_777_777 + 123; // every field and every millisecond digit varies
        }
        assert_eq!(fmt_ts(1_714_999_202_118), "2024-05-06T12:40:02.118Z");
    }

    #[test]
    fn parses_zero_to_nine_fraction_digits() {
        let want = parse_ts("2024-05-06T15:00:02.118Z").unwrap();
        assert_eq!(parse_ts("2024-05-06T15:00:02.118000000Z"), Some(want));
        assert_eq!(parse_ts("2024-05-06T15:00:02.1189Z"), Some(want));
        assert_eq!(parse_ts("2024-05-06T15:00:02Z"), Some(want - 118));
        assert_eq!(parse_ts("2024-05-06T11:00:02.118-04:00"), Some(want));
        assert_eq!(parse_ts("2024-05-06T15:00Z"), Some(want - 2118));
        assert_eq!(parse_ts("yesterday"), None);
        for d in 0..=9 {
            let s = fmt_ts_digits(want, d);
            let back = parse_ts(&s).unwrap();
            assert!(want - back < 1000, "{s}");
        }
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let spring = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let fall = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(
            day_end(tz, spring) - day_start(tz, spring),
            23 * MS_PER_HOUR
        );
        assert_eq!(day_end(tz, fall) - day_start(tz, fall), 25 * MS_PER_HOUR);
        assert_eq!(day_of(tz, day_start(tz, fall)), fall);
        assert_eq!(day_of(tz, day_end(tz, fall) - 1), fall);
    }
}

/// The clock a long-running command reads: the real time, or (for re-plays, tests and the
/// demo) a start instant that advances `speed` times faster than real time, so a simulated hour
/// can pass in seconds while client and simulator agree on what time it is.
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

    /// Starts at `base` and runs `speed` times as fast as real time (0: stands still).
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

    /// How long to wait in real time for `ms` of this clock's time to pass.
    pub fn real_duration(&self, ms: Ms) -> std::time::Duration {
        std::time::Duration::from_secs_f64((ms.max(0) as f64 / 1000.0) / self.speed.max(1e-9))
    }
}
