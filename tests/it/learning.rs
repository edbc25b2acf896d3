//! Learning tests: the learner must actually learn, and truncation must matter.

use tbptt::{CellKind, LearnerConfig, OptimizerConfig, Targets};

/// Deterministic noisy sum of three incommensurate sines (the PyTorch peer's stream, D = 1).
pub fn sines(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut gauss = move || {
        // Box-Muller from xorshift uniforms
        let mut u = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    };
    let tau = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|t| {
            let t = t as f64;
            (0.5 * (tau * t / 40.0).sin()
                + 0.3 * (tau * t / 13.7).sin()
                + 0.2 * (tau * t / 97.3).sin()
                + 0.05 * gauss()) as f32
        })
        .collect()
}

#[test]
fn learns_noisy_sines_better_than_repeating_the_last_value() {
    let xs = sines(20_000, 1);
    let mut learner = LearnerConfig::default().build::<f32>().unwrap();
    let from = xs.len() - xs.len() / 5;
    let (mut model_se, mut naive_se) = (0.0f64, 0.0f64);
    for (t, x) in xs.iter().enumerate() {
        let p = learner.step(&[*x]).unwrap();
        if t >= from {
            model_se += p.error.unwrap() as f64;
            naive_se += ((x - xs[t - 1]) as f64).powi(2);
        }
    }
    let ratio = model_se / naive_se;
    eprintln!("sines: model MSE / naive MSE over the last 20% = {ratio:.3}");
    assert!(
        ratio <= 0.5,
        "model MSE is {ratio:.3} of the naive forecast's"
    );
    // Updates after events n = 40, 48, ..., 20000 (1-based): the first with T = 32 full pairs.
    assert_eq!(learner.updates(), (20_000 - 40) / 8 + 1);
}

/// Online MSE over the last 20% of a stream whose target is the input `delay` steps earlier.
fn delayed_recall_mse(window: usize, delay: usize, events: usize) -> f64 {
    let config = LearnerConfig {
        cell: CellKind::Gru,
        d_hidden: 32,
        d_target: Some(1),
        targets: Targets::Explicit,
        trainer: tbptt::TrainerConfig {
            truncation: window.into(),
            every: 4,
            optimizer: OptimizerConfig::adam(3e-3),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = config.build::<f32>().unwrap();
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    let mut xs = Vec::with_capacity(events);
    let mut se = 0.0;
    let from = events - events / 5;
    for t in 0..events {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let x = if s & 1 == 1 { 1.0f32 } else { -1.0 };
        xs.push(x);
        let y = if t >= delay { xs[t - delay] } else { 0.0 };
        let p = learner.step_supervised(&[x], &[y]).unwrap();
        if t >= from {
            se += p.error.unwrap() as f64;
        }
    }
    se / (events - from) as f64
}

#[test]
fn delayed_recall_needs_a_window_longer_than_the_delay() {
    // Target = input 10 steps back, inputs ±1 (variance 1). Predicting 0 scores MSE 1.
    let short = delayed_recall_mse(4, 10, 60_000);
    let long = delayed_recall_mse(16, 10, 60_000);
    eprintln!("delayed recall, delay 10: MSE with T = 4: {short:.3}, with T = 16: {long:.3}");
    assert!(
        short > 0.8,
        "T = 4 should not learn a 10-step recall (MSE {short:.3})"
    );
    assert!(
        long < 0.3,
        "T = 16 should learn a 10-step recall (MSE {long:.3})"
    );
}

/// Runs a background-trainer learner over `xs`, sleeping `pause` after every 8th event (a
/// stream that arrives at a finite rate). Returns (updates, skipped, model MSE / naive MSE).
fn background_run(xs: &[f32], pause: std::time::Duration) -> (u64, u64, f64) {
    let mut learner = LearnerConfig::default().build::<f32>().unwrap();
    learner.spawn_trainer().unwrap();
    assert!(learner.is_background() && learner.trainer().is_none());
    let from = xs.len() - xs.len() / 5;
    let (mut model_se, mut naive_se) = (0.0f64, 0.0f64);
    for (t, x) in xs.iter().enumerate() {
        let p = learner.step(&[*x]).unwrap();
        assert!(p.update.is_none() && learner.forecast()[0].is_finite());
        if t >= from {
            model_se += p.error.unwrap() as f64;
            naive_se += ((x - xs[t - 1]) as f64).powi(2);
        }
        if (t + 1) % 8 == 0 && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    learner.join_trainer().unwrap();
    assert!(!learner.is_background());
    let due = (xs.len() as u64 - 40) / 8 + 1;
    let (updates, skipped) = (learner.updates(), learner.skipped_updates());
    assert_eq!(
        updates + skipped,
        due,
        "every due update is applied or counted as skipped"
    );
    // Back inline, the learner keeps training deterministically.
    for x in &xs[..80] {
        learner.step(&[*x]).unwrap();
    }
    assert_eq!(learner.updates(), updates + 10);
    (updates, skipped, model_se / naive_se)
}

#[test]
fn background_trainer_never_blocks_and_counts_skipped_updates() {
    // At full speed the trainer cannot keep up: updates are skipped, never waited for.
    let (updates, skipped, _) = background_run(&sines(8_000, 2), std::time::Duration::ZERO);
    eprintln!("background, unpaced: {updates} updates, {skipped} skipped");
    assert!(updates > 0);
}

#[test]
fn background_trainer_learns_a_paced_stream() {
    // Pace the stream slower than the trainer: measure what 8 events with one inline update
    // cost in this build on this (possibly busy) machine, and leave eight times that between
    // windows (the load may rise after the measurement, e.g. other tests in parallel).
    let xs = sines(16_000, 3);
    let mut probe = LearnerConfig::default().build::<f32>().unwrap();
    let started = std::time::Instant::now();
    for x in &xs[..2_000] {
        probe.step(&[*x]).unwrap();
    }
    let per_window = started.elapsed() / (probe.updates() as u32).max(1);
    let pause = (per_window * 8).max(std::time::Duration::from_micros(500));
    let (updates, skipped, ratio) = background_run(&xs, pause);
    eprintln!("background, paced ({pause:?} per window): {updates} updates, {skipped} skipped, MSE ratio {ratio:.3}");
    assert!(
        skipped * 10 < updates,
        "a paced stream should rarely skip ({skipped} of {})",
        updates + skipped
    );
    assert!(ratio <= 0.5, "background learner: {ratio:.3}");
}

/// `predict` then `learn` is `step`, bit for bit: the same errors, updates, forecasts and,
/// at the end, the same state (weights, optimizer, ring), for every cell and loss.
#[test]
fn predict_then_learn_equals_step() {
    use tbptt::{Loss, TrainerConfig};
    for cell in [CellKind::Elman, CellKind::Gru, CellKind::Lstm] {
        for loss in [Loss::Mse, Loss::Huber { delta: 0.3 }, Loss::CrossEntropy] {
            let d = if loss == Loss::CrossEntropy { 3 } else { 1 };
            let config = LearnerConfig {
                d_input: d,
                d_hidden: 8,
                cell,
                trainer: TrainerConfig {
                    truncation: 8.into(),
                    every: 4,
                    loss,
                    ..Default::default()
                },
                ..Default::default()
            };
            let mut split = config.build::<f64>().unwrap();
            let mut whole = config.build::<f64>().unwrap();
            let xs = sines(300, 7);
            for (t, &v) in xs.iter().enumerate() {
                let x: Vec<f64> = if d == 1 {
                    vec![v as f64]
                } else {
                    (0..d).map(|i| f64::from(u8::from(i == t % d))).collect()
                };
                let p = split.predict(&x).unwrap();
                let update = split.learn(&x).unwrap();
                let q = whole.step(&x).unwrap();
                let bits = |e: Option<f64>| e.map(f64::to_bits);
                assert_eq!(bits(p.error), bits(q.error), "{cell:?} {loss:?} event {t}");
                assert_eq!((p.index, update), (q.index, q.update), "{cell:?} {loss:?}");
                assert_eq!(split.forecast(), whole.forecast(), "{cell:?} {loss:?}");
            }
            assert!(whole.updates() > 50);
            assert_eq!(split.snapshot().unwrap(), whole.snapshot().unwrap());
        }
    }
}

/// `predict` alone changes nothing: the state after any number of predictions is the state
/// before, and a learner that skips an event (predicts it, does not learn it) goes on as if
/// the event had never come. With explicit targets there is no standing forecast to score.
#[test]
fn predict_alone_changes_no_state() {
    let xs = sines(200, 3);
    let mut learner = LearnerConfig::default().build::<f32>().unwrap();
    let mut twin = learner.clone();
    for (t, &x) in xs.iter().enumerate() {
        let before = learner.snapshot().unwrap();
        let p = learner.predict(&[x]).unwrap();
        let again = learner.predict(&[x]).unwrap();
        assert_eq!(p, again);
        let seen = learner.events();
        assert_eq!(
            (p.index, p.update, p.error.is_none()),
            (seen, None, seen == 0)
        );
        assert_eq!(learner.snapshot().unwrap(), before, "event {t}");
        if t != 120 {
            learner.learn(&[x]).unwrap();
            twin.step(&[x]).unwrap();
        }
    }
    assert_eq!(learner.snapshot().unwrap(), twin.snapshot().unwrap());
    assert!(learner.predict(&[f32::NAN]).is_err() && learner.predict(&[1.0, 2.0]).is_err());

    let ahead = LearnerConfig {
        d_input: 2,
        d_target: Some(1),
        targets: Targets::Ahead,
        ..Default::default()
    };
    let mut a = ahead.build::<f32>().unwrap();
    let mut b = ahead.build::<f32>().unwrap();
    for w in xs.windows(2) {
        let (x, realized) = ([w[1], w[1] - w[0]], [w[1] - w[0]]);
        let p = a.predict(&realized).unwrap();
        let q = b.step_ahead(&x, &realized).unwrap();
        a.step_ahead(&x, &realized).unwrap();
        assert_eq!(p.error.map(f32::to_bits), q.error.map(f32::to_bits));
    }
    let explicit = LearnerConfig {
        d_target: Some(1),
        targets: Targets::Explicit,
        ..Default::default()
    };
    let e = explicit
        .build::<f32>()
        .unwrap()
        .predict(&[0.5])
        .unwrap_err();
    assert!(e.to_string().contains("step_supervised"), "{e}");
}
