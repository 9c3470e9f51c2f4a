//! `gladly-wfm schedule`: the built-in scheduler. Fires on `[schedule] cron` in the pipeline's
//! timezone, runs one pipeline run at a time (a run that overruns a fire time delays the next
//! one, never overlaps it), carries on after a failed run, and stops on SIGINT/SIGTERM: at once
//! when idle; during a run, the run is abandoned between atomic steps, so the next run resumes.

use chrono_tz::Tz;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::log;
use crate::pipeline::{self, RunOptions, Stages};
use crate::state::PipelineState;

pub async fn schedule(p: &Pipeline) -> Exit {
    use tokio::signal::unix::{signal, SignalKind};
    let Some(sched) = p.schedule.clone() else {
        crate::say_err!(
            "{}: [schedule] cron is required by `schedule`",
            p.file.display()
        );
        return Exit::Usage;
    };
    // Every fire extracts and pushes: unset credentials fail now, not at the first fire.
    if let Err(e) = p.require_for_run(true, true) {
        crate::say_err!("gladly-wfm: {e}");
        return Exit::Usage;
    }
    let tz = schedule_timezone(p);
    // [service]: alive while the scheduler waits or runs; ready while the last run succeeded.
    let service = match crate::service::Service::start(p, None).await {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    service.ready(true, "");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut runs = 0u64;
    loop {
        let Some(next) = sched.upcoming(tz).next() else {
            log::info("schedule: no further fire times");
            return Exit::Done;
        };
        log::info(format!("schedule: next run at {}", next.to_rfc3339()));
        let wait = (next.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => { log::info("schedule: stopping (SIGTERM)"); return Exit::Done; }
            _ = int.recv() => { log::info("schedule: stopping (SIGINT)"); return Exit::Done; }
        }
        runs += 1;
        let opts = RunOptions {
            from: None,
            to: None,
            stages: Stages::ALL,
            dry_run: false,
            now: crate::time::now_ms(),
            trigger: "schedule".into(),
        };
        // The run listens for the signals itself and stops at its next safe point.
        let outcome = pipeline::run(p, &opts).await;
        crate::say!("{}", outcome.summary);
        if outcome.interrupted {
            log::info("schedule: stopping (a signal stopped the run; the next run resumes it)");
            return Exit::Done;
        }
        service.loop_turn();
        service.ready(
            outcome.exit == Exit::Done,
            &format!(
                "run: the last run ended with exit code {}",
                outcome.exit.code()
            ),
        );
        if outcome.exit != Exit::Done {
            log::warn(format!(
                "schedule: run {runs} ended with exit code {}; carrying on",
                outcome.exit.code()
            ));
        }
    }
}

/// The timezone the schedule fires in: the pipeline's, else the Gladly organisation's as
/// remembered by an earlier run, else UTC. It lives here, not on `Pipeline`, because it reads
/// state: parsing a pipeline file does no I/O.
pub fn schedule_timezone(p: &Pipeline) -> Tz {
    p.timezone
        .or_else(|| PipelineState::remembered_timezone(&p.state_dir().ok()?))
        .unwrap_or(chrono_tz::UTC)
}
