//! Decoding Gladly answers: Events API JSON Lines and Reports API CSV, into `AgentEvent`s.
//! Unknown fields are ignored; unknown event types and malformed lines or rows are set aside
//! (counted, with where and why), never a crash and never silently dropped.

use std::collections::HashMap;

use serde::Deserialize;

use crate::model::{
    derive_event_id, AgentEvent, SetAside, AGENT_EVENT_TYPES, SOURCE_EVENTS_API, SOURCE_REPORT,
};
use crate::time::parse_ts;

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
pub fn agent_events_jsonl(body: &[u8], what: &str) -> (Vec<AgentEvent>, Vec<SetAside>) {
    json_lines(body, what, |raw: RawLine| {
        if !AGENT_EVENT_TYPES.contains(&raw.etype.as_str()) {
            return Err(format!("unknown event type {}", raw.etype));
        }
        let recorded =
            parse_ts(&raw.timestamp).ok_or_else(|| format!("bad timestamp `{}`", raw.timestamp))?;
        let c = raw.content;
        let agent_id = c.agent_id.ok_or("no content.agentId")?;
        let focus = raw.etype.starts_with("AGENT_AVAILABILITY/FOCUS_");
        // Focus events have no occurredAt: their recorded time stands in.
        let occurred = match &c.occurred_at {
            Some(s) => parse_ts(s).ok_or_else(|| format!("bad occurredAt `{s}`"))?,
            None if focus => recorded,
            None => return Err(format!("{} without occurredAt", raw.etype)),
        };
        let available_for = if focus {
            c.context.and_then(|x| x.available_for).map(sorted)
        } else {
            c.available_for.map(sorted)
        };
        if raw.etype == "AGENT_AVAILABILITY/UPDATED" && available_for.is_none() {
            return Err("AGENT_AVAILABILITY/UPDATED without availableFor".into());
        }
        Ok(AgentEvent {
            event_id: derive_event_id(&agent_id, &raw.etype, occurred),
            event_type: raw.etype,
            agent_id,
            occurred_at: occurred,
            recorded_at: recorded,
            away_reason: c.away_reason.and_then(|r| r.name),
            active_reason: c.active_reason.and_then(|r| r.name),
            available_for,
            source: SOURCE_EVENTS_API.to_string(),
        })
    })
}

/// Decodes JSON Lines one line at a time: `f` makes a record of a parsed line or says why it is
/// set aside. Blank lines are skipped; a malformed line is set aside with its line number.
fn json_lines<R: serde::de::DeserializeOwned, T>(
    body: &[u8],
    what: &str,
    mut f: impl FnMut(R) -> Result<T, String>,
) -> (Vec<T>, Vec<SetAside>) {
    let mut out = Vec::new();
    let mut aside = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let r = serde_json::from_slice::<R>(line)
            .map_err(|e| format!("malformed JSON: {e}"))
            .and_then(&mut f);
        match r {
            Ok(t) => out.push(t),
            Err(reason) => aside.push(SetAside {
                location: format!("{what}, line {}", i + 1),
                reason,
            }),
        }
    }
    (out, aside)
}

/// Decodes a CSV table row by row: `f` makes a record of a row or says why it is set aside.
fn csv_rows<T>(
    t: &CsvTable,
    what: &str,
    mut f: impl FnMut(&csv::StringRecord) -> Result<T, String>,
) -> (Vec<T>, Vec<SetAside>) {
    let mut out = Vec::new();
    let mut aside = Vec::new();
    for (n, rec) in &t.rows {
        match f(rec) {
            Ok(r) => out.push(r),
            Err(reason) => aside.push(SetAside {
                location: format!("{what}, row {n}"),
                reason,
            }),
        }
    }
    (out, aside)
}

/// A CSV report body as rows keyed by header name. Survives a BOM, blank lines before the header,
/// quoted commas and newlines, and an empty body (no rows). Rows shorter than the header are
/// returned with the missing cells absent so the caller can name the column.
pub struct CsvTable {
    pub header: Vec<String>,
    pub rows: Vec<(usize, csv::StringRecord)>,
    index: HashMap<String, usize>,
}

impl CsvTable {
    pub fn parse(body: &[u8]) -> Result<CsvTable, String> {
        let mut b = body;
        if b.starts_with(&[0xEF, 0xBB, 0xBF]) {
            b = &b[3..];
        }
        // Blank lines before the header.
        while let Some(&c) = b.first() {
            if c == b'\n' || c == b'\r' || c == b' ' || c == b'\t' {
                b = &b[1..];
            } else {
                break;
            }
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(b);
        let header: Vec<String> = if b.is_empty() {
            Vec::new()
        } else {
            rdr.headers()
                .map_err(|e| format!("unreadable CSV header: {e}"))?
                .iter()
                .map(|h| h.trim().to_string())
                .collect()
        };
        let index = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.clone(), i))
            .collect();
        let mut rows = Vec::new();
        for (n, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| format!("unreadable CSV at row {}: {e}", n + 1))?;
            rows.push((n + 1, rec));
        }
        Ok(CsvTable {
            header,
            rows,
            index,
        })
    }

    /// Checks that the header has these columns (a report whose shape changed is an error).
    pub fn require(&self, cols: &[&str]) -> Result<(), String> {
        if self.header.is_empty() {
            return Ok(());
        }
        let missing: Vec<&str> = cols
            .iter()
            .copied()
            .filter(|c| !self.index.contains_key(*c))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "report header lacks column(s) {}; header is {:?}",
                missing.join(", "),
                self.header
            ))
        }
    }

    /// The cell under `col`: `Err` if the row is too short to have it, `Ok(None)` if blank.
    pub fn cell<'r>(
        &self,
        rec: &'r csv::StringRecord,
        col: &str,
    ) -> Result<Option<&'r str>, String> {
        let i = *self
            .index
            .get(col)
            .ok_or_else(|| format!("no column {col}"))?;
        match rec.get(i) {
            None => Err(format!("missing column {col}")),
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => Ok(Some(s.trim())),
        }
    }
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

/// Decodes an `AgentTimestampsReport` CSV body.
pub fn agent_events_csv(
    body: &[u8],
    what: &str,
) -> Result<(Vec<AgentEvent>, Vec<SetAside>), String> {
    let t = CsvTable::parse(body)?;
    t.require(AGENT_REPORT_COLUMNS)?;
    Ok(csv_rows(&t, what, |rec| agent_row(&t, rec)))
}

fn agent_row(t: &CsvTable, rec: &csv::StringRecord) -> Result<AgentEvent, String> {
    let ts = t.cell(rec, "Timestamp")?.ok_or("blank Timestamp")?;
    let recorded = parse_ts(ts).ok_or_else(|| format!("bad Timestamp `{ts}`"))?;
    let etype = t.cell(rec, "Type")?.ok_or("blank Type")?.to_string();
    if !AGENT_EVENT_TYPES.contains(&etype.as_str()) {
        return Err(format!("unknown event type {etype}"));
    }
    let occurred = match t.cell(rec, "Occurred At")? {
        Some(s) => parse_ts(s).ok_or_else(|| format!("bad Occurred At `{s}`"))?,
        None => recorded,
    };
    let agent_id = t
        .cell(rec, "Agent ID")?
        .ok_or("blank Agent ID")?
        .to_string();
    let available_for = channels(t.cell(rec, "Available For")?);
    if etype == "AGENT_AVAILABILITY/UPDATED" && available_for.is_none() {
        return Err("AGENT_AVAILABILITY/UPDATED with blank Available For".into());
    }
    Ok(AgentEvent {
        event_id: derive_event_id(&agent_id, &etype, occurred),
        event_type: etype,
        agent_id,
        occurred_at: occurred,
        recorded_at: recorded,
        away_reason: t.cell(rec, "Away Reason")?.map(str::to_string),
        active_reason: t.cell(rec, "Active Reason")?.map(str::to_string),
        available_for,
        source: SOURCE_REPORT.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_survives_bom_blank_lines_quotes_and_empty_body() {
        let body = "\u{feff}\r\n\nTimestamp,Occurred At,Agent,Agent ID,Type,Available For,Away Reason,Active Reason\n\
            2024-05-06T15:00:02.1Z,2024-05-06T15:00:02.101Z,\"Ruiz, Ana\",A1,AGENT_STATUS/LOGGED_IN,,,Work\n\
            2024-05-06T15:00:40Z,2024-05-06T15:00:40.517Z,\"Line\nBreak\",A1,AGENT_AVAILABILITY/UPDATED,\"[VOICE, MESSAGING]\",,\n\
            2024-05-06T16:00:40Z,2024-05-06T16:00:40Z,X,A1,AGENT_AVAILABILITY/UPDATED,[ ],,\n\
            2024-05-06T17:00:00Z,2024-05-06T17:00:00Z,X,A1,AGENT_STATUS/SOMETHING_NEW,,,\n\
            2024-05-06T17:00:00Z,2024-05-06T17:00:00Z,X\n";
        let (evs, aside) = agent_events_csv(body.as_bytes(), "r").unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].active_reason.as_deref(), Some("Work"));
        assert_eq!(
            evs[1].available_for,
            Some(vec!["MESSAGING".into(), "VOICE".into()])
        );
        assert_eq!(evs[2].available_for, Some(vec![]));
        assert_eq!(aside.len(), 2, "{aside:?}");
        assert!(aside[1].reason.contains("missing column"), "{aside:?}");
        assert!(agent_events_csv(b"", "r").unwrap().0.is_empty());
    }

    #[test]
    fn jsonl_ids_match_report_ids_and_bad_lines_are_set_aside() {
        let body = br#"{"id":"x","type":"AGENT_STATUS/LOGGED_IN","timestamp":"2024-05-06T15:00:02.118Z","extra":1,"content":{"agentId":"A1","occurredAt":"2024-05-06T15:00:02.101Z","activeReason":{"id":"r","name":"Work"}}}
{not json

{"id":"y","type":"AGENT_STATUS/SOMETHING_NEW","timestamp":"2024-05-06T15:00:02.118Z","content":{"agentId":"A1"}}
{"id":"z","type":"AGENT_AVAILABILITY/FOCUS_ENTERED","timestamp":"2024-05-06T15:10:00.5Z","content":{"agentId":"A1","context":{"availableFor":["VOICE"]}}}
"#;
        let (evs, aside) = agent_events_jsonl(body, "events");
        assert_eq!(evs.len(), 2);
        assert_eq!(aside.len(), 2);
        assert!(aside[0].location.ends_with("line 2"));
        let csv = "Timestamp,Occurred At,Agent,Agent ID,Type,Available For,Away Reason,Active Reason\n2024-05-06T15:00:02.118Z,2024-05-06T15:00:02.101000Z,A,A1,AGENT_STATUS/LOGGED_IN,,,Work\n";
        let (r, _) = agent_events_csv(csv.as_bytes(), "r").unwrap();
        assert_eq!(r[0].event_id, evs[0].event_id);
        assert_eq!(evs[1].occurred_at, evs[1].recorded_at);
    }
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
    body: &[u8],
    what: &str,
) -> (Vec<crate::model::ConversationEvent>, Vec<SetAside>) {
    use crate::model::{ConversationEvent, CONVERSATION_EVENT_TYPES};
    json_lines(body, what, |raw: RawConvLine| {
        if !CONVERSATION_EVENT_TYPES.contains(&raw.etype.as_str()) {
            return Err(format!("unknown event type {}", raw.etype));
        }
        let ts =
            parse_ts(&raw.timestamp).ok_or_else(|| format!("bad timestamp `{}`", raw.timestamp))?;
        let c = raw.content;
        let conversation_id = c.conversation_id.ok_or("no content.conversationId")?;
        let ctx = c.context.and_then(|x| x.assignee).unwrap_or_default();
        let new = c.assignee.unwrap_or_default();
        Ok(ConversationEvent {
            event_id: derive_event_id(&conversation_id, &raw.etype, ts),
            event_type: raw.etype,
            conversation_id,
            customer_id: c.customer_id,
            recorded_at: ts,
            inbox_id: ctx.inbox_id,
            agent_id: ctx.agent_id,
            new_inbox_id: new.inbox_id,
            new_agent_id: new.agent_id,
            source: SOURCE_EVENTS_API.to_string(),
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
    body: &[u8],
    what: &str,
) -> Result<(Vec<crate::model::ConversationEvent>, Vec<SetAside>), String> {
    use crate::model::{ConversationEvent, CONVERSATION_EVENT_TYPES};
    let t = CsvTable::parse(body)?;
    t.require(CONVERSATION_REPORT_COLUMNS)?;
    Ok(csv_rows(&t, what, |rec| {
        let ts = t.cell(rec, "Timestamp")?.ok_or("blank Timestamp")?;
        let ts = parse_ts(ts).ok_or_else(|| format!("bad Timestamp `{ts}`"))?;
        let etype = t
            .cell(rec, "Event Type")?
            .ok_or("blank Event Type")?
            .to_string();
        if !CONVERSATION_EVENT_TYPES.contains(&etype.as_str()) {
            return Err(format!("unknown event type {etype}"));
        }
        let conversation_id = t
            .cell(rec, "Conversation ID")?
            .ok_or("blank Conversation ID")?
            .to_string();
        let s = |c: &str| t.cell(rec, c).map(|v| v.map(str::to_string));
        Ok(ConversationEvent {
            event_id: derive_event_id(&conversation_id, &etype, ts),
            event_type: etype,
            conversation_id,
            customer_id: s("Customer ID")?,
            recorded_at: ts,
            inbox_id: s("Assigned Inbox ID")?,
            agent_id: s("Assigned Agent ID")?,
            new_inbox_id: s("Newly Assigned Inbox ID")?,
            new_agent_id: s("Newly Assigned Agent ID")?,
            source: SOURCE_REPORT.to_string(),
        })
    }))
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

/// Decodes a `work-session-events` CSV body: (ended sessions, open ones skipped, set aside).
/// Open sessions (no `id` yet) are not stored until they end.
pub fn work_sessions_csv(
    body: &[u8],
    what: &str,
) -> Result<(Vec<crate::model::WorkSession>, usize, Vec<SetAside>), String> {
    use crate::model::WorkSession;
    let t = CsvTable::parse(body)?;
    t.require(WORK_SESSION_COLUMNS)?;
    let (rows, aside) = csv_rows(&t, what, |rec| -> Result<Option<WorkSession>, String> {
        let s = |c: &str| t.cell(rec, c).map(|v| v.map(str::to_string));
        let ts = |c: &str| -> Result<Option<crate::time::Ms>, String> {
            match t.cell(rec, c)? {
                None => Ok(None),
                Some(v) => parse_ts(v)
                    .map(Some)
                    .ok_or_else(|| format!("bad {c} `{v}`")),
            }
        };
        let num = |c: &str| -> Result<Option<f64>, String> {
            match t.cell(rec, c)? {
                None => Ok(None),
                Some(v) => v
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| format!("bad {c} `{v}`")),
            }
        };
        let Some(id) = s("id")? else {
            // Still open: Gladly leaves `id` and the end columns blank until it ends.
            return Ok(None);
        };
        let within_sla = match t.cell(rec, "within_sla")? {
            None => None,
            Some(v) if v.eq_ignore_ascii_case("true") => Some(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Some(false),
            Some(v) => return Err(format!("bad within_sla `{v}`")),
        };
        Ok(Some(WorkSession {
            id,
            contact_session_id: s("contact_session_id")?.ok_or("blank contact_session_id")?,
            contact_session_created_at: ts("contact_session_created_at")?
                .ok_or("blank contact_session_created_at")?,
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
            work_session_handle_time_seconds: num("work_session_handle_time_sec")?,
            work_session_after_contact_time_seconds: num("work_session_after_contact_time_sec")?,
            work_session_unknown_time_seconds: num("work_session_unknown_time_sec")?,
            accepted_inbox_id: s("accepted_inbox_id")?,
        }))
    });
    let open = rows.iter().filter(|r| r.is_none()).count();
    Ok((rows.into_iter().flatten().collect(), open, aside))
}
