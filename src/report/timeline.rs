//! The timeline: one row per agent, the business day on the x axis at a fixed scale per hour (so
//! a 25-hour DST day is 25 hours wide), status pieces as bars coloured by task and availability
//! as a thin band under them.
//!
//! Pieces narrower than a pixel are merged with their contiguous neighbours into one bar rather
//! than dropped, so no time goes missing and 2,000 agents stay a few MB. Every status bar carries
//! `data-s`/`data-e` (milliseconds since the day's start, which the `<svg>` gives as
//! `data-day-start` in epoch ms) and, when it holds more than one piece, `data-n`, so what was
//! merged can be checked against the dataset.

use std::fmt::Write;

use super::data::{AgentDay, DayData, Piece};
use super::format::{clock, duration, esc, num};
use crate::model::State;
use crate::time::{Ms, MS_PER_HOUR};

/// Horizontal scale: 48 px per hour, 75 s per pixel.
pub const PX_PER_HOUR: f64 = 48.0;
/// Width of the name column left of the day.
pub const NAME_W: f64 = 190.0;
const ROW_H: f64 = 14.0;
const GROUP_H: f64 = 32.0;
const AXIS_H: f64 = 18.0;

/// Okabe–Ito, without black: distinguishable with the common colour-vision deficiencies. Ordered
/// so that neighbours in rule order (often drawn side by side) differ in hue and lightness.
pub const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442",
];

/// The CSS class of a task's colour: `t0`… in the day's task order, `tn` for no task.
pub fn task_class(tasks: &[String], task: Option<&str>) -> String {
    match task.and_then(|t| tasks.iter().position(|x| x == t)) {
        Some(i) => format!("t{i}"),
        None => "tn".into(),
    }
}

/// CSS for the task colours (more tasks than colours reuse them with a dashed outline).
pub fn task_css(tasks: &[String]) -> String {
    let mut css = String::new();
    for i in 0..tasks.len() {
        let _ = write!(css, ".t{i},.s{i}{{fill:{}}}", PALETTE[i % PALETTE.len()]);
        if i >= PALETTE.len() {
            let _ = write!(css, ".t{i},.s{i}{{stroke:#000;stroke-dasharray:2 1}}");
        }
    }
    css
}

/// A drawn bar: one piece, or several contiguous pieces each under a pixel.
#[derive(Debug, PartialEq)]
pub struct Bar<'a> {
    pub start: Ms,
    pub end: Ms,
    pub pieces: &'a [Piece],
}

impl Bar<'_> {
    /// The piece holding most of the bar's time: its task colours the bar.
    pub fn dominant(&self) -> &Piece {
        self.pieces
            .iter()
            .max_by_key(|p| p.ms())
            .expect("a bar holds at least one piece")
    }
}

/// Merges runs of contiguous pieces narrower than `min_ms` until a run spans `min_ms`; wider
/// pieces and pieces after a gap stay bars of their own. Pieces are sorted by start.
pub fn merge(pieces: &[Piece], min_ms: Ms) -> Vec<Bar<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i + 1;
        if pieces[i].ms() < min_ms {
            while j < pieces.len()
                && pieces[j].start == pieces[j - 1].end
                && pieces[j].ms() < min_ms
                && pieces[j - 1].end - pieces[i].start < min_ms
            {
                j += 1;
            }
        }
        out.push(Bar {
            start: pieces[i].start,
            end: pieces[j - 1].end,
            pieces: &pieces[i..j],
        });
        i = j;
    }
    out
}

/// Geometry of the day on the x axis.
pub struct Scale {
    pub day_start: Ms,
    pub day_end: Ms,
}

impl Scale {
    pub fn x(&self, t: Ms) -> f64 {
        NAME_W + (t - self.day_start) as f64 / MS_PER_HOUR as f64 * PX_PER_HOUR
    }
    pub fn width(&self) -> f64 {
        self.x(self.day_end) - NAME_W
    }
    /// One pixel in milliseconds.
    pub fn ms_per_px(&self) -> Ms {
        (MS_PER_HOUR as f64 / PX_PER_HOUR) as Ms
    }
    pub fn hours(&self) -> i64 {
        (self.day_end - self.day_start + MS_PER_HOUR - 1) / MS_PER_HOUR
    }
    pub fn dst_day(&self) -> bool {
        self.day_end - self.day_start != 24 * MS_PER_HOUR
    }
}

/// Hour labels (`00`…`23`, with the zone on a DST day where the offset changed) for an axis at `y`.
pub fn hour_labels(out: &mut String, d: &DayData, sc: &Scale, y: f64) {
    let first_zone = clock(d.tz, sc.day_start, true);
    let first_zone = first_zone.split(' ').nth(1).unwrap_or("").to_string();
    for h in 0..=sc.hours() {
        let t = (sc.day_start + h * MS_PER_HOUR).min(sc.day_end);
        let c = clock(d.tz, t, true);
        let (hm, zone) = c.split_once(' ').unwrap_or((&c, ""));
        let mut label = hm[..2].to_string();
        if sc.dst_day() && zone != first_zone {
            label = format!("{label} {zone}");
        }
        let anchor = if h == 0 { "start" } else { "middle" };
        let _ = write!(
            out,
            r#"<text class="tick" x="{}" y="{}" text-anchor="{anchor}">{}</text>"#,
            num(sc.x(t)),
            num(y),
            esc(&label)
        );
    }
}

fn title(d: &DayData, sc: &Scale, bar: &Bar) -> String {
    let span = format!(
        "{}–{}",
        clock(d.tz, bar.start, sc.dst_day()),
        clock(d.tz, bar.end, sc.dst_day())
    );
    if let [p] = bar.pieces {
        return format!(
            "{} · {} · {span} · {}{}",
            p.label,
            p.task.as_deref().unwrap_or("no task"),
            duration(p.ms()),
            if p.open { " · still open" } else { "" }
        );
    }
    // Merged: the labels by time held, most first.
    let mut by: Vec<(&str, Option<&str>, Ms)> = Vec::new();
    for p in bar.pieces {
        match by.iter_mut().find(|x| x.0 == p.label) {
            Some(x) => x.2 += p.ms(),
            None => by.push((&p.label, p.task.as_deref(), p.ms())),
        }
    }
    by.sort_by_key(|x| std::cmp::Reverse(x.2));
    let parts: Vec<String> = by
        .iter()
        .take(4)
        .map(|(l, t, ms)| format!("{l} ({}) {}", t.unwrap_or("no task"), duration(*ms)))
        .collect();
    format!(
        "{} segments, each under a pixel · {span} · {} · {}{}",
        bar.pieces.len(),
        duration(bar.end - bar.start),
        parts.join(", "),
        if by.len() > 4 { ", …" } else { "" }
    )
}

fn status_bars(out: &mut String, d: &DayData, sc: &Scale, pieces: &[Piece]) {
    for bar in merge(pieces, sc.ms_per_px()) {
        let p = bar.dominant();
        let mut class = task_class(&d.tasks, p.task.as_deref()).replacen('t', "s", 1);
        // Logged-out time is drawn as a thin line in its task's colour, so the working day
        // stands out.
        // The row is translated so a full bar needs no `y` (2,000 agents: every byte counts).
        let (y, h) = if p.state == State::LoggedOut {
            class.push_str(" lo");
            (r#" y="3""#, 3)
        } else {
            ("", 9)
        };
        if bar.pieces.iter().any(|p| p.open) {
            class.push_str(" op");
        }
        let n = if bar.pieces.len() > 1 {
            format!(r#" data-n="{}""#, bar.pieces.len())
        } else {
            String::new()
        };
        let _ = write!(
            out,
            r#"<rect class="{class}" x="{}"{y} width="{}" height="{h}" data-s="{}" data-e="{}"{n}><title>{}</title></rect>"#,
            num1(sc.x(bar.start)),
            num1(sc.x(bar.end) - sc.x(bar.start)),
            bar.start - sc.day_start,
            bar.end - sc.day_start,
            esc(&title(d, sc, &bar)),
        );
    }
}

/// The availability band: each stretch of contiguous available pieces is one thin rect (the
/// row's background is unavailable), titled with its span and the channel sets it went through.
/// It is context for the status bars, so it is drawn coarser to keep the page small.
fn availability_band(out: &mut String, d: &DayData, sc: &Scale, pieces: &[Piece]) {
    let mut i = 0;
    while i < pieces.len() {
        if pieces[i].state != State::Available {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < pieces.len()
            && pieces[j].state == State::Available
            && pieces[j].start == pieces[j - 1].end
        {
            j += 1;
        }
        let run = &pieces[i..j];
        let mut channels: Vec<&str> = Vec::new();
        for p in run {
            let c = p.label.strip_prefix("AvailableFor:").unwrap_or(&p.label);
            if !channels.contains(&c) {
                channels.push(c);
            }
        }
        let (start, end) = (run[0].start, run[run.len() - 1].end);
        let _ = write!(
            out,
            r#"<rect class="av" x="{}" y="10" width="{}" height="2"><title>available {}–{} · {} · {}</title></rect>"#,
            num1(sc.x(start)),
            num1(sc.x(end) - sc.x(start)),
            clock(d.tz, start, sc.dst_day()),
            clock(d.tz, end, sc.dst_day()),
            duration(end - start),
            esc(&channels.join("; ")),
        );
        i = j;
    }
}

/// One decimal: a tenth of a pixel is plenty and keeps 2,000 agents small.
fn num1(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn row(out: &mut String, d: &DayData, sc: &Scale, a: &AgentDay, y: f64) {
    let name: String = if a.display.chars().count() > 30 {
        a.display.chars().take(29).collect::<String>() + "…"
    } else {
        a.display.clone()
    };
    let who = match &a.email {
        Some(e) if *e != a.display => format!("{} · {e} · {}", a.display, a.agent_id),
        _ => format!("{} · {}", a.display, a.agent_id),
    };
    let _ = write!(
        out,
        r#"<g class="row" data-agent="{}" transform="translate(0,{})"><text class="name" x="4" y="9">{}<title>{}</title></text>"#,
        esc(&a.agent_id),
        num(y + 1.0),
        esc(&name),
        esc(&who)
    );
    let _ = write!(
        out,
        r#"<rect class="bg" x="{}" width="{}" height="12"/>"#,
        num(NAME_W),
        num(sc.width())
    );
    status_bars(out, d, sc, &a.status);
    availability_band(out, d, sc, &a.availability);
    out.push_str("</g>");
}

/// The timeline section's SVG.
pub fn svg(d: &DayData) -> String {
    let sc = Scale {
        day_start: d.day_start,
        day_end: d.day_end,
    };
    let width = NAME_W + sc.width() + 12.0;
    let height = AXIS_H + d.groups.len() as f64 * GROUP_H + d.agents() as f64 * ROW_H + 8.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg class="timeline" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Agent timeline for {day}" data-day-start="{}" data-day-end="{}" data-x0="{}" data-px-per-hour="{}">"#,
        d.day_start,
        d.day_end,
        num(NAME_W),
        num(PX_PER_HOUR),
        w = num(width),
        h = num(height),
        day = d.day,
    );
    out.push_str(r##"<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="4" height="4" fill="#e8e8e8"/><line x1="0" y1="0" x2="0" y2="4" stroke="#777" stroke-width="1.5"/></pattern></defs>"##);
    // Hour grid over the whole height, drawn once.
    let mut grid = String::new();
    for h in 0..=sc.hours() {
        let x = num(sc.x((sc.day_start + h * MS_PER_HOUR).min(sc.day_end)));
        let _ = write!(grid, "M{x} {AXIS_H}V{}", num(height - 8.0));
    }
    let _ = write!(out, r#"<path class="grid" d="{grid}"/>"#);
    let _ = write!(
        out,
        r#"<text class="axis" x="4" y="12">agent</text><text class="axis" x="{}" y="12">time of day, {} (hours; {} h day)</text>"#,
        num(NAME_W),
        esc(d.tz.name()),
        sc.hours()
    );
    let mut y = AXIS_H;
    for g in &d.groups {
        let _ = write!(
            out,
            r#"<g class="grp" transform="translate(0,{})"><text class="team" x="4" y="14">{} · {} agent{}</text>"#,
            num(y),
            esc(&g.title),
            g.agents.len(),
            if g.agents.len() == 1 { "" } else { "s" }
        );
        // Each team repeats the hour labels, so a long page stays readable without scrolling up.
        hour_labels(&mut out, d, &sc, 28.0);
        out.push_str("</g>");
        y += GROUP_H;
        for a in &g.agents {
            row(&mut out, d, &sc, a, y);
            y += ROW_H;
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(start: Ms, end: Ms, label: &str) -> Piece {
        Piece {
            state: State::Active,
            label: label.into(),
            task: None,
            start,
            end,
            open: false,
        }
    }

    #[test]
    fn merges_contiguous_sub_pixel_pieces_and_keeps_every_millisecond() {
        let px = 75_000;
        let pieces = vec![
            p(0, 10_000, "a"),
            p(10_000, 30_000, "b"),
            p(30_000, 60_000, "c"),
            p(60_000, 85_000, "d"), // the run reaches a pixel here
            p(85_000, 100_000, "e"),
            p(100_000, 400_000, "wide"),
            p(500_000, 510_000, "after a gap"),
            p(510_000, 520_000, "f"),
        ];
        let bars = merge(&pieces, px);
        let spans: Vec<(Ms, Ms, usize)> = bars
            .iter()
            .map(|b| (b.start, b.end, b.pieces.len()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 85_000, 4),
                (85_000, 100_000, 1),
                (100_000, 400_000, 1),
                (500_000, 520_000, 2)
            ]
        );
        assert_eq!(
            bars.iter().map(|b| b.pieces.len()).sum::<usize>(),
            pieces.len()
        );
        assert_eq!(bars[0].dominant().label, "c");
    }

    #[test]
    fn a_wide_piece_never_merges() {
        let pieces = vec![
            p(0, 80_000, "a"),
            p(80_000, 81_000, "b"),
            p(81_000, 200_000, "c"),
        ];
        let bars = merge(&pieces, 75_000);
        assert_eq!(bars.len(), 3);
    }
}
