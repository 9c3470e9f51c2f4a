//! The Gladly REST API client: Basic auth, Gladly's rate limits (per method, and the reports'
//! per-minute and in-flight caps), retries, and decoding into the pipeline's records.

pub mod csv_report;
pub mod decode;
pub mod plausible;
pub mod spool;
pub mod timestamps;

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::config::GladlyConfig;
use crate::http::{
    execute, execute_streamed, Answer, BodyFormat, RetryPolicy, SlidingLimiter, Spool, Stats,
    StreamError,
};
use crate::model::{AgentDim, InboxDim, TeamDim};
use crate::time::{self, Ms};
use spool::SpooledBody;

#[derive(Debug, thiserror::Error)]
pub enum GladlyError {
    #[error("Gladly refused the credentials ({detail}) on {what}: check gladly.user and gladly.token; a 403 means the user lacks the API User permission")]
    Auth { what: String, detail: String },
    #[error("Gladly answered {what} with {detail}")]
    Api {
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{0}")]
    Unreachable(#[from] crate::http::Exhausted),
    #[error("Gladly's answer to {what} could not be read: {detail}")]
    Decode { what: String, detail: String },
    /// Too large an answer, or one that could not be spooled to disk.
    #[error("{0}")]
    Body(String),
}

impl GladlyError {
    /// Refused credentials are their own outcome; anything else fails the command.
    pub fn exit(&self) -> crate::exit::Exit {
        match self {
            GladlyError::Auth { .. } => crate::exit::Exit::Refused,
            _ => crate::exit::Exit::Failed,
        }
    }
}

impl From<StreamError> for GladlyError {
    fn from(e: StreamError) -> GladlyError {
        match e {
            StreamError::Exhausted(x) => GladlyError::Unreachable(x),
            other => GladlyError::Body(other.to_string()),
        }
    }
}

pub struct GladlyClient {
    http: reqwest::Client,
    base: String,
    user: String,
    token: crate::config::Secret,
    get_limiter: SlidingLimiter,
    post_limiter: SlidingLimiter,
    reports_per_minute: SlidingLimiter,
    reports_in_flight: Semaphore,
    request_timeout: Duration,
    report_timeout: Duration,
    /// The largest JSON Lines or CSV answer accepted (`gladly.max_answer_mib`).
    pub max_answer_bytes: u64,
    /// How long one day's extraction may take (`gladly.day_timeout_minutes`).
    pub day_timeout: Duration,
    pub policy: RetryPolicy,
    /// Reports share a per-minute budget with every integration of the org: a 429 there can
    /// need most of a minute to clear, so their retries wait longer.
    pub report_policy: RetryPolicy,
    /// The audit's summary is optional: a day is not audited rather than held for minutes of
    /// retries while the shared reports budget is spent on it.
    pub summary_policy: RetryPolicy,
    pub stats: Arc<Stats>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: Option<String>,
    pub name: Option<String>,
    pub timezone: Option<String>,
}

/// A webhook as Gladly shows it (spec §6).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub enabled: bool,
    /// When Gladly last switched it off after failed deliveries (RFC 3339).
    #[serde(default)]
    pub disabled_at_due_to_retry_limit: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAgent {
    id: String,
    name: Option<String>,
    email_address: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawInbox {
    id: String,
    name: Option<String>,
    #[serde(default)]
    disabled: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTeam {
    id: String,
    name: Option<String>,
    #[serde(default)]
    agent_ids: Vec<String>,
}

impl GladlyClient {
    pub fn new(cfg: &GladlyConfig, stats: Arc<Stats>) -> GladlyClient {
        crate::log::add_credential(&cfg.user, cfg.token.expose());
        stats.for_api("gladly");
        let http = crate::http::client_builder()
            .user_agent(concat!("gladly-wfm/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client");
        GladlyClient {
            http,
            base: cfg.base_url.clone(),
            user: cfg.user.clone(),
            token: cfg.token.clone(),
            get_limiter: SlidingLimiter::new(cfg.requests_per_second, Duration::from_secs(1)),
            post_limiter: SlidingLimiter::new(cfg.requests_per_second, Duration::from_secs(1)),
            reports_per_minute: SlidingLimiter::new(
                cfg.reports_per_minute,
                Duration::from_secs(60),
            ),
            reports_in_flight: Semaphore::new(cfg.reports_in_flight as usize),
            request_timeout: Duration::from_secs(cfg.request_timeout_seconds),
            report_timeout: Duration::from_secs(cfg.report_timeout_seconds),
            max_answer_bytes: cfg.max_answer_mib.saturating_mul(1 << 20),
            day_timeout: Duration::from_secs_f64(cfg.day_timeout_minutes * 60.0),
            policy: RetryPolicy::default(),
            report_policy: RetryPolicy {
                max_attempts: 10,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(40),
            },
            summary_policy: RetryPolicy {
                max_attempts: 3,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(40),
            },
            stats,
        }
    }

    fn check(&self, what: &str, a: Answer) -> Result<Answer, GladlyError> {
        match a.status {
            200..=299 => Ok(a),
            401 | 403 => Err(GladlyError::Auth {
                what: what.into(),
                detail: format!("HTTP {}", a.status),
            }),
            // Gladly answers 404 on every path of a wrong organisation host.
            404 => Err(GladlyError::Api {
                what: what.into(),
                status: a.status,
                detail: format!("{} (is gladly.base_url the organisation's full origin, e.g. https://acme.gladly.com?)", a.detail()),
            }),
            _ => Err(GladlyError::Api {
                what: what.into(),
                status: a.status,
                detail: a.detail(),
            }),
        }
    }

    async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Answer, GladlyError> {
        let url = format!("{}{}", self.base, path);
        let a = execute(
            what,
            || {
                self.http
                    .get(&url)
                    .query(query)
                    .basic_auth(&self.user, Some(self.token.expose()))
                    .timeout(self.request_timeout)
            },
            &[&self.get_limiter],
            &self.policy,
            &self.stats,
        )
        .await?;
        self.check(what, a)
    }

    /// A GET whose answer (JSON Lines) is streamed to disk, capped.
    async fn get_streamed(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
        spool_dir: &std::path::Path,
    ) -> Result<SpooledBody, GladlyError> {
        let url = format!("{}{}", self.base, path);
        let body = SpooledBody::new(spool_dir);
        let a = execute_streamed(
            what,
            || {
                self.http
                    .get(&url)
                    .query(query)
                    .basic_auth(&self.user, Some(self.token.expose()))
                    .timeout(self.request_timeout)
            },
            &[&self.get_limiter],
            None,
            &self.policy,
            &self.stats,
            &Spool {
                path: body.path(),
                cap_bytes: self.max_answer_bytes,
                format: BodyFormat::JsonLines,
            },
        )
        .await?;
        self.check(what, a)?;
        Ok(body)
    }

    /// A Reports API call (CSV answer, streamed to disk, capped): counted against the
    /// per-minute limit, at most N in flight (a slot is held per attempt, not through backoff).
    async fn report_post(
        &self,
        path: &str,
        body: serde_json::Value,
        what: &str,
        spool_dir: &std::path::Path,
        policy: &RetryPolicy,
    ) -> Result<SpooledBody, GladlyError> {
        let url = format!("{}{}", self.base, path);
        let out = SpooledBody::new(spool_dir);
        let a = execute_streamed(
            what,
            || {
                self.http
                    .post(&url)
                    .json(&body)
                    .basic_auth(&self.user, Some(self.token.expose()))
                    .timeout(self.report_timeout)
            },
            &[&self.reports_per_minute, &self.post_limiter],
            Some(&self.reports_in_flight),
            policy,
            &self.stats,
            &Spool {
                path: out.path(),
                cap_bytes: self.max_answer_bytes,
                format: BodyFormat::Csv,
            },
        )
        .await?;
        self.check(what, a)?;
        Ok(out)
    }

    fn json<T: serde::de::DeserializeOwned>(what: &str, a: &Answer) -> Result<T, GladlyError> {
        serde_json::from_slice(&a.body).map_err(|e| GladlyError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })
    }

    /// A webhooks API call (spec §6): JSON in, the answer checked. A PATCH that enables a
    /// webhook waits for Gladly's PING to the receiver, so its timeout allows for the 15 s
    /// Gladly gives the receiver.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Answer, GladlyError> {
        let url = format!("{}{}", self.base, path);
        let timeout = self.request_timeout.max(Duration::from_secs(30));
        let a = execute(
            what,
            || {
                let r = self
                    .http
                    .request(method.clone(), &url)
                    .basic_auth(&self.user, Some(self.token.expose()))
                    .timeout(timeout);
                match body {
                    Some(b) => r.json(b),
                    None => r,
                }
            },
            &[&self.post_limiter],
            &self.policy,
            &self.stats,
        )
        .await?;
        self.check(what, a)
    }

    /// The organisation's webhooks (credentials and headers are never shown).
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, GladlyError> {
        let what = "GET /api/v1/webhooks";
        let a = self.get("/api/v1/webhooks", &[], what).await?;
        Self::json(what, &a)
    }

    /// Creates a webhook; its id (from `Location`, or the body).
    pub async fn create_webhook(&self, body: &serde_json::Value) -> Result<String, GladlyError> {
        let what = "POST /api/v1/webhooks";
        let a = self
            .send(reqwest::Method::POST, "/api/v1/webhooks", Some(body), what)
            .await?;
        let from_location = a
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        match from_location {
            Some(id) => Ok(id),
            None => Ok(Self::json::<Webhook>(what, &a)?.id),
        }
    }

    /// Changes some of a webhook's fields (`{"enabled": true}` makes Gladly PING it first).
    pub async fn patch_webhook(
        &self,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<(), GladlyError> {
        let path = format!("/api/v1/webhooks/{id}");
        let what = format!("PATCH {path}");
        self.send(reqwest::Method::PATCH, &path, Some(body), &what)
            .await
            .map(drop)
    }

    /// Deletes a (disabled) webhook.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), GladlyError> {
        let path = format!("/api/v1/webhooks/{id}");
        let what = format!("DELETE {path}");
        self.send(reqwest::Method::DELETE, &path, None, &what)
            .await
            .map(drop)
    }

    pub async fn organization(&self) -> Result<Organization, GladlyError> {
        let a = self
            .get("/api/v1/organization", &[], "GET /api/v1/organization")
            .await?;
        Self::json("GET /api/v1/organization", &a)
    }

    /// Agents with their teams (from `/teams`, which is where Gladly keeps membership).
    pub async fn agents(&self) -> Result<Vec<AgentDim>, GladlyError> {
        Ok(self.agents_and_teams().await?.0)
    }

    /// Agents with their team ids, and the teams with their names (sorted by id).
    pub async fn agents_and_teams(&self) -> Result<(Vec<AgentDim>, Vec<TeamDim>), GladlyError> {
        let a = self
            .get("/api/v1/agents", &[], "GET /api/v1/agents")
            .await?;
        let agents: Vec<RawAgent> = Self::json("GET /api/v1/agents", &a)?;
        let t = self.get("/api/v1/teams", &[], "GET /api/v1/teams").await?;
        let teams: Vec<RawTeam> = Self::json("GET /api/v1/teams", &t)?;
        let mut out: Vec<AgentDim> = agents
            .into_iter()
            .map(|a| AgentDim {
                team_ids: teams
                    .iter()
                    .filter(|t| t.agent_ids.contains(&a.id))
                    .map(|t| t.id.clone())
                    .collect(),
                agent_id: a.id,
                name: a.name,
                email: a.email_address,
            })
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        let mut teams: Vec<TeamDim> = teams
            .into_iter()
            .map(|t| TeamDim {
                team_id: t.id,
                name: t.name,
            })
            .collect();
        teams.sort_by(|a, b| a.team_id.cmp(&b.team_id));
        Ok((out, teams))
    }

    pub async fn inboxes(&self) -> Result<Vec<InboxDim>, GladlyError> {
        let a = self
            .get("/api/v1/inboxes", &[], "GET /api/v1/inboxes")
            .await?;
        let raw: Vec<RawInbox> = Self::json("GET /api/v1/inboxes", &a)?;
        let mut out: Vec<InboxDim> = raw
            .into_iter()
            .map(|i| InboxDim {
                inbox_id: i.id,
                name: i.name,
                disabled: i.disabled,
            })
            .collect();
        out.sort_by(|a, b| a.inbox_id.cmp(&b.inbox_id));
        Ok(out)
    }

    /// Events API: `[start, end)`, JSON Lines body, spooled under `spool_dir`.
    pub async fn events(
        &self,
        start: Ms,
        end: Ms,
        entities: &[&str],
        spool_dir: &std::path::Path,
    ) -> Result<SpooledBody, GladlyError> {
        let mut q = vec![
            ("startAt", time::fmt_ts(start)),
            ("endAt", time::fmt_ts(end)),
        ];
        for e in entities {
            q.push(("entities", e.to_string()));
        }
        let what = format!(
            "GET /api/v1/events {}..{}",
            time::fmt_ts(start),
            time::fmt_ts(end)
        );
        self.get_streamed("/api/v1/events", &q, &what, spool_dir)
            .await
    }

    /// One day of a timestamps report (CSV body, spooled under `spool_dir`), in `tz`.
    pub async fn report(
        &self,
        metric_set: &str,
        tz: Tz,
        day: NaiveDate,
        spool_dir: &std::path::Path,
    ) -> Result<SpooledBody, GladlyError> {
        let body = serde_json::json!({
            "metricSet": metric_set, "timezone": tz.name(),
            "startAt": day.to_string(), "endAt": day.to_string(), "filters": {},
        });
        let what = format!("{metric_set} {day}");
        self.report_post(
            "/api/v1/reports",
            body,
            &what,
            spool_dir,
            &self.report_policy,
        )
        .await
    }

    /// `AgentSummaryV2` of the days `from..=to` in `tz`, at `level` (`daily` or `halfHourly`),
    /// spooled under `spool_dir`: one request against the reports limits.
    pub async fn agent_summary(
        &self,
        tz: Tz,
        (from, to): (NaiveDate, NaiveDate),
        level: &str,
        spool_dir: &std::path::Path,
    ) -> Result<SpooledBody, GladlyError> {
        let body = serde_json::json!({
            "metricSet": "AgentSummaryV2", "timezone": tz.name(),
            "startAt": from.to_string(), "endAt": to.to_string(),
            "aggregationLevel": level, "filters": {},
        });
        let what = if from == to {
            format!("AgentSummaryV2 {from}")
        } else {
            format!("AgentSummaryV2 {from}..{to}")
        };
        self.report_post(
            "/api/v1/reports",
            body,
            &what,
            spool_dir,
            &self.summary_policy,
        )
        .await
    }

    /// Work sessions anchored in `[start, end)` (minute precision; Gladly answers up to a
    /// minute past `end`, which the raw zone's upsert absorbs), spooled under `spool_dir`.
    pub async fn work_sessions(
        &self,
        start: Ms,
        end: Ms,
        spool_dir: &std::path::Path,
    ) -> Result<SpooledBody, GladlyError> {
        let fmt = |m: Ms| time::to_utc(m).format("%Y-%m-%dT%H:%MZ").to_string();
        let body = serde_json::json!({"startAtTime": fmt(start), "endAtTime": fmt(end)});
        let what = format!("work-session-events {}..{}", fmt(start), fmt(end));
        self.report_post(
            "/api/v1/reports/work-session-events",
            body,
            &what,
            spool_dir,
            &self.report_policy,
        )
        .await
    }
}
