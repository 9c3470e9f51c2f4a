//! Log lines for operators, on `tracing`: every line is an event, formatted here as plain text
//! (or one JSON object with `--log-format json`: `timestamp`, `level`, `message`, then the
//! fields of the event and of the spans it happened in as keys of their own: `pipeline`,
//! `run_id`, `day`, `stage`, …), and written on stderr by `write_line`, which redacts every
//! known secret as a last line of defence, whoever wrote the line.
//!
//! `info`/`warn`/`error`/`debug` keep their signatures: callers log a message; the spans come
//! from scopes (`scope_run`, `scope_day`) that a run, a day and a poll open. A scope belongs
//! to the task that opened it (or the thread, outside a task), so a line logged by one task is
//! never attributed to another's day across an `.await`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicI8, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    secrets: Vec<String>,
}

static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();
/// `Format` as 0 (text) or 1 (JSON).
static FORMAT: AtomicU8 = AtomicU8::new(0);
/// -2 errors only, -1 warnings too, 0 info too, 1 debug too.
static VERBOSITY: AtomicI8 = AtomicI8::new(0);

fn logger() -> &'static Mutex<Logger> {
    LOGGER.get_or_init(|| {
        Mutex::new(Logger {
            secrets: Vec::new(),
        })
    })
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 {
        Format::Json
    } else {
        Format::Text
    }
}

pub fn configure(format: Format, verbosity: i8) {
    FORMAT.store((format == Format::Json) as u8, Ordering::Relaxed);
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    init();
}

/// Installs the subscriber (once per process; a no-op when another is already installed, as
/// in a test harness that brought its own).
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Lines);
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// Registers values that must never be printed.
pub fn add_secrets(secrets: &[String]) {
    let mut l = logger().lock().unwrap();
    for s in secrets {
        if s.len() >= 3 && !l.secrets.contains(s) {
            l.secrets.push(s.clone());
        }
    }
}

/// Registers a credential and every form it travels in: the secret itself, the `Basic` value
/// built from it (`base64(user:secret)`, padded or not, standard or URL-safe alphabet), and the
/// URL-encoded form of each; a server that echoes a header or a form body must not put any of
/// them in a log line, a manifest or an error message.
pub fn add_credential(user: &str, secret: &str) {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    if secret.is_empty() {
        return;
    }
    let pair = format!("{user}:{secret}");
    let mut forms = vec![secret.to_string()];
    for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        forms.push(engine.encode(&pair));
    }
    let encoded: Vec<String> = forms
        .iter()
        .map(|f| form_urlencoded::byte_serialize(f.as_bytes()).collect())
        .collect();
    forms.extend(encoded);
    add_secrets(&forms);
}

pub fn redact(s: &str) -> String {
    let l = logger().lock().unwrap();
    let mut out = s.to_string();
    // Longest first, so a form that contains another is removed whole.
    let mut secrets: Vec<&String> = l.secrets.iter().collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for sec in secrets {
        out = out.replace(sec.as_str(), "***");
    }
    out
}

/// Prints one line on stdout, redacted. Every line a command prints goes through here or
/// `stderr_line` (the `say!` and `say_err!` macros; clippy refuses `println!` in this crate), so
/// redaction happens where lines are written, whoever wrote them.
pub fn stdout_line(s: &str) {
    let _ = writeln!(std::io::stdout(), "{}", redact(s));
}

/// Prints one line on stderr, redacted (see `stdout_line`).
pub fn stderr_line(s: &str) {
    let s = redact(s);
    above_progress(|| {
        let _ = writeln!(std::io::stderr(), "{s}");
    });
}

/// A panic's message goes through the redaction too.
pub fn redact_panics() {
    std::panic::set_hook(Box::new(|info| stderr_line(&info.to_string())));
}

/// `println!` through the redaction.
#[macro_export]
macro_rules! say {
    () => {
        $crate::log::stdout_line("")
    };
    ($($t:tt)*) => {
        $crate::log::stdout_line(&format!($($t)*))
    };
}

/// `eprintln!` through the redaction.
#[macro_export]
macro_rules! say_err {
    ($($t:tt)*) => {
        $crate::log::stderr_line(&format!($($t)*))
    };
}

/// Whether a line of `level` is written at the configured verbosity.
fn level_on(level: &Level) -> bool {
    let min = match *level {
        Level::ERROR => -2,
        Level::WARN => -1,
        Level::INFO => 0,
        Level::DEBUG => 1,
        Level::TRACE => 2,
    };
    VERBOSITY.load(Ordering::Relaxed) >= min
}

fn emit(level: Level, msg: &str) {
    init();
    let event = || match level {
        Level::ERROR => tracing::error!("{msg}"),
        Level::WARN => tracing::warn!("{msg}"),
        Level::INFO => tracing::info!("{msg}"),
        _ => tracing::debug!("{msg}"),
    };
    match current_span() {
        Some(span) => span.in_scope(event),
        None => event(),
    }
}

pub fn info(msg: impl AsRef<str>) {
    emit(Level::INFO, msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    emit(Level::WARN, msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    emit(Level::ERROR, msg.as_ref());
}

pub fn debug(msg: impl AsRef<str>) {
    emit(Level::DEBUG, msg.as_ref());
}

/// Writes one formatted line on stderr, redacted: every log line goes through here.
pub fn write_line(line: &str) {
    let line = redact(line);
    above_progress(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// A span's fields, as JSON values (kept in the span's extensions).
struct SpanFields(Map<String, Value>);

struct Visitor<'a>(&'a mut Map<String, Value>);

impl Visit for Visitor<'_> {
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), Value::from(v));
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), Value::from(v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), Value::from(v));
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().into(), Value::from(v));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), Value::from(v));
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0
            .insert(f.name().into(), Value::from(format!("{v:?}")));
    }
}

/// The layer that formats every event (ours, or a dependency's warning) as a line.
struct Lines;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Lines {
    fn register_callsite(&self, m: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Our own lines at any level; a dependency's only when it warns.
        if m.target().starts_with("gladly_wfm") || *m.level() <= Level::WARN {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, m: &Metadata<'_>, _: Context<'_, S>) -> bool {
        m.is_span() || level_on(m.level())
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Map::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Visitor(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Map::new();
        event.record(&mut Visitor(&mut own));
        let message = match own.remove("message") {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        };
        let level = event.metadata().level().as_str();
        let ts = crate::time::fmt_ts(crate::time::now_ms());
        let line = match format() {
            Format::Text => {
                let mut line = format!("{ts} {level:5} {message}");
                for (k, v) in &own {
                    match v {
                        Value::String(s) => line.push_str(&format!(" {k}={s}")),
                        v => line.push_str(&format!(" {k}={v}")),
                    }
                }
                line
            }
            Format::Json => {
                // The spans' fields, outermost first, then the event's own (an inner value
                // wins); `timestamp`, `level` and `message` lead the line.
                let mut fields = Map::new();
                if let Some(scope) = ctx.event_scope(event) {
                    for span in scope.from_root() {
                        if let Some(f) = span.extensions().get::<SpanFields>() {
                            fields.extend(f.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                        }
                    }
                }
                fields.extend(own);
                let mut line = serde_json::json!({"timestamp": ts}).to_string();
                line.pop();
                for (k, v) in [
                    ("level", Value::from(level)),
                    ("message", Value::from(message)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .chain(
                    fields
                        .into_iter()
                        .filter(|(k, _)| !matches!(k.as_str(), "timestamp" | "level" | "message")),
                ) {
                    line.push(',');
                    line.push_str(&Value::from(k).to_string());
                    line.push(':');
                    line.push_str(&v.to_string());
                }
                line.push('}');
                line
            }
        };
        write_line(&line);
    }
}

/// Which task (or, outside a task, thread) a scope belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ScopeKey {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

fn scope_key() -> ScopeKey {
    tokio::task::try_id()
        .map(ScopeKey::Task)
        .unwrap_or_else(|| ScopeKey::Thread(std::thread::current().id()))
}

type Scopes = HashMap<ScopeKey, Vec<(u64, tracing::Span)>>;

fn scopes() -> &'static Mutex<Scopes> {
    static SCOPES: OnceLock<Mutex<Scopes>> = OnceLock::new();
    SCOPES.get_or_init(Default::default)
}

/// The innermost open scope's span of this task.
fn current_span() -> Option<tracing::Span> {
    let key = scope_key();
    let s = scopes().lock().unwrap();
    s.get(&key)
        .and_then(|v| v.last())
        .map(|(_, span)| span.clone())
}

/// An open scope (a run, a day, a poll): the lines this task logs until it is dropped carry
/// its fields and those of the scopes it is nested in. `Send`: it may be held across `.await`.
#[must_use = "a scope lasts until it is dropped"]
pub struct Scope {
    key: ScopeKey,
    id: u64,
    span: tracing::Span,
}

impl Scope {
    fn open(make: impl FnOnce(Option<tracing::Id>) -> tracing::Span) -> Scope {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        init();
        let key = scope_key();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut s = scopes().lock().unwrap();
        let stack = s.entry(key).or_default();
        let parent = stack.last().and_then(|(_, span)| span.id());
        let span = make(parent);
        stack.push((id, span.clone()));
        Scope { key, id, span }
    }

    /// The day's stage changed (`extract`, `transform`, `load`).
    pub fn stage(&self, stage: &str) {
        self.span.record("stage", stage);
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let mut s = scopes().lock().unwrap();
        if let Some(stack) = s.get_mut(&self.key) {
            stack.retain(|(id, _)| *id != self.id);
            if stack.is_empty() {
                s.remove(&self.key);
            }
        }
    }
}

/// A run of a pipeline: its lines carry `pipeline` and `run_id`.
pub fn scope_run(pipeline: &str, run_id: &str) -> Scope {
    Scope::open(
        |parent| tracing::info_span!(parent: parent, "run", pipeline = pipeline, run_id = run_id),
    )
}

/// A business day at a stage (`extract`, `transform`, `load`, or `poll` for `follow`): its
/// lines carry `day` and `stage`; `Scope::stage` moves it on.
pub fn scope_day(day: chrono::NaiveDate, stage: &str) -> Scope {
    Scope::open(|parent| tracing::info_span!(parent: parent, "day", day = %day, stage = stage))
}

fn progress_on() -> bool {
    use std::io::IsTerminal;
    format() == Format::Text
        && VERBOSITY.load(Ordering::Relaxed) >= 0
        && std::io::stderr().is_terminal()
}

/// The progress bar on a terminal, while a run shows one.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// A progress bar on a terminal (`done` of `total` `unit` — days of a run, days pushed — and the
/// current step); nothing under cron or when stderr is not a terminal. Log lines print above it.
pub fn progress(done: usize, total: usize, unit: &str, step: &str) {
    if !progress_on() || total == 0 {
        return;
    }
    let mut bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
    let b = bar.get_or_insert_with(|| {
        let style =
            indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} {prefix}  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("#>-");
        indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
        .with_style(style)
    });
    b.set_length(total as u64);
    b.set_position(done as u64);
    b.set_prefix(unit.to_string());
    b.set_message(redact(step));
}

/// Clears the progress bar (the run's end).
pub fn progress_done() {
    if let Some(b) = BAR.lock().unwrap_or_else(|e| e.into_inner()).take() {
        b.finish_and_clear();
    }
}

/// Prints on stderr above the progress bar, if one is shown.
fn above_progress(f: impl FnOnce()) {
    let bar = BAR.lock().unwrap_or_else(|e| e.into_inner());
    match bar.as_ref() {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_credential_is_redacted() {
        add_credential("api@example.com", "tok+/=en-XYZ");
        let basic = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode("api@example.com:tok+/=en-XYZ")
        };
        let url: String = form_urlencoded::byte_serialize(b"tok+/=en-XYZ").collect();
        let line = format!("echo: Authorization: Basic {basic}; token={url}; raw tok+/=en-XYZ");
        let out = redact(&line);
        assert!(!out.contains(&basic), "{out}");
        assert!(!out.contains(&url), "{out}");
        assert!(!out.contains("tok+/=en-XYZ"), "{out}");
        assert!(out.contains("Basic ***"), "{out}");
    }
}
