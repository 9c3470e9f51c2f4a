//! No secret in any form: runs against servers that echo every request header (and body) back
//! in their error answers, then a scan of stdout, stderr and every file the run wrote for the
//! token, the WFM secret, the `Basic` values built from them, the bearer token the WFM issued,
//! and their URL-encoded forms.

mod util;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use util::*;

const BEARER: &str = "issued-bearer-token-QRS789";

/// Answers every request with a 400 whose body quotes the request's headers and body; with
/// `issue_token`, the WFM token endpoint answers properly first, so pushes carry a bearer.
async fn echo_server(issue_token: bool) -> String {
    let app = axum::Router::new().fallback(
        move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
            if issue_token && uri.path() == "/api/authority/token" {
                let body = serde_json::json!({"data": {"accessToken": BEARER, "expiresIn": 3600}});
                return (StatusCode::OK, body.to_string()).into_response();
            }
            let seen: Vec<String> = headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("")))
                .collect();
            let text = format!(
                "{} {} headers [{}] body [{}]",
                "request",
                uri,
                seen.join("; "),
                String::from_utf8_lossy(&body)
            );
            let body = serde_json::json!({
                "errors": [{"detail": text}],
                "error": {"code": "echo", "message": text},
            });
            (StatusCode::BAD_REQUEST, body.to_string()).into_response()
        },
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// Every form a credential travels in: plain, the `user:secret` pair, its Basic value in each
/// base64 alphabet (padded or not), and the URL-encoded form of each.
fn forms() -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pairs = [
        format!("sim@example.com:{TOKEN}"),
        format!("sim-client:{WFM_SECRET}"),
    ];
    let mut f = vec![
        TOKEN.to_string(),
        WFM_SECRET.to_string(),
        BEARER.to_string(),
    ];
    for pair in &pairs {
        f.push(pair.clone());
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            f.push(engine.encode(pair));
        }
    }
    let enc: Vec<String> = f
        .iter()
        .map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect())
        .collect();
    f.extend(enc);
    f
}

fn scan(dir: &std::path::Path, o: &Out) {
    let mut texts = vec![
        ("stdout".to_string(), o.stdout.clone()),
        ("stderr".into(), o.stderr.clone()),
    ];
    for f in files(dir) {
        let b = std::fs::read(&f).unwrap();
        texts.push((
            f.display().to_string(),
            String::from_utf8_lossy(&b).to_string(),
        ));
    }
    for (where_, t) in &texts {
        for s in forms() {
            assert!(!t.contains(&s), "a secret form `{s}` is in {where_}:\n{t}");
        }
    }
}

/// `follow` until it exits or has printed a line that quotes the echo (redacted), then SIGTERM:
/// everything it printed on stdout and stderr.
async fn follow_briefly(dir: &std::path::Path, p: &std::path::Path) -> Out {
    use tokio::io::AsyncBufReadExt;
    let pf = p.display().to_string();
    let args = ["follow", "--pipeline", pf.as_str(), "--now", NOW];
    let mut child = command(dir, &args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let mut stdout = child.stdout.take().unwrap();
    let out = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s)
            .await
            .unwrap();
        s
    });
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut err = String::new();
    let read = async {
        let mut signalled = false;
        while let Ok(Some(line)) = lines.next_line().await {
            if !signalled && line.contains("***") {
                unsafe { libc::kill(pid, libc::SIGTERM) };
                signalled = true;
            }
            err.push_str(&line);
            err.push('\n');
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), read)
        .await
        .expect("follow quoted the echo or stopped within two minutes");
    let status = child.wait().await.unwrap();
    Out {
        code: status.code().unwrap_or(-1),
        stdout: out.await.unwrap(),
        stderr: err,
    }
}

/// `check` (online), `run`, `status` and `follow` against one setup: every byte they print and
/// every file they write is scanned; the echo reached the output redacted (`expect`).
async fn every_command(s: &Sims, expect: &str, run_code: Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), s, "", "");
    let pf = p.display().to_string();
    let range = ["--from", "2026-11-02", "--to", "2026-11-02"];
    let o = run(dir.path(), &p, NOW, &range).await;
    match run_code {
        Some(c) => assert_eq!(o.code, c, "{o}"),
        None => assert_ne!(o.code, 0, "{o}"),
    }
    assert!(
        format!("{o}").contains(expect),
        "run quoted the echo, redacted: {o}"
    );
    scan(dir.path(), &o);
    let o = bin(dir.path(), &["check", "--pipeline", &pf, "--now", NOW], &[]).await;
    assert_ne!(o.code, 0, "{o}");
    assert!(
        format!("{o}").contains(expect),
        "check quoted the echo, redacted: {o}"
    );
    scan(dir.path(), &o);
    let o = bin(dir.path(), &["status", "--pipeline", &pf], &[]).await;
    scan(dir.path(), &o);
    let o = follow_briefly(dir.path(), &p).await;
    scan(dir.path(), &o);
}

/// Servers that quote the `Authorization` header back in their error answers: no command prints
/// or writes a credential in any form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_run_status_and_follow_print_no_credential_in_any_form() {
    let mut s = start_default(NOW).await;
    s.gladly_url = echo_server(false).await;
    every_command(&s, "Basic ***", Some(1)).await;
    let mut s = start_default(NOW).await;
    s.wfm_url = echo_server(false).await;
    every_command(&s, "Basic ***", None).await;
    let mut s = start_default(NOW).await;
    s.wfm_url = echo_server(true).await;
    every_command(&s, "***", Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_echo_headers_get_no_secret_printed_or_stored() {
    let range = ["--from", "2026-11-02", "--to", "2026-11-02"];
    // Gladly echoes: the run fails on the first request, quoting `Authorization: Basic …`.
    let mut s = start_default(NOW).await;
    s.gladly_url = echo_server(false).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout.contains("Basic ***") || o.stderr.contains("Basic ***"),
        "the echo reached the output, redacted: {o}"
    );
    scan(dir.path(), &o);

    // The WFM echoes its token request (client id and secret in a Basic header).
    let mut s = start_default(NOW).await;
    s.wfm_url = echo_server(false).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_ne!(o.code, 0, "{o}");
    assert!(format!("{o}").contains("Basic ***"), "{o}");
    scan(dir.path(), &o);

    // The WFM issues a token, then echoes every push (the bearer token it issued).
    let mut s = start_default(NOW).await;
    s.wfm_url = echo_server(true).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &s, "", "");
    let o = run(dir.path(), &p, NOW, &range).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(format!("{o}").contains("Bearer ***"), "{o}");
    scan(dir.path(), &o);
}
