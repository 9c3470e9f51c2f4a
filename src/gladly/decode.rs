//! Decoding Gladly answers: Events API JSON Lines and Reports API CSV, read as they stream
//! from disk, into the pipeline's records. Unknown fields are ignored; unknown event types and
//! unreadable lines or rows (a malformed line, a missing column, invalid UTF-8, a value out of
//! the plausible range) are set aside, counted, with where and why: never a crash, never
//! silently dropped. An answer whose rows are mostly unreadable fails its day
//! (`Decoded::check`, the rule in `plausible`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use chrono_tz::Tz;
use serde::Deserialize;

use super::csv_report::{read_rows, CellError, CsvError, Row};
use super::plausible;
use super::timestamps::{self, Hint};
use crate::model::{
    derive_event_id, AgentEvent, AgentEventKind, ConversationEvent, ConversationEventKind,
    SetAside, Source, WorkSession,
};
use crate::time::Ms;

/// The request an answer belongs to: what to call it in messages, the window it asked for
/// (plausible instants lie near it) and the timezone a timestamp without offset is in.
#[derive(Clone, Debug)]
pub struct Request {
    pub what: String,
    pub start: Ms,
    pub end: Ms,
    pub tz: Tz,
}

impl Request {
    pub fn new(what: impl Into<String>, start: Ms, end: Ms, tz: Tz) -> Request {
        Request {
            what: what.into(),
            start,
            end,
            tz,
        }
    }

    /// Reads a timestamp cell and checks it lies near the window.
    fn instant(&self, column: &str, value: &str, hint: Hint) -> Result<Ms, RowError> {
        let ms = timestamps::parse(value, self.tz, hint)
            .ok_or_else(|| RowError::bad(column, value, "not a timestamp"))?;
        plausible::instant(ms, self.start, self.end)
            .map_err(|why| RowError::bad(column, value, why))
    }
}

/// Why an answer as a whole could not be decoded, or is not trusted. (A row that cannot be read
/// is set aside instead: `RowError`.)
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A read error of the body as it streamed.
    #[error("{what}: reading the body: {source}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A CSV report whose header or framing could not be read.
    #[error("{what}: {source}")]
    Csv {
        what: String,
        #[source]
        source: CsvError,
    },
    /// The answer's rows are mostly unreadable (`plausible::too_many_unreadable`): named by the
    /// column that failed most and a value from it.
    #[error(
        "{what}: {unreadable} of {total} rows could not be read (more than {} % and more than {}), so the answer is not trusted; column `{column}` failed in {count}, e.g. `{}`",
        plausible::MAX_UNREADABLE_SHARE * 100.0,
        plausible::MAX_UNREADABLE_ROWS,
        sample(value)
    )]
    Untrusted {
        what: String,
        unreadable: usize,
        total: usize,
        column: String,
        count: usize,
        value: String,
    },
}

/// Why a row is set aside.
#[derive(Debug)]
struct RowError {
    /// The column (or JSON field) that could not be read, with its value; `None` for a row
    /// of an unknown event type, which is Gladly's additive change, not a broken answer.
    unreadable: Option<(String, String)>,
    reason: String,
}

impl RowError {
    fn bad(column: &str, value: &str, why: impl std::fmt::Display) -> RowError {
        RowError {
            unreadable: Some((column.to_string(), value.to_string())),
            reason: format!("bad {column} `{}`: {why}", sample(value)),
        }
    }

    fn blank(column: &str) -> RowError {
        RowError {
            unreadable: Some((column.to_string(), String::new())),
            reason: format!("blank {column}"),
        }
    }

    fn unknown_type(t: &str) -> RowError {
        RowError {
            unreadable: None,
            reason: format!("unknown event type {t}"),
        }
    }
}

impl From<CellError> for RowError {
    fn from(e: CellError) -> RowError {
        RowError {
            unreadable: Some((e.column, e.value)),
            reason: e.reason,
        }
    }
}

/// A value as messages show it: at most 60 characters.
fn sample(v: &str) -> String {
    if v.chars().count() > 60 {
        format!("{}…", v.chars().take(60).collect::<String>())
    } else {
        v.to_string()
    }
}

/// The key the rows of one answer are deduplicated by, the raw zone's own: of rows with one key
/// the last one read is kept, as the raw zone's merges keep it. So an answer costs memory in
/// its distinct rows, not in its size (a report padded with repeats, an overlap read twice).
/// `None`: a row that is kept whatever (one that is never stored).
pub trait Keyed {
    fn key(&self) -> Option<u128>;
}

/// A derived event id is 32 hex digits: itself the key.
fn id_key(id: &str) -> u128 {
    u128::from_str_radix(id, 16).unwrap_or_else(|_| digest_key(&[id]))
}

/// The first 128 bits of SHA-256 over the parts.
fn digest_key(parts: &[&str]) -> u128 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().expect("32 bytes"))
}

impl Keyed for AgentEvent {
    fn key(&self) -> Option<u128> {
        Some(id_key(&self.event_id))
    }
}

impl Keyed for ConversationEvent {
    fn key(&self) -> Option<u128> {
        Some(id_key(&self.event_id))
    }
}

/// Ended work sessions by (`contact_session_id`, `id`); open ones (`None`) are counted, not kept.
impl Keyed for Option<WorkSession> {
    fn key(&self) -> Option<u128> {
        self.as_ref()
            .map(|w| digest_key(&[&w.contact_session_id, &w.id]))
    }
}

/// What decoding an answer gave: its records, what was set aside, and how much was unreadable.
#[derive(Debug)]
pub struct Decoded<T> {
    pub what: String,
    /// Unique by `Keyed::key`, in the order each key was first read.
    pub rows: Vec<T>,
    /// Where each key's row is in `rows`.
    index: rustc_hash::FxHashMap<u128, usize>,
    pub aside: Vec<SetAside>,
    /// Rows set aside because a value could not be read, by column: (count, first value).
    unreadable: BTreeMap<String, (usize, String)>,
    /// Every row or line read, whatever became of it.
    pub total: usize,
}

impl<T: Keyed> Decoded<T> {
    fn new(what: &str) -> Decoded<T> {
        Decoded {
            what: what.to_string(),
            rows: Vec::new(),
            index: Default::default(),
            aside: Vec::new(),
            unreadable: BTreeMap::new(),
            total: 0,
        }
    }

    fn push(&mut self, location: String, r: Result<T, RowError>) {
        self.total += 1;
        match r {
            Ok(t) => match t.key() {
                None => self.rows.push(t),
                Some(k) => match self.index.entry(k) {
                    std::collections::hash_map::Entry::Occupied(at) => self.rows[*at.get()] = t,
                    std::collections::hash_map::Entry::Vacant(at) => {
                        at.insert(self.rows.len());
                        self.rows.push(t);
                    }
                },
            },
            Err(e) => {
                crate::telemetry::set_aside(
                    if e.unreadable.is_some() {
                        "unreadable"
                    } else {
                        "unknown_type"
                    },
                    1,
                );
                if let Some((col, value)) = e.unreadable {
                    let c = self.unreadable.entry(col).or_insert((0, value));
                    c.0 += 1;
                }
                self.aside.push(SetAside {
                    location,
                    reason: e.reason,
                });
            }
        }
    }
}

impl<T> Decoded<T> {
    /// Rows set aside because something in them could not be read.
    pub fn unreadable(&self) -> usize {
        self.unreadable.values().map(|c| c.0).sum()
    }

    /// No silent emptying: an answer whose rows are mostly unreadable is an error, naming the
    /// column that failed most and a value from it (`DecodeError::Untrusted`).
    pub fn verify(&self) -> Result<(), DecodeError> {
        let n = self.unreadable();
        if !plausible::too_many_unreadable(n, self.total) {
            return Ok(());
        }
        let (col, (count, value)) = self
            .unreadable
            .iter()
            .max_by_key(|(_, (c, _))| *c)
            .expect("unreadable rows have a column");
        Err(DecodeError::Untrusted {
            what: self.what.clone(),
            unreadable: n,
            total: self.total,
            column: col.clone(),
            count: *count,
            value: value.clone(),
        })
    }
}

// ---------------------------------------------------------------- Events API (JSON Lines)

#[derive(Deserialize)]
struct RawLine {
    #[serde(rename = "type")]
    etype: String,
    timestamp: String,
    #[serde(default)]
    content: RawContent,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawContent {
    agent_id: Option<String>,
    occurred_at: Option<String>,
    away_reason: Option<RawReason>,
    active_reason: Option<RawReason>,
    available_for: Option<Vec<String>>,
    context: Option<RawContext>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawContext {
    available_for: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawReason {
    name: Option<String>,
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Decodes an Events API body (JSON Lines) of agent events.
pub fn agent_events_jsonl(
    body: impl Read,
    req: &Request,
) -> Result<Decoded<AgentEvent>, DecodeError> {
    json_lines(body, req, |raw: RawLine| agent_event(raw, req))
}

/// Decodes an Events API body of agent and conversation events in one pass, each line by its
/// `type`: a line whose type cannot be read counts as an agent event's (and is set aside there).
/// Line numbers are the body's. The error is `DecodeError`'s text, for `follow`.
pub fn events_jsonl(
    body: impl Read,
    req: &Request,
) -> Result<(Decoded<AgentEvent>, Decoded<ConversationEvent>), DecodeError> {
    #[derive(Deserialize)]
    struct TypeOnly<'a> {
        #[serde(rename = "type", borrow)]
        etype: std::borrow::Cow<'a, str>,
    }
    let (mut agents, mut conversations) = (Decoded::new(&req.what), Decoded::new(&req.what));
    each_line(body, req, |number, l| {
        let location = format!("{}, line {number}", req.what);
        let conversation = serde_json::from_slice::<TypeOnly>(l)
            .is_ok_and(|t| t.etype.starts_with("CONVERSATION"));
        if conversation {
            conversations.push(location, parse(l).and_then(|r| conversation_event(r, req)));
        } else {
            agents.push(location, parse(l).and_then(|r| agent_event(r, req)));
        }
    })?;
    Ok((agents, conversations))
}

fn agent_event(raw: RawLine, req: &Request) -> Result<AgentEvent, RowError> {
    let kind =
        AgentEventKind::parse(&raw.etype).ok_or_else(|| RowError::unknown_type(&raw.etype))?;
    let recorded = req.instant("timestamp", &raw.timestamp, Hint::None)?;
    let c = raw.content;
    let agent_id = c
        .agent_id
        .ok_or_else(|| RowError::blank("content.agentId"))?;
    let focus = kind.axis().is_none();
    // Focus events have no occurredAt: their recorded time stands in.
    let occurred = match &c.occurred_at {
        Some(s) => req.instant("content.occurredAt", s, Hint::Near(recorded))?,
        None if focus => recorded,
        None => return Err(RowError::blank("content.occurredAt")),
    };
    let available_for = if focus {
        c.context.and_then(|x| x.available_for).map(sorted)
    } else {
        c.available_for.map(sorted)
    };
    if kind == AgentEventKind::AvailabilityUpdated && available_for.is_none() {
        return Err(RowError::blank("content.availableFor"));
    }
    Ok(AgentEvent {
        event_id: derive_event_id(&agent_id, kind.as_str(), occurred),
        kind,
        agent_id,
        occurred_at: occurred,
        recorded_at: recorded,
        away_reason: c.away_reason.and_then(|r| r.name),
        active_reason: c.active_reason.and_then(|r| r.name),
        available_for,
        source: Source::EventsApi,
    })
}

/// One JSON line parsed, or why it is set aside.
fn parse<R: serde::de::DeserializeOwned>(l: &[u8]) -> Result<R, RowError> {
    serde_json::from_slice::<R>(l).map_err(|e| RowError {
        unreadable: Some(("(JSON line)".into(), String::from_utf8_lossy(l).into())),
        reason: format!("malformed JSON: {e}"),
    })
}

/// Reads a body one line at a time as it streams, calling `f` with each non-blank line
/// (trimmed) and its number. Only a read error of the body fails.
fn each_line(
    body: impl Read,
    req: &Request,
    mut f: impl FnMut(usize, &[u8]),
) -> Result<(), DecodeError> {
    let mut body = BufReader::with_capacity(64 * 1024, body);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = body
            .read_until(b'\n', &mut line)
            .map_err(|source| DecodeError::Read {
                what: req.what.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let l = line.trim_ascii();
        if !l.is_empty() {
            f(number, l);
        }
    }
}

/// Decodes JSON Lines one line at a time as they stream: `f` makes a record of a parsed line or
/// says why it is set aside. Blank lines are skipped; a malformed line (invalid UTF-8 included)
/// is set aside with its line number. Only a read error of the body fails the whole answer.
fn json_lines<R: serde::de::DeserializeOwned, T: Keyed>(
    body: impl Read,
    req: &Request,
    mut f: impl FnMut(R) -> Result<T, RowError>,
) -> Result<Decoded<T>, DecodeError> {
    let mut out = Decoded::new(&req.what);
    each_line(body, req, |number, l| {
        out.push(
            format!("{}, line {number}", req.what),
            parse(l).and_then(&mut f),
        );
    })?;
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawAssignee {
    inbox_id: Option<String>,
    agent_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConvContext {
    assignee: Option<RawAssignee>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConvContent {
    conversation_id: Option<String>,
    customer_id: Option<String>,
    context: Option<RawConvContext>,
    assignee: Option<RawAssignee>,
}

#[derive(Deserialize)]
struct RawConvLine {
    #[serde(rename = "type")]
    etype: String,
    timestamp: String,
    #[serde(default)]
    content: RawConvContent,
}

/// Decodes an Events API body (JSON Lines) of conversation events.
pub fn conversation_events_jsonl(
    body: impl Read,
    req: &Request,
) -> Result<Decoded<ConversationEvent>, DecodeError> {
    json_lines(body, req, |raw: RawConvLine| conversation_event(raw, req))
}

fn conversation_event(raw: RawConvLine, req: &Request) -> Result<ConversationEvent, RowError> {
    let kind = ConversationEventKind::parse(&raw.etype)
        .ok_or_else(|| RowError::unknown_type(&raw.etype))?;
    let ts = req.instant("timestamp", &raw.timestamp, Hint::None)?;
    let c = raw.content;
    let conversation_id = c
        .conversation_id
        .ok_or_else(|| RowError::blank("content.conversationId"))?;
    let ctx = c.context.and_then(|x| x.assignee).unwrap_or_default();
    let new = c.assignee.unwrap_or_default();
    Ok(ConversationEvent {
        event_id: derive_event_id(&conversation_id, kind.as_str(), ts),
        kind,
        conversation_id,
        customer_id: c.customer_id,
        recorded_at: ts,
        inbox_id: ctx.inbox_id,
        agent_id: ctx.agent_id,
        new_inbox_id: new.inbox_id,
        new_agent_id: new.agent_id,
        source: Source::EventsApi,
    })
}

// ---------------------------------------------------------------- Reports API (CSV)

/// Decodes a CSV report row by row: `f` makes a record of a row or says why it is set aside.
fn csv_rows<T: Keyed>(
    body: impl Read,
    req: &Request,
    required: &[&str],
    mut f: impl FnMut(&Row) -> Result<T, RowError>,
) -> Result<Decoded<T>, DecodeError> {
    let mut out = Decoded::new(&req.what);
    read_rows(body, required, |r| match r {
        Ok(row) => out.push(format!("{}, row {}", req.what, row.number), f(&row)),
        Err((n, e)) => out.push(format!("{}, row {n}", req.what), Err(e.into())),
    })
    .map_err(|source| DecodeError::Csv {
        what: req.what.clone(),
        source,
    })?;
    Ok(out)
}

fn need<'r>(row: &'r Row, col: &str) -> Result<&'r str, RowError> {
    row.cell(col)?.ok_or_else(|| RowError::blank(col))
}

/// `[MESSAGING, VOICE]` → channels; `[ ]` → none; blank → not given.
fn channels(cell: Option<&str>) -> Option<Vec<String>> {
    let s = cell?.trim();
    let inner = s.trim_start_matches('[').trim_end_matches(']');
    Some(sorted(
        inner
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
    ))
}

const AGENT_REPORT_COLUMNS: &[&str] = &[
    "Timestamp",
    "Occurred At",
    "Agent ID",
    "Type",
    "Available For",
    "Away Reason",
    "Active Reason",
];

/// The newest `Timestamp` read so far: rows come in ascending order, which is what resolves a
/// wall-clock time of the DST fall-back hour (see `timestamps`).
#[derive(Default)]
struct RowOrder(Option<Ms>);

impl RowOrder {
    fn recorded(&mut self, req: &Request, value: &str) -> Result<Ms, RowError> {
        let hint = self.0.map(Hint::NotBefore).unwrap_or(Hint::None);
        let ms = req.instant("Timestamp", value, hint)?;
        self.0 = Some(self.0.map_or(ms, |p| p.max(ms)));
        Ok(ms)
    }
}

/// Decodes an `AgentTimestampsReport` CSV body.
pub fn agent_events_csv(
    body: impl Read,
    req: &Request,
) -> Result<Decoded<AgentEvent>, DecodeError> {
    let mut order = RowOrder::default();
    csv_rows(body, req, AGENT_REPORT_COLUMNS, |row| {
        let recorded = order.recorded(req, need(row, "Timestamp")?)?;
        let etype = need(row, "Type")?;
        let kind = AgentEventKind::parse(etype).ok_or_else(|| RowError::unknown_type(etype))?;
        let occurred = match row.cell("Occurred At")? {
            Some(s) => req.instant("Occurred At", s, Hint::Near(recorded))?,
            None => recorded,
        };
        let agent_id = need(row, "Agent ID")?.to_string();
        let available_for = channels(row.cell("Available For")?);
        if kind == AgentEventKind::AvailabilityUpdated && available_for.is_none() {
            return Err(RowError::blank("Available For"));
        }
        Ok(AgentEvent {
            event_id: derive_event_id(&agent_id, kind.as_str(), occurred),
            kind,
            agent_id,
            occurred_at: occurred,
            recorded_at: recorded,
            away_reason: row.cell("Away Reason")?.map(str::to_string),
            active_reason: row.cell("Active Reason")?.map(str::to_string),
            available_for,
            source: Source::Report,
        })
    })
}

const CONVERSATION_REPORT_COLUMNS: &[&str] = &[
    "Timestamp",
    "Event Type",
    "Conversation ID",
    "Customer ID",
    "Assigned Inbox ID",
    "Assigned Agent ID",
    "Newly Assigned Inbox ID",
    "Newly Assigned Agent ID",
];

/// Decodes a `ConversationTimestampsReport` CSV body.
pub fn conversation_events_csv(
    body: impl Read,
    req: &Request,
) -> Result<Decoded<ConversationEvent>, DecodeError> {
    let mut order = RowOrder::default();
    csv_rows(body, req, CONVERSATION_REPORT_COLUMNS, |row| {
        let ts = order.recorded(req, need(row, "Timestamp")?)?;
        let etype = need(row, "Event Type")?;
        let kind =
            ConversationEventKind::parse(etype).ok_or_else(|| RowError::unknown_type(etype))?;
        let conversation_id = need(row, "Conversation ID")?.to_string();
        let s = |c: &str| row.cell(c).map(|v| v.map(str::to_string));
        Ok(ConversationEvent {
            event_id: derive_event_id(&conversation_id, kind.as_str(), ts),
            kind,
            conversation_id,
            customer_id: s("Customer ID")?,
            recorded_at: ts,
            inbox_id: s("Assigned Inbox ID")?,
            agent_id: s("Assigned Agent ID")?,
            new_inbox_id: s("Newly Assigned Inbox ID")?,
            new_agent_id: s("Newly Assigned Agent ID")?,
            source: Source::Report,
        })
    })
}

pub const WORK_SESSION_COLUMNS: &[&str] = &[
    "id",
    "contact_session_id",
    "contact_session_created_at",
    "customer_id",
    "conversation_id",
    "inbox_id",
    "channel",
    "direction",
    "agent_accepted_at",
    "contact_session_routed_at",
    "agent_id",
    "sla_fulfilled_at",
    "contact_session_ended_at",
    "status",
    "within_sla",
    "work_session_handle_time_sec",
    "work_session_after_contact_time_sec",
    "work_session_unknown_time_sec",
    "accepted_inbox_id",
];

/// Decodes a `work-session-events` CSV body: (ended sessions, how many were still open).
/// Open sessions (no `id` yet) are not stored until they end. The request's window is UTC,
/// so a timestamp without offset is read as UTC.
pub fn work_sessions_csv(
    body: impl Read,
    req: &Request,
) -> Result<(Decoded<WorkSession>, usize), DecodeError> {
    let decoded = csv_rows(body, req, WORK_SESSION_COLUMNS, |row| {
        let s = |c: &str| row.cell(c).map(|v| v.map(str::to_string));
        let ts = |c: &str| -> Result<Option<Ms>, RowError> {
            row.cell(c)?
                .map(|v| req.instant(c, v, Hint::None))
                .transpose()
        };
        let secs = |c: &str| -> Result<Option<f64>, RowError> {
            let Some(v) = row.cell(c)? else {
                return Ok(None);
            };
            let n = v
                .parse::<f64>()
                .map_err(|_| RowError::bad(c, v, "not a number"))?;
            plausible::seconds(n)
                .map(Some)
                .map_err(|why| RowError::bad(c, v, why))
        };
        let Some(id) = s("id")? else {
            // Still open: Gladly leaves `id` and the end columns blank until it ends.
            return Ok(None);
        };
        let within_sla = match row.cell("within_sla")? {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(v) => return Err(RowError::bad("within_sla", v, "not true or false")),
        };
        Ok(Some(WorkSession {
            id,
            contact_session_id: s("contact_session_id")?
                .ok_or_else(|| RowError::blank("contact_session_id"))?,
            contact_session_created_at: ts("contact_session_created_at")?
                .ok_or_else(|| RowError::blank("contact_session_created_at"))?,
            customer_id: s("customer_id")?,
            conversation_id: s("conversation_id")?,
            inbox_id: s("inbox_id")?,
            channel: s("channel")?,
            direction: s("direction")?,
            agent_accepted_at: ts("agent_accepted_at")?,
            contact_session_routed_at: ts("contact_session_routed_at")?,
            agent_id: s("agent_id")?,
            sla_fulfilled_at: ts("sla_fulfilled_at")?,
            contact_session_ended_at: ts("contact_session_ended_at")?,
            status: s("status")?,
            within_sla,
            work_session_handle_time_seconds: secs("work_session_handle_time_sec")?,
            work_session_after_contact_time_seconds: secs("work_session_after_contact_time_sec")?,
            work_session_unknown_time_seconds: secs("work_session_unknown_time_sec")?,
            accepted_inbox_id: s("accepted_inbox_id")?,
        }))
    })?;
    let open = decoded.rows.iter().filter(|r| r.is_none()).count();
    let ended = Decoded {
        what: decoded.what,
        rows: decoded.rows.into_iter().flatten().collect(),
        index: Default::default(),
        aside: decoded.aside,
        unreadable: decoded.unreadable,
        total: decoded.total,
    };
    Ok((ended, open))
}

/// The `AgentSummaryV2` columns the audit reads (gladly-api.md §5); others are ignored.
pub const SUMMARY_COLUMNS: &[&str] = &[
    "Agent ID",
    "Email",
    "Time Bucket",
    "Logged In Time in seconds",
    "Active Time in seconds",
];

/// One row per agent and bucket: the last one read of a repeated pair is kept.
impl Keyed for crate::audit::SummaryRow {
    fn key(&self) -> Option<u128> {
        Some(digest_key(&[&self.agent_id, &self.time_bucket]))
    }
}

/// Decodes an `AgentSummaryV2` CSV body, by header name.
pub fn agent_summary_csv(
    body: impl Read,
    req: &Request,
) -> Result<Decoded<crate::audit::SummaryRow>, DecodeError> {
    csv_rows(body, req, SUMMARY_COLUMNS, |row| {
        let secs = |c: &str| -> Result<f64, RowError> {
            let v = need(row, c)?;
            let n = v
                .parse::<f64>()
                .map_err(|_| RowError::bad(c, v, "not a number"))?;
            plausible::seconds(n).map_err(|why| RowError::bad(c, v, why))
        };
        Ok(crate::audit::SummaryRow {
            agent_id: need(row, "Agent ID")?.to_string(),
            email: row.cell("Email")?.map(str::to_string),
            time_bucket: need(row, "Time Bucket")?.to_string(),
            logged_in_seconds: secs("Logged In Time in seconds")?,
            active_seconds: secs("Active Time in seconds")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(what: &str) -> Request {
        // 2024-05-06 in New York.
        let start = crate::time::parse_ts("2024-05-06T04:00:00Z").unwrap();
        Request::new(
            what,
            start,
            start + crate::time::MS_PER_DAY,
            "America/New_York".parse().unwrap(),
        )
    }

    const HEADER: &str =
        "Timestamp,Occurred At,Agent,Agent ID,Type,Available For,Away Reason,Active Reason\n";

    #[test]
    fn csv_survives_bom_blank_lines_quotes_and_empty_body() {
        let body = format!("\u{feff}\r\n\n{HEADER}\
            2024-05-06T15:00:02.1Z,2024-05-06T15:00:02.101Z,\"Ruiz, Ana\",A1,AGENT_STATUS/LOGGED_IN,,,Work\n\
            2024-05-06T15:00:40Z,2024-05-06T15:00:40.517Z,\"Line\nBreak\",A1,AGENT_AVAILABILITY/UPDATED,\"[VOICE, MESSAGING]\",,\n\
            2024-05-06T16:00:40Z,2024-05-06T16:00:40Z,X,A1,AGENT_AVAILABILITY/UPDATED,[ ],,\n\
            2024-05-06T17:00:00Z,2024-05-06T17:00:00Z,X,A1,AGENT_STATUS/SOMETHING_NEW,,,\n\
            2024-05-06T17:00:00Z,2024-05-06T17:00:00Z,X\n");
        let d = agent_events_csv(body.as_bytes(), &req("r")).unwrap();
        let evs = &d.rows;
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].active_reason.as_deref(), Some("Work"));
        assert_eq!(
            evs[1].available_for,
            Some(vec!["MESSAGING".into(), "VOICE".into()])
        );
        assert_eq!(evs[2].available_for, Some(vec![]));
        assert_eq!(d.aside.len(), 2, "{:?}", d.aside);
        assert!(
            d.aside[1].reason.contains("missing column"),
            "{:?}",
            d.aside
        );
        assert_eq!(d.unreadable(), 1, "an unknown type is not unreadable");
        assert!(agent_events_csv(&b""[..], &req("r"))
            .unwrap()
            .rows
            .is_empty());
    }

    #[test]
    fn jsonl_ids_match_report_ids_and_bad_lines_are_set_aside() {
        let body = br#"{"id":"x","type":"AGENT_STATUS/LOGGED_IN","timestamp":"2024-05-06T15:00:02.118Z","extra":1,"content":{"agentId":"A1","occurredAt":"2024-05-06T15:00:02.101Z","activeReason":{"id":"r","name":"Work"}}}
{not json

{"id":"y","type":"AGENT_STATUS/SOMETHING_NEW","timestamp":"2024-05-06T15:00:02.118Z","content":{"agentId":"A1"}}
{"id":"z","type":"AGENT_AVAILABILITY/FOCUS_ENTERED","timestamp":"2024-05-06T15:10:00.5Z","content":{"agentId":"A1","context":{"availableFor":["VOICE"]}}}
"#;
        let d = agent_events_jsonl(&body[..], &req("events")).unwrap();
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.aside.len(), 2);
        assert!(d.aside[0].location.ends_with("line 2"));
        let csv = format!("{HEADER}2024-05-06T15:00:02.118Z,2024-05-06T15:00:02.101000Z,A,A1,AGENT_STATUS/LOGGED_IN,,,Work\n");
        let r = agent_events_csv(csv.as_bytes(), &req("r")).unwrap();
        assert_eq!(r.rows[0].event_id, d.rows[0].event_id);
        assert_eq!(d.rows[1].occurred_at, d.rows[1].recorded_at);
    }

    /// One pass over a body of every entity: each line to its decoder by type, line numbers of
    /// the body, and a line repeated in the answer kept once (the last read).
    #[test]
    fn events_split_by_type_in_one_pass_and_repeats_are_kept_once() {
        let body = br#"{"type":"AGENT_STATUS/LOGGED_IN","timestamp":"2024-05-06T15:00:02.118Z","content":{"agentId":"A1","occurredAt":"2024-05-06T15:00:02.101Z","activeReason":{"name":"Work"}}}

{"type":"CONVERSATION/CREATED","timestamp":"2024-05-06T15:01:00Z","content":{"customerId":"C","conversationId":"V1","context":{"assignee":{"inboxId":"I"}}}}
not json
{"type":"CONVERSATION_ASSIGNEE/UPDATED","timestamp":"2024-05-06T15:02:00Z","content":{"customerId":"C","conversationId":"V1","reason":"x","assignee":{"inboxId":"I","agentId":"A1"},"context":{"assignee":{"inboxId":"I"}}}}
{"type":"AGENT_STATUS/LOGGED_IN","timestamp":"2024-05-06T15:00:02.118Z","content":{"agentId":"A1","occurredAt":"2024-05-06T15:00:02.101Z","activeReason":{"name":"Work 2"}}}
"#;
        let (a, c) = events_jsonl(&body[..], &req("events")).unwrap();
        assert_eq!(a.rows.len(), 1, "{:?}", a.rows);
        assert_eq!(
            a.rows[0].active_reason.as_deref(),
            Some("Work 2"),
            "the last read wins"
        );
        assert_eq!(a.total, 3);
        assert_eq!(a.aside.len(), 1);
        assert!(a.aside[0].location.ends_with("line 4"), "{:?}", a.aside);
        assert_eq!(c.rows.len(), 2);
        assert_eq!(c.rows[1].new_agent_id.as_deref(), Some("A1"));
    }

    #[test]
    fn an_invalid_utf8_byte_sets_only_its_row_or_line_aside() {
        let mut csv = HEADER.as_bytes().to_vec();
        csv.extend_from_slice(
            b"2024-05-06T15:00:02Z,2024-05-06T15:00:02Z,Ana,A1,AGENT_STATUS/LOGGED_IN,,,Work\n",
        );
        // An unused column, then a used one.
        csv.extend_from_slice(
            b"2024-05-06T15:01:02Z,2024-05-06T15:01:02Z,An\xffa,A1,AGENT_STATUS/LOGGED_OUT,,,\n",
        );
        csv.extend_from_slice(
            b"2024-05-06T15:02:02Z,2024-05-06T15:02:02Z,Ana,A\xc3,AGENT_STATUS/LOGGED_IN,,,Work\n",
        );
        csv.extend_from_slice(
            b"2024-05-06T15:03:02Z,2024-05-06T15:03:02Z,Ana,A1,AGENT_STATUS/LOGGED_OUT,,,\n",
        );
        let d = agent_events_csv(&csv[..], &req("AgentTimestampsReport 2024-05-06")).unwrap();
        assert_eq!(d.rows.len(), 2);
        let aside: Vec<String> = d
            .aside
            .iter()
            .map(|a| format!("{}: {}", a.location, a.reason))
            .collect();
        assert_eq!(
            aside,
            [
                "AgentTimestampsReport 2024-05-06, row 2: invalid UTF-8 in column Agent",
                "AgentTimestampsReport 2024-05-06, row 3: invalid UTF-8 in column Agent ID",
            ]
        );
        assert_eq!(d.unreadable(), 2);
        let mut jl = br#"{"type":"AGENT_STATUS/LOGGED_OUT","timestamp":"2024-05-06T15:00:02Z","content":{"agentId":"A1","occurredAt":"2024-05-06T15:00:02Z"}}"#.to_vec();
        jl.push(b'\n');
        jl.extend_from_slice(br#"{"type":"AGENT_STATUS/LOGGED_OUT","timestamp":"2024-05-06T15:00:03Z","content":{"agentId":"A"#);
        jl.extend_from_slice(b"\xff\"}}\n");
        let d = agent_events_jsonl(&jl[..], &req("events 2024-05-06")).unwrap();
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.aside[0].location, "events 2024-05-06, line 2");
        assert!(
            d.aside[0].reason.contains("malformed JSON"),
            "{:?}",
            d.aside
        );
    }

    #[test]
    fn out_of_range_instants_and_seconds_are_set_aside_with_the_reason() {
        let mut csv = HEADER.to_string();
        for (ts, occ) in [
            ("2024-05-06T15:00:02Z", "2024-05-06T15:00:01Z"),
            ("0001-01-01T00:00:00Z", "2024-05-06T15:00:01Z"),
            ("2024-05-06T15:00:03Z", "1900-01-01T00:00:00Z"),
            ("2024-05-06T15:00:04Z", "9999-12-31T23:59:59.999Z"),
        ] {
            csv.push_str(&format!("{ts},{occ},Ana,A1,AGENT_STATUS/LOGGED_OUT,,,\n"));
        }
        let d = agent_events_csv(csv.as_bytes(), &req("r")).unwrap();
        assert_eq!(d.rows.len(), 1);
        let reasons: Vec<&str> = d.aside.iter().map(|a| a.reason.as_str()).collect();
        assert!(
            reasons[0]
                .starts_with("bad Timestamp `0001-01-01T00:00:00Z`: more than 3 days outside"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("bad Occurred At `1900-01-01"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].starts_with("bad Occurred At `9999-12-31"),
            "{reasons:?}"
        );

        let head = WORK_SESSION_COLUMNS.join(",");
        let row = |created: &str, handle: &str| {
            format!("W,C{handle},{created},CU,CV,I,CHAT,INBOUND,,,A,,2024-05-06T15:00:00Z,ANSWERED,true,{handle},1.5,0,\n")
        };
        let mut ws = format!("{head}\n");
        ws.push_str(&row("2024-05-06T14:00:00Z", "60"));
        for bad in ["1e400", "NaN", "-inf", "-3"] {
            ws.push_str(&row("2024-05-06T14:00:00Z", bad));
        }
        ws.push_str(&row("0001-01-01T00:00:00Z", "1"));
        ws.push_str(&row("9999-01-01T00:00:00Z", "2"));
        let (d, open) = work_sessions_csv(ws.as_bytes(), &req("ws")).unwrap();
        assert_eq!((d.rows.len(), open), (1, 0));
        let reasons: Vec<&str> = d.aside.iter().map(|a| a.reason.as_str()).collect();
        assert_eq!(reasons.len(), 6, "{reasons:?}");
        assert!(
            reasons[0].contains("work_session_handle_time_sec `1e400`: not a finite"),
            "{reasons:?}"
        );
        assert!(reasons[1].contains("`NaN`: not a finite"), "{reasons:?}");
        assert!(reasons[2].contains("`-inf`: not a finite"), "{reasons:?}");
        assert!(reasons[3].contains("`-3`: a negative"), "{reasons:?}");
        assert!(
            reasons[4].contains("contact_session_created_at `0001-01-01T00:00:00Z`: more than"),
            "{reasons:?}"
        );
        assert!(
            reasons[5].contains("contact_session_created_at `9999"),
            "{reasons:?}"
        );
    }

    /// A body that cannot be read, or a report without its columns, fails the whole answer,
    /// saying which and why.
    #[test]
    fn an_unreadable_body_or_header_fails_the_answer() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("gone"))
            }
        }
        let e = agent_events_jsonl(Broken, &req("events")).unwrap_err();
        assert!(matches!(e, DecodeError::Read { .. }), "{e:?}");
        assert_eq!(e.to_string(), "events: reading the body: gone");
        assert_eq!(
            events_jsonl(Broken, &req("events"))
                .unwrap_err()
                .to_string(),
            "events: reading the body: gone"
        );
        let e = agent_events_csv(Broken, &req("r")).unwrap_err();
        assert_eq!(e.to_string(), "r: reading the body: gone");
        let e = agent_events_csv(&b"Timestamp,Type\n"[..], &req("r")).unwrap_err();
        assert!(matches!(e, DecodeError::Csv { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            r#"r: report header lacks column(s) Occurred At, Agent ID, Available For, Away Reason, Active Reason; header is ["Timestamp", "Type"]"#
        );
    }

    #[test]
    fn a_mostly_unreadable_answer_names_the_column_and_a_value() {
        let mut csv = HEADER.to_string();
        for i in 0..20 {
            // No offset, and not a time of day at all: unreadable whatever the timezone.
            csv.push_str(&format!(
                "05/06/2024 15:{i:02},2024-05-06T15:00:00Z,Ana,A1,AGENT_STATUS/LOGGED_OUT,,,\n"
            ));
        }
        for i in 0..80 {
            let (m, s) = (i / 2, (i % 2) * 30);
            csv.push_str(&format!("2024-05-06T16:{m:02}:{s:02}Z,2024-05-06T16:00:00Z,Ana,A1,AGENT_STATUS/LOGGED_OUT,,,\n"));
        }
        let d = agent_events_csv(csv.as_bytes(), &req("AgentTimestampsReport 2024-05-06")).unwrap();
        assert_eq!(d.unreadable(), 20);
        let e = d.verify().unwrap_err().to_string();
        assert!(
            e.contains("AgentTimestampsReport 2024-05-06: 20 of 100 rows"),
            "{e}"
        );
        assert!(
            e.contains("column `Timestamp`") && e.contains("`05/06/2024 15:00`"),
            "{e}"
        );
        // A few bad rows in a big answer are set aside and the answer stands.
        let few: String = csv.lines().skip(17).collect::<Vec<_>>().join("\n");
        let d = agent_events_csv(format!("{HEADER}{few}").as_bytes(), &req("r")).unwrap();
        assert_eq!(d.unreadable(), 4);
        assert!(d.verify().is_ok());
    }
}
