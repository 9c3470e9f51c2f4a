//! The WFM push: records derived from curated datasets, in batches of at most `batch_size`, the
//! first batch of each day and kind carrying that day's `replaceWindow`, every batch with an
//! `Idempotency-Key` derived from its content, and a checkpoint after every acknowledged batch
//! so an interrupted push resumes at the first unacknowledged one.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::model::{normalize_email, AgentDim, Axis, State};
use crate::state::{PipelineState, PushCheckpoint, PushedUser};
use crate::time::{self, Ms};
use crate::transform::datasets::SegmentRow;
use crate::transform::workstreams::{ConversationRow, IntervalRow};
use crate::wfm::{PushAnswer, WfmClient, WfmError};

pub const USERS_PATH: &str = "/api/organisation/users/integrations";
pub const TASKS_PATH: &str = "/api/workactivity/taskdata";
pub const CONVERSATIONS_PATH: &str = "/api/workactivity/workstreams";
pub const INTERVALS_PATH: &str = "/api/workactivity/workstreams/intervals";

/// Totals of the receiver's answers, per kind, for the manifest and the summary line.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PushTotals {
    pub batches_sent: u64,
    pub batches_skipped_resumed: u64,
    pub records: u64,
    pub inserted: u64,
    pub updated: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub unknown_users: std::collections::BTreeSet<String>,
    /// The receiver's reasons for rejected records, each with the plan, batch and record key.
    pub errors: Vec<Value>,
    /// Interval records pushed with a null workstream (inboxes no rule matches).
    pub unmatched_workstream: u64,
}

impl PushTotals {
    fn add(&mut self, a: &PushAnswer, plan: &str, batch: usize, records: &[Value]) {
        self.batches_sent += 1;
        self.records += a.received;
        self.inserted += a.inserted;
        self.updated += a.updated;
        self.duplicate += a.duplicate;
        self.rejected += a.rejected;
        self.unknown_users.extend(a.unknown_users.iter().cloned());
        for e in &a.errors {
            if self.errors.len() < 200 {
                let record = e["index"]
                    .as_u64()
                    .and_then(|i| records.get(i as usize))
                    .map(record_key);
                self.errors.push(json!({
                    "plan": plan, "batch": batch + 1, "record": record,
                    "code": e["code"], "message": e["message"],
                }));
            }
        }
    }
}

/// What names a record to a person: its key at the receiver.
fn record_key(r: &Value) -> String {
    for k in ["eventId", "externalId", "email"] {
        if let Some(v) = r[k].as_str() {
            return v.to_string();
        }
    }
    format!(
        "{}|{}|{}",
        r["workstream"].as_str().unwrap_or("(no workstream)"),
        r["channel"].as_str().unwrap_or(""),
        r["intervalStart"].as_str().unwrap_or("")
    )
}

/// Why a push stopped.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Wfm(#[from] WfmError),
    /// The receiver answered 2xx, but its counts do not account for every record sent: nothing
    /// of the batch is trusted (no checkpoint), and the run fails.
    #[error("the WFM's answer to {what} does not account for the records sent: {detail}")]
    Unconfirmed { what: String, detail: String },
    #[error("cannot save the push checkpoint: {0}")]
    Checkpoint(#[from] crate::storage::StorageError),
}

/// Every agent of the newest snapshot as an active user, and every user pushed before that is
/// gone from it as inactive (a deactivated agent must stop being scheduled; it turns active
/// again if it comes back).
pub fn user_records(agents: &[AgentDim], pushed: &BTreeMap<String, PushedUser>) -> Vec<Value> {
    let mut by_email: BTreeMap<String, Value> = BTreeMap::new();
    for a in agents {
        let email = normalize_email(a.email.as_deref().unwrap_or(""));
        if !email.is_empty() {
            let r = json!({"email": email, "integrationIdentifier": a.agent_id, "name": a.name, "isActive": true});
            by_email.insert(email, r);
        }
    }
    for (email, u) in pushed {
        by_email.entry(email.clone()).or_insert_with(|| {
            json!({"email": email, "integrationIdentifier": u.agent_id, "name": u.name, "isActive": false})
        });
    }
    by_email.into_values().collect()
}

/// The users a push of `records` has made known to the WFM, for the next run's comparison.
pub fn remember_users(records: &[Value], pushed: &mut BTreeMap<String, PushedUser>) {
    for r in records {
        if let Some(email) = r["email"].as_str() {
            pushed.insert(
                email.to_string(),
                PushedUser {
                    agent_id: r["integrationIdentifier"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    name: r["name"].as_str().map(str::to_string),
                },
            );
        }
    }
}

/// The WFM's `statusCategory` of a state (wfm-api.md): camel case.
fn category(state: State) -> &'static str {
    match state {
        State::LoggedOut => "loggedOut",
        other => other.as_str(),
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
            let avail = (s.axis == Axis::Availability).then(|| channels_of(&s.label));
            json!({
                "eventId": format!("{}:{day}", s.opened_by),
                "userIdentifier": s.agent_id,
                "userEmail": s.agent_email,
                "axis": s.axis.as_str(),
                "status": s.label,
                "task": s.task,
                "statusCategory": category(s.state),
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

/// Interval totals as records. Rows of inboxes no workstream rule matches go with a null
/// `workstream` (DESIGN §8: the WFM lists them as unmatched volume; nothing is dropped); the
/// second value counts them for the summary.
pub fn interval_records(rows: &[IntervalRow]) -> (Vec<Value>, u64) {
    let unmatched = rows.iter().filter(|r| r.workstream.is_none()).count() as u64;
    let recs = rows
        .iter()
        .map(|r| {
            json!({
                "workstream": r.workstream, "channel": r.channel,
                "intervalStart": time::fmt_ts(r.interval_start),
                "intervalMinutes": r.interval_minutes, "offered": r.offered, "handled": r.handled,
                "withinSla": r.within_sla, "handleTimeSeconds": r.handle_time_seconds,
                "afterContactTimeSeconds": r.after_contact_time_seconds,
            })
        })
        .collect();
    (recs, unmatched)
}

/// Checks that an answer accounts for every record sent (DESIGN §8 "nothing trusted that the
/// WFM did not confirm").
pub fn confirm(answer: &PushAnswer, sent: usize, what: &str) -> Result<(), PushError> {
    let sent = sent as u64;
    let accounted = answer.inserted + answer.updated + answer.duplicate + answer.rejected;
    if answer.received != sent || accounted != answer.received {
        return Err(PushError::Unconfirmed {
            what: what.to_string(),
            detail: format!(
                "sent {sent}, received {}, inserted {}, updated {}, duplicate {}, rejected {}",
                answer.received, answer.inserted, answer.updated, answer.duplicate, answer.rejected
            ),
        });
    }
    Ok(())
}

/// Upserts records by key, without a replace window (what `follow` sends between reconciles).
pub async fn upsert(
    client: &WfmClient,
    put: bool,
    path: &'static str,
    records: &[Value],
    what: &str,
) -> Result<PushAnswer, PushError> {
    let env =
        json!({"integrationId": client.integration_id(), "source": "gladly", "data": records});
    let body = bytes::Bytes::from(env.to_string());
    let key = digest(&[client.session().as_bytes(), path.as_bytes(), body.as_ref()]);
    let answer = client.send(put, path, &body, &key).await?;
    confirm(&answer, records.len(), what)?;
    Ok(answer)
}

pub fn digest(parts: &[&[u8]]) -> String {
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

    /// Every batch's request body, serialised once: the plan's digest, each batch's
    /// idempotency key and the request itself all use these bytes.
    fn bodies(&self, integration: &str) -> Vec<bytes::Bytes> {
        (0..self.batches.len())
            .map(|i| self.envelope(integration, i).to_string().into())
            .collect()
    }
}

/// Identifies a plan's content and its receiver: a checkpoint counts only for both.
fn plan_digest(receiver: &str, bodies: &[bytes::Bytes]) -> String {
    let mut parts: Vec<&[u8]> = vec![receiver.as_bytes()];
    parts.extend(bodies.iter().map(|b| b.as_ref()));
    digest(&parts)
}

/// Sends a plan, resuming after the batches a checkpoint says were acknowledged for the same
/// plan; saves the checkpoint after every batch the receiver confirmed whole. A batch counts as
/// confirmed only when the answer accounts for every record sent (`received` = sent, and
/// `inserted + updated + duplicate + rejected` = `received`); one with rejected records is
/// reported and the plan's checkpoint stays before it, so the next run sends it again (with
/// the same content the receiver answers the same: the rejection stands until the data or the
/// receiver changes, and every run that meets it fails and names it). Returns the number of
/// records rejected.
pub async fn push_plan(
    client: &WfmClient,
    plan: &PushPlan,
    state: &mut PipelineState,
    state_dir: &crate::storage::Dir,
    totals: &mut BTreeMap<String, PushTotals>,
    kind: &str,
    interrupt: &crate::interrupt::Interrupt,
) -> Result<u64, PushError> {
    let integration = client.integration_id().to_string();
    let bodies = plan.bodies(&integration);
    let pd = plan_digest(&client.receiver(), &bodies);
    let durable = state
        .push
        .get(&plan.key)
        .filter(|cp| cp.plan_digest == pd)
        .map(|cp| cp.batches_acknowledged);
    let start = durable
        .max(PlanProgress::read(state_dir, &plan.key, &pd))
        .unwrap_or(0);
    let t = totals.entry(kind.to_string()).or_default();
    t.batches_skipped_resumed += start as u64;
    let mut rejected = 0;
    let mut acknowledged = false;
    for (i, body) in bodies.iter().enumerate().skip(start) {
        if interrupt.requested() {
            return Err(PushError::Wfm(WfmError::Interrupted));
        }
        // The key makes the receiver replay its first answer to a retry of this very request
        // (a timeout after the receiver stored the batch); it names this client's session too,
        // because a later run that sends the same content after different content (a user
        // active, inactive, active again) must be applied, not answered from the replay cache.
        let key = digest(&[
            client.session().as_bytes(),
            integration.as_bytes(),
            plan.key.as_bytes(),
            i.to_string().as_bytes(),
            body.as_ref(),
        ]);
        let answer = client.send(plan.put, plan.path, body, &key).await?;
        let sent = plan.batches[i].len();
        confirm(
            &answer,
            sent,
            &format!("{} batch {} of {}", plan.key, i + 1, plan.batches.len()),
        )?;
        t.add(&answer, &plan.key, i, &plan.batches[i]);
        if answer.rejected > 0 {
            crate::log::warn(format!(
                "the WFM rejected {} of {sent} records of {} batch {}",
                answer.rejected,
                plan.key,
                i + 1
            ));
        }
        rejected += answer.rejected;
        if rejected == 0 {
            let cp = PushCheckpoint {
                plan_digest: pd.clone(),
                batches_total: plan.batches.len(),
                batches_acknowledged: i + 1,
            };
            PlanProgress::write(state_dir, &plan.key, &cp)?;
            state.push.insert(plan.key.clone(), cp);
            acknowledged = true;
        }
        crate::fault_point("push-batch");
    }
    if acknowledged {
        // The plan's checkpoint joins the durable state once, not once per batch.
        state.save(state_dir)?;
    }
    Ok(rejected)
}

/// How far the plan being sent has got, rewritten after every acknowledged batch. The durable
/// state (written with fsync) takes a plan's checkpoint when the plan ends; in between, this
/// small file is replaced without fsync: a fsync per batch cost more than the batch itself (a
/// quarter's backfill sends about 50,000). A killed run keeps it whole; a power cut may lose
/// or tear it, and then the plan resumes from its durable checkpoint and sends some batches
/// again, which the receiver's upserts and the plan's replace window make harmless.
#[derive(serde::Serialize, serde::Deserialize)]
struct PlanProgress {
    key: String,
    checkpoint: PushCheckpoint,
}

impl PlanProgress {
    const FILE: &'static str = "push_progress.json";

    /// The batches acknowledged of the plan `key` with digest `digest`, if the file speaks of
    /// it (an unreadable file is ignored: it only ever saves work).
    fn read(state_dir: &crate::storage::Dir, key: &str, digest: &str) -> Option<usize> {
        let bytes = state_dir.read(Self::FILE).ok()??;
        let p: PlanProgress = serde_json::from_slice(&bytes).ok()?;
        (p.key == key && p.checkpoint.plan_digest == digest)
            .then_some(p.checkpoint.batches_acknowledged)
    }

    fn write(
        state_dir: &crate::storage::Dir,
        key: &str,
        cp: &PushCheckpoint,
    ) -> Result<(), PushError> {
        let p = PlanProgress {
            key: key.to_string(),
            checkpoint: cp.clone(),
        };
        Ok(state_dir.write_unsynced(Self::FILE, serde_json::to_vec(&p).unwrap_or_default())?)
    }
}
