//! Log lines for operators: plain text (or JSON with `--log-format json`) on stderr, with every
//! known secret redacted as a last line of defence.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

struct Logger {
    format: Format,
    verbosity: i8,
    secrets: Vec<String>,
}

static LOGGER: OnceLock<Mutex<Logger>> = OnceLock::new();

fn logger() -> &'static Mutex<Logger> {
    LOGGER.get_or_init(|| {
        Mutex::new(Logger {
            format: Format::Text,
            verbosity: 0,
            secrets: Vec::new(),
        })
    })
}

pub fn configure(format: Format, verbosity: i8) {
    let mut l = logger().lock().unwrap();
    l.format = format;
    l.verbosity = verbosity;
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
    clear_progress();
    let _ = writeln!(std::io::stderr(), "{}", redact(s));
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

fn emit(level: &str, min_verbosity: i8, msg: &str) {
    let (format, verbosity) = {
        let l = logger().lock().unwrap();
        (l.format, l.verbosity)
    };
    if verbosity < min_verbosity {
        return;
    }
    let msg = redact(msg);
    clear_progress();
    let ts = crate::time::fmt_ts(crate::time::now_ms());
    let line = match format {
        Format::Text => format!("{ts} {level:5} {msg}"),
        Format::Json => serde_json::json!({"ts": ts, "level": level, "msg": msg}).to_string(),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub fn info(msg: impl AsRef<str>) {
    emit("INFO", 0, msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    emit("WARN", -1, msg.as_ref());
}

pub fn error(msg: impl AsRef<str>) {
    emit("ERROR", -2, msg.as_ref());
}

pub fn debug(msg: impl AsRef<str>) {
    emit("DEBUG", 1, msg.as_ref());
}

fn progress_on() -> bool {
    use std::io::IsTerminal;
    let l = logger().lock().unwrap();
    l.format == Format::Text && l.verbosity >= 0 && std::io::stderr().is_terminal()
}

static PROGRESS_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A progress bar on a terminal (days done of the range, and the current step); nothing under
/// cron or when stderr is not a terminal.
pub fn progress(done: usize, total: usize, step: &str) {
    if !progress_on() || total == 0 {
        return;
    }
    let width = 30;
    let filled = done * width / total;
    let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
    let _ = write!(
        std::io::stderr(),
        "\r\x1b[2K[{bar}] {done}/{total} days  {step}"
    );
    PROGRESS_SHOWN.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn clear_progress() {
    if PROGRESS_SHOWN.swap(false, std::sync::atomic::Ordering::Relaxed) {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
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
