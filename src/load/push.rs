//! The WFM push: records derived from curated datasets, in batches of at most `batch_size`, the
//! first batch of each day and kind carrying that day's `replaceWindow`, every batch with an
//! `Idempotency-Key` derived from its content, and a checkpoint after every acknowledged batch
//! so an interrupted push resumes at the first unacknowledged one.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::{normalize_email, AgentDim};
use crate::state::{PipelineState, PushCheckpoint};
use crate::time::{self, Ms};
use crate::transform::datasets::SegmentRow;
use crate::transform::workstreams::{ConversationRow, IntervalRow};
use crate::wfm::{PushAnswer, WfmClient, WfmError};

pub const USERS_PATH: &str = "/api/organisation/users/integrations";
pub const TASKS_PATH: &str = "/api/workactivity/taskdata";
pub const CONVERSATIONS_PATH: &str = "/api/workactivity/workstreams";
pub const INTERVALS_PATH: &str = "/api/workactivity/workstreams/intervals";

/// Totals of the receiver's answers, per kind, for the manifest and the summary line.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushTotals {
    pub batches_sent: u64,
    pub batches_skipped_resumed: u64,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub unknown_users: std::collections::BTreeSet<String>,
    pub errors: Vec<Value>,
    /// Interval rows with no workstream (an unmatched inbox): kept in Parquet, not pushed.
    pub skipped_no_workstream: u64,
}

impl PushTotals {
    fn add(&mut self, a: &PushAnswer) {
        self.batches_sent += 1;
        self.records += a.received;
        self.inserted += a.inserted;
        self.updated += a.updated;
        self.duplicate += a.duplicate;
        self.rejected += a.rejected;
        self.unknown_users.extend(a.unknown_users.iter().cloned());
        for e in &a.errors {
            if self.errors.len() < 50 {
                self.errors.push(e.clone());
            }
        }
    }
}

pub fn user_records(agents: &[AgentDim]) -> Vec<Value> {
    let mut recs: Vec<Value> = agents
        .iter()
        .filter_map(|a| {
            let email = normalize_email(a.email.as_deref()?);
            (!email.is_empty()).then(|| {
                json!({"email": email, "integrationIdentifier": a.agent_id, "name": a.name, "isActive": true})
            })
        })
        .collect();
    recs.sort_by(|a, b| a["email"].as_str().cmp(&b["email"].as_str()));
    recs
}

fn category(state: &str) -> &str {
    match state {
        "logged_out" => "loggedOut",
        other => other,
    }
}

/// `AvailableFor:MESSAGING,VOICE` → ["MESSAGING","VOICE"]; `Unavailable` → [].
fn channels_of(label: &str) -> Vec<&str> {
    label
        .strip_prefix("AvailableFor:")
        .map(|c| c.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

pub fn segment_records(day: chrono::NaiveDate, segs: &[SegmentRow]) -> Vec<Value> {
    segs.iter()
        .map(|s| {
            let avail = (s.axis == "availability").then(|| channels_of(&s.label));
            json!({
                "eventId": format!("{}:{day}", s.opened_by),
                "userIdentifier": s.agent_id,
                "userEmail": s.agent_email,
                "axis": s.axis,
                "status": s.label,
                "task": s.task,
                "statusCategory": category(&s.state),
                "availableFor": avail,
                "startTime": time::fmt_ts(s.start_at),
                "endTime": s.end_at.map(time::fmt_ts),
            })
        })
        .collect()
}

pub fn conversation_records(
    day: chrono::NaiveDate,
    day_start: Ms,
    rows: &[ConversationRow],
) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "externalId": format!("{}:{day}", r.conversation_id),
                "dayStart": time::fmt_ts(day_start),
                "workstream": r.workstream,
                "inboxId": r.inbox_id,
                "inboxName": r.inbox_name,
                "createdAt": r.created_at.map(time::fmt_ts),
                "closedAt": r.closed_at.map(time::fmt_ts),
                "userIdentifier": r.agent_id,
            })
        })
        .collect()
}

/// Interval totals as records; rows without a workstream or channel cannot be keyed and are
/// counted instead (they stay in the Parquet).
pub fn interval_records(rows: &[IntervalRow]) -> (Vec<Value>, u64) {
    let mut skipped = 0;
    let recs = rows
        .iter()
        .filter_map(|r| {
            let (Some(w), Some(c)) = (&r.workstream, &r.channel) else {
                skipped += 1;
                return None;
            };
            Some(json!({
                "workstream": w, "channel": c, "intervalStart": time::fmt_ts(r.interval_start),
                "intervalMinutes": r.interval_minutes, "offered": r.offered, "handled": r.handled,
                "withinSla": r.within_sla, "handleTimeSeconds": r.handle_time_seconds,
                "afterContactTimeSeconds": r.after_contact_time_seconds,
            }))
        })
        .collect();
    (recs, skipped)
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One kind of record for one window (a day), ready to send.
pub struct PushPlan {
    pub key: String,
    pub path: &'static str,
    pub put: bool,
    pub window: Option<(Ms, Ms)>,
    pub batches: Vec<Vec<Value>>,
}

impl PushPlan {
    pub fn new(
        key: String,
        path: &'static str,
        put: bool,
        window: Option<(Ms, Ms)>,
        records: Vec<Value>,
        batch_size: usize,
    ) -> PushPlan {
        let mut batches: Vec<Vec<Value>> = records
            .chunks(batch_size.max(1))
            .map(|c| c.to_vec())
            .collect();
        if batches.is_empty() && window.is_some() {
            // An empty day still replaces what an earlier run stored for it.
            batches.push(Vec::new());
        }
        PushPlan {
            key,
            path,
            put,
            window,
            batches,
        }
    }

    fn envelope(&self, integration: &str, i: usize) -> Value {
        let mut env =
            json!({"integrationId": integration, "source": "gladly", "data": self.batches[i]});
        if i == 0 {
            if let Some((s, e)) = self.window {
                env["replaceWindow"] = json!({"start": time::fmt_ts(s), "end": time::fmt_ts(e)});
            }
        }
        env
    }

    /// Identifies the plan's content and its receiver: a checkpoint counts only for both.
    fn plan_digest(&self, receiver: &str, integration: &str) -> String {
        let bodies: Vec<String> = (0..self.batches.len())
            .map(|i| self.envelope(integration, i).to_string())
            .collect();
        let mut parts: Vec<&[u8]> = vec![receiver.as_bytes()];
        parts.extend(bodies.iter().map(|b| b.as_bytes()));
        digest(&parts)
    }
}

/// Sends a plan, resuming after the batches a checkpoint says were acknowledged for the same
/// plan; saves the checkpoint after every acknowledged batch.
pub async fn push_plan(
    client: &WfmClient,
    plan: &PushPlan,
    state: &mut PipelineState,
    state_dir: &Path,
    totals: &mut BTreeMap<String, PushTotals>,
    kind: &str,
) -> Result<(), WfmError> {
    let integration = client.integration_id().to_string();
    let pd = plan.plan_digest(&client.receiver(), &integration);
    let start = match state.push.get(&plan.key) {
        Some(cp) if cp.plan_digest == pd => cp.batches_acknowledged,
        _ => 0,
    };
    let t = totals.entry(kind.to_string()).or_default();
    t.batches_skipped_resumed += start as u64;
    for i in start..plan.batches.len() {
        let env = plan.envelope(&integration, i);
        let body = env.to_string();
        let key = digest(&[
            integration.as_bytes(),
            plan.key.as_bytes(),
            i.to_string().as_bytes(),
            body.as_bytes(),
        ]);
        let answer = client.send(plan.put, plan.path, &env, &key).await?;
        t.add(&answer);
        state.push.insert(
            plan.key.clone(),
            PushCheckpoint {
                plan_digest: pd.clone(),
                batches_total: plan.batches.len(),
                batches_acknowledged: i + 1,
            },
        );
        state.save(state_dir).map_err(|e| WfmError::Decode {
            what: "the push checkpoint".into(),
            detail: e.to_string(),
        })?;
        crate::fault_point("push-batch");
    }
    Ok(())
}
