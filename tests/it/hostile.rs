//! Hostile streams: huge values, a burst of 1e30, alternating ±1e15. The NaN guard rejects
//! non-finite updates without touching weights or optimizer state, clipping bounds the
//! finite ones, and learning continues after the burst.

use crate::util::{run, tbptt, Input, TempDir};
use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
use tbptt::event::Event;
use tbptt::nn::model::ModelConfig;
use tbptt::train::ring::Ring;
use tbptt::{CellKind, Learner, LearnerConfig, Model, OptimizerConfig, Trainer, TrainerConfig};

/// A deterministic noisy two-tone signal.
fn signal(t: usize) -> f64 {
    let noise = ((t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
    (t as f64 * 0.11).sin() + 0.5 * (t as f64 * 0.037).cos() + 0.05 * (noise - 0.5)
}

fn optimizer_is_finite<T: tbptt::Float>(o: &tbptt::Optimizer<T>) -> bool {
    // serde_json writes a non-finite float as null.
    let v = serde_json::to_string(o).expect("serialize optimizer");
    !v.contains("null")
}

#[test]
fn a_non_finite_update_leaves_weights_and_optimizer_unchanged() {
    let mc = ModelConfig {
        cell: CellKind::Gru,
        d_input: 1,
        d_hidden: 8,
        layers: 1,
        d_output: 1,
    };
    let tc = TrainerConfig {
        truncation: 8.into(),
        every: 4,
        ..Default::default()
    };
    let mut model = Model::<f32>::new(mc, 3).unwrap();
    let mut trainer = Trainer::new(&mc, tc).unwrap();
    let mut ring = Ring::<f32>::new(8, 1, 1, mc.state_len());
    let zeros = vec![0.0f32; mc.state_len()];
    for t in 0..8 {
        let x = signal(t) as f32;
        ring.push(&[x], &[signal(t + 1) as f32], &zeros);
    }
    let stats = trainer.update(&mut model, &ring).unwrap();
    assert!(stats.applied);
    // 1e30 targets: the squared error overflows f32 to infinity.
    for _ in 0..8 {
        ring.push(&[1.0], &[1e30], &zeros);
    }
    let (params, opt) = (model.params().to_vec(), trainer.optimizer().clone());
    let stats = trainer.update(&mut model, &ring).unwrap();
    assert!(!stats.applied && !stats.loss.is_finite(), "{stats:?}");
    assert_eq!(model.params(), &params[..]);
    assert_eq!(trainer.optimizer(), &opt);
    assert_eq!((trainer.updates(), trainer.rejected()), (1, 1));
    // The next normal window trains again.
    for t in 0..8 {
        ring.push(&[signal(t) as f32], &[signal(t + 1) as f32], &zeros);
    }
    assert!(trainer.update(&mut model, &ring).unwrap().applied);
    assert_eq!(trainer.updates(), 2);
}

#[test]
fn clipping_bounds_an_exploding_but_finite_gradient() {
    let mc = ModelConfig {
        cell: CellKind::Elman,
        d_input: 1,
        d_hidden: 8,
        layers: 1,
        d_output: 1,
    };
    let tc = TrainerConfig {
        truncation: 8.into(),
        every: 4,
        optimizer: OptimizerConfig::sgd(0.1),
        clip: Some(1.0),
        ..Default::default()
    };
    let mut model = Model::<f64>::new(mc, 5).unwrap();
    let mut trainer = Trainer::new(&mc, tc).unwrap();
    let mut ring = Ring::<f64>::new(8, 1, 1, mc.state_len());
    let zeros = vec![0.0; mc.state_len()];
    for t in 0..8 {
        let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
        ring.push(&[sign * 1e15], &[-sign * 1e15], &zeros);
    }
    let before = model.params().to_vec();
    let stats = trainer.update(&mut model, &ring).unwrap();
    assert!(stats.applied && stats.grad_norm > 1e10, "{stats:?}");
    // SGD moves the weights by lr · (clipped gradient): at most 0.1 in norm.
    let moved = model
        .params()
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(moved <= 0.1 + 1e-12 && moved > 0.09, "moved {moved}");
}

/// Mean squared forecast error of a learner over `xs` (raw values).
fn feed(learner: &mut Learner<f32>, xs: impl Iterator<Item = f64>) -> (f64, f64, usize) {
    let (mut se, mut naive, mut n) = (0.0, 0.0, 0usize);
    let mut prev = None::<f64>;
    for x in xs {
        let p = learner.step(&[x as f32]).unwrap();
        assert!(learner.forecast().iter().all(|v| v.is_finite()));
        if let (Some(e), Some(q)) = (p.error, prev) {
            se += e as f64;
            naive += (x - q).powi(2);
            n += 1;
        }
        prev = Some(x);
    }
    (se / n as f64, naive / n as f64, n)
}

#[test]
fn a_learner_survives_a_1e30_burst_and_alternating_1e15_and_keeps_learning() {
    let mut learner = LearnerConfig {
        d_hidden: 16,
        trainer: tbptt::TrainerConfig {
            truncation: 16.into(),
            every: 4,
            ..Default::default()
        },
        ..Default::default()
    }
    .build::<f32>()
    .unwrap();
    let (before, naive_before, _) = feed(&mut learner, (0..4000).map(signal));
    let rejected_before = learner.rejected_updates();
    // Raw values straight into the network: 1e30 makes the f32 loss infinite.
    feed(&mut learner, std::iter::repeat_n(1e30, 20));
    let hostile = (0..40).map(|t| if t % 2 == 0 { 1e15 } else { -1e15 });
    feed(&mut learner, hostile);
    assert!(learner.model().params().iter().all(|p| p.is_finite()));
    assert!(optimizer_is_finite(learner.trainer().unwrap().optimizer()));
    let rejected = learner.rejected_updates() - rejected_before;
    assert!(rejected >= 5, "only {rejected} updates rejected");
    let updates_after_burst = learner.updates();
    // Learning continues: after a while the error is back near its level before the burst.
    feed(&mut learner, (4000..10000).map(signal));
    let (after, naive_after, _) = feed(&mut learner, (10000..12000).map(signal));
    assert!(learner.updates() > updates_after_burst + 1000);
    assert!(learner.model().params().iter().all(|p| p.is_finite()));
    eprintln!(
        "before the burst: MSE {before:.5} (naive {naive_before:.5}); after: {after:.5} \
         (naive {naive_after:.5}); {rejected} updates rejected"
    );
    assert!(
        after < 0.5 * naive_after,
        "after {after} vs naive {naive_after}"
    );
    assert!(
        after < 3.0 * before + 1e-3,
        "after {after} vs before {before}"
    );
}

#[test]
fn a_pipeline_normalizes_a_burst_away_and_its_forecasts_recover() {
    let mut config = PipelineConfig::default();
    config.learner.d_hidden = 16;
    config.learner.trainer.truncation = 16.into();
    config.learner.trainer.every = 4;
    // The z-score flags every event of the burst (the likelihood only its onset).
    config.anomaly.kind = tbptt::detect::anomaly::AnomalyKind::ZScore;
    config.anomaly.threshold = 4.0;
    let mut p = Pipeline::new(config).unwrap();
    let mut ev = Event::new();
    let mut errs = Vec::new();
    let values = (0..4000)
        .map(|t| 100.0 + 10.0 * signal(t))
        .chain(std::iter::repeat_n(1e30, 20))
        .chain((0..40).map(|t| if t % 2 == 0 { 1e15 } else { -1e15 }))
        .chain((4000..12000).map(|t| 100.0 + 10.0 * signal(t)));
    for (i, x) in values.enumerate() {
        ev.values.clear();
        ev.values.push(x);
        let out = p.process(&ev).unwrap();
        assert!(out.forecast.iter().all(|v| v.is_finite()), "event {i}");
        errs.push(out.error.unwrap_or(0.0));
    }
    let l = p.learner().unwrap();
    assert!(l.model().params().iter().all(|v| v.is_finite()));
    let mean = |r: std::ops::Range<usize>| errs[r.clone()].iter().sum::<f64>() / r.len() as f64;
    let before = mean(3000..4000);
    let after = mean(errs.len() - 1000..errs.len());
    eprintln!("pipeline MSE before the burst {before:.4}, at the end {after:.4}");
    assert!(
        after < 3.0 * before + 0.05,
        "after {after} vs before {before}"
    );
    // The anomaly score flagged the burst.
    assert!(p.anomalies() >= 20);
}

#[test]
fn the_command_survives_hostile_values_with_finite_output() {
    let dir = TempDir::new("hostile");
    let summary = dir.join("summary.json");
    let mut input = String::new();
    for t in 0..3000 {
        input.push_str(&format!("{}\n", 50.0 + 5.0 * signal(t)));
    }
    for _ in 0..20 {
        input.push_str("1e30\n");
    }
    for t in 0..40 {
        input.push_str(if t % 2 == 0 { "1e15\n" } else { "-1e15\n" });
    }
    input.push_str("1e308\n-1.7976931348623157e308\n");
    for t in 3000..9000 {
        input.push_str(&format!("{}\n", 50.0 + 5.0 * signal(t)));
    }
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "--hidden",
        "16",
        "-T",
        "16",
        "-k",
        "4",
        "--output-format",
        "jsonl",
        "--summary",
    ]);
    cmd.arg(&summary);
    let done = run(cmd, Input::Bytes(input.into_bytes()));
    done.assert_code(0);
    let out = done.stdout_str();
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    assert_eq!(records.len(), 9062);
    for r in &records {
        let f = r["forecast"][0].as_f64();
        assert!(f.is_some_and(f64::is_finite), "non-finite forecast in {r}");
    }
    let err = |r: std::ops::Range<usize>| {
        records[r.clone()]
            .iter()
            .map(|r| r["error"].as_f64().unwrap_or(0.0))
            .sum::<f64>()
            / r.len() as f64
    };
    let (before, after) = (err(2000..3000), err(8062..9062));
    eprintln!("command: MSE before the burst {before:.4}, at the end {after:.4}");
    assert!(
        after < 3.0 * before + 0.05,
        "after {after} vs before {before}"
    );
    let s = crate::util::summary(&summary);
    assert_eq!(s["events"], 9062);
}

/// Issue 16 item 4: one value of 5e307 among 3,000 ordinary ones (and a spike of 3 at event
/// 2,600), with each score. Every record's error, residual, score and forecast is finite; the
/// event is flagged in its own record; the model learns it as a repeat of the previous value,
/// so every forecast and the mean loss equal those of the stream with that repeat in its
/// place; and the alarms after it are that stream's (the later spike, nothing else).
#[test]
fn r16_a_value_near_f64_max_is_flagged_and_everything_stays_finite() {
    let dir = TempDir::new("r16-max");
    let value = |t: usize| 10.0 + (t as f64 * 0.3).sin() + 0.1 * (t as f64 * 1.7).sin();
    let stream = |at_2000: f64| {
        let mut text = String::new();
        for t in 0..3000 {
            let x = match t {
                2000 => at_2000,
                2600 => value(t) + 3.0,
                _ => value(t),
            };
            text.push_str(&format!("{x}\n"));
        }
        text
    };
    let records_of = |kind: &str, name: &str, input: String| {
        let summary = dir.join(&format!("{kind}-{name}.json"));
        let mut cmd = tbptt(["learn", "--sync", "--output-format", "jsonl", "--anomaly"]);
        cmd.arg(kind).arg("--summary").arg(&summary);
        let done = run(cmd, Input::Bytes(input.into_bytes()));
        done.assert_code(0);
        let records: Vec<serde_json::Value> = done
            .stdout_str()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect();
        (records, crate::util::summary(&summary))
    };
    let alarms_after = |records: &[serde_json::Value]| -> Vec<u64> {
        records[2001..]
            .iter()
            .filter(|r| r["anomaly"] == true)
            .map(|r| r["index"].as_u64().unwrap())
            .collect()
    };
    for kind in ["likelihood", "zscore", "raw"] {
        let (hostile, summary) = records_of(kind, "hostile", stream(5e307));
        let (repeat, repeat_summary) = records_of(kind, "repeat", stream(value(1999)));
        assert_eq!(hostile.len(), 3000);
        let finite = |v: &serde_json::Value| v.as_f64().is_some_and(f64::is_finite);
        for r in &hostile[1..] {
            assert!(finite(&r["error"]) && finite(&r["score"]), "{kind}: {r}");
            for key in ["residual", "forecast"] {
                let all = r[key].as_array().unwrap();
                assert!(all.iter().all(finite), "{kind}: {r}");
            }
        }
        let event = &hostile[2000];
        assert_eq!(event["anomaly"], true, "{kind}: {event}");
        assert!(
            event["error"].as_f64().unwrap() >= 1e300,
            "{kind}: saturated, {event}"
        );
        for (h, r) in hostile.iter().zip(&repeat) {
            assert_eq!(h["forecast"], r["forecast"], "{kind}: learned as a repeat");
        }
        let later = alarms_after(&hostile);
        assert_eq!(later, alarms_after(&repeat), "{kind}: the alarms after it");
        assert!(
            later.first().is_some_and(|i| (2600..=2605).contains(i)),
            "{kind}: the later spike is flagged: {later:?}"
        );
        assert_eq!(summary["mean_loss"], repeat_summary["mean_loss"], "{kind}");
        for key in ["mean_loss", "mse_all", "naive_mse_all", "mse_last20"] {
            assert!(finite(&summary[key]), "{kind}: {key} in {summary}");
        }
    }
}

// ---- issue 16: a daemon that one peer cannot stall, stop or blind

use crate::util::{wait_until, Proc, TIMEOUT};
use std::io::{Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Starts `learn --sync --listen URL` with a summary file; returns the process and the
/// address it announced (once, at the default log level).
fn daemon(url: &str, dir: &TempDir, extra: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = tbptt([
        "learn",
        "--sync",
        "-o",
        "none",
        "--listen",
        url,
        "--summary",
    ]);
    cmd.arg(dir.join("s.json")).args(extra);
    let p = Proc::spawn(cmd, Input::Null);
    let scheme = if url.starts_with("udp://") {
        "udp"
    } else {
        "tcp"
    };
    let marker = format!("listening on {scheme}://");
    wait_until("the announced address", TIMEOUT, || {
        p.stderr().contains(&marker)
    });
    let err = p.stderr();
    let at = err.find(&marker).expect("announced") + marker.len();
    let addr = err[at..]
        .split_whitespace()
        .next()
        .expect("an address")
        .parse()
        .expect("IP:PORT");
    (p, addr)
}

fn finish(p: Proc, dir: &TempDir) -> (String, serde_json::Value) {
    p.sigterm();
    let done = p.finish(TIMEOUT);
    done.assert_code(0);
    (done.stderr, crate::util::summary(&dir.join("s.json")))
}

#[test]
fn r16_idle_peers_cannot_blind_the_daemon() {
    let dir = TempDir::new("idle-peers");
    // A bare IP:PORT is a TCP listener; port 0 is announced as the port chosen.
    let (p, addr) = daemon(
        "127.0.0.1:0",
        &dir,
        &[
            "--max-connections",
            "8",
            "--max-connections-per-peer",
            "64",
            "--idle-timeout",
            "0.5",
        ],
    );
    assert_ne!(addr.port(), 0);
    // 20 peers each send 9 bytes and then idle: 8 get a slot, 12 are refused (the 8 are
    // younger than the 1 s an idle connection must reach before it can be closed for one).
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(addr).expect("connect");
        let _ = c.write_all(b"1.0\n2.0\n3");
        idle.push(c);
    }
    // The idle timeout closes the 8.
    std::thread::sleep(Duration::from_millis(1200));
    let mut sender = TcpStream::connect(addr).expect("connect");
    let lines: String = (0..400).map(|i| format!("{}\n", signal(i))).collect();
    sender.write_all(lines.as_bytes()).expect("send");
    drop(sender);
    std::thread::sleep(Duration::from_millis(500));
    let (stderr, s) = finish(p, &dir);
    assert_eq!(s["events"], 8 * 2 + 400, "{s}");
    assert_eq!(s["refused_connections"], 12, "{s}");
    assert_eq!(s["timed_out_connections"], 8, "{s}");
    assert!(
        stderr.contains("12 refused, 0 closed for new ones, 8 timed out"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("listening on tcp://").count(), 1, "{stderr}");
    drop(idle);
}

#[test]
fn r16_refused_connections_are_logged_at_a_limited_rate() {
    let dir = TempDir::new("refused-log");
    let (p, addr) = daemon("tcp://127.0.0.1:0", &dir, &["--max-connections", "1"]);
    // One active sender holds the only slot (it never idles for 1 s).
    let mut holder = TcpStream::connect(addr).expect("connect");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = {
        let stop = std::sync::Arc::clone(&stop);
        let mut h = holder.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut t = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = h.write_all(format!("{}\n", signal(t)).as_bytes());
                t += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let n = 1500;
    for _ in 0..n {
        if let Ok(mut c) = TcpStream::connect(addr) {
            let mut buf = [0u8; 1];
            let _ = c.read(&mut buf); // closed at once
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    keeper.join().expect("keeper");
    let _ = holder.flush();
    let (stderr, s) = finish(p, &dir);
    assert_eq!(s["refused_connections"], n, "{s}");
    let lines = stderr.matches("refusing a connection").count();
    // The first 10, then every 1000th.
    assert_eq!(lines, 11, "{stderr}");
}

#[test]
fn r16_strict_with_a_listener_closes_only_the_bad_connection() {
    let dir = TempDir::new("strict-listener");
    let (p, addr) = daemon("tcp://127.0.0.1:0", &dir, &["--strict"]);
    let mut bad = TcpStream::connect(addr).expect("connect");
    bad.write_all(b"1.5\nnot-a-number\n2.5\n").expect("send");
    let mut buf = [0u8; 1];
    assert_eq!(bad.read(&mut buf).unwrap_or(0), 0, "the bad peer is closed");
    let mut good = TcpStream::connect(addr).expect("connect");
    let lines: String = (0..100).map(|i| format!("{}\n", signal(i))).collect();
    good.write_all(lines.as_bytes()).expect("send");
    drop(good);
    std::thread::sleep(Duration::from_millis(500));
    let (stderr, s) = finish(p, &dir);
    assert_eq!(s["ended_by"], "shutdown", "{s}");
    assert_eq!(s["events"], 101, "{s}");
    assert_eq!(s["rejected"], 1, "{s}");
    assert!(
        stderr.contains("closing connection (strict mode)") && stderr.contains("error=line 2"),
        "{stderr}"
    );

    // With UDP there is no connection to close: refused with a clear message.
    let mut cmd = tbptt(["learn", "--strict", "--listen", "udp://127.0.0.1:0"]);
    cmd.args(["-o", "none"]);
    let done = run(cmd, Input::Null);
    done.assert_code(2);
    assert!(
        done.stderr
            .contains("strict mode cannot apply to a udp:// listener"),
        "{}",
        done.stderr
    );
}

#[test]
fn r16_kernel_udp_drops_reach_the_summary() {
    let dir = TempDir::new("udp-drops");
    let (p, addr) = daemon("udp://127.0.0.1:0", &dir, &["--udp-recv-buffer", "4096"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sent = 30_000u64;
    for i in 0..sent {
        let _ = sock.send_to(format!("{}\n", signal(i as usize)).as_bytes(), addr);
    }
    std::thread::sleep(Duration::from_millis(500));
    let (stderr, s) = finish(p, &dir);
    let kernel = s["kernel_dropped_datagrams"].as_u64().expect("counted");
    let accounted = s["events"].as_u64().expect("events")
        + s["dropped_datagrams"].as_u64().expect("dropped")
        + s["rejected"].as_u64().expect("rejected")
        + kernel;
    eprintln!("{sent} datagrams sent: {s}");
    assert!(kernel > 0, "{s}");
    assert_eq!(accounted, sent, "{s}");
    assert!(stderr.contains("(kernel buffer full)"), "{stderr}");
}
