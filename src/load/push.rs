//! The WFM push: records derived from curated datasets, in batches of at most `batch_size`, the
//! first batch of each day and kind carrying that day's `replaceWindow`, every batch with an
//! `Idempotency-Key` derived from its content, and a checkpoint after every acknowledged batch
//! so an interrupted push resumes at the first unacknowledged one.

use std::collections::BTreeMap;

use futures_util::StreamExt;
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

/// The kinds of record the WFM takes (wfm-api.md §4): their name (in checkpoints, manifests
/// and follow's change keys), where they go, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Users,
    Tasks,
    Conversations,
    Intervals,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Tasks => "tasks",
            Kind::Conversations => "conversations",
            Kind::Intervals => "intervals",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Kind::Users => USERS_PATH,
            Kind::Tasks => TASKS_PATH,
            Kind::Conversations => CONVERSATIONS_PATH,
            Kind::Intervals => INTERVALS_PATH,
        }
    }

    /// Users are PUT (replaced by identifier); the rest are POSTed.
    pub fn put(self) -> bool {
        self == Kind::Users
    }
}

/// A record sent to the WFM: its key at the receiver (what `follow` remembers a digest by),
/// and for a task the instant of the status change it reports (its end once it closed).
pub trait Record: serde::Serialize {
    fn key(&self) -> String;
    fn changed_at(&self) -> Option<Ms> {
        None
    }
}

/// A digest of a record's JSON: the same bytes the WFM is sent.
pub fn record_digest(r: &impl serde::Serialize) -> String {
    digest(&[&serde_json::to_vec(r).expect("a record serialises")])
}

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
    fn add(&mut self, a: &PushAnswer, plan: &PushPlan, batch: usize) {
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
                    .and_then(|i| plan.record(batch, i as usize))
                    .map(|r| record_key(&r));
                self.errors.push(json!({
                    "plan": plan.key, "batch": batch + 1, "record": record,
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

/// A user identifier (wfm-api.md §4). Fields in alphabetical order, like the other records.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub email: String,
    pub integration_identifier: String,
    pub is_active: bool,
    pub name: Option<String>,
}

impl Record for UserRecord {
    fn key(&self) -> String {
        self.email.clone()
    }
}

/// Every agent of the newest snapshot as an active user, and every user pushed before that is
/// gone from it as inactive (a deactivated agent must stop being scheduled; it turns active
/// again if it comes back).
pub fn user_records(agents: &[AgentDim], pushed: &BTreeMap<String, PushedUser>) -> Vec<UserRecord> {
    let mut by_email: BTreeMap<String, UserRecord> = BTreeMap::new();
    for a in agents {
        let email = normalize_email(a.email.as_deref().unwrap_or(""));
        if !email.is_empty() {
            let r = UserRecord {
                email: email.clone(),
                integration_identifier: a.agent_id.clone(),
                is_active: true,
                name: a.name.clone(),
            };
            by_email.insert(email, r);
        }
    }
    for (email, u) in pushed {
        by_email.entry(email.clone()).or_insert_with(|| UserRecord {
            email: email.clone(),
            integration_identifier: u.agent_id.clone(),
            is_active: false,
            name: u.name.clone(),
        });
    }
    by_email.into_values().collect()
}

/// The users a push of `records` has made known to the WFM, for the next run's comparison.
pub fn remember_users(records: &[UserRecord], pushed: &mut BTreeMap<String, PushedUser>) {
    for r in records {
        pushed.insert(
            r.email.clone(),
            PushedUser {
                agent_id: r.integration_identifier.clone(),
                name: r.name.clone(),
            },
        );
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

/// An instant as the WFM writes it (`time::fmt_ts`), serialised straight into the request body.
#[derive(Clone, Copy)]
struct Ts(Ms);

impl serde::Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&time::UtcMs(self.0))
    }
}

// The records below are typed so that a request body is written in one pass, without a map per
// record. Their fields are in alphabetical order on purpose: the bytes are those of the sorted
// JSON objects earlier versions built, so a checkpoint or an idempotency key of a push in
// progress stays valid across an upgrade (and `follow`'s change digests too).

/// Task data: one segment piece (wfm-api.md §4).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRecord<'a> {
    available_for: Option<Vec<&'a str>>,
    axis: &'static str,
    end_time: Option<Ts>,
    event_id: String,
    start_time: Ts,
    status: &'a str,
    status_category: &'static str,
    task: Option<&'a str>,
    user_email: Option<&'a str>,
    user_identifier: &'a str,
}

/// A conversation on one business day (wfm-api.md §4).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationRecord<'a> {
    closed_at: Option<Ts>,
    created_at: Option<Ts>,
    day_start: Ts,
    external_id: String,
    inbox_id: Option<&'a str>,
    inbox_name: Option<&'a str>,
    user_identifier: Option<&'a str>,
    workstream: Option<&'a str>,
}

/// Interval totals of a workstream and channel (wfm-api.md §4).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntervalRecord<'a> {
    after_contact_time_seconds: f64,
    channel: Option<&'a str>,
    handle_time_seconds: f64,
    handled: i64,
    interval_minutes: i64,
    interval_start: Ts,
    offered: i64,
    within_sla: i64,
    workstream: Option<&'a str>,
}

pub fn segment_rows<S: AsRef<str>>(
    day: chrono::NaiveDate,
    segs: &[SegmentRow<S>],
) -> impl Iterator<Item = SegmentRecord<'_>> {
    segs.iter().map(move |s| SegmentRecord {
        available_for: (s.axis == Axis::Availability).then(|| channels_of(s.label.as_ref())),
        axis: s.axis.as_str(),
        end_time: s.end_at.map(Ts),
        event_id: format!("{}:{day}", s.opened_by.as_ref()),
        start_time: Ts(s.start_at),
        status: s.label.as_ref(),
        status_category: category(s.state),
        task: s.task.as_ref().map(AsRef::as_ref),
        user_email: s.agent_email.as_ref().map(AsRef::as_ref),
        user_identifier: s.agent_id.as_ref(),
    })
}

pub fn conversation_rows<S: AsRef<str>>(
    day: chrono::NaiveDate,
    day_start: Ms,
    rows: &[ConversationRow<S>],
) -> impl Iterator<Item = ConversationRecord<'_>> {
    rows.iter().map(move |r| ConversationRecord {
        closed_at: r.closed_at.map(Ts),
        created_at: r.created_at.map(Ts),
        day_start: Ts(day_start),
        external_id: format!("{}:{day}", r.conversation_id.as_ref()),
        inbox_id: r.inbox_id.as_ref().map(AsRef::as_ref),
        inbox_name: r.inbox_name.as_ref().map(AsRef::as_ref),
        user_identifier: r.agent_id.as_ref().map(AsRef::as_ref),
        workstream: r.workstream.as_ref().map(AsRef::as_ref),
    })
}

/// Interval totals as records. Rows of inboxes no workstream rule matches go with a null
/// `workstream` (DESIGN §8: the WFM lists them as unmatched volume; nothing is dropped); the
/// second value counts them for the summary.
pub fn interval_rows(rows: &[IntervalRow]) -> (impl Iterator<Item = IntervalRecord<'_>>, u64) {
    let unmatched = rows.iter().filter(|r| r.workstream.is_none()).count() as u64;
    let recs = rows.iter().map(|r| IntervalRecord {
        after_contact_time_seconds: r.after_contact_time_seconds,
        channel: r.channel.as_deref(),
        handle_time_seconds: r.handle_time_seconds,
        handled: r.handled,
        interval_minutes: r.interval_minutes,
        interval_start: Ts(r.interval_start),
        offered: r.offered,
        within_sla: r.within_sla,
        workstream: r.workstream.as_deref(),
    });
    (recs, unmatched)
}

impl Record for SegmentRecord<'_> {
    fn key(&self) -> String {
        self.event_id.clone()
    }
    fn changed_at(&self) -> Option<Ms> {
        Some(self.end_time.unwrap_or(self.start_time).0)
    }
}

impl SegmentRecord<'_> {
    pub fn start(&self) -> Ms {
        self.start_time.0
    }
}

impl Record for ConversationRecord<'_> {
    fn key(&self) -> String {
        self.external_id.clone()
    }
}

impl Record for IntervalRecord<'_> {
    /// Workstream, channel and interval start (a missing workstream or channel is empty).
    fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.workstream.unwrap_or(""),
            self.channel.unwrap_or(""),
            time::UtcMs(self.interval_start.0)
        )
    }
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
pub async fn upsert<R: serde::Serialize>(
    client: &WfmClient,
    kind: Kind,
    records: &[R],
    what: &str,
) -> Result<PushAnswer, PushError> {
    let mut body = Vec::new();
    write_envelope(&mut body, client.integration_id(), records, None);
    send_confirmed(
        client,
        kind.put(),
        kind.path(),
        &body.into(),
        records.len(),
        what,
    )
    .await
}

/// Sends one body of `n` records (keyed by its content for the receiver's idempotency) and
/// checks the answer accounts for them all.
async fn send_confirmed(
    client: &WfmClient,
    put: bool,
    path: &'static str,
    body: &bytes::Bytes,
    n: usize,
    what: &str,
) -> Result<PushAnswer, PushError> {
    let key = digest(&[client.session().as_bytes(), path.as_bytes(), body.as_ref()]);
    let answer = client.send(put, path, body, &key).await?;
    confirm(&answer, n, what)?;
    Ok(answer)
}

/// Replaces a day's records of `kind` whole: the first batch carries the day's
/// `replaceWindow` (the receiver deletes what it holds for the window, then stores the batch),
/// the others add the rest. What `follow` sends when a record it pushed earlier is no longer
/// among the day's (an event of the day before its start, known only later, renamed the piece
/// carried over midnight): upserts cannot remove it. Returns the answers summed.
pub async fn replace<R: serde::Serialize>(
    client: &WfmClient,
    kind: Kind,
    day: chrono::NaiveDate,
    window: (Ms, Ms),
    records: &[R],
    batch_size: usize,
    what: &str,
) -> Result<PushAnswer, PushError> {
    let plan = PushPlan::of(
        kind,
        Some((day, window)),
        records,
        batch_size,
        client.integration_id(),
    );
    let mut total = PushAnswer::default();
    for (body, n) in plan.bodies.iter().zip(&plan.counts) {
        let key = digest(&[
            client.session().as_bytes(),
            plan.path.as_bytes(),
            body.as_ref(),
        ]);
        let answer = client.send(plan.put, plan.path, body, &key).await?;
        confirm(&answer, *n, what)?;
        total.received += answer.received;
        total.inserted += answer.inserted;
        total.updated += answer.updated;
        total.duplicate += answer.duplicate;
        total.rejected += answer.rejected;
        total.errors.extend(answer.errors);
    }
    Ok(total)
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

/// One kind of record for one window (a day), ready to send: each batch's request body
/// serialised once, records written straight into it. The bodies are all the plan keeps (no
/// text per record beside them, no second copy to send): a 90-day push held three copies of a
/// day's records at once (per-record texts and the bodies of the day being sent, the texts of
/// the day built ahead), the largest part of the backfill's peak memory.
pub struct PushPlan {
    pub key: String,
    pub path: &'static str,
    pub put: bool,
    pub window: Option<(Ms, Ms)>,
    bodies: Vec<bytes::Bytes>,
    /// Records in each batch.
    counts: Vec<usize>,
}

impl PushPlan {
    /// The plan of one kind of record: for a day (keyed `kind/day`, with its replace window)
    /// or for no day (users).
    pub fn of<R: serde::Serialize>(
        kind: Kind,
        day: Option<(chrono::NaiveDate, (Ms, Ms))>,
        records: impl IntoIterator<Item = R>,
        batch_size: usize,
        integration: &str,
    ) -> PushPlan {
        let key = match day {
            Some((d, _)) => format!("{}/{d}", kind.as_str()),
            None => kind.as_str().to_string(),
        };
        let window = day.map(|(_, w)| w);
        PushPlan::new(
            key,
            kind.path(),
            kind.put(),
            window,
            records,
            batch_size,
            integration,
        )
    }

    /// `integration` is the receiver's integration id, which every body names.
    pub fn new<R: serde::Serialize>(
        key: String,
        path: &'static str,
        put: bool,
        window: Option<(Ms, Ms)>,
        records: impl IntoIterator<Item = R>,
        batch_size: usize,
        integration: &str,
    ) -> PushPlan {
        let batch_size = batch_size.max(1);
        let mut bodies: Vec<bytes::Bytes> = Vec::new();
        let mut counts = Vec::new();
        let mut records = records.into_iter().peekable();
        // An empty day still replaces what an earlier run stored for it (one empty batch).
        while records.peek().is_some() || (bodies.is_empty() && window.is_some()) {
            let first = bodies.is_empty();
            // Sized by the batch before (the last one of a plan is often smaller).
            let mut body = Vec::with_capacity(bodies.last().map_or(4096, |b| b.len() * 9 / 8));
            let batch = records.by_ref().take(batch_size);
            let n = write_envelope(&mut body, integration, batch, window.filter(|_| first));
            bodies.push(sealed(body));
            counts.push(n);
        }
        PushPlan {
            key,
            path,
            put,
            window,
            bodies,
            counts,
        }
    }

    pub fn batches(&self) -> usize {
        self.bodies.len()
    }

    /// Record `index` of batch `batch`, read back from its body to name it (only for a
    /// rejected record).
    fn record(&self, batch: usize, index: usize) -> Option<Value> {
        let body: Value = serde_json::from_slice(self.bodies.get(batch)?).ok()?;
        body["data"].get(index).cloned()
    }
}

/// A finished body as the bytes to send. `Bytes` keeps a vector's spare capacity, so one that
/// outgrew its estimate (and doubled) is trimmed first; one within a quarter of its length is
/// kept as it is (no copy).
fn sealed(mut body: Vec<u8>) -> bytes::Bytes {
    if body.capacity() - body.len() > body.len() / 4 {
        body.shrink_to_fit();
    }
    bytes::Bytes::from(body)
}

/// Writes a request body (wfm-api.md §3) around `records`, each serialised straight into it;
/// returns how many were written. Written by hand, in the bytes `serde_json` writes for the
/// envelope as a sorted map (what earlier versions sent and digested).
fn write_envelope<R: serde::Serialize>(
    s: &mut Vec<u8>,
    integration: &str,
    records: impl IntoIterator<Item = R>,
    window: Option<(Ms, Ms)>,
) -> usize {
    use std::io::Write;
    s.extend_from_slice(b"{\"data\":[");
    let mut n = 0;
    for r in records {
        if n > 0 {
            s.push(b',');
        }
        serde_json::to_writer(&mut *s, &r).expect("a record serialises");
        n += 1;
    }
    s.extend_from_slice(b"],\"integrationId\":");
    serde_json::to_writer(&mut *s, integration).expect("a string serialises");
    if let Some((start, end)) = window {
        write!(
            s,
            ",\"replaceWindow\":{{\"end\":\"{}\",\"start\":\"{}\"}}",
            time::UtcMs(end),
            time::UtcMs(start)
        )
        .expect("writing to memory");
    }
    s.extend_from_slice(b",\"source\":\"gladly\"}");
    n
}

/// Batches of a plan in flight at once after its first: two keep this process and the
/// receiver busy at the same time (a 7-day push took the sum of both sides' CPU time, one
/// waiting for the other).
const IN_FLIGHT: usize = 2;

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
    let integration = client.integration_id();
    let bodies = &plan.bodies;
    let pd = plan_digest(&client.receiver(), bodies);
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
    // The key makes the receiver replay its first answer to a retry of this very request
    // (a timeout after the receiver stored the batch); it names this client's session too,
    // because a later run that sends the same content after different content (a user
    // active, inactive, active again) must be applied, not answered from the replay cache.
    let send = |i: usize| {
        let body = &bodies[i];
        let key = digest(&[
            client.session().as_bytes(),
            integration.as_bytes(),
            plan.key.as_bytes(),
            i.to_string().as_bytes(),
            body.as_ref(),
        ]);
        async move {
            if interrupt.requested() {
                return Err(WfmError::Interrupted);
            }
            client.send(plan.put, plan.path, body, &key).await
        }
    };
    // The first batch goes alone: it carries the replace window, whose deletion must come
    // before any later batch is stored. The others go IN_FLIGHT at a time, so this process
    // builds and reads while the receiver stores; their answers are taken in order, so the
    // checkpoint still counts the batches acknowledged from the first on. A batch sent ahead
    // of a failure is sent again by the next run, which its keys make harmless.
    let first = (start == 0 && !bodies.is_empty()).then(|| send(0));
    let first = futures_util::stream::iter(first).buffered(1);
    let rest =
        futures_util::stream::iter((start.max(1)..bodies.len()).map(send)).buffered(IN_FLIGHT);
    let mut answers = std::pin::pin!(first.chain(rest));
    let mut i = start;
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        let sent = plan.counts[i];
        confirm(
            &answer,
            sent,
            &format!("{} batch {} of {}", plan.key, i + 1, plan.batches()),
        )?;
        t.add(&answer, plan, i);
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
                batches_total: plan.batches(),
                batches_acknowledged: i + 1,
            };
            PlanProgress::write(state_dir, &plan.key, &cp)?;
            state.push.insert(plan.key.clone(), cp);
            acknowledged = true;
        }
        crate::fault_point("push-batch");
        i += 1;
    }
    if acknowledged {
        // The plan's checkpoint joins the durable state once, not once per batch.
        state.save(state_dir)?;
    }
    Ok(rejected)
}

/// How far the plan being sent has got, rewritten after every acknowledged batch. The durable
/// state (written with fsync) takes a plan's checkpoint when the plan ends; in between, this
/// small file is rewritten in place without fsync: a fsync per batch cost more than the batch
/// itself (a quarter's backfill sends about 50,000), and a rename per batch as much as building
/// it. A run killed after a write keeps it whole; one killed mid-write, or a power cut, may
/// leave it empty or torn, and then the plan resumes from its durable checkpoint and sends some
/// batches again, which the receiver's upserts and the plan's replace window make harmless.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(axis: Axis, label: &str, end: Option<Ms>) -> SegmentRow {
        SegmentRow {
            agent_id: "WmeA3Y51Q5ayCAaZ1AotIA".into(),
            agent_email: Some("ana@example.com".into()),
            axis,
            state: if axis == Axis::Status {
                State::Away
            } else {
                State::Available
            },
            label: label.into(),
            task: Some("Agent Status – Went Away \"quoted\"".into()),
            start_at: 1_714_572_003_120,
            end_at: end,
            opened_by: "ev1".into(),
        }
    }

    fn day() -> chrono::NaiveDate {
        "2024-05-01".parse().unwrap()
    }

    const DAY_START: Ms = 1_714_536_000_000;
    const DAY_END: Ms = 1_714_622_400_000;

    fn segments() -> Vec<SegmentRow> {
        vec![
            segment(Axis::Status, "Lunch", Some(1_714_573_900_000)),
            segment(Axis::Availability, "AvailableFor:MESSAGING,VOICE", None),
            segment(Axis::Availability, "Unavailable", None),
        ]
    }

    fn conversations() -> Vec<ConversationRow> {
        vec![ConversationRow {
            conversation_id: "c1".into(),
            customer_id: None,
            inbox_id: Some("in1".into()),
            inbox_name: Some("Customer_Support".into()),
            workstream: None,
            agent_id: None,
            created_at: Some(1_714_571_700_000),
            closed_at: None,
            reopened_count: 0,
        }]
    }

    fn intervals() -> Vec<IntervalRow> {
        vec![IntervalRow {
            workstream: Some("Customer_Support".into()),
            channel: Some("EMAIL".into()),
            interval_start: 1_714_572_000_000,
            interval_minutes: 15,
            offered: 37,
            handled: 31,
            within_sla: 28,
            handle_time_seconds: 9420.0,
            after_contact_time_seconds: 1310.5,
        }]
    }

    /// The bodies are written by hand around typed records; they must be, byte for byte, what
    /// `serde_json` writes for the same envelope and records as sorted maps: what earlier
    /// versions sent, digested and keyed (a push in progress resumes across the upgrade).
    #[test]
    fn bodies_are_the_bytes_of_the_sorted_json_envelope() {
        let (day, segs, convs, ivs) = (day(), segments(), conversations(), intervals());
        let window = Some((DAY_START, DAY_END));
        let cases: Vec<(Vec<Value>, PushPlan)> = vec![
            (
                values(segment_rows(day, &segs)),
                PushPlan::new(
                    "t".into(),
                    TASKS_PATH,
                    false,
                    window,
                    segment_rows(day, &segs),
                    2,
                    "gladly-\"prod\"",
                ),
            ),
            (
                values(conversation_rows(day, DAY_START, &convs)),
                PushPlan::new(
                    "c".into(),
                    CONVERSATIONS_PATH,
                    false,
                    window,
                    conversation_rows(day, DAY_START, &convs),
                    2,
                    "gladly-\"prod\"",
                ),
            ),
            (
                values(interval_rows(&ivs).0),
                PushPlan::new(
                    "i".into(),
                    INTERVALS_PATH,
                    false,
                    None,
                    interval_rows(&ivs).0,
                    2,
                    "gladly-\"prod\"",
                ),
            ),
        ];
        for (values, plan) in cases {
            assert_eq!(plan.batches(), values.len().div_ceil(2), "{}", plan.key);
            for (i, chunk) in values.chunks(2).enumerate() {
                assert_eq!(plan.counts[i], chunk.len());
                for (j, v) in chunk.iter().enumerate() {
                    assert_eq!(plan.record(i, j).as_ref(), Some(v), "{} {i} {j}", plan.key);
                }
                let mut env =
                    json!({"integrationId": "gladly-\"prod\"", "source": "gladly", "data": chunk});
                if let (0, Some((s, e))) = (i, plan.window) {
                    env["replaceWindow"] =
                        json!({"start": time::fmt_ts(s), "end": time::fmt_ts(e)});
                }
                assert_eq!(
                    std::str::from_utf8(&plan.bodies[i]).unwrap(),
                    env.to_string(),
                    "{} batch {i}",
                    plan.key
                );
            }
        }
    }

    /// An empty day still sends one empty batch with its window, to replace what an earlier run
    /// stored; with no window there is nothing to send.
    #[test]
    fn an_empty_day_sends_one_empty_batch_only_with_a_window() {
        let window = Some((DAY_START, DAY_END));
        let none: [SegmentRecord; 0] = [];
        let empty = PushPlan::new("e".into(), TASKS_PATH, false, window, none, 2, "x");
        assert_eq!(
            std::str::from_utf8(&empty.bodies[0]).unwrap(),
            json!({"integrationId": "x", "source": "gladly", "data": [],
                   "replaceWindow": {"start": time::fmt_ts(DAY_START),
                                     "end": time::fmt_ts(DAY_END)}})
            .to_string()
        );
        assert_eq!((empty.batches(), empty.counts[0]), (1, 0));
        let none: [SegmentRecord; 0] = [];
        assert_eq!(
            PushPlan::new("e".into(), TASKS_PATH, false, None, none, 2, "x").batches(),
            0
        );
    }

    #[test]
    fn segment_records_carry_instants_the_status_category_and_sorted_channels() {
        let (day, segs) = (day(), segments());
        let first = &values(segment_rows(day, &segs))[0];
        assert_eq!(first["startTime"], "2024-05-01T14:00:03.120Z");
        assert_eq!(first["endTime"], "2024-05-01T14:31:40.000Z");
        assert_eq!(first["statusCategory"], "away");
        assert_eq!(
            values(segment_rows(day, &segs))[1]["availableFor"],
            json!(["MESSAGING", "VOICE"])
        );
        assert_eq!(
            values(segment_rows(day, &segs))[2]["availableFor"],
            json!([])
        );
    }

    /// Each record's digest is that of its JSON value as built before.
    fn assert_digests_match(recs: Vec<String>, vals: Vec<Value>) {
        for (d, v) in recs.iter().zip(&vals) {
            assert_eq!(d, &digest(&[v.to_string().as_bytes()]), "{v}");
        }
    }

    /// follow's change digests are those of the JSON values earlier versions built.
    #[test]
    fn change_digests_are_those_of_the_json_values() {
        let (day, segs, ivs) = (day(), segments(), intervals());
        assert_digests_match(
            segment_rows(day, &segs)
                .map(|r| record_digest(&r))
                .collect(),
            values(segment_rows(day, &segs)),
        );
        assert_digests_match(
            interval_rows(&ivs).0.map(|r| record_digest(&r)).collect(),
            values(interval_rows(&ivs).0),
        );
    }

    /// A user record: the e-mail normalised, and its digest that of its JSON value.
    #[test]
    fn user_records_normalise_the_email_and_digest_their_json() {
        let users = user_records(
            &[AgentDim {
                agent_id: "A1".into(),
                name: Some("Ann".into()),
                email: Some(" Ann@Example.com ".into()),
                team_ids: vec![],
            }],
            &BTreeMap::new(),
        );
        assert_eq!(
            serde_json::to_value(&users[0]).unwrap(),
            json!({"email": "ann@example.com", "integrationIdentifier": "A1", "name": "Ann", "isActive": true})
        );
        assert_digests_match(
            users.iter().map(record_digest).collect(),
            values(users.iter()),
        );
    }

    fn values<R: serde::Serialize>(recs: impl Iterator<Item = R>) -> Vec<Value> {
        recs.map(|r| serde_json::to_value(r).unwrap()).collect()
    }
}
