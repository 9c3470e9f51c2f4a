//! `follow` with Gladly's webhook (DESIGN §12), against the Gladly simulator delivering over
//! real HTTP and HTTPS: one webhook per pipeline across restarts, its PING answered, the
//! receiver's bounds (401, 413, 404/405, a slow sender cut off, an unusable delivery set
//! aside), deliveries dropped and repeated ending exactly as a plain run, a webhook switched
//! off switched on again, `check` showing and removing it, and its password nowhere.

mod util;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use gladly_wfm_sim::gladly::GladlySimConfig;
use gladly_wfm_sim::wfm::{Kind, WfmSimConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use util::follow::*;
use util::*;

const FOLLOW: &str =
    "[follow]\npoll_seconds = 15\nwork_sessions_minutes = 10\ndimensions_minutes = 60";
const HOOK_USER: &str = "gladly-hooks";
const HOOK_PASSWORD: &str = "hook-Pa55-word-for-tests";
const PATH: &str = "/gladly/webhook";

/// `[webhook]` on `port`; `https` serves the fixture certificate itself.
fn webhook_table(port: u16, https: bool) -> String {
    let tls = if https {
        let f = |n: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/tls")
                .join(n)
                .display()
                .to_string()
        };
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            f("server.pem"),
            f("server.key")
        )
    } else {
        String::new()
    };
    format!(
        "[webhook]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{}://localhost:{port}{PATH}\"\nuser = \"{HOOK_USER}\"\npassword = \"${{GLADLY_WEBHOOK_PASSWORD}}\"\nmanage = true\n{tls}",
        if https { "https" } else { "http" }
    )
}

/// A pipeline file for these simulators with `[follow]` (`follow`: its text, and any table
/// key before it) and a plain-HTTP `[webhook]` on `port`.
fn hook_pipeline(dir: &Path, s: &Sims, follow: &str, port: u16) -> std::path::PathBuf {
    pipeline(
        dir,
        s,
        "",
        &format!("{follow}\n{}", webhook_table(port, false)),
    )
}

const ENV: [(&str, &str); 1] = [("GLADLY_WEBHOOK_PASSWORD", HOOK_PASSWORD)];

/// The simulator as Gladly, delivering to http:// loopback receivers, retries 100× sooner.
fn hooks(c: &mut GladlySimConfig) {
    c.speed = 120.0;
    c.webhook_allow_http = true;
    c.webhook_retry_scale = 0.01;
}

/// A running `follow`, its log lines read as they come.
struct Live {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Vec<String>,
}

impl Live {
    fn start(dir: &Path, p: &Path, now: &str, speed: f64) -> Live {
        let (pf, sp) = (p.display().to_string(), speed.to_string());
        let args = [
            "follow",
            "--pipeline",
            pf.as_str(),
            "--now",
            now,
            "--speed",
            sp.as_str(),
        ];
        let mut child = command(dir, &args, &ENV)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err.next_line().await {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Live {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The first line (from now on) that makes `f` true; fails after two minutes or if
    /// `follow` ends first.
    async fn wait_for(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(l) = self.lines.recv().await {
                self.log.push(l.clone());
                if f(&l) {
                    return Some(l);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(l)) => l,
            _ => panic!("no log line {what}:\n{}", self.log.join("\n")),
        }
    }

    /// SIGKILL, as the OOM killer or `kill -9` would: no unwinding, no cleanup.
    async fn kill(mut self) -> Vec<String> {
        self.child.kill().await.unwrap();
        while let Ok(Some(l)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.log.push(l);
        }
        self.log
    }

    /// SIGTERM, then the exit code and every log line.
    async fn stop(mut self) -> (i32, Vec<String>) {
        let pid = self.child.id().unwrap() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("follow stopped within two minutes")
            .unwrap();
        while let Some(l) = self.lines.recv().await {
            self.log.push(l);
        }
        (status.code().unwrap_or(-1), self.log)
    }
}

fn basic(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Every form of the webhook password a leak could take.
fn password_forms() -> Vec<String> {
    let pair = format!("{HOOK_USER}:{HOOK_PASSWORD}");
    let e = &base64::engine::general_purpose::STANDARD;
    vec![
        HOOK_PASSWORD.to_string(),
        e.encode(&pair),
        e.encode(&pair).trim_end_matches('=').to_string(),
    ]
}

fn assert_password_nowhere(dir: &Path, texts: &[&str]) {
    for f in files(dir) {
        let b = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        for s in password_forms() {
            assert!(!b.contains(&s), "the webhook password in {}", f.display());
        }
    }
    for t in texts {
        for s in password_forms() {
            assert!(!t.contains(&s), "the webhook password in output: {t}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_across_restarts_and_a_receiver_that_holds_nothing_for_strangers() {
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(world(7, 20, t0), hooks, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = hook_pipeline(dir.path(), &s, FOLLOW, port);
    let mut logs = Vec::new();
    for start in 0..3 {
        let mut f = Live::start(dir.path(), &p, &sim_now(&s), 120.0);
        f.wait_for("saying the webhook is made sure of", |l| {
            l.contains("webhook: http://localhost") && l.contains("(enabled)")
        })
        .await;
        if start == 2 {
            probe_receiver(port, dir.path()).await;
        }
        let (code, log) = f.stop().await;
        assert_eq!(code, 0, "{}", log.join("\n"));
        // On SIGTERM the receiver answers what it holds and closes before follow ends.
        let at = |what: &str| log.iter().position(|l| l.contains(what));
        assert!(
            matches!(
                (at("webhook receiver: stopped"), at("follow: stopped")),
                (Some(r), Some(f)) if r < f
            ),
            "{}",
            log.join("\n")
        );
        logs.extend(log);
    }
    let all = logs.join("\n");
    // Nothing of the strangers' bodies reached the WFM either.
    let store = serde_json::to_string(&s.wfm.store()).unwrap();
    assert!(!store.contains("MARKER-FROM-A-STRANGER"));
    let hooks = s.gladly.webhooks();
    assert_eq!(
        hooks.len(),
        1,
        "exactly one webhook after three starts: {hooks:?}"
    );
    let h = &hooks[0];
    assert!(h.enabled);
    assert_eq!(h.name, "gladly-wfm t");
    assert_eq!(h.url, format!("http://localhost:{port}{PATH}"));
    assert!(h.events.iter().any(|e| e == "AGENT_STATUS/LOGGED_IN"));
    assert!(h.events.iter().any(|e| e == "CONVERSATION/CLOSED"));
    assert_eq!(
        h.credentials.as_ref().map(|c| c.password.as_str()),
        Some(HOOK_PASSWORD)
    );
    // Enabling it made Gladly PING the receiver, which answered.
    let pings: Vec<_> = s
        .gladly
        .webhook_deliveries()
        .into_iter()
        .filter(|d| d.event_type == "PING")
        .collect();
    assert!(
        !pings.is_empty() && pings.iter().all(|d| d.ok()),
        "{pings:?}"
    );
    assert!(all.contains("webhook: PING"), "{all}");
    // Deliveries flowed and were taken in.
    assert!(
        all.contains("follow: webhook: "),
        "deliveries taken in:\n{all}"
    );

    // `check` shows it; `check --remove-webhook` disables and deletes it.
    let pf = p.display().to_string();
    let o = bin(dir.path(), &["check", "--pipeline", pf.as_str()], &ENV).await;
    assert!(
        o.stdout.contains(&format!(
            "webhook: http://localhost:{port}{PATH} `gladly-wfm t` (enabled)"
        )),
        "{o}"
    );
    let o = bin(
        dir.path(),
        &["check", "--pipeline", pf.as_str(), "--remove-webhook"],
        &[],
    )
    .await;
    assert_eq!(o.code, 0, "{o}");
    assert!(o.stdout.contains("disabled and deleted"), "{o}");
    assert!(s.gladly.webhooks().is_empty());
    assert_password_nowhere(dir.path(), &[&all, &o.stdout, &o.stderr]);
}

/// What a stranger, a sloppy sender and Gladly with an unknown type get from the receiver.
async fn probe_receiver(port: u16, dir: &Path) {
    let url = format!("http://127.0.0.1:{port}{PATH}");
    let http = reqwest::Client::new();
    let marker = "MARKER-FROM-A-STRANGER";
    let event = format!(
        r#"{{"id":"{marker}","type":"AGENT_STATUS/LOGGED_IN","timestamp":"2026-11-04T14:00:00Z","initiator":{{"type":"AGENT","id":"{marker}"}},"content":{{"agentId":"{marker}","occurredAt":"2026-11-04T14:00:00Z"}}}}"#
    );
    for auth in [
        None,
        Some(basic(HOOK_USER, "wrong")),
        Some(basic("someone", HOOK_PASSWORD)),
    ] {
        let mut r = http.post(&url).body(event.clone());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let a = r.send().await.unwrap();
        assert_eq!(a.status(), 401);
    }
    let good = basic(HOOK_USER, HOOK_PASSWORD);
    // Only POST on the path.
    let a = http
        .get(&url)
        .header("authorization", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 405);
    let a = http
        .post(format!("http://127.0.0.1:{port}/elsewhere"))
        .header("authorization", &good)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 404);
    // An over-long body.
    let a = http
        .post(&url)
        .header("authorization", &good)
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 413);
    // An unknown type: 200, set aside and kept.
    let a = http
        .post(&url)
        .header("authorization", &good)
        .body(r#"{"id":"unknown-type-1","type":"PAYMENT_REQUEST/CREATED","timestamp":"2026-11-04T14:00:00Z","content":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    // Kept before the answer, or finished just after it when the disk is slow.
    let kept = |dir: &Path| {
        files(&dir.join("output/raw/webhook_set_aside"))
            .into_iter()
            .filter(|f| f.ends_with("unknown-type-1.json"))
            .count()
    };
    let t = std::time::Instant::now();
    while kept(dir) == 0 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(kept(dir), 1, "the unusable delivery kept");
    // A sender that dribbles its headers is cut off within the header timeout (10 s).
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(format!("POST {PATH} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf))
        .await
        .expect("the receiver cut the slow sender off");
    assert!(matches!(n, Ok(_) | Err(_)));
    assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
    // Nothing of the strangers' bodies anywhere.
    for f in files(&dir.join("output")) {
        let b = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        assert!(!b.contains(marker), "{}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_dropped_and_repeated_end_as_a_plain_run_of_the_day() {
    // 22:00 in New York on 11-03; at 1200× the day ends and its report lag (60 min) passes in
    // about ten seconds. 5 % of deliveries never come and 5 % come twice.
    let t0 = "2026-11-04T02:00:00Z";
    let s = start(
        world(7, 20, t0),
        |c| {
            hooks(c);
            c.speed = 1200.0;
            c.webhook_drop = 0.05;
            c.webhook_repeat = 0.05;
        },
        WfmSimConfig::default(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = hook_pipeline(dir.path(), &s, FOLLOW, free_port());
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("report_lag_minutes = 120", "report_lag_minutes = 60");
    std::fs::write(&p, text).unwrap();
    let mut f = Live::start(dir.path(), &p, t0, 1200.0);
    f.wait_for("starting the reconcile of 11-03", |l| {
        l.contains("2026-11-03 is complete; running its nightly reconcile")
    })
    .await;
    f.wait_for("polling after the reconcile", |l| {
        l.contains("follow: polled")
    })
    .await;
    let (code, log) = f.stop().await;
    let all = log.join("\n");
    assert_eq!(code, 0, "{all}");
    let root = dir.path().join("output");
    let fs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("_state/t/follow.json")).unwrap()).unwrap();
    assert_eq!(fs["reconciled_through"], "2026-11-03", "{all}");
    let taken: usize = log
        .iter()
        .filter_map(|l| l.split("follow: webhook: ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(taken > 0, "the webhook brought events first:\n{all}");
    let dropped = s
        .gladly
        .webhook_deliveries()
        .iter()
        .filter(|d| d.dropped)
        .count();
    assert!(dropped > 0, "some deliveries were dropped");

    assert_reconciled_day_equals_a_plain_run(&s, &root).await;
    assert_no_shared_starts(&s.wfm.store());
    assert_password_nowhere(dir.path(), &[&all]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gladly_switched_off_is_switched_on_again() {
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(world(7, 20, t0), hooks, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let follow = FOLLOW.replace("dimensions_minutes = 60", "dimensions_minutes = 1");
    let p = hook_pipeline(dir.path(), &s, &follow, free_port());
    let mut f = Live::start(dir.path(), &p, t0, 120.0);
    f.wait_for("saying the webhook is on", |l| l.contains("(enabled)"))
        .await;
    let id = s.gladly.webhooks()[0].id.clone();
    assert!(s.gladly.switch_off_webhook(&id));
    assert!(!s.gladly.webhooks()[0].enabled);
    f.wait_for("warning that it was switched on again", |l| {
        l.contains("WARN") && l.contains("switched it on again")
    })
    .await;
    let (code, log) = f.stop().await;
    assert_eq!(code, 0, "{}", log.join("\n"));
    let h = &s.gladly.webhooks()[0];
    assert!(
        h.enabled && h.disabled_at_due_to_retry_limit.is_some(),
        "{h:?}"
    );
    let pf = p.display().to_string();
    let o = bin(dir.path(), &["status", "--pipeline", pf.as_str()], &[]).await;
    assert!(
        o.stdout
            .contains("Gladly last switched it off after failed deliveries"),
        "{o}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_https_gladly_delivers_to_a_trusted_certificate_and_refuses_another() {
    let t0 = "2026-11-04T14:00:00Z";
    let ca =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/ca.pem")).unwrap();
    for trusted in [true, false] {
        let ca = ca.clone();
        let s = start(
            world(7, 20, t0),
            move |c| {
                hooks(c);
                c.webhook_allow_http = false;
                if trusted {
                    c.webhook_root_certs = vec![ca];
                }
            },
            WfmSimConfig::default(),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        // The certificate files are the test's own: a renewal rewrites them.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
        for f in ["server.pem", "server.key"] {
            std::fs::copy(fixtures.join(f), dir.path().join(f)).unwrap();
        }
        let port = free_port();
        let table = webhook_table(port, true).replace(
            &fixtures.display().to_string(),
            &dir.path().display().to_string(),
        );
        let p = pipeline(dir.path(), &s, "", &format!("{FOLLOW}\n{table}"));
        let mut f = Live::start(dir.path(), &p, t0, 120.0);
        if trusted {
            f.wait_for("saying the webhook is on", |l| l.contains("(enabled)"))
                .await;
            f.wait_for("taking deliveries in", |l| l.contains("follow: webhook: "))
                .await;
            // A renewal: the files are written again; the next handshake a second later is
            // served from them, without a restart.
            for n in ["server.pem", "server.key"] {
                std::fs::copy(fixtures.join(n), dir.path().join(n)).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let ca =
                reqwest::Certificate::from_pem(&std::fs::read(fixtures.join("ca.pem")).unwrap())
                    .unwrap();
            let https = reqwest::Client::builder()
                .add_root_certificate(ca)
                .build()
                .unwrap();
            let a = https
                .post(format!("https://localhost:{port}{PATH}"))
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(a.status(), 401);
            f.wait_for("reading the certificate again", |l| {
                l.contains("TLS certificate read again")
            })
            .await;
        } else {
            f.wait_for("saying the webhook could not be switched on", |l| {
                l.contains("webhook: could not make sure of it")
            })
            .await;
        }
        let (code, log) = f.stop().await;
        assert_eq!(code, 0, "{}", log.join("\n"));
        let hooks = s.gladly.webhooks();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].enabled, trusted, "{hooks:?}");
        assert!(hooks[0].url.starts_with("https://localhost:"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_moments_while_deliveries_flow_nothing_is_lost_or_sent_twice() {
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(world(7, 20, t0), hooks, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = hook_pipeline(
        dir.path(),
        &s,
        &format!("batch_size = 20\n{FOLLOW}"),
        free_port(),
    );
    // Moments drawn once from a fixed seed: after the webhook is on, deliveries flow, and the
    // follower dies anywhere (landing, transforming, pushing, answering Gladly).
    let mut seed: u64 = 0x005e_ed0f_4b1d;
    let mut log = Vec::new();
    for _ in 0..3 {
        let mut f = Live::start(dir.path(), &p, &sim_now(&s), 120.0);
        f.wait_for("taking a delivery in", |l| l.contains("follow: webhook: "))
            .await;
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let wait = 100 + (seed >> 33) % 2_000;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        log.extend(f.kill().await);
    }
    // Restarted on the simulator's clock as it is now, and run for ten simulated minutes.
    let now = sim_now(&s);
    let mut f = Live::start(dir.path(), &p, &now, 120.0);
    let until = ms(&now) + 10 * 60_000;
    f.wait_for("a poll past ten more minutes", |l| {
        l.split("follow: polled ")
            .nth(1)
            .and_then(|w| w.split(": ").next())
            .and_then(|w| w.split("..").nth(1))
            .and_then(gladly_wfm::time::parse_ts)
            .is_some_and(|end| end >= until)
    })
    .await;
    let (code, last) = f.stop().await;
    log.extend(last);
    let all = log.join("\n");
    assert_eq!(code, 0, "{all}");
    let root = dir.path().join("output");
    let end = follow_state(&root)["polled_to"].as_i64().unwrap();
    assert_landed_once(&s, &root, end, "killed with deliveries flowing");
    let (b, _bdir) = batch(
        "2026-11-04",
        &gladly_wfm::time::fmt_ts(end),
        "batch_size = 20",
    )
    .await;
    // The same records as a batch run, one open piece per agent and axis, and no two records
    // of one agent and axis at one start (nothing pushed twice under different content; a
    // kill between the WFM's answer and the checkpoint may send a record again, unchanged).
    assert_receiver_equals_batch(&s, &b);
    assert_eq!(s.gladly.webhooks().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_before_midnight_known_late_replaces_the_day_at_the_wfm() {
    // An event that happened just before midnight but was recorded after it (Gladly's own
    // events do this: occurredAt 23:59:59.6, timestamp 00:00:00.3) lands in today and renames
    // the piece carried over midnight (its eventId is the event that opened it). A follower
    // that already pushed the old piece replaces the day (replaceWindow): the WFM then holds
    // the day's pieces exactly, no two at one start. Here the event is the latest of the
    // agent's before midnight, delivered after the first poll pushed the day.
    let t0 = "2026-11-04T14:00:00Z";
    let s = start(world(7, 20, t0), hooks, WfmSimConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = hook_pipeline(dir.path(), &s, FOLLOW, port);
    let mut f = Live::start(dir.path(), &p, t0, 120.0);
    f.wait_for("saying the webhook is on", |l| l.contains("(enabled)"))
        .await;
    f.wait_for("a poll", |l| l.contains("follow: polled")).await;
    let root = dir.path().join("output");
    let midnight = ms("2026-11-04T05:00:00Z");
    let carried = dataset(&root, "agent_status_segments")
        .remove("2026-11-04")
        .unwrap_or_default()
        .into_iter()
        .find(|r| r["axis"] == "availability" && r["start_at"].as_i64() == Some(midnight))
        .expect("a piece carried over midnight");
    let agent = carried["agent_id"].as_str().unwrap().to_string();
    let now = gladly_wfm::time::fmt_ts(s.gladly.world.now());
    let event = serde_json::json!({
        "id": "late-from-yesterday",
        "type": "AGENT_AVAILABILITY/UPDATED",
        "timestamp": now,
        "initiator": {"type": "AGENT", "id": agent},
        "content": {"agentId": agent, "occurredAt": "2026-11-04T04:59:59.999Z", "availableFor": ["VOICE"]},
    });
    let a = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{PATH}"))
        .header("authorization", basic(HOOK_USER, HOOK_PASSWORD))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    f.wait_for("replacing the day at the WFM", |l| {
        l.contains("replacing the day's") && l.contains("2026-11-04")
    })
    .await;
    f.wait_for("a poll after it", |l| l.contains("follow: polled"))
        .await;
    let (code, log) = f.stop().await;
    assert_eq!(code, 0, "{}", log.join("\n"));
    let store = s.wfm.store();
    assert_no_shared_starts(&store);
    let of_day: Vec<_> = store
        .kind(Kind::Tasks)
        .into_iter()
        .filter(|t| t["eventId"].as_str().unwrap().ends_with(":2026-11-04"))
        .collect();
    let ours = dataset(&root, "agent_status_segments")
        .remove("2026-11-04")
        .unwrap_or_default();
    assert_eq!(
        of_day.len(),
        ours.len(),
        "the WFM holds the day's pieces, no more"
    );
    assert!(of_day.iter().any(|t| t["userIdentifier"] == agent.as_str()
        && t["startTime"] == "2026-11-04T05:00:00.000Z"
        && t["availableFor"] == serde_json::json!(["VOICE"])));
}
