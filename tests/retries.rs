//! What a failing or misconfigured server looks like from the command line: every retry is a log
//! line (what failed, attempt n of m, the wait), a host name that does not resolve fails at once
//! naming the host, and a redirect is reported as one with its target origin.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use util::*;

/// Serves `app` on a free loopback port; returns its origin.
async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// A pipeline for `check` against `gladly` (no [wfm]).
fn pipeline_for(dir: &std::path::Path, gladly: &str) -> String {
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        format!(
            "name = \"t\"\ntimezone = \"{TZ}\"\n[gladly]\nbase_url = \"{gladly}\"\nuser = \"sim@example.com\"\ntoken = \"${{GLADLY_API_TOKEN}}\"\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_is_logged_with_what_failed_the_attempt_and_the_wait() {
    // Two 503s, then the organisation.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let url = serve(Router::new().route(
        "/api/v1/organization",
        get(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response()
                } else {
                    axum::Json(serde_json::json!({"id": "o", "timezone": TZ})).into_response()
                }
            }
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_for(dir.path(), &url);
    let o = bin(dir.path(), &["check", "--pipeline", &p], &[]).await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("gladly: credentials accepted"), "{o}");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let retries: Vec<&str> = o.stderr.lines().filter(|l| l.contains("retry")).collect();
    assert_eq!(retries.len(), 2, "{o}");
    for (i, l) in retries.iter().enumerate() {
        assert!(
            l.contains("WARN")
                && l.contains("GET /api/v1/organization: HTTP 503: busy")
                && l.contains(&format!("retry {} of 7 in ", i + 1))
                && l.ends_with(" s"),
            "{l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_that_does_not_resolve_fails_at_once_naming_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_for(dir.path(), "https://acme.nonexistent.invalid");
    let t = Instant::now();
    let o = bin(dir.path(), &["run", "--pipeline", &p, "--now", NOW], &[]).await;
    // Eight attempts with backoff took 18–38 s; one lookup takes well under a second.
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout
            .contains("the host name `acme.nonexistent.invalid` does not resolve"),
        "{o}"
    );
    assert!(!o.stderr.contains("retry"), "no retries: {o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_reported_as_a_redirect_to_its_origin_not_as_refused_credentials() {
    let url = serve(Router::new().route(
        "/api/v1/organization",
        get(|| async {
            (
                StatusCode::MOVED_PERMANENTLY,
                [(
                    header::LOCATION,
                    "https://acme.gladly.example:8443/api/v1/organization?token=abc",
                )],
            )
        }),
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline_for(dir.path(), &url);
    let o = bin(dir.path(), &["check", "--pipeline", &p], &[]).await;
    assert_eq!(o.code, 1, "{o}");
    assert!(
        o.stdout
            .contains("HTTP 301 redirect to https://acme.gladly.example:8443"),
        "{o}"
    );
    assert!(!o.stdout.contains("refused the credentials"), "{o}");
    assert!(
        !o.stdout.contains("token=abc"),
        "the target's query is not printed: {o}"
    );
}
