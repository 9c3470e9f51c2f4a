//! `gladly-wfm report` against a day the pipeline made from the simulators: the page's bars are
//! read back from the HTML and checked against agent_status_segments as read by the arrow-rs
//! `parquet` crate (one bar per segment, or merged runs whose counts and bounds add up; x and
//! width within a pixel), hours per task against sums of `duration_seconds`, nothing fetched from
//! the network, and a clear exit 2 for a day without data.

mod util;

use std::collections::BTreeMap;
use std::path::Path;

use regex::Regex;
use serde_json::{Map, Value};
use util::*;

/// The status bars of one agent's row, in page order; `start`/`end` in ms since the day's start.
#[derive(Debug)]
struct Bar {
    x: f64,
    width: f64,
    start: i64,
    end: i64,
    n: usize,
    title: String,
}

fn opt_attr(tag: &str, name: &str) -> Option<String> {
    let re = Regex::new(&format!(r#"\s{name}="([^"]*)""#)).unwrap();
    re.captures(tag).map(|c| c[1].to_string())
}

fn attr(tag: &str, name: &str) -> String {
    opt_attr(tag, name).unwrap_or_else(|| panic!("no {name} in {tag}"))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// agent id → its status bars.
fn timeline_bars(html: &str) -> BTreeMap<String, Vec<Bar>> {
    let row = Regex::new(r#"(?s)<g class="row" data-agent="([^"]+)"[^>]*>(.*?)</g>"#).unwrap();
    let rect =
        Regex::new(r#"(<rect class="s[0-9n][^"]*"[^>]*>)<title>([^<]*)</title></rect>"#).unwrap();
    let mut out = BTreeMap::new();
    for r in row.captures_iter(html) {
        let bars = rect
            .captures_iter(&r[2])
            .map(|c| Bar {
                x: attr(&c[1], "x").parse().unwrap(),
                width: attr(&c[1], "width").parse().unwrap(),
                start: attr(&c[1], "data-s").parse().unwrap(),
                end: attr(&c[1], "data-e").parse().unwrap(),
                n: opt_attr(&c[1], "data-n").map_or(1, |n| n.parse().unwrap()),
                title: unescape(&c[2]),
            })
            .collect();
        assert!(
            out.insert(unescape(&r[1]), bars).is_none(),
            "one row per agent"
        );
    }
    out
}

fn s<'a>(r: &'a Map<String, Value>, k: &str) -> &'a str {
    r[k].as_str().unwrap_or("")
}

async fn run_days(dir: &Path, s: &Sims, from: &str, to: &str) {
    let p = pipeline(dir, s, "", "");
    let o = run(dir, &p, NOW, &["--from", from, "--to", to]).await;
    assert_eq!(o.code, 0, "{o}");
}

async fn report(dir: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["report", "--pipeline", "pipeline.toml", "--now", NOW];
    args.extend_from_slice(extra);
    bin(dir, &args, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_draws_every_status_segment_at_its_time_and_sums_hours_per_task() {
    let sims = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    // 2026-11-01 is the fall-back DST day in New York: 25 hours.
    run_days(dir.path(), &sims, "2026-10-31", "2026-11-02").await;
    let day = "2026-11-01";
    let o = report(dir.path(), &["--date", day, "--out", "r.html"]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("r.html"), "prints where the page is: {o}");
    let html = std::fs::read_to_string(dir.path().join("r.html")).unwrap();

    // The day's axis: 25 hours at the stated scale.
    let svg = Regex::new(r#"<svg class="timeline"[^>]*>"#)
        .unwrap()
        .find(&html)
        .expect("a timeline")
        .as_str()
        .to_string();
    let day_start: i64 = attr(&svg, "data-day-start").parse().unwrap();
    let day_end: i64 = attr(&svg, "data-day-end").parse().unwrap();
    let x0: f64 = attr(&svg, "data-x0").parse().unwrap();
    let pph: f64 = attr(&svg, "data-px-per-hour").parse().unwrap();
    assert_eq!(day_start, ms("2026-11-01T04:00:00Z"));
    assert_eq!(day_end - day_start, 25 * 3_600_000, "a 25-hour day");
    let px = |ms: i64| ms as f64 / 3_600_000.0 * pph;

    // Segments as the dataset holds them, read independently.
    let segs = dataset(&dir.path().join("output"), "agent_status_segments");
    let rows = &segs[day];
    let mut status: BTreeMap<String, Vec<&Map<String, Value>>> = BTreeMap::new();
    for r in rows.iter().filter(|r| s(r, "axis") == "status") {
        status
            .entry(s(r, "agent_id").to_string())
            .or_default()
            .push(r);
    }
    for v in status.values_mut() {
        v.sort_by_key(|r| r["start_at"].as_i64().unwrap());
    }
    let bars = timeline_bars(&html);
    let with_bars: Vec<&String> = bars
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        with_bars,
        status.keys().collect::<Vec<_>>(),
        "one row per agent with status segments"
    );
    let (mut single, mut merged) = (0, 0);
    for (agent, segs) in &status {
        let bars = &bars[agent];
        assert_eq!(
            bars.iter().map(|b| b.n).sum::<usize>(),
            segs.len(),
            "{agent}: the bars hold every status segment once"
        );
        let mut i = 0;
        for b in bars {
            let held = &segs[i..i + b.n];
            i += b.n;
            let (first, last) = (held[0], held[b.n - 1]);
            assert_eq!(
                day_start + b.start,
                first["start_at"].as_i64().unwrap(),
                "{agent}: {b:?}"
            );
            assert_eq!(
                day_start + b.end,
                last["end_at"].as_i64().unwrap(),
                "{agent}: {b:?}"
            );
            for w in held.windows(2) {
                assert_eq!(
                    w[0]["end_at"], w[1]["start_at"],
                    "{agent}: merged pieces touch"
                );
            }
            assert!(
                (b.x - (x0 + px(b.start))).abs() <= 1.0,
                "{agent}: x of {b:?}"
            );
            assert!(
                (b.width - px(b.end - b.start)).abs() <= 1.0,
                "{agent}: width of {b:?}"
            );
            if b.n == 1 {
                single += 1;
                let task = first["task"].as_str().unwrap_or("no task");
                assert!(
                    b.title.contains(s(first, "label")) && b.title.contains(task),
                    "{agent}: the title names label and task: {}",
                    b.title
                );
            } else {
                merged += 1;
                assert!(
                    px(b.end - b.start) <= 2.0,
                    "only sub-pixel pieces merge: {b:?}"
                );
                assert!(
                    b.title.starts_with(&format!("{} segments", b.n)),
                    "{}",
                    b.title
                );
            }
        }
    }
    assert!(
        single > merged,
        "most segments are drawn alone ({single} vs {merged})"
    );

    // Hours per task: the table's numbers are the dataset's sums.
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in rows {
        *want
            .entry((s(r, "axis").into(), s(r, "task").into()))
            .or_default() += r["duration_seconds"].as_f64().unwrap_or(0.0);
    }
    let tr = Regex::new(
        r#"<tr data-axis="([^"]*)" data-task="([^"]*)" data-seconds="([^"]*)"><td>[^<]*</td><td>[^<]*</td><td class="n">\d+</td><td class="n">([^<]*)</td>"#,
    )
    .unwrap();
    let got: BTreeMap<(String, String), (f64, String)> = tr
        .captures_iter(&html)
        .map(|c| {
            (
                (unescape(&c[1]), unescape(&c[2])),
                (c[3].parse().unwrap(), c[4].to_string()),
            )
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, secs) in &want {
        let (g, shown) = &got[k];
        assert!((g - secs).abs() < 0.001, "{k:?}: {g} vs {secs}");
        assert_eq!(shown, &format!("{:.2}", secs / 3600.0), "{k:?}");
    }

    // Nothing from the network: no http(s) reference in any tag, no script, no external asset.
    let in_tag = Regex::new(r#"<[^>]*https?://"#).unwrap();
    assert!(in_tag.find(&html).is_none(), "{:?}", in_tag.find(&html));
    for bad in ["<script", "<link", "<img", "@import", "<iframe", "<object"] {
        assert!(!html.contains(bad), "the page holds {bad}");
    }
    let url = Regex::new(r#"url\(([^)]*)\)"#).unwrap();
    for c in url.captures_iter(&html) {
        assert!(c[1].starts_with('#'), "only in-page references: {}", &c[0]);
    }
    assert_no_secrets(dir.path(), &[&html, &o.stdout, &o.stderr]);

    // Default date: the newest complete day with data (2026-11-02), beside the run manifests.
    let o = report(dir.path(), &[]).await;
    assert_eq!(o.code, 0, "{o}");
    let path = dir.path().join("output/_reports/t/2026-11-02.html");
    assert!(path.exists(), "{o}");
    assert!(o.stdout.contains("report for 2026-11-02"), "{o}");
    let html = std::fs::read_to_string(path).unwrap();
    assert!(
        html.contains("Monday 2 November 2026"),
        "the page names its day"
    );
    assert!(
        html.contains(r#"id="run""#) && html.contains("(exit code 0)"),
        "the run section reads the manifest"
    );
    // Teams by the names Gladly's /teams gives them, not by id.
    assert!(html.contains("team Team 1"), "teams are named");

    // A date without data: exit 2, the date named, and what there is.
    let o = report(dir.path(), &["--date", "2026-10-20"]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr.contains("no curated data for 2026-10-20")
            && o.stderr.contains("2026-10-31 to 2026-11-02"),
        "{o}"
    );
    let o = report(dir.path(), &["--date", "20 Oct"]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("--date `20 Oct` is not a date"), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_an_empty_output_root_exits_2_and_says_to_run_first() {
    let sims = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), &sims, "", "");
    let o = report(dir.path(), &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains("run the pipeline first"), "{o}");
    assert!(sims.gladly.requests().is_empty(), "report calls nobody");
}

/// Headless Chromium renders the page to a PNG, through the repository's script. In CI
/// (`CI=true`, where `.ci/run` installs Chromium) a missing browser fails the test; elsewhere it
/// is skipped, said on the terminal past the test harness's capture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_renders_the_report_when_installed() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("chromium").is_file()))
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "`chromium` is not on PATH, and CI installs it: the rendering check must run"
        );
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED headless_chromium_renders_the_report_when_installed: `chromium` is not on PATH (apt-get install chromium)"
        );
        return;
    }
    let sims = start(world(3, 6, NOW), |_| {}, Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    run_days(dir.path(), &sims, "2026-11-02", "2026-11-02").await;
    let o = report(dir.path(), &["--date", "2026-11-02", "--out", "r.html"]).await;
    assert_eq!(o.code, 0, "{o}");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/render-report.sh");
    let png = dir.path().join("r.png");
    let out = tokio::process::Command::new("sh")
        .arg(&script)
        .arg(dir.path().join("r.html"))
        .arg(&png)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 10_000,
        "not a blank page: {} bytes",
        bytes.len()
    );
}
