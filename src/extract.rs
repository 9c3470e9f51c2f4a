//! Extract: one business day from Gladly into the raw zone. Agent and conversation events come
//! from the Events API when the day starts within the last 23 hours (it refuses windows older
//! than 24), else from the day's reports; work sessions always from `work-session-events`,
//! over `[day start, min(day end + 24 h, now))`, merged by the date they were created.
//!
//! An `Extractor` owns what it needs, so a run can fetch the next days on its own task while
//! the previous one is landed and transformed: the rate limits, not the CPU, set the pace of
//! extraction.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::audit::{self, SummaryRow};
use crate::gladly::decode::{self, DecodeError, Decoded, Request};
use crate::gladly::spool::SpooledBody;
use crate::gladly::{plausible, GladlyClient, GladlyError};
use crate::model::{SetAside, Source, WorkSession};
use crate::raw::{self, RawEvents};
use crate::stages::{self, Rewrite};
use crate::state::PendingWorkFile;
use crate::storage::{Storage, StorageError};
use crate::time::{self, Ms, MS_PER_HOUR};

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error(transparent)]
    Gladly(#[from] GladlyError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Answer(String),
}

impl From<crate::stages::StageError> for ExtractError {
    fn from(e: crate::stages::StageError) -> Self {
        use crate::stages::StageError;
        match e {
            StageError::Storage(s) => ExtractError::Storage(s),
            StageError::Gladly(g) => ExtractError::Gladly(g),
            other => ExtractError::Answer(other.to_string()),
        }
    }
}

/// A day as fetched, not yet decoded nor landed: its answers wait on disk, so the days fetched
/// ahead of the one being landed cost files, not memory (a week's extraction held two decoded
/// days beside the one being landed and the one being transformed).
pub struct Fetched {
    pub day: NaiveDate,
    agents: (Spooled<Decoded<crate::model::AgentEvent>>, &'static str),
    conversations: Spooled<Decoded<crate::model::ConversationEvent>>,
    sessions: Option<Spooled<(Decoded<WorkSession>, usize)>>,
    /// `None` when the day is not audited at all (`[audit]` off, or the day incomplete).
    summary: Option<SummaryFetch>,
}

/// Gladly's summary of a day, spooled, or why there is none: a summary Gladly does not serve
/// leaves the day not audited, never a failed day (DESIGN §14).
enum SummaryFetch {
    Spooled(Spooled<Decoded<SummaryRow>>),
    NotAudited(String),
}

/// One answer spooled to disk with what decodes it.
struct Spooled<O> {
    body: SpooledBody,
    req: Request,
    decode: fn(Box<dyn std::io::Read + Send>, &Request) -> Result<O, DecodeError>,
}

impl<O: Checked> Spooled<O> {
    /// Decodes the answer (CPU: call it off the async workers), then applies the rule that a
    /// mostly unreadable answer fails its day (the day is then not marked done; the next run
    /// retries it).
    fn decode(self) -> Result<O, ExtractError> {
        let reader = self.body.open().map_err(|e| {
            ExtractError::Answer(format!(
                "{}: reading the spooled answer {}: {e}",
                self.req.what,
                self.body.path().display()
            ))
        })?;
        let out = (self.decode)(reader, &self.req)
            .map_err(|d| ExtractError::Answer(format!("Gladly's answer could not be read: {d}")))?;
        out.verify()
            .map_err(|e| ExtractError::Answer(e.to_string()))?;
        Ok(out)
    }
}

/// Agent events of a report close to its row cap are probably cut short: said, not hidden.
fn warn_if_capped<T>(d: &Decoded<T>, source: &str) {
    // The cap is on the rows Gladly sends, repeats included.
    if source == Source::Report.as_str() && d.total >= 95_000 {
        crate::log::warn(format!(
            "{}: {} rows, close to the reports' reported cap; the day may be truncated",
            d.what, d.total
        ));
    }
}

/// Work sessions as decoded, the still-open ones only counted (stored once they end).
fn sessions_of((d, open): (Decoded<WorkSession>, usize)) -> (Vec<WorkSession>, Vec<SetAside>) {
    if open > 0 {
        crate::log::debug(format!(
            "{}: {open} session(s) still open, stored once they end",
            d.what
        ));
    }
    (d.rows, d.aside)
}

/// What extracting a day did, for the manifest and for the transform.
#[derive(Debug, Default)]
pub struct Extracted {
    /// Which API served the day's events.
    pub source: &'static str,
    pub set_aside: Vec<SetAside>,
    /// (dataset, date, rows now in the raw partition)
    pub rows: Vec<(&'static str, NaiveDate, usize)>,
    /// Why the day's summary could not be landed (the day is then not audited).
    pub not_audited: Option<String>,
}

pub struct Extractor {
    pub gladly: Arc<GladlyClient>,
    pub st: Storage,
    pub tz: Tz,
    pub now: Ms,
    /// Where a day whose raw work sessions change is recorded, before they change.
    pub pending: Arc<PendingWorkFile>,
    /// Days that end by this instant are audited (their summary fetched); `None`: no audit.
    pub audit_until: Option<Ms>,
}

/// A decoded answer that can say whether it is trusted.
trait Checked {
    fn verify(&self) -> Result<(), DecodeError>;
}

impl<T> Checked for Decoded<T> {
    fn verify(&self) -> Result<(), DecodeError> {
        Decoded::verify(self)
    }
}

impl<T> Checked for (Decoded<T>, usize) {
    fn verify(&self) -> Result<(), DecodeError> {
        self.0.verify()
    }
}

fn frame_err(what: String) -> impl FnOnce(polars::prelude::PolarsError) -> ExtractError {
    move |e| ExtractError::Answer(format!("{what}: {e}"))
}

/// A spawned task aborted when its handle is dropped (a plain `JoinHandle` detaches it): the
/// run's extract task when the run stops early, and each day's fetch when that task ends, so
/// nothing goes on spending the reports budget.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Extractor {
    /// Whether a day is read from the Events API: its start lies within the last 23 hours.
    pub fn served_by_events_api(&self, day: NaiveDate) -> bool {
        time::day_start(self.tz, day) >= self.now - 23 * MS_PER_HOUR
    }

    /// Fetches the day's three streams at once (the reports' in-flight cap still holds). The
    /// first stream to fail fails the day at once, and the whole day may take at most
    /// `gladly.day_timeout_minutes`: a slow or failing server costs a bounded time, not hours.
    pub async fn fetch(&self, day: NaiveDate) -> Result<Fetched, ExtractError> {
        let limit = self.gladly.day_timeout;
        let all = async {
            tokio::try_join!(
                self.fetch_agent_events(day),
                self.fetch_conversations(day),
                self.spool_work_sessions(day),
                self.fetch_summary(day)
            )
        };
        let (agents, conversations, sessions, summary) = tokio::time::timeout(limit, all)
            .await
            .map_err(|_| {
                ExtractError::Answer(format!(
                    "day {day}: extracting it took longer than gladly.day_timeout_minutes ({} min), so it was abandoned; the day is not marked done and the next run fetches it again",
                    limit.as_secs_f64() / 60.0
                ))
            })??;
        Ok(Fetched {
            day,
            agents,
            conversations,
            sessions,
            summary,
        })
    }

    /// The day's daily `AgentSummaryV2`, when the day is audited. Refused credentials fail the
    /// day as everywhere; any other failure (after the client's retries) leaves it not audited.
    async fn fetch_summary(&self, day: NaiveDate) -> Result<Option<SummaryFetch>, ExtractError> {
        let (start, end) = (time::day_start(self.tz, day), time::day_end(self.tz, day));
        if self.audit_until.is_none_or(|until| end > until) {
            return Ok(None);
        }
        match self
            .gladly
            .agent_summary(self.tz, (day, day), "daily", &self.spool_dir())
            .await
        {
            Ok(body) => {
                let req = Request::new(format!("AgentSummaryV2 {day}"), start, end, self.tz);
                let decode = decode::agent_summary_csv;
                Ok(Some(SummaryFetch::Spooled(Spooled { body, req, decode })))
            }
            Err(e @ GladlyError::Auth { .. }) => Err(e.into()),
            Err(e) => Ok(Some(SummaryFetch::NotAudited(e.to_string()))),
        }
    }

    /// Lands the day's summary in the raw zone, or records why the day is not audited: an
    /// unreadable or empty answer is not a failed day.
    fn land_summary(
        &self,
        day: NaiveDate,
        summary: Option<SummaryFetch>,
        x: &mut Extracted,
    ) -> Result<(), ExtractError> {
        let s = match summary {
            None => return Ok(()),
            Some(SummaryFetch::NotAudited(why)) => {
                x.not_audited = Some(why);
                return Ok(());
            }
            Some(SummaryFetch::Spooled(s)) => s,
        };
        let decoded = match s.decode() {
            Ok(d) => d,
            Err(ExtractError::Answer(why)) => {
                x.not_audited = Some(why);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        x.set_aside.extend(decoded.aside);
        if decoded.rows.is_empty() {
            x.not_audited = Some(format!(
                "Gladly's AgentSummaryV2 for {day} is empty ({} row(s) read)",
                decoded.total
            ));
            return Ok(());
        }
        let mut rows = decoded.rows;
        rows.sort_by(|a, b| (&a.agent_id, &a.time_bucket).cmp(&(&b.agent_id, &b.time_bucket)));
        let mut df =
            audit::summary_frame(&rows).map_err(frame_err(format!("raw agent summary {day}")))?;
        self.st
            .write_partition(audit::RAW_AGENT_SUMMARY, day, &mut df)?;
        x.rows.push((audit::RAW_AGENT_SUMMARY, day, rows.len()));
        Ok(())
    }

    /// Lands a fetched day in the raw zone (CPU and disk; no network).
    pub fn land(&self, f: Fetched) -> Result<Extracted, ExtractError> {
        let day = f.day;
        let mut x = Extracted::default();
        // Each answer decoded just before it lands, and dropped after: one stream's rows in
        // memory at a time.
        let (agents, source) = f.agents;
        let agents = agents.decode()?;
        warn_if_capped(&agents, source);
        x.set_aside.extend(agents.aside);
        x.source = source;
        self.land_events(day, source, agents.rows, &mut x)?;
        crate::fault_point("raw-written");
        let conversations = f.conversations.decode()?;
        x.set_aside.extend(conversations.aside);
        self.land_events(day, "conversation events", conversations.rows, &mut x)?;
        let sessions = match f.sessions {
            Some(s) => sessions_of(s.decode()?),
            None => Default::default(),
        };
        self.land_work_sessions(sessions, &mut x)?;
        self.land_summary(day, f.summary, &mut x)?;
        Ok(x)
    }

    /// Fetches `days` in order, `ahead` at once so the reports' in-flight slots stay busy, and
    /// sends each day as fetched (its answers spooled to disk); the receiver lands it
    /// (`land`) on the thread that then transforms it. Landing here, on the blocking pool, kept
    /// a second set of allocator pages for the decoded rows beside the transform's: a 30-day
    /// backfill peaked at the sum of the two stages' memory rather than at the larger.
    pub async fn run(
        self: Arc<Self>,
        days: Vec<NaiveDate>,
        ahead: usize,
        tx: tokio::sync::mpsc::Sender<Result<Fetched, ExtractError>>,
    ) {
        let mut pending: std::collections::VecDeque<AbortOnDrop<Result<Fetched, ExtractError>>> =
            Default::default();
        let mut next = days.into_iter();
        loop {
            while pending.len() < ahead.max(1) {
                let Some(day) = next.next() else { break };
                let x = self.clone();
                pending.push_back(AbortOnDrop(tokio::spawn(async move { x.fetch(day).await })));
            }
            // Awaited in place, so an abort while waiting aborts this fetch too.
            let Some(h) = pending.front_mut() else { break };
            let r = match (&mut h.0).await {
                Ok(r) => r,
                Err(e) => Err(ExtractError::Answer(format!("fetching a day failed: {e}"))),
            };
            pending.pop_front();
            let failed = r.is_err();
            if tx.send(r).await.is_err() || failed {
                break;
            }
        }
    }

    /// Where this extractor spools answers while they are decoded.
    fn spool_dir(&self) -> std::path::PathBuf {
        self.st.temp_dir()
    }

    async fn fetch_agent_events(
        &self,
        day: NaiveDate,
    ) -> Result<(Spooled<Decoded<crate::model::AgentEvent>>, &'static str), ExtractError> {
        let (start, end) = (time::day_start(self.tz, day), time::day_end(self.tz, day));
        if self.served_by_events_api(day) {
            let req = Request::new(format!("events {day}"), start, end.min(self.now), self.tz);
            let entities = ["AGENT_STATUS", "AGENT_AVAILABILITY"];
            match self
                .gladly
                .events(req.start, req.end, &entities, &self.spool_dir())
                .await
            {
                Ok(body) => {
                    let decode = decode::agent_events_jsonl;
                    return Ok((Spooled { body, req, decode }, Source::EventsApi.as_str()));
                }
                Err(e) => self.fall_back_to_report(e, day, "AgentTimestampsReport")?,
            }
        }
        let req = Request::new(format!("AgentTimestampsReport {day}"), start, end, self.tz);
        let body = self
            .gladly
            .report("AgentTimestampsReport", self.tz, day, &self.spool_dir())
            .await?;
        let decode = decode::agent_events_csv;
        Ok((Spooled { body, req, decode }, Source::Report.as_str()))
    }

    /// An Events API window near its 24-hour edge (clocks skewed between here and Gladly) may
    /// be refused with any 400 or 422, whatever the body says: the day's report has the same
    /// events, so it is read from there. Anything else is the error it is.
    fn fall_back_to_report(
        &self,
        e: GladlyError,
        day: NaiveDate,
        report: &str,
    ) -> Result<(), ExtractError> {
        match e {
            GladlyError::Api {
                status: 400 | 422,
                what,
                detail,
                ..
            } => {
                crate::log::warn(format!(
                    "{what}: Gladly refused the window ({detail}), near the Events API's 24-hour edge; reading {day} from {report} instead"
                ));
                Ok(())
            }
            other => Err(other.into()),
        }
    }

    async fn fetch_conversations(
        &self,
        day: NaiveDate,
    ) -> Result<Spooled<Decoded<crate::model::ConversationEvent>>, ExtractError> {
        let (start, end) = (time::day_start(self.tz, day), time::day_end(self.tz, day));
        if self.served_by_events_api(day) {
            let req = Request::new(
                format!("conversation events {day}"),
                start,
                end.min(self.now),
                self.tz,
            );
            match self
                .gladly
                .events(req.start, req.end, &["CONVERSATION"], &self.spool_dir())
                .await
            {
                Ok(body) => {
                    let decode = decode::conversation_events_jsonl;
                    return Ok(Spooled { body, req, decode });
                }
                Err(e) => self.fall_back_to_report(e, day, "ConversationTimestampsReport")?,
            }
        }
        let req = Request::new(
            format!("ConversationTimestampsReport {day}"),
            start,
            end,
            self.tz,
        );
        let body = self
            .gladly
            .report(
                "ConversationTimestampsReport",
                self.tz,
                day,
                &self.spool_dir(),
            )
            .await?;
        let decode = decode::conversation_events_csv;
        Ok(Spooled { body, req, decode })
    }

    /// The work sessions created from the day's start until a day after its end (or now),
    /// decoded (for `follow`, which lands them at once).
    pub async fn fetch_work_sessions(
        &self,
        day: NaiveDate,
    ) -> Result<(Vec<WorkSession>, Vec<SetAside>), ExtractError> {
        let Some(spooled) = self.spool_work_sessions(day).await? else {
            return Ok(Default::default());
        };
        tokio::task::spawn_blocking(move || spooled.decode().map(sessions_of))
            .await
            .unwrap_or_else(|e| {
                Err(ExtractError::Answer(format!(
                    "decoding an answer failed: {e}"
                )))
            })
    }

    /// The same answer, spooled and not yet decoded; none when the window is empty.
    async fn spool_work_sessions(
        &self,
        day: NaiveDate,
    ) -> Result<Option<Spooled<(Decoded<WorkSession>, usize)>>, ExtractError> {
        let start = time::day_start(self.tz, day);
        let now_minute = self.now.div_euclid(60_000) * 60_000;
        let end = (time::day_end(self.tz, day) + time::MS_PER_DAY).min(now_minute);
        if end <= start {
            return Ok(None);
        }
        let body = self
            .gladly
            .work_sessions(start, end, &self.spool_dir())
            .await?;
        // The window is asked in UTC: a timestamp without offset is UTC.
        let req = Request::new(
            format!("work-session-events {day}"),
            start,
            end,
            chrono_tz::UTC,
        );
        let decode = decode::work_sessions_csv;
        Ok(Some(Spooled { body, req, decode }))
    }

    /// Lands a day of events: rows recorded outside the day are set aside (they would be
    /// another day's), the rest merged by id into the day's raw partition.
    fn land_events<E: RawEvents>(
        &self,
        day: NaiveDate,
        what: &str,
        fresh: Vec<E>,
        x: &mut Extracted,
    ) -> Result<(), ExtractError> {
        let (start, end) = (time::day_start(self.tz, day), time::day_end(self.tz, day));
        let total = fresh.len();
        let (inside, outside): (Vec<_>, Vec<_>) = fresh
            .into_iter()
            .partition(|e| e.recorded_at() >= start && e.recorded_at() < end);
        // Rows dated outside the day they were asked for mean the answer was misread (say, a
        // timezone taken wrongly): mostly so, and the day fails rather than lands near-empty.
        if plausible::too_many_unreadable(outside.len(), total) {
            return Err(ExtractError::Answer(format!(
                "{what} {day}: {} of {total} rows are recorded outside the day (column Timestamp, e.g. {}), so the answer is not trusted",
                outside.len(),
                time::fmt_ts(outside[0].recorded_at())
            )));
        }
        crate::telemetry::set_aside("outside_day", outside.len() as u64);
        x.set_aside.extend(outside.iter().map(|e| SetAside {
            location: format!("{what} {day}, event {}", e.event_id()),
            reason: format!(
                "recorded at {} is outside the day",
                time::fmt_ts(e.recorded_at())
            ),
        }));
        let (_, rows) =
            stages::land_events(&self.st, day, inside, Rewrite::Always, raw::Via::Read)?;
        x.rows.push((E::DATASET, day, rows));
        Ok(())
    }

    /// Upserts ended sessions into the raw partition of the date they were created.
    pub fn land_work_sessions(
        &self,
        fetched: (Vec<WorkSession>, Vec<SetAside>),
        x: &mut Extracted,
    ) -> Result<(), ExtractError> {
        let (rows, aside) = fetched;
        x.set_aside.extend(aside);
        let mut by_day: BTreeMap<NaiveDate, Vec<WorkSession>> = BTreeMap::new();
        for w in rows {
            by_day
                .entry(time::day_of(self.tz, w.contact_session_created_at))
                .or_default()
                .push(w);
        }
        for (d, fresh) in by_day {
            let old = raw::read_work_sessions(&self.st, d)?.unwrap_or_default();
            let (merged, changed) = raw::upsert_work_sessions(old, fresh);
            if changed {
                let mut df = raw::work_sessions_builder(&merged)
                    .finish()
                    .map_err(frame_err(format!("raw work sessions {d}")))?;
                self.pending.touch(d)?;
                self.st.write_partition(raw::WORK_SESSIONS, d, &mut df)?;
            }
            x.rows.push((raw::WORK_SESSIONS, d, merged.len()));
        }
        Ok(())
    }
}
