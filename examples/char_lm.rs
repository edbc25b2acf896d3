//! A character-level language model, the classic application of truncated backpropagation:
//! reads text from standard input, predicts every byte from the ones before it, and learns
//! online with softmax cross-entropy over the 256 byte values, TBPTT(k, T). It prints the
//! bits per character as it goes, next to an adaptive unigram baseline (byte counts with
//! add-½ smoothing), and at the end can sample text from the model with a temperature.
//!
//! Every byte is scored before the model trains on it (prequential, online evaluation).
//!
//! Run:
//! `cargo run --release --example char_lm -- --hidden 128 -T 64 < data/tinyshakespeare_100k.txt`
//! `cargo run --release --example char_lm -- -T auto --sample 400 --temperature 0.8 < FILE`
use clap::Parser;
use rand::{Rng, SeedableRng};
use std::io::{Read, Write};
use std::time::Instant;
use tbptt::{CellKind, LearnerConfig, Loss, OptimizerConfig, StepWorkspace, Targets, Truncation};

/// Byte-level language model learned online by TBPTT.
#[derive(Parser, Debug)]
struct Args {
    /// Recurrent cell: elman, gru or lstm.
    #[arg(long, default_value = "gru")]
    cell: CellKind,
    /// Hidden size H.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Window length T, or auto.
    #[arg(short = 'T', long = "window", default_value = "64")]
    window: Truncation,
    /// With -T auto: smallest T.
    #[arg(long)]
    t_min: Option<usize>,
    /// With -T auto: largest T.
    #[arg(long)]
    t_max: Option<usize>,
    /// Update every k characters.
    #[arg(short = 'k', long = "every", default_value_t = 16)]
    every: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Print the bits per character every N characters.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    report: u64,
    /// Stop after this many characters.
    #[arg(long, value_name = "N")]
    max_chars: Option<u64>,
    /// At the end, sample this many characters from the model.
    #[arg(long, default_value_t = 0, value_name = "N")]
    sample: usize,
    /// Sampling temperature (lower: more conservative).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Seed of the weights and of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Bits per character of a model and of the unigram baseline, over the whole run and since
/// the last report.
#[derive(Default)]
struct Bits {
    model: f64,
    unigram: f64,
    n: u64,
    recent_model: f64,
    recent_unigram: f64,
    recent_n: u64,
}

impl Bits {
    fn add(&mut self, model: f64, unigram: f64) {
        self.model += model;
        self.unigram += unigram;
        self.n += 1;
        self.recent_model += model;
        self.recent_unigram += unigram;
        self.recent_n += 1;
    }

    fn line(&mut self, elapsed: f64, t: usize) -> String {
        let (n, r) = (self.n.max(1) as f64, self.recent_n.max(1) as f64);
        let s = format!(
            "chars {:>9}  bpc {:.3} (recent {:.3})  unigram {:.3} (recent {:.3})  {:>6.0} chars/s  T {t}",
            self.n,
            self.model / n,
            self.recent_model / r,
            self.unigram / n,
            self.recent_unigram / r,
            self.n as f64 / elapsed.max(1e-9),
        );
        self.recent_model = 0.0;
        self.recent_unigram = 0.0;
        self.recent_n = 0;
        s
    }
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("char_lm: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(a: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !(a.temperature > 0.0 && a.temperature.is_finite()) {
        return Err(format!("--temperature must be positive, got {}", a.temperature).into());
    }
    let truncation = match a.window.clone() {
        Truncation::Auto(mut t) => {
            t.min = a.t_min.unwrap_or(t.min);
            t.max = a.t_max.unwrap_or(t.max);
            Truncation::Auto(t)
        }
        Truncation::Fixed(_) if a.t_min.is_some() || a.t_max.is_some() => {
            return Err("--t-min and --t-max need -T auto".into());
        }
        fixed => fixed,
    };
    let config = LearnerConfig {
        cell: a.cell,
        d_input: 256,
        d_hidden: a.hidden,
        d_target: Some(256),
        targets: Targets::Explicit,
        seed: a.seed,
        trainer: tbptt::TrainerConfig {
            truncation,
            every: a.every,
            loss: Loss::CrossEntropy,
            optimizer: OptimizerConfig::adam(a.lr),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut learner = config.build::<f32>()?;
    let (mut x, mut y) = ([0.0f32; 256], [0.0f32; 256]);
    let mut counts = [0u64; 256];
    let mut bits = Bits::default();
    let mut prev: Option<u8> = None;
    let started = Instant::now();
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut input = std::io::stdin().lock();
    let mut buf = vec![0u8; 1 << 16];
    let max = a.max_chars.unwrap_or(u64::MAX);
    'read: loop {
        let got = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read standard input: {e}").into()),
        };
        for &c in &buf[..got] {
            if bits.n >= max {
                break 'read;
            }
            // The unigram baseline: adaptive byte counts, add-1/2 smoothing.
            let p_uni = (counts[c as usize] as f64 + 0.5) / (bits.n as f64 + 128.0);
            counts[c as usize] += 1;
            let Some(p) = prev.replace(c) else {
                continue; // the first byte has no context for the model
            };
            x[p as usize] = 1.0;
            y[c as usize] = 1.0;
            let nats = learner.step_supervised(&x, &y)?.error.unwrap_or(0.0) as f64;
            x[p as usize] = 0.0;
            y[c as usize] = 0.0;
            bits.add(nats / std::f64::consts::LN_2, -p_uni.log2());
            if bits.n % a.report == 0 {
                let line = bits.line(started.elapsed().as_secs_f64(), learner.window_len());
                writeln!(out, "{line}")?;
            }
        }
    }
    if bits.n % a.report != 0 {
        let line = bits.line(started.elapsed().as_secs_f64(), learner.window_len());
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} characters, {} updates, {}",
        bits.n,
        learner.updates(),
        learner.truncation()
    )?;
    if a.sample > 0 {
        writeln!(
            out,
            "--- sample ({} characters, temperature {}) ---",
            a.sample, a.temperature
        )?;
        let model = learner.model();
        let mut state = learner.state().to_vec();
        let mut ws = StepWorkspace::new(model.config());
        let mut logits = [0.0f32; 256];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let mut c = prev.unwrap_or(b'\n');
        let mut text = Vec::with_capacity(a.sample);
        for _ in 0..a.sample {
            x[c as usize] = 1.0;
            model.step_to(&x, &mut state, &mut ws, &mut logits);
            x[c as usize] = 0.0;
            c = sample(&logits, a.temperature, rng.random::<f64>());
            text.push(c);
        }
        out.write_all(&text)?;
        writeln!(out)?;
    }
    Ok(())
}

/// The byte whose cumulative probability under `softmax(logits / temperature)` first
/// exceeds `u` (uniform in `[0, 1)`).
fn sample(logits: &[f32; 256], temperature: f64, u: f64) -> u8 {
    let top = logits.iter().fold(f32::MIN, |m, v| m.max(*v)) as f64;
    let w = |v: f32| ((v as f64 - top) / temperature).exp();
    let total: f64 = logits.iter().map(|v| w(*v)).sum();
    let mut acc = 0.0;
    for (i, v) in logits.iter().enumerate() {
        acc += w(*v) / total;
        if u < acc {
            return i as u8;
        }
    }
    255
}
