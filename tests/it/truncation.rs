//! Adaptive truncation (`-T auto`): the window follows the dependency length of the stream.

use tbptt::train::truncation::{AutoTruncation, Truncation};
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
        trainer: tbptt::TrainerConfig {
            every: 4,
            optimizer: OptimizerConfig::adam(3e-3),
            ..Default::default()
        },
        ..Default::default()
    };
    c.trainer.truncation = Truncation::Auto(AutoTruncation {
        min,
        max,
        ..Default::default()
    });
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
    // Target = input 10 steps back; T may go as low as 8, which cannot learn it.
    let (learner, mse, ts) = run(&auto_config(8, 64), Some(10), 40_000);
    let late = &ts[ts.len() * 3 / 4..];
    let r = learner.truncation();
    eprintln!(
        "delay 10: MSE {mse:.3}; T over the last quarter: mean {:.1}, min {}, max {}; {r}",
        mean(late),
        late.iter().min().unwrap(),
        late.iter().max().unwrap()
    );
    assert!(
        mse < 0.1,
        "the 10-step recall was not learned (MSE {mse:.3})"
    );
    assert!(
        late.iter().all(|t| *t >= 10),
        "T fell below the dependency length: {late:?}"
    );
    assert!(r.adaptive && r.min == 8 && r.max <= 64 && r.beta.unwrap() < 1.0);
    assert_eq!(r.updates, ts.len() as u64);
}

#[test]
fn auto_truncation_stays_near_its_minimum_on_white_noise() {
    // Nothing to remember: the gradient fades at the untrained network's own rate.
    let (learner, _, ts) = run(&auto_config(16, 64), None, 40_000);
    let late = &ts[ts.len() * 3 / 4..];
    eprintln!(
        "white noise: T over the last quarter: mean {:.1}, min {}, max {}; {}",
        mean(late),
        late.iter().min().unwrap(),
        late.iter().max().unwrap(),
        learner.truncation()
    );
    assert!(mean(late) <= 22.0, "T drifted away from its minimum 16");
    assert!(*late.iter().max().unwrap() <= 32);
}

#[test]
fn an_auto_truncated_learner_resumes_exactly() {
    let c = auto_config(8, 48);
    let mut a = c.build::<f32>().unwrap();
    let mut x = noise(3);
    let mut xs = Vec::new();
    let mut feed = |l: &mut Learner, t: usize, xs: &mut Vec<f32>| {
        let v = x();
        xs.push(v);
        let y = if t >= 6 { xs[t - 6] } else { 0.0 };
        l.step_supervised(&[v], &[y]).unwrap();
        (v, y, l.forecast()[0])
    };
    for t in 0..3000 {
        feed(&mut a, t, &mut xs);
    }
    let mut b = Learner::restore(a.snapshot().unwrap()).unwrap();
    assert_eq!(a.truncation(), b.truncation());
    let mut seen = std::collections::BTreeSet::new();
    for t in 3000..6000 {
        let (v, y, fa) = feed(&mut a, t, &mut xs);
        b.step_supervised(&[v], &[y]).unwrap();
        let fb = b.forecast()[0];
        assert_eq!(fa.to_bits(), fb.to_bits(), "event {t}");
        assert_eq!(a.window_len(), b.window_len());
        seen.insert(a.window_len());
    }
    assert_eq!(a.truncation(), b.truncation());
    assert!(
        seen.len() > 1,
        "T never changed after the restore: {seen:?}"
    );
    // A state whose adaptive part does not fit is refused by name.
    let mut bad = a.snapshot().unwrap();
    bad.trainer.truncation.as_mut().unwrap().current = 49;
    let e = Learner::<f32>::restore(bad).unwrap_err().to_string();
    assert!(e.contains("checkpoint.truncation"), "{e}");
    let mut bad = a.snapshot().unwrap();
    bad.trainer.truncation = None;
    assert!(Learner::<f32>::restore(bad).is_err());
}

#[test]
fn background_training_follows_the_adaptive_window() {
    let mut l = auto_config(8, 48).build::<f32>().unwrap();
    l.spawn_trainer().unwrap();
    let mut x = noise(5);
    let mut xs = Vec::new();
    for t in 0..4000 {
        let v = x();
        xs.push(v);
        let y = if t >= 6 { xs[t - 6] } else { 0.0 };
        l.step_supervised(&[v], &[y]).unwrap();
        if t % 64 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    l.join_trainer().unwrap();
    let r = l.truncation();
    assert!(
        r.adaptive && r.updates > 0 && (8..=48).contains(&r.current),
        "{r:?}"
    );
    assert_eq!(l.window_len(), r.current);
}

/// One line of a deterministic noisy tone.
fn csv_line(t: usize) -> String {
    let noise = ((t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64;
    format!("{:.6}\n", (t as f64 * 0.21).sin() + 0.3 * noise)
}

fn csv(range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(csv_line).collect::<String>().into_bytes()
}

fn data_records(out: &[u8]) -> Vec<String> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("index,"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_command_runs_and_resumes_with_t_auto() {
    use crate::util::{run as run_cmd, tbptt, Input, TempDir};
    let model = [
        "--sync", "--hidden", "8", "-k", "4", "-T", "auto", "--t-min", "8", "--t-max", "40",
    ];
    let dir = TempDir::new("auto");
    let summary = dir.join("summary.json");
    let mut cmd = tbptt(["learn"]);
    cmd.args(model).arg("--summary").arg(&summary);
    let whole = run_cmd(cmd, Input::Bytes(csv(0..3000)));
    whole.assert_code(0);
    assert!(
        whole.stderr.contains("window            T = auto: now"),
        "{}",
        whole.stderr
    );
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let t = &s["truncation"];
    assert!(
        t["min"].as_u64().unwrap() >= 8 && t["max"].as_u64().unwrap() <= 40,
        "{t}"
    );
    assert!(t["mean"].as_f64().unwrap() >= 8.0);

    let ck = dir.join("m.ckpt");
    let mut first = tbptt(["learn"]);
    first.args(model).arg("--checkpoint").arg(&ck);
    let first = run_cmd(first, Input::Bytes(csv(0..1500)));
    first.assert_code(0);
    let mut second = tbptt(["learn", "--sync", "--checkpoint"]);
    second.arg(&ck);
    let second = run_cmd(second, Input::Bytes(csv(1500..3000)));
    second.assert_code(0);
    let mut joined = data_records(&first.stdout);
    joined.extend(data_records(&second.stdout));
    assert_eq!(joined, data_records(&whole.stdout));
    // Resuming with other adaptive settings is refused by name.
    let mut third = tbptt(["learn", "--sync", "--t-min", "12", "-T", "auto", "--resume"]);
    third.arg(&ck);
    let third = run_cmd(third, Input::Bytes(csv(0..10)));
    third.assert_code(2);
    assert!(third.stderr.contains("-T auto"), "{}", third.stderr);
}

#[test]
fn t_auto_flags_are_checked() {
    use crate::util::{run as run_cmd, tbptt, Input};
    for (args, needle) in [
        (&["-T", "16", "--t-min", "4"][..], "need -T auto"),
        (&["-T", "sometimes"][..], "auto"),
        (&["-T", "auto", "--t-min", "2"][..], "t_min"),
        (&["-T", "auto", "--t-tolerance", "1.5"][..], "t_tolerance"),
        (&["-T", "auto", "--loss-steps", "all"][..], "loss_steps"),
    ] {
        let mut cmd = tbptt(["learn", "--sync"]);
        cmd.args(args);
        let done = run_cmd(cmd, Input::Bytes(csv(0..50)));
        done.assert_code(2);
        assert!(done.stderr.contains(needle), "{args:?}: {}", done.stderr);
    }
}

#[test]
fn step_gradient_norms_are_the_pre_activation_gradients() {
    use tbptt::{Loss, Model, ModelConfig, ParamName, Window};
    for cell in [CellKind::Elman, CellKind::Gru, CellKind::Lstm] {
        let mc = ModelConfig {
            cell,
            d_input: 2,
            d_hidden: 5,
            layers: 1,
            d_output: 1,
        };
        let model = Model::<f64>::new(mc, 9).unwrap();
        let mut w = Window::new(&mc, 6).unwrap();
        let (xs, ys) = w.io_mut();
        for (i, v) in xs.iter_mut().enumerate() {
            *v = (i as f64 * 0.7).sin();
        }
        ys.iter_mut().for_each(|v| *v = 0.5);
        let start = vec![0.1; mc.state_len()];
        let mut norms = vec![0.0; 6];
        // One step: the norm is that of the input-side bias gradient, the sum of the step's
        // pre-activation gradients.
        w.forward_backward(&model, &start, 1, Loss::Mse, 1).unwrap();
        assert_eq!(w.step_grad_norms_to(&mut norms).unwrap(), 1);
        let gb = model.grad_of(w.grads(), ParamName::BiasIh(0)).unwrap();
        let want = gb.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norms[0] - want).abs() < 1e-12 * want.max(1.0), "{cell}");
        // Six steps, loss on the last: the gradient before it is backpropagated and nonzero.
        w.forward_backward(&model, &start, 6, Loss::Mse, 1).unwrap();
        assert_eq!(w.step_grad_norms_to(&mut norms).unwrap(), 6);
        assert!(
            norms.iter().all(|v| *v > 0.0 && v.is_finite()),
            "{cell}: {norms:?}"
        );
        assert!(w.step_grad_norms_to(&mut [0.0; 5]).is_err());
    }
}
