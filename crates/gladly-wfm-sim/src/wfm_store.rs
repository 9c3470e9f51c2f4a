//! The WFM simulator's store and the indexes that keep it fast at a quarter of a 2,000-agent
//! centre (millions of task records): every task by (integration, user, axis) ordered by start,
//! for the overlap check, and every record by (integration, start), for replace windows. Each
//! incoming record then costs O(log n) and a replace window deletes a range, where a scan of the
//! whole store per record made a long push quadratic.
//!
//! A record is held as the JSON text it arrived in, beside the few fields the indexes need; the
//! same text is the same record, and other text is compared parsed (spacing, key order). A quarter's push
//! held as `serde_json::Value` trees took 8 GiB, and walking and faulting in that heap was much
//! of the simulator's time. `Store`, the plain map that tests compare and `--dump` writes, is
//! rendered from it on demand.

use std::collections::{BTreeMap, BTreeSet};

// FxHash: the store hashes every record's key several times; SipHash was a twentieth of the
// simulator's time under a quarter's push (its keys are our own ids, not an attacker's).
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::time::{self, Ms};

/// The four kinds of record the receiver stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    Users,
    Tasks,
    Conversations,
    Intervals,
}

impl Kind {
    /// The field a replace window selects records by (users have none).
    pub fn start_field(self) -> &'static str {
        match self {
            Kind::Tasks => "startTime",
            Kind::Conversations => "dayStart",
            Kind::Intervals => "intervalStart",
            Kind::Users => "",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Store {
    /// kind → key → (integration id, record)
    pub records: BTreeMap<Kind, BTreeMap<String, (String, Value)>>,
}

impl Store {
    pub fn kind(&self, k: Kind) -> Vec<Value> {
        self.records
            .get(&k)
            .map(|m| m.values().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }
}

/// A UTC timestamp the receiver accepts: ISO 8601 with `Z` or an offset.
pub(crate) fn strict_ts(v: &Value) -> Result<Option<Ms>, ()> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => {
            let has_zone = s.ends_with('Z') || s.rfind(['+', '-']).is_some_and(|i| i > 10);
            if !has_zone {
                return Err(());
            }
            time::parse_ts(s).map(Some).ok_or(())
        }
        _ => Err(()),
    }
}

/// What an upsert did to the stored record with that key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Inserted,
    Updated,
    Duplicate,
}

/// A record's key, shared by the record map and the indexes (one allocation, not three).
type Key = Arc<str>;

/// One user's segments on one axis (of one integration): the only records a task can overlap.
#[derive(Default)]
struct Lane {
    /// (start, key) → end, for closed segments.
    closed: BTreeMap<(Ms, Key), Ms>,
    /// (start, key) of open segments (no end yet): usually none or one.
    open: BTreeSet<(Ms, Key)>,
    /// The longest closed segment this lane has held: a closed segment that starts more than
    /// this long before an instant cannot reach it, which bounds the overlap search.
    max_len: Ms,
}

impl Lane {
    fn add(&mut self, start: Ms, end: Option<Ms>, key: Key) {
        match end {
            Some(e) => {
                self.max_len = self.max_len.max(e - start);
                self.closed.insert((start, key), e);
            }
            None => {
                self.open.insert((start, key));
            }
        }
    }

    fn remove(&mut self, start: Ms, end: Option<Ms>, key: &Key) {
        let k = (start, key.clone());
        match end {
            Some(_) => self.closed.remove(&k),
            None => self.open.take(&k).map(|_| 0),
        };
    }
}

/// Where a task sits in the lanes: which lane, its start and its end. Only tasks whose user
/// and axis are strings take part in overlap checks (as the receiver's rule reads).
#[derive(Clone, Copy)]
struct InLane {
    lane: u32,
    start: Ms,
    end: Option<Ms>,
}

/// A stored record: its integration (by number), what indexes it, and its JSON text.
struct Held {
    integ: u32,
    start: Option<Ms>,
    lane: Option<InLane>,
    json: Box<str>,
}

/// The store with its indexes, changed only through these methods so they never disagree.
pub struct IndexedStore {
    /// Integration ids by number, and numbers by id: the indexes compare numbers, not strings.
    integrations: Vec<Box<str>>,
    integration_no: HashMap<Box<str>, u32>,
    records: BTreeMap<Kind, HashMap<Key, Held>>,
    /// Lanes by number, and numbers by "integration\0user\0axis".
    lanes: Vec<Lane>,
    lane_no: HashMap<Box<str>, u32>,
    /// kind → (integration, start, key) of every record with a start, for replace windows.
    by_start: HashMap<Kind, BTreeSet<(u32, Ms, Key)>>,
    /// The least key, for the lower end of ranges.
    no_key: Key,
    /// A buffer for building lane names without allocating per record.
    scratch: String,
}

impl Default for IndexedStore {
    fn default() -> Self {
        IndexedStore {
            integrations: Vec::new(),
            integration_no: HashMap::default(),
            records: BTreeMap::new(),
            lanes: Vec::new(),
            lane_no: HashMap::default(),
            by_start: HashMap::default(),
            no_key: Arc::from(""),
            scratch: String::new(),
        }
    }
}

impl IndexedStore {
    pub fn new(store: Store) -> IndexedStore {
        let mut ix = IndexedStore::default();
        for (kind, m) in store.records {
            ix.records.entry(kind).or_default();
            for (key, (integ, rec)) in m {
                ix.upsert(kind, key, &integ, &rec, &rec.to_string());
            }
        }
        ix
    }

    /// The plain map of everything stored (what tests compare and `--dump` writes), rendered
    /// from the held text.
    pub fn store(&self) -> Store {
        let records = self
            .records
            .iter()
            .map(|(kind, m)| {
                let m = m
                    .iter()
                    .map(|(k, h)| {
                        let rec = serde_json::from_str(&h.json).expect("held text is JSON");
                        let integ = self.integrations[h.integ as usize].to_string();
                        (k.to_string(), (integ, rec))
                    })
                    .collect();
                (*kind, m)
            })
            .collect();
        Store { records }
    }

    /// The tasks whose start lies in `[from, to)`, by key.
    pub fn tasks_starting(&self, from: Ms, to: Ms) -> Vec<Value> {
        if from >= to {
            return Vec::new();
        }
        let (Some(set), Some(held)) = (
            self.by_start.get(&Kind::Tasks),
            self.records.get(&Kind::Tasks),
        ) else {
            return Vec::new();
        };
        let mut keys: Vec<&Key> = (0..self.integrations.len() as u32)
            .flat_map(|i| {
                set.range((i, from, self.no_key.clone())..(i, to, self.no_key.clone()))
                    .map(|(_, _, k)| k)
            })
            .collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| held.get(k))
            .map(|h| serde_json::from_str(&h.json).expect("held text is JSON"))
            .collect()
    }

    pub fn has_user(&self, email: &str) -> bool {
        self.records
            .get(&Kind::Users)
            .is_some_and(|m| m.contains_key(email))
    }

    fn integration(&mut self, id: &str) -> u32 {
        if let Some(n) = self.integration_no.get(id) {
            return *n;
        }
        let n = self.integrations.len() as u32;
        self.integrations.push(id.into());
        self.integration_no.insert(id.into(), n);
        n
    }

    /// The lane of (integration, user, axis); `create` adds it when it is new.
    fn lane(&mut self, integ: &str, user: &str, axis: &str, create: bool) -> Option<u32> {
        self.scratch.clear();
        for (i, part) in [integ, user, axis].into_iter().enumerate() {
            if i > 0 {
                self.scratch.push('\0');
            }
            self.scratch.push_str(part);
        }
        if let Some(n) = self.lane_no.get(self.scratch.as_str()) {
            return Some(*n);
        }
        if !create {
            return None;
        }
        let n = self.lanes.len() as u32;
        self.lanes.push(Lane::default());
        self.lane_no.insert(self.scratch.as_str().into(), n);
        Some(n)
    }

    fn unindex(&mut self, kind: Kind, key: &Key, held: &Held) {
        if let Some(start) = held.start {
            if let Some(s) = self.by_start.get_mut(&kind) {
                s.remove(&(held.integ, start, key.clone()));
            }
        }
        if let Some(l) = held.lane {
            self.lanes[l.lane as usize].remove(l.start, l.end, key);
        }
    }

    /// Deletes the records of `kind` and `integration` whose start lies in `[start, end)`.
    pub fn delete_window(&mut self, kind: Kind, integration: &str, start: Ms, end: Ms) {
        let Some(&integ) = self.integration_no.get(integration) else {
            return;
        };
        let Some(set) = self.by_start.get(&kind) else {
            return;
        };
        let lo = (integ, start, self.no_key.clone());
        let hi = (integ, end, self.no_key.clone());
        let keys: Vec<Key> = set.range(lo..hi).map(|(_, _, k)| k.clone()).collect();
        for key in keys {
            let removed = self.records.get_mut(&kind).and_then(|m| m.remove(&key));
            if let Some(held) = removed {
                self.unindex(kind, &key, &held);
            }
        }
    }

    /// Stores a record (`rec`, parsed from `text`) under its key, replacing what was there.
    pub fn upsert(
        &mut self,
        kind: Kind,
        key: String,
        integration: &str,
        rec: &Value,
        text: &str,
    ) -> Change {
        let integ = self.integration(integration);
        // The same text is the same record; other text may still be (spacing, key order).
        let same = |h: &Held| {
            *h.json == *text || serde_json::from_str::<Value>(&h.json).is_ok_and(|old| old == *rec)
        };
        let old = self
            .records
            .get_mut(&kind)
            .and_then(|m| m.get_key_value(key.as_str()))
            .map(|(k, h)| (k.clone(), same(h), h.integ == integ));
        let json: Box<str> = text.into();
        let key: Key = match old {
            // The same record again: nothing to change, in the store or its indexes.
            Some((_, true, true)) => return Change::Duplicate,
            Some((ref k, _, _)) => {
                let k = k.clone();
                let held = self.records.get_mut(&kind).and_then(|m| m.remove(&k));
                if let Some(held) = held {
                    self.unindex(kind, &k, &held);
                }
                k
            }
            None => key.into(),
        };
        let start = strict_ts(&rec[kind.start_field()]).ok().flatten();
        let lane = match (kind, rec["userIdentifier"].as_str(), rec["axis"].as_str()) {
            (Kind::Tasks, Some(user), Some(axis)) => {
                let lane = self.lane(integration, user, axis, true).expect("created");
                // A task's start field is `startTime`: read once, above.
                let start = start.unwrap_or(0);
                let end = strict_ts(&rec["endTime"]).ok().flatten();
                self.lanes[lane as usize].add(start, end, key.clone());
                Some(InLane { lane, start, end })
            }
            _ => None,
        };
        if let Some(start) = start {
            self.by_start
                .entry(kind)
                .or_default()
                .insert((integ, start, key.clone()));
        }
        let held = Held {
            integ,
            start,
            lane,
            json,
        };
        let m = self.records.entry(kind).or_default();
        m.insert(key, held);
        match old {
            None => Change::Inserted,
            // The same record from another integration: it moves, and is still a duplicate.
            Some((_, true, _)) => Change::Duplicate,
            Some(_) => Change::Updated,
        }
    }

    /// Segments of one user on one axis must not overlap: a closed one that overlaps is
    /// rejected; a new one closes the user's open ones on that axis that start no later. When
    /// several stored segments conflict, the one named is the first by key.
    pub fn check_overlap(
        &mut self,
        integration: &str,
        key: &str,
        rec: &Value,
    ) -> Result<(), String> {
        let user = rec["userIdentifier"].as_str().unwrap_or("");
        let axis = rec["axis"].as_str().unwrap_or("");
        let start = strict_ts(&rec["startTime"]).ok().flatten().unwrap_or(0);
        let end = strict_ts(&rec["endTime"]).ok().flatten();
        let Some(lane_no) = self.lane(integration, user, axis, false) else {
            return Ok(());
        };
        let lane = &mut self.lanes[lane_no as usize];
        // The first conflicting segment by key, and whether it is open.
        let mut first: Option<(Key, bool)> = None;
        let mut consider = |k: &Key, open: bool| {
            if first.as_ref().is_none_or(|(f, _)| k < f) {
                first = Some((k.clone(), open));
            }
        };
        let mut to_close = Vec::new();
        for (os, k) in &lane.open {
            if &**k == key {
                continue;
            }
            if *os <= start {
                to_close.push((*os, k.clone()));
            } else if end.is_none_or(|e| e > *os) {
                // An open segment that starts after this one: this one must end by then.
                consider(k, true);
            }
        }
        let lo = (start.saturating_sub(lane.max_len), self.no_key.clone());
        for ((os, k), oe) in lane.closed.range(lo..) {
            if end.is_some_and(|e| *os >= e) {
                break;
            }
            let overlaps = match end {
                Some(e) => start < *oe && *os < e,
                None => start < *oe,
            };
            if overlaps && &**k != key {
                consider(k, false);
            }
        }
        if let Some((k, open)) = first {
            return Err(if open {
                format!("overlaps open segment {k}")
            } else {
                format!("overlaps segment {k}")
            });
        }
        for (os, k) in to_close {
            lane.open.remove(&(os, k.clone()));
            lane.max_len = lane.max_len.max(start - os);
            lane.closed.insert((os, k.clone()), start);
            // The stored record is closed too: its text re-rendered with the new end.
            if let Some(h) = self
                .records
                .get_mut(&Kind::Tasks)
                .and_then(|m| m.get_mut(&k))
            {
                let mut other: Value = serde_json::from_str(&h.json).expect("held text is JSON");
                other["endTime"] = json!(time::fmt_ts(start));
                h.json = other.to_string().into();
                if let Some(l) = h.lane.as_mut() {
                    l.end = Some(start);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The receiver's rules as first written (a scan of every stored task per record, a scan of
    /// the whole kind per replace window): the reference the indexes must agree with.
    fn scan_check_overlap(
        store: &mut Store,
        integration: &str,
        key: &str,
        rec: &Value,
    ) -> Result<(), String> {
        let user = rec["userIdentifier"].as_str().unwrap_or("");
        let axis = rec["axis"].as_str().unwrap_or("");
        let start = strict_ts(&rec["startTime"]).ok().flatten().unwrap_or(0);
        let end = strict_ts(&rec["endTime"]).ok().flatten();
        let Some(tasks) = store.records.get_mut(&Kind::Tasks) else {
            return Ok(());
        };
        let mut to_close = Vec::new();
        for (k, (integ, other)) in tasks.iter() {
            if k == key
                || integ != integration
                || other["userIdentifier"].as_str() != Some(user)
                || other["axis"].as_str() != Some(axis)
            {
                continue;
            }
            let os = strict_ts(&other["startTime"]).ok().flatten().unwrap_or(0);
            match strict_ts(&other["endTime"]).ok().flatten() {
                None if os <= start => to_close.push(k.clone()),
                None => {
                    if end.is_none_or(|e| e > os) {
                        return Err(format!("overlaps open segment {k}"));
                    }
                }
                Some(oe) => {
                    let overlaps = match end {
                        Some(e) => start < oe && os < e,
                        None => start < oe,
                    };
                    if overlaps {
                        return Err(format!("overlaps segment {k}"));
                    }
                }
            }
        }
        for k in to_close {
            if let Some((_, other)) = tasks.get_mut(&k) {
                other["endTime"] = json!(time::fmt_ts(start));
            }
        }
        Ok(())
    }

    fn scan_delete_window(store: &mut Store, kind: Kind, integration: &str, s: Ms, e: Ms) {
        if let Some(m) = store.records.get_mut(&kind) {
            m.retain(|_, (integ, rec)| {
                let st = strict_ts(&rec[kind.start_field()]).ok().flatten();
                !(integ == integration && st.is_some_and(|t| t >= s && t < e))
            });
        }
    }

    fn scan_upsert(
        store: &mut Store,
        kind: Kind,
        key: String,
        integration: &str,
        rec: &Value,
    ) -> Change {
        let m = store.records.entry(kind).or_default();
        let c = match m.get(&key) {
            None => Change::Inserted,
            Some((_, old)) if old == rec => Change::Duplicate,
            Some(_) => Change::Updated,
        };
        m.insert(key, (integration.to_string(), rec.clone()));
        c
    }

    const MIN: Ms = 60_000;

    fn task(r: &mut Rng) -> (String, String, Value) {
        let integ = r.pick(&["a", "b"]).to_string();
        let key = format!("k{}", r.range(0, 60));
        let start = r.range(0, 600) * MIN;
        let end = match r.range(0, 9) {
            0 | 1 => Value::Null,
            2 => json!(time::fmt_ts(start)), // zero length
            _ => json!(time::fmt_ts(start + r.range(1, 90) * MIN)),
        };
        let mut rec = json!({
            "eventId": key,
            "userIdentifier": r.pick(&["u1", "u2", "u3"]),
            "axis": r.pick(&["status", "availability"]),
            "startTime": time::fmt_ts(start),
            "endTime": end,
        });
        if r.chance(0.03) {
            rec.as_object_mut().unwrap().remove("axis");
        }
        (integ, key, rec)
    }

    #[test]
    fn indexes_answer_exactly_as_a_scan_of_the_whole_store() {
        let mut r = Rng::derive(7, &["wfm-store"]);
        for round in 0..30 {
            let mut reference = Store::default();
            let mut ix = IndexedStore::default();
            let (mut rejected, mut closed) = (0, 0);
            for step in 0..800 {
                if r.chance(0.04) {
                    let integ = r.pick(&["a", "b"]).to_string();
                    let s = r.range(0, 600) * MIN;
                    let e = s + r.range(1, 200) * MIN;
                    scan_delete_window(&mut reference, Kind::Tasks, &integ, s, e);
                    ix.delete_window(Kind::Tasks, &integ, s, e);
                    continue;
                }
                let (integ, key, rec) = task(&mut r);
                let before = reference.kind(Kind::Tasks);
                let want = scan_check_overlap(&mut reference, &integ, &key, &rec);
                let got = ix.check_overlap(&integ, &key, &rec);
                assert_eq!(got, want, "round {round} step {step}: {rec}");
                if want.is_err() {
                    rejected += 1;
                    continue;
                }
                if before != reference.kind(Kind::Tasks) {
                    closed += 1;
                }
                let want = scan_upsert(&mut reference, Kind::Tasks, key.clone(), &integ, &rec);
                // Spacing differs from one insert to the next: equal records are still equal.
                let text = if step % 2 == 0 {
                    rec.to_string()
                } else {
                    serde_json::to_string_pretty(&rec).unwrap()
                };
                assert_eq!(ix.upsert(Kind::Tasks, key, &integ, &rec, &text), want);
                assert_eq!(
                    ix.store().records,
                    reference.records,
                    "round {round} step {step}"
                );
                let (from, to) = (r.range(0, 600) * MIN, r.range(0, 600) * MIN);
                let starting: Vec<Value> = reference.records[&Kind::Tasks]
                    .values()
                    .map(|(_, rec)| rec.clone())
                    .filter(|rec| {
                        strict_ts(&rec["startTime"])
                            .ok()
                            .flatten()
                            .is_some_and(|s| s >= from && s < to)
                    })
                    .collect();
                assert_eq!(ix.tasks_starting(from, to), starting);
            }
            // The rounds exercise every rule, not just inserts.
            assert!(
                rejected > 50 && closed > 5,
                "rejected {rejected}, closed {closed}"
            );
            // Indexes rebuilt from the store (a `--dump` reload) answer the same too.
            let mut reloaded = IndexedStore::new(reference.clone());
            for _ in 0..200 {
                let (integ, key, rec) = task(&mut r);
                let want = scan_check_overlap(&mut reference, &integ, &key, &rec);
                assert_eq!(reloaded.check_overlap(&integ, &key, &rec), want);
            }
            assert_eq!(reloaded.store().records, reference.records);
        }
    }

    #[test]
    fn a_replace_window_deletes_only_its_integration_and_range() {
        let mut ix = IndexedStore::default();
        for (integ, key, start) in [
            ("a", "x", 0),
            ("a", "y", 10),
            ("b", "z", 10),
            ("a", "w", 20),
        ] {
            let rec = json!({"externalId": key, "dayStart": time::fmt_ts(start * MIN)});
            ix.upsert(
                Kind::Conversations,
                key.into(),
                integ,
                &rec,
                &rec.to_string(),
            );
        }
        ix.delete_window(Kind::Conversations, "a", 10 * MIN, 20 * MIN);
        let store = ix.store();
        let keys: Vec<&String> = store.records[&Kind::Conversations].keys().collect();
        assert_eq!(keys, ["w", "x", "z"]);
    }
}
