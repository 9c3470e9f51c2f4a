//! Text helpers the page shares: escaping, clock times in the pipeline's timezone, durations.

use chrono_tz::Tz;

use crate::time::{self, Ms};

/// Escapes text for an HTML/SVG text node or a double-quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A local clock time; on a DST day (not 24 hours long) with the zone's abbreviation, since one
/// wall-clock hour happens twice (or never).
pub fn clock(tz: Tz, ms: Ms, dst_day: bool) -> String {
    let t = time::to_utc(ms).with_timezone(&tz);
    if dst_day {
        t.format("%H:%M:%S %Z").to_string()
    } else {
        t.format("%H:%M:%S").to_string()
    }
}

/// `2h 05m`, `12m 30s`, `45s`, `0.4s`.
pub fn duration(ms: Ms) -> String {
    let s = ms / 1000;
    if ms < 1000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A coordinate with at most two decimals and no trailing zeros (keeps the page small).
pub fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_formats() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(duration(400), "0.4s");
        assert_eq!(duration(45_000), "45s");
        assert_eq!(duration(750_000), "12m 30s");
        assert_eq!(duration(7_500_000), "2h 05m");
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(-0.001), "0");
    }
}
