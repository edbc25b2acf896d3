//! The `tbptt` command end to end: stdin, files, replay pacing, TCP/UDP/Unix listeners, the
//! connect source, bad input, signals, a closed output pipe, and flag errors.

use crate::util::{self, file_lines, tbptt, Input, Proc, TempDir, TIMEOUT};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The CSV header of a one-value stream.
const HEADER: &str =
    "index,time,key,error,score,anomaly,updates,residual_0,forecast_0,onset_index,onset_time";

/// The CSV header of a one-value stream whose column is named `name`: output columns keep
/// the input's names.
fn header_of(name: &str) -> String {
    format!(
        "index,time,key,error,score,anomaly,updates,residual_{name},forecast_{name},\
         onset_index,onset_time"
    )
}

const NAB: &str = "nab_ec2_cpu_utilization_24ae8d.csv";
const CO2: &str = "co2_mauna_loa_weekly.csv";

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Splits CSV output (no quoted fields: keys here are plain) into its header and rows.
fn csv_rows(text: &str) -> (String, Vec<Vec<String>>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().to_owned();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn num(field: &str) -> f64 {
    field
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {field:?}"))
}

/// TBPTT updates applied after `n` events with T = 32, k = 8: the first after event 40,
/// then one every 8 events.
fn updates_after(n: usize) -> u64 {
    if n >= 40 {
        ((n - 40) / 8 + 1) as u64
    } else {
        0
    }
}

fn sine(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 1000.0 + 50.0 * (0.3 * i as f64).sin())
        .collect()
}

fn csv_input(header: &str, values: &[f64]) -> Vec<u8> {
    let mut text = format!("{header}\n");
    for v in values {
        text.push_str(&format!("{v}\n"));
    }
    text.into_bytes()
}

/// The stderr line that reports `line N:` of the input, if any.
fn reported(stderr: &str, line: usize) -> Option<&str> {
    let tag = format!("line {line}:");
    stderr.lines().find(|l| l.contains(&tag))
}

fn assert_reported(stderr: &str, line: usize, reason: &str) {
    let l = reported(stderr, line)
        .unwrap_or_else(|| panic!("line {line} not reported; stderr:\n{stderr}"));
    assert!(
        l.contains(reason),
        "line {line} reported without {reason:?}: {l}"
    );
}

// ---- 1. stdin

#[test]
fn stdin_pipe_gives_one_record_per_event() {
    let n = 100;
    let values = sine(n);
    let dir = TempDir::new("stdin");
    let summary = dir.join("summary.json");
    let out = util::run(
        tbptt(["learn", "--sync", "--summary", s(&summary)]),
        Input::Bytes(csv_input("v", &values)),
    );
    out.assert_code(0);
    let (header, rows) = csv_rows(&out.stdout_str());
    assert_eq!(header, header_of("v"));
    assert_eq!(rows.len(), n);
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let (lo, hi) = (lo - 0.1 * lo.abs(), hi + 0.1 * hi.abs());
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 11, "row {i}: {r:?}");
        assert_eq!(r[0], i.to_string(), "index of row {i}");
        assert_eq!((r[1].as_str(), r[2].as_str()), ("", ""), "no time, no key");
        assert!(r[5] == "0" || r[5] == "1", "anomaly flag {:?}", r[5]);
        assert!(num(&r[4]).is_finite(), "score {:?}", r[4]);
        assert_eq!(
            num(&r[6]) as u64,
            updates_after(i + 1),
            "updates at row {i}"
        );
        let forecast = num(&r[8]);
        assert!(
            forecast.is_finite() && (lo..=hi).contains(&forecast),
            "row {i}: forecast {forecast} outside [{lo}, {hi}]"
        );
        if i == 0 {
            assert_eq!((r[3].as_str(), r[7].as_str()), ("", ""), "first event");
        } else {
            // The residual is this event minus the forecast made at the previous one.
            let residual = num(&r[7]);
            let expected = values[i] - num(&rows[i - 1][8]);
            assert!(
                (residual - expected).abs() < 1e-6,
                "row {i}: residual {residual}, expected {expected}"
            );
            let error = num(&r[3]);
            assert!(
                (error - residual * residual).abs() <= 1e-9 * error.max(1.0),
                "row {i}: error {error} vs residual {residual}"
            );
        }
    }
    let sum = util::summary(&summary);
    assert_eq!(sum["events"], n as u64);
    assert_eq!(sum["updates"], updates_after(n));
    assert_eq!(sum["rejected"], 0);
    assert_eq!(sum["ended_by"], "end of input");
    assert!(out.stderr.contains("tbptt summary (end of input)"));
}

// ---- 2. missing values

fn learn_co2(missing: &str, dir: &TempDir) -> (util::Finished, Value) {
    let summary = dir.join(&format!("{missing}.json"));
    let out = util::run(
        tbptt([
            "learn",
            "--sync",
            "--missing",
            missing,
            "--summary",
            s(&summary),
        ]),
        Input::Bytes(std::fs::read(util::data(CO2)).expect("read co2 data")),
    );
    out.assert_code(0);
    let sum = util::summary(&summary);
    (out, sum)
}

#[test]
fn missing_values_skip_or_hold() {
    let dir = TempDir::new("missing");
    let (out, sum) = learn_co2("skip", &dir);
    assert_eq!(sum["rejected"], 59);
    assert_eq!(sum["events"], 2284 - 59);
    assert_eq!(util::complete_lines(&out.stdout), 2284 - 59 + 1);
    // data row 7 (line 8 of the file) is the first empty one
    assert_reported(&out.stderr, 8, "missing value");

    let (out, sum) = learn_co2("hold", &dir);
    assert_eq!(sum["rejected"], 0);
    assert_eq!(sum["events"], 2284);
    assert_eq!(util::complete_lines(&out.stdout), 2284 + 1);
    assert!(reported(&out.stderr, 8).is_none(), "{}", out.stderr);
    let keys = [
        "events",
        "updates",
        "skipped_updates",
        "rejected",
        "mean_loss",
        "mse_last20",
        "naive_mse_last20",
        "mse_all",
        "naive_mse_all",
        "events_per_sec",
        "wall_seconds",
        "ended_by",
        "anomalies",
        "rejected_updates",
        "dropped_datagrams",
        "kernel_dropped_datagrams",
        "refused_connections",
        "evicted_connections",
        "timed_out_connections",
        "skipped_values",
        "resumed_from",
        "checkpoints",
        "checkpoints_deferred",
        "checkpoint_failures",
    ];
    for k in keys {
        assert!(sum.get(k).is_some(), "summary lacks {k}: {sum}");
    }
    assert_eq!(sum.as_object().map(|o| o.len()), Some(keys.len()), "{sum}");
}

// ---- 3. reproducibility, JSON lines

#[test]
fn sync_runs_are_reproducible_and_jsonl_matches_csv() {
    let input = std::fs::read(util::data(NAB)).expect("read nab data");
    let csv = || {
        let out = util::run(
            tbptt(["learn", "--sync", "-q"]),
            Input::Bytes(input.clone()),
        );
        out.assert_code(0);
        out.stdout
    };
    let (a, b) = (csv(), csv());
    assert_eq!(util::complete_lines(&a), 4033);
    assert!(a == b, "two --sync runs on the same input differ");

    let out = util::run(
        tbptt(["learn", "--sync", "-q", "--output-format", "jsonl"]),
        Input::Bytes(input),
    );
    out.assert_code(0);
    let text = out.stdout_str();
    let (_, rows) = csv_rows(&String::from_utf8(a).expect("UTF-8"));
    let objects: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objects.len(), 4032);
    let mut keys = [
        "index",
        "time",
        "key",
        "error",
        "score",
        "anomaly",
        "updates",
        "residual",
        "forecast",
        "onset_index",
        "onset_time",
    ];
    keys.sort_unstable();
    for (i, (o, r)) in objects.iter().zip(&rows).enumerate() {
        let mut got: Vec<&str> = o
            .as_object()
            .expect("a JSON object")
            .keys()
            .map(String::as_str)
            .collect();
        got.sort_unstable();
        assert_eq!(got, keys, "keys of record {i}");
        assert_eq!(o["index"], i as u64);
        assert_eq!(o["time"].as_str(), Some(r[1].as_str()), "time of {i}");
        assert_eq!(o["key"], "");
        assert_eq!(o["updates"].as_u64(), Some(num(&r[6]) as u64));
        assert_eq!(o["anomaly"].as_bool(), Some(r[5] == "1"));
        assert_eq!(o["score"].as_f64(), Some(num(&r[4])));
        assert_eq!(
            o["forecast"][0].as_f64(),
            Some(num(&r[8])),
            "forecast of {i}"
        );
        assert_eq!(o["forecast"].as_array().map(Vec::len), Some(1));
        if i == 0 {
            assert_eq!(o["error"], Value::Null);
        } else {
            assert_eq!(o["error"].as_f64(), Some(num(&r[3])), "error of {i}");
            assert_eq!(o["residual"][0].as_f64(), Some(num(&r[7])));
        }
    }
}

// ---- 4. replay

#[test]
fn replay_a_file_beats_the_naive_forecast() {
    let dir = TempDir::new("replay");
    let (out, summary) = (dir.join("out.csv"), dir.join("s.json"));
    let nab = util::data(NAB);
    util::run(
        tbptt(["replay", s(&nab), "-o", s(&out), "--summary", s(&summary)]),
        Input::Null,
    )
    .assert_code(0);
    assert_eq!(file_lines(&out), 4033);
    let sum = util::summary(&summary);
    assert_eq!(sum["events"], 4032);
    assert_eq!(sum["updates"], updates_after(4032));
    assert_eq!(sum["ended_by"], "end of input");
    let (mse, naive) = (
        sum["mse_last20"].as_f64().expect("mse"),
        sum["naive_mse_last20"].as_f64().expect("naive"),
    );
    assert!(mse < naive, "mse_last20 {mse} >= naive {naive}");
}

#[test]
fn replay_speed_paces_by_the_time_column() {
    let dir = TempDir::new("speed");
    let log = dir.join("log.csv");
    let mut text = String::from("time,v\n");
    for (i, v) in [1.0, 2.0, 3.0, 2.0, 1.0, 2.0].iter().enumerate() {
        text.push_str(&format!("2024-01-01T00:00:0{i}Z,{v}\n"));
    }
    std::fs::write(&log, text).expect("write log");
    let replay = |speed: &str| {
        let summary = dir.join(&format!("{speed}.json"));
        let started = Instant::now();
        let out = util::run(
            tbptt([
                "replay",
                s(&log),
                "--speed",
                speed,
                "-q",
                "--summary",
                s(&summary),
            ]),
            Input::Null,
        );
        let elapsed = started.elapsed().as_secs_f64();
        out.assert_code(0);
        assert_eq!(util::complete_lines(&out.stdout), 7, "{speed}");
        let wall = util::summary(&summary)["wall_seconds"]
            .as_f64()
            .expect("wall_seconds");
        (elapsed, wall)
    };
    // 5 gaps of 1 s at 10x: 0.5 s
    let (elapsed, wall) = replay("10x");
    assert!(elapsed >= 0.45, "10x took {elapsed} s");
    assert!(wall >= 0.45, "10x: wall_seconds {wall}");
    let (_, fast) = replay("max");
    assert!(fast < 0.15 && fast < wall / 3.0, "max: wall_seconds {fast}");
}

#[test]
fn replay_rejects_a_bad_speed() {
    let nab = util::data(NAB);
    for bad in ["fast", "0x", "-2x"] {
        let out = util::run(
            tbptt(["replay", s(&nab), &format!("--speed={bad}"), "-o", "none"]),
            Input::Null,
        );
        out.assert_code(2);
        assert!(
            out.stderr.contains("speed") && out.stderr.contains(bad),
            "--speed {bad}: {}",
            out.stderr
        );
    }
}

/// Issue 16, item 16: a threshold the score can never exceed is refused, with the fix named;
/// an unbounded score takes it.
#[test]
fn r16_thresholds_outside_the_scores_range_are_refused() {
    let nab = util::data(NAB);
    for (kind, bad) in [("likelihood", "5"), ("raw", "1"), ("likelihood", "-0.1")] {
        let threshold = format!("--threshold={bad}");
        let out = util::run(
            tbptt([
                "replay",
                s(&nab),
                "--anomaly",
                kind,
                &threshold,
                "-o",
                "none",
                "-q",
            ]),
            Input::Null,
        );
        out.assert_code(2);
        assert!(
            out.stderr.contains("threshold") && out.stderr.contains("[0, 1)"),
            "{kind} {bad}: {}",
            out.stderr
        );
    }
    let out = util::run(
        tbptt([
            "replay",
            s(&nab),
            "--anomaly",
            "zscore",
            "--threshold",
            "5",
            "-o",
            "none",
            "-q",
        ]),
        Input::Null,
    );
    out.assert_code(0);
}

// ---- 5-8. sockets

/// Waits for the output file to hold `records` records after its header.
fn wait_records(p: &mut Proc, out: &Path, records: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while file_lines(out) < records + 1 {
        assert!(!p.exited(), "tbptt exited early; stderr:\n{}", p.stderr());
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {records} records, have {}; stderr:\n{}",
            file_lines(out).saturating_sub(1),
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then the checks every listener test shares: exit 0, the summary on stderr and
/// in `summary`, ended by shutdown, `events` records in `out`.
fn terminate(p: Proc, out: &Path, summary: &Path, events: usize) -> Value {
    p.sigterm();
    let done = p.finish(TIMEOUT);
    done.assert_code(0);
    assert!(
        done.stderr.contains("tbptt summary (shutdown)") && done.stderr.contains("events"),
        "{}",
        done.stderr
    );
    let sum = util::summary(summary);
    assert_eq!(sum["ended_by"], "shutdown");
    assert_eq!(sum["events"], events as u64, "{sum}");
    assert_eq!(sum["rejected"], 0, "{sum}");
    assert_eq!(file_lines(out), events + 1, "records in the output");
    sum
}

fn listen(url: &str, dir: &TempDir, extra: &[&str]) -> Proc {
    let mut args = vec![
        "learn".to_owned(),
        "--sync".to_owned(),
        "--listen".to_owned(),
        url.to_owned(),
        "-o".to_owned(),
        s(&dir.join("out.csv")).to_owned(),
        "--summary".to_owned(),
        s(&dir.join("s.json")).to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Proc::spawn(tbptt(args), Input::Null)
}

#[test]
fn tcp_listener_serves_two_clients_into_one_model() {
    let dir = TempDir::new("tcp");
    let (out, summary) = (dir.join("out.csv"), dir.join("s.json"));
    let addr = SocketAddr::from(([127, 0, 0, 1], util::free_tcp_port()));
    let mut p = listen(&format!("tcp://{addr}"), &dir, &["--key", "src"]);
    let mut a = util::connect_tcp(addr, &mut p, TIMEOUT);
    let mut b = util::connect_tcp(addr, &mut p, TIMEOUT);
    // Each connection is its own stream with its own header.
    a.write_all(b"src,v\n").expect("write a");
    b.write_all(b"src,v\n").expect("write b");
    let n = 25;
    for i in 0..n {
        a.write_all(format!("a,{}\n", i as f64 * 0.5).as_bytes())
            .expect("write a");
        b.write_all(format!("b,{}\n", 100 - i).as_bytes())
            .expect("write b");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop((a, b));
    wait_records(&mut p, &out, 2 * n);
    terminate(p, &out, &summary, 2 * n);
    let text = std::fs::read_to_string(&out).expect("read output");
    let (_, rows) = csv_rows(&text);
    for key in ["a", "b"] {
        assert_eq!(
            rows.iter().filter(|r| r[2] == key).count(),
            n,
            "records of client {key}"
        );
    }
}

#[test]
fn udp_listener_counts_every_datagram() {
    let dir = TempDir::new("udp");
    let (out, summary) = (dir.join("out.csv"), dir.join("s.json"));
    let addr = SocketAddr::from(([127, 0, 0, 1], util::free_udp_port()));
    let mut p = listen(&format!("udp://{addr}"), &dir, &[]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp client");
    sock.connect(addr).expect("connect udp");
    // Probe until the binary answers: datagrams sent before it binds are lost.
    let deadline = Instant::now() + TIMEOUT;
    while file_lines(&out) < 2 {
        assert!(!p.exited(), "tbptt exited; stderr:\n{}", p.stderr());
        assert!(Instant::now() < deadline, "no UDP event ever recorded");
        let _ = sock.send(b"1.5");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the probes drain, then count from there.
    let mut base = file_lines(&out);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = file_lines(&out);
        if now == base {
            break;
        }
        assert!(Instant::now() < deadline, "output never settled");
        base = now;
    }
    let base = base - 1;
    let n = 40;
    for i in 0..n {
        sock.send(format!("{}", 1.0 + 0.1 * i as f64).as_bytes())
            .expect("send");
        std::thread::sleep(Duration::from_millis(1));
    }
    // One datagram may carry several lines.
    sock.send(b"7\n8\n9\n").expect("send");
    let expected = base + n + 3;
    wait_records(&mut p, &out, expected);
    std::thread::sleep(Duration::from_millis(100));
    let sum = terminate(p, &out, &summary, expected);
    assert_eq!(sum["dropped_datagrams"], 0);
}

#[test]
fn unix_listener_reads_a_client_and_removes_its_socket() {
    use std::os::unix::net::UnixStream;
    let dir = TempDir::new("unix");
    let (out, summary) = (dir.join("out.csv"), dir.join("s.json"));
    let path = dir.join("s.sock");
    let mut p = listen(&format!("unix://{}", s(&path)), &dir, &[]);
    let deadline = Instant::now() + TIMEOUT;
    let mut client = loop {
        if let Ok(c) = UnixStream::connect(&path) {
            break c;
        }
        assert!(!p.exited(), "tbptt exited; stderr:\n{}", p.stderr());
        assert!(
            Instant::now() < deadline,
            "tbptt never listened on {path:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let n = 12;
    client
        .write_all(&csv_input("v", &sine(n)))
        .expect("write unix");
    drop(client);
    wait_records(&mut p, &out, n);
    terminate(p, &out, &summary, n);
    assert!(!path.exists(), "socket file {path:?} left behind");
}

#[test]
fn connect_source_reconnects_after_a_drop() {
    use std::net::TcpListener;
    let dir = TempDir::new("connect");
    let (out, summary) = (dir.join("out.csv"), dir.join("s.json"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let accept = || {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).expect("blocking");
                        return sock;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        assert!(Instant::now() < deadline, "tbptt never connected");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        };
        let mut first = accept();
        first.write_all(b"1\n2\n3\n").expect("write 1");
        drop(first);
        let mut second = accept();
        second.write_all(b"4\n5\n6\n").expect("write 2");
        // Keep the second connection open until the test is done.
        let _ = done_rx.recv_timeout(TIMEOUT);
        drop(second);
    });
    let mut p = Proc::spawn(
        tbptt([
            "learn",
            "--sync",
            "--connect",
            &addr.to_string(),
            "-o",
            s(&out),
            "--summary",
            s(&summary),
        ]),
        Input::Null,
    );
    wait_records(&mut p, &out, 6);
    terminate(p, &out, &summary, 6);
    let _ = done_tx.send(());
    server.join().expect("server thread");
    let text = std::fs::read_to_string(&out).expect("read output");
    let (_, rows) = csv_rows(&text);
    for (i, r) in rows.iter().enumerate().skip(1) {
        // value i+1 arrived: residual + previous forecast
        let value = num(&r[7]) + num(&rows[i - 1][8]);
        assert!((value - (i + 1) as f64).abs() < 1e-9, "row {i}: {value}");
    }
}

// ---- 9. bad input

/// Bad lines of a two-column input (`a,b`), each with the words its report must contain.
fn bad_lines() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (b"x,3".to_vec(), "not a number"),
        (b"4".to_vec(), "expected 2 fields, got 1"),
        (b"5,6,7".to_vec(), "expected 2 fields, got 3"),
        (b"NaN,1".to_vec(), "non-finite"),
        (b"1,inf".to_vec(), "non-finite"),
        (b"\xff\xfe,1".to_vec(), "UTF-8"),
        (
            format!("{},1", "9".repeat(100)).into_bytes(),
            "longer than 64 bytes",
        ),
        (b",2".to_vec(), "missing value"),
        (b"NA,3".to_vec(), "missing value"),
    ]
}

#[test]
fn bad_records_are_counted_reported_and_skipped() {
    let dir = TempDir::new("bad");
    let summary = dir.join("s.json");
    let bad = bad_lines();
    let mut input = b"a,b\n1,2\n".to_vec();
    for (line, _) in &bad {
        input.extend(line);
        input.push(b'\n');
    }
    input.extend(b"7,8\n");
    let out = util::run(
        tbptt([
            "learn",
            "--sync",
            "--max-line",
            "64",
            "--missing",
            "skip",
            "--summary",
            s(&summary),
        ]),
        Input::Bytes(input),
    );
    out.assert_code(0);
    for (i, (_, reason)) in bad.iter().enumerate() {
        assert_reported(&out.stderr, i + 3, reason);
    }
    let sum = util::summary(&summary);
    assert_eq!(sum["rejected"], bad.len() as u64);
    assert_eq!(sum["events"], 2);
    // The line after the bad ones is still processed: the second record is (7, 8).
    let (_, rows) = csv_rows(&out.stdout_str());
    assert_eq!(rows.len(), 2);
    assert_eq!(num(&rows[1][7]) + num(&rows[0][9]), 7.0);
    assert_eq!(num(&rows[1][8]) + num(&rows[0][10]), 8.0);
}

#[test]
fn strict_stops_at_the_first_bad_record() {
    for (line, reason) in bad_lines() {
        let mut input = b"a,b\n1,2\n".to_vec();
        input.extend(&line);
        input.extend(b"\n3,4\n");
        let out = util::run(
            tbptt(["learn", "--sync", "--strict", "--max-line", "64"]),
            Input::Bytes(input),
        );
        out.assert_code(2);
        assert!(
            out.stderr.contains("line 3") && out.stderr.contains(reason),
            "{reason}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("strict"), "{}", out.stderr);
        assert_eq!(
            out.stderr.matches("line 3").count(),
            1,
            "position named once: {}",
            out.stderr
        );
        assert_eq!(
            util::complete_lines(&out.stdout),
            2,
            "only the record before the bad line: {}",
            out.stdout_str()
        );
    }
}

#[test]
fn an_event_of_another_arity_than_the_first_is_rejected() {
    let dir = TempDir::new("arity");
    let summary = dir.join("s.json");
    let out = util::run(
        tbptt(["learn", "--sync", "--summary", s(&summary)]),
        Input::Bytes(b"1,2\n3\n4,5\n".to_vec()),
    );
    out.assert_code(0);
    assert_reported(&out.stderr, 2, "expected 2 fields, got 1");
    let sum = util::summary(&summary);
    assert_eq!(
        (sum["events"].as_u64(), sum["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(util::complete_lines(&out.stdout), 3);

    let out = util::run(
        tbptt(["learn", "--sync", "--strict"]),
        Input::Bytes(b"1,2\n3\n4,5\n".to_vec()),
    );
    out.assert_code(2);
    assert!(out.stderr.contains("line 2"), "{}", out.stderr);
}

// ---- 10-11. ending

#[test]
fn sigterm_mid_stream_loses_no_output() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = TempDir::new("sigterm");
    let summary = dir.join("s.json");
    let mut p = Proc::spawn(
        tbptt(["learn", "--sync", "--summary", s(&summary)]),
        Input::Piped,
    );
    let mut stdin = p.take_stdin();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // stdin stays open until the child is gone or the test is done
            let mut line = 0usize;
            let mut write = |bytes: &[u8]| stdin.write_all(bytes).and_then(|()| stdin.flush());
            if write(b"v\n").is_err() {
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                let v = 10.0 + (0.2 * line as f64).sin();
                if write(format!("{v}\n").as_bytes()).is_err() {
                    return;
                }
                line += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    util::wait_until("20 records", TIMEOUT, || {
        util::complete_lines(&p.stdout()) >= 21
    });
    p.sigterm();
    let done = p.finish(TIMEOUT);
    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder thread");
    done.assert_code(0);
    assert!(
        done.stderr.contains("tbptt summary (shutdown)"),
        "{}",
        done.stderr
    );
    let sum = util::summary(&summary);
    assert_eq!(sum["ended_by"], "shutdown");
    let events = sum["events"].as_u64().expect("events") as usize;
    assert!(events >= 20, "{sum}");
    assert_eq!(util::complete_lines(&done.stdout) - 1, events);
    let (_, rows) = csv_rows(&done.stdout_str());
    assert_eq!(
        rows.last().map(|r| r[0].clone()),
        Some((events - 1).to_string())
    );
}

#[test]
fn a_closed_output_pipe_ends_the_run_quietly() {
    use std::process::Stdio;
    let dir = TempDir::new("pipe");
    let summary = dir.join("s.json");
    let nab = util::data(NAB);
    let mut cmd = tbptt(["replay", s(&nab), "--summary", s(&summary)]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn_with(cmd, Input::Null, false);
    let mut reader = BufReader::new(p.take_stdout());
    // `| head -n 3`
    let mut lines = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read stdout");
        lines.push(line);
    }
    drop(reader);
    assert_eq!(lines[0].trim_end(), header_of("value"));
    let done = p.finish(TIMEOUT);
    done.assert_code(0);
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
    let sum = util::summary(&summary);
    assert_eq!(sum["ended_by"], "output closed");
    assert!(sum["events"].as_u64() < Some(4032), "{sum}");
}

// ---- 12. flags

#[test]
fn help_lists_subcommands_and_examples() {
    let out = util::run(tbptt(["--help"]), Input::Null);
    out.assert_code(0);
    let text = out.stdout_str();
    for want in [
        "learn",
        "replay",
        "Examples:",
        "cat data/co2_mauna_loa_weekly.csv | tbptt learn --missing hold",
        "tbptt replay data/nab_ec2_cpu_utilization_24ae8d.csv",
        "--listen tcp://127.0.0.1:9000",
        "--connect 127.0.0.1:9000",
    ] {
        assert!(text.contains(want), "--help lacks {want:?}:\n{text}");
    }
    let out = util::run(tbptt(["learn", "--help"]), Input::Null);
    out.assert_code(0);
    let text = out.stdout_str();
    for want in ["--listen", "--connect", "--sync", "--strict", "Examples:"] {
        assert!(text.contains(want), "learn --help lacks {want:?}");
    }
    let out = util::run(tbptt(["replay", "--help"]), Input::Null);
    out.assert_code(0);
    assert!(out.stdout_str().contains("--speed"));
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["learn", "--cell", "nope"], &["cell", "nope"]),
        (&["learn", "-k", "40", "-T", "32"], &["every", "k1 <= k2"]),
        (&["learn", "--missing", "maybe"], &["--missing", "maybe"]),
        (&["learn", "--output-format", "xml"], &["output", "xml"]),
        (&["learn", "--listen", "http://x:1"], &["http"]),
        (&["learn", "--listen", "udp://nohost"], &["nohost"]),
        (&["learn", "--bogus"], &["--bogus"]),
    ];
    for (args, words) in cases {
        let out = util::run(tbptt(args.iter()), Input::Bytes(b"1\n2\n".to_vec()));
        out.assert_code(2);
        for w in *words {
            assert!(
                out.stderr.contains(w),
                "{args:?}: no {w:?} in {}",
                out.stderr
            );
        }
        assert!(out.stdout.is_empty(), "{args:?} wrote records");
    }
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let out = util::run(
        tbptt(["learn", "--sync", "-q"]),
        Input::Bytes(b"v\n1\nx\n2\n".to_vec()),
    );
    out.assert_code(0);
    assert_reported(&out.stderr, 3, "not a number");
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
}

#[test]
fn likelihood_settings_change_when_an_alarm_is_reported_and_bad_ones_are_refused() {
    // Noise, then one spike at row 1500. With the defaults its score is above the threshold
    // at once, so its alarm is on the spike itself; without reporting at once it comes after
    // the 5 rows of confirmation; with '{"confirm": 0}' on the spike again.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut values: Vec<f64> = (0..2000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect();
    values[1500] = 40.0;
    let alarms = |extra: &[&str]| {
        let mut args = vec!["learn", "--sync", "--threshold", "0.9"];
        args.extend_from_slice(extra);
        let out = util::run(tbptt(args), Input::Bytes(csv_input("v", &values)));
        out.assert_code(0);
        let (_, rows) = csv_rows(&out.stdout_str());
        rows.iter()
            .enumerate()
            .filter(|(_, r)| r[5] == "1")
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(alarms(&[]), vec![1500]);
    assert_eq!(
        alarms(&["--likelihood", r#"{"at_once": false}"#]),
        vec![1505]
    );
    let late = r#"{"at_once": false, "confirm": 0}"#;
    assert_eq!(alarms(&["--likelihood", late]), vec![1500]);
    for (bad, says) in [
        (r#"{"confirm": "soon"}"#, "likelihood settings"),
        (r#"{"bogus": 1}"#, "unknown field `bogus`"),
        (r#"{"tail": 0}"#, "anomaly.likelihood.tail"),
    ] {
        let out = util::run(tbptt(["learn", "--likelihood", bad]), Input::Null);
        out.assert_code(2);
        assert!(out.stderr.contains(says), "{bad}: {}", out.stderr);
    }
}

#[test]
fn r16_a_piped_file_learns_as_well_as_replay() {
    // `cat file | tbptt learn` trains in the background; a busy trainer slows the pipe
    // instead of skipping updates, so it learns what `replay` learns.
    let dir = TempDir::new("piped");
    let input = dir.join("in.csv");
    let values: Vec<f64> = (0..20_000)
        .map(|i| 50.0 + 10.0 * (0.3 * i as f64).sin() + ((i * 7919) % 101) as f64 / 50.0)
        .collect();
    let bytes = csv_input("cpu", &values);
    std::fs::write(&input, &bytes).unwrap();
    let mut learn = tbptt(["learn", "-q", "-o", "none", "--summary"]);
    learn.arg(dir.join("learn.json"));
    util::run(learn, Input::Bytes(bytes)).assert_code(0);
    let mut replay = tbptt(["replay", "-q", "-o", "none", "--summary"]);
    replay.arg(dir.join("replay.json")).arg(&input);
    util::run(replay, Input::Null).assert_code(0);
    let (l, r) = (
        util::summary(&dir.join("learn.json")),
        util::summary(&dir.join("replay.json")),
    );
    assert_eq!(l["skipped_updates"], 0, "{l}");
    assert_eq!(l["updates"], r["updates"], "{l}\n{r}");
    let (ml, mr) = (
        l["mse_last20"].as_f64().unwrap(),
        r["mse_last20"].as_f64().unwrap(),
    );
    assert!(
        ml <= mr * 1.05,
        "piped learn MSE {ml} against replay's {mr}"
    );
}

#[test]
fn r16_error_exits_still_write_the_summary_with_the_reason() {
    let dir = TempDir::new("error-summary");
    let s = dir.join("s.json");
    let mut cmd = tbptt(["learn", "--sync", "--strict", "-o", "none", "--summary"]);
    cmd.arg(&s);
    let f = util::run(cmd, Input::Bytes(b"x\n1\n2\nthree\n4\n".to_vec()));
    f.assert_code(2);
    assert!(f.stderr.contains("tbptt summary (error)"), "{}", f.stderr);
    let v = util::summary(&s);
    assert_eq!(v["ended_by"], "error", "{v}");
    assert_eq!(v["events"], 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("line 4"), "{v}");
}

#[test]
fn r16_an_unwritable_summary_path_fails_before_the_run() {
    let dir = TempDir::new("bad-summary");
    let mut cmd = tbptt(["replay", "-o", "none", "--summary"]);
    cmd.arg(dir.join("missing").join("s.json"))
        .arg(util::data(NAB));
    let t0 = Instant::now();
    let f = util::run(cmd, Input::Null);
    f.assert_code(2);
    assert!(f.stderr.contains("cannot write summary"), "{}", f.stderr);
    assert!(
        !f.stderr.contains("tbptt summary"),
        "it ran first: {}",
        f.stderr
    );
    assert!(t0.elapsed() < TIMEOUT);
}

#[test]
fn r16_ctrl_c_exits_130_after_the_summary() {
    let mut child = Proc::spawn(tbptt(["learn", "-o", "none"]), Input::Piped);
    let mut stdin = child.take_stdin();
    stdin.write_all(b"x\n1\n2\n3\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let f = child.finish(TIMEOUT);
    drop(stdin);
    assert_eq!(f.status.code(), Some(130), "{}", f.stderr);
    assert!(
        f.stderr.contains("tbptt summary (shutdown)"),
        "{}",
        f.stderr
    );
}

#[test]
fn r16_delimiters_and_formats_are_guessed_and_named() {
    let dir = TempDir::new("guess");
    let run_on = |name: &str, body: &str, flags: &[&str]| {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let mut cmd = tbptt(["replay", "-o", "-", "-q"]);
        cmd.args(flags).arg(&path);
        util::run(cmd, Input::Null)
    };
    let rows = |f: &util::Finished| f.stdout_str().lines().count().saturating_sub(1);
    // `;` without --delimiter: found from the first line, and said.
    let f = run_on("semi.csv", "a;b\n1;2\n3;4\n", &[]);
    f.assert_code(0);
    assert_eq!(rows(&f), 2);
    assert!(f.stderr.contains("CSV delimiter ';'"), "{}", f.stderr);
    // JSON lines in a .jsonl file without --format.
    let f = run_on("e.jsonl", "{\"v\": 1}\n{\"v\": 2}\n", &[]);
    f.assert_code(0);
    assert_eq!(rows(&f), 2, "{}", f.stderr);
    // Tab, by name or escape.
    for d in ["tab", "\\t"] {
        let f = run_on("t.tsv", "1\t2\n3\t4\n", &["--delimiter", d]);
        f.assert_code(0);
        assert_eq!(rows(&f), 2, "--delimiter {d}: {}", f.stderr);
        assert!(
            f.stdout_str().starts_with(&format!("{HEADER_2}\n")),
            "{}",
            f.stdout_str()
        );
    }
    // An unknown column is not a strict-mode error.
    let f = run_on("u.csv", "a,b\n1,2\n", &["--columns", "nope"]);
    f.assert_code(2);
    assert!(f.stderr.contains("unknown column `nope`"), "{}", f.stderr);
    assert!(!f.stderr.contains("strict"), "{}", f.stderr);
}

/// The CSV header of a two-value stream.
const HEADER_2: &str =
    "index,time,key,error,score,anomaly,updates,residual_0,residual_1,forecast_0,forecast_1,\
     onset_index,onset_time";

#[test]
fn r16_a_run_that_accepts_nothing_fails_with_a_hint() {
    let dir = TempDir::new("nothing");
    let path = dir.join("names.csv");
    std::fs::write(&path, "host,cpu\nweb-1,3\nweb-2,4\n").unwrap();
    let mut cmd = tbptt(["replay", "-o", "none", "--columns", "0,1"]);
    cmd.arg(&path);
    let f = util::run(cmd, Input::Null);
    f.assert_code(2);
    assert!(
        f.stderr.contains("no record was accepted (2 rejected"),
        "{}",
        f.stderr
    );
    assert!(f.stderr.contains("--key COL"), "{}", f.stderr);
}

#[test]
fn r16_replay_reads_stdin_and_says_when_it_cannot_pace() {
    let mut cmd = tbptt(["replay", "-", "-o", "-", "-q", "--speed", "realtime"]);
    cmd.arg("--no-progress");
    let f = util::run(cmd, Input::Bytes(csv_input("x", &sine(50))));
    f.assert_code(0);
    assert_eq!(f.stdout_str().lines().count(), 51);
    assert!(f.stderr.contains("cannot pace the replay"), "{}", f.stderr);
}

#[test]
fn r16_each_subcommand_has_its_own_examples() {
    for sub in ["learn", "replay", "sweep", "inspect", "nab"] {
        let f = util::run(tbptt([sub, "--help"]), Input::Null);
        f.assert_code(0);
        let help = f.stdout_str();
        let examples = &help[help.find("Examples:").expect("an examples block")..];
        let lines: Vec<&str> = examples
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(lines.len() >= 3, "{sub}: {examples}");
        for l in lines {
            assert!(
                l.contains(&format!("tbptt {sub} ")),
                "{sub}'s help shows {l:?}"
            );
        }
    }
}

#[test]
fn r16_inspect_shows_when_a_checkpoint_was_written_as_a_date() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join("checkpoint_v1.tbptt");
    let mut cmd = tbptt(["inspect"]);
    cmd.arg(&path);
    let f = util::run(cmd, Input::Null);
    f.assert_code(0);
    assert!(
        f.stdout_str()
            .contains("at 2026-11-27T05:54:45Z (Unix 1795758885)"),
        "{}",
        f.stdout_str()
    );
}

/// Runs `replay - -o - --no-progress` with `flags` on `input`.
fn replay_stdin(input: &str, flags: &[&str]) -> util::Finished {
    let mut cmd = tbptt(["replay", "-", "-o", "-", "--no-progress"]);
    cmd.args(flags);
    let f = util::run(cmd, Input::Bytes(input.as_bytes().to_vec()));
    f.assert_code(0);
    f
}

/// The values of column `name` in CSV `text` (no quoting in these tests).
fn column<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap_or_else(|| {
        panic!("no column {name} in {header:?}");
    });
    lines
        .map(|l| l.split(',').nth(i).unwrap_or_default())
        .collect()
}

#[test]
fn r16_unix_times_without_a_header_are_the_time_and_said() {
    let rows: String = (0..40)
        .map(|i| format!("{},{}\n", 1_700_000_000 + 60 * i, (i as f64 * 0.3).sin()))
        .collect();
    let f = replay_stdin(&rows, &[]);
    let out = f.stdout_str();
    assert!(out.starts_with(&format!("{HEADER}\n")), "{out}");
    assert_eq!(column(&out, "time")[3], "1700000180");
    assert!(
        f.stderr
            .contains("input columns: time `0` (Unix seconds), values `1`"),
        "{}",
        f.stderr
    );
    // Milliseconds are read as seconds and written back as milliseconds, or as seconds on
    // request.
    let ms: String = (0..40)
        .map(|i| format!("{},{}\n", 1_700_000_000_000_u64 + 500 * i, i % 7))
        .collect();
    let f = replay_stdin(&ms, &[]);
    assert_eq!(column(&f.stdout_str(), "time")[1], "1700000000500");
    assert!(f.stderr.contains("(Unix milliseconds)"), "{}", f.stderr);
    let f = replay_stdin(&ms, &["--epoch-times"]);
    assert_eq!(column(&f.stdout_str(), "time")[1], "1700000000.5");
    // Ordinary numbers stay values.
    let f = replay_stdin("1871,5\n1872,6\n1873,7\n", &[]);
    assert!(f.stdout_str().starts_with(&format!("{HEADER_2}\n")));
    assert!(f.stderr.contains("no time column"), "{}", f.stderr);
}

#[test]
fn r16_a_named_column_of_unix_times_is_learned_but_warned_about() {
    let rows: String = std::iter::once("t0,load\n".to_string())
        .chain((0..20).map(|i| format!("{},{}\n", 1_700_000_000 + i, i % 3)))
        .collect();
    let f = replay_stdin(&rows, &[]);
    assert!(
        f.stderr
            .contains("column `t0` looks like Unix times but is learned as a value (--time t0"),
        "{}",
        f.stderr
    );
    let f = replay_stdin(&rows, &["--time", "t0"]);
    assert!(!f.stderr.contains("looks like Unix times"), "{}", f.stderr);
    assert!(f.stderr.contains("time `t0` (Unix seconds), values `load`"));
}

#[test]
fn r16_output_keeps_the_input_names_and_time_format() {
    let dir = TempDir::new("names");
    let rows: String = std::iter::once("timestamp,cpu,mem\n".to_string())
        .chain((0..30).map(|i| {
            format!(
                "2014-04-01 {:02}:{:02}:00,{},{}\n",
                i / 60,
                i % 60,
                i % 5,
                10 + i % 3
            )
        }))
        .collect();
    let rec = dir.join("rec.jsonl");
    let rec_arg = rec.to_str().unwrap();
    let cmd = tbptt(["learn", "-", "-o", "-", "--sync", "--record", rec_arg]);
    let live = util::run(cmd, Input::Bytes(rows.clone().into_bytes()));
    live.assert_code(0);
    let out = live.stdout_str();
    let header = out.lines().next().unwrap();
    assert!(
        header.ends_with(
            ",residual_cpu,residual_mem,forecast_cpu,forecast_mem,onset_index,onset_time"
        ),
        "{header}"
    );
    assert_eq!(column(&out, "time")[7], "2014-04-01 00:07:00");
    assert!(live
        .stderr
        .contains("time `timestamp` (ISO 8601), values `cpu`, `mem`"));
    // JSON lines carry the time as the same text.
    let json = replay_stdin(&rows, &["--output-format", "jsonl"]);
    let first: Value = serde_json::from_str(json.stdout_str().lines().next().unwrap()).unwrap();
    assert_eq!(first["time"], "2014-04-01 00:00:00");
    // Epoch seconds on request.
    let epoch = replay_stdin(&rows, &["--epoch-times"]);
    assert_eq!(column(&epoch.stdout_str(), "time")[0], "1396310400");
    // A replay of the recording writes what the live run wrote.
    let cmd = tbptt(["replay", "-o", "-", "--no-progress", rec_arg]);
    let again = util::run(cmd, Input::Null);
    again.assert_code(0);
    let replayed = again.stdout_str();
    assert_eq!(column(&replayed, "time"), column(&out, "time"));
    assert_eq!(
        replayed, out,
        "the replay of the recording writes the live records"
    );
    let first_line = std::fs::read_to_string(&rec).unwrap();
    assert!(
        first_line.starts_with(r#"{"time":"2014-04-01 00:00:00","cpu":0.0,"mem":10.0,"arrival":"#),
        "{first_line}"
    );
}
