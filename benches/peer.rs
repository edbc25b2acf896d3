//! Side by side with the PyTorch peer, and against this core's limit.
//!
//! Run: `cargo bench --bench peer` (add `-- --quick` for a shorter pass, `-- --no-peer` to skip
//! PyTorch, `-- --update` for the update table alone against matrixmultiply's peak, `-- --spin
//! gru 64` for ten seconds of one case's window update under a profiler). Prints markdown tables:
//! 1. events/s of tbptt and of the PyTorch TBPTT learner (`torch_tbptt.py`, hand-written BPTT,
//!    one thread) on the same stream with the same algorithm (Adam 3e-3, no clipping, loss on
//!    the newest k steps), and both final MSEs;
//! 2. the best single-thread sgemm rate of this core (the better of matrixmultiply and the
//!    peer's `torch.mm`, 1024³; with the FMA ceiling beside it) and the update's rate in
//!    GFLOP/s as a fraction of it;
//! 3. prediction latency (event line parsed → record written) with training on the trainer
//!    thread, as an HDR histogram: p50, p99, p99.9, max;
//! 4. cost per event as T, k and H grow.
//!
//! The peer is found at `TBPTT_PEER_SCRIPT` (default `../shared/peers/torch_tbptt.py`) and run
//! with `TBPTT_PEER_PYTHON` (default `../peers-venv/bin/python`); when either is missing the
//! peer columns say so and everything else still runs.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use tbptt::detect::pipeline::{Pipeline, PipelineConfig};
use tbptt::io::format::{Decoded, DecoderConfig};
use tbptt::io::sink::{OutputFormat, RecordWriter};
use tbptt::{
    CellKind, LearnerConfig, Loss, LossSteps, Model, ModelConfig, OptimizerConfig, Window,
};

/// The peer's stream: three incommensurate sines plus Gaussian noise (σ = 0.05), D = 1.
fn stream(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let tau = std::f64::consts::TAU;
    (0..n)
        .map(|t| {
            let t = t as f64;
            let g = (-2.0 * uniform().ln()).sqrt() * (tau * uniform()).cos();
            (0.5 * (tau * t / 40.0).sin()
                + 0.3 * (tau * t / 13.7).sin()
                + 0.2 * (tau * t / 97.3).sin()
                + 0.05 * g) as f32
        })
        .collect()
}

fn learner_config(cell: CellKind, h: usize, t: usize, k: usize) -> LearnerConfig {
    LearnerConfig {
        cell,
        d_hidden: h,
        trainer: tbptt::TrainerConfig {
            truncation: t.into(),
            every: k,
            loss_steps: LossSteps::Every,
            optimizer: OptimizerConfig::adam(3e-3),
            clip: None,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs the inline learner over `xs`; returns (events/s, MSE of the last 20% as the peer
/// computes it: prediction t−1 against event t for t ≥ N − N/5).
fn run_tbptt(config: &LearnerConfig, xs: &[f32]) -> (f64, f64) {
    let mut l = config.build::<f32>().expect("config");
    let n = xs.len();
    let lo = n - n / 5;
    let mut se = 0.0f64;
    let mut prev = 0.0f32;
    let start = Instant::now();
    for (t, x) in xs.iter().enumerate() {
        if t >= lo {
            se += ((prev - x) as f64).powi(2);
        }
        l.step(std::slice::from_ref(x)).expect("step");
        prev = l.forecast()[0];
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, se / (n - lo) as f64)
}

struct Peer {
    python: PathBuf,
    script: PathBuf,
}

impl Peer {
    fn find() -> Result<Peer, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let script = std::env::var_os("TBPTT_PEER_SCRIPT")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/peers/torch_tbptt.py"));
        let python = std::env::var_os("TBPTT_PEER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../peers-venv/bin/python"));
        if !script.exists() {
            return Err(format!("no peer script at {}", script.display()));
        }
        if !python.exists() {
            return Err(format!("no Python with PyTorch at {}", python.display()));
        }
        Ok(Peer { python, script })
    }

    /// Runs the peer on `csv`; returns (events/s, mse_last20).
    fn run(
        &self,
        cell: CellKind,
        h: usize,
        n: usize,
        csv: &std::path::Path,
    ) -> Result<(f64, f64), String> {
        let out = Command::new(&self.python)
            .arg(&self.script)
            .args([
                "--cell",
                cell.name(),
                "--hidden",
                &h.to_string(),
                "--T",
                "32",
                "--k",
                "8",
            ])
            .args([
                "--loss-steps",
                "8",
                "--opt",
                "adam",
                "--lr",
                "3e-3",
                "--threads",
                "1",
            ])
            .args(["--events", &n.to_string(), "--data"])
            .arg(csv)
            .output()
            .map_err(|e| format!("cannot run the peer: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "peer failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().ok_or("peer printed nothing")?;
        let v: serde_json::Value = serde_json::from_str(last).map_err(|e| e.to_string())?;
        Ok((
            v["events_per_sec"].as_f64().ok_or("no events_per_sec")?,
            v["mse_last20"].as_f64().ok_or("no mse_last20")?,
        ))
    }
}

/// Best of a few single-thread 1024³ sgemm runs, in GFLOP/s.
fn sgemm_peak() -> f64 {
    let n = 1024;
    let a = vec![1.0f32; n * n];
    let b = vec![0.5f32; n * n];
    let mut c = vec![0.0f32; n * n];
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: the three buffers hold n*n elements, row-major with the strides given.
        unsafe {
            matrixmultiply::sgemm(
                n,
                n,
                n,
                1.0,
                a.as_ptr(),
                n as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        let s = t.elapsed().as_secs_f64();
        best = best.max(2.0 * (n * n * n) as f64 / s / 1e9);
    }
    assert!(c[0] > 0.0);
    best
}

/// Best of a few single-thread 1024³ `torch.mm` runs of the peer's PyTorch (MKL / oneDNN,
/// which use AVX-512 where the core has it), in GFLOP/s.
fn peer_sgemm(peer: &Peer) -> Result<f64, String> {
    let code = "import torch, time\n\
torch.set_num_threads(1)\n\
a = torch.rand(1024, 1024); b = torch.rand(1024, 1024); c = torch.empty(1024, 1024)\n\
ts = []\n\
for _ in range(8): t = time.perf_counter(); torch.mm(a, b, out=c); ts.append(time.perf_counter() - t)\n\
print(2 * 1024 ** 3 / min(ts) / 1e9)\n";
    let out = Command::new(&peer.python)
        .args(["-c", code])
        .output()
        .map_err(|e| format!("cannot run the peer's Python: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("peer sgemm printed no number: {e}"))
}

/// The core's fused multiply-add ceiling in GFLOP/s: independent chains of `vfmadd` on
/// registers, 512 bits wide where the kernels use AVX-512, else 256. No sgemm can pass it.
fn fma_ceiling() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let wide = tbptt::nn::kernel_name() == "avx512";
        if wide || tbptt::nn::kernel_name() == "avx2+fma" {
            let reps = 20_000_000u64;
            let mut best = 0.0f64;
            for _ in 0..5 {
                let t = Instant::now();
                // SAFETY: the kernel level says the CPU has these instructions.
                let lanes = unsafe {
                    if wide {
                        fma_chains_512(reps)
                    } else {
                        fma_chains_256(reps)
                    }
                };
                let s = t.elapsed().as_secs_f64();
                best = best.max(2.0 * lanes * reps as f64 / s / 1e9);
            }
            return best;
        }
    }
    f64::NAN
}

/// Twelve independent FMA chains of 16 lanes, `reps` times; returns the lanes per rep.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_512(reps: u64) -> f64 {
    use std::arch::x86_64::*;
    let m = _mm512_set1_ps(0.999_999);
    let a = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..reps {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    let mut sum = _mm512_setzero_ps();
    for v in acc {
        sum = _mm512_add_ps(sum, v);
    }
    std::hint::black_box(_mm512_reduce_add_ps(sum));
    (12 * 16) as f64
}

/// Twelve independent FMA chains of 8 lanes, `reps` times; returns the lanes per rep.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_256(reps: u64) -> f64 {
    use std::arch::x86_64::*;
    let m = _mm256_set1_ps(0.999_999);
    let a = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..reps {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    let mut sum = _mm256_setzero_ps();
    for v in acc {
        sum = _mm256_add_ps(sum, v);
    }
    std::hint::black_box(sum);
    (12 * 8) as f64
}

/// The cell's counted flops per event (D = 1 in and out): the live step's `G H (D + H)`
/// multiply-adds, plus a window update every `k` events at three times its forward (forward,
/// the backward's products through the weights and the weight gradients).
fn event_flops(cell: CellKind, h: usize, t: usize, k: usize) -> f64 {
    let f = (cell.gates() * h * (1 + h)) as f64;
    2.0 * f * (1.0 + 3.0 * t as f64 / k as f64)
}

/// Multiply-adds of one window forward + backward (one layer, D = 1 in and out).
fn update_macs(cell: CellKind, h: usize, t: usize, loss_steps: usize) -> f64 {
    let g = cell.gates() as f64;
    let (h, t, l) = (h as f64, t as f64, loss_steps as f64);
    // forward: input projection, recurrent product; backward: W_hh^T dA, dW_hh, dW_ih;
    // readout forward and its two gradients on the loss steps.
    g * h * t + g * h * h * t + g * h * h * t + g * h * h * t + g * h * t + 3.0 * h * l
}

fn update_rate(cell: CellKind, h: usize, reps: usize) -> (f64, f64) {
    let t = 32;
    let mc = ModelConfig {
        cell,
        d_input: 1,
        d_hidden: h,
        layers: 1,
        d_output: 1,
    };
    let m = Model::<f32>::new(mc, 1).expect("model");
    let mut w = Window::new(&mc, t).expect("window");
    let xs = stream(t + 1, 3);
    w.inputs_mut().copy_from_slice(&xs[..t]);
    w.targets_mut().copy_from_slice(&xs[1..]);
    let start = vec![0.0f32; mc.state_len()];
    for _ in 0..reps / 10 + 1 {
        w.forward_backward(&m, &start, t, Loss::Mse, 8)
            .expect("pass");
    }
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let s = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(
                w.forward_backward(&m, &start, t, Loss::Mse, 8)
                    .expect("pass"),
            );
        }
        best = best.min(s.elapsed().as_secs_f64() / reps as f64);
    }
    let flops = 2.0 * update_macs(cell, h, t, 8);
    (best * 1e6, flops / best / 1e9)
}

/// Event line parsed → record written, with a background trainer, paced at `rate` events/s.
fn latency(events: usize, rate: f64) -> (hdrhistogram::Histogram<u64>, u64, u64) {
    let mut config = PipelineConfig {
        background: true,
        ..Default::default()
    };
    config.learner = learner_config(CellKind::Gru, 64, 32, 8);
    let mut pipeline = Pipeline::new(config).expect("pipeline");
    let mut decoder = DecoderConfig::default().build().expect("decoder");
    let mut writer = RecordWriter::new(std::io::sink(), OutputFormat::Csv);
    let mut ev = tbptt::event::Event::new();
    let xs = stream(events, 5);
    let lines: Vec<String> = xs.iter().map(|x| format!("{x}")).collect();
    let mut hist =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let period = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now();
    for (i, line) in lines.iter().enumerate() {
        let due = t0 + period * i as u32;
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let s = Instant::now();
        if decoder
            .decode_line(line.as_bytes(), i as u64 + 1, &mut ev)
            .expect("line")
            == Decoded::Event
        {
            let r = pipeline.process(&ev).expect("event");
            writer.write(r).expect("write");
        }
        let _ = hist.record(s.elapsed().as_nanos().max(1) as u64);
    }
    let l = pipeline.learner().expect("learner");
    let (u, sk) = (l.updates(), l.skipped_updates());
    (hist, u, sk)
}

/// Inline learner cost per event in microseconds (after a warm-up), best of three.
fn cost(cell: CellKind, h: usize, t: usize, k: usize, n: usize) -> f64 {
    let xs = stream(n + t + 64, 9);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut l = learner_config(cell, h, t, k)
            .build::<f32>()
            .expect("config");
        for x in &xs[..t + 64] {
            l.step(std::slice::from_ref(x)).expect("step");
        }
        let s = Instant::now();
        for x in &xs[t + 64..] {
            l.step(std::slice::from_ref(x)).expect("step");
            std::hint::black_box(l.forecast()[0]);
        }
        best = best.min(s.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    best
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The window update with each kernel copy in turn, interleaved (a shared machine's slow
/// phases then hit both copies alike): best and median of 15 rounds per copy.
fn kernel_ab(quick: bool) {
    let kernels = ["avx2", "avx512"];
    println!(
        "| cell | H | {} |",
        kernels.map(|k| format!("{k} best / median")).join(" | ")
    );
    println!("|---|---:|---:|---:|");
    for (cell, h) in [
        (CellKind::Gru, 64),
        (CellKind::Gru, 128),
        (CellKind::Gru, 256),
        (CellKind::Lstm, 64),
    ] {
        let reps = if quick {
            10
        } else {
            (1_000_000 / (h * h)).max(10)
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); kernels.len()];
        for _ in 0..15 {
            for (i, k) in kernels.iter().enumerate() {
                tbptt::nn::set_kernel(k).expect("kernel name");
                times[i].push(update_rate(cell, h, reps).0);
            }
        }
        let cells: Vec<String> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                format!("{:.1} / {:.1} µs", t[0], t[t.len() / 2])
            })
            .collect();
        println!("| {cell} | {h} | {} |", cells.join(" | "));
    }
    let _ = tbptt::nn::set_kernel("avx512");
}

/// `--spin CELL H`: the window update of one case for about ten seconds and nothing else, for
/// a sampling profiler (`perf record -g -e cpu-clock` with the bench profile's line tables).
fn spin(cell: Option<&str>, h: Option<&str>) {
    let cell = match cell.unwrap_or("gru") {
        "lstm" => CellKind::Lstm,
        "elman" => CellKind::Elman,
        _ => CellKind::Gru,
    };
    let h: usize = h.and_then(|h| h.parse().ok()).unwrap_or(64);
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed().as_secs_f64() < 10.0 {
        update_rate(cell, h, (1_000_000 / (h * h)).max(10));
        rounds += 1;
    }
    println!(
        "{cell} H = {h}: {rounds} rounds in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// Table 2's rows: one window update per case, its rate and its share of `peak`.
fn update_table(peak: f64, quick: bool) {
    println!("| cell | H | window fwd+bwd (T = 32) | GFLOP/s | of peak |");
    println!("|---|---:|---:|---:|---:|");
    for (cell, h) in [
        (CellKind::Gru, 64),
        (CellKind::Gru, 128),
        (CellKind::Gru, 256),
        (CellKind::Lstm, 128),
        (CellKind::Elman, 128),
    ] {
        let reps = if quick {
            20
        } else {
            (4_000_000 / (h * h)).max(20)
        };
        let (us, gf) = update_rate(cell, h, reps);
        println!(
            "| {cell} | {h} | {us:.1} µs | {gf:.1} | {:.0}% |",
            100.0 * gf / peak
        );
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let no_peer = args.iter().any(|a| a == "--no-peer");
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` compatibility
    }
    let update_only = args.iter().any(|a| a == "--update");
    let n = if quick { 5_000 } else { 20_000 };
    if args.iter().any(|a| a == "--ab") {
        kernel_ab(quick);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--spin") {
        spin(
            args.get(i + 1).map(String::as_str),
            args.get(i + 2).map(String::as_str),
        );
        return;
    }
    if update_only {
        println!("kernels: {}", tbptt::nn::kernel_name());
        update_table(sgemm_peak(), quick);
        return;
    }
    println!("# tbptt side-by-side benchmark");
    println!();
    println!(
        "{}, {} cores, kernels: {}, f32, one thread per learner",
        cpu_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        tbptt::nn::kernel_name()
    );
    println!();

    // ---- 1. tbptt vs PyTorch
    let xs = stream(n, 1);
    let dir = std::env::temp_dir().join(format!("tbptt-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let csv = dir.join("stream.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).expect("csv"));
        for x in &xs {
            writeln!(f, "{x}").expect("write");
        }
    }
    let peer = if no_peer {
        Err("skipped (--no-peer)".to_string())
    } else {
        Peer::find()
    };
    if let Err(e) = &peer {
        println!("PyTorch peer: {e}; its columns are empty.");
        println!();
    }
    // The core's limit, measured first: the throughput table's last columns use it.
    let mm = sgemm_peak();
    let torch = match &peer {
        Ok(p) => peer_sgemm(p),
        Err(e) => Err(e.clone()),
    };
    let ceiling = fma_ceiling();
    let peak = torch.as_ref().map_or(mm, |t| t.max(mm));
    println!(
        "## Throughput, T = 32, k = 8, D = 1, {n} events, Adam 3e-3, loss on the newest k steps"
    );
    println!();
    println!("| cell | H | tbptt events/s | PyTorch events/s | ratio | tbptt MSE last 20% | PyTorch MSE last 20% | FLOP limit | of limit |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let configs = [
        (CellKind::Gru, 32),
        (CellKind::Gru, 64),
        (CellKind::Gru, 128),
        (CellKind::Gru, 256),
        (CellKind::Lstm, 64),
        (CellKind::Elman, 64),
    ];
    for (cell, h) in configs {
        let (eps, mse) = run_tbptt(&learner_config(cell, h, 32, 8), &xs);
        let (peps, pmse, ratio) = match &peer {
            Ok(p) => match p.run(cell, h, n, &csv) {
                Ok((pe, pm)) => (
                    format!("{pe:.0}"),
                    format!("{pm:.5}"),
                    format!("{:.1}x", eps / pe),
                ),
                Err(e) => (format!("({e})"), String::new(), String::new()),
            },
            Err(_) => (String::new(), String::new(), String::new()),
        };
        let limit = peak * 1e9 / event_flops(cell, h, 32, 8);
        println!(
            "| {cell} | {h} | {eps:.0} | {peps} | {ratio} | {mse:.5} | {pmse} | {limit:.0} | {:.0}% |",
            100.0 * eps / limit
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!();

    // ---- 2. the limit
    println!("## Update rate against this core's sgemm peak ({peak:.1} GFLOP/s)");
    println!();
    println!("Single-thread sgemm 1024³, best of several runs: matrixmultiply (AVX2) {mm:.1} GFLOP/s; PyTorch `torch.mm` {}; the FMA ceiling of the kernels' vector width (register-only chains) {ceiling:.1} GFLOP/s. The peak is the best sgemm measured.",
        match &torch {
            Ok(t) => format!("{t:.1} GFLOP/s"),
            Err(e) => format!("not measured ({})", e.lines().next().unwrap_or("")),
        });
    println!();
    update_table(peak, quick);

    // ---- 3. latency
    let (events, rate) = if quick {
        (20_000, 20_000.0)
    } else {
        (100_000, 20_000.0)
    };
    let (hist, updates, skipped) = latency(events, rate);
    println!("## Prediction latency, GRU H = 64, T = 32, k = 8, trainer thread on, {events} events at {rate:.0}/s");
    println!();
    println!("Event line parsed, normalized, predicted, scored and its record written ({updates} updates applied, {skipped} skipped):");
    println!();
    println!("| p50 | p90 | p99 | p99.9 | max |");
    println!("|---:|---:|---:|---:|---:|");
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
    println!(
        "| {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs | {:.1} µs |",
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1e3
    );
    println!();

    // ---- 4. scaling
    let m = if quick { 2_000 } else { 8_000 };
    println!("## Cost per event (inline training), GRU");
    println!();
    println!(
        "The update's share grows with the steps per event, T/k, and with H^2; the normalized"
    );
    println!("columns are flat when it does (the live step adds a constant per event).");
    println!();
    println!("| H = 64, k = 8: T | µs/event | ÷ (T/k) | | H = 64, T = 32: k | µs/event | ÷ (T/k) | | T = 32, k = 8: H | µs/event | ÷ (H/64)² |");
    println!("|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|");
    let ts = [8, 16, 32, 64, 128];
    let ks = [1, 2, 4, 8, 16];
    let hs = [16, 32, 64, 128, 256];
    for i in 0..5 {
        let a = cost(CellKind::Gru, 64, ts[i], 8, m);
        let b = cost(CellKind::Gru, 64, 32, ks[i], m);
        let c = cost(CellKind::Gru, hs[i], 32, 8, m);
        let (ta, kb) = (ts[i] as f64 / 8.0, 32.0 / ks[i] as f64);
        let hc = (hs[i] as f64 / 64.0).powi(2);
        println!(
            "| {} | {a:.2} | {:.2} | | {} | {b:.2} | {:.2} | | {} | {c:.2} | {:.2} |",
            ts[i],
            a / ta,
            ks[i],
            b / kb,
            hs[i],
            c / hc
        );
    }
}
