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

    pub fn parse(s: &str) -> Result<Stages, StagesError> {
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
                other => return Err(StagesError::Unknown(other.to_string())),
            }
        }
        Ok(st)
    }
}

/// Why `--stages` could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StagesError {
    /// An entry that names no stage.
    #[error("unknown stage `{0}` (stages: extract, transform, load)")]
    Unknown(String),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse_from_a_list_and_an_unknown_one_is_named() {
        let st = Stages::parse(" extract, load ,").unwrap();
        assert!(st.extract && !st.transform && st.load);
        assert_eq!(
            Stages::parse("extract,lod").unwrap_err().to_string(),
            "unknown stage `lod` (stages: extract, transform, load)"
        );
    }
}
