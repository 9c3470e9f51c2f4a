//! The page: one self-contained HTML file (inline CSS and SVG; no script, font or image from
//! anywhere), readable on screen and on paper. Sections: timeline, hours per task, intervals,
//! rules, and the run that produced the day.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::data::DayData;
use super::format::{clock, duration, esc, num};
use super::timeline::{self, task_class, task_css, Scale, NAME_W, PX_PER_HOUR};
use crate::model::State;
use crate::time::{self, Ms, MS_PER_HOUR};
use crate::transform::workstreams::IntervalRow;

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#222;margin:16px 24px;line-height:1.35;font-size:14px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc;padding-bottom:2px}h3{font-size:15px;margin:16px 0 6px}
p.sub{color:#555;margin:0 0 10px}nav a{margin-right:14px}
.figs{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}.fig{border:1px solid #ccc;border-radius:4px;padding:6px 12px;min-width:120px}.fig b{display:block;font-size:20px}.fig span{color:#555;font-size:12px}
.fig.warn{border-color:#D55E00}
table{border-collapse:collapse;margin:6px 0 12px}th,td{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}svg text{font-size:11px;fill:#222}svg .tick{font-size:10px;fill:#555}svg .axis{font-size:11px;fill:#555;font-style:italic}svg .team{font-weight:bold;font-size:12px}
.grid{stroke:#ddd;stroke-width:1;fill:none}.base{stroke:#888;stroke-width:1}
.tn,.sn{fill:url(#hatch)}.op{stroke:#000;stroke-dasharray:2 2}.av{fill:#444}.bg{fill:#f4f4f4}
.row rect:hover{stroke:#000;stroke-width:1}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:6px 0 10px;font-size:13px}.legend svg{vertical-align:middle;margin-right:4px}
.off{fill:#56B4E9}.han{fill:#0072B2}.sla{fill:#E69F00}.ht{fill:#CC79A7}
.note{color:#555;font-size:12px}code{font-size:12px;background:#f3f3f3;padding:0 3px}
@media print{body{margin:0;font-size:11px}.scroll{overflow:visible}svg{max-width:100%;height:auto}h2{break-after:avoid}table,.fig{break-inside:avoid}nav{display:none}}
@page{size:A4 landscape;margin:10mm}
"#;

fn swatch(class: &str) -> String {
    format!(r#"<svg width="22" height="12"><rect class="{class}" width="22" height="12"/></svg>"#)
}

/// The whole page.
pub fn page(d: &DayData) -> String {
    let mut o = String::with_capacity(1 << 20);
    let title = format!("{} · {} · gladly-wfm report", d.pipeline, d.day);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/><title>{}</title><style>{CSS}{}</style></head><body>",
        esc(&title),
        task_css(&d.tasks)
    );
    header(&mut o, d);
    o.push_str(r##"<section id="timeline"><h2>Timeline</h2>"##);
    legend(&mut o, d);
    let _ = write!(
        o,
        r#"<p class="note">One row per agent, sorted by name within a team (an agent in several teams appears under the first). The x axis is the business day in {} at {} px per hour. Hover a bar for its label, task, start, end and duration. Segments narrower than a pixel ({}) are merged with their neighbours into one bar, so no time is dropped.</p>"#,
        esc(d.tz.name()),
        num(PX_PER_HOUR),
        duration((MS_PER_HOUR as f64 / PX_PER_HOUR) as Ms)
    );
    if d.groups.is_empty() {
        o.push_str("<p>No status segments on this day.</p>");
    } else {
        let _ = write!(o, r#"<div class="scroll">{}</div>"#, timeline::svg(d));
    }
    o.push_str("</section>");
    hours(&mut o, d);
    intervals(&mut o, d);
    rules(&mut o, d);
    audit(&mut o, d);
    run(&mut o, d);
    let _ = write!(
        o,
        r#"<p class="note">Made by gladly-wfm {} at {} from the curated datasets agent_status_segments, agent_status_events, agents, inboxes, conversations and workstream_intervals of {}.</p></body></html>"#,
        env!("CARGO_PKG_VERSION"),
        time::fmt_ts(d.generated_at),
        d.day
    );
    o
}

fn hm(d: &DayData, t: Ms) -> String {
    time::to_utc(t)
        .with_timezone(&d.tz)
        .format("%H:%M %Z")
        .to_string()
}

fn header(o: &mut String, d: &DayData) {
    let sc = Scale {
        day_start: d.day_start,
        day_end: d.day_end,
    };
    let _ = write!(
        o,
        r#"<header><h1>{} — {}</h1><p class="sub">{}Business day {} in {}: {} to {} the next day ({} hours). Pipeline <code>{}</code>.</p>"#,
        esc(&d.pipeline),
        d.day.format("%A %-d %B %Y"),
        d.description
            .as_ref()
            .map(|x| format!("{}. ", esc(x)))
            .unwrap_or_default(),
        d.day,
        esc(d.tz.name()),
        hm(d, d.day_start),
        hm(d, d.day_end),
        sc.hours(),
        esc(&d.pipeline),
    );
    let logged_in_h: f64 = d
        .groups
        .iter()
        .flat_map(|g| &g.agents)
        .flat_map(|a| &a.status)
        .filter(|p| p.state != State::LoggedOut)
        .map(|p| p.ms() as f64)
        .sum::<f64>()
        / MS_PER_HOUR as f64;
    let offered: i64 = d.intervals.iter().map(|r| r.offered).sum();
    let within: i64 = d.intervals.iter().map(|r| r.within_sla).sum();
    let unmatched: u64 = d.unmatched_labels.iter().map(|x| x.1).sum();
    let outcome = d
        .run
        .as_ref()
        .map(|r| r.manifest.outcome.clone())
        .unwrap_or_else(|| "no manifest".into());
    o.push_str(r#"<div class="figs">"#);
    let mut fig = |v: String, what: &str, warn: bool| {
        let _ = write!(
            o,
            r#"<div class="fig{}"><b>{}</b><span>{}</span></div>"#,
            if warn { " warn" } else { "" },
            esc(&v),
            esc(what)
        );
    };
    fig(d.agents().to_string(), "agents with segments", false);
    fig(
        format!("{logged_in_h:.1} h"),
        "logged in (active or away)",
        false,
    );
    fig(d.status_segments().to_string(), "status segments", false);
    fig(offered.to_string(), "contacts offered", false);
    fig(
        if offered > 0 {
            format!("{:.1} %", within as f64 / offered as f64 * 100.0)
        } else {
            "–".into()
        },
        "within SLA",
        false,
    );
    fig(
        format!("{} ({unmatched} events)", d.unmatched_labels.len()),
        "labels no task rule matched",
        !d.unmatched_labels.is_empty(),
    );
    fig(
        d.unmatched_inboxes.len().to_string(),
        "inboxes no workstream rule matched",
        !d.unmatched_inboxes.is_empty(),
    );
    fig(
        outcome.clone(),
        "the run that made this day",
        outcome != "ok",
    );
    o.push_str("</div>");
    o.push_str(r##"<nav><a href="#timeline">Timeline</a><a href="#hours">Hours per task</a><a href="#intervals">Intervals</a><a href="#rules">Rules</a><a href="#run">The run</a></nav></header>"##);
}

fn legend(o: &mut String, d: &DayData) {
    o.push_str(r#"<div class="legend">"#);
    for (i, t) in d.tasks.iter().enumerate() {
        let _ = write!(o, "<span>{}{}</span>", swatch(&format!("t{i}")), esc(t));
    }
    // The colour logged-out time has this day (its task's), for the legend's sample.
    let lo_task = d
        .groups
        .iter()
        .flat_map(|g| &g.agents)
        .flat_map(|a| &a.status)
        .find(|p| p.state == State::LoggedOut)
        .and_then(|p| p.task.as_deref());
    let lo = task_class(&d.tasks, lo_task);
    let _ = write!(
        o,
        r#"<span>{}no task (no rule matched the label)</span><span><svg width="22" height="12"><rect class="{lo}" y="4" width="22" height="3"/></svg>thin line: logged out (in its task's colour)</span><span><svg width="22" height="12"><rect class="bg" width="22" height="12"/><rect class="av" y="9" width="22" height="2"/></svg>band under a row: available for a channel (none: unavailable)</span>"#,
        swatch("tn"),
    );
    o.push_str("</div>");
}

fn hours(o: &mut String, d: &DayData) {
    o.push_str(r#"<section id="hours"><h2>Hours per task</h2>"#);
    if d.hours.is_empty() {
        o.push_str("<p>No segments on this day.</p></section>");
        return;
    }
    let label_w = 300.0;
    let bar_w = 700.0;
    let max_h = d.hours.iter().map(|h| h.seconds).fold(0.0, f64::max) / 3600.0;
    let step = nice_step(max_h, 6);
    let top = (max_h / step).ceil().max(1.0) * step;
    let row_h = 20.0;
    let axes: Vec<&str> = {
        let mut a: Vec<&str> = d.hours.iter().map(|h| h.axis.as_str()).collect();
        a.dedup();
        a
    };
    let height = 30.0 + (d.hours.len() as f64 + axes.len() as f64) * row_h + 30.0;
    let width = label_w + bar_w + 90.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="hours" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Hours per task">"#,
        w = num(width),
        h = num(height)
    );
    let x = |hrs: f64| label_w + hrs / top * bar_w;
    let mut grid = String::new();
    let mut v = 0.0;
    while v <= top + 1e-9 {
        let _ = write!(grid, "M{} 24V{}", num(x(v)), num(height - 26.0));
        let _ = write!(
            s,
            r#"<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>"#,
            num(x(v)),
            num(height - 12.0),
            num(v)
        );
        v += step;
    }
    let _ = write!(s, r#"<path class="grid" d="{grid}"/>"#);
    let _ = write!(
        s,
        r#"<text class="axis" x="{}" y="{}" text-anchor="middle">hours (sum over all agents)</text>"#,
        num(label_w + bar_w / 2.0),
        num(height - 1.0)
    );
    let mut y = 24.0;
    for axis in &axes {
        let _ = write!(
            s,
            r#"<text class="team" x="0" y="{}">{} axis</text>"#,
            num(y + 14.0),
            esc(axis)
        );
        y += row_h;
        for h in d.hours.iter().filter(|h| h.axis.as_str() == *axis) {
            let hrs = h.seconds / 3600.0;
            let task = h.task.as_deref().unwrap_or("no task");
            let _ = write!(
                s,
                r#"<text x="12" y="{}">{}</text><rect class="{}" x="{}" y="{}" width="{}" height="14"><title>{} · {} axis · {:.2} h in {} segments</title></rect><text x="{}" y="{}">{:.2} h</text>"#,
                num(y + 13.0),
                esc(task),
                task_class(&d.tasks, h.task.as_deref()),
                num(label_w),
                num(y + 2.0),
                num(x(hrs) - label_w),
                esc(task),
                esc(axis),
                hrs,
                h.segments,
                num(x(hrs) + 4.0),
                num(y + 13.0),
                hrs
            );
            y += row_h;
        }
    }
    s.push_str("</svg>");
    let _ = write!(o, r#"<div class="scroll">{s}</div>"#);
    o.push_str(r#"<table class="hours"><thead><tr><th>axis</th><th>task</th><th class="n">segments</th><th class="n">hours</th><th class="n">share of the axis</th></tr></thead><tbody>"#);
    let mut axis_total: BTreeMap<&str, f64> = BTreeMap::new();
    for h in &d.hours {
        *axis_total.entry(h.axis.as_str()).or_default() += h.seconds;
    }
    for h in &d.hours {
        let total = axis_total[h.axis.as_str()];
        let _ = write!(
            o,
            r#"<tr data-axis="{}" data-task="{}" data-seconds="{:.3}"><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{:.2}</td><td class="n">{:.1} %</td></tr>"#,
            esc(h.axis.as_str()),
            esc(h.task.as_deref().unwrap_or("")),
            h.seconds,
            esc(h.axis.as_str()),
            esc(h.task.as_deref().unwrap_or("(no task)")),
            h.segments,
            h.seconds / 3600.0,
            if total > 0.0 {
                h.seconds / total * 100.0
            } else {
                0.0
            }
        );
    }
    o.push_str("</tbody></table>");
    o.push_str(r#"<p class="note">Sums of <code>duration_seconds</code> in agent_status_segments for the day; a segment still open (today so far) counts in segments but not in hours.</p></section>"#);
}

/// A round step (1, 2 or 5 × 10ⁿ) giving at most about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: usize) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let raw = max / ticks as f64;
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

/// One workstream's intervals summed over channels.
#[derive(Default, Clone, Copy)]
struct Slot {
    offered: i64,
    handled: i64,
    within: i64,
    handle_s: f64,
}

/// Slots per workstream (unmatched inboxes last), by interval start.
type WorkstreamSlots = BTreeMap<(bool, String), BTreeMap<Ms, Slot>>;

fn intervals(o: &mut String, d: &DayData) {
    let _ = write!(
        o,
        r#"<section id="intervals"><h2>Intervals</h2><p class="note">Per {}-minute interval and workstream, all channels together, from workstream_intervals (contact sessions by the time they were created). The same scales in every chart, so workstreams compare at a glance.</p>"#,
        d.interval_minutes
    );
    if d.intervals.is_empty() {
        o.push_str("<p>No work sessions on this day.</p></section>");
        return;
    }
    let by = slots_by_workstream(&d.intervals);
    let max_n = by
        .values()
        .flat_map(|m| m.values())
        .map(|s| s.offered.max(s.handled))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_ht = by
        .values()
        .flat_map(|m| m.values())
        .map(|s| s.handle_s / 60.0)
        .fold(0.0, f64::max)
        .max(1.0);
    let _ = write!(
        o,
        r#"<div class="legend"><span>{}offered</span><span>{}handled</span><span>{}within SLA</span><span>{}handle time (minutes)</span></div>"#,
        swatch("off"),
        swatch("han"),
        swatch("sla"),
        swatch("ht")
    );
    interval_totals(o, &by);
    let chart = IntervalChart {
        d,
        sc: Scale {
            day_start: d.day_start,
            day_end: d.day_end,
        },
        slot_w: d.interval_minutes as f64 / 60.0 * PX_PER_HOUR,
        max_n,
        max_ht,
    };
    for ((_, name), slots) in &by {
        let s = chart.svg(name, slots);
        let _ = write!(o, r#"<div class="scroll">{s}</div>"#);
    }
    let _ = write!(
        o,
        r#"<p class="note">x axis: time of day in {} (hours), aligned with the timeline above.</p></section>"#,
        esc(d.tz.name())
    );
}

/// The day's interval rows summed over channels, per workstream and interval.
fn slots_by_workstream(rows: &[IntervalRow]) -> WorkstreamSlots {
    let mut by = WorkstreamSlots::new();
    for r in rows {
        let IntervalRow {
            workstream,
            interval_start,
            offered,
            handled,
            within_sla,
            handle_time_seconds,
            ..
        } = r;
        let key = (
            workstream.is_none(),
            workstream
                .clone()
                .unwrap_or_else(|| "no workstream (unmatched inboxes)".into()),
        );
        let s = by
            .entry(key)
            .or_default()
            .entry(*interval_start)
            .or_default();
        s.offered += offered;
        s.handled += handled;
        s.within += within_sla;
        s.handle_s += handle_time_seconds;
    }
    by
}

/// The table of each workstream's day: totals, SLA share and handle times.
fn interval_totals(o: &mut String, by: &WorkstreamSlots) {
    o.push_str(r#"<table><thead><tr><th>workstream</th><th class="n">offered</th><th class="n">handled</th><th class="n">within SLA</th><th class="n">SLA %</th><th class="n">handle time</th><th class="n">average handle time</th></tr></thead><tbody>"#);
    for ((_, name), slots) in by {
        let t = slots.values().fold(Slot::default(), |a, s| Slot {
            offered: a.offered + s.offered,
            handled: a.handled + s.handled,
            within: a.within + s.within,
            handle_s: a.handle_s + s.handle_s,
        });
        let _ = write!(
            o,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(name),
            t.offered,
            t.handled,
            t.within,
            if t.offered > 0 {
                format!("{:.1} %", t.within as f64 / t.offered as f64 * 100.0)
            } else {
                "–".into()
            },
            duration((t.handle_s * 1000.0) as Ms),
            if t.handled > 0 {
                duration((t.handle_s / t.handled as f64 * 1000.0) as Ms)
            } else {
                "–".into()
            },
        );
    }
    o.push_str("</tbody></table>");
}

/// What every workstream's interval chart shares: the day's scale, the slot width and the
/// scales of the volume bars and the handle-time bars.
struct IntervalChart<'a> {
    d: &'a DayData,
    sc: Scale,
    slot_w: f64,
    /// The most contacts offered or handled in any slot.
    max_n: f64,
    /// The most handle time in any slot, in minutes.
    max_ht: f64,
}

impl IntervalChart<'_> {
    const VOL_H: f64 = 70.0;
    const HT_H: f64 = 40.0;

    /// Where the volume bars stand.
    fn vol_base(&self) -> f64 {
        18.0 + Self::VOL_H
    }

    /// Where the handle-time bars stand.
    fn ht_base(&self) -> f64 {
        self.vol_base() + 8.0 + Self::HT_H
    }

    /// One workstream's chart: its name, the axes, a group of bars per slot, the hours.
    fn svg(&self, name: &str, slots: &BTreeMap<Ms, Slot>) -> String {
        let (d, sc) = (self.d, &self.sc);
        let (vol_base, ht_base) = (self.vol_base(), self.ht_base());
        let height = 18.0 + Self::VOL_H + 8.0 + Self::HT_H + 18.0;
        let width = NAME_W + sc.width() + 12.0;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="interval" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="Intervals of {}">"#,
            esc(name),
            w = num(width),
            h = num(height),
        );
        let _ = write!(s, r#"<text class="team" x="0" y="13">{}</text>"#, esc(name));
        let _ = write!(
            s,
            r#"<text class="axis" x="{x}" y="{}" text-anchor="end">{} contacts</text><text class="axis" x="{x}" y="{}" text-anchor="end">0</text><text class="axis" x="{x}" y="{}" text-anchor="end">{} min handle</text>"#,
            num(18.0 + 9.0),
            self.max_n,
            num(vol_base),
            num(vol_base + 8.0 + 9.0),
            num(self.max_ht.ceil()),
            x = num(NAME_W - 6.0)
        );
        let _ = write!(
            s,
            r#"<path class="grid" d="M{x0} 18H{x1}M{x0} {}H{x1}"/><path class="base" d="M{x0} {}H{x1}M{x0} {}H{x1}"/>"#,
            num(vol_base + 8.0),
            num(vol_base),
            num(ht_base),
            x0 = num(NAME_W),
            x1 = num(NAME_W + sc.width())
        );
        for (start, v) in slots {
            self.slot(&mut s, *start, v);
        }
        timeline::hour_labels(&mut s, d, sc, ht_base + 13.0);
        s.push_str("</svg>");
        s
    }

    /// One slot's group: a tooltip, the offered, handled and within-SLA bars side by side, and
    /// the handle-time bar below.
    fn slot(&self, s: &mut String, start: Ms, v: &Slot) {
        let (d, sc) = (self.d, &self.sc);
        let (vol_base, ht_base) = (self.vol_base(), self.ht_base());
        let bw = (self.slot_w - 2.0) / 3.0;
        let x = sc.x(start.clamp(d.day_start, d.day_end)) + 1.0;
        let hy = |n: i64| n as f64 / self.max_n * Self::VOL_H;
        let _ = write!(
            s,
            r#"<g><title>{}–{} · offered {} · handled {} · within SLA {} · handle time {}</title>"#,
            clock(d.tz, start, sc.dst_day()),
            clock(
                d.tz,
                start + d.interval_minutes as Ms * 60_000,
                sc.dst_day()
            ),
            v.offered,
            v.handled,
            v.within,
            duration((v.handle_s * 1000.0) as Ms)
        );
        for (i, (class, n)) in [("off", v.offered), ("han", v.handled), ("sla", v.within)]
            .into_iter()
            .enumerate()
        {
            if n > 0 {
                let _ = write!(
                    s,
                    r#"<rect class="{class}" x="{}" y="{}" width="{}" height="{}"/>"#,
                    num(x + i as f64 * bw),
                    num(vol_base - hy(n)),
                    num(bw),
                    num(hy(n))
                );
            }
        }
        if v.handle_s > 0.0 {
            let h = v.handle_s / 60.0 / self.max_ht.ceil() * Self::HT_H;
            let _ = write!(
                s,
                r#"<rect class="ht" x="{}" y="{}" width="{}" height="{}"/>"#,
                num(x),
                num(ht_base - h),
                num(self.slot_w - 2.0),
                num(h)
            );
        }
        s.push_str("</g>");
    }
}

fn rules(o: &mut String, d: &DayData) {
    o.push_str(r#"<section id="rules"><h2>Rules</h2><h3>Labels no task rule matched</h3>"#);
    if d.unmatched_labels.is_empty() {
        let _ = write!(
            o,
            "<p>Every label of the day's {} events matched a task rule.</p>",
            d.events
        );
    } else {
        o.push_str(r#"<table class="unmatched-labels"><thead><tr><th>label</th><th class="n">events</th></tr></thead><tbody>"#);
        for (l, n) in &d.unmatched_labels {
            let _ = write!(
                o,
                r#"<tr><td><code>{}</code></td><td class="n">{n}</td></tr>"#,
                esc(l)
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("<h3>Inboxes no workstream rule matched</h3>");
    if d.unmatched_inboxes.is_empty() {
        o.push_str("<p>Every inbox matched a workstream rule.</p>");
    } else {
        o.push_str(r#"<table class="unmatched-inboxes"><thead><tr><th>inbox</th><th>id</th><th class="n">conversations that day</th><th>note</th></tr></thead><tbody>"#);
        for i in &d.unmatched_inboxes {
            let note = match (i.known, i.disabled) {
                (false, _) => "not in the inboxes snapshot",
                (true, true) => "disabled",
                _ => "",
            };
            let _ = write!(
                o,
                r#"<tr><td>{}</td><td><code>{}</code></td><td class="n">{}</td><td>{note}</td></tr>"#,
                esc(i.name.as_deref().unwrap_or("")),
                esc(&i.inbox_id),
                i.conversations
            );
        }
        o.push_str("</tbody></table>");
    }
    for (what, seen, rules) in [
        ("Task rules", "labels seen this day", &d.task_rules),
        (
            "Workstream rules",
            "inboxes of the newest snapshot",
            &d.workstream_rules,
        ),
    ] {
        let _ = write!(
            o,
            r#"<h3>{what}</h3><table class="rules"><thead><tr><th>rule</th><th class="n">line</th><th>pattern</th><th class="n">{seen} it matches</th><th class="n">it wins</th><th>note</th></tr></thead><tbody>"#
        );
        for r in rules {
            let note = if r.matches == 0 {
                "matches nothing"
            } else if r.wins == 0 {
                "always beaten by an earlier rule"
            } else {
                ""
            };
            let _ = write!(
                o,
                r#"<tr{}><td>{}</td><td class="n">{}</td><td><code>{}</code></td><td class="n">{}</td><td class="n">{}</td><td>{note}</td></tr>"#,
                if r.matches == 0 {
                    r#" class="unused""#
                } else {
                    ""
                },
                esc(&r.name),
                r.line,
                esc(&r.pattern),
                r.matches,
                r.wins
            );
        }
        o.push_str("</tbody></table>");
    }
    o.push_str("</section>");
}

fn v_str(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "Checked against Gladly": the day's agent-days within tolerance, and the others.
fn audit(o: &mut String, d: &DayData) {
    o.push_str(r#"<section id="audit"><h2>Checked against Gladly</h2>"#);
    let Some(rows) = &d.audit else {
        o.push_str(
            r#"<p class="note">Not audited: no agent_day_audit for this day.</p></section>"#,
        );
        return;
    };
    let within = rows.iter().filter(|r| r.within_tolerance).count();
    let _ = write!(
        o,
        r#"<p>{within} of {} agent-days agree with Gladly's AgentSummaryV2 within the tolerance.</p>"#,
        rows.len()
    );
    let off: Vec<_> = rows.iter().filter(|r| !r.within_tolerance).collect();
    if !off.is_empty() {
        o.push_str("<table><tr><th>agent</th><th>logged in, ours − Gladly's (s)</th><th>active, ours − Gladly's (s)</th><th>note</th></tr>");
        for r in off {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{:+.3}</td><td>{:+.3}</td><td>{}</td></tr>",
                esc(r.agent_email.as_deref().unwrap_or(&r.agent_id)),
                r.logged_in_diff(),
                r.active_diff(),
                esc(r.note.unwrap_or("drift"))
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
}

fn run(o: &mut String, d: &DayData) {
    o.push_str(r#"<section id="run"><h2>The run</h2>"#);
    let Some(r) = &d.run else {
        let _ = write!(
            o,
            "<p>No run manifest under <code>_runs/{}/</code> lists {} as completed.</p></section>",
            esc(&d.pipeline),
            d.day
        );
        return;
    };
    let m = &r.manifest;
    let day = d.day.to_string();
    let file = r.path.rsplit('/').next().unwrap_or_default().to_string();
    let _ = write!(
        o,
        r#"<p class="note">The newest run that completed {day}: <code>_runs/{}/{}</code>.</p><table class="run"><tbody>"#,
        esc(&d.pipeline),
        esc(&file)
    );
    let days = m.window.days.len();
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "–".into());
    let rows: Vec<(&str, String)> = vec![
        ("run", m.run_id.clone()),
        ("trigger", m.trigger.clone()),
        ("started", m.started_at.clone()),
        ("finished", m.finished_at.clone()),
        (
            "outcome",
            format!("{} (exit code {})", m.outcome, m.exit_code),
        ),
        (
            "window",
            format!(
                "{} to {} ({days} day{}{})",
                or_dash(&m.window.from),
                or_dash(&m.window.to),
                if days == 1 { "" } else { "s" },
                match (m.trigger.as_str(), m.window.explicit) {
                    ("demo", _) => ": the demo's --days and today so far",
                    ("follow", _) => ": follow's reconcile of a complete day",
                    (_, true) => ", --from/--to",
                    _ => "",
                }
            ),
        ),
        ("days completed", m.days_completed.len().to_string()),
        (
            "agent events of this day from",
            or_dash(&m.agent_event_sources.get(&day).cloned()),
        ),
        (
            "requests",
            ["gladly", "wfm"]
                .iter()
                .map(|k| {
                    // The HTTP layer's counters, as it names them.
                    let q = &m.requests[k];
                    format!(
                        "{k}: {} requests, {} retries, {} × 429, {} × 5xx",
                        v_str(&q["requests"]),
                        v_str(&q["retries"]),
                        v_str(&q["throttled_429"]),
                        v_str(&q["server_errors_5xx"])
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("records set aside", m.set_aside.count.to_string()),
        ("dry run", m.dry_run.to_string()),
    ];
    for (k, v) in rows {
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    if let Some(e) = &m.error {
        let _ = write!(o, "<tr><th>error</th><td>{}</td></tr>", esc(e));
    }
    o.push_str("</tbody></table><h3>Rows written for this day</h3><table><thead><tr><th>dataset</th><th class=\"n\">rows</th></tr></thead><tbody>");
    for (ds, per_day) in &m.rows {
        if let Some(n) = per_day.get(&day) {
            let _ = write!(o, r#"<tr><td>{}</td><td class="n">{n}</td></tr>"#, esc(ds),);
        }
    }
    o.push_str("</tbody></table><h3>WFM answers (the whole run)</h3>");
    match &m.wfm {
        k if !k.is_empty() => {
            o.push_str(r#"<table class="wfm"><thead><tr><th>kind</th><th class="n">batches sent</th><th class="n">skipped on resume</th><th class="n">records</th><th class="n">inserted</th><th class="n">updated</th><th class="n">duplicate</th><th class="n">rejected</th><th class="n">unknown users</th></tr></thead><tbody>"#);
            let mut errors = Vec::new();
            for (kind, t) in k {
                let _ = write!(
                    o,
                    r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                    esc(kind),
                    t.batches_sent,
                    t.batches_skipped_resumed,
                    t.records,
                    t.inserted,
                    t.updated,
                    t.duplicate,
                    t.rejected,
                    t.unknown_users.len()
                );
                for e in t.errors.iter().take(5) {
                    errors.push(format!("{kind}: {e}"));
                }
            }
            o.push_str("</tbody></table>");
            if !errors.is_empty() {
                o.push_str("<h3>Rejections (first few)</h3><ul>");
                for e in errors {
                    let _ = write!(o, "<li><code>{}</code></li>", esc(&e));
                }
                o.push_str("</ul>");
            }
        }
        _ => o.push_str("<p>Nothing was pushed (no <code>[wfm]</code>, a dry run, or the load stage did not run).</p>"),
    }
    o.push_str("</section>");
}
