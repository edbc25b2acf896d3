//! Contextual anomalies: seasonal series with injected, labelled departures from the usual
//! pattern at that time of day, which stay inside the series' overall range.
//!
//! `cargo bench --bench contextual` prints, for each kind of anomaly and each source, the
//! share of injected anomalies detected (a flagged record whose episode began inside the
//! anomaly or within a quarter of a day after it), the mean delay from the anomaly's start to
//! that record, in events, and the false alarms (flagged records elsewhere after the first
//! week, or the first 30% of a bundled series) per 10,000 events, at the default threshold
//! (0.5) and at NAB's best (0.36).
//!
//! `-- --likelihood JSON` runs with likelihood settings other than the defaults (as the
//! command's `--likelihood`), e.g. `cargo bench --bench contextual -- --likelihood
//! '{"phase": 48}'`.
//!
//! Sources: synthetic series, one event every 5 minutes for 8 weeks, with a daily cycle, a
//! weekly one (weekends lower), unit noise and a slow drift (3 seeds); and the bundled hourly
//! `data/water_flow.csv`. Each run injects one anomaly, lasting a quarter of a day, at one of
//! two places, into a fresh pipeline with the default settings:
//! - **dip**: the value lowered by half the daily cycle's amplitude;
//! - **shift**: the values of 4 hours earlier (the cycle shifted by hours);
//! - **flatline**: the value held at the anomaly's first value;
//! - **burst**: the deviation from the usual value times 4 plus noise of 4 (a variance burst).

use std::f64::consts::PI;
use tbptt::detect::pipeline::{OutputRecord, Pipeline, PipelineConfig};
use tbptt::event::Event;

const KINDS: [&str; 4] = ["dip", "shift", "flatline", "burst"];
const THRESHOLDS: [f64; 2] = [0.5, 0.36];
/// The first event's time: Monday 2023-11-13 00:00 UTC, so that the synthetic weekends (days
/// 5 and 6 of each week) fall on Saturdays and Sundays.
const START: f64 = 1_699_833_600.0;

/// A seasonal series: its values, its events per day and the daily amplitude.
struct Source {
    name: String,
    values: Vec<f64>,
    step: f64,
    per_day: usize,
    amplitude: f64,
    /// Events before which alarms are not counted (warm-up).
    skip: usize,
}

/// xorshift64 and Box–Muller: unit Gaussian noise.
struct Gauss(u64);

impl Gauss {
    fn next(&mut self) -> f64 {
        let mut u = [0.0; 2];
        for v in &mut u {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *v = ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        }
        (-2.0 * u[0].ln()).sqrt() * (2.0 * PI * u[1]).cos()
    }
}

fn synthetic(seed: u64) -> Source {
    let (per_day, weeks) = (288, 8);
    let n = per_day * 7 * weeks;
    let mut g = Gauss(seed * 0x9E37_79B9 + 1);
    let values = (0..n)
        .map(|t| {
            let day = t / per_day;
            let phase = (t % per_day) as f64 / per_day as f64;
            let weekend = if day % 7 >= 5 { -15.0 } else { 0.0 };
            100.0 + 20.0 * (2.0 * PI * phase).sin() + weekend + 5.0 * t as f64 / n as f64 + g.next()
        })
        .collect();
    Source {
        name: format!("synthetic {seed}"),
        values,
        step: 300.0,
        per_day,
        amplitude: 20.0,
        skip: per_day * 7,
    }
}

fn bundled(file: &str, per_day: usize) -> Source {
    let path = format!("{}/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let values: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit(',').next()?.trim().parse().ok())
        .collect();
    // The daily amplitude: half the mean range of a day's values.
    let days: Vec<f64> = values
        .chunks(per_day)
        .filter(|d| d.len() == per_day)
        .map(|d| {
            let (lo, hi) = d
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
            (hi - lo) / 2.0
        })
        .collect();
    let amplitude = days.iter().sum::<f64>() / days.len().max(1) as f64;
    Source {
        name: file.into(),
        skip: values.len() * 3 / 10,
        values,
        step: 86_400.0 / per_day as f64,
        per_day,
        amplitude,
    }
}

/// The series with an anomaly of `kind` over `start .. start + len`.
fn inject(s: &Source, kind: &str, start: usize, len: usize, g: &mut Gauss) -> Vec<f64> {
    let mut v = s.values.clone();
    let lag = s.per_day / 6;
    let first = v[start];
    for t in start..(start + len).min(v.len()) {
        v[t] = match kind {
            "dip" => s.values[t] - 0.5 * s.amplitude,
            "shift" => s.values[t - lag],
            "flatline" => first,
            _ => {
                let usual = s.values[t - s.per_day];
                usual + 4.0 * (s.values[t] - usual) + 4.0 * g.next() * s.amplitude / 20.0
            }
        };
    }
    v
}

/// Flagged records of one run: (index, onset index) at each threshold.
fn run(s: &Source, values: &[f64], config: &PipelineConfig) -> Vec<(usize, usize, f64)> {
    let mut p = Pipeline::new(config.clone()).expect("valid settings");
    let mut ev = Event::new();
    let mut out = OutputRecord::default();
    let mut reports = Vec::new();
    for (t, x) in values.iter().enumerate() {
        ev.time = Some(START + s.step * t as f64);
        ev.values.clear();
        ev.values.push(*x);
        p.process_into(&ev, &mut out).expect("finite values");
        if let Some(onset) = out.onset_index {
            reports.push((t, onset as usize, out.score));
        }
    }
    reports
}

#[derive(Default, Clone, Copy)]
struct Tally {
    injected: usize,
    detected: usize,
    delay: usize,
    false_alarms: usize,
    events: usize,
}

/// The pipeline's settings: the defaults, or with `--likelihood JSON` from the arguments.
fn config() -> PipelineConfig {
    let mut config = PipelineConfig::default();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--likelihood") {
        let json = args.get(i + 1).expect("--likelihood needs a JSON object");
        config.anomaly.likelihood = serde_json::from_str(json).expect("likelihood settings");
    }
    config
}

fn main() {
    let config = config();
    let mut sources: Vec<Source> = (1..=3).map(synthetic).collect();
    sources.push(bundled("water_flow.csv", 24));
    println!("| source | kind | threshold | detected | mean delay (events) | false alarms / 10k events |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut all = [[Tally::default(); 2]; 4];
    for s in &sources {
        let len = s.per_day / 4;
        let n = s.values.len();
        let places = [s.skip + (n - s.skip) / 3, s.skip + 2 * (n - s.skip) / 3];
        for (k, kind) in KINDS.iter().enumerate() {
            let mut tally = [Tally::default(); 2];
            for (j, &start) in places.iter().enumerate() {
                let mut g = Gauss(7 + j as u64);
                let values = inject(s, kind, start, len, &mut g);
                let reports = run(s, &values, &config);
                let end = start + len + s.per_day / 4;
                for (i, thr) in THRESHOLDS.iter().enumerate() {
                    let flagged: Vec<_> = reports.iter().filter(|r| r.2 > *thr).collect();
                    let hit = flagged.iter().find(|r| (start..end).contains(&r.1));
                    let t = &mut tally[i];
                    t.injected += 1;
                    if let Some(r) = hit {
                        t.detected += 1;
                        t.delay += r.0 - start;
                    }
                    t.false_alarms += flagged
                        .iter()
                        .filter(|r| r.0 >= s.skip && !(start..end).contains(&r.1))
                        .count();
                    t.events += n - s.skip;
                }
            }
            for (i, t) in tally.iter().enumerate() {
                print_row(&s.name, kind, THRESHOLDS[i], t);
                let a = &mut all[k][i];
                a.injected += t.injected;
                a.detected += t.detected;
                a.delay += t.delay;
                a.false_alarms += t.false_alarms;
                a.events += t.events;
            }
        }
    }
    for (k, kind) in KINDS.iter().enumerate() {
        for (i, t) in all[k].iter().enumerate() {
            print_row("**all**", kind, THRESHOLDS[i], t);
        }
    }
}

fn print_row(source: &str, kind: &str, threshold: f64, t: &Tally) {
    let delay = if t.detected > 0 {
        format!("{:.1}", t.delay as f64 / t.detected as f64)
    } else {
        "–".into()
    };
    println!(
        "| {source} | {kind} | {threshold} | {}/{} | {delay} | {:.2} |",
        t.detected,
        t.injected,
        1e4 * t.false_alarms as f64 / t.events.max(1) as f64
    );
}
