//! What the client believes of Gladly's values, in one place (README, "When things fail").
//!
//! - An instant more than `MARGIN_DAYS` outside the window it was asked for (year 0001, 1900,
//!   9999, a clock reset) is not data about that window: the row is set aside with the reason.
//!   The margin covers what legitimately lies outside a window: an event that occurred before
//!   it was recorded, a work session created days before it ended.
//! - A number of seconds must be finite and not negative (`1e400`, `NaN`, `-inf` are not).
//! - An answer whose rows are mostly unreadable fails its day instead of landing a near-empty
//!   day: more than `MAX_UNREADABLE_SHARE` of its rows *and* more than `MAX_UNREADABLE_ROWS`.
//!   Rows of an event type this client does not know are set aside too, but they are Gladly's
//!   additive changes (the spec says to ignore unknown values), so they do not count here.

use crate::time::{fmt_ts, Ms, MS_PER_DAY};

/// How far outside its request window an instant may lie.
pub const MARGIN_DAYS: i64 = 3;

/// The share of an answer's rows that may be unreadable before its day fails (1 %) …
pub const MAX_UNREADABLE_SHARE: f64 = 0.01;
/// … once more than this many rows are (a stray bad row in a small day is not a broken answer).
pub const MAX_UNREADABLE_ROWS: usize = 5;

/// Why a value is not believed: the reason a set-aside row gives.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Implausible {
    /// An instant more than `MARGIN_DAYS` outside the window `[start, end)`.
    #[error(
        "more than {MARGIN_DAYS} days outside the requested window {}..{}",
        fmt_ts(*start),
        fmt_ts(*end)
    )]
    OutsideWindow { start: Ms, end: Ms },
    #[error("not a finite number of seconds")]
    NotFinite,
    #[error("a negative number of seconds")]
    Negative,
}

/// Checks an instant against the window `[start, end)` its answer was asked for.
pub fn instant(ms: Ms, start: Ms, end: Ms) -> Result<Ms, Implausible> {
    let margin = MARGIN_DAYS * MS_PER_DAY;
    if ms < start - margin || ms > end + margin {
        return Err(Implausible::OutsideWindow { start, end });
    }
    Ok(ms)
}

/// Checks a duration in seconds.
pub fn seconds(v: f64) -> Result<f64, Implausible> {
    if !v.is_finite() {
        return Err(Implausible::NotFinite);
    }
    if v < 0.0 {
        return Err(Implausible::Negative);
    }
    Ok(v)
}

/// Whether `unreadable` rows of `total` are too many for the answer to be trusted.
pub fn too_many_unreadable(unreadable: usize, total: usize) -> bool {
    unreadable > MAX_UNREADABLE_ROWS && unreadable as f64 > total as f64 * MAX_UNREADABLE_SHARE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_far_outside_the_window_and_non_finite_or_negative_seconds_are_refused() {
        let day = crate::time::parse_ts("2026-11-02T05:00:00Z").unwrap();
        let (s, e) = (day, day + MS_PER_DAY);
        assert!(instant(s - MS_PER_DAY, s, e).is_ok());
        assert!(instant(e + 2 * MS_PER_DAY, s, e).is_ok());
        for far in [
            "0001-01-01T00:00:00Z",
            "1900-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            let ms = crate::time::parse_ts(far).unwrap();
            assert!(instant(ms, s, e).is_err(), "{far}");
        }
        assert_eq!(seconds(12.5), Ok(12.5));
        assert_eq!(seconds(0.0), Ok(0.0));
        for bad in ["1e400", "NaN", "-inf", "inf", "-0.001"] {
            assert!(seconds(bad.parse().unwrap()).is_err(), "{bad}");
        }
        assert!(!too_many_unreadable(5, 10));
        assert!(!too_many_unreadable(6, 600));
        assert!(too_many_unreadable(7, 600));
    }
}
