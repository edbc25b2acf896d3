//! Proves the hot path allocates nothing after warm-up: a counting global allocator records
//! every allocation made on the test's thread while the learner steps and trains.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use tbptt::{
    AutoTruncation, CellKind, LearnerConfig, Loss, LossSteps, OptimizerConfig, Targets, Truncation,
};

struct Counting;

/// Print a backtrace of every counted allocation (set from `ALLOC_BACKTRACE`).
static BT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations counted on this thread (tests run in parallel threads).
    static MINE: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    if COUNTING.with(|c| c.get()) {
        MINE.with(|m| m.set(m.get() + 1));
        if BT.load(Ordering::SeqCst) {
            COUNTING.with(|c| c.set(false));
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            COUNTING.with(|c| c.set(true));
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while `f` runs on this thread.
fn count<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = MINE.with(|m| m.get());
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (MINE.with(|m| m.get()) - before, r)
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the test below against a counter that never counts.
    let (n, v) = count(|| vec![1u8; 100]);
    assert!(n >= 1 && v.len() == 100);
}

fn configs() -> Vec<LearnerConfig> {
    let mut v = Vec::new();
    for cell in [CellKind::Elman, CellKind::Gru, CellKind::Lstm] {
        for layers in [1, 2] {
            for optimizer in [
                OptimizerConfig::adam(1e-3),
                OptimizerConfig::sgd(1e-2),
                OptimizerConfig::rmsprop(1e-3),
                OptimizerConfig::adamw(1e-3, 1e-2),
            ] {
                v.push(LearnerConfig {
                    cell,
                    layers,
                    d_input: 3,
                    d_hidden: 16,
                    trainer: tbptt::TrainerConfig {
                        optimizer,
                        truncation: 12.into(),
                        every: 4,
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
        }
    }
    let mut auto = LearnerConfig {
        d_hidden: 16,
        trainer: tbptt::TrainerConfig {
            every: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    auto.trainer.truncation = Truncation::Auto(AutoTruncation {
        min: 8,
        max: 40,
        history: 4,
        ..Default::default()
    });
    v.push(auto);
    v.push(LearnerConfig {
        trainer: tbptt::TrainerConfig {
            loss_steps: LossSteps::All,
            loss: Loss::Huber { delta: 0.5 },
            clip: None,
            ..Default::default()
        },
        ..Default::default()
    });
    v.push(LearnerConfig {
        d_input: 4,
        d_target: Some(4),
        targets: Targets::Explicit,
        trainer: tbptt::TrainerConfig {
            loss: Loss::CrossEntropy,
            ..Default::default()
        },
        ..Default::default()
    });
    v
}

#[test]
fn no_allocation_per_event_or_update_after_warm_up() {
    BT.store(
        std::env::var_os("ALLOC_BACKTRACE").is_some(),
        Ordering::SeqCst,
    );
    for config in configs() {
        let mut learner = config.build::<f32>().unwrap();
        let d = config.d_input;
        let mut x = vec![0.0f32; d];
        let mut y = vec![0.0f32; d];
        let feed = |learner: &mut tbptt::Learner<f32>, t: usize, x: &mut [f32], y: &mut [f32]| {
            for (i, v) in x.iter_mut().enumerate() {
                *v = ((t * (i + 1)) as f32 * 0.1).sin();
            }
            y.fill(0.0);
            y[t % d] = 1.0;
            let p = match config.targets {
                Targets::NextInput => learner.step(x).unwrap(),
                Targets::Explicit => learner.step_supervised(x, y).unwrap(),
                Targets::Ahead => learner.step_ahead(x, y).unwrap(),
            };
            p.update.is_some()
        };
        // Warm-up: fill the window and make the first update.
        let mut t = 0;
        while learner.updates() == 0 {
            feed(&mut learner, t, &mut x, &mut y);
            t += 1;
        }
        let (allocs, updates) = count(|| {
            let mut updates = 0;
            for s in t..t + 200 {
                updates += feed(&mut learner, s, &mut x, &mut y) as u32;
            }
            updates
        });
        assert!(
            updates as usize >= 200 / config.trainer.every,
            "{config:?}: only {updates} updates"
        );
        assert_eq!(
            allocs,
            0,
            "{:?} {} layers, {}: {allocs} allocations in 200 events",
            config.cell,
            config.layers,
            config.trainer.optimizer.name()
        );
    }
}

#[test]
fn no_allocation_on_the_prediction_thread_with_a_background_trainer() {
    let config = LearnerConfig {
        d_hidden: 16,
        trainer: tbptt::TrainerConfig {
            truncation: 16.into(),
            every: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = config.build::<f32>().unwrap();
    learner.spawn_trainer().unwrap();
    let mut t = 0usize;
    let mut step = |learner: &mut tbptt::Learner<f32>| {
        t += 1;
        learner.step(&[(t as f32 * 0.1).sin()]).unwrap();
    };
    // Warm-up: until weights have been published back at least once.
    let started = std::time::Instant::now();
    while learner.updates() < 3 && started.elapsed() < std::time::Duration::from_secs(60) {
        step(&mut learner);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    assert!(
        learner.updates() >= 3,
        "the trainer never published weights"
    );
    let before = learner.updates();
    let (allocs, ()) = count(|| {
        for _ in 0..400 {
            step(&mut learner);
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    });
    assert!(
        learner.updates() > before,
        "no weights were swapped in while counting"
    );
    assert_eq!(
        allocs, 0,
        "{allocs} allocations on the prediction thread in 400 events"
    );
    learner.join_trainer().unwrap();
}

#[test]
fn the_anomaly_likelihood_allocates_nothing_per_event_after_warm_up() {
    use tbptt::detect::anomaly::{Likelihood, LikelihoodConfig};
    let config = LikelihoodConfig {
        history: 512,
        ..Default::default()
    };
    let mut l = Likelihood::new(config);
    let x = |t: u64| ((t * 7919) % 113) as f64 / 10.0 + (t as f64 * 0.02).sin();
    // Warm-up: the first values allocate the tails' bins, the second event's time the ring
    // of a day (288 events).
    for t in 0..2000u64 {
        l.score(Some(t as f64 * 300.0), &[x(t), -x(t)], Some(x(t) / 11.0));
    }
    let (n, _) = count(|| {
        for t in 2000..4000u64 {
            l.score(Some(t as f64 * 300.0), &[x(t), -x(t)], Some(x(t) / 11.0));
        }
    });
    assert_eq!(n, 0, "allocations while scoring 2000 events");
}

/// A likelihood with a history of 2,000 (its statistics' weights are then rescaled, in place,
/// after 83,000 events), a day of 1,440 events, two values, saturated errors, huge values and
/// a spike a day: over 97,000 events once warm, it allocates nothing and keeps its size.
#[test]
fn the_likelihood_allocates_nothing_over_a_long_hostile_run() {
    use tbptt::detect::anomaly::likelihood::SATURATED;
    use tbptt::detect::anomaly::{Likelihood, LikelihoodConfig};
    let mut l = Likelihood::new(LikelihoodConfig {
        history: 2000,
        ..Default::default()
    });
    let x = |t: u64| ((t * 7919) % 113) as f64 / 10.0 + (t as f64 * 0.004).sin();
    let event = |l: &mut Likelihood, t: u64| {
        let (value, error) = match t % 1440 {
            700 => (x(t) + 50.0, Some(40.0)),
            900 => (5e307, Some(SATURATED)),
            1000 => (-1e300, Some(f64::INFINITY)),
            _ => (x(t), Some(x(t) / 11.0)),
        };
        l.score(Some(t as f64 * 60.0), &[value, -x(t)], error);
    };
    for t in 0..3000u64 {
        event(&mut l, t);
    }
    let before = l.heap_bytes();
    let (n, _) = count(|| {
        for t in 3000..100_000u64 {
            event(&mut l, t);
        }
    });
    assert_eq!(n, 0, "allocations while scoring 97,000 events");
    assert_eq!(l.heap_bytes(), before);
    assert!(l.validate().is_ok());
}

#[cfg(feature = "monitor")]
/// Records of `keys` canonical series, cycling, with the record buffers made once.
fn monitored_records(keys: usize) -> Vec<tbptt::OutputRecord> {
    (0..keys)
        .map(|i| {
            let mut key = String::new();
            tbptt::io::labels::canonical(
                "cpu_usage",
                &mut [("host", &format!("web-{i:03}")), ("dc", "eu west")],
                &mut key,
            );
            tbptt::OutputRecord {
                key,
                time: Some(1.7e9),
                error: Some(0.01),
                residual: vec![0.1],
                forecast: vec![1.5],
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(feature = "monitor")]
#[test]
fn metrics_allocate_nothing_per_record_once_warm_even_past_their_series_bound() {
    use tbptt::service::metrics::{Metrics, MetricsConfig};
    use tbptt::service::run::Observer;
    // 12 series through a table of 5: every record of a series not in it takes a place.
    let metrics = Metrics::new(MetricsConfig {
        max_series: 5,
        ..MetricsConfig::default()
    });
    let mut observer = metrics.observer();
    let mut records = monitored_records(12);
    let event = tbptt::Event::new();
    let mut feed = |records: &mut [tbptt::OutputRecord], n: usize| {
        for i in 0..n {
            let r = &mut records[i % 12];
            r.score = (i % 7) as f64 / 7.0;
            r.anomaly = i % 97 == 0;
            r.updates = (i / 8) as u64;
            observer.accepted_at(&event, r, std::time::Instant::now());
        }
    };
    feed(&mut records, 1_000);
    let (allocs, ()) = count(|| feed(&mut records, 20_000));
    assert_eq!(allocs, 0, "{allocs} allocations in 20,000 records");
    let mut text = String::new();
    metrics
        .encode(tbptt::service::metrics::Format::Prometheus, &mut text)
        .unwrap();
    assert!(text.contains("tbptt_metrics_series 5\n"), "{text}");
}

#[cfg(feature = "monitor")]
#[test]
fn remote_sinks_allocate_at_most_a_buffer_per_batch_once_warm() {
    use tbptt::io::sink::remote::RemoteConfig;
    use tbptt::io::sink::Sink;
    // A Graphite listener that reads and discards.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &conn, &mut std::io::sink());
            });
        }
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _enter = rt.enter();
    let config = RemoteConfig {
        batch_lines: 400,
        timeout: std::time::Duration::from_secs(1),
        close_timeout: std::time::Duration::from_secs(1),
        ..RemoteConfig::default()
    };
    let graphite =
        tbptt::io::sink::graphite::GraphiteSink::start(&addr.to_string(), config.clone()).unwrap();
    let influx = tbptt::io::sink::influx::InfluxSink::start(
        &format!("http://{addr}/write?db=x"),
        RemoteConfig {
            max_attempts: 1,
            ..config
        },
    )
    .unwrap();
    let mut sinks: Vec<Box<dyn Sink + Send>> = vec![Box::new(graphite), Box::new(influx)];
    let records = monitored_records(12);
    let mut feed = |n: usize| {
        for i in 0..n {
            for s in &mut sinks {
                s.write(&records[i % 12]).unwrap();
            }
        }
    };
    feed(20_000);
    let (allocs, ()) = count(|| feed(20_000));
    // Graphite: 4 lines a record, 200 batches; InfluxDB: one a record, 50 batches.
    assert!(allocs <= 250, "{allocs} allocations for 20,000 records");
}
