//! The anomaly likelihood on synthetic streams, and `tbptt nab` on a small bundled NAB tree.

use crate::util::{run, tbptt, Input, TempDir};
use std::path::{Path, PathBuf};
use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
use tbptt::event::Event;

/// Deterministic uniform noise in [-0.5, 0.5).
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

/// Events an alarm is delayed by, to report its episode's peak.
const CONFIRM: usize = 5;

/// The default pipeline's scores for `values`, one event every 5 minutes.
fn scores(values: &[f64]) -> Vec<f64> {
    let mut p = Pipeline::new(PipelineConfig::default()).unwrap();
    let mut ev = Event::new();
    values
        .iter()
        .enumerate()
        .map(|(t, v)| {
            ev.values.clear();
            ev.values.push(*v);
            ev.time = Some(1.4e9 + 300.0 * t as f64);
            p.process(&ev).unwrap().score
        })
        .collect()
}

/// A daily cycle with noise: 288 events a day.
fn daily(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|t| {
            let phase = t as f64 * std::f64::consts::TAU / 288.0;
            50.0 + 10.0 * phase.sin() + 2.0 * noise(&mut s)
        })
        .collect()
}

#[test]
fn the_confirmation_delay_is_the_default() {
    assert_eq!(
        tbptt::detect::anomaly::LikelihoodConfig::default().confirm,
        CONFIRM
    );
}

#[test]
fn stationary_noise_stays_below_half_at_least_99_percent_of_the_time() {
    for seed in [1u64, 2, 3] {
        let v = daily(6000, seed);
        let s = scores(&v);
        assert!(s.iter().all(|x| x.is_finite() && (0.0..=1.0).contains(x)));
        let high = s.iter().filter(|x| **x >= 0.5).count();
        eprintln!("seed {seed}: {high} of {} scores >= 0.5", s.len());
        assert!(high * 100 <= s.len(), "{high} of {} scores >= 0.5", s.len());
    }
}

#[test]
fn a_level_shift_scores_above_0_9_within_a_few_events() {
    let mut v = daily(5000, 7);
    for x in &mut v[4000..] {
        *x += 30.0;
    }
    let s = scores(&v);
    // An alarm is reported `confirm` events after its episode starts.
    let end = 4001 + CONFIRM;
    let best = s[4000..end].iter().fold(0.0f64, |a, b| a.max(*b));
    assert!(best > 0.9, "scores after the shift {:?}", &s[4000..end]);
    let before = s[3000..4000].iter().fold(0.0f64, |a, b| a.max(*b));
    assert!(before < 0.9, "before the shift {before}");
}

#[test]
fn a_spike_scores_above_0_9_on_its_own_event() {
    let mut v = daily(5000, 9);
    v[4321] += 60.0;
    let s = scores(&v);
    // Above the threshold at once: reported without waiting `CONFIRM` events.
    assert!(
        s[4321] > 0.9,
        "scores from the spike on {:?}",
        &s[4321..4330]
    );
    let alarms = s[4300..4400].iter().filter(|x| **x > 0.0).count();
    assert_eq!(alarms, 1, "one alarm for one spike: {:?}", &s[4300..4400]);
}

#[test]
fn scores_are_byte_identical_across_runs() {
    let mut v = daily(3000, 5);
    v[2500] -= 40.0;
    let a: Vec<u64> = scores(&v).iter().map(|x| x.to_bits()).collect();
    let b: Vec<u64> = scores(&v).iter().map(|x| x.to_bits()).collect();
    assert_eq!(a, b);
}

fn bundled() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab")
}

fn csv_files(dir: &Path) -> Vec<PathBuf> {
    tbptt::tools::nab::find_files(dir).unwrap()
}

#[test]
fn the_command_writes_one_result_file_per_input_with_as_many_rows() {
    let dir = TempDir::new("nab");
    let out = dir.join("results");
    run(
        tbptt([
            Path::new("nab"),
            &bundled(),
            &out,
            Path::new("--no-progress"),
        ]),
        Input::Null,
    )
    .assert_code(0);
    let inputs = csv_files(&bundled());
    assert_eq!(inputs.len(), 2);
    assert_eq!(csv_files(&out), inputs);
    for rel in &inputs {
        let data = std::fs::read_to_string(bundled().join(rel)).unwrap();
        let result = std::fs::read_to_string(out.join(rel)).unwrap();
        assert_eq!(result.lines().count(), data.lines().count(), "{rel:?}");
        assert_eq!(result.lines().next(), Some("timestamp,value,anomaly_score"));
        for (d, r) in data.lines().zip(result.lines()).skip(1) {
            let f: Vec<&str> = r.split(',').collect();
            assert!(d.starts_with(f[0]), "{d} vs {r}");
            let s: f64 = f[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&s), "{r}");
        }
    }
    // Deterministic: a second run, on one thread, writes the same bytes.
    let again = dir.join("again");
    run(
        tbptt([
            Path::new("nab"),
            &bundled(),
            &again,
            Path::new("-j1"),
            Path::new("-q"),
        ]),
        Input::Null,
    )
    .assert_code(0);
    for rel in &inputs {
        assert_eq!(
            std::fs::read(out.join(rel)).unwrap(),
            std::fs::read(again.join(rel)).unwrap()
        );
    }
}

#[test]
fn the_command_names_the_line_and_field_of_bad_data() {
    let dir = TempDir::new("nab-bad");
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("cat")).unwrap();
    std::fs::write(
        data.join("cat/x.csv"),
        "timestamp,value\n2014-04-01 00:00:00,1\n2014-04-01 00:05:00,oops\n",
    )
    .unwrap();
    let f = run(
        tbptt([Path::new("nab"), &data, &dir.join("out"), Path::new("-q")]),
        Input::Null,
    );
    f.assert_code(2);
    assert!(
        f.stderr
            .contains("line 3: value: \"oops\" is not a finite number"),
        "{}",
        f.stderr
    );
    let f = run(
        tbptt([Path::new("nab"), &dir.join("missing"), &dir.join("out")]),
        Input::Null,
    );
    f.assert_code(2);
}
