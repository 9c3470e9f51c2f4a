//! `--help` is complete: every option of every command says what it does, and a command's own
//! options come before the global ones.

mod util;

use util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_is_described_and_a_commands_own_come_first() {
    let dir = tempfile::tempdir().unwrap();
    let commands: [&[&str]; 9] = [
        &["demo"],
        &["run"],
        &["follow"],
        &["schedule"],
        &["check"],
        &["status"],
        &["simulate", "gladly"],
        &["simulate", "wfm"],
        &["simulate"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = bin(dir.path(), &args, &[]).await;
        assert_eq!(o.code, 0, "{cmd:?}: {o}");
        let text = o.stdout.replace("\n          ", " ");
        let own = text.find("\nOptions:").unwrap_or(usize::MAX);
        let global = text
            .find("\nGlobal options:")
            .expect("a Global options heading");
        if cmd != ["simulate"] {
            assert!(own < global, "{cmd:?}: own options first: {text}");
        }
        for line in text.lines().filter(|l| l.trim_start().starts_with('-')) {
            // `  -q, --quiet...   Fewer log lines…`: words besides the flags and their values.
            let words = line
                .split_whitespace()
                .filter(|w| !w.starts_with('-') && !w.starts_with('<'))
                .count();
            let described = words >= 2;
            assert!(described, "{cmd:?}: `{line}` has no description:\n{text}");
        }
        if cmd != ["simulate"] && cmd != ["status"] && cmd != ["schedule"] && cmd != ["follow"] {
            assert!(text.lines().count() > 8, "{cmd:?}: {text}");
        }
    }
    // The top level names the exit codes.
    let o = bin(dir.path(), &["--help"], &[]).await;
    assert!(o.stdout.contains("Exit codes: 0 done"), "{o}");
}
