//! Golden tests: tbptt's window pass and online runs against PyTorch's numbers
//! (tests/golden/*.json, written by the PyTorch reference; see tests/golden/README.md).

use crate::util::{flat, golden_files, load, rel_err};
use serde_json::Value;
use tbptt::{CellKind, Float, Loss, Model, ModelConfig, ParamName, StepWorkspace, Window};

const PARAMS: [(&str, ParamName); 6] = [
    ("weight_ih", ParamName::WeightIh(0)),
    ("weight_hh", ParamName::WeightHh(0)),
    ("bias_ih", ParamName::BiasIh(0)),
    ("bias_hh", ParamName::BiasHh(0)),
    ("W", ParamName::W),
    ("b", ParamName::B),
];

/// Builds the model described by a fixture's weights object.
pub fn model_from<T: Float>(w: &Value) -> Model<T> {
    let cell: CellKind = w["cell"]
        .as_str()
        .expect("cell")
        .parse()
        .expect("known cell");
    let d = w["input_dim"].as_u64().expect("input_dim") as usize;
    let config = ModelConfig {
        cell,
        d_input: d,
        d_hidden: w["hidden"].as_u64().expect("hidden") as usize,
        layers: 1,
        d_output: w
            .get("output_dim")
            .and_then(Value::as_u64)
            .map_or(d, |v| v as usize),
    };
    let mut m = Model::zeros(config).expect("valid config");
    for (key, name) in PARAMS {
        m.set_param(name, &flat(&w[key])).expect("shape");
    }
    m
}

struct WindowResult {
    loss: f64,
    predictions: Vec<f64>,
    h_final: Vec<f64>,
    c_final: Vec<f64>,
    grads: Vec<(&'static str, Vec<f64>)>,
    h0: Vec<f64>,
    c0: Vec<f64>,
}

fn run_window<T: Float>(case: &Value) -> WindowResult {
    let m: Model<T> = model_from(case);
    let c = *m.config();
    let (d, h, d_out) = (c.d_input, c.d_hidden, c.d_output);
    let inputs = flat(&case["inputs"]);
    let len = inputs.len() / d;
    let has_targets = case.get("targets").is_some();
    let n = if has_targets { len } else { len - 1 };
    let targets = if has_targets {
        flat(&case["targets"])
    } else {
        inputs[d..].to_vec()
    };
    let mut start = vec![T::zero(); c.state_len()];
    if let Some(h0) = case.get("h0") {
        for (s, v) in start.iter_mut().zip(flat(h0)) {
            *s = T::cast(v);
        }
    }
    if let Some(c0) = case.get("c0") {
        for (s, v) in start[h..].iter_mut().zip(flat(c0)) {
            *s = T::cast(v);
        }
    }
    let mut w = Window::new(&c, n).expect("window");
    for (dst, src) in w.inputs_mut().iter_mut().zip(&inputs[..n * d]) {
        *dst = T::cast(*src);
    }
    for (dst, src) in w.targets_mut().iter_mut().zip(&targets[..n * d_out]) {
        *dst = T::cast(*src);
    }
    let loss = w
        .forward_backward(&m, &start, n, Loss::Mse, n)
        .expect("pass");
    let mut state = vec![T::zero(); c.state_len()];
    w.final_state_to(&mut state).expect("state");
    if !has_targets {
        // The fixture's final state has consumed the last input too (it serves only as a target).
        let x: Vec<T> = inputs[n * d..].iter().map(|v| T::cast(*v)).collect();
        let mut y = vec![T::zero(); d_out];
        m.step_to(&x, &mut state, &mut StepWorkspace::new(&c), &mut y);
    }
    let mut sg = vec![T::zero(); c.state_len()];
    w.start_grad_to(&mut sg).expect("start grad");
    let f = |v: &[T]| v.iter().map(|x| x.as_f64()).collect::<Vec<f64>>();
    WindowResult {
        loss: loss.as_f64(),
        predictions: f(w.predictions()),
        h_final: f(&state[..h]),
        c_final: f(&state[h..]),
        grads: PARAMS
            .iter()
            .map(|(k, name)| (*k, m.grad_of(w.grads(), *name).expect("grad")))
            .collect(),
        h0: f(&sg[..h]),
        c0: f(&sg[h..]),
    }
}

fn check_windows<T: Float>(tol: f64) -> usize {
    let files = golden_files("");
    let files: Vec<_> = files
        .into_iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("trajectory")
        })
        .collect();
    assert_eq!(files.len(), 9, "expected 9 window fixtures");
    for path in &files {
        let fx = load(path);
        let (case, exp) = (&fx["case"], &fx["expected"]);
        let r = run_window::<T>(case);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let check = |what: &str, got: &[f64], want: &[f64]| {
            let e = rel_err(got, want);
            assert!(
                e < tol,
                "{name} {} {what}: relative error {e:.3e} >= {tol:e}",
                T::NAME
            );
        };
        check("loss", &[r.loss], &[exp["loss"].as_f64().unwrap()]);
        check("predictions", &r.predictions, &flat(&exp["predictions"]));
        check("h_final", &r.h_final, &flat(&exp["h_final"]));
        if let Some(cf) = exp.get("c_final") {
            check("c_final", &r.c_final, &flat(cf));
        }
        for (k, g) in &r.grads {
            check(k, g, &flat(&exp["grads"][*k]));
        }
        check("grad h0", &r.h0, &flat(&exp["grads"]["h0"]));
        if let Some(c0) = exp["grads"].get("c0") {
            check("grad c0", &r.c0, &flat(c0));
        }
    }
    files.len()
}

#[test]
fn window_fixtures_match_pytorch_f64() {
    assert_eq!(check_windows::<f64>(1e-10), 9);
}

#[test]
fn window_fixtures_match_pytorch_f32() {
    assert_eq!(check_windows::<f32>(1e-4), 9);
}

/// A learner configured and initialized as a trajectory fixture says.
fn learner_from(fx: &Value) -> tbptt::Learner<f32> {
    let cfg = &fx["config"];
    let init = &fx["init"];
    let model: Model<f32> = model_from(init);
    let opt = cfg["opt"].as_str().expect("opt");
    let lr = cfg["lr"].as_f64().expect("lr");
    let optimizer = match opt {
        "sgd" => match tbptt::OptimizerConfig::sgd(lr) {
            tbptt::OptimizerConfig::Sgd {
                nesterov,
                weight_decay,
                ..
            } => tbptt::OptimizerConfig::Sgd {
                lr,
                momentum: cfg["momentum"].as_f64().unwrap_or(0.0),
                nesterov,
                weight_decay,
            },
            other => other,
        },
        "adam" => tbptt::OptimizerConfig::adam(lr),
        other => panic!("fixture optimizer {other}"),
    };
    let clip = cfg["clip"].as_f64().unwrap_or(0.0);
    let config = tbptt::LearnerConfig {
        cell: model.config().cell,
        d_input: model.config().d_input,
        d_hidden: model.config().d_hidden,
        trainer: tbptt::TrainerConfig {
            optimizer,
            truncation: (cfg["T"].as_u64().unwrap() as usize).into(),
            every: cfg["k"].as_u64().unwrap() as usize,
            loss_steps: tbptt::LossSteps::Last(cfg["loss_steps"].as_u64().unwrap() as usize),
            clip: (clip > 0.0).then_some(clip),
            ..Default::default()
        },
        ..Default::default()
    };
    tbptt::Learner::with_model(config, model).expect("learner")
}

#[test]
fn trajectories_reproduce_pytorch_online_runs() {
    let files = golden_files("trajectory");
    assert_eq!(files.len(), 6, "expected 6 trajectory fixtures");
    for path in &files {
        let fx = load(path);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let mut learner = learner_from(&fx);
        let stream = fx["stream"].as_array().unwrap();
        let want = fx["predictions"].as_array().unwrap();
        assert_eq!(stream.len(), want.len());
        let mut worst = 0.0f64;
        for (t, (x, w)) in stream.iter().zip(want).enumerate() {
            let x: Vec<f32> = flat(x).iter().map(|v| *v as f32).collect();
            learner.step(&x).expect("step");
            for (a, b) in learner.forecast().iter().zip(flat(w)) {
                let e = (*a as f64 - b).abs() / b.abs().max(1.0);
                worst = worst.max(e);
                assert!(e < 1e-4, "{name}: event {t}: prediction {a} vs PyTorch {b}");
            }
        }
        assert_eq!(
            learner.updates(),
            fx["updates"].as_u64().unwrap(),
            "{name}: update count"
        );
        eprintln!("{name}: worst relative prediction error {worst:.2e}");
    }
}
