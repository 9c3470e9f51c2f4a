//! `gladly-wfm report`: writes the HTML page for one business date and prints where it is.

use std::path::PathBuf;

use chrono::NaiveDate;

use crate::config::Pipeline;
use crate::exit::Exit;
use crate::report;
use crate::time::Ms;

pub struct ReportArgs {
    pub date: Option<NaiveDate>,
    pub out: Option<PathBuf>,
    pub now: Ms,
}

/// Done when written; usage for no such day or no timezone; failed for unreadable data or an
/// unwritable file.
pub fn report(p: &Pipeline, a: &ReportArgs) -> Exit {
    match report::write(p, a.date, a.out.as_deref(), a.now) {
        Ok(w) => {
            crate::say!(
                "report for {}: {} ({} agents, {} status segments, {} KB)",
                w.day,
                w.path.display(),
                w.agents,
                w.status_segments,
                w.bytes.div_ceil(1024)
            );
            Exit::Done
        }
        Err(e) => {
            crate::say_err!("gladly-wfm report: {e}");
            e.exit()
        }
    }
}
