//! Pipeline files (TOML): parsed, expanded (`${VAR}`) and validated without touching the network,
//! so `check --offline` and every command can refuse a bad file before anything is fetched.
//! Every error names the file, the line and the key or rule.

use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::pattern::Matcher;
use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::frames::Compression;
use crate::storage::{Dir, Root, RootSpec, StorageError};

/// A problem with a pipeline file. `line` 0 means the problem is not on a line (the file cannot
/// be read, is too large); the message then names the file itself.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        if self.line == 0 {
            self.message.clone()
        } else {
            format!("{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A section of the pipeline file whose `${VAR}`s only some commands need: `status`, `report`
/// and `check --offline` never call Gladly or the WFM, so their credentials may be unset
/// (DESIGN §3). An unset variable there is kept as an error for the command that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Gladly,
    Wfm,
    Webhook,
}

/// Pipeline files are a few kilobytes; these bounds keep a runaway (generated) file from
/// taking minutes or gigabytes before it is refused, with room for one rule per inbox of
/// the largest organisations.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
pub const MAX_RULES: usize = 50_000;
/// The longest folder name common filesystems allow (`name` names folders).
pub const MAX_NAME_BYTES: usize = 255;
/// How much of a pattern or a regex error a message quotes.
const QUOTE_CHARS: usize = 80;

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
fn d_256() -> u64 {
    256
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
    #[serde(default = "d_400")]
    max_range_days: Spanned<u32>,
    gladly: RawGladly,
    #[serde(default)]
    tasks: Vec<RawRule>,
    #[serde(default)]
    workstreams: Vec<RawRule>,
    output: Option<RawOutput>,
    wfm: Option<RawWfm>,
    schedule: Option<RawSchedule>,
    follow: Option<RawFollow>,
    service: Option<RawService>,
    webhook: Option<RawWebhook>,
    audit: Option<RawAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    #[serde(default = "d_true")]
    enabled: bool,
    #[serde(default = "d_60f")]
    tolerance_seconds: Spanned<f64>,
    #[serde(default = "d_half")]
    tolerance_percent: Spanned<f64>,
}

fn d_60f() -> Spanned<f64> {
    Spanned::new(0..0, 60.0)
}

fn d_half() -> Spanned<f64> {
    Spanned::new(0..0, 0.5)
}

/// `[audit]`: `run` compares each complete day with Gladly's `AgentSummaryV2` (DESIGN §14).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Both are non-negative and finite (checked when parsed).
    pub tolerance_seconds: f64,
    pub tolerance_percent: f64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            tolerance_seconds: 60.0,
            tolerance_percent: 0.5,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    listen: Spanned<String>,
}

/// `[service]`: `follow` and `schedule` serve /healthz, /readyz and /metrics (DESIGN §13).
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    /// Where to listen; port 0 takes a free one (the log line says which).
    pub listen: std::net::SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: Spanned<String>,
    public_url: Spanned<String>,
    user: Spanned<String>,
    password: Spanned<String>,
    #[serde(default = "d_true")]
    manage: bool,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
}

/// `[webhook]` (DESIGN §4, §12): where `follow`'s receiver listens, what Gladly posts to, the
/// Basic credentials Gladly sends, and whether `follow` manages the webhook in Gladly.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: std::net::SocketAddr,
    /// https:// (http:// only on loopback); `""` when its variable is unset (see `require`).
    pub public_url: String,
    /// `public_url`'s path: the receiver serves POST there and nowhere else.
    pub path: String,
    pub user: String,
    pub password: Secret,
    pub manage: bool,
    /// (certificate chain, private key), PEM: the receiver serves HTTPS itself.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFollow {
    #[serde(default = "d_30u64")]
    poll_seconds: Spanned<u64>,
    #[serde(default = "d_10u64")]
    work_sessions_minutes: Spanned<u64>,
    #[serde(default = "d_60u64")]
    dimensions_minutes: Spanned<u64>,
}

fn d_400() -> Spanned<u32> {
    Spanned::new(0..0, 400)
}

fn d_60u64() -> Spanned<u64> {
    Spanned::new(0..0, 60)
}

fn d_30u64() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}

fn d_10u64() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

/// `[follow]`: only `gladly-wfm follow` reads it (DESIGN §12).
#[derive(Clone, Debug, PartialEq)]
pub struct FollowConfig {
    pub poll_seconds: u64,
    pub work_sessions_minutes: u64,
    pub dimensions_minutes: u64,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            poll_seconds: 30,
            work_sessions_minutes: 10,
            dimensions_minutes: 60,
        }
    }
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
    /// The largest JSON Lines or CSV answer accepted, in MiB (bodies are spooled to disk).
    #[serde(default = "d_256")]
    max_answer_mib: u64,
    /// How long one day's extraction may take, all streams and retries together (minutes;
    /// a fraction is allowed).
    #[serde(default)]
    day_timeout_minutes: Option<Spanned<f64>>,
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

/// A task or workstream rule: a name and its pattern, matching whole labels (DESIGN §5).
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub pattern: String,
    pub matcher: Matcher,
    /// Line in the pipeline file, for messages.
    pub line: usize,
}

impl Rule {
    /// A rule from its pattern; the error says why the pattern is not one.
    pub fn new(
        name: &str,
        pattern: &str,
        line: usize,
    ) -> Result<Rule, crate::pattern::PatternError> {
        Ok(Rule {
            name: name.to_string(),
            pattern: pattern.to_string(),
            matcher: Matcher::new(pattern)?,
            line,
        })
    }

    /// Whether the pattern matches the whole of `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.matcher.is_match(text)
    }
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
    pub max_answer_mib: u64,
    pub day_timeout_minutes: f64,
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
    /// The longest `--from`/`--to` range a run accepts (`max_range_days`).
    pub max_range_days: u32,
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
    pub follow: FollowConfig,
    /// `[service] listen`; `None`: no endpoint.
    pub service: Option<ServiceConfig>,
    /// `[webhook]`: `follow` takes Gladly's webhook (DESIGN §12).
    pub webhook: Option<WebhookConfig>,
    /// `[audit]`, its defaults when absent.
    pub audit: AuditConfig,
    /// `${VAR}`s of [gladly] and [wfm] that were unset: see `require`.
    unresolved: Vec<(Section, ConfigError)>,
}

fn too_large(file: &str, len: usize) -> String {
    format!(
        "{file} is {len} bytes, more than the {MAX_FILE_BYTES} a pipeline file may have (is it the right file?)"
    )
}

/// TOML errors quote the offending text; a value of megabytes is cut.
fn quote_long(s: &str) -> String {
    if s.len() <= 400 {
        s.to_string()
    } else {
        let head: String = s.chars().take(400).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

struct Ctx<'a> {
    file: String,
    src: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Byte offset of each line's start: line numbers by binary search, so a file with tens of
    /// thousands of rules loads in linear time (counting newlines per rule was quadratic).
    line_starts: Vec<usize>,
    /// Unset variables of sections that not every command needs.
    unresolved: std::cell::RefCell<Vec<(Section, ConfigError)>>,
}

/// `${VAR}` expansion failed: a variable is unset (lazy in some sections), or the text is bad.
enum ExpandError {
    Unset(ConfigError),
    Bad(ConfigError),
}

impl From<ExpandError> for ConfigError {
    fn from(e: ExpandError) -> ConfigError {
        match e {
            ExpandError::Unset(e) | ExpandError::Bad(e) => e,
        }
    }
}

/// At most `QUOTE_CHARS` characters of `s`, marked when cut.
fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_CHARS {
        s.to_string()
    } else {
        let head: String = s.chars().take(QUOTE_CHARS).collect();
        format!("{head}… ({} bytes)", s.len())
    }
}

/// Why a text is not an output root.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("must not be empty (a directory, relative to the working directory, or a URL)")]
    Empty,
    #[error("{0:?} contains a newline or another control character")]
    Control(String),
}

/// Output paths are printed in logs and summaries one per line, and a newline or another
/// control character in one is almost always a pasting accident: refused, as is an empty one.
pub fn validate_root(root: &str) -> Result<(), RootError> {
    if root.trim().is_empty() {
        return Err(RootError::Empty);
    }
    if root.chars().any(char::is_control) {
        return Err(RootError::Control(root.to_string()));
    }
    Ok(())
}

impl Ctx<'_> {
    fn new<'a>(file: String, src: &'a str, env: &'a dyn Fn(&str) -> Option<String>) -> Ctx<'a> {
        let line_starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Ctx {
            file,
            src,
            env,
            line_starts,
            unresolved: Default::default(),
        }
    }

    fn line(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= offset.min(self.src.len()))
    }

    /// The key a TOML error's span points into, as `table.key` or `tasks[3].key`, or the table
    /// itself when the span is its header (a missing field). `None` when the span's line
    /// shows no key (the message then says enough).
    fn key_at(&self, offset: usize) -> Option<String> {
        let line_no = self.line(offset);
        let start = self.line_starts[line_no - 1];
        let end = self.src[start..]
            .find('\n')
            .map_or(self.src.len(), |i| start + i);
        let text = &self.src[start..end];
        let header = |t: &str| -> Option<(String, bool)> {
            let t = t.trim();
            if let Some(inner) = t.strip_prefix("[[") {
                Some((inner.split("]]").next()?.trim().to_string(), true))
            } else {
                let inner = t.strip_prefix('[')?;
                Some((inner.split(']').next()?.trim().to_string(), false))
            }
        };
        // The table the line is in: the nearest header above (or on) it, numbered for arrays.
        let mut table: Option<String> = None;
        for l in (0..line_no).rev() {
            let s = self.line_starts[l];
            let e = self.src[s..].find('\n').map_or(self.src.len(), |i| s + i);
            if let Some((name, array)) = header(&self.src[s..e]) {
                table = Some(if array {
                    let n = self.src[..e]
                        .lines()
                        .filter(|x| header(x) == Some((name.clone(), true)))
                        .count();
                    format!("{name}[{n}]")
                } else {
                    name
                });
                break;
            }
        }
        let eq = text.find('=').map(|i| start + i);
        match eq {
            Some(eq) if eq < offset => {
                let key = text[..eq - start].trim().to_string();
                Some(match table {
                    Some(t) => format!("{t}.{key}"),
                    None => key,
                })
            }
            _ if header(text).is_some() => table,
            _ => None,
        }
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Result<T, ConfigError> {
        Err(self.error(span, message))
    }

    fn error(&self, span: std::ops::Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line(span.start),
            message: message.into(),
        }
    }

    /// Expands `${VAR}` from the environment; a missing variable is an error naming it.
    fn expand(&self, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        Ok(self.expand_raw(key, v)?)
    }

    /// Expands a value of `section`: an unset variable is recorded for the commands that need
    /// the section and gives `None`; bad text is an error at once.
    fn expand_in(
        &self,
        section: Section,
        key: &str,
        v: &Spanned<String>,
    ) -> Result<Option<String>, ConfigError> {
        match self.expand_raw(key, v) {
            Ok(s) => Ok(Some(s)),
            Err(ExpandError::Unset(e)) => {
                self.unresolved.borrow_mut().push((section, e));
                Ok(None)
            }
            Err(ExpandError::Bad(e)) => Err(e),
        }
    }

    fn expand_raw(&self, key: &str, v: &Spanned<String>) -> Result<String, ExpandError> {
        let s = v.get_ref();
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find('}') else {
                return Err(ExpandError::Bad(
                    self.error(v.span(), format!("{key}: unterminated `${{` in value")),
                ));
            };
            let var = &after[..j];
            match (self.env)(var) {
                Some(val) => out.push_str(&val),
                None => {
                    return Err(ExpandError::Unset(self.error(
                        v.span(),
                        format!("{key}: environment variable {var} is not set"),
                    )))
                }
            }
            rest = &after[j + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A base URL of `section` (lazy like its credentials: `""` when its variable is unset).
    fn url(&self, section: Section, key: &str, v: &Spanned<String>) -> Result<String, ConfigError> {
        let Some(url) = self.expand_in(section, key, v)? else {
            return Ok(String::new());
        };
        let url = url.trim_end_matches('/').to_string();
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
                let (name, pattern) = (r.name.get_ref(), r.pattern.get_ref());
                let line = self.line(r.pattern.span().start);
                Rule::new(name, pattern, line).map_err(|detail| {
                    self.error(
                        r.pattern.span(),
                        format!(
                            "{kind}[{}] \"{}\": invalid pattern `{}`: {}",
                            i + 1,
                            quote(name),
                            quote(pattern),
                            quote(&detail.to_string())
                        ),
                    )
                })
            })
            .collect()
    }
}

impl Ctx<'_> {
    /// `[follow]`, its defaults when absent.
    fn follow(&self, raw: Option<&RawFollow>) -> Result<FollowConfig, ConfigError> {
        let Some(f) = raw else {
            return Ok(FollowConfig::default());
        };
        let poll = *f.poll_seconds.get_ref();
        if !(15..=300).contains(&poll) {
            return self.err(
                f.poll_seconds.span(),
                format!("follow.poll_seconds: {poll} is outside 15..300"),
            );
        }
        for (key, v) in [
            ("work_sessions_minutes", &f.work_sessions_minutes),
            ("dimensions_minutes", &f.dimensions_minutes),
        ] {
            let n = *v.get_ref();
            if !(1..=1440).contains(&n) {
                return self.err(v.span(), format!("follow.{key}: {n} is outside 1..1440"));
            }
        }
        Ok(FollowConfig {
            poll_seconds: poll,
            work_sessions_minutes: *f.work_sessions_minutes.get_ref(),
            dimensions_minutes: *f.dimensions_minutes.get_ref(),
        })
    }

    /// An address to listen on (`key` names it in the message).
    fn listen(&self, key: &str, v: &Spanned<String>) -> Result<std::net::SocketAddr, ConfigError> {
        let listen = self.expand(key, v)?;
        listen.trim().parse::<std::net::SocketAddr>().or_else(|_| {
            self.err(
                v.span(),
                format!(
                    "{key}: `{}` is not an address to listen on (an IP address and a port: 127.0.0.1:9464, or 0.0.0.0:9464 in a container)",
                    quote(&listen)
                ),
            )
        })
    }

    /// `[service]`; `None` when absent.
    fn service(&self, raw: Option<&RawService>) -> Result<Option<ServiceConfig>, ConfigError> {
        raw.map(|s| {
            Ok(ServiceConfig {
                listen: self.listen("service.listen", &s.listen)?,
            })
        })
        .transpose()
    }

    /// `[webhook]`; `None` when absent. Its credentials are needed by `follow` alone
    /// (`Section::Webhook`).
    fn webhook(&self, raw: Option<&RawWebhook>) -> Result<Option<WebhookConfig>, ConfigError> {
        let Some(w) = raw else {
            return Ok(None);
        };
        let listen = self.listen("webhook.listen", &w.listen)?;
        let public_url = self.url(Section::Webhook, "webhook.public_url", &w.public_url)?;
        let path = match reqwest::Url::parse(&public_url) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                return self.err(
                    w.public_url.span(),
                    "webhook.public_url: must not carry credentials (they go in user and password)"
                        .to_string(),
                )
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                return self.err(
                    w.public_url.span(),
                    "webhook.public_url: must be a plain path, without `?` or `#`".to_string(),
                )
            }
            // The receiver routes this path literally: no `:`/`*` segments, no braces.
            Ok(u) if u.path().split('/').any(|seg| {
                seg.starts_with(':') || seg.starts_with('*') || seg.contains(['{', '}'])
            }) =>
            {
                return self.err(
                    w.public_url.span(),
                    format!(
                        "webhook.public_url: the path `{}` has a segment starting with `:` or `*`, or a brace",
                        u.path()
                    ),
                )
            }
            Ok(u) => u.path().to_string(),
            // Unset: `follow` refuses to start (require), other commands do not need it.
            Err(_) => String::new(),
        };
        // Unset variables are `""` (recorded for `follow`: `require`); set but empty is a mistake.
        let credential =
            |key: &str, v: &Spanned<String>| match self.expand_in(Section::Webhook, key, v)? {
                Some(s) if s.is_empty() => self.err(
                    v.span(),
                    format!("{key}: must not be empty (Gladly sends it with every delivery)"),
                ),
                value => Ok(value.unwrap_or_default()),
            };
        let user = credential("webhook.user", &w.user)?;
        let password = credential("webhook.password", &w.password)?;
        if user.contains(':') {
            return self.err(
                w.user.span(),
                "webhook.user: must not contain `:` (Basic credentials)".to_string(),
            );
        }
        let file =
            |key: &str, v: &Option<Spanned<String>>| -> Result<Option<PathBuf>, ConfigError> {
                v.as_ref()
                    .map(|v| self.expand(key, v).map(PathBuf::from))
                    .transpose()
            };
        let (tls_cert, tls_key) = (
            file("webhook.tls_cert", &w.tls_cert)?,
            file("webhook.tls_key", &w.tls_key)?,
        );
        if tls_cert.is_some() != tls_key.is_some() {
            let at = w.tls_cert.as_ref().or(w.tls_key.as_ref()).unwrap();
            return self.err(at.span(), "webhook: tls_cert and tls_key go together (both PEM files, or neither behind a proxy that terminates TLS)".to_string());
        }
        Ok(Some(WebhookConfig {
            listen,
            public_url,
            path,
            user,
            password: Secret(password),
            manage: w.manage,
            tls: tls_cert.zip(tls_key),
        }))
    }

    /// `[audit]`, its defaults when absent.
    fn audit(&self, raw: Option<&RawAudit>) -> Result<AuditConfig, ConfigError> {
        let Some(a) = raw else {
            return Ok(AuditConfig::default());
        };
        for (key, v) in [
            ("tolerance_seconds", &a.tolerance_seconds),
            ("tolerance_percent", &a.tolerance_percent),
        ] {
            let n = *v.get_ref();
            if !(n.is_finite() && n >= 0.0) {
                return self.err(
                    v.span(),
                    format!("audit.{key}: {n} must be a number of at least 0"),
                );
            }
        }
        Ok(AuditConfig {
            enabled: a.enabled,
            tolerance_seconds: *a.tolerance_seconds.get_ref(),
            tolerance_percent: *a.tolerance_percent.get_ref(),
        })
    }
}

/// The parts of `Pipeline::parse`, in the order it checks them (the first error is the one said).
impl Ctx<'_> {
    /// The file as TOML, within `MAX_FILE_BYTES`; an error names the key it points into.
    fn raw(&self) -> Result<RawPipeline, ConfigError> {
        if self.src.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigError {
                file: self.file.clone(),
                line: 0,
                message: too_large(&self.file, self.src.len()),
            });
        }
        toml::from_str(self.src).map_err(|e| {
            let message = quote_long(e.message().trim());
            match e.span() {
                Some(s) => ConfigError {
                    file: self.file.clone(),
                    line: self.line(s.start),
                    // `invalid type: string "ten", expected u32` names no key: add it.
                    message: match self.key_at(s.start) {
                        Some(key) if !message.contains(&format!("`{key}`")) => {
                            format!("{key}: {message}")
                        }
                        _ => message,
                    },
                },
                None => ConfigError {
                    file: self.file.clone(),
                    line: 0,
                    message: format!("{}: {message}", self.file),
                },
            }
        })
    }

    /// At most `MAX_RULES` task rules and as many workstream rules.
    fn rule_counts(&self, raw: &RawPipeline) -> Result<(), ConfigError> {
        for (kind, n, at) in [
            ("tasks", raw.tasks.len(), raw.tasks.get(MAX_RULES)),
            (
                "workstreams",
                raw.workstreams.len(),
                raw.workstreams.get(MAX_RULES),
            ),
        ] {
            if let Some(r) = at {
                return self.err(
                    r.name.span(),
                    format!(
                        "{kind}: {n} rules are more than the {MAX_RULES} a pipeline file may have"
                    ),
                );
            }
        }
        Ok(())
    }

    /// `name`: it names folders.
    fn name(&self, raw: &Spanned<String>) -> Result<String, ConfigError> {
        let name = raw.get_ref().clone();
        if name.len() > MAX_NAME_BYTES {
            return self.err(
                raw.span(),
                format!(
                    "name: {} characters are more than the {MAX_NAME_BYTES} a folder name may have (it names the state and manifest folders)",
                    name.len()
                ),
            );
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return self.err(
                raw.span(),
                format!("name: `{name}` must be letters, digits, `-` or `_` (it names folders)"),
            );
        }
        Ok(name)
    }

    /// `timezone`, an IANA name; `None` when absent.
    fn timezone(&self, raw: Option<&Spanned<String>>) -> Result<Option<Tz>, ConfigError> {
        match raw {
            None => Ok(None),
            Some(tz) => match crate::time::parse_tz(tz.get_ref()) {
                Some(t) => Ok(Some(t)),
                None => self.err(tz.span(), format!("timezone: unknown timezone `{}` (use an IANA name such as America/New_York)", tz.get_ref())),
            },
        }
    }

    /// A value of `section` whose variable may be unset (`""` then, recorded for `require`).
    fn lazy(
        &self,
        section: Section,
        key: &str,
        v: &Spanned<String>,
    ) -> Result<String, ConfigError> {
        Ok(self.expand_in(section, key, v)?.unwrap_or_default())
    }

    /// `[gladly]`.
    fn gladly(&self, g: &RawGladly) -> Result<GladlyConfig, ConfigError> {
        Ok(GladlyConfig {
            base_url: self.url(Section::Gladly, "gladly.base_url", &g.base_url)?,
            user: self.lazy(Section::Gladly, "gladly.user", &g.user)?,
            token: Secret(self.lazy(Section::Gladly, "gladly.token", &g.token)?),
            requests_per_second: g.requests_per_second.max(1),
            reports_per_minute: g.reports_per_minute.max(1),
            reports_in_flight: g.reports_in_flight.max(1),
            request_timeout_seconds: g.request_timeout_seconds.max(1),
            report_timeout_seconds: g.report_timeout_seconds.max(1),
            max_answer_mib: g.max_answer_mib.max(1),
            day_timeout_minutes: match &g.day_timeout_minutes {
                None => 30.0,
                Some(m) if m.get_ref().is_finite() && *m.get_ref() > 0.0 => *m.get_ref(),
                Some(m) => {
                    return self.err(
                        m.span(),
                        format!(
                            "gladly.day_timeout_minutes: `{}` is not a positive number of minutes",
                            m.get_ref()
                        ),
                    )
                }
            },
        })
    }

    /// `[output]`: (root, compression, the lock's lease in seconds), its defaults when absent.
    fn output(&self, raw: Option<&RawOutput>) -> Result<(RootSpec, Compression, u64), ConfigError> {
        let Some(o) = raw else {
            return Ok((
                RootSpec::Local(PathBuf::from("output")),
                Compression::Zstd,
                60,
            ));
        };
        let c = match o.compression.get_ref().as_str() {
            "zstd" => Compression::Zstd,
            "snappy" => Compression::Snappy,
            "none" | "uncompressed" => Compression::None,
            other => {
                return self.err(
                    o.compression.span(),
                    format!("output.compression: `{other}` is not one of zstd, snappy, none"),
                )
            }
        };
        let root = self.expand("output.root", &o.root)?;
        if let Err(e) = validate_root(&root) {
            return self.err(o.root.span(), format!("output.root: {e}"));
        }
        let root = match RootSpec::parse(&root) {
            Ok(r) => r,
            Err(e) => return self.err(o.root.span(), format!("output.root: {e}")),
        };
        Ok((root, c, o.lock_lease_seconds.max(2)))
    }

    /// `[wfm]` (`None` when absent), and the interval length (15 without it).
    fn wfm(&self, raw: Option<&RawWfm>) -> Result<(Option<WfmConfig>, u32), ConfigError> {
        let Some(w) = raw else {
            return Ok((None, 15));
        };
        if w.batch_size == 0 || w.batch_size > 100 {
            return self.err(
                w.integration_id.span(),
                format!(
                    "wfm.batch_size: {} must be from 1 to 100 (the receiver's cap)",
                    w.batch_size
                ),
            );
        }
        if w.interval_minutes != 15 && w.interval_minutes != 30 {
            return self.err(
                w.integration_id.span(),
                format!(
                    "wfm.interval_minutes: {} must be 15 or 30",
                    w.interval_minutes
                ),
            );
        }
        let wfm = WfmConfig {
            enabled: w.enabled,
            base_url: self.url(Section::Wfm, "wfm.base_url", &w.base_url)?,
            client_id: self.lazy(Section::Wfm, "wfm.client_id", &w.client_id)?,
            client_secret: Secret(self.lazy(
                Section::Wfm,
                "wfm.client_secret",
                &w.client_secret,
            )?),
            integration_id: self.lazy(Section::Wfm, "wfm.integration_id", &w.integration_id)?,
            batch_size: w.batch_size,
            request_timeout_seconds: w.request_timeout_seconds.max(1),
            requests_per_30s: w.requests_per_30s.max(1),
        };
        Ok((Some(wfm), w.interval_minutes))
    }

    /// `[schedule] cron`: (the schedule, the expression as written); both `None` when absent.
    fn schedule(
        &self,
        raw: Option<&RawSchedule>,
    ) -> Result<(Option<cron::Schedule>, Option<String>), ConfigError> {
        let Some(s) = raw else {
            return Ok((None, None));
        };
        let expr = s.cron.get_ref().trim().to_string();
        let fields = expr.split_whitespace().count();
        let six = match fields {
            5 => format!("0 {expr}"),
            6 => expr.clone(),
            _ => return self.err(s.cron.span(), format!("schedule.cron: `{expr}` must have five fields (crontab) or six (seconds first)")),
        };
        match six.parse::<cron::Schedule>() {
            Ok(sch) => Ok((Some(sch), Some(expr))),
            Err(e) => self.err(s.cron.span(), format!("schedule.cron: `{expr}`: {e}")),
        }
    }
}

impl Pipeline {
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let file = path.display().to_string();
        let fail = |message: String| ConfigError {
            file: file.clone(),
            line: 0,
            message,
        };
        if path.to_string_lossy().chars().any(char::is_control) {
            return Err(fail(format!(
                "the pipeline file name {file:?} contains a newline or another control character"
            )));
        }
        let len = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read {file}: {e}")))?
            .len();
        if len > MAX_FILE_BYTES {
            return Err(fail(too_large(&file, len as usize)));
        }
        let src =
            std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {file}: {e}")))?;
        Pipeline::parse(path, &src, &|v| std::env::var(v).ok())
    }

    pub fn parse(
        path: &Path,
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Pipeline, ConfigError> {
        let cx = Ctx::new(path.display().to_string(), src, env);
        let raw = cx.raw()?;
        cx.rule_counts(&raw)?;
        let name = cx.name(&raw.name)?;
        let timezone = cx.timezone(raw.timezone.as_ref())?;
        let gladly = cx.gladly(&raw.gladly)?;
        let tasks = cx.rules("tasks", &raw.tasks)?;
        let workstreams = cx.rules("workstreams", &raw.workstreams)?;
        let (root, compression, lock_lease_seconds) = cx.output(raw.output.as_ref())?;
        let (wfm, interval_minutes) = cx.wfm(raw.wfm.as_ref())?;
        let (schedule, schedule_expr) = cx.schedule(raw.schedule.as_ref())?;
        let follow = cx.follow(raw.follow.as_ref())?;
        let service = cx.service(raw.service.as_ref())?;
        let webhook = cx.webhook(raw.webhook.as_ref())?;
        let audit = cx.audit(raw.audit.as_ref())?;
        let max_range_days = *raw.max_range_days.get_ref();
        if max_range_days == 0 {
            return cx.err(
                raw.max_range_days.span(),
                "max_range_days: must be at least 1".to_string(),
            );
        }
        Ok(Pipeline {
            file: path.to_path_buf(),
            max_range_days,
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
            follow,
            service,
            webhook,
            audit,
            unresolved: cx.unresolved.take(),
        })
    }

    /// Fails, naming the variable, file and line, when a `${VAR}` of `section` was unset: for
    /// the commands that talk to Gladly (`Section::Gladly`) or push to the WFM (`Section::Wfm`).
    pub fn require(&self, section: Section) -> Result<(), ConfigError> {
        match self.unresolved.iter().find(|(s, _)| *s == section) {
            Some((_, e)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// `require` for what a run with these stages calls: Gladly to extract, the WFM to push.
    pub fn require_for_run(&self, extract: bool, push: bool) -> Result<(), ConfigError> {
        if extract {
            self.require(Section::Gladly)?;
        }
        if push && self.wfm.as_ref().is_some_and(|w| w.enabled) {
            self.require(Section::Wfm)?;
        }
        Ok(())
    }

    /// The pipeline's secrets, so logs and manifests can be checked against them.
    pub fn secrets(&self) -> Vec<String> {
        let mut s = vec![self.gladly.token.expose().to_string()];
        if let Some(w) = &self.wfm {
            s.push(w.client_secret.expose().to_string());
        }
        if let Some(w) = &self.webhook {
            s.push(w.password.expose().to_string());
        }
        s.retain(|x| !x.is_empty());
        s
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
        assert!(p.tasks[0].is_match("LOGGED_IN"));
        assert!(!p.tasks[0].is_match("LOGGED_IN_X"));
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
        // An unset credential is an error only for the commands that call Gladly.
        let p = parse(&BASE.replace("${TOKEN}", "${NOPE}")).unwrap();
        let e = p.require(Section::Gladly).unwrap_err();
        assert!(e.to_string().contains("NOPE") && e.line == 8, "{e}");
        assert!(p.require(Section::Wfm).is_ok());
        let e = parse(&BASE.replace("${TOKEN}", "${NOPE")).unwrap_err();
        assert!(e.to_string().contains("unterminated"), "{e}");
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

    #[test]
    fn audit_defaults_and_refuses_negative_tolerances_with_file_and_line() {
        assert_eq!(parse(BASE).unwrap().audit, AuditConfig::default());
        let p = parse(&format!(
            "{BASE}\n[audit]\nenabled = false\ntolerance_seconds = 30\n"
        ))
        .unwrap();
        assert!(!p.audit.enabled);
        assert_eq!(p.audit.tolerance_seconds, 30.0);
        assert_eq!(p.audit.tolerance_percent, 0.5);
        let e = parse(&format!("{BASE}\n[audit]\ntolerance_percent = -1.0\n")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.toml:15: audit.tolerance_percent: -1"),
            "{e}"
        );
        let e = parse(&format!("{BASE}\n[audit]\ntolerance = 1.0\n")).unwrap_err();
        assert!(e.to_string().contains("tolerance"), "{e}");
    }

    #[test]
    fn service_listen_is_an_address_and_errors_name_file_and_line() {
        assert_eq!(parse(BASE).unwrap().service, None);
        let p = parse(&format!("{BASE}\n[service]\nlisten = \"0.0.0.0:9464\"\n")).unwrap();
        assert_eq!(p.service.unwrap().listen.to_string(), "0.0.0.0:9464");
        let e = parse(&format!("{BASE}\n[service]\nlisten = \"localhost\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.toml:15: service.listen: `localhost`"),
            "{e}"
        );
        let e = parse(&format!("{BASE}\n[service]\nlisen = \"127.0.0.1:1\"\n")).unwrap_err();
        assert!(e.line == 15 && e.to_string().contains("lisen"), "{e}");
    }
}
