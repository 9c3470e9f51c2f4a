//! The WFM simulator's store and the indexes that keep it fast at a quarter of a 2,000-agent
//! centre (millions of task records): every task by (integration, user, axis) ordered by start,
//! for the overlap check, and every record by (integration, start), for replace windows. Each
//! incoming record then costs O(log n) and a replace window deletes a range, where a scan of the
//! whole store per record made a long push quadratic.
//!
//! `Store` stays the plain map that tests compare and `--dump` writes; the indexes are derived
//! from it (rebuilt on load) and changed only together with it, through `IndexedStore`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// One user's segments on one axis (of one integration): the only records a task can overlap.
#[derive(Default)]
struct Lane {
    /// (start, key) → end, for closed segments.
    closed: BTreeMap<(Ms, String), Ms>,
    /// (start, key) of open segments (no end yet): usually none or one.
    open: BTreeSet<(Ms, String)>,
    /// The longest closed segment this lane has held: a closed segment that starts more than
    /// this long before an instant cannot reach it, which bounds the overlap search.
    max_len: Ms,
}

impl Lane {
    fn add(&mut self, start: Ms, end: Option<Ms>, key: &str) {
        match end {
            Some(e) => {
                self.max_len = self.max_len.max(e - start);
                self.closed.insert((start, key.to_string()), e);
            }
            None => {
                self.open.insert((start, key.to_string()));
            }
        }
    }

    fn remove(&mut self, start: Ms, end: Option<Ms>, key: &str) {
        let k = (start, key.to_string());
        match end {
            Some(_) => self.closed.remove(&k),
            None => self.open.take(&k).map(|_| 0),
        };
    }
}

/// Where a task record sits in the lanes: (integration, user, axis), start, end. Only records
/// whose user and axis are strings take part in overlap checks (as the receiver's rule reads).
type LaneKey = (String, String, String);

fn lane_of(integration: &str, rec: &Value) -> Option<(LaneKey, Ms, Option<Ms>)> {
    let user = rec["userIdentifier"].as_str()?;
    let axis = rec["axis"].as_str()?;
    let start = strict_ts(&rec["startTime"]).ok().flatten().unwrap_or(0);
    let end = strict_ts(&rec["endTime"]).ok().flatten();
    Some((
        (integration.to_string(), user.to_string(), axis.to_string()),
        start,
        end,
    ))
}

/// Where a record goes in the indexes: its start (replace windows) and, for a task, its lane.
struct Entry {
    start: Option<Ms>,
    lane: Option<(LaneKey, Ms, Option<Ms>)>,
}

impl Entry {
    fn of(kind: Kind, integ: &str, rec: &Value) -> Entry {
        Entry {
            start: strict_ts(&rec[kind.start_field()]).ok().flatten(),
            lane: if kind == Kind::Tasks {
                lane_of(integ, rec)
            } else {
                None
            },
        }
    }
}

/// The store with its indexes, changed only through these methods so they never disagree.
#[derive(Default)]
pub struct IndexedStore {
    store: Store,
    lanes: HashMap<LaneKey, Lane>,
    /// kind → (integration, start, key) of every record with a start, for replace windows.
    by_start: HashMap<Kind, BTreeSet<(String, Ms, String)>>,
}

impl IndexedStore {
    pub fn new(store: Store) -> IndexedStore {
        let mut ix = IndexedStore::default();
        for (kind, m) in &store.records {
            for (key, (integ, rec)) in m {
                ix.index(*kind, key, integ, rec);
            }
        }
        ix.store = store;
        ix
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn has_user(&self, email: &str) -> bool {
        self.store
            .records
            .get(&Kind::Users)
            .is_some_and(|m| m.contains_key(email))
    }

    fn index(&mut self, kind: Kind, key: &str, integ: &str, rec: &Value) {
        let entry = Entry::of(kind, integ, rec);
        self.add_entry(kind, key, integ, entry);
    }

    fn add_entry(&mut self, kind: Kind, key: &str, integ: &str, entry: Entry) {
        if let Some(start) = entry.start {
            self.by_start.entry(kind).or_default().insert((
                integ.to_string(),
                start,
                key.to_string(),
            ));
        }
        if let Some((lane, start, end)) = entry.lane {
            self.lanes.entry(lane).or_default().add(start, end, key);
        }
    }

    fn unindex(&mut self, kind: Kind, key: &str, integ: &str, rec: &Value) {
        if let Some(start) = strict_ts(&rec[kind.start_field()]).ok().flatten() {
            if let Some(s) = self.by_start.get_mut(&kind) {
                s.remove(&(integ.to_string(), start, key.to_string()));
            }
        }
        if kind == Kind::Tasks {
            if let Some((lane, start, end)) = lane_of(integ, rec) {
                if let Some(l) = self.lanes.get_mut(&lane) {
                    l.remove(start, end, key);
                }
            }
        }
    }

    /// Deletes the records of `kind` and `integration` whose start lies in `[start, end)`.
    pub fn delete_window(&mut self, kind: Kind, integration: &str, start: Ms, end: Ms) {
        let Some(set) = self.by_start.get(&kind) else {
            return;
        };
        let lo = (integration.to_string(), start, String::new());
        let hi = (integration.to_string(), end, String::new());
        let keys: Vec<String> = set.range(lo..hi).map(|(_, _, k)| k.clone()).collect();
        for key in keys {
            let removed = self
                .store
                .records
                .get_mut(&kind)
                .and_then(|m| m.remove(&key));
            if let Some((integ, rec)) = removed {
                self.unindex(kind, &key, &integ, &rec);
            }
        }
    }

    /// Stores a record under its key, replacing what was there.
    pub fn upsert(&mut self, kind: Kind, key: String, integration: &str, rec: Value) -> Change {
        // What indexes the new record, read before the record moves into the store (a move,
        // not a copy: at a quarter's scale the copies were a large part of the push).
        let entry = Entry::of(kind, integration, &rec);
        let m = self.store.records.entry(kind).or_default();
        let change = match m.get(&key) {
            None => Change::Inserted,
            Some((_, o)) if *o == rec => Change::Duplicate,
            Some(_) => Change::Updated,
        };
        let old = m.insert(key.clone(), (integration.to_string(), rec));
        if let Some((integ, o)) = old {
            self.unindex(kind, &key, &integ, &o);
        }
        self.add_entry(kind, &key, integration, entry);
        change
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
        let lane_key = (integration.to_string(), user.to_string(), axis.to_string());
        let Some(lane) = self.lanes.get_mut(&lane_key) else {
            return Ok(());
        };
        // The first conflicting segment by key, and whether it is open.
        let mut first: Option<(String, bool)> = None;
        let mut consider = |k: &str, open: bool| {
            if first.as_ref().is_none_or(|(f, _)| k < f.as_str()) {
                first = Some((k.to_string(), open));
            }
        };
        let mut to_close = Vec::new();
        for (os, k) in &lane.open {
            if k == key {
                continue;
            }
            if *os <= start {
                to_close.push((*os, k.clone()));
            } else if end.is_none_or(|e| e > *os) {
                // An open segment that starts after this one: this one must end by then.
                consider(k, true);
            }
        }
        let lo = (start.saturating_sub(lane.max_len), String::new());
        for ((os, k), oe) in lane.closed.range(lo..) {
            if end.is_some_and(|e| *os >= e) {
                break;
            }
            let overlaps = match end {
                Some(e) => start < *oe && *os < e,
                None => start < *oe,
            };
            if overlaps && k != key {
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
            if let Some((_, other)) = self
                .store
                .records
                .get_mut(&Kind::Tasks)
                .and_then(|m| m.get_mut(&k))
            {
                other["endTime"] = json!(time::fmt_ts(start));
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
                assert_eq!(ix.upsert(Kind::Tasks, key, &integ, rec.clone()), want);
                assert_eq!(
                    ix.store().records,
                    reference.records,
                    "round {round} step {step}"
                );
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
            ix.upsert(Kind::Conversations, key.into(), integ, rec.clone());
        }
        ix.delete_window(Kind::Conversations, "a", 10 * MIN, 20 * MIN);
        let keys: Vec<&String> = ix.store().records[&Kind::Conversations].keys().collect();
        assert_eq!(keys, ["w", "x", "z"]);
    }
}
