//! Timestamps as Gladly's answers render them. The Events API writes RFC 3339 UTC; the reports
//! document no rendering, so a report cell may carry `Z`, any UTC offset (`-05:00`, `-0500`,
//! `-05`, ` UTC`), `T` or a space between date and time, 0–9 fraction digits, no seconds, or
//! **no offset at all**: then it is wall-clock time in the timezone the report was asked for.
//!
//! A wall-clock time in the DST fall-back hour names two instants. Gladly's spec (§5): take the
//! earlier unless the row order shows the later. Report rows come in ascending `Timestamp`
//! order, so a `Timestamp` whose earlier reading would go back before the previous row's is the
//! second pass through the hour (`Hint::NotBefore`); an `Occurred At` takes the reading nearer
//! its own row's `Timestamp` (`Hint::Near`), as an event is recorded seconds after it happens.
//! A wall-clock time the DST jump skips does not exist and is not read.

use chrono::{FixedOffset, LocalResult, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use crate::time::Ms;

/// What the position of a cell says about an ambiguous wall-clock time.
#[derive(Clone, Copy, Debug)]
pub enum Hint {
    /// Nothing: the earlier instant.
    None,
    /// The instant is not before this one (the previous row's, in an ascending column).
    NotBefore(Ms),
    /// The instant is the reading nearest this one.
    Near(Ms),
}

/// Parses a timestamp; one without an offset is wall-clock time in `tz`.
pub fn parse(s: &str, tz: Tz, hint: Hint) -> Option<Ms> {
    let s = s.trim();
    let (local, offset) = split_offset(s)?;
    let ndt = naive(local)?;
    match offset {
        Some(off) => off
            .from_local_datetime(&ndt)
            .single()
            .map(|t| t.timestamp_millis()),
        None => match tz.from_local_datetime(&ndt) {
            LocalResult::Single(t) => Some(t.timestamp_millis()),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_millis(), b.timestamp_millis());
                let (early, late) = (a.min(b), a.max(b));
                Some(match hint {
                    Hint::None => early,
                    Hint::NotBefore(prev) if early < prev && late >= prev => late,
                    Hint::NotBefore(_) => early,
                    Hint::Near(r) if (late - r).abs() < (early - r).abs() => late,
                    Hint::Near(_) => early,
                })
            }
            LocalResult::None => None,
        },
    }
}

/// Splits `2024-05-06T15:00:02.1-04:00` into the wall-clock part and its offset, if any.
fn split_offset(s: &str) -> Option<(&str, Option<FixedOffset>)> {
    if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        return Some((rest, FixedOffset::east_opt(0)));
    }
    if let Some(rest) = s.strip_suffix("UTC").or_else(|| s.strip_suffix("GMT")) {
        return Some((rest.trim_end(), FixedOffset::east_opt(0)));
    }
    // The date itself holds `-`: an offset sign can only come after the time of day.
    let Some(time_at) = s.get(10..).and_then(|t| t.find([':']).map(|i| i + 10)) else {
        return Some((s, None));
    };
    let Some(sign_at) = s[time_at..].rfind(['+', '-']).map(|i| i + time_at) else {
        return Some((s, None));
    };
    let (local, off) = (s[..sign_at].trim_end(), &s[sign_at..]);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some((
        local,
        Some(FixedOffset::east_opt(sign * (h * 3600 + m * 60))?),
    ))
}

/// `2024-05-06T15:00:02.118`, `2024-05-06 15:00:02`, `2024-05-06T15:00`: 0–9 fraction digits.
fn naive(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if s.len() < 16 || !matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
        return None;
    }
    let (date, time) = (&s[..10], &s[11..]);
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let t = chrono::NaiveTime::parse_from_str(hms, "%H:%M:%S")
        .or_else(|_| chrono::NaiveTime::parse_from_str(hms, "%H:%M"))
        .ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) => {
            return None
        }
        Some(f) => format!("{f:0<9}").parse::<u32>().ok()?,
    };
    // Truncated to milliseconds, as every instant in the pipeline is.
    Some(date.and_time(t) + chrono::Duration::milliseconds((nanos / 1_000_000) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> Tz {
        "America/New_York".parse().unwrap()
    }

    #[test]
    fn every_offset_rendering_names_the_same_instant() {
        let want = crate::time::parse_ts("2024-05-06T15:00:02.118Z").unwrap();
        for s in [
            "2024-05-06T15:00:02.118Z",
            "2024-05-06T15:00:02.118000000Z",
            "2024-05-06T15:00:02.1189z",
            "2024-05-06T11:00:02.118-04:00",
            "2024-05-06T11:00:02.118-0400",
            "2024-05-06T11:00:02.118-04",
            "2024-05-06 15:00:02.118+00:00",
            "2024-05-06 15:00:02.118 UTC",
            "2024-05-06T20:30:02.118+05:30",
            // No offset: New York wall-clock time (EDT in May).
            "2024-05-06T11:00:02.118",
            "2024-05-06 11:00:02.118",
        ] {
            assert_eq!(parse(s, ny(), Hint::None), Some(want), "{s}");
        }
        assert_eq!(
            parse("2024-05-06T11:00", ny(), Hint::None),
            Some(want - 2118)
        );
        assert_eq!(
            parse("2024-05-06T11:00:02", ny(), Hint::None),
            Some(want - 118)
        );
        for bad in [
            "yesterday",
            "2024-05-06",
            "2024-05-06T11:00:02.+04:00",
            "2024-05-06T11:00:02.118+4:0",
            "2024-05-06T11:00:02.1234567890Z",
            "2024-13-06T11:00:02Z",
            "2024-05-06T11:00:02.118+24:00",
        ] {
            assert_eq!(parse(bad, ny(), Hint::None), None, "{bad}");
        }
    }

    #[test]
    fn the_fall_back_hour_reads_by_row_order_and_the_skipped_hour_not_at_all() {
        // 2026-11-01 01:30 in New York happens twice: 05:30Z (EDT) and 06:30Z (EST).
        let first = crate::time::parse_ts("2026-11-01T05:30:00Z").unwrap();
        let second = first + 3_600_000;
        let s = "2026-11-01T01:30:00";
        assert_eq!(parse(s, ny(), Hint::None), Some(first));
        // After a row at 01:50 EDT, a 01:30 can only be the second pass.
        let after = crate::time::parse_ts("2026-11-01T05:50:00Z").unwrap();
        assert_eq!(parse(s, ny(), Hint::NotBefore(after)), Some(second));
        assert_eq!(parse(s, ny(), Hint::NotBefore(first - 1)), Some(first));
        assert_eq!(parse(s, ny(), Hint::Near(second + 5_000)), Some(second));
        assert_eq!(parse(s, ny(), Hint::Near(first + 5_000)), Some(first));
        // 2026-03-08 02:30 does not exist in New York.
        assert_eq!(parse("2026-03-08T02:30:00", ny(), Hint::None), None);
    }
}
