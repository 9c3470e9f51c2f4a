//! The WFM push client: client-credentials token (cached, renewed before expiry, fetched anew
//! once on a 401), the envelope, and the shared retrying layer (429 honours `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::WfmConfig;
use crate::http::{execute, Answer, RetryPolicy, SlidingLimiter, Stats};

#[derive(Debug, thiserror::Error)]
pub enum WfmError {
    #[error(
        "the WFM refused the credentials ({detail}): check wfm.client_id and wfm.client_secret"
    )]
    Auth { detail: String },
    #[error("the WFM refused {what}: {detail}")]
    Rejected {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{0}")]
    Unreachable(#[from] crate::http::Exhausted),
    #[error("the WFM's answer to {what} could not be read: {detail}")]
    Decode { what: String, detail: String },
    #[error("interrupted before the next batch")]
    Interrupted,
}

impl WfmError {
    /// Refused credentials are their own outcome; anything else fails the command.
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            WfmError::Auth { .. } => crate::exit::Exit::Refused,
            _ => crate::exit::Exit::Failed,
        }
    }
}

/// The receiver's per-request answer.
#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PushAnswer {
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub unknown_users: Vec<String>,
    pub errors: Vec<Value>,
}

pub struct WfmClient {
    http: reqwest::Client,
    cfg: WfmConfig,
    limiter: SlidingLimiter,
    token: Mutex<Option<(String, Instant)>>,
    pub policy: RetryPolicy,
    pub stats: Arc<Stats>,
    session: String,
}

impl WfmClient {
    /// Unique to this client (process and start time): scopes `Idempotency-Key`s to one run.
    pub fn session(&self) -> &str {
        &self.session
    }

    pub fn new(cfg: &WfmConfig, stats: Arc<Stats>) -> WfmClient {
        crate::log::add_credential(&cfg.client_id, cfg.client_secret.expose());
        stats.for_api("wfm");
        WfmClient {
            http: crate::http::client_builder().build().expect("HTTP client"),
            // The receiver's default limit: 100 requests per 30 s per client.
            limiter: SlidingLimiter::new(cfg.requests_per_30s, Duration::from_secs(30)),
            cfg: cfg.clone(),
            token: Mutex::new(None),
            policy: RetryPolicy::default(),
            stats,
            session: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ),
        }
    }

    pub fn integration_id(&self) -> &str {
        &self.cfg.integration_id
    }

    /// Which receiver and integration this client writes to: push checkpoints are only valid
    /// for the receiver that acknowledged them.
    pub fn receiver(&self) -> String {
        format!("{}|{}", self.cfg.base_url, self.cfg.integration_id)
    }

    async fn token(&self, fresh: bool) -> Result<String, WfmError> {
        let mut cached = self.token.lock().await;
        if !fresh {
            if let Some((t, exp)) = cached.as_ref() {
                if Instant::now() < *exp {
                    return Ok(t.clone());
                }
            }
        }
        let url = format!("{}/api/authority/token", self.cfg.base_url);
        let a = execute(
            "POST /api/authority/token",
            || {
                self.http
                    .post(&url)
                    .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose()))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body("grant_type=client_credentials")
                    .timeout(Duration::from_secs(self.cfg.request_timeout_seconds))
            },
            &[&self.limiter],
            &self.policy,
            &self.stats,
        )
        .await?;
        if a.status == 401 || a.status == 403 {
            return Err(WfmError::Auth {
                detail: format!("HTTP {}", a.status),
            });
        }
        if !a.ok() {
            return Err(WfmError::Rejected {
                what: "the token request".into(),
                status: a.status,
                detail: a.detail(),
            });
        }
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| WfmError::Decode {
            what: "the token request".into(),
            detail: e.to_string(),
        })?;
        let tok = v["data"]["accessToken"].as_str().ok_or(WfmError::Decode {
            what: "the token request".into(),
            detail: "no data.accessToken".into(),
        })?;
        // The bearer token is a secret too: an echoing server must not get it printed.
        crate::log::add_secrets(&[tok.to_string()]);
        let ttl = v["data"]["expiresIn"].as_u64().unwrap_or(3600);
        // Renew a little before expiry (10%, at most a minute), so no request carries a dying token.
        let margin = (ttl / 10).min(60);
        let exp = Instant::now() + Duration::from_secs(ttl.saturating_sub(margin).max(1));
        *cached = Some((tok.to_string(), exp));
        Ok(tok.to_string())
    }

    /// Sends one batch, `body` its envelope as JSON. `method` is PUT for users, POST otherwise.
    pub async fn send(
        &self,
        put: bool,
        path: &str,
        body: &bytes::Bytes,
        idempotency_key: &str,
    ) -> Result<PushAnswer, WfmError> {
        let url = format!("{}{}", self.cfg.base_url, path);
        let what = format!("{} {path}", if put { "PUT" } else { "POST" });
        let mut fresh = false;
        for _ in 0..2 {
            let token = self.token(fresh).await?;
            let a: Answer = execute(
                &what,
                || {
                    let rb = if put {
                        self.http.put(&url)
                    } else {
                        self.http.post(&url)
                    };
                    rb.bearer_auth(&token)
                        .header("Idempotency-Key", idempotency_key)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                        .timeout(Duration::from_secs(self.cfg.request_timeout_seconds))
                },
                &[&self.limiter],
                &self.policy,
                &self.stats,
            )
            .await?;
            match a.status {
                200..=299 => {
                    let v: Value =
                        serde_json::from_slice(&a.body).map_err(|e| WfmError::Decode {
                            what: what.clone(),
                            detail: e.to_string(),
                        })?;
                    let answer: PushAnswer =
                        serde_json::from_value(v["data"].clone()).map_err(|e| {
                            WfmError::Decode {
                                what: what.clone(),
                                detail: e.to_string(),
                            }
                        })?;
                    // The WFM's answers by kind, for the metrics; a push acknowledged.
                    if let Some(kind) = crate::telemetry::kind_of_path(path) {
                        crate::telemetry::wfm_answer(
                            kind,
                            answer.inserted,
                            answer.updated,
                            answer.duplicate,
                            answer.rejected,
                        );
                    }
                    crate::telemetry::last_success("push");
                    return Ok(answer);
                }
                // An expired or revoked token: one fresh token, one more try.
                401 if !fresh => fresh = true,
                401 | 403 => return Err(WfmError::Auth { detail: a.detail() }),
                status => {
                    return Err(WfmError::Rejected {
                        what,
                        status,
                        detail: a.detail(),
                    })
                }
            }
        }
        Err(WfmError::Auth {
            detail: "HTTP 401 with a fresh token".into(),
        })
    }
}
