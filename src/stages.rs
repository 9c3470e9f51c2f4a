//! The pieces of the stages that both drivers call: `run` (a range of days, `pipeline`) and each
//! poll of `follow`. Start-up (credentials, root, ownership, state folder), the timezone, the
//! dimensions landed in the raw zone, events landed by day, and curated days read back for the
//! load. The drivers decide only which days and how often.

use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::frames::DataFrame;
use crate::gladly::{GladlyClient, GladlyError};
use crate::model::{AgentDim, InboxDim};
use crate::ownership::OwnershipError;
use crate::raw::{self, RawEvents};
use crate::storage::{Dir, Root, Storage, StorageError};
use crate::time::{self, Ms};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A `${VAR}` the command needs is unset.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("output.root: {0}")]
    Root(StorageError),
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Gladly(#[from] GladlyError),
    /// A frame could not be built or read (`what` names the dataset and day).
    #[error("{what}: {detail}")]
    Frame { what: String, detail: String },
    #[error("day {day} has no {dataset}: run the transform stage for it first")]
    Missing { dataset: String, day: NaiveDate },
    #[error("no timezone: set `timezone` in the pipeline file or run the extract stage once")]
    NoTimezone,
}

impl StageError {
    /// Start-up's refusals are configuration errors except a root that cannot be written
    /// (failed); refused credentials are refused; everything else fails the run.
    pub fn exit(&self) -> Exit {
        match self {
            StageError::Config(_) | StageError::Root(_) => Exit::Usage,
            StageError::Ownership(e) => e.exit(),
            StageError::Gladly(e) => e.exit(),
            _ => Exit::Failed,
        }
    }
}

fn frame_err(what: String) -> impl FnOnce(polars::prelude::PolarsError) -> StageError {
    move |e| StageError::Frame {
        what,
        detail: e.to_string(),
    }
}

/// What every command that works on a pipeline's root starts from.
pub struct Startup {
    pub root: Root,
    pub st: Storage,
    /// `_state/<pipeline>`: state, pending work and the run lock.
    pub state_dir: Dir,
}

impl Startup {
    /// Credentials only for the systems the command talks to (`extract`: Gladly, `push`: the
    /// WFM), and the root only if it is this pipeline's (DESIGN §3, §9); claims it if new.
    pub fn open(p: &Pipeline, extract: bool, push: bool) -> Result<Startup, StageError> {
        crate::log::add_secrets(&p.secrets());
        p.require_for_run(extract, push)?;
        let root = p.root().map_err(StageError::Root)?;
        crate::ownership::claim(&root, &p.name)?;
        Ok(Startup {
            st: Storage::new(root.clone(), p.compression),
            state_dir: root.dir(&p.state_rel()),
            root,
        })
    }
}

/// The business days' timezone: the pipeline's, else the organisation's (as Gladly answered
/// now, or as remembered from an earlier run).
pub fn timezone(
    configured: Option<Tz>,
    org: Option<&str>,
    remembered: Option<&str>,
) -> Result<Tz, StageError> {
    configured
        .or_else(|| org.and_then(time::parse_tz))
        .or_else(|| remembered.and_then(time::parse_tz))
        .ok_or(StageError::NoTimezone)
}

/// Agents (with their teams), team names and inboxes from Gladly, landed as `day`'s raw
/// snapshots taken at `snapshot_at`.
pub async fn land_dimensions(
    gladly: &GladlyClient,
    st: &Storage,
    day: NaiveDate,
    snapshot_at: Ms,
) -> Result<(Vec<AgentDim>, Vec<InboxDim>), StageError> {
    let (agents, teams) = gladly.agents_and_teams().await?;
    let inboxes = gladly.inboxes().await?;
    let mut a =
        raw::agents_frame(&agents, snapshot_at).map_err(frame_err("agents snapshot".into()))?;
    st.write_partition(raw::AGENTS, day, &mut a)?;
    let mut t =
        raw::teams_frame(&teams, snapshot_at).map_err(frame_err("teams snapshot".into()))?;
    st.write_partition(raw::TEAMS, day, &mut t)?;
    let mut i =
        raw::inboxes_frame(&inboxes, snapshot_at).map_err(frame_err("inboxes snapshot".into()))?;
    st.write_partition(raw::INBOXES, day, &mut i)?;
    Ok((agents, inboxes))
}

/// The agents of the newest raw snapshot (none before the first).
pub fn newest_agents(st: &Storage) -> Result<Vec<AgentDim>, StageError> {
    match raw::newest(st, raw::AGENTS)? {
        None => Ok(Vec::new()),
        Some((_, df)) => Ok(raw::agents_from(&df)
            .map_err(frame_err("agents snapshot".into()))?
            .0),
    }
}

/// The inboxes of the newest raw snapshot (none before the first).
pub fn newest_inboxes(st: &Storage) -> Result<Vec<InboxDim>, StageError> {
    match raw::newest(st, raw::INBOXES)? {
        None => Ok(Vec::new()),
        Some((_, df)) => Ok(raw::inboxes_from(&df)
            .map_err(frame_err("inboxes snapshot".into()))?
            .0),
    }
}

/// When a day's raw partition is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Always: a report or window that replaces what the day holds (fresh rows win).
    Always,
    /// Only when an event id is new (a poll re-reading an overlap writes nothing).
    IfNew,
}

/// Merges `fresh` events of `day` into its raw partition by event id, fresh rows winning;
/// returns (ids new to the day, rows the day holds).
pub fn land_events<E: RawEvents>(
    st: &Storage,
    day: NaiveDate,
    fresh: Vec<E>,
    rewrite: Rewrite,
    via: raw::Via,
) -> Result<(usize, usize), StageError> {
    let old = E::read(st, day)?.unwrap_or_default();
    let (merged, new) = raw::merge_by_id(old, fresh, via);
    if new == 0 && rewrite == Rewrite::IfNew {
        return Ok((0, merged.len()));
    }
    let mut df = E::frame(&merged).map_err(frame_err(format!("{} {day}", E::DATASET)))?;
    st.write_partition(E::DATASET, day, &mut df)?;
    Ok((new, merged.len()))
}

/// A processed day's curated partition; one that is missing is an error (the load and the
/// follower read only days a transform wrote).
pub fn curated_frame(st: &Storage, dataset: &str, day: NaiveDate) -> Result<DataFrame, StageError> {
    st.read_partition(dataset, day)?
        .ok_or_else(|| StageError::Missing {
            dataset: dataset.to_string(),
            day,
        })
}

/// A processed day's curated rows, as `from` reads them.
pub fn read_curated<T>(
    st: &Storage,
    dataset: &str,
    day: NaiveDate,
    from: fn(&DataFrame) -> polars::prelude::PolarsResult<Vec<T>>,
) -> Result<Vec<T>, StageError> {
    let df = curated_frame(st, dataset, day)?;
    from(&df).map_err(frame_err(format!("{dataset} {day}")))
}
