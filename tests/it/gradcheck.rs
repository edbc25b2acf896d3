//! Finite-difference gradient checks (f64) for every cell, 1 and 2 layers, every loss; and
//! TBPTT with a window covering the whole sequence against full BPTT.

use crate::util::rel_err;
use tbptt::{
    full_bptt, CellKind, Learner, LearnerConfig, Loss, LossSteps, Model, ModelConfig,
    OptimizerConfig, ParamName, Targets, Window,
};

const CELLS: [CellKind; 3] = [CellKind::Elman, CellKind::Gru, CellKind::Lstm];

/// Deterministic pseudo-random values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    model: Model<f64>,
    x: Vec<f64>,
    y: Vec<f64>,
    start: Vec<f64>,
    n: usize,
    loss: Loss,
    loss_steps: usize,
}

fn case(cell: CellKind, layers: usize, loss: Loss, seed: u64) -> Case {
    let (d, h, n) = (2, 3, 6);
    let d_out = if loss == Loss::CrossEntropy { 3 } else { 2 };
    let config = ModelConfig {
        cell,
        d_input: d,
        d_hidden: h,
        layers,
        d_output: d_out,
    };
    let mut model = Model::<f64>::new(config, seed).unwrap();
    // Larger weights than the default init, so every nonlinearity is exercised.
    for (p, r) in model
        .params_mut()
        .iter_mut()
        .zip(noise(config.n_params(), seed + 1))
    {
        *p = 0.8 * r;
    }
    let x = noise(d * n, seed + 2);
    let y = if loss == Loss::CrossEntropy {
        // one-hot class targets
        (0..n)
            .flat_map(|t| (0..d_out).map(move |c| if (t * 7 + 1) % d_out == c { 1.0 } else { 0.0 }))
            .collect()
    } else {
        noise(d_out * n, seed + 3).iter().map(|v| 1.5 * v).collect()
    };
    let start = noise(config.state_len(), seed + 4)
        .iter()
        .map(|v| 0.5 * v)
        .collect();
    Case {
        model,
        x,
        y,
        start,
        n,
        loss,
        loss_steps: n - 2,
    }
}

fn loss_of(c: &Case, model: &Model<f64>, start: &[f64]) -> f64 {
    let mut w = Window::new(model.config(), c.n).unwrap();
    w.inputs_mut()[..c.x.len()].copy_from_slice(&c.x);
    w.targets_mut()[..c.y.len()].copy_from_slice(&c.y);
    w.forward_backward(model, start, c.n, c.loss, c.loss_steps)
        .unwrap()
}

fn check(c: &Case, label: &str) -> f64 {
    let mut w = Window::new(c.model.config(), c.n).unwrap();
    w.inputs_mut().copy_from_slice(&c.x);
    w.targets_mut().copy_from_slice(&c.y);
    w.forward_backward(&c.model, &c.start, c.n, c.loss, c.loss_steps)
        .unwrap();
    let analytic = w.grads().to_vec();
    let mut sg = vec![0.0; c.start.len()];
    w.start_grad_to(&mut sg).unwrap();
    let eps = 1e-6;
    let mut numeric = vec![0.0; analytic.len()];
    let mut m = c.model.clone();
    for (i, num) in numeric.iter_mut().enumerate() {
        let p0 = m.params()[i];
        m.params_mut()[i] = p0 + eps;
        let lp = loss_of(c, &m, &c.start);
        m.params_mut()[i] = p0 - eps;
        let lm = loss_of(c, &m, &c.start);
        m.params_mut()[i] = p0;
        *num = (lp - lm) / (2.0 * eps);
    }
    let mut worst = 0.0f64;
    let layers = c.model.config().layers;
    let mut names = vec![ParamName::W, ParamName::B];
    for l in 0..layers {
        names.extend([
            ParamName::WeightIh(l),
            ParamName::WeightHh(l),
            ParamName::BiasIh(l),
            ParamName::BiasHh(l),
        ]);
    }
    for name in names {
        let a = c.model.grad_of(&analytic, name).unwrap();
        let b = c.model.grad_of(&numeric, name).unwrap();
        assert!(
            b.iter().any(|v| v.abs() > 1e-6),
            "{label} {name:?}: gradient is all zero"
        );
        let e = rel_err(&a, &b);
        assert!(e < 1e-6, "{label} {name:?}: relative error {e:.3e}");
        worst = worst.max(e);
    }
    let mut num_s = vec![0.0; c.start.len()];
    let mut s = c.start.clone();
    for i in 0..s.len() {
        let s0 = s[i];
        s[i] = s0 + eps;
        let lp = loss_of(c, &c.model, &s);
        s[i] = s0 - eps;
        let lm = loss_of(c, &c.model, &s);
        s[i] = s0;
        num_s[i] = (lp - lm) / (2.0 * eps);
    }
    let e = rel_err(&sg, &num_s);
    assert!(e < 1e-6, "{label} start state: relative error {e:.3e}");
    worst.max(e)
}

#[test]
fn finite_differences_every_cell_layer_count_and_loss() {
    let losses = [Loss::Mse, Loss::Huber { delta: 0.5 }, Loss::CrossEntropy];
    let mut checked = 0;
    for cell in CELLS {
        for layers in [1, 2] {
            for (i, loss) in losses.iter().enumerate() {
                let c = case(cell, layers, *loss, 10 * i as u64 + layers as u64);
                let label = format!("{cell} layers={layers} {loss}");
                let worst = check(&c, &label);
                eprintln!("{label}: worst relative error {worst:.2e}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 18);
}

#[test]
fn huber_case_exercises_both_branches() {
    // The Huber check above is only meaningful if residuals fall on both sides of delta.
    let c = case(CellKind::Gru, 1, Loss::Huber { delta: 0.5 }, 11);
    let mut w = Window::new(c.model.config(), c.n).unwrap();
    w.inputs_mut().copy_from_slice(&c.x);
    w.targets_mut().copy_from_slice(&c.y);
    w.forward_backward(&c.model, &c.start, c.n, c.loss, c.loss_steps)
        .unwrap();
    let y = &c.y[(c.n - c.loss_steps) * 2..];
    let r: Vec<f64> = w
        .predictions()
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t).abs())
        .collect();
    assert!(
        r.iter().any(|v| *v < 0.5) && r.iter().any(|v| *v > 0.5),
        "{r:?}"
    );
}

/// Gradient of the first update of a learner whose window covers the whole sequence.
fn first_update_grads(
    config: LearnerConfig,
    model: Model<f64>,
    xs: &[Vec<f64>],
    ys: Option<&[Vec<f64>]>,
) -> Vec<f64> {
    let mut l = Learner::with_model(config, model).unwrap();
    for (t, x) in xs.iter().enumerate() {
        let p = match ys {
            Some(ys) => l.step_supervised(x, &ys[t]).unwrap(),
            None => l.step(x).unwrap(),
        };
        if p.update.is_some() {
            assert_eq!(t + 1, xs.len(), "update before the end of the sequence");
            return l.trainer().unwrap().window().grads().to_vec();
        }
    }
    panic!("no update happened");
}

#[test]
fn tbptt_with_window_covering_the_sequence_equals_full_bptt() {
    let n = 12;
    for cell in CELLS {
        for layers in [1, 2] {
            let mc = ModelConfig {
                cell,
                d_input: 2,
                d_hidden: 5,
                layers,
                d_output: 2,
            };
            let model = Model::<f64>::new(mc, 3).unwrap();
            let seq = noise(2 * (n + 1), 99);
            let xs: Vec<Vec<f64>> = seq.chunks(2).map(|c| c.to_vec()).collect();
            let zero = vec![0.0; mc.state_len()];
            let sgd = OptimizerConfig::sgd(0.1);
            // Forecasting: n + 1 events give n transitions; T = n, k = 1, loss over all T.
            let cfg = LearnerConfig {
                cell,
                d_input: 2,
                d_hidden: 5,
                layers,
                trainer: tbptt::TrainerConfig {
                    truncation: n.into(),
                    every: 1,
                    loss_steps: LossSteps::All,
                    optimizer: sgd.clone(),
                    clip: None,
                    ..Default::default()
                },
                ..Default::default()
            };
            let g = first_update_grads(cfg, model.clone(), &xs, None);
            let (_, full) = full_bptt(&model, &seq[..2 * n], &seq[2..], &zero, Loss::Mse).unwrap();
            let e = rel_err(&g, &full);
            assert!(e < 1e-12, "{cell} layers={layers} forecasting: {e:.2e}");
            // Explicit targets: n pairs, T = k = n, loss on the newest k = n steps.
            let ys: Vec<Vec<f64>> = noise(2 * n, 7).chunks(2).map(|c| c.to_vec()).collect();
            let cfg = LearnerConfig {
                cell,
                d_input: 2,
                d_hidden: 5,
                layers,
                d_target: Some(2),
                targets: Targets::Explicit,
                trainer: tbptt::TrainerConfig {
                    truncation: n.into(),
                    every: n,
                    optimizer: sgd,
                    clip: None,
                    ..Default::default()
                },
                ..Default::default()
            };
            let g = first_update_grads(cfg, model.clone(), &xs[..n], Some(&ys));
            let yflat: Vec<f64> = ys.concat();
            let (_, full) = full_bptt(&model, &seq[..2 * n], &yflat, &zero, Loss::Mse).unwrap();
            let e = rel_err(&g, &full);
            assert!(
                e < 1e-12,
                "{cell} layers={layers} explicit targets: {e:.2e}"
            );
            assert!(full.iter().any(|v| v.abs() > 1e-6));
        }
    }
}

#[test]
fn a_shorter_window_gives_a_different_gradient() {
    // Truncation must matter: T < sequence length changes the gradient (this test would pass
    // vacuously if the window silently covered everything).
    let mc = ModelConfig {
        cell: CellKind::Gru,
        d_input: 1,
        d_hidden: 4,
        layers: 1,
        d_output: 1,
    };
    let model = Model::<f64>::new(mc, 5).unwrap();
    let seq = noise(21, 3);
    let xs: Vec<Vec<f64>> = seq.iter().map(|v| vec![*v]).collect();
    let cfg = LearnerConfig {
        d_hidden: 4,
        trainer: tbptt::TrainerConfig {
            truncation: 20.into(),
            every: 1,
            loss_steps: LossSteps::Last(1),
            optimizer: OptimizerConfig::sgd(0.1),
            clip: None,
            ..Default::default()
        },
        ..Default::default()
    };
    let long = first_update_grads(cfg.clone(), model.clone(), &xs, None);
    let mut l = Learner::with_model(
        LearnerConfig {
            trainer: tbptt::TrainerConfig {
                truncation: 3.into(),
                ..cfg.trainer.clone()
            },
            ..cfg
        },
        model,
    )
    .unwrap();
    let mut short = None;
    for x in &xs {
        if l.step(x).unwrap().update.is_some() {
            short = Some(l.trainer().unwrap().window().grads().to_vec());
        }
    }
    let short = short.unwrap();
    let e = rel_err(&short, &long);
    assert!(e > 1e-6, "truncated and full gradients agree to {e:.2e}");
}
