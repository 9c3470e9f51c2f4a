//! How a command ended, as the documented exit codes (DESIGN §3, README "Exit codes"). Commands
//! and error types say which outcome they are; `Exit::code` alone turns one into a number.

/// A command's outcome. Ordered as their codes: where several causes meet (`check` tries each
/// system), the greater one is the command's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Done.
    Done,
    /// The run failed, was interrupted, or could not release its lock: what finished is kept
    /// and the next run resumes.
    Failed,
    /// Usage or configuration: nothing was fetched.
    Usage,
    /// Another run of the pipeline holds the lock.
    Locked,
    /// Gladly or the WFM refused the credentials.
    Refused,
}

impl Exit {
    #[cfg(test)]
    const ALL: [Exit; 5] = [
        Exit::Done,
        Exit::Failed,
        Exit::Usage,
        Exit::Locked,
        Exit::Refused,
    ];

    /// The process's exit code: the one place the numbers are written.
    pub fn code(self) -> u8 {
        match self {
            Exit::Done => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Locked => 3,
            Exit::Refused => 4,
        }
    }

    /// Done, or `failed` (`check --strict`, `audit`).
    pub fn failed_if(failed: bool) -> Exit {
        if failed {
            Exit::Failed
        } else {
            Exit::Done
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4]);
        assert!(Exit::Refused > Exit::Failed && Exit::Failed > Exit::Done);
    }
}
