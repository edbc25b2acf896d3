//! Many keyed series in one process: a pipeline per key, workers, eviction to the store,
//! restore across runs, memory per series.

use crate::util::{run, summary, tbptt, wait_until, Input, Proc, TempDir, TIMEOUT};
use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

/// A small model so that 30 events per series train.
const MODEL: [&str; 6] = ["--hidden", "8", "-T", "8", "-k", "4"];

/// `events` events for each of `keys` series, interleaved in a scrambled but per-key ordered
/// way; each series its own level and pattern. Lines `time,host,cpu`.
fn interleaved(keys: usize, events: usize) -> Vec<(usize, String)> {
    let mut next = vec![0usize; keys];
    let mut out = Vec::with_capacity(keys * events);
    let mut r = 0x9e37_79b9_7f4a_7c15u64;
    while out.len() < keys * events {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        let mut k = (r % keys as u64) as usize;
        while next[k] == events {
            k = (k + 1) % keys;
        }
        let t = next[k];
        next[k] += 1;
        let v = 10.0 * k as f64 + 3.0 * ((t as f64) * 0.4 + k as f64).sin() + (t % 7) as f64 * 0.1;
        out.push((k, format!("{},h{k},{v:.4}", 1_600_000_000 + 60 * t)));
    }
    out
}

/// Records of a CSV output, by key (the third column), in order.
fn by_key(csv: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in csv.lines().skip(1) {
        let key = line.split(',').nth(2).unwrap_or_default().to_string();
        m.entry(key).or_default().push(line.to_string());
    }
    m
}

#[test]
fn a_thousand_keys_over_tcp_give_each_key_the_records_of_its_own_run() {
    let dir = TempDir::new("keyed-tcp");
    let (keys, events) = (1000, 30);
    let lines = interleaved(keys, events);
    let out = dir.join("out.csv");
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "--listen",
        "tcp://127.0.0.1:0",
        "--key",
        "host",
    ]);
    cmd.args(MODEL)
        .args(["--workers", "2", "-o"])
        .arg(&out)
        .arg("--summary")
        .arg(dir.join("s.json"));
    let p = Proc::spawn(cmd, Input::Null);
    let marker = "listening on tcp://";
    wait_until("the announced address", TIMEOUT, || {
        p.stderr().contains(marker)
    });
    let err = p.stderr();
    let at = err.find(marker).unwrap() + marker.len();
    let addr: std::net::SocketAddr = err[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let mut text = String::from("time,host,cpu\n");
    for (_, l) in &lines {
        text.push_str(l);
        text.push('\n');
    }
    conn.write_all(text.as_bytes()).unwrap();
    drop(conn);
    wait_until("every record", Duration::from_secs(120), || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() == keys * events + 1)
    });
    p.sigterm();
    let done = p.finish(TIMEOUT);
    assert!(done.status.success(), "{}", done.stderr);
    let s = summary(&dir.join("s.json"));
    assert_eq!(s["series"]["series"], keys as u64, "{s}");
    assert_eq!(s["series"]["created"], keys as u64);
    let keyed = by_key(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(keyed.len(), keys);
    // Each key alone, through one shared pipeline: the same records, byte for byte.
    let mut per_key = vec![String::from("time,host,cpu\n"); keys];
    for (k, l) in &lines {
        per_key[*k].push_str(l);
        per_key[*k].push('\n');
    }
    for (k, text) in per_key.iter().enumerate() {
        let input = dir.join("one.csv");
        std::fs::write(&input, text).unwrap();
        let mut one = tbptt(["replay", "-q", "--key", "host", "--shared-model"]);
        one.arg(&input).args(MODEL);
        let alone = run(one, Input::Null);
        alone.assert_code(0);
        let alone: Vec<String> = alone
            .stdout_str()
            .lines()
            .skip(1)
            .map(String::from)
            .collect();
        assert_eq!(alone.len(), events);
        assert_eq!(
            keyed[&format!("h{k}")],
            alone,
            "series h{k} differs from its own run"
        );
    }
}

/// Writes `lines` (with a header) to a file in `dir`.
fn write_input(dir: &TempDir, name: &str, lines: &[(usize, String)]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut text = String::from("time,host,cpu\n");
    for (_, l) in lines {
        text.push_str(l);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn evicted_series_come_back_with_their_learned_state() {
    let dir = TempDir::new("keyed-evict");
    let lines = interleaved(50, 40);
    let input = write_input(&dir, "in.csv", &lines);
    let replay = |extra: &[&str], summary_file: &str| {
        let mut cmd = tbptt(["replay", "-q", "--key", "host", "--workers", "2"]);
        cmd.arg(&input)
            .args(MODEL)
            .args(extra)
            .arg("--summary")
            .arg(dir.join(summary_file));
        let f = run(cmd, Input::Null);
        f.assert_code(0);
        f.stdout_str()
    };
    let whole = replay(&[], "a.json");
    let store = dir.join("s.redb");
    let store = store.to_str().unwrap();
    let evicting = replay(&["--max-series", "8", "--store", store], "b.json");
    let s = summary(&dir.join("b.json"));
    assert!(s["series"]["evicted"].as_u64().unwrap() > 100, "{s}");
    assert!(s["series"]["restored"].as_u64().unwrap() > 100, "{s}");
    assert!(s["series"]["series"].as_u64().unwrap() <= 8, "{s}");
    // Records come out in input order either way: the whole output is identical.
    assert_eq!(evicting, whole);
}

#[test]
fn without_a_store_new_keys_past_the_bound_are_refused_and_counted() {
    let dir = TempDir::new("keyed-full");
    let lines = interleaved(8, 20);
    let input = write_input(&dir, "in.csv", &lines);
    let mut cmd = tbptt([
        "replay",
        "-q",
        "--key",
        "host",
        "--max-series",
        "5",
        "--workers",
        "1",
    ]);
    cmd.arg(&input)
        .args(MODEL)
        .arg("--summary")
        .arg(dir.join("s.json"));
    let f = run(cmd, Input::Null);
    f.assert_code(0);
    let s = summary(&dir.join("s.json"));
    assert_eq!(s["series"]["series"], 5, "{s}");
    assert_eq!(s["series"]["refused"], 60, "{s}");
    assert_eq!(s["rejected"], 60, "{s}");
    assert_eq!(s["events"], 100, "{s}");
    assert_eq!(by_key(&f.stdout_str()).len(), 5);
}

#[test]
fn a_store_carries_every_series_into_the_next_run() {
    let dir = TempDir::new("keyed-restart");
    let lines = interleaved(40, 40);
    let input = write_input(&dir, "all.csv", &lines);
    let half = lines.len() / 2;
    let first = write_input(&dir, "first.csv", &lines[..half]);
    let second = write_input(&dir, "second.csv", &lines[half..]);
    let store = dir.join("s.redb");
    let replay = |input: &std::path::Path, store: Option<&std::path::Path>| {
        let mut cmd = tbptt(["replay", "-q", "--key", "host"]);
        cmd.arg(input).args(MODEL);
        if let Some(s) = store {
            cmd.arg("--store").arg(s);
        }
        let f = run(cmd, Input::Null);
        f.assert_code(0);
        f.stdout_str()
            .lines()
            .skip(1)
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let whole = replay(&input, None);
    let a = replay(&first, Some(&store));
    let b = replay(&second, Some(&store));
    assert_eq!(a[..], whole[..half]);
    assert_eq!(
        b[..],
        whole[half..],
        "the second run did not continue every series"
    );
    // Other settings are refused by name.
    let mut cmd = tbptt(["replay", "-q", "--key", "host", "--hidden", "4", "--store"]);
    cmd.arg(&store).arg(&second);
    let f = run(cmd, Input::Null);
    assert_ne!(f.status.code(), Some(0));
    assert!(f.stderr.contains("hidden"), "{}", f.stderr);
}
