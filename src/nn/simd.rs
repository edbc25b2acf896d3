//! Run-time CPU feature detection for the kernels (the crate-private `linalg` module).
//!
//! The cells' entry points and the optimizer's step are compiled three times on x86-64: for
//! AVX-512 (F + VL, with AVX2 and FMA), for AVX2 + FMA, and for the SSE2 baseline. The
//! widest copy the CPU supports runs; the environment variable `TBPTT_SIMD` (`avx512`,
//! `avx2` or `baseline`) caps it, and `TBPTT_NO_SIMD=1` forces the baseline.

use std::sync::atomic::{AtomicU8, Ordering};

/// Instruction-set level of a kernel copy; the value is what the kernels' `const L: u8`
/// parameter carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Level {
    /// SSE2, unfused multiply-adds.
    Baseline = 0,
    /// AVX2 + FMA: 256-bit vectors, fused multiply-adds.
    Avx2 = 1,
    /// AVX-512 F + VL (with AVX2 + FMA): 512-bit vectors and a larger GEMM register block.
    Avx512 = 2,
}

/// `const` parameter value of the baseline kernels.
pub(crate) const BASE: u8 = Level::Baseline as u8;
/// `const` parameter value of the AVX2 + FMA kernels.
pub(crate) const AVX2: u8 = Level::Avx2 as u8;
/// `const` parameter value of the AVX-512 kernels.
pub(crate) const AVX512: u8 = Level::Avx512 as u8;

/// The level in use; `u8::MAX` until the first call of [`level`] detects it.
static STATE: AtomicU8 = AtomicU8::new(u8::MAX);

/// The widest level this CPU supports, capped by `TBPTT_SIMD` / `TBPTT_NO_SIMD` (read once,
/// then cached).
#[inline]
pub(crate) fn level() -> Level {
    match STATE.load(Ordering::Relaxed) {
        0 => Level::Baseline,
        1 => Level::Avx2,
        2 => Level::Avx512,
        _ => {
            let l = detected().min(cap());
            // Only the first detection stores: a `set_kernel` that raced ahead of it stays.
            match STATE.compare_exchange(u8::MAX, l as u8, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => l,
                Err(_) => level(),
            }
        }
    }
}

/// What the CPU supports.
fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return if has!("avx512f") && has!("avx512vl") {
                Level::Avx512
            } else {
                Level::Avx2
            };
        }
    }
    Level::Baseline
}

/// The cap the environment sets; an unknown `TBPTT_SIMD` value caps nothing.
fn cap() -> Level {
    if std::env::var_os("TBPTT_NO_SIMD").is_some() {
        return Level::Baseline;
    }
    match std::env::var("TBPTT_SIMD").as_deref() {
        Ok("baseline" | "none" | "sse2") => Level::Baseline,
        Ok("avx2") => Level::Avx2,
        _ => Level::Avx512,
    }
}

/// Caps the kernel level at run time, for every thread, as `TBPTT_SIMD` does at start-up:
/// `"avx512"`, `"avx2"` or `"baseline"`. A level above what the CPU has gives what it has.
/// Returns the name of the kernel now in use ([`kernel_name`]). Meant for benchmarks that
/// compare the copies in one process; results of the AVX2 and AVX-512 copies are identical.
///
/// # Errors
/// [`crate::Error::Config`] for any other name.
pub fn set_kernel(name: &str) -> crate::Result<&'static str> {
    let want = match name {
        "avx512" => Level::Avx512,
        "avx2" => Level::Avx2,
        "baseline" => Level::Baseline,
        other => {
            return Err(crate::Error::config(
                "kernel",
                format!("expected avx512, avx2 or baseline, got {other:?}"),
            ))
        }
    };
    STATE.store(detected().min(want) as u8, Ordering::Relaxed);
    Ok(kernel_name())
}

/// Names the kernel variant in use, for benchmarks and logs.
pub fn kernel_name() -> &'static str {
    match level() {
        Level::Avx512 => "avx512",
        Level::Avx2 => "avx2+fma",
        Level::Baseline => "baseline",
    }
}

#[cfg(test)]
mod tests {
    //! The copies for every level the CPU has, side by side on the same model: the AVX2 and
    //! AVX-512 copies perform the same operations in the same order on every element, so they
    //! must agree to the bit; the baseline (unfused multiply-adds) agrees within rounding.
    use super::{level, Level};
    use crate::nn::loss::Loss;
    use crate::nn::model::{Model, StepWorkspace, Window};
    use crate::nn::optim::{Optimizer, OptimizerConfig};
    use crate::{CellKind, ModelConfig};

    /// The levels this CPU can run, lowest first.
    fn levels() -> Vec<Level> {
        [Level::Baseline, Level::Avx2, Level::Avx512]
            .into_iter()
            .filter(|l| *l <= level())
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// Loss, gradients, live outputs and one Adam step at `l`, for a model of `cell` with
    /// hidden size `h` (sizes off every block boundary included) over a window of `n` steps.
    fn run(l: Level, cell: CellKind, h: usize, layers: usize, n: usize) -> Vec<Vec<f32>> {
        let config = ModelConfig {
            cell,
            d_input: 3,
            d_hidden: h,
            layers,
            d_output: 2,
        };
        let model = Model::<f32>::new(config, 7).expect("model");
        let mut w = Window::new(&config, n).expect("window");
        let (x, t) = w.io_mut();
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin();
        }
        for (i, v) in t.iter_mut().enumerate() {
            *v = (i as f32 * 0.21).cos();
        }
        let start: Vec<f32> = (0..config.state_len())
            .map(|i| (i as f32 * 0.11).sin() * 0.5)
            .collect();
        let loss = w.pass_at(l, &model, &start, n, Loss::Mse, n / 2 + 1);
        let grads = w.grads().to_vec();
        let mut start_grad = vec![0.0; config.state_len()];
        w.start_grad_to(&mut start_grad).expect("start grad");

        let mut state = start.clone();
        let mut ws = StepWorkspace::new(&config);
        let mut ys = Vec::new();
        for s in 0..5 {
            let xs: Vec<f32> = (0..3).map(|i| ((s * 3 + i) as f32).cos()).collect();
            let mut y = vec![0.0; 2];
            model.step_at(l, &xs, &mut state, &mut ws, &mut y);
            ys.extend(y);
        }

        let mut out = vec![vec![loss], w.grads().to_vec(), start_grad, ys, state];
        // SGD with Nesterov momentum last: the one rule whose step is linear in the gradient,
        // so the baseline's rounding stays within the comparison's tolerance. (Adam's first
        // steps are about `lr * sign(g)`, which flips on the rounding of a near-zero gradient.)
        let sgd = OptimizerConfig::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-3,
        };
        for config in [
            OptimizerConfig::adamw(1e-2, 1e-2),
            OptimizerConfig::rmsprop(1e-3),
            sgd,
        ] {
            let mut params = model.params().to_vec();
            let mut g = grads.clone();
            let mut opt = Optimizer::new(config, params.len()).expect("optimizer");
            for _ in 0..3 {
                opt.step_at(l, &mut params, &mut g);
            }
            out.push(params);
        }
        out
    }

    #[test]
    fn every_level_agrees_avx2_and_avx512_to_the_bit() {
        let cases = [
            (CellKind::Gru, 64, 1, 33),
            (CellKind::Gru, 37, 2, 9),
            (CellKind::Lstm, 64, 1, 17),
            (CellKind::Lstm, 19, 1, 40),
            (CellKind::Elman, 128, 1, 16),
            (CellKind::Gru, 256, 1, 8),
        ];
        for (cell, h, layers, n) in cases {
            let runs: Vec<_> = levels()
                .into_iter()
                .map(|l| (l, run(l, cell, h, layers, n)))
                .collect();
            let (_, base) = &runs[0];
            for (l, r) in &runs[1..] {
                // All but the Adam-type rules (parts 5 and 6).
                let linear = r
                    .iter()
                    .zip(base)
                    .enumerate()
                    .filter(|(p, _)| !(5..7).contains(p));
                for (part, (a, b)) in linear {
                    for (x, y) in a.iter().zip(b) {
                        let tol = 1e-4 * (1.0 + y.abs());
                        assert!(
                            (x - y).abs() <= tol,
                            "{cell:?} H={h} {l:?} vs baseline, part {part}: {x} vs {y}"
                        );
                    }
                }
            }
            if let [.., (_, avx2), (Level::Avx512, avx512)] = runs.as_slice() {
                for (part, (a, b)) in avx512.iter().zip(avx2).enumerate() {
                    assert_eq!(
                        bits(a),
                        bits(b),
                        "{cell:?} H={h}: AVX-512 vs AVX2, part {part}"
                    );
                }
            }
        }
        if level() < Level::Avx512 {
            eprintln!("this CPU lacks AVX-512: compared {:?} only", levels());
        }
    }
}
