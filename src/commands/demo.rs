//! `gladly-wfm demo`: both simulators in-process on free loopback ports, `pipelines/demo.toml`
//! against them, Parquet under `--out`, and a summary table. No credentials, a few seconds.

use std::path::{Path, PathBuf};

use chrono::Duration;

use crate::config::Pipeline;
use crate::pipeline::{self, last_complete_day, RunOptions, Stages};
use crate::sim::generator::{Quirks, WorldConfig};
use crate::sim::gladly::{GladlySim, GladlySimConfig};
use crate::sim::wfm::{Kind, WfmSim, WfmSimConfig};
use crate::time;

const DEMO_TOML: &str = include_str!("../../pipelines/demo.toml");

pub struct DemoArgs {
    pub days: u32,
    pub agents: usize,
    pub out: PathBuf,
}

pub async fn demo(a: DemoArgs) -> i32 {
    let now = time::now_ms();
    let tz = chrono_tz::America::New_York;
    let world = WorldConfig {
        seed: 42,
        agents: a.agents.max(1),
        inboxes: 5,
        days: a.days.max(1) + 3,
        timezone: tz,
        now: Some(now),
        quirks: Quirks::default(),
    };
    let mut gcfg = GladlySimConfig::new(world);
    gcfg.reports_per_minute = 600;
    let gladly = GladlySim::new(gcfg);
    let wfm = WfmSim::new(WfmSimConfig {
        // As raised as the push's own limit in demo.toml: the push, not the budget, sets the pace.
        requests_per_30s: 100_000,
        ..WfmSimConfig::default()
    });
    let (g, w) = match (
        gladly.serve("127.0.0.1:0").await,
        wfm.serve("127.0.0.1:0").await,
    ) {
        (Ok(g), Ok(w)) => (g, w),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("demo: cannot start the simulators: {e}");
            return 1;
        }
    };
    println!("Gladly simulator on http://{g}, WFM simulator on http://{w}");
    let vars = [
        ("GLADLY_BASE_URL", format!("http://{g}")),
        ("GLADLY_API_USER", "sim@example.com".to_string()),
        ("GLADLY_API_TOKEN", "sim-token".to_string()),
        ("WFM_BASE_URL", format!("http://{w}")),
        ("WFM_CLIENT_ID", "sim-client".to_string()),
        ("WFM_CLIENT_SECRET", "sim-secret".to_string()),
    ];
    let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let file = Path::new("pipelines/demo.toml");
    let src = std::fs::read_to_string(file).unwrap_or_else(|_| DEMO_TOML.to_string());
    let mut p = match Pipeline::parse(file, &src, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    p.output_root = a.out.clone();
    let last = last_complete_day(tz, now, p.report_lag_minutes);
    let today = time::day_of(tz, now);
    let opts = RunOptions {
        from: Some(last - Duration::days(a.days.max(1) as i64 - 1)),
        to: Some(today),
        stages: Stages::ALL,
        dry_run: false,
        now,
        trigger: "demo".into(),
    };
    let outcome = pipeline::run(&p, &opts).await;
    let m = &outcome.manifest;
    println!();
    println!("{:<28} {:>10}", "dataset", "rows");
    if let Some(rows) = m["rows"].as_object() {
        for (dataset, days) in rows {
            let n: u64 = days
                .as_object()
                .map(|d| d.values().filter_map(|v| v.as_u64()).sum())
                .unwrap_or(0);
            println!("{dataset:<28} {n:>10}");
        }
    }
    println!();
    println!("unmatched labels (no task rule):");
    match m["unmatched_labels"].as_object() {
        Some(u) if !u.is_empty() => {
            for (l, n) in u {
                println!("  {l:<26} {n:>10}");
            }
        }
        _ => println!("  none"),
    }
    println!();
    println!("WFM answers:");
    if let Some(k) = m["wfm"].as_object() {
        for (kind, t) in k {
            println!(
                "  {kind:<10} batches {:>4}  inserted {:>6}  updated {:>5}  duplicate {:>5}  rejected {:>4}  unknown users {}",
                t["batches_sent"], t["inserted"], t["updated"], t["duplicate"], t["rejected"],
                t["unknown_users"].as_array().map(|a| a.len()).unwrap_or(0)
            );
        }
    }
    let store = wfm.store();
    println!(
        "  receiver now holds {} users and {} task records",
        store.kind(Kind::Users).len(),
        store.kind(Kind::Tasks).len()
    );
    println!();
    println!("Parquet under {}/ (read it with DuckDB: SELECT * FROM '{}/agent_status_segments/*/*.parquet')", a.out.display(), a.out.display());
    println!("{}", outcome.summary);
    outcome.exit_code
}
