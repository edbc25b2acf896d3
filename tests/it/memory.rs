//! Bounded memory: a producer much faster than the learner keeps the resident set flat, and
//! an over-long line is never buffered. Resident memory is read from /proc (Linux only).

use crate::util::{summary, tbptt, Input, Proc, TempDir};
use std::io::Write;
use std::time::{Duration, Instant};

/// VmRSS of a process in KiB, `None` once it has exited (or off Linux).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the child's resident set every 20 ms until it exits.
fn sample_until_exit(child: &mut Proc, limit: Duration) -> Vec<(f64, u64)> {
    let t0 = Instant::now();
    let mut samples = Vec::new();
    while !child.exited() {
        assert!(
            t0.elapsed() < limit,
            "the command did not finish in {limit:?}"
        );
        if let Some(kib) = rss_kib(child.id()) {
            samples.push((t0.elapsed().as_secs_f64(), kib));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    samples
}

#[test]
fn a_flood_ten_times_faster_than_training_keeps_memory_flat() {
    if rss_kib(std::process::id()).is_none() {
        eprintln!("no /proc: skipped");
        return;
    }
    let dir = TempDir::new("flood");
    let sum = dir.join("summary.json");
    // A slow learner (H = 64, T = 64, an update every 2 events) on a background trainer that
    // skips the updates it cannot keep up with (--lossy; by default the flood would be slowed
    // to the trainer's pace instead).
    let mut cmd = tbptt([
        "learn",
        "--lossy",
        "-o",
        "none",
        "-q",
        "--hidden",
        "64",
        "-T",
        "64",
        "-k",
        "2",
        "--summary",
    ]);
    cmd.arg(&sum);
    let mut child = Proc::spawn(cmd, Input::Piped);
    let mut stdin = child.take_stdin();
    let lines: usize = 600_000;
    let producer = std::thread::spawn(move || {
        let mut chunk = String::with_capacity(1 << 20);
        let mut t = 0usize;
        while t < lines {
            chunk.clear();
            for i in t..(t + 10_000).min(lines) {
                let x = (i as f64 * 0.05).sin() * 10.0 + (i % 13) as f64;
                chunk.push_str(&format!("{x:.4},{}\n", i % 100));
            }
            t += 10_000;
            if stdin.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
    });
    let samples = sample_until_exit(&mut child, Duration::from_secs(300));
    producer.join().unwrap();
    let done = child.finish(Duration::from_secs(10));
    done.assert_code(0);
    let s = summary(&sum);
    assert_eq!(s["events"], lines as u64);
    let (applied, skipped) = (
        s["updates"].as_u64().unwrap(),
        s["skipped_updates"].as_u64().unwrap(),
    );
    // Due updates: one per 2 events once the ring is full.
    assert!(applied + skipped >= (lines as u64 - 64) / 2 - 1);
    assert!(
        skipped >= 9 * applied,
        "the producer was not 10x faster than training: {applied} applied, {skipped} skipped"
    );
    assert!(samples.len() >= 20, "only {} RSS samples", samples.len());
    let n = samples.len();
    let first_quarter = samples[..n / 4].iter().map(|s| s.1).max().unwrap();
    let second_half = samples[n / 2..].iter().map(|s| s.1).max().unwrap();
    let peak = samples.iter().map(|s| s.1).max().unwrap();
    eprintln!(
        "flood: {lines} events in {:.1} s, {applied} updates applied, {skipped} skipped; \
         RSS max first quarter {first_quarter} KiB, second half {second_half} KiB, peak {peak} KiB \
         ({n} samples)",
        samples[n - 1].0
    );
    assert!(
        second_half < first_quarter * 3 / 2 + 4096,
        "RSS grew: {first_quarter} KiB in the first quarter, {second_half} KiB in the second half"
    );
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_100_mb_line_without_newline_is_never_buffered() {
    if rss_kib(std::process::id()).is_none() {
        eprintln!("no /proc: skipped");
        return;
    }
    let dir = TempDir::new("longline");
    let sum = dir.join("summary.json");
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "-o",
        "none",
        "-q",
        "--max-line",
        "1000",
        "--summary",
    ]);
    cmd.arg(&sum);
    let mut child = Proc::spawn(cmd, Input::Piped);
    let mut stdin = child.take_stdin();
    let producer = std::thread::spawn(move || {
        stdin.write_all(b"1\n2\n3\n").unwrap();
        let block = vec![b'7'; 1 << 20];
        for _ in 0..100 {
            if stdin.write_all(&block).is_err() {
                return;
            }
        }
        // The long line ends; learning goes on.
        let _ = stdin.write_all(b"\n4\n5\n");
    });
    let samples = sample_until_exit(&mut child, Duration::from_secs(120));
    producer.join().unwrap();
    child.finish(Duration::from_secs(10)).assert_code(0);
    let s = summary(&sum);
    assert_eq!(s["events"], 5);
    assert_eq!(s["rejected"], 1);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    eprintln!("100 MB line: peak RSS {peak} KiB");
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB while a 100 MB line went by"
    );
}

/// `events` lines `host,cpu` for each of the series `from..to`, interleaved.
fn series_lines(from: usize, to: usize, events: usize) -> Vec<u8> {
    let mut text = String::new();
    for t in 0..events {
        for h in from..to {
            let v = 50.0
                + 10.0 * (0.3 * t as f64 + h as f64).sin()
                + ((t * 7919 + h) % 101) as f64 / 50.0;
            text.push_str(&format!("h{h},{v:.3}\n"));
        }
    }
    text.into_bytes()
}

#[test]
fn ten_thousand_idle_series_stay_within_24_kib_each_at_h16() {
    if rss_kib(std::process::id()).is_none() {
        eprintln!("no /proc: skipped");
        return;
    }
    let dir = TempDir::new("mem-series");
    let out = dir.join("out.csv");
    // GRU, T = 32, Adam (the defaults) at H = 16; every series fills its window and trains.
    let mut cmd = tbptt([
        "learn",
        "-q",
        "--key",
        "host",
        "--hidden",
        "16",
        "--workers",
        "2",
    ]);
    cmd.arg("-o").arg(&out);
    let mut child = Proc::spawn(cmd, Input::Piped);
    let mut stdin = child.take_stdin();
    let records = |n: usize| {
        let out = out.clone();
        move || {
            std::fs::read(&out).is_ok_and(|b| b.iter().filter(|c| **c == b'\n').count() == n + 1)
        }
    };
    let (warm, many, events) = (200, 10_000, 40);
    stdin.write_all(b"host,cpu\n").unwrap();
    stdin.write_all(&series_lines(0, warm, events)).unwrap();
    stdin.flush().unwrap();
    crate::util::wait_until(
        "the first series",
        Duration::from_secs(120),
        records(warm * events),
    );
    let before = rss_kib(child.id()).unwrap();
    stdin
        .write_all(&series_lines(warm, warm + many, events))
        .unwrap();
    stdin.flush().unwrap();
    crate::util::wait_until(
        "every series",
        Duration::from_secs(600),
        records((warm + many) * events),
    );
    let after = rss_kib(child.id()).unwrap();
    drop(stdin);
    child.finish(Duration::from_secs(60)).assert_code(0);
    let per_series = (after.saturating_sub(before)) as f64 / many as f64;
    eprintln!("resident memory: {before} KiB with {warm} series, {after} KiB with {} ({per_series:.1} KiB per series)", warm + many);
    assert!(
        per_series <= 24.0,
        "{per_series:.1} KiB per idle series at H = 16"
    );
}
