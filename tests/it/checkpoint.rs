//! Checkpoints: exact resume, every corrupted-file case with its specific error (library and
//! command), the committed version-1 file, and crash safety under SIGKILL.

use crate::util::{run, tbptt, Input, Proc, TempDir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
use tbptt::event::Event;
use tbptt::io::checkpoint::{self, CheckpointError, HEADER_LEN};

/// Line `t` of a deterministic noisy two-tone input.
fn line(t: usize) -> String {
    let noise = ((t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
    let x = 20.0 + 3.0 * (t as f64 * 0.13).sin() + (t as f64 * 0.041).cos() + 0.2 * noise;
    format!("{x:.6}\n")
}

fn lines(range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(line).collect::<String>().into_bytes()
}

const MODEL: [&str; 6] = ["--hidden", "8", "-T", "16", "-k", "4"];

/// The complete data records of a CSV output (without its header line, and without a last
/// line cut short by a kill).
fn records(csv: &[u8]) -> Vec<String> {
    let complete = match csv.iter().rposition(|b| *b == b'\n') {
        Some(i) => &csv[..=i],
        None => &[][..],
    };
    String::from_utf8(complete.to_vec())
        .expect("UTF-8 output")
        .lines()
        .filter(|l| !l.starts_with("index,"))
        .map(str::to_owned)
        .collect()
}

/// `tbptt inspect --json PATH`, parsed.
fn inspect(path: &Path) -> serde_json::Value {
    let mut cmd = tbptt(["inspect", "--json"]);
    cmd.arg(path);
    let done = run(cmd, Input::Null);
    done.assert_code(0);
    serde_json::from_str(&done.stdout_str()).expect("inspect prints JSON")
}

#[test]
fn resume_in_sync_mode_is_byte_identical_to_one_run() {
    let dir = TempDir::new("resume");
    let ck = dir.join("model.ckpt");
    let n = 3000;
    let mut whole = tbptt(["learn", "--sync"]);
    whole.args(MODEL);
    let whole = run(whole, Input::Bytes(lines(0..n)));
    whole.assert_code(0);

    let mut first = tbptt([
        "learn",
        "--sync",
        "--checkpoint-every",
        "700",
        "--checkpoint",
    ]);
    first.arg(&ck).args(MODEL);
    let first = run(first, Input::Bytes(lines(0..n / 2)));
    first.assert_code(0);
    assert!(
        first.stderr.contains("checkpoints       3 written"),
        "{}",
        first.stderr
    );
    let info = inspect(&ck);
    assert_eq!(info["events"], 1500);
    assert_eq!(info["version"], 1);
    // A new process resumes from the checkpoint (the default when it exists).
    let mut second = tbptt(["learn", "--sync", "--checkpoint"]);
    second.arg(&ck).args(MODEL);
    let second = run(second, Input::Bytes(lines(n / 2..n)));
    second.assert_code(0);
    assert!(
        second.stderr.contains("resumed after 1500; 3000 in all"),
        "{}",
        second.stderr
    );
    let mut joined = records(&first.stdout);
    joined.extend(records(&second.stdout));
    let reference = records(&whole.stdout);
    assert_eq!(joined.len(), n);
    for (i, (a, b)) in joined.iter().zip(&reference).enumerate() {
        assert_eq!(a, b, "record {i} differs");
    }
    // The resumed run's own output starts with a header and continues the indices.
    assert!(second.stdout.starts_with(b"index,time,key,error"));
    assert!(records(&second.stdout)[0].starts_with("1500,"));
    assert_eq!(inspect(&ck)["events"], 3000);
    // --resume names the file explicitly (and -o none still checkpoints nothing new here).
    let mut third = tbptt(["learn", "--sync", "-o", "none", "--resume"]);
    third.arg(&ck);
    run(third, Input::Bytes(lines(n..n + 10))).assert_code(0);
}

#[test]
fn a_background_trainer_resumes_with_its_optimizer_state() {
    let dir = TempDir::new("resume-bg");
    let ck = dir.join("bg.ckpt");
    let mut first = tbptt([
        "learn",
        "-o",
        "none",
        "--checkpoint-every",
        "500",
        "--checkpoint",
    ]);
    first.arg(&ck).args(MODEL);
    run(first, Input::Bytes(lines(0..2000))).assert_code(0);
    let info = inspect(&ck);
    assert_eq!(info["events"], 2000);
    let updates = info["updates"].as_u64().unwrap();
    assert!(updates > 0);
    assert_eq!(info["optimizer_steps"], updates);
    let mut second = tbptt(["learn", "--checkpoint"]);
    second.arg(&ck).args(MODEL);
    let second = run(second, Input::Bytes(lines(2000..2100)));
    second.assert_code(0);
    assert!(records(&second.stdout)[0].starts_with("2000,"));
    let after = inspect(&ck);
    assert_eq!(after["events"], 2100);
    assert!(after["updates"].as_u64().unwrap() >= updates);
    // --no-resume starts fresh and rotates the old file to .1.
    let mut fresh = tbptt(["learn", "--no-resume", "--checkpoint"]);
    fresh.arg(&ck).args(MODEL);
    let fresh = run(fresh, Input::Bytes(lines(0..10)));
    fresh.assert_code(0);
    assert!(records(&fresh.stdout)[0].starts_with("0,"));
    assert_eq!(inspect(&ck)["events"], 10);
    assert_eq!(inspect(&checkpoint::rotated(&ck, 1))["events"], 2100);
}

/// A small pipeline's checkpoint bytes.
fn sample_bytes() -> Vec<u8> {
    let mut config = PipelineConfig::default();
    config.learner.d_hidden = 4;
    config.learner.trainer.truncation = 8.into();
    config.learner.trainer.every = 4;
    let mut p = Pipeline::new(config).unwrap();
    let mut ev = Event::new();
    for t in 0..100 {
        ev.values.clear();
        ev.values.push(t as f64 % 7.0);
        p.process(&ev).unwrap();
    }
    checkpoint::encode(&p.snapshot().unwrap()).unwrap()
}

/// Rewrites both checksums after an edit, so later checks are reached.
fn reseal(b: &mut [u8]) {
    let pcrc = checkpoint::crc32(&b[HEADER_LEN..]);
    b[26..30].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = checkpoint::crc32(&b[..30]);
    b[30..34].copy_from_slice(&hcrc.to_le_bytes());
}

#[test]
fn every_corruption_gives_its_specific_error() {
    let good = sample_bytes();
    let len = good.len();
    assert!(checkpoint::decode(&good).is_ok());
    // Truncated at 10 offsets.
    for cut in [0, 5, 9, 10, 20, 33, 34, 100, len / 2, len - 1] {
        match checkpoint::decode(&good[..cut]) {
            Err(CheckpointError::Truncated { expected, got }) => {
                assert_eq!(got, cut as u64);
                let want = if cut < HEADER_LEN { HEADER_LEN } else { len };
                assert_eq!(expected, want as u64, "cut at {cut}");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Flipped bytes: in the payload, in each header field, in the magic, in the version.
    for at in [HEADER_LEN, HEADER_LEN + 7, len / 2, len - 1] {
        let mut b = good.clone();
        b[at] ^= 0x40;
        assert!(
            matches!(
                checkpoint::decode(&b),
                Err(CheckpointError::Corrupt {
                    region: "payload",
                    ..
                })
            ),
            "flip at {at}"
        );
    }
    for at in [10, 17, 18, 25, 26, 29, 30, 33] {
        let mut b = good.clone();
        b[at] ^= 0x01;
        let e = checkpoint::decode(&b).unwrap_err();
        assert!(
            matches!(
                e,
                CheckpointError::Corrupt {
                    region: "header",
                    ..
                }
            ),
            "flip at {at}: {e:?}"
        );
        assert!(e.to_string().contains("the header (bytes 0..30)"), "{e}");
    }
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(
        checkpoint::decode(&b),
        Err(CheckpointError::BadMagic { .. })
    ));
    assert!(matches!(
        checkpoint::decode(b"PK\x03\x04 a zip file"),
        Err(CheckpointError::BadMagic { .. })
    ));
    let mut b = good.clone();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    reseal(&mut b);
    let e = checkpoint::decode(&b).unwrap_err();
    assert!(matches!(
        e,
        CheckpointError::UnsupportedVersion { found: 2, .. }
    ));
    assert_eq!(
        e.to_string(),
        "unsupported checkpoint format version 2; this build reads [1]"
    );
    // Trailing bytes.
    let mut b = good.clone();
    b.extend_from_slice(b"extra");
    assert!(matches!(
        checkpoint::decode(&b),
        Err(CheckpointError::TrailingBytes { extra: 5, .. })
    ));
    // Checksums right but the payload is not a state.
    let mut b = good[..HEADER_LEN].to_vec();
    b.extend_from_slice(&[0xc0; 16]);
    b[18..26].copy_from_slice(&16u64.to_le_bytes());
    reseal(&mut b);
    assert!(matches!(
        checkpoint::decode(&b),
        Err(CheckpointError::Decode(_))
    ));
    // The header's configuration hash does not belong to the payload.
    let mut b = good.clone();
    b[10] ^= 0xff;
    reseal(&mut b);
    assert!(matches!(
        checkpoint::decode(&b),
        Err(CheckpointError::HashMismatch { .. })
    ));
    // A well-formed file whose state is inconsistent (a NaN weight, a short state).
    let mut state = checkpoint::decode(&good).unwrap().state;
    state.inner.as_mut().unwrap().learner.params[3] = f32::NAN;
    let e = checkpoint::decode(&checkpoint::encode(&state).unwrap()).unwrap_err();
    assert!(matches!(e, CheckpointError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("params"), "{e}");
    let mut state = checkpoint::decode(&good).unwrap().state;
    state.inner.as_mut().unwrap().learner.state.pop();
    assert!(matches!(
        checkpoint::decode(&checkpoint::encode(&state).unwrap()),
        Err(CheckpointError::Invalid(_))
    ));
}

#[test]
fn a_checkpoint_with_other_settings_is_refused_by_name() {
    let state = checkpoint::decode(&sample_bytes()).unwrap().state;
    let mut lstm = state.config.clone();
    lstm.learner.cell = tbptt::CellKind::Lstm;
    let e = checkpoint::check_compatible(&state.config, &lstm).unwrap_err();
    match &e {
        CheckpointError::ConfigMismatch {
            field,
            checkpoint,
            requested,
        } => assert_eq!(
            (*field, &checkpoint[..], &requested[..]),
            ("--cell", "gru", "lstm")
        ),
        other => panic!("{other:?}"),
    }
}

/// The committed version-1 file: written by this code (`tbptt learn --sync --hidden 4 -T 8
/// -k 4 --checkpoint tests/data/checkpoint_v1.tbptt` on 60 lines `t % 7`). Later versions
/// of the format must keep reading it.
fn v1_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/checkpoint_v1.tbptt")
}

#[test]
fn the_committed_v1_checkpoint_still_loads_and_resumes() {
    let c = checkpoint::read(&v1_file()).expect("the v1 file loads");
    assert_eq!(c.version, 1);
    assert_eq!(c.state.events(), 60);
    let lc = c.state.learner_config();
    assert_eq!(
        (lc.cell, lc.d_hidden, lc.max_window(), lc.trainer.every),
        (tbptt::CellKind::Gru, 4, 8, 4)
    );
    let learner = &c.state.inner.as_ref().unwrap().learner;
    assert_eq!(learner.trainer.updates, 13);
    assert_eq!(learner.trainer.optimizer.steps(), 13);
    let mut p = Pipeline::restore(c.state).unwrap();
    let mut ev = Event::new();
    for t in 60..100 {
        ev.values.clear();
        ev.values.push((t % 7) as f64);
        let out = p.process(&ev).unwrap();
        assert_eq!(out.index, t as u64);
        assert!(out.forecast[0].is_finite());
    }
    // And through the command.
    let info = inspect(&v1_file());
    assert_eq!(info["events"], 60);
    let mut cmd = tbptt(["learn", "--sync", "-q", "--resume"]);
    cmd.arg(v1_file());
    let done = run(cmd, Input::Bytes(b"1\n2\n3\n".to_vec()));
    done.assert_code(0);
    assert!(records(&done.stdout)[0].starts_with("60,"));
}

/// A version-1 checkpoint written by a build whose likelihood kept exact histories (each
/// tail's last values and a ring of `max_period + 6` values per series), after the first
/// 1,500 events of [`timed_lines`] with `--hidden 4 -T 8 -k 4 --likelihood '{"history":
/// 256, "max_period": 300}'`. That build, resumed from it on the next 500 events, flagged one
/// event: 1,805, the spike at 1,800 after its 5 events of confirmation. This version reports
/// an episode above the threshold at once (`at_once`), so the same spike is flagged at 1,800.
fn exact_likelihood_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/checkpoint_v1_exact_likelihood.tbptt")
}

/// A header and the `timestamp,value` lines `range` of a daily cycle every 5 minutes, with
/// noise and a spike of 30 at event 1,800.
fn timed_lines(range: std::ops::Range<usize>) -> Vec<u8> {
    let mut s = 7u64;
    let mut text = String::from("timestamp,value\n");
    for t in 0..range.end {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let noise = (s >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
        let spike = if t == 1800 { 30.0 } else { 0.0 };
        let x = 50.0 + 10.0 * (std::f64::consts::TAU * t as f64 / 288.0).sin() + noise + spike;
        if range.contains(&t) {
            text.push_str(&format!("{},{x:.6}\n", 1_600_000_000 + 300 * t));
        }
    }
    text.into_bytes()
}

#[test]
fn r13_a_checkpoint_with_exact_likelihood_histories_loads_as_summaries_and_resumes() {
    let c = checkpoint::read(&exact_likelihood_file()).expect("the file loads");
    assert_eq!(c.state.events(), 1500);
    let likelihood = c.state.inner.as_ref().unwrap().likelihood.clone();
    let likelihood = likelihood.expect("a likelihood state");
    assert!(likelihood.validate().is_ok());
    assert_eq!(likelihood.period(), 288);
    // Converted: a few KiB in place of the histories.
    assert!(
        likelihood.heap_bytes() < 6 * 1024,
        "{}",
        likelihood.heap_bytes()
    );
    Pipeline::restore(c.state).expect("restores");
    // Through the command, on a copy: the same alarm as the exact histories gave.
    let dir = TempDir::new("exact-likelihood");
    let ck = dir.join("ck.tbptt");
    std::fs::copy(exact_likelihood_file(), &ck).unwrap();
    let mut cmd = tbptt([
        "learn", "--sync", "-q", "--hidden", "4", "-T", "8", "-k", "4",
    ]);
    cmd.args(["--likelihood", r#"{"history": 256, "max_period": 300}"#])
        .arg("--checkpoint")
        .arg(&ck);
    let done = run(cmd, Input::Bytes(timed_lines(1500..2000)));
    done.assert_code(0);
    let out = records(&done.stdout);
    assert_eq!(out.len(), 500);
    assert!(out[0].starts_with("1500,"), "{}", out[0]);
    let alarms: Vec<&str> = out
        .iter()
        .filter(|r| r.split(',').nth(5) == Some("1"))
        .map(|r| r.split(',').next().unwrap())
        .collect();
    assert_eq!(alarms, ["1800"]);
    // The final checkpoint is in this version's form, and loads.
    let again = checkpoint::read(&ck).expect("the new checkpoint loads");
    assert_eq!(again.state.events(), 2000);
    Pipeline::restore(again.state).expect("restores");
}

#[test]
fn the_command_refuses_bad_checkpoints_with_exit_code_2() {
    let dir = TempDir::new("refuse");
    let good = std::fs::read(v1_file()).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let mut version = good.clone();
    version[8] = 7;
    reseal(&mut version);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write("truncated", &good[..good.len() - 10]),
            "checkpoint is truncated: expected",
        ),
        (
            write("flipped", &flipped),
            "checkpoint is corrupt: the payload",
        ),
        (
            write("magic", b"not a checkpoint at all"),
            "not a tbptt checkpoint",
        ),
        (
            write("version", &version),
            "unsupported checkpoint format version 7",
        ),
    ];
    for (path, message) in &cases {
        let mut cmd = tbptt(["inspect"]);
        cmd.arg(path);
        let done = run(cmd, Input::Null);
        done.assert_code(2);
        assert!(done.stderr.contains(message), "{}", done.stderr);
        assert!(!done.stderr.contains("panicked"));
        let mut cmd = tbptt(["learn", "--sync", "--resume"]);
        cmd.arg(path);
        let done = run(cmd, Input::Bytes(b"1\n".to_vec()));
        done.assert_code(2);
        assert!(
            done.stderr.contains("cannot resume from"),
            "{}",
            done.stderr
        );
        assert!(done.stderr.contains(message), "{}", done.stderr);
    }
    // Wrong cell and hidden size for a GRU checkpoint.
    let ck = write("gru.ckpt", &good);
    for (flags, message) in [
        (
            &["--cell", "lstm"][..],
            "--cell is gru in the checkpoint but lstm was requested",
        ),
        (
            &["--hidden", "64"][..],
            "--hidden is 4 in the checkpoint but 64 was requested",
        ),
    ] {
        let mut cmd = tbptt(["learn", "--sync", "--checkpoint"]);
        cmd.arg(&ck).args(flags);
        let done = run(cmd, Input::Bytes(b"1\n".to_vec()));
        done.assert_code(2);
        assert!(done.stderr.contains(message), "{}", done.stderr);
    }
    // Flags equal to the checkpoint's are accepted.
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "-q",
        "--cell",
        "gru",
        "--hidden",
        "4",
        "--checkpoint",
    ]);
    cmd.arg(&ck);
    run(cmd, Input::Bytes(b"1\n".to_vec())).assert_code(0);
    // A corrupt newest file names the older one to fall back to.
    std::fs::write(&ck, &good[..50]).unwrap();
    let mut cmd = tbptt(["learn", "--sync", "--checkpoint"]);
    cmd.arg(&ck);
    let done = run(cmd, Input::Bytes(b"1\n".to_vec()));
    done.assert_code(2);
    assert!(
        done.stderr.contains("gru.ckpt.1; pass --resume"),
        "{}",
        done.stderr
    );
}

#[test]
fn inspect_reports_configuration_counts_and_size() {
    let mut cmd = tbptt(["inspect"]);
    cmd.arg(v1_file());
    let done = run(cmd, Input::Null);
    done.assert_code(0);
    let text = done.stdout_str();
    for want in [
        "format            version 1",
        "model             gru cell, D = 1, H = 4, 1 layer",
        "TBPTT(k = 4, T = 8)",
        "events seen       60",
        "updates           13 applied, 0 skipped, 0 rejected",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let size = std::fs::metadata(v1_file()).unwrap().len();
    assert!(text.contains(&format!("{size} bytes")), "{text}");
    let json = inspect(&v1_file());
    assert_eq!(json["size"], size);
    assert_eq!(json["config"]["learner"]["d_hidden"], 4);
}

/// A tiny xorshift generator (the crate has no rand dependency for tests' timing).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_the_last_good_checkpoint() {
    let dir = TempDir::new("crash");
    let ck = dir.join("crash.ckpt");
    let total = 100_000;
    let every = 500u64;
    // A short likelihood history keeps checkpoints small (about 90 KB instead of 0.6 MB), so
    // that a write and its fsyncs stay short on a disk shared with the rest of the suite; the
    // likelihood's state is still in every checkpoint and every record's score is compared.
    let small = ["--likelihood", r#"{"history": 1024}"#];
    // The uninterrupted reference.
    let mut whole = tbptt(["learn", "--sync"]);
    whole.args(MODEL).args(small);
    let reference = records(&run(whole, Input::Bytes(lines(0..total))).stdout);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = XorShift(seed);
    let mut resume_at = 0usize;
    let mut progressed = 0;
    let (mut kills, mut worst_reread) = (0, 0u64);
    let started = Instant::now();
    while kills < 15 && started.elapsed() < Duration::from_secs(120) {
        let out = dir.join(&format!("out{kills}.csv"));
        let mut cmd = tbptt(["learn", "--sync", "-q", "--checkpoint-every", "500", "-o"]);
        cmd.arg(&out)
            .arg("--checkpoint")
            .arg(&ck)
            .args(MODEL)
            .args(small);
        let mut child = Proc::spawn(cmd, Input::Piped);
        let mut stdin = child.take_stdin();
        // Feed about 10,000 lines a second in small chunks, and kill at a random moment.
        let kill_after = Duration::from_millis(100 + rng.below(500));
        let t0 = Instant::now();
        let mut next = resume_at;
        while t0.elapsed() < kill_after && next < total {
            let end = (next + 100).min(total);
            if stdin.write_all(&lines(next..end)).is_err() {
                break;
            }
            next = end;
            std::thread::sleep(Duration::from_millis(10));
        }
        let status = std::process::Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .expect("kill -KILL");
        assert!(status.success());
        drop(stdin);
        let _ = child.finish(Duration::from_secs(10));
        kills += 1;
        if !ck.exists() {
            // Killed before the first checkpoint: start over from 0.
            assert_eq!(resume_at, 0);
            continue;
        }
        // The newest checkpoint on disk loads...
        let info = inspect(&ck);
        let saved = info["events"].as_u64().unwrap();
        assert!(
            saved >= resume_at as u64,
            "checkpoint went back from {resume_at} to {saved}"
        );
        // ... and the events re-read after resuming are at most one checkpoint interval plus
        // those that arrive while the checkpoint due at the kill is being written: what the
        // killed process had already written out beyond the checkpoint. A write and its
        // fsyncs can take 0.2 s on a disk shared with the rest of the test suite, about 2,000
        // events at this feed rate. A run that stopped taking checkpoints would re-read all it
        // was fed (up to 6,000 events) and fail.
        let written = records(&std::fs::read(&out).unwrap_or_default());
        let processed = resume_at as u64 + written.len() as u64;
        let reread = processed.saturating_sub(saved);
        worst_reread = worst_reread.max(reread);
        assert!(
            reread <= every + 2_000,
            "{reread} events re-read after resume (checkpoint at {saved}, {processed} written)"
        );
        // Every record written before the crash is the reference's record.
        for r in &written {
            let i: usize = r.split(',').next().unwrap().parse().unwrap();
            assert_eq!(r, &reference[i], "record {i} after resume differs");
        }
        // At most the killed process's temporary file is left (the next run removes it).
        let temps = dir
            .path()
            .read_dir()
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".crash.ckpt.tmp.")
            })
            .count();
        assert!(temps <= 1, "{temps} temporary files left");
        if saved as usize > resume_at {
            progressed += 1;
        }
        resume_at = saved as usize;
    }
    assert!(resume_at < total, "the input ran out before the last kill");
    assert!(progressed >= 8, "only {progressed} kills made progress");
    assert!(kills >= 10, "only {kills} kills in the time allowed");
    // A last run resumes and finishes the input: its records are the reference's.
    let out = dir.join("last.csv");
    let mut cmd = tbptt(["learn", "--sync", "-q", "-o"]);
    cmd.arg(&out).arg("--checkpoint").arg(&ck).args(MODEL);
    run(cmd, Input::Bytes(lines(resume_at..total))).assert_code(0);
    let rest = records(&std::fs::read(&out).unwrap());
    assert_eq!(rest.len(), total - resume_at);
    assert_eq!(rest[..], reference[resume_at..]);
    eprintln!(
        "{kills} kills ({progressed} after progress), resumed up to event {resume_at}, at most \
         {worst_reread} events re-read (interval {every})"
    );
}

#[test]
fn sigterm_writes_a_final_checkpoint() {
    let dir = TempDir::new("sigterm");
    let ck = dir.join("term.ckpt");
    let out = dir.join("out.csv");
    // No schedule flag: one a minute, so the only checkpoint here is the final one.
    let mut cmd = tbptt(["learn", "-q", "-o"]);
    cmd.arg(&out).arg("--checkpoint").arg(&ck).args(MODEL);
    let mut child = Proc::spawn(cmd, Input::Piped);
    let mut stdin = child.take_stdin();
    stdin.write_all(&lines(0..700)).unwrap();
    crate::util::wait_until("700 records", Duration::from_secs(30), || {
        crate::util::file_lines(&out) == 701
    });
    assert!(!ck.exists(), "no checkpoint is due before the end");
    child.sigterm();
    let done = child.finish(Duration::from_secs(30));
    done.assert_code(0);
    drop(stdin);
    let info = inspect(&ck);
    assert_eq!(info["events"], 700);
}

#[test]
fn a_resumed_run_appends_to_its_recording_and_a_fresh_one_replaces_it() {
    let dir = TempDir::new("record-resume");
    let (ck, rec) = (dir.join("model.ckpt"), dir.join("events.jsonl"));
    let learn = |input: Vec<u8>, extra: &[&str]| {
        let mut cmd = tbptt(["learn", "--sync", "-o", "none", "-q", "--checkpoint"]);
        cmd.arg(&ck)
            .arg("--record")
            .arg(&rec)
            .args(MODEL)
            .args(extra);
        run(cmd, Input::Bytes(input)).assert_code(0);
        std::fs::read_to_string(&rec).expect("read the recording")
    };
    let first = learn(lines(0..50), &[]);
    assert_eq!(first.lines().count(), 50);
    let both = learn(lines(50..80), &[]);
    assert_eq!(both.lines().count(), 80);
    assert!(
        both.starts_with(&first),
        "the first run's lines are kept as they were"
    );
    // Values read back in order across the two runs.
    let values: Vec<String> = both
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            format!("{:.6}\n", v["values"][0].as_f64().expect("value"))
        })
        .collect();
    assert_eq!(values.concat().into_bytes(), lines(0..80));
    let fresh = learn(lines(80..90), &["--no-resume"]);
    assert_eq!(fresh.lines().count(), 10);
}

/// A checkpoint of a small pipeline after `events` events.
fn small_state(events: usize) -> tbptt::PipelineState {
    let mut config = PipelineConfig::default();
    config.learner.d_hidden = 4;
    config.learner.trainer.truncation = 4.into();
    config.learner.trainer.every = 2;
    let mut p = Pipeline::new(config).expect("pipeline");
    let mut ev = Event::new();
    for t in 0..events {
        ev.values.clear();
        ev.values.push((t as f64 * 0.3).sin());
        p.process(&ev).expect("event");
    }
    p.snapshot().expect("snapshot")
}

/// `checkpoint::read(path)` on a thread; `None` if it has not returned within 5 s (a FIFO
/// without writer, say).
fn read_within_5s(path: &Path) -> Option<Result<checkpoint::Checkpoint, CheckpointError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(checkpoint::read(&path));
    });
    rx.recv_timeout(Duration::from_secs(5)).ok()
}

#[test]
fn r16_the_loader_refuses_fifos_devices_and_huge_files_without_reading_them() {
    let dir = TempDir::new("loader");
    // A symlink to /dev/zero: fs::read would grow memory without bound.
    let zero = dir.join("zero.ckpt");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let e = read_within_5s(&zero).expect("returns at once").unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::NotAFile {
                kind: "a character device",
                ..
            }
        ),
        "{e}"
    );
    // A FIFO without writer: opening it for reading would wait for ever.
    let fifo = dir.join("fifo.ckpt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let e = read_within_5s(&fifo)
        .expect("a FIFO is refused, not waited on")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("checkpoint {}: not a regular file (a FIFO)", fifo.display())
    );
    let e = read_within_5s(dir.path()).expect("returns").unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::NotAFile {
                kind: "a directory",
                ..
            }
        ),
        "{e}"
    );
    // The command names the problem and exits 2.
    let mut cmd = tbptt(["inspect"]);
    cmd.arg(&fifo);
    let done = crate::util::Proc::spawn(cmd, Input::Null).finish(Duration::from_secs(10));
    done.assert_code(2);
    assert!(
        done.stderr.contains("not a regular file (a FIFO)"),
        "{}",
        done.stderr
    );

    // A 4 GiB sparse file of zeros is refused after its first bytes.
    let sparse = dir.join("sparse.ckpt");
    std::fs::File::create(&sparse)
        .and_then(|f| f.set_len(4 << 30))
        .expect("sparse file");
    let started = Instant::now();
    let e = read_within_5s(&sparse).expect("returns").unwrap_err();
    assert!(matches!(e, CheckpointError::BadMagic { .. }), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A valid header announcing a 3 GiB payload in a 3 GiB sparse file: refused by size.
    let mut bytes = checkpoint::encode(&small_state(10)).expect("encode");
    bytes[18..26].copy_from_slice(&(3u64 << 30).to_le_bytes());
    reseal(&mut bytes);
    let huge = dir.join("huge.ckpt");
    {
        let mut f = std::fs::File::create(&huge).expect("create");
        f.write_all(&bytes[..HEADER_LEN]).expect("header");
        f.set_len(HEADER_LEN as u64 + (3 << 30))
            .expect("sparse payload");
    }
    let e = read_within_5s(&huge).expect("returns").unwrap_err();
    assert!(
        matches!(e, CheckpointError::TooLarge { len, .. } if len == 3 << 30),
        "{e}"
    );
    // A good file still reads.
    let good = dir.join("good.ckpt");
    std::fs::write(&good, checkpoint::encode(&small_state(10)).expect("encode")).expect("write");
    assert_eq!(checkpoint::read(&good).expect("loads").state.events(), 10);
}

#[test]
fn r16_counters_beyond_2_pow_53_are_refused_not_wrapped() {
    let dir = TempDir::new("counters");
    let mut state = small_state(20);
    state
        .inner
        .as_mut()
        .expect("an event was seen")
        .learner
        .events = u64::MAX;
    let bytes = checkpoint::encode(&state).expect("encode");
    let e = checkpoint::decode(&bytes).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::CounterOutOfRange {
                counter: "events",
                value: u64::MAX,
                ..
            }
        ),
        "{e}"
    );
    let mut state = small_state(20);
    state.anomalies = checkpoint::MAX_COUNTER + 1;
    let e = checkpoint::decode(&checkpoint::encode(&state).expect("encode")).unwrap_err();
    assert!(
        matches!(
            e,
            CheckpointError::CounterOutOfRange {
                counter: "anomalies",
                ..
            }
        ),
        "{e}"
    );
    // The command refuses to resume from it, naming the counter.
    let path = dir.join("max.ckpt");
    std::fs::write(&path, &bytes).expect("write");
    let mut cmd = tbptt(["learn", "--sync", "--resume"]);
    cmd.arg(&path);
    let done = run(cmd, Input::Bytes(lines(0..10)));
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("counter `events` is 18446744073709551615"),
        "{}",
        done.stderr
    );
}

#[test]
fn r16_every_kept_generation_exists_at_every_instant_of_a_rotation() {
    let dir = TempDir::new("rotation");
    let path = dir.join("ck");
    for i in 0..3u8 {
        checkpoint::write_atomic(&path, &[i], 3).expect("write");
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (path, stop) = (path.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut looks, mut missing) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for n in 0..3 {
                    looks += 1;
                    if !checkpoint::rotated(&path, n).exists() {
                        missing.push(n);
                    }
                }
            }
            (looks, missing)
        })
    };
    for i in 0..300u32 {
        checkpoint::write_atomic(&path, &i.to_le_bytes(), 3).expect("write");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (looks, missing) = watcher.join().expect("watcher");
    assert!(looks > 1000, "{looks}");
    assert!(
        missing.is_empty(),
        "generations missing at {} of {looks} looks: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(std::fs::read(&path).expect("newest"), 299u32.to_le_bytes());
    assert_eq!(
        std::fs::read(checkpoint::rotated(&path, 1)).expect(".1"),
        298u32.to_le_bytes()
    );
    assert_eq!(
        std::fs::read(checkpoint::rotated(&path, 2)).expect(".2"),
        297u32.to_le_bytes()
    );
    assert!(!checkpoint::rotated(&path, 3).exists());
}

#[test]
fn r16_a_second_writer_on_one_checkpoint_path_is_refused() {
    let dir = TempDir::new("lock");
    let ck = dir.join("model.ckpt");
    let mut first = tbptt(["learn", "--sync", "-q", "-o", "none", "--checkpoint"]);
    first.arg(&ck).args(MODEL);
    let mut first = crate::util::Proc::spawn(first, Input::Piped);
    let mut stdin = first.take_stdin();
    stdin.write_all(&lines(0..200)).expect("write");
    stdin.flush().expect("flush");
    let lock = checkpoint::lock_path(&ck);
    let pid = first.id();
    crate::util::wait_until("the first run's lock", crate::util::TIMEOUT, || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid.to_string())
    });
    let mut second = tbptt(["learn", "--sync", "-q", "--checkpoint"]);
    second.arg(&ck).args(MODEL);
    let second = run(second, Input::Bytes(lines(0..100)));
    second.assert_code(2);
    assert!(
        second.stderr.contains(&format!(
            "checkpoint {} is in use by another process (pid {pid})",
            ck.display()
        )),
        "{}",
        second.stderr
    );
    assert!(second.stdout.is_empty(), "the refused run wrote output");
    // The first run goes on undisturbed and its checkpoint holds all of its events.
    stdin.write_all(&lines(200..400)).expect("write");
    drop(stdin);
    first.finish(crate::util::TIMEOUT).assert_code(0);
    assert_eq!(inspect(&ck)["events"], 400);
    // Once it has ended, the path is free again.
    let mut third = tbptt(["learn", "--sync", "-q", "-o", "none", "--checkpoint"]);
    third.arg(&ck).args(MODEL);
    run(third, Input::Bytes(lines(400..450))).assert_code(0);
    assert_eq!(inspect(&ck)["events"], 450);
}

#[test]
fn r16_sync_runs_wait_for_the_writer_instead_of_deferring_checkpoints() {
    let dir = TempDir::new("syncwait");
    let ck = dir.join("model.ckpt");
    let summary = dir.join("summary.json");
    // A checkpoint is due after every event: the writer (two fsyncs each) is always busy.
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "-q",
        "-o",
        "none",
        "--checkpoint-every",
        "1",
    ]);
    cmd.arg("--checkpoint")
        .arg(&ck)
        .arg("--summary")
        .arg(&summary)
        .args(MODEL);
    run(cmd, Input::Bytes(lines(0..150))).assert_code(0);
    let s = crate::util::summary(&summary);
    assert_eq!(s["checkpoints_deferred"], 0, "{s}");
    // One per event, plus the final one.
    assert_eq!(s["checkpoints"], 151, "{s}");
}
