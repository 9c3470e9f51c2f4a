//! Test harness: the simulators in-process on loopback, the real binary as a child process in a
//! fresh temporary directory with a clean environment, and an independent Parquet reader
//! (arrow-rs' `parquet` crate) for what the binary wrote.
#![allow(dead_code)]

pub mod follow;
pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gladly_wfm_sim::generator::{Quirks, WorldConfig};
use gladly_wfm_sim::gladly::{GladlySim, GladlySimConfig};
use gladly_wfm_sim::wfm::{WfmSim, WfmSimConfig};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::{Map, Value};

pub const TZ: &str = "America/New_York";
/// Wednesday 2026-11-04, 12:00 in New York: 2026-11-01 (the DST day) is a few days back.
pub const NOW: &str = "2026-11-04T17:00:00Z";
pub const TOKEN: &str = "s3cret-gladly-token-XYZ";
pub const WFM_SECRET: &str = "s3cret-wfm-secret-ABC";

/// A free loopback port (for a server the test starts by address).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn ms(s: &str) -> i64 {
    gladly_wfm::time::parse_ts(s).unwrap()
}

pub fn world(seed: u64, agents: usize, now: &str) -> WorldConfig {
    WorldConfig {
        seed,
        agents,
        inboxes: 5,
        days: 10,
        timezone: TZ.parse().unwrap(),
        now: Some(ms(now)),
        quirks: Quirks::default(),
    }
}

pub struct Sims {
    pub gladly: Arc<GladlySim>,
    pub gladly_url: String,
    pub wfm: Arc<WfmSim>,
    pub wfm_url: String,
}

pub async fn start(
    world: WorldConfig,
    tweak: impl FnOnce(&mut GladlySimConfig),
    wfm: WfmSimConfig,
) -> Sims {
    let mut cfg = GladlySimConfig::new(world);
    cfg.token = TOKEN.into();
    // Tests run many short ranges: a raised reports budget keeps them fast. The limits
    // themselves are tested with Gladly's real figures where they are the subject.
    cfg.reports_per_minute = 600;
    tweak(&mut cfg);
    let gladly = GladlySim::new(cfg);
    let g = gladly.serve("127.0.0.1:0").await.unwrap();
    let wfm = WfmSim::new(WfmSimConfig {
        client_secret: WFM_SECRET.into(),
        ..wfm
    });
    let w = wfm.serve("127.0.0.1:0").await.unwrap();
    Sims {
        gladly,
        gladly_url: format!("http://{g}"),
        wfm,
        wfm_url: format!("http://{w}"),
    }
}

pub async fn start_default(now: &str) -> Sims {
    start(world(7, 20, now), |_| {}, WfmSimConfig::default()).await
}

pub const TASKS: &str = r#"
[[tasks]]
name = "Logged In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Logged Out"
pattern = "LOGGED_OUT"
[[tasks]]
name = "Away"
pattern = "Break|Lunch|Meeting|Other|WENT_AWAY"
[[tasks]]
name = "Returned"
pattern = "RETURNED_FROM_AWAY"
[[tasks]]
name = "Availability"
pattern = "AvailableFor:.*|Unavailable"
[[tasks]]
name = "Any availability"
pattern = "AvailableFor:.*"
[[workstreams]]
name = "Customer_Support"
pattern = "Customer_Support|VIP Care"
[[workstreams]]
name = "Support, catch-all"
pattern = ".*Support.*"
"#;

/// Writes a pipeline file for these simulators into `dir`; `extra` is appended (or replaces
/// top-level keys via `top`).
pub fn pipeline(dir: &Path, sims: &Sims, top: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "t"
timezone = "{TZ}"
settle_days = 0
report_lag_minutes = 120
{top}

[gladly]
base_url = "{g}"
user = "sim@example.com"
token = "${{GLADLY_API_TOKEN}}"
requests_per_second = 10
reports_per_minute = 600
reports_in_flight = 2
{TASKS}
[output]
root = "{out}"

[wfm]
base_url = "{w}"
client_id = "sim-client"
client_secret = "${{WFM_CLIENT_SECRET}}"
integration_id = "it"
{extra}
"#,
        g = sims.gladly_url,
        w = sims.wfm_url,
        out = dir.join("output").display(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_gladly-wfm"));
    c.current_dir(dir).args(args).env_clear();
    c.env("GLADLY_API_TOKEN", TOKEN)
        .env("WFM_CLIENT_SECRET", WFM_SECRET);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null()).kill_on_drop(true);
    c
}

/// Runs the binary to completion.
pub async fn bin(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let o = command(dir, args, env).output().await.unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).to_string(),
        stderr: String::from_utf8_lossy(&o.stderr).to_string(),
    }
}

pub async fn run(dir: &Path, pipeline: &Path, now: &str, extra: &[&str]) -> Out {
    run_env(dir, pipeline, now, extra, &[]).await
}

/// `run` with extra environment variables (say, a wrong credential).
pub async fn run_env(
    dir: &Path,
    pipeline: &Path,
    now: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Out {
    let p = pipeline.display().to_string();
    let mut args = vec!["run", "--pipeline", p.as_str(), "--now", now];
    args.extend_from_slice(extra);
    bin(dir, &args, env).await
}

/// JSON records in a stable order, to compare two receivers' stores.
pub fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v
}

fn field(f: &Field) -> Value {
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Long(n) => Value::from(*n),
        Field::Int(n) => Value::from(*n),
        Field::Double(d) => Value::from(*d),
        Field::Str(s) => Value::String(s.clone()),
        Field::TimestampMillis(t) => Value::from(*t),
        Field::TimestampMicros(t) => Value::from(*t / 1000),
        Field::ListInternal(l) => Value::Array(l.elements().iter().map(field).collect()),
        other => Value::String(format!("{other}")),
    }
}

/// Reads a Parquet file with the arrow-rs `parquet` crate (not the writer's code).
pub fn read_rows(path: &Path) -> Vec<Map<String, Value>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = SerializedFileReader::new(file).unwrap();
    reader
        .get_row_iter(None)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            r.get_column_iter()
                .map(|(k, v)| (k.clone(), field(v)))
                .collect()
        })
        .collect()
}

/// Every partition of a dataset: date → rows.
pub fn dataset(root: &Path, name: &str) -> BTreeMap<String, Vec<Map<String, Value>>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(root.join(name))
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name().to_string_lossy().to_string();
        if let Some(d) = n.strip_prefix("date=") {
            let files: Vec<_> = std::fs::read_dir(e.path())
                .unwrap()
                .flatten()
                .map(|f| f.file_name().to_string_lossy().to_string())
                .collect();
            assert_eq!(
                files,
                vec!["part-0.parquet".to_string()],
                "partition {n} of {name} holds exactly one file"
            );
            out.insert(d.to_string(), read_rows(&e.path().join("part-0.parquet")));
        }
    }
    out
}

/// All files under a folder, for failure messages and leak checks.
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    walk(root, &mut out);
    out.sort();
    out
}

/// Asserts no secret appears in any file under `root` nor in `texts`.
pub fn assert_no_secrets(root: &Path, texts: &[&str]) {
    for f in files(root) {
        let b = std::fs::read(&f).unwrap();
        let s = String::from_utf8_lossy(&b);
        for sec in [TOKEN, WFM_SECRET] {
            assert!(!s.contains(sec), "secret found in {}", f.display());
        }
    }
    for t in texts {
        for sec in [TOKEN, WFM_SECRET] {
            assert!(!t.contains(sec), "secret found in output: {t}");
        }
    }
}

pub fn latest_manifest(root: &Path) -> Value {
    let mut runs: Vec<_> = files(&root.join("_runs"));
    runs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let last = runs.last().expect("a manifest");
    serde_json::from_slice(&std::fs::read(last).unwrap()).unwrap()
}

/// The Arrow schema a reader derives from a file (its embedded `ARROW:schema`, if any).
pub fn arrow_schema(path: &Path) -> parquet::arrow::arrow_reader::ArrowReaderMetadata {
    let f = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&f, Default::default()).unwrap()
}

/// Column names of a partition, in file order.
pub fn columns(root: &Path, dataset: &str, day: &str) -> Vec<String> {
    let f = std::fs::File::open(
        root.join(dataset)
            .join(format!("date={day}"))
            .join("part-0.parquet"),
    )
    .unwrap();
    let r = SerializedFileReader::new(f).unwrap();
    r.metadata()
        .file_metadata()
        .schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

pub const DATASETS: [&str; 7] = [
    "raw/agent_events",
    "agent_status_events",
    "agent_status_segments",
    "conversations",
    "work_sessions",
    "workstream_intervals",
    "inboxes",
];

pub fn assert_same_store(a: &gladly_wfm_sim::wfm::Store, b: &gladly_wfm_sim::wfm::Store) {
    use gladly_wfm_sim::wfm::Kind;
    for k in [
        Kind::Users,
        Kind::Tasks,
        Kind::Conversations,
        Kind::Intervals,
    ] {
        let (x, y) = (sorted(a.kind(k)), sorted(b.kind(k)));
        assert!(!x.is_empty(), "{k:?} stored");
        assert_eq!(x.len(), y.len(), "{k:?}: record count");
        assert!(x == y, "{k:?}: records differ");
    }
    assert_no_shared_starts(b);
}

/// DESIGN §5: no two task records of one user and axis share a start.
pub fn assert_no_shared_starts(store: &gladly_wfm_sim::wfm::Store) {
    let mut seen = std::collections::BTreeMap::new();
    for t in store.kind(gladly_wfm_sim::wfm::Kind::Tasks) {
        let k = (
            t["userIdentifier"].to_string(),
            t["axis"].to_string(),
            t["startTime"].to_string(),
        );
        if let Some(other) = seen.insert(k, t.clone()) {
            panic!("two task records share a start:\n{other}\n{t}");
        }
    }
}

pub fn assert_same_datasets(a: &Path, b: &Path) {
    for d in DATASETS {
        let (x, y) = (dataset(a, d), dataset(b, d));
        assert!(!x.is_empty(), "{d} written");
        if d == "inboxes" {
            // Snapshot times differ between runs by design; the rest must not.
            let strip = |m: std::collections::BTreeMap<
                String,
                Vec<serde_json::Map<String, Value>>,
            >|
             -> Vec<_> {
                m.into_values()
                    .flatten()
                    .map(|mut r| {
                        r.remove("snapshot_at");
                        r
                    })
                    .collect()
            };
            assert_eq!(strip(x), strip(y), "{d}");
        } else {
            assert!(x == y, "{d}: rows differ");
        }
    }
}

pub fn assert_no_temp_files(root: &Path) {
    let left: Vec<_> = files(root)
        .into_iter()
        .filter(|f| f.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
