//! Commands whose standard output closes early or cannot be written (issue 16, item 11):
//! a closed pipe ends the command quietly with exit 0, as it ends a run; a full disk is an
//! error with exit 2. Never a panic (exit 101).

use crate::util::{self, tbptt, Input, Proc, TempDir, TIMEOUT};
use std::path::Path;
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs `cmd` with its stdout a pipe whose reading end is closed as soon as it starts (as
/// `cmd | head -0` would), and returns how it ended.
fn into_closed_pipe(mut cmd: Command) -> util::Finished {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut p = Proc::spawn_with(cmd, Input::Null, false);
    drop(p.take_stdout());
    p.finish(TIMEOUT)
}

/// Runs `cmd` with its stdout `/dev/full` (every write fails with ENOSPC); `None` where
/// there is no such device.
fn into_full_disk(mut cmd: Command) -> Option<util::Finished> {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .ok()?;
    cmd.stdout(Stdio::from(full)).stderr(Stdio::piped());
    Some(Proc::spawn_with(cmd, Input::Null, false).finish(TIMEOUT))
}

fn checkpoint(dir: &TempDir) -> std::path::PathBuf {
    let ck = dir.join("ck.bin");
    let nile = util::data("nile.csv");
    util::run(
        tbptt([
            "replay",
            s(&nile),
            "-o",
            "none",
            "-q",
            "--checkpoint",
            s(&ck),
        ]),
        Input::Null,
    )
    .assert_code(0);
    assert!(ck.exists());
    ck
}

fn sweep(nile: &Path) -> Command {
    tbptt([
        "sweep",
        s(nile),
        "--no-progress",
        "-T",
        "4",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "4",
    ])
}

#[test]
fn r16_inspect_and_sweep_into_a_closed_pipe_exit_0() {
    let dir = TempDir::new("stdout-pipe");
    let ck = checkpoint(&dir);
    let nile = util::data("nile.csv");
    for (what, cmd) in [
        ("inspect", tbptt(["inspect", s(&ck)])),
        ("inspect --json", tbptt(["inspect", "--json", s(&ck)])),
        ("sweep", sweep(&nile)),
        ("sweep --json", {
            let mut c = sweep(&nile);
            c.arg("--json");
            c
        }),
    ] {
        let out = into_closed_pipe(cmd);
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        out.assert_code(0);
    }
}

#[test]
fn r16_inspect_and_sweep_onto_a_full_disk_exit_2() {
    let dir = TempDir::new("stdout-full");
    let ck = checkpoint(&dir);
    let nile = util::data("nile.csv");
    for (what, cmd) in [
        ("inspect", tbptt(["inspect", s(&ck)])),
        ("sweep", sweep(&nile)),
    ] {
        let Some(out) = into_full_disk(cmd) else {
            eprintln!("no /dev/full here: skipped");
            return;
        };
        assert!(!out.stderr.contains("panicked"), "{what}: {}", out.stderr);
        out.assert_code(2);
        assert!(
            out.stderr.contains("cannot write output"),
            "{what}: {}",
            out.stderr
        );
    }
}
