//! Adaptive truncation (`-T auto`): the window follows the dependency length of the stream.

use tbptt::truncation::{AutoTruncation, Truncation};
use tbptt::{CellKind, Learner, LearnerConfig, OptimizerConfig, Targets};

/// Xorshift64 uniforms in `[-1, 1)`.
fn noise(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn auto_config(min: usize, max: usize) -> LearnerConfig {
    let mut c = LearnerConfig {
        cell: CellKind::Gru,
        d_hidden: 32,
        d_target: Some(1),
        targets: Targets::Explicit,
        every: 4,
        optimizer: OptimizerConfig::adam(3e-3),
        ..Default::default()
    };
    c.set_truncation(Truncation::Auto(AutoTruncation {
        min,
        max,
        ..Default::default()
    }));
    c
}

/// Feeds `events` events with target = input `delay` steps earlier (`delay = None`: an
/// independent noise target). Returns the learner, the online MSE over the last 20% and the
/// `T` of every update.
fn run(config: &LearnerConfig, delay: Option<usize>, events: usize) -> (Learner, f64, Vec<usize>) {
    let mut learner = config.build::<f32>().unwrap();
    let mut x = noise(7);
    let mut other = noise(11);
    let mut xs = Vec::with_capacity(events);
    let (mut se, from) = (0.0, events - events / 5);
    let mut ts = Vec::new();
    for t in 0..events {
        let v = x();
        xs.push(v);
        let y = match delay {
            Some(d) if t >= d => xs[t - d],
            Some(_) => 0.0,
            None => other(),
        };
        let used = learner.window_len();
        let p = learner.step_supervised(&[v], &[y]).unwrap();
        if p.update.is_some() {
            ts.push(used);
        }
        if t >= from {
            se += p.error.unwrap() as f64;
        }
    }
    (learner, se / (events - from) as f64, ts)
}

fn mean(v: &[usize]) -> f64 {
    v.iter().sum::<usize>() as f64 / v.len() as f64
}

#[test]
fn auto_truncation_settles_above_the_dependency_length() {
    let c = auto_config(8, 64);
    let (learner, mse, ts) = run(&c, Some(10), 40_000);
    let late = &ts[ts.len() * 3 / 4..];
    let r = learner.truncation();
    eprintln!(
        "delay 10: MSE {mse:.3}; T over the last quarter: mean {:.1}, min {}, max {}; {r}",
        mean(late),
        late.iter().min().unwrap(),
        late.iter().max().unwrap()
    );
    let (noise_learner, noise_mse, noise_ts) = run(&c, None, 40_000);
    let noise_late = &noise_ts[noise_ts.len() * 3 / 4..];
    eprintln!(
        "white noise: MSE {noise_mse:.3}; T over the last quarter: mean {:.1}, min {}, max {}; {}",
        mean(noise_late),
        noise_late.iter().min().unwrap(),
        noise_late.iter().max().unwrap(),
        noise_learner.truncation()
    );
}
