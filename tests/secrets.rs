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

fn forms() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut f = vec![
        TOKEN.to_string(),
        WFM_SECRET.to_string(),
        b64(&format!("sim@example.com:{TOKEN}")),
        b64(&format!("sim-client:{WFM_SECRET}")),
        BEARER.to_string(),
    ];
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
