//! What a run is asked to do: which days (or the nightly plan), which stages, dry or not, on
//! which clock. Read by the run and written into its manifest.

use chrono::NaiveDate;

use crate::time::Ms;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stages {
    pub extract: bool,
    pub transform: bool,
    pub load: bool,
}

impl Stages {
    pub const ALL: Stages = Stages {
        extract: true,
        transform: true,
        load: true,
    };

    pub fn parse(s: &str) -> Result<Stages, String> {
        let mut st = Stages {
            extract: false,
            transform: false,
            load: false,
        };
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            match part {
                "extract" => st.extract = true,
                "transform" => st.transform = true,
                "load" => st.load = true,
                other => {
                    return Err(format!(
                        "unknown stage `{other}` (stages: extract, transform, load)"
                    ))
                }
            }
        }
        Ok(st)
    }
}

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub stages: Stages,
    pub dry_run: bool,
    /// The clock (tests and re-plays set it; otherwise the real time).
    pub now: Ms,
    pub trigger: String,
}
