//! Criterion benchmarks of the core: one live step and one window forward + backward per cell
//! for H in {16, 32, 64, 128, 256} (D = 1, T = 32), the learner's events/s at H = 64,
//! T = 32, k = 8, and per event the anomaly likelihood alone and the whole pipeline (default
//! settings: GRU H = 32, T = 32, k = 8, inline training, likelihood). Run:
//! `cargo bench --bench core`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tbptt::{CellKind, LearnerConfig, Loss, Model, ModelConfig, StepWorkspace, Window};

const HIDDEN: [usize; 5] = [16, 32, 64, 128, 256];
const CELLS: [CellKind; 3] = [CellKind::Elman, CellKind::Gru, CellKind::Lstm];
const T: usize = 32;

fn model(cell: CellKind, h: usize) -> Model<f32> {
    let c = ModelConfig {
        cell,
        d_input: 1,
        d_hidden: h,
        layers: 1,
        d_output: 1,
    };
    Model::new(c, 1).expect("valid config")
}

fn cells(c: &mut Criterion) {
    for cell in CELLS {
        let mut g = c.benchmark_group(format!("cell/{cell}"));
        g.throughput(Throughput::Elements(1));
        for h in HIDDEN {
            let m = model(cell, h);
            let mc = *m.config();
            let mut ws = StepWorkspace::new(&mc);
            let mut state = vec![0.1f32; mc.state_len()];
            let mut y = [0.0f32];
            let mut t = 0u32;
            g.bench_function(BenchmarkId::new("forward", format!("h{h}")), |b| {
                b.iter(|| {
                    t = t.wrapping_add(1);
                    let x = [(t as f32 * 0.1).sin()];
                    m.step_to(black_box(&x), &mut state, &mut ws, &mut y);
                    black_box(y[0])
                })
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("cell/{cell}"));
        g.throughput(Throughput::Elements(T as u64));
        for h in HIDDEN {
            let m = model(cell, h);
            let mc = *m.config();
            let mut w = Window::new(&mc, T).expect("window");
            for (i, v) in w.inputs_mut().iter_mut().enumerate() {
                *v = (i as f32 * 0.3).sin();
            }
            for (i, v) in w.targets_mut().iter_mut().enumerate() {
                *v = (i as f32 * 0.3 + 0.3).sin();
            }
            let start = vec![0.0f32; mc.state_len()];
            g.bench_function(
                BenchmarkId::new("window_fwd_bwd_T32", format!("h{h}")),
                |b| {
                    b.iter(|| {
                        black_box(
                            w.forward_backward(&m, &start, T, Loss::Mse, 8)
                                .expect("pass"),
                        )
                    })
                },
            );
        }
        g.finish();
    }
}

fn learner(c: &mut Criterion) {
    let mut g = c.benchmark_group("learner");
    g.throughput(Throughput::Elements(1));
    for cell in CELLS {
        let config = LearnerConfig {
            cell,
            d_hidden: 64,
            trainer: tbptt::TrainerConfig {
                truncation: 32.into(),
                every: 8,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut l = config.build::<f32>().expect("learner");
        let mut t = 0u32;
        g.bench_function(
            BenchmarkId::new(format!("{cell}/events"), "h64_T32_k8"),
            |b| {
                b.iter(|| {
                    t = t.wrapping_add(1);
                    let x = [(t as f32 * 0.05).sin() + 0.3 * (t as f32 * 0.17).sin()];
                    l.step(&x).expect("step");
                    black_box(l.forecast()[0])
                })
            },
        );
    }
    g.finish();
}

/// A noisy daily cycle at 5-minute steps, with a spike every 3,001 events.
fn daily(t: u64) -> f64 {
    let noise = ((t.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64) / (1u64 << 24) as f64;
    let spike = if t.is_multiple_of(3001) { 40.0 } else { 0.0 };
    50.0 + 10.0 * (t as f64 * std::f64::consts::TAU / 288.0).sin() + 2.0 * noise + spike
}

fn anomaly(c: &mut Criterion) {
    use tbptt::detect::anomaly::{Likelihood, LikelihoodConfig};
    use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
    use tbptt::event::Event;
    let mut g = c.benchmark_group("anomaly");
    g.throughput(Throughput::Elements(1));
    // Warm: 20,000 events, past the rings' day and well into the tails' history.
    let mut l = Likelihood::new(LikelihoodConfig::default());
    let mut t = 0u64;
    while t < 20_000 {
        l.score(Some(t as f64 * 300.0), &[daily(t)], Some(0.3));
        t += 1;
    }
    g.bench_function("likelihood/event", |b| {
        b.iter(|| {
            t += 1;
            let e = ((t * 7919) % 101) as f64 / 100.0;
            black_box(l.score(Some(t as f64 * 300.0), &[daily(t)], Some(e)))
        })
    });
    let mut p = Pipeline::new(PipelineConfig::default()).expect("pipeline");
    let mut ev = Event::new();
    ev.values.push(0.0);
    let mut t = 0u64;
    let mut step = |p: &mut Pipeline, t: u64| {
        ev.values[0] = daily(t);
        ev.time = Some(t as f64 * 300.0);
        p.process(&ev).expect("event").score
    };
    while t < 20_000 {
        step(&mut p, t);
        t += 1;
    }
    g.bench_function("pipeline/event", |b| {
        b.iter(|| {
            t += 1;
            black_box(step(&mut p, t))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = cells, learner, anomaly }
criterion_main!(benches);
