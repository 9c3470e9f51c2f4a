//! Pipeline files (TOML): parsed, expanded (`${VAR}`) and validated without touching the network,
//! so `check --offline` and every command can refuse a bad file before anything is fetched.
//! Every error names the file, the line and the key or rule.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::storage::{Dir, Root, RootSpec, StorageError};

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// A credential: never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn d_true() -> bool {
    true
}
fn d_7() -> u32 {
    7
}
fn d_1() -> u32 {
    1
}
fn d_120() -> u32 {
    120
}
fn d_10() -> u32 {
    10
}
fn d_2() -> u32 {
    2
}
fn d_60() -> u64 {
    60
}
fn d_300() -> u64 {
    300
}
fn d_100() -> usize {
    100
}
fn d_15() -> u32 {
    15
}
fn d_output() -> Spanned<String> {
    Spanned::new(0..0, "output".to_string())
}
fn d_zstd() -> Spanned<String> {
    Spanned::new(0..0, "zstd".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: Spanned<String>,
    description: Option<String>,
    timezone: Option<Spanned<String>>,
    #[serde(default = "d_7")]
    initial_days: u32,
    #[serde(default)]
    intraday: bool,
    #[serde(default = "d_1")]
    settle_days: u32,
    #[serde(default = "d_120")]
    report_lag_minutes: u32,
    #[serde(default = "d_7")]
    lookback_days: u32,
    gladly: RawGladly,
    #[serde(default)]
    tasks: Vec<RawRule>,
    #[serde(default)]
    workstreams: Vec<RawRule>,
    output: Option<RawOutput>,
    wfm: Option<RawWfm>,
    schedule: Option<RawSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGladly {
    base_url: Spanned<String>,
    user: Spanned<String>,
    token: Spanned<String>,
    #[serde(default = "d_10")]
    requests_per_second: u32,
    #[serde(default = "d_10")]
    reports_per_minute: u32,
    #[serde(default = "d_2")]
    reports_in_flight: u32,
    #[serde(default = "d_60")]
    request_timeout_seconds: u64,
    #[serde(default = "d_300")]
    report_timeout_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    pattern: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default = "d_output")]
    root: Spanned<String>,
    #[serde(default = "d_zstd")]
    compression: Spanned<String>,
    /// Object-store roots only: how long the run lock's lease lasts without renewal.
    #[serde(default = "d_60")]
    lock_lease_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWfm {
    #[serde(default = "d_true")]
    enabled: bool,
    base_url: Spanned<String>,
    client_id: Spanned<String>,
    client_secret: Spanned<String>,
    integration_id: Spanned<String>,
    #[serde(default = "d_100")]
    batch_size: usize,
    #[serde(default = "d_15")]
    interval_minutes: u32,
    #[serde(default = "d_60")]
    request_timeout_seconds: u64,
    #[serde(default = "d_100u32")]
    requests_per_30s: u32,
}

fn d_100u32() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    cron: Spanned<String>,
}

/// A task or workstream rule: a name and its pattern, anchored to match whole labels.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub pattern: String,
    pub regex: Regex,
    /// Line in the pipeline file, for messages.
    pub line: usize,
}

#[derive(Clone, Debug)]
pub struct GladlyConfig {
    pub base_url: String,
    pub user: String,
    pub token: Secret,
    pub requests_per_second: u32,
    pub reports_per_minute: u32,
    pub reports_in_flight: u32,
    pub request_timeout_seconds: u64,
    pub report_timeout_seconds: u64,
}

#[derive(Clone, Debug)]
pub struct WfmConfig {
    pub enabled: bool,
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub integration_id: String,
    pub batch_size: usize,
    pub request_timeout_seconds: u64,
    /// The receiver's rate limit for this client (default 100 per 30 s).
    pub requests_per_30s: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Zstd,
    Snappy,
    None,
}

#[derive(Clone, Debug)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// `None`: take the Gladly organisation's timezone at run time.
    pub timezone: Option<Tz>,
    pub initial_days: u32,
    pub intraday: bool,
    pub settle_days: u32,
    pub report_lag_minutes: u32,
    pub lookback_days: u32,
    pub gladly: GladlyConfig,
    pub tasks: Vec<Rule>,
    pub workstreams: Vec<Rule>,
    /// A directory or an object store (`s3://bucket/prefix`).
    pub output_root: RootSpec,
    pub compression: Compression,
    /// The run lock's lease on an object-store root: a killed run's lock is taken over this
    /// long after its last renewal.
    pub lock_lease: std::time::Duration,
    pub wfm: Option<WfmConfig>,
    pub interval_minutes: u32,
    /// Six-field cron expression (seconds first), if `[schedule]` is present.
    pub schedule: Option<cron::Schedule>,
    pub schedule_expr: Option<String>,
}

struct Ctx<'a> {
    file: String,
    src: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.file.clone(),
            line: self.line(span.start),
            message: message.into(),
        })
    }

    /// Expands `${VAR}` from the environment; a missing variable is an error naming it.
    fn expand(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let s = v.get_ref();
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find('}') else {
                return self.err(v.span(), format!("{key}: unterminated `${{` in value"));
            };
            let var = &after[..j];
            match (self.env)(var) {
                Some(val) => out.push_str(&val),
                None => {
                    return self.err(
                        v.span(),
                        format!("{key}: environment variable {var} is not set"),
                    )
                }
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn url(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let url = self.expand(key, v)?.trim_end_matches('/').to_string();
        let Ok(parsed) = reqwest::Url::parse(&url) else {
            return self.err(v.span(), format!("{key}: `{url}` is not a URL"));
        };
        let loopback = match parsed.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return self.err(
                    v.span(),
                    format!(
                    "{key}: `{url}` must use https:// (plain http is allowed only for loopback)"
                ),
                )
            }
        }
        Ok(url)
    }

    fn rules(&self, kind: &str, raw: &[RawRule]) -> Result<Vec<Rule>, ConfigError> {
        raw.iter()
            .enumerate()
            .map(|(i, r)| {
                let name = r.name.get_ref().clone();
                let pattern = r.pattern.get_ref().clone();
                match Regex::new(&format!("^(?:{pattern})$")) {
                    Ok(regex) => Ok(Rule {
                        name,
                        pattern,
                        regex,
                        line: self.line(r.pattern.span().start),
                    }),
                    Err(e) => self.err(
                        r.pattern.span(),
                        format!(
                            "{kind}[{}] \"{name}\": invalid pattern `{pattern}`: {}",
                            i + 1,
                            e.to_string().lines().last().unwrap_or("")
                        ),
                    ),
                }
            })
            .collect()
    }
}

impl Pipeline {
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            message: format!("cannot read the pipeline file: {e}"),
        })?;
        Pipeline::parse(path, &src, &|v| std::env::var(v).ok())
    }

    pub fn parse(
        path: &Path,
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Pipeline, ConfigError> {
        let cx = Ctx {
            file: path.display().to_string(),
            src,
            env,
        };
        let raw: RawPipeline = match toml::from_str(src) {
            Ok(r) => r,
            Err(e) => {
                let line = e.span().map(|s| cx.line(s.start)).unwrap_or(0);
                return Err(ConfigError {
                    file: cx.file.clone(),
                    line,
                    message: e.message().trim().to_string(),
                });
            }
        };
        let name = raw.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return cx.err(
                raw.name.span(),
                format!("name: `{name}` must be letters, digits, `-` or `_` (it names folders)"),
            );
        }
        let timezone = match &raw.timezone {
            None => None,
            Some(tz) => match crate::time::parse_tz(tz.get_ref()) {
                Some(t) => Some(t),
                None => return cx.err(tz.span(), format!("timezone: unknown timezone `{}` (use an IANA name such as America/New_York)", tz.get_ref())),
            },
        };
        let g = &raw.gladly;
        let gladly = GladlyConfig {
            base_url: cx.url("gladly.base_url", &g.base_url)?,
            user: cx.expand("gladly.user", &g.user)?,
            token: Secret(cx.expand("gladly.token", &g.token)?),
            requests_per_second: g.requests_per_second.max(1),
            reports_per_minute: g.reports_per_minute.max(1),
            reports_in_flight: g.reports_in_flight.max(1),
            request_timeout_seconds: g.request_timeout_seconds.max(1),
            report_timeout_seconds: g.report_timeout_seconds.max(1),
        };
        let tasks = cx.rules("tasks", &raw.tasks)?;
        let workstreams = cx.rules("workstreams", &raw.workstreams)?;
        let mut lock_lease_seconds = 60;
        let (root, compression) = match &raw.output {
            None => (RootSpec::Local(PathBuf::from("output")), Compression::Zstd),
            Some(o) => {
                let c = match o.compression.get_ref().as_str() {
                    "zstd" => Compression::Zstd,
                    "snappy" => Compression::Snappy,
                    "none" | "uncompressed" => Compression::None,
                    other => {
                        return cx.err(
                            o.compression.span(),
                            format!(
                                "output.compression: `{other}` is not one of zstd, snappy, none"
                            ),
                        )
                    }
                };
                let root = match RootSpec::parse(&cx.expand("output.root", &o.root)?) {
                    Ok(r) => r,
                    Err(e) => return cx.err(o.root.span(), format!("output.root: {e}")),
                };
                lock_lease_seconds = o.lock_lease_seconds.max(2);
                (root, c)
            }
        };
        let mut interval_minutes = 15;
        let wfm = match &raw.wfm {
            None => None,
            Some(w) => {
                if w.batch_size == 0 || w.batch_size > 100 {
                    return cx.err(
                        w.integration_id.span(),
                        format!(
                            "wfm.batch_size: {} must be from 1 to 100 (the receiver's cap)",
                            w.batch_size
                        ),
                    );
                }
                if w.interval_minutes != 15 && w.interval_minutes != 30 {
                    return cx.err(
                        w.integration_id.span(),
                        format!(
                            "wfm.interval_minutes: {} must be 15 or 30",
                            w.interval_minutes
                        ),
                    );
                }
                interval_minutes = w.interval_minutes;
                Some(WfmConfig {
                    enabled: w.enabled,
                    base_url: cx.url("wfm.base_url", &w.base_url)?,
                    client_id: cx.expand("wfm.client_id", &w.client_id)?,
                    client_secret: Secret(cx.expand("wfm.client_secret", &w.client_secret)?),
                    integration_id: cx.expand("wfm.integration_id", &w.integration_id)?,
                    batch_size: w.batch_size,
                    request_timeout_seconds: w.request_timeout_seconds.max(1),
                    requests_per_30s: w.requests_per_30s.max(1),
                })
            }
        };
        let (schedule, schedule_expr) = match &raw.schedule {
            None => (None, None),
            Some(s) => {
                let expr = s.cron.get_ref().trim().to_string();
                let fields = expr.split_whitespace().count();
                let six = match fields {
                    5 => format!("0 {expr}"),
                    6 => expr.clone(),
                    _ => return cx.err(s.cron.span(), format!("schedule.cron: `{expr}` must have five fields (crontab) or six (seconds first)")),
                };
                match six.parse::<cron::Schedule>() {
                    Ok(sch) => (Some(sch), Some(expr)),
                    Err(e) => {
                        return cx.err(s.cron.span(), format!("schedule.cron: `{expr}`: {e}"))
                    }
                }
            }
        };
        Ok(Pipeline {
            file: path.to_path_buf(),
            name,
            description: raw.description,
            timezone,
            initial_days: raw.initial_days.max(1),
            intraday: raw.intraday,
            settle_days: raw.settle_days,
            report_lag_minutes: raw.report_lag_minutes,
            lookback_days: raw.lookback_days,
            gladly,
            tasks,
            workstreams,
            output_root: root,
            compression,
            lock_lease: std::time::Duration::from_secs(lock_lease_seconds),
            wfm,
            interval_minutes,
            schedule,
            schedule_expr,
        })
    }

    /// The pipeline's secrets, so logs and manifests can be checked against them.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![self.gladly.token.expose().to_string()];
        if let Some(w) = &self.wfm {
            s.push(w.client_secret.expose().to_string());
        }
        s.retain(|x| !x.is_empty());
        s
    }

    /// The timezone the schedule fires in: the pipeline's, else the Gladly organisation's as
    /// remembered by an earlier run, else UTC.
    pub fn schedule_timezone(&self) -> Tz {
        self.timezone
            .or_else(|| {
                crate::state::PipelineState::load(&self.state_dir().ok()?)
                    .ok()?
                    .org_timezone?
                    .parse()
                    .ok()
            })
            .unwrap_or(chrono_tz::UTC)
    }

    /// Opens the output root (for an object store: configures its client; no request yet).
    pub fn root(&self) -> Result<Root, StorageError> {
        Root::open(&self.output_root)
    }

    /// `_state/<pipeline>`: state, pending work and the run lock.
    pub fn state_rel(&self) -> String {
        format!("_state/{}", self.name)
    }

    /// `_runs/<pipeline>`: one manifest per run.
    pub fn runs_rel(&self) -> String {
        format!("_runs/{}", self.name)
    }

    /// The state folder, on a freshly opened root. A run opens one and keeps it, so that its
    /// state writes are conditional on what it read.
    pub fn state_dir(&self) -> Result<Dir, StorageError> {
        Ok(self.root()?.dir(&self.state_rel()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
timezone = "America/New_York"

[gladly]
base_url = "http://127.0.0.1:9"
user = "u@example.com"
token = "${TOKEN}"

[[tasks]]
name = "In"
pattern = "LOGGED_IN"
"#;

    fn env(v: &str) -> Option<String> {
        (v == "TOKEN").then(|| "secret-value".to_string())
    }

    fn parse(src: &str) -> Result<Pipeline, ConfigError> {
        Pipeline::parse(Path::new("p.toml"), src, &env)
    }

    #[test]
    fn parses_and_expands() {
        let p = parse(BASE).unwrap();
        assert_eq!(p.gladly.token.expose(), "secret-value");
        assert!(!format!("{p:?}").contains("secret-value"));
        assert!(p.tasks[0].regex.is_match("LOGGED_IN"));
        assert!(!p.tasks[0].regex.is_match("LOGGED_IN_X"));
        assert_eq!(p.tasks[0].line, 12);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse(&BASE.replace("timezone =", "timezon =")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().contains("timezon"), "{e}");
    }

    #[test]
    fn missing_variable_and_bad_regex_and_plain_http() {
        let e = parse(&BASE.replace("${TOKEN}", "${NOPE}")).unwrap_err();
        assert!(e.to_string().contains("NOPE") && e.line == 8, "{e}");
        let e = parse(&BASE.replace("\"LOGGED_IN\"", "\"LOGGED_(IN\"")).unwrap_err();
        assert!(
            e.to_string().contains("tasks[1] \"In\"") && e.line == 12,
            "{e}"
        );
        let e = parse(&BASE.replace("http://127.0.0.1:9", "http://acme.gladly.com")).unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let e = parse(&BASE.replace("America/New_York", "Mars/Olympus")).unwrap_err();
        assert!(e.to_string().contains("Mars/Olympus") && e.line == 3, "{e}");
    }
}
