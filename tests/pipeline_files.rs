//! Pipeline files and the commands that only read them: errors that name the file, line and
//! key or rule (exit 2, nothing fetched), limits, credentials needed only by the commands that
//! use them, `check --strict`, and one pipeline per output root.

mod util;

use std::path::Path;
use std::time::Duration;

use util::*;

/// A valid pipeline file that talks to nothing (`check --offline` reads it only).
const BASE: &str = r#"name = "t"
timezone = "America/New_York"

[gladly]
base_url = "http://127.0.0.1:9"
user = "u@example.com"
token = "${GLADLY_API_TOKEN}"
requests_per_second = 10

[[tasks]]
name = "In"
pattern = "LOGGED_IN"
[[tasks]]
name = "Away"
pattern = "Break|Lunch"

[output]
root = "out"
"#;

const HOOK: &str = "\n[webhook]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://hooks.example.com/gladly/webhook\"\nuser = \"gladly\"\npassword = \"${GLADLY_WEBHOOK_PASSWORD}\"\n";

async fn check_offline(dir: &Path, file: &str, text: &str) -> Out {
    std::fs::write(dir.join(file), text).unwrap();
    bin(dir, &["check", "--offline", "--pipeline", file], &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_file_errors_exit_2_naming_file_line_and_key_or_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = check_offline(d, "ok.toml", BASE).await;
    assert_eq!(ok.code, 0, "{ok}");
    let long_name = "n".repeat(300);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a wrong type names its key",
            BASE.replace("requests_per_second = 10", "requests_per_second = \"ten\""),
            "p.toml:8: gladly.requests_per_second: invalid type: string \"ten\", expected u32",
        ),
        (
            "a wrong type in an array of tables names the entry",
            BASE.replace("name = \"Away\"", "name = 5"),
            "p.toml:14: tasks[2].name: invalid type: integer `5`, expected a string",
        ),
        (
            "a pattern that only parses once anchored",
            BASE.replace("\"Break|Lunch\"", "\"Lun)|(?:xx\""),
            "p.toml:15: tasks[2] \"Away\": invalid pattern `Lun)|(?:xx`",
        ),
        (
            "a name longer than a folder name may be",
            BASE.replace("name = \"t\"", &format!("name = \"{long_name}\"")),
            "p.toml:1: name: 300 characters are more than the 255",
        ),
        (
            "an empty output root",
            BASE.replace("root = \"out\"", "root = \"\""),
            "p.toml:18: output.root: must not be empty",
        ),
        (
            "a newline in the output root",
            BASE.replace("root = \"out\"", "root = \"out\\nput\""),
            "p.toml:18: output.root: \"out\\nput\" contains a newline",
        ),
        (
            "no work-session reads in follow",
            format!("{BASE}\n[follow]\nwork_sessions_minutes = 0\n"),
            "p.toml:21: follow.work_sessions_minutes: 0 is outside 1..1440",
        ),
        (
            "no dimension reads in follow",
            format!("{BASE}\n[follow]\ndimensions_minutes = 0\n"),
            "p.toml:21: follow.dimensions_minutes: 0 is outside 1..1440",
        ),
        (
            "a webhook Gladly cannot reach over https",
            format!("{BASE}{}", HOOK.replace("https://hooks.example.com", "http://hooks.example.com")),
            "p.toml:22: webhook.public_url: `http://hooks.example.com/gladly/webhook` must use https://",
        ),
        (
            "a webhook URL carrying credentials",
            format!("{BASE}{}", HOOK.replace("https://hooks", "https://u:p@hooks")),
            "p.toml:22: webhook.public_url: must not carry credentials",
        ),
        (
            "a webhook receiver with nowhere to listen",
            format!("{BASE}{}", HOOK.replace("127.0.0.1:8080", "8080")),
            "p.toml:21: webhook.listen: `8080` is not an address to listen on",
        ),
        (
            "an empty webhook user",
            format!("{BASE}{}", HOOK.replace("user = \"gladly\"", "user = \"\"")),
            "p.toml:23: webhook.user: must not be empty",
        ),
        (
            "half a TLS pair",
            format!("{BASE}{HOOK}tls_cert = \"/etc/tls/tls.crt\"\n"),
            "p.toml:25: webhook: tls_cert and tls_key go together",
        ),
        (
            "no range at all",
            BASE.replace("timezone = ", "max_range_days = 0\ntimezone = "),
            "p.toml:2: max_range_days: must be at least 1",
        ),
    ];
    for (what, text, needle) in cases {
        let o = check_offline(d, "p.toml", &text).await;
        assert_eq!(o.code, 2, "{what}: {o}");
        assert!(o.stderr.contains(needle), "{what}: wants `{needle}`: {o}");
        assert!(o.stdout.is_empty(), "{what}: nothing else is printed: {o}");
    }
    // The webhook's password is needed by `follow` alone: `check --offline` loads the file
    // without it, `follow` refuses to start naming the variable.
    std::fs::write(d.join("hook.toml"), format!("{BASE}{HOOK}")).unwrap();
    let o = bin(d, &["check", "--offline", "--pipeline", "hook.toml"], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    let o = bin(d, &["follow", "--pipeline", "hook.toml"], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr
            .contains("hook.toml:24: webhook.password: environment variable GLADLY_WEBHOOK_PASSWORD is not set"),
        "{o}"
    );
    // A missing file is named, with the reason and without a line 0.
    let o = bin(d, &["check", "--offline", "--pipeline", "nope.toml"], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr
            .contains("cannot read nope.toml: No such file or directory"),
        "{o}"
    );
    assert!(!o.stderr.contains(":0:"), "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_files_rule_lists_and_patterns_are_refused_with_short_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Larger than the limit: refused from its size alone (a sparse file: nothing is read).
    let big = std::fs::File::create(d.join("big.toml")).unwrap();
    big.set_len(gladly_wfm::config::MAX_FILE_BYTES + 1).unwrap();
    let o = bin(d, &["check", "--offline", "--pipeline", "big.toml"], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr
            .contains("big.toml is 8388609 bytes, more than the 8388608"),
        "{o}"
    );
    // More rules than allowed: the count and the limit, at the first rule past it.
    let n = gladly_wfm::config::MAX_RULES + 1;
    let mut text = BASE.to_string();
    for i in 0..n {
        text.push_str(&format!(
            "[[workstreams]]\nname = \"w{i}\"\npattern = \"i{i}\"\n"
        ));
    }
    let o = check_offline(d, "many.toml", &text).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr
            .contains(&format!("workstreams: {n} rules are more than the 50000")),
        "{o}"
    );
    // A two-megabyte pattern that does not parse: the message quotes a little of it.
    let huge = format!("{}(", "a".repeat(2_000_000));
    let o = check_offline(
        d,
        "huge.toml",
        &BASE.replace("\"Break|Lunch\"", &format!("\"{huge}\"")),
    )
    .await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr
            .contains("tasks[2] \"Away\": invalid pattern `aaaa")
            && o.stderr.contains("… (2000001 bytes)")
            && o.stderr.contains("unclosed group"),
        "{}",
        &o.stderr[..o.stderr.len().min(2000)]
    );
    assert!(o.stderr.len() < 600, "{} bytes", o.stderr.len());
}

/// CPU time of this thread: what loading costs, whatever else the machine is doing.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Loads a file of `n` workstream rules; returns the CPU time it took.
fn load_rules(n: usize) -> Duration {
    let mut text = BASE.to_string();
    for i in 0..n {
        text.push_str(&format!(
            "[[workstreams]]\nname = \"Inbox {i}\"\npattern = \"inbox-{i}|Inbox {i}\"\n"
        ));
    }
    let t = thread_cpu();
    let p = gladly_wfm::config::Pipeline::parse(Path::new("p.toml"), &text, &|_| Some("x".into()))
        .unwrap();
    let took = thread_cpu() - t;
    assert_eq!(p.workstreams.len(), n);
    assert_eq!(p.workstreams[n - 1].line, 21 + 3 * (n - 1));
    took
}

#[test]
fn thirty_two_thousand_rules_load_in_linear_time() {
    let small = load_rules(8_000);
    let big = load_rules(32_000);
    eprintln!("rules loaded in {small:?} CPU (8000), {big:?} CPU (32000)");
    // Quadratic line numbering took 20 s for 32k rules, a regex compiled per rule 2.5 s. Now
    // four times the rules cost about four times as much (sixteen if quadratic), and 32k rules
    // in under half a second of CPU even in this debug build.
    assert!(big < small * 8, "not linear: {small:?} → {big:?}");
    assert!(big < Duration::from_secs(4), "{big:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_offline_check_need_no_credentials() {
    // The demo's pipeline reads its URLs and credentials from variables none of which is set
    // here (GLADLY_BASE_URL, GLADLY_API_USER, WFM_BASE_URL, WFM_CLIENT_ID).
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo.toml");
    let demo = demo.display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let o = bin(dir.path(), &["status", "--pipeline", &demo], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("pipeline demo"), "{o}");
    let o = bin(
        dir.path(),
        &["check", "--offline", "--pipeline", &demo],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("pipeline file is valid"), "{o}");
    // The commands that call Gladly name the first unset variable, its file and line.
    let o = bin(dir.path(), &["check", "--pipeline", &demo], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(
        o.stderr.contains(
            "demo.toml:13: gladly.base_url: environment variable GLADLY_BASE_URL is not set"
        ),
        "{o}"
    );
    let o = bin(dir.path(), &["run", "--pipeline", &demo], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stdout.contains("GLADLY_BASE_URL is not set"), "{o}");
    assert!(
        !dir.path().join("output").exists(),
        "a refused run writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_strict_fails_on_unmatched_labels_inboxes_and_unused_rules() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let ps = p.display().to_string();
    let strict = ["check", "--offline", "--strict", "--pipeline", &ps];
    // Nothing seen yet: keys and patterns are checked, and there is nothing to check the rules
    // against, which is no failure (DESIGN §3).
    let o = bin(dir.path(), &strict, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(
        o.stdout.contains("no raw data yet, so nothing to check"),
        "{o}"
    );
    let range = [
        "--from",
        "2026-11-02",
        "--to",
        "2026-11-03",
        "--stages",
        "extract",
    ];
    assert_eq!(run(dir.path(), &p, NOW, &range).await.code, 0);
    // The test rules leave `Coaching 1:1` and the `Sales` inbox unmatched: fine without
    // --strict, exit 1 with it.
    let o = bin(dir.path(), &["check", "--offline", "--pipeline", &ps], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    let o = bin(dir.path(), &strict, &[]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(o.stdout.contains("unmatched label `Coaching 1:1`"), "{o}");
    assert!(o.stdout.contains("unmatched inbox `Sales`"), "{o}");
    assert!(o.stdout.contains("strict:"), "{o}");
    // Rules that match everything seen, each used: strict passes.
    let text = std::fs::read_to_string(&p).unwrap();
    let head = &text[..text.find("[[tasks]]").unwrap()];
    let tail = &text[text.find("[output]").unwrap()..];
    let all = "[[tasks]]\nname = \"All\"\npattern = \".*\"\n[[workstreams]]\nname = \"All\"\npattern = \".*\"\n";
    std::fs::write(&p, format!("{head}{all}{tail}")).unwrap();
    let o = bin(dir.path(), &strict, &[]).await;
    assert_eq!(o.code, 0, "{o}");
    // …until one rule matches nothing seen.
    let never = "[[tasks]]\nname = \"Never\"\npattern = \"NEVER_SEEN\"\n";
    std::fs::write(&p, format!("{head}{never}{all}{tail}")).unwrap();
    let o = bin(dir.path(), &strict, &[]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("task rule \"Never\" (line")
            && o.stdout.contains("matches no label seen"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_root_belongs_to_the_first_pipeline_that_runs_there() {
    let s = start_default(NOW).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let root = dir.path().join("output");
    let range = ["--from", "2026-11-02", "--to", "2026-11-02"];
    assert_eq!(run(dir.path(), &p, NOW, &range).await.code, 0);
    assert_eq!(
        std::fs::read_to_string(root.join("_pipeline")).unwrap(),
        "t\n"
    );
    // The same file under another name: refused before any request, naming both and the root.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("name = \"t\"", "name = \"other\""),
    )
    .unwrap();
    let (g, w) = (s.gladly.requests().len(), s.wfm.requests().len());
    let o = run(dir.path(), &other, NOW, &range).await;
    assert_eq!(o.code, 2, "{o}");
    let needle = format!("output root {} belongs to pipeline `t`", root.display());
    assert!(
        o.stdout.contains(&needle) && o.stdout.contains("not to `other`"),
        "{o}"
    );
    assert_eq!(s.gladly.requests().len(), g, "no request reached Gladly");
    assert_eq!(s.wfm.requests().len(), w, "no request reached the WFM");
    assert!(!root.join("_state/other").exists());
    // `check` does not show the other pipeline's raw zone as this one's.
    let os = other.display().to_string();
    let o = bin(dir.path(), &["check", "--offline", "--pipeline", &os], &[]).await;
    assert_eq!(o.code, 2, "{o}");
    assert!(o.stderr.contains(&needle), "{o}");
    assert!(!o.stdout.contains("labels seen"), "{o}");
    // The owner itself carries on.
    assert_eq!(run(dir.path(), &p, NOW, &range).await.code, 0);
}
