//! The README's recipes and the analyst's readers, against the demo's output: each recipe (DuckDB
//! and pandas) gives the sums computed here independently from the Parquet files (arrow-rs'
//! reader), and pandas (default backend) and DuckDB read every dataset whole.
//!
//! Needs python3 with pandas, pyarrow and duckdb (`.ci/run` installs them).

mod util;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use util::*;

/// Runs the demo in a fresh folder; returns the folder (its `output/` holds the result).
async fn demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let o = bin(dir.path(), &["demo", "--days", "2", "--agents", "8"], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    dir
}

fn python(dir: &Path, mode: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = std::process::Command::new("python3")
        .arg(root.join("tests/recipes.py"))
        .arg(root.join("README.md"))
        .arg(mode)
        .current_dir(dir)
        .output()
        .expect(
            "python3 (with pandas, pyarrow, duckdb: python3 -m pip install pandas pyarrow duckdb)",
        );
    assert!(
        o.status.success(),
        "tests/recipes.py {mode} failed (python3 -m pip install pandas pyarrow duckdb):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Compares one recipe's rows (per engine) with the expected values by key.
fn assert_recipe(
    name: &str,
    got: &Value,
    key: &dyn Fn(&Map<String, Value>) -> String,
    want: &BTreeMap<String, Vec<(&str, f64, f64)>>,
) {
    for engine in ["duckdb", "pandas"] {
        let rows = got[name][engine]
            .as_array()
            .unwrap_or_else(|| panic!("recipe {name} {engine} in the README: {got}"));
        let by_key: BTreeMap<String, &Map<String, Value>> = rows
            .iter()
            .map(|r| (key(r.as_object().unwrap()), r.as_object().unwrap()))
            .collect();
        assert_eq!(
            by_key.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name} {engine}: the same groups"
        );
        for (k, cols) in want {
            for (col, value, tol) in cols {
                let g = num(&by_key[k][*col]);
                assert!(
                    close(g, *value, *tol),
                    "{name} {engine} {k} {col}: {g} != {value}"
                );
            }
        }
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_readme_recipe_gives_the_sums_computed_independently() {
    let dir = demo().await;
    let root = dir.path().join("output");
    let got = python(dir.path(), "recipes");
    let segments = dataset(&root, "agent_status_segments");
    let hours = |r: &Map<String, Value>| num(&r["duration_seconds"]) / 3600.0;

    // Logged-in, active and away hours per agent and day, from the status axis only.
    let mut status: BTreeMap<String, [f64; 3]> = BTreeMap::new();
    for (date, rows) in &segments {
        for r in rows.iter().filter(|r| r["axis"] == "status") {
            let e = status
                .entry(format!("{date}|{}", s(&r["agent_id"])))
                .or_default();
            match r["state"].as_str().unwrap() {
                "active" => e[1] += hours(r),
                "away" => e[2] += hours(r),
                _ => {}
            }
            e[0] = e[1] + e[2];
        }
    }
    let want = status
        .into_iter()
        .map(|(k, [l, a, w])| {
            (
                k,
                vec![
                    ("logged_in_hours", l, 1e-6),
                    ("active_hours", a, 1e-6),
                    ("away_hours", w, 1e-6),
                ],
            )
        })
        .collect();
    assert_recipe(
        "status_hours",
        &got,
        &|r| format!("{}|{}", s(&r["date"]), s(&r["agent_id"])),
        &want,
    );
    // A working day is hours, not the ~24 h per axis that summing both axes suggested.
    let total: f64 = got["status_hours"]["duckdb"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| num(&r["logged_in_hours"]))
        .fold(0.0, f64::max);
    assert!(
        total > 1.0 && total < 16.0,
        "longest logged-in day {total} h"
    );

    // Hours per axis and task, unmatched time as `(no rule)`.
    let mut tasks: BTreeMap<String, f64> = BTreeMap::new();
    for rows in segments.values() {
        for r in rows {
            let task = r["task"].as_str().unwrap_or("(no rule)");
            *tasks
                .entry(format!("{}|{task}", s(&r["axis"])))
                .or_default() += hours(r);
        }
    }
    assert!(tasks.keys().any(|k| k.ends_with("|(no rule)")));
    let want = tasks
        .into_iter()
        .map(|(k, h)| (k, vec![("hours", h, 1e-6)]))
        .collect();
    assert_recipe(
        "task_hours",
        &got,
        &|r| format!("{}|{}", s(&r["axis"]), s(&r["task"])),
        &want,
    );

    // Offered, handled, within SLA per workstream and interval (channels added up).
    let mut iv: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    for rows in dataset(&root, "workstream_intervals").values() {
        for r in rows {
            let ws = r["workstream"].as_str().unwrap_or("(no rule)");
            let e = iv
                .entry(format!("{ws}|{}", r["interval_start"]))
                .or_default();
            e[0] += num(&r["offered"]);
            e[1] += num(&r["handled"]);
            e[2] += num(&r["within_sla"]);
            e[3] += num(&r["handle_time_seconds"]);
        }
    }
    // The simulated organisation looks like a healthy contact centre (not 15 % within SLA and
    // half-hour handles, which read as a broken pipeline).
    let total = |i: usize| iv.values().map(|e| e[i]).sum::<f64>();
    let sla = total(2) / total(0);
    assert!(sla > 0.6 && sla < 0.95, "share within SLA {sla}");
    let handle_minutes = total(3) / total(1) / 60.0;
    assert!(
        handle_minutes > 4.0 && handle_minutes < 10.0,
        "average handle time {handle_minutes} min"
    );
    let want = iv
        .into_iter()
        .map(|(k, [o, h, w, t])| {
            let mut cols = vec![
                ("offered", o, 0.0),
                ("handled", h, 0.0),
                ("within_sla", w, 0.0),
            ];
            cols.push(("sla_percent", 100.0 * w / o, 0.051));
            if h > 0.0 {
                cols.push(("avg_handle_minutes", t / h / 60.0, 0.051));
            }
            (k, cols)
        })
        .collect();
    assert_recipe(
        "intervals",
        &got,
        &|r| format!("{}|{}", s(&r["workstream"]), r["interval_start"]),
        &want,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_and_duckdb_read_every_dataset_of_the_demo() {
    let dir = demo().await;
    let root = dir.path().join("output");
    let got = python(dir.path(), "datasets");
    for d in [
        "agents",
        "inboxes",
        "agent_status_events",
        "agent_status_segments",
        "conversations",
        "work_sessions",
        "workstream_intervals",
    ] {
        let rows: usize = dataset(&root, d).values().map(|r| r.len()).sum();
        assert!(rows > 0, "{d} has rows");
        assert_eq!(got[d]["pandas"], rows, "{d}: pandas.read_parquet");
        assert_eq!(got[d]["duckdb"], rows, "{d}: DuckDB");
        assert!(
            got[d]["pandas_columns"]
                .as_array()
                .unwrap()
                .contains(&Value::from("date")),
            "{d}: the partition column"
        );
    }
}
