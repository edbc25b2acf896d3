//! `tbptt sweep`, `--plot` and `learn --record` end to end (the real binary).

use crate::util::{self, tbptt, Input, Proc, TempDir, TIMEOUT};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Input ±1 (xorshift), target = the input `delay` steps earlier (0 before), as CSV `x,y`.
fn delayed_recall_csv(events: usize, delay: usize) -> String {
    let mut st: u64 = 0x2545_F491_4F6C_DD1D;
    let mut xs = Vec::with_capacity(events);
    let mut out = String::from("x,y\n");
    for t in 0..events {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        let x = if st & 1 == 1 { 1.0 } else { -1.0 };
        xs.push(x);
        let y = if t >= delay { xs[t - delay] } else { 0.0 };
        out.push_str(&format!("{x},{y}\n"));
    }
    out
}

fn sweep_json(args: &[&str]) -> Value {
    let mut all = vec!["sweep", "--json", "--no-progress"];
    all.extend_from_slice(args);
    let out = util::run(tbptt(&all), Input::Null);
    out.assert_code(0);
    serde_json::from_str(&out.stdout_str()).expect("sweep --json prints one JSON object")
}

fn window_of(run: &Value) -> Option<u64> {
    run["spec"]["window"]["fixed"].as_u64()
}

#[test]
fn sweep_recommends_a_window_at_least_the_dependency_length() {
    let dir = TempDir::new("sweep-delay");
    let path = dir.join("delay.csv");
    std::fs::write(&path, delayed_recall_csv(20_000, 10)).expect("write");
    let v = sweep_json(&[
        s(&path),
        "--columns",
        "x",
        "--target",
        "y",
        "-T",
        "4,8,16,32",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "16",
        "--lr",
        "0.01",
    ]);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 4);
    for r in runs {
        let t = window_of(r).expect("fixed T");
        let mse = r["mse"].as_f64().expect("mse");
        eprintln!("delay 10: T = {t}: MSE {mse:.3}");
        // ±1 inputs: predicting 0 scores 1; a window shorter than the delay cannot do better.
        if t < 10 {
            assert!(mse > 0.9, "T = {t} learned a 10-step recall: {mse}");
        }
    }
    let chosen = &runs[v["recommended"].as_u64().expect("recommended") as usize];
    let t = window_of(chosen).expect("fixed T");
    assert!(t >= 10, "recommended T = {t} < the dependency length 10");
    assert!(chosen["mse"].as_f64().unwrap() < 0.8, "{chosen}");
    assert_eq!(v["recommendation"], chosen["spec"]);
}

/// The fields of a sweep's JSON that do not depend on timing.
fn deterministic(v: &Value) -> Value {
    let mut v = v.clone();
    v["threads"] = Value::Null;
    for r in v["runs"].as_array_mut().expect("runs") {
        r["events_per_sec"] = Value::Null;
        r["wall_seconds"] = Value::Null;
    }
    v
}

#[test]
fn sweep_is_deterministic_and_its_json_describes_every_run() {
    let nile = util::data("nile.csv");
    let args = |threads: &'static str| {
        vec![
            s(&nile).to_owned(),
            "-T".into(),
            "4,8,full".into(),
            "-k".into(),
            "1,4,8".into(),
            "--cell".into(),
            "gru,lstm".into(),
            "--hidden".into(),
            "8".into(),
            "--season".into(),
            "10".into(),
            "--threads".into(),
            threads.into(),
        ]
    };
    let a1 = args("2");
    let a2 = args("1");
    let one = sweep_json(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    let two = sweep_json(&a2.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(deterministic(&one), deterministic(&two));
    assert_eq!(one["events"], 100);
    // T = 4 admits k = 1, 4; T = 8 and full admit 1, 4, 8: 8 runs per cell.
    let runs = one["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 16);
    for r in runs {
        // 99 events with a forecast; the last 20%: 19.
        assert_eq!(r["scored"], 19, "{r}");
        for f in ["mse", "mae", "naive_mse", "seasonal_mse", "madds_per_event"] {
            assert!(
                r[f].as_f64().is_some_and(|x| x.is_finite() && x > 0.0),
                "{f}: {r}"
            );
        }
        assert!(r["buffer_bytes"].as_u64().is_some_and(|b| b > 0));
    }
    // Full BPTT's work per update grows with the log: far above T = 8's.
    let work = |w: &Value, k: u64| {
        runs.iter()
            .find(|r| {
                r["spec"]["window"] == *w && r["spec"]["every"] == k && r["spec"]["cell"] == "gru"
            })
            .expect("run")["steps_per_update"]
            .as_f64()
            .expect("steps")
    };
    assert_eq!(work(&serde_json::json!({"fixed": 8}), 4), 8.0);
    assert!(work(&Value::from("full"), 4) > 40.0);
    // The recommendation is within the tolerance of the best.
    let best = runs[one["best"].as_u64().unwrap() as usize]["mse"]
        .as_f64()
        .unwrap();
    let chosen = runs[one["recommended"].as_u64().unwrap() as usize]["mse"]
        .as_f64()
        .unwrap();
    assert!(chosen <= best * 1.05);
}

#[test]
fn sweep_table_names_the_recommendation_and_bad_flags_exit_2() {
    let nile = util::data("nile.csv");
    let out = util::run(
        tbptt(
            [
                s(&nile),
                "-T",
                "4,full",
                "-k",
                "4",
                "--cell",
                "gru",
                "--hidden",
                "4",
            ]
            .iter()
            .fold(vec!["sweep"], |mut v, a| {
                v.push(a);
                v
            }),
        ),
        Input::Null,
    );
    out.assert_code(0);
    let text = out.stdout_str();
    for want in [
        "naive MSE",
        "<- recommended",
        "recommended: gru H=4",
        "T = full",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    for (args, want) in [
        (vec!["-T", "0"], "-T"),
        (vec!["-T", "4,x"], "\"x\""),
        (vec!["-T", "4", "-k", "8"], "k > T"),
        (vec!["--cell", "rnn2"], "--cell"),
        (vec!["--tolerance=-1"], "--tolerance"),
    ] {
        let mut all = vec!["sweep", s(&nile)];
        all.extend(args);
        let out = util::run(tbptt(&all), Input::Null);
        out.assert_code(2);
        assert!(out.stderr.contains(want), "{want:?} not in {}", out.stderr);
    }
    // A bad record is reported with its line and skipped, or stops the sweep with --strict.
    let dir = TempDir::new("sweep-bad");
    let path = dir.join("bad.csv");
    let mut text = String::from("v\n");
    for i in 0..40 {
        text.push_str(&format!("{}\n", (i as f64 * 0.3).sin()));
    }
    text.push_str("oops\n1.0\n");
    std::fs::write(&path, text).expect("write");
    let base = [
        "sweep",
        s(&path),
        "-T",
        "4",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "4",
    ];
    let out = util::run(tbptt(base), Input::Null);
    out.assert_code(0);
    assert!(out.stderr.contains("line 42"), "{}", out.stderr);
    assert!(
        out.stdout_str().contains("41 events (1 rejected)"),
        "{}",
        out.stdout_str()
    );
    let mut strict = base.to_vec();
    strict.push("--strict");
    let out = util::run(tbptt(strict), Input::Null);
    out.assert_code(2);
    assert!(out.stderr.contains("line 42"), "{}", out.stderr);
}

/// The texts and the polylines (stroke colour, number of points) of an SVG file, which must
/// parse as XML with an `svg` root.
fn svg(path: &Path) -> (Vec<String>, Vec<(String, usize)>) {
    let text = std::fs::read_to_string(path).expect("read svg");
    let doc = roxmltree::Document::parse(&text).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").trim().to_owned())
        .collect();
    let lines = doc
        .descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .map(|n| {
            let pts = n
                .attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count();
            (n.attribute("stroke").unwrap_or("").to_owned(), pts)
        })
        .collect();
    (texts, lines)
}

/// Filled polygons (markers) of `colour` in an SVG file.
fn polygons(path: &Path, colour: &str) -> usize {
    let text = std::fs::read_to_string(path).expect("read svg");
    let doc = roxmltree::Document::parse(&text).expect("valid XML");
    doc.descendants()
        .filter(|n| n.has_tag_name("polygon") && n.attribute("fill") == Some(colour))
        .count()
}

/// Polylines of `colour` with exactly `points` points.
fn count(lines: &[(String, usize)], colour: &str, points: usize) -> usize {
    lines
        .iter()
        .filter(|(c, n)| c == colour && *n == points)
        .count()
}

const BLUE: &str = "#0000FF";
const RED: &str = "#FF0000";
const BLACK: &str = "#000000";

#[test]
fn sweep_plots_are_svg_with_one_line_per_k_and_the_best_forecast() {
    let dir = TempDir::new("sweep-plot");
    let plots = dir.join("plots");
    let nile = util::data("nile.csv");
    sweep_json(&[
        s(&nile),
        "-T",
        "4,8,16,auto,full",
        "-k",
        "1,4",
        "--cell",
        "gru",
        "--hidden",
        "8",
        "--t-min",
        "6",
        "--plot",
        s(&plots),
    ]);
    for name in ["error_vs_t.svg", "cost_vs_t.svg"] {
        let (texts, lines) = svg(&plots.join(name));
        // k = 1 (blue) and k = 4 (red) over the four T values, plus a legend sample each;
        // the auto runs are not on the lines but triangles (one per k, one in the legend).
        assert_eq!(count(&lines, BLUE, 4), 1, "{name}: {lines:?}");
        assert_eq!(count(&lines, RED, 4), 1, "{name}: {lines:?}");
        assert_eq!(count(&lines, BLUE, 2) + count(&lines, RED, 2), 2, "{name}");
        assert_eq!(polygons(&plots.join(name), BLUE), 1, "{name}");
        assert_eq!(polygons(&plots.join(name), RED), 1, "{name}");
        assert_eq!(polygons(&plots.join(name), BLACK), 1, "{name}");
        assert!(!texts.iter().any(|t| t == "auto"), "auto is not a category");
        for want in [
            "k = 1",
            "k = 4",
            "4",
            "16",
            "full",
            "T (window length)",
            "auto (at its mean T)",
        ] {
            assert!(
                texts.iter().any(|t| t == want),
                "{name}: {want:?} not in {texts:?}"
            );
        }
    }
    let (texts, lines) = svg(&plots.join("forecast.svg"));
    // 100 events, 99 forecasts: actual (black), forecast (blue), score (red).
    for colour in [BLACK, BLUE, RED] {
        assert_eq!(count(&lines, colour, 99), 1, "{colour}: {lines:?}");
    }
    for want in ["actual", "forecast", "anomaly score"] {
        assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.starts_with("best: gru H=8")),
        "{texts:?}"
    );
}

#[test]
fn replay_plot_draws_one_run_and_decimates_long_ones() {
    let dir = TempDir::new("replay-plot");
    let out = util::run(
        tbptt([
            "replay",
            s(&util::data("nile.csv")),
            "-o",
            "none",
            "-q",
            "--plot",
            s(&dir.join("nile.svg")),
        ]),
        Input::Null,
    );
    out.assert_code(0);
    let (texts, lines) = svg(&dir.join("nile.svg"));
    assert_eq!(count(&lines, BLACK, 99), 1);
    assert!(texts.iter().any(|t| t == "forecast"));
    // 25,000 events: past the 20,000-point cap every other one is kept.
    let mut input = String::from("v\n");
    for i in 0..25_000 {
        input.push_str(&format!("{}\n", (i as f64 * 0.1).sin()));
    }
    let out = util::run(
        tbptt([
            "learn",
            "--sync",
            "-o",
            "none",
            "-q",
            "--hidden",
            "4",
            "--plot",
            s(&dir.join("long.svg")),
        ]),
        Input::Bytes(input.into_bytes()),
    );
    out.assert_code(0);
    let (texts, lines) = svg(&dir.join("long.svg"));
    assert_eq!(
        count(&lines, BLUE, 12_500),
        1,
        "{:?}",
        lines.iter().map(|l| l.1).max()
    );
    assert!(
        texts.iter().any(|t| t.contains("(1 in 2 events shown)")),
        "{texts:?}"
    );
}

#[test]
fn a_recorded_tcp_stream_replays_to_the_same_output() {
    let dir = TempDir::new("record");
    let (live, rec, replayed) = (
        dir.join("live.csv"),
        dir.join("rec.jsonl"),
        dir.join("replay.csv"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], util::free_tcp_port()));
    let mut p = Proc::spawn(
        tbptt([
            "learn",
            "--sync",
            "--listen",
            &format!("tcp://{addr}"),
            "--time",
            "ts",
            "--key",
            "host",
            "--hidden",
            "8",
            "-T",
            "8",
            "-k",
            "2",
            "--record",
            s(&rec),
            "-o",
            s(&live),
            "-q",
        ]),
        Input::Null,
    );
    let mut a = util::connect_tcp(addr, &mut p, TIMEOUT);
    let mut b = util::connect_tcp(addr, &mut p, TIMEOUT);
    a.write_all(b"ts,host,cpu,mem\n").expect("write");
    b.write_all(b"ts,host,cpu,mem\n").expect("write");
    let n = 40;
    for i in 0..n {
        let t = 1_700_000_000 + i;
        a.write_all(format!("{t},a,{},{}\n", (i as f64 * 0.37).sin(), 0.1 * i as f64).as_bytes())
            .expect("write a");
        // A bad line is rejected live and so never recorded.
        if i == 5 {
            b.write_all(b"x,b,nope,1\n").expect("write b");
        }
        b.write_all(format!("{t}.5,b,{},1e-3\n", 1.0 / (i as f64 + 3.0)).as_bytes())
            .expect("write b");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop((a, b));
    util::wait_until("records", TIMEOUT, || {
        util::file_lines(&live) > 2 * n as usize
    });
    p.sigterm();
    p.finish(TIMEOUT).assert_code(0);
    assert_eq!(util::file_lines(&rec), 2 * n as usize);
    // Each recorded line carries an arrival time near now, in order within each connection
    // (two connections are read concurrently, so their lines may interleave either way).
    let text = std::fs::read_to_string(&rec).expect("read recording");
    let lines: Vec<(String, f64)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON line");
            let key = v["key"].as_str().expect("key").to_owned();
            (key, v["arrival"].as_f64().expect("arrival"))
        })
        .collect();
    for key in ["a", "b"] {
        let at: Vec<f64> = lines.iter().filter(|l| l.0 == key).map(|l| l.1).collect();
        assert_eq!(at.len(), n as usize, "{key}");
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "{key}: {at:?}");
    }
    let arrivals: Vec<f64> = lines.iter().map(|l| l.1).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    assert!(
        (now - arrivals[0]).abs() < 120.0,
        "{} vs {now}",
        arrivals[0]
    );
    let out = util::run(
        tbptt([
            "replay",
            s(&rec),
            "--format",
            "jsonl",
            "--hidden",
            "8",
            "-T",
            "8",
            "-k",
            "2",
            "-o",
            s(&replayed),
            "-q",
        ]),
        Input::Null,
    );
    out.assert_code(0);
    let (l, r) = (
        std::fs::read_to_string(&live).expect("live"),
        std::fs::read_to_string(&replayed).expect("replayed"),
    );
    assert_eq!(l.lines().count(), 2 * n as usize + 1);
    assert_eq!(l, r, "replaying the recording gives the live run's output");
    // The sweep reads the recording too.
    let v = sweep_json(&[
        s(&rec),
        "--format",
        "jsonl",
        "-T",
        "4",
        "-k",
        "2",
        "--cell",
        "gru",
        "--hidden",
        "4",
    ]);
    assert_eq!(v["events"], 2 * n);
}

/// `auto` on the `T` axis: on the 10-step recall it settles above the dependency length and
/// learns what `T = 4` cannot; the table and the JSON report the `T` it used.
#[test]
fn sweep_auto_row_reports_the_t_it_chose_and_beats_a_short_window() {
    let dir = TempDir::new("sweep-auto");
    let path = dir.join("delay.csv");
    std::fs::write(&path, delayed_recall_csv(20_000, 10)).expect("write");
    let args = [
        s(&path),
        "--columns",
        "x",
        "--target",
        "y",
        "-T",
        "4,auto",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "16",
        "--lr",
        "0.01",
        "--t-min",
        "8",
        "--t-max",
        "64",
    ];
    let v = sweep_json(&args);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    let t4 = runs
        .iter()
        .find(|r| window_of(r) == Some(4))
        .expect("T = 4 run");
    let auto = runs
        .iter()
        .find(|r| r["spec"]["window"] == "auto")
        .expect("auto run");
    assert!(t4["truncation"].is_null(), "{t4}");
    let rep = &auto["truncation"];
    let mean = rep["mean"].as_f64().expect("truncation.mean");
    let (min, max) = (rep["min"].as_u64().unwrap(), rep["max"].as_u64().unwrap());
    eprintln!("auto: {rep}");
    assert_eq!(rep["adaptive"], true);
    assert!(
        mean >= 10.0,
        "auto settled below the dependency length: {rep}"
    );
    assert!(
        8 <= min && min as f64 <= mean && mean <= max as f64 && max <= 64,
        "{rep}"
    );
    assert!(
        rep["beta"].as_f64().is_some_and(|b| b > 0.0 && b < 1.0),
        "{rep}"
    );
    assert!(rep["updates"].as_u64().is_some_and(|u| u > 4000), "{rep}");
    // Cost from the mean T used; memory at --t-max.
    assert_eq!(auto["steps_per_update"].as_f64().unwrap(), mean);
    let per_step = t4["madds_per_update"].as_f64().unwrap() / 4.0;
    let madds = auto["madds_per_update"].as_f64().unwrap();
    assert!((madds - mean * per_step).abs() < 1e-6 * madds, "{auto}");
    assert!(auto["buffer_bytes"].as_u64() > t4["buffer_bytes"].as_u64());
    let (m4, ma) = (t4["mse"].as_f64().unwrap(), auto["mse"].as_f64().unwrap());
    assert!(m4 > 0.9, "T = 4 learned a 10-step recall: {m4}");
    assert!(ma < 0.75 * m4, "auto MSE {ma} not well below T = 4's {m4}");

    // The table: the auto row with the T it used, and the note on its cost and memory.
    let mut all = vec!["sweep", "--no-progress"];
    all.extend_from_slice(&args);
    let out = util::run(tbptt(&all), Input::Null);
    out.assert_code(0);
    let text = out.stdout_str();
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("auto"))
        .unwrap_or_else(|| panic!("no auto row:\n{text}"));
    let used = format!("{mean:.1} ({min}-{max})");
    assert!(row.contains(&used), "{used:?} not in {row:?}");
    assert!(text.contains("T used"), "{text}");
    assert!(text.contains("computed from the mean T used"), "{text}");
}

#[test]
fn sweep_auto_settings_are_checked_and_name_the_flag() {
    let nile = util::data("nile.csv");
    for (args, want) in [
        (vec!["-T", "8,auto", "-k", "4", "--t-min", "2"], "--t-min"),
        (vec!["-T", "auto", "-k", "8", "--t-min", "9"], "--t-min"),
        (
            vec!["-T", "auto", "--t-min", "32", "--t-max", "16"],
            "--t-min",
        ),
        (vec!["-T", "auto", "--t-max", "0"], "--t-max"),
        (vec!["-T", "auto", "--t-tolerance", "1.5"], "--t-tolerance"),
        (vec!["-T", "8,16", "--t-min", "8"], "need auto in -T"),
        (vec!["-T", "8,autox"], "\"autox\""),
    ] {
        let mut all = vec!["sweep", s(&nile), "--cell", "gru", "--hidden", "4"];
        all.extend(args.iter().copied());
        let out = util::run(tbptt(&all), Input::Null);
        out.assert_code(2);
        assert!(
            out.stderr.contains(want),
            "{args:?}: {want:?} not in {}",
            out.stderr
        );
    }
}

/// Issue 19, item 5: on a log longer than 2,048 events the sweep scores exactly the window
/// of replay's summary (before, it counted the last 20% itself: 806 events where replay's
/// trail, in blocks of 2, holds 807, and the MSEs differed), and both report the MSE over
/// all events.
#[test]
fn r19_sweep_mse_is_replays_summary_mse_on_a_long_log() {
    let log = util::data("nab_ec2_cpu_utilization_24ae8d.csv");
    let settings = ["-T", "8", "-k", "4", "--cell", "gru", "--hidden", "8"];
    let mut args = vec![s(&log)];
    args.extend(settings);
    let v = sweep_json(&args);
    assert_eq!(v["events"], 4032);
    let run = &v["runs"][0];
    let dir = TempDir::new("sweep-vs-replay");
    let summary = dir.join("summary.json");
    let mut replay = vec![
        "replay",
        s(&log),
        "-o",
        "none",
        "-q",
        "--summary",
        s(&summary),
    ];
    replay.extend(settings);
    util::run(tbptt(&replay), Input::Null).assert_code(0);
    let sum = util::summary(&summary);
    // 4,031 events with a forecast, 806 of them a fifth, in the trail's blocks of 2: 807.
    assert_eq!(run["scored"], 807, "{run}");
    assert_eq!(v["scored"], 807);
    for (sweep, replay) in [
        ("mse", "mse_last20"),
        ("naive_mse", "naive_mse_last20"),
        ("mse_all", "mse_all"),
        ("naive_mse_all", "naive_mse_all"),
    ] {
        let (a, b) = (run[sweep].as_f64(), sum[replay].as_f64());
        assert!(a.is_some_and(|x| x > 0.0), "{sweep}: {run}");
        assert_eq!(a, b, "sweep {sweep} vs replay {replay}");
    }
    assert_eq!(v["baselines"]["naive_mse"], run["naive_mse"]);
    assert_eq!(v["baselines"]["naive_mse_all"], run["naive_mse_all"]);
    // Over all events is a different figure from the last 20%.
    assert_ne!(run["mse_all"], run["mse"]);
}

/// Issue 19, item 5: `full` stays in the table as the reference but is never recommended,
/// and the recommendation's flags are ones `replay` accepts. A full run past `--full-max`
/// events is run on the first ones and says so.
#[test]
fn r19_the_recommendation_replays_and_full_is_only_a_reference() {
    let nile = util::data("nile.csv");
    let grid = [
        "-T", "4,8,full", "-k", "1,4,8", "--cell", "gru", "--hidden", "8",
    ];
    let mut args = vec![s(&nile)];
    args.extend(grid);
    let v = sweep_json(&args);
    let runs = v["runs"].as_array().expect("runs");
    let chosen = &runs[v["recommended"].as_u64().expect("recommended") as usize];
    assert_ne!(chosen["spec"]["window"], "full", "{chosen}");
    let best_truncated = &runs[v["best_truncated"].as_u64().expect("best_truncated") as usize];
    assert_ne!(best_truncated["spec"]["window"], "full");
    let flags = v["replay_flags"].as_str().expect("replay_flags");
    assert!(flags.starts_with("-T "), "{flags}");
    let mut replay = vec!["replay", s(&nile), "-o", "none", "-q"];
    replay.extend(flags.split_whitespace());
    util::run(tbptt(&replay), Input::Null).assert_code(0);
    // With --full-max 50, full sees 50 of the 100 events and is scored on 9 of them.
    args.extend(["--full-max", "50"]);
    let v = sweep_json(&args);
    assert_eq!(v["full_max"], 50);
    for r in v["runs"].as_array().expect("runs") {
        let full = r["spec"]["window"] == "full";
        assert_eq!(r["events"], if full { 50 } else { 100 }, "{r}");
        assert_eq!(r["scored"], if full { 9 } else { 19 }, "{r}");
    }
    let best = &v["runs"][v["best"].as_u64().expect("best") as usize];
    assert_ne!(best["spec"]["window"], "full");
    let mut table = vec!["sweep", "--no-progress"];
    table.extend(&args);
    let out = util::run(tbptt(&table), Input::Null);
    out.assert_code(0);
    let text = out.stdout_str();
    for want in [
        "T = full*: ran on the first 50 events only (--full-max",
        "full*",
        "replay it:   tbptt replay",
        "MSE all",
        "never recommended",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    let out = util::run(tbptt(["sweep", s(&nile), "--full-max", "5"]), Input::Null);
    out.assert_code(2);
    assert!(out.stderr.contains("--full-max"), "{}", out.stderr);
}

/// A level that holds and jumps by ±1 at random times (about 1 event in 20): repeating the
/// last value is right except at the jumps, which nothing can foresee.
fn random_steps_csv(events: usize) -> String {
    let mut st: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut level = 0.0;
    let mut out = String::from("v\n");
    for _ in 0..events {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        if st.is_multiple_of(20) {
            level += if st & 32 == 0 { 1.0 } else { -1.0 };
        }
        out.push_str(&format!("{level}\n"));
    }
    out
}

/// Issue 19, item 5: when even the best run forecasts worse than naive, the table and the
/// JSON say so.
#[test]
fn r19_sweep_warns_when_its_best_is_worse_than_naive() {
    let dir = TempDir::new("sweep-naive");
    let path = dir.join("steps.csv");
    std::fs::write(&path, random_steps_csv(1500)).expect("write");
    // The network alone, predicting the level: the default combination with naive ends within
    // a fraction of a percent of naive on random steps, on either side.
    let args = [
        s(&path),
        "-T",
        "4,8",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "4",
        "--forecast",
        r#"{"target": "level", "combine": false, "season": false}"#,
    ];
    let v = sweep_json(&args);
    for r in v["runs"].as_array().expect("runs") {
        let (m, n) = (r["mse"].as_f64().unwrap(), r["naive_mse"].as_f64().unwrap());
        assert!(m > n, "a run beat naive on random steps: {m} vs {n}");
    }
    assert_eq!(v["worse_than_naive"], true);
    let w = v["warning"].as_str().expect("warning");
    assert!(w.contains("worse than naive"), "{w}");
    let mut all = vec!["sweep", "--no-progress"];
    all.extend(args);
    let out = util::run(tbptt(&all), Input::Null);
    out.assert_code(0);
    let text = out.stdout_str();
    assert!(
        text.contains("warning:     every configuration forecasts worse than naive"),
        "{text}"
    );
    // On a series it learns, no warning.
    let nile = util::data("nile.csv");
    let v = sweep_json(&[
        s(&nile),
        "-T",
        "8",
        "-k",
        "4",
        "--cell",
        "gru",
        "--hidden",
        "8",
    ]);
    assert_eq!(v["worse_than_naive"], false);
    assert!(v["warning"].is_null(), "{}", v["warning"]);
}
