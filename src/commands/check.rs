//! `gladly-wfm check`: validate the pipeline file, try the credentials (one cheap call each),
//! and report from the raw zone which labels and inboxes no rule matches, which two rules
//! match, and which rules match nothing seen. With `--strict`, an unmatched label or inbox or a
//! rule that matches nothing is a failure (exit 1), for CI of pipeline files.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Pipeline, Rule, Section};
use crate::exit::Exit;
use crate::gladly::{GladlyClient, GladlyError};
use crate::http::Stats;
use crate::raw;
use crate::storage::Storage;
use crate::transform::labels::label;
use crate::transform::rules::all_matches;
use crate::wfm::WfmClient;

/// How many of the newest raw days `check` reads labels from.
const CHECK_DAYS: usize = 14;

/// Done when fine; refused credentials; failed when unreachable or, with `strict`, a label,
/// inbox or rule unmatched; usage when a variable the online check needs is unset or the
/// output root belongs to another pipeline.
///
/// With `remove_webhook` it disables and deletes the pipeline's webhook in Gladly instead (done
/// when done or none there, failed when Gladly failed, refused credentials, usage with no
/// `[webhook]`).
pub async fn check(p: &Pipeline, offline: bool, strict: bool, remove_webhook: bool) -> Exit {
    crate::log::add_secrets(&p.secrets());
    let root = match p.root() {
        Ok(r) => r,
        Err(e) => {
            crate::say_err!("gladly-wfm: output.root: {e}");
            return Exit::Usage;
        }
    };
    if let Err(e) = crate::ownership::verify(&root, &p.name) {
        // Another pipeline's raw zone says nothing about this pipeline's rules (usage); a root
        // that cannot be read fails, as for `run`.
        crate::say_err!("gladly-wfm: {e}");
        return e.exit();
    }
    if remove_webhook {
        return remove(p).await;
    }
    if !offline {
        for section in [Section::Gladly, Section::Wfm] {
            if let Err(e) = p.require(section) {
                crate::say_err!("gladly-wfm: {e} (check --offline needs no credentials)");
                return Exit::Usage;
            }
        }
    }
    crate::say!(
        "{}: pipeline file is valid ({} task rules, {} workstream rules)",
        p.file.display(),
        p.tasks.len(),
        p.workstreams.len()
    );
    let mut exit = Exit::Done;
    if offline {
        crate::say!("credentials: not tried (--offline)");
    } else {
        let g = GladlyClient::new(&p.gladly, Arc::new(Stats::default()));
        match g.organization().await {
            Ok(org) => crate::say!(
                "gladly: credentials accepted (organisation timezone {})",
                org.timezone.unwrap_or_default()
            ),
            Err(e) => {
                crate::say!("gladly: {e}");
                exit = exit.max(e.exit());
            }
        }
        if let Some(w) = p.webhook.as_ref().filter(|w| !w.public_url.is_empty()) {
            match crate::webhook::manage::find(&g, w).await {
                Ok(h) => crate::say!("{}", crate::webhook::manage::describe(h.as_ref(), w)),
                Err(e) => {
                    crate::say!("webhook: {e}");
                    exit = exit.max(e.exit());
                }
            }
        }
        if let Some(w) = &p.wfm {
            let c = WfmClient::new(w, Arc::new(Stats::default()));
            // A zero-record upsert proves the token and the permission without changing anything.
            let env = serde_json::json!({"integrationId": w.integration_id, "source": "gladly", "data": []});
            match c
                .send(
                    true,
                    crate::load::push::USERS_PATH,
                    &env.to_string().into(),
                    "check",
                )
                .await
            {
                Ok(_) => crate::say!("wfm: credentials accepted"),
                Err(e) => {
                    crate::say!("wfm: {e}");
                    exit = exit.max(e.exit());
                }
            }
        }
    }
    let st = Storage::new(root, p.compression);
    let problems = report_labels(p, &st) + report_inboxes(p, &st);
    if strict && problems > 0 {
        crate::say!("strict: {problems} problem(s) above: every label and inbox seen must match a rule, and every rule something seen");
        exit = exit.max(Exit::Failed);
    }
    exit
}

/// `check --remove-webhook`.
async fn remove(p: &Pipeline) -> Exit {
    let Some(w) = &p.webhook else {
        crate::say_err!(
            "gladly-wfm: {}: no [webhook] table, so no webhook to remove",
            p.file.display()
        );
        return Exit::Usage;
    };
    if let Err(e) = p.require(Section::Gladly) {
        crate::say_err!("gladly-wfm: {e}");
        return Exit::Usage;
    }
    let g = GladlyClient::new(&p.gladly, Arc::new(Stats::default()));
    match crate::webhook::manage::remove(&g, w).await {
        Ok(Some(h)) => {
            crate::say!(
                "webhook: {} `{}` disabled and deleted",
                h.url,
                h.name.unwrap_or_default()
            );
            Exit::Done
        }
        Ok(None) => {
            crate::say!(
                "webhook: none in Gladly for {}; nothing to remove",
                w.public_url
            );
            Exit::Done
        }
        Err(e @ GladlyError::Auth { .. }) => {
            crate::say_err!("gladly-wfm: {e}");
            e.exit()
        }
        Err(e) => {
            crate::say_err!("gladly-wfm: webhook not removed: {e}");
            e.exit()
        }
    }
}

fn rule_names(rules: &[Rule], idx: &[usize]) -> String {
    idx.iter()
        .map(|i| format!("\"{}\" (line {})", rules[*i].name, rules[*i].line))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints the label report; returns the number of unmatched labels and unused task rules
/// (none with no raw data yet: there is nothing to check the rules against, which is no fault).
fn report_labels(p: &Pipeline, st: &Storage) -> usize {
    let days = match st.partitions(raw::AGENT_EVENTS) {
        Ok(d) => d,
        Err(e) => {
            crate::say!("labels: cannot list the raw zone: {e}");
            return 1;
        }
    };
    let newest: Vec<_> = days.iter().rev().take(CHECK_DAYS).collect();
    if newest.is_empty() {
        crate::say!("labels: no raw data yet, so nothing to check the task rules against (the extract stage lands some)");
        return 0;
    }
    let mut problems = 0;
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    for d in &newest {
        if let Ok(Some(evs)) = raw::read_agent_events(st, **d) {
            for e in &evs {
                *labels.entry(label(e).into_owned()).or_default() += 1;
            }
        }
    }
    crate::say!(
        "labels seen in the newest {} raw day(s): {}",
        newest.len(),
        labels.len()
    );
    let mut used = vec![false; p.tasks.len()];
    for (l, n) in &labels {
        let m = all_matches(&p.tasks, &[l]);
        for i in &m {
            used[*i] = true;
        }
        match m.len() {
            0 => {
                problems += 1;
                crate::say!("  unmatched label `{l}` ({n} events): no task rule matches")
            }
            1 => {}
            _ => crate::say!(
                "  label `{l}` ({n} events) matches {}; the first wins",
                rule_names(&p.tasks, &m)
            ),
        }
    }
    for (i, u) in used.iter().enumerate() {
        if !u {
            problems += 1;
            crate::say!(
                "  task rule \"{}\" (line {}) matches no label seen",
                p.tasks[i].name,
                p.tasks[i].line
            );
        }
    }
    problems
}

/// Prints the inbox report; returns the number of unmatched inboxes and unused workstream
/// rules (none with no snapshot yet, one when the snapshot cannot be read).
fn report_inboxes(p: &Pipeline, st: &Storage) -> usize {
    let df = match raw::newest(st, raw::INBOXES) {
        Ok(Some((_, df))) => df,
        Ok(None) => {
            crate::say!("inboxes: no snapshot yet, so nothing to check the workstream rules against (the extract stage lands one)");
            return 0;
        }
        Err(e) => {
            crate::say!("inboxes: the raw zone cannot be read: {e}");
            return 1;
        }
    };
    let Ok((inboxes, _)) = raw::inboxes_from(&df) else {
        crate::say!("inboxes: the newest snapshot cannot be read");
        return 1;
    };
    let mut problems = 0;
    crate::say!("inboxes in the newest snapshot: {}", inboxes.len());
    let mut used = vec![false; p.workstreams.len()];
    for i in &inboxes {
        let mut c = vec![i.inbox_id.as_str()];
        if let Some(n) = &i.name {
            c.push(n);
        }
        let m = all_matches(&p.workstreams, &c);
        for x in &m {
            used[*x] = true;
        }
        let name = format!(
            "`{}` ({}{})",
            i.name.as_deref().unwrap_or(""),
            i.inbox_id,
            if i.disabled { ", disabled" } else { "" }
        );
        match m.len() {
            0 => {
                problems += 1;
                crate::say!("  unmatched inbox {name}: no workstream rule matches")
            }
            1 => {}
            _ => crate::say!(
                "  inbox {name} matches {}; the first wins",
                rule_names(&p.workstreams, &m)
            ),
        }
    }
    for (i, u) in used.iter().enumerate() {
        if !u {
            problems += 1;
            crate::say!(
                "  workstream rule \"{}\" (line {}) matches no inbox",
                p.workstreams[i].name,
                p.workstreams[i].line
            );
        }
    }
    problems
}
