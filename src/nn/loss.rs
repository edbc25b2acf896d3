//! Per-step losses and their gradients, defined exactly as PyTorch defines them.
//!
//! Each step's loss is the *sum* over the output components; dividing the sum over a window
//! by [`Loss::normalizer`] gives PyTorch's default `reduction='mean'`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Float, Result};

fn default_huber_delta() -> f64 {
    1.0
}

/// Loss of one prediction against its target.
///
/// | variant | per-component value (`r = y - t`) | gradient `d/dy` | PyTorch |
/// | --- | --- | --- | --- |
/// | `Mse` | `r²` | `2r` | `F.mse_loss` |
/// | `Huber { delta }` | `0.5 r²` if `\|r\| < delta`, else `delta (\|r\| - 0.5 delta)` | `r` clamped to `[-delta, delta]` | `F.huber_loss` |
/// | `CrossEntropy` | `-Σ t_i log_softmax(y)_i` (whole vector) | `softmax(y) Σt - t` | `F.cross_entropy` with class-probability targets |
///
/// For `CrossEntropy`, `y` are logits and `t` a one-hot or soft distribution over classes.
///
/// Serialized (serde) as an internally tagged object, e.g. `{"kind":"mse"}`,
/// `{"kind":"huber","delta":0.5}`, `{"kind":"cross_entropy"}`. Parsed from and displayed as
/// `mse`, `huber:0.5` and `cross-entropy` (see [`FromStr`](#impl-FromStr-for-Loss)).
///
/// # Example
/// ```
/// use tbptt::nn::loss::Loss;
///
/// let mut grad = [0.0f64; 2];
/// let l = Loss::Mse.step_to(&[1.0, 2.0], &[0.0, 0.0], &mut grad);
/// assert_eq!(l, 5.0);
/// assert_eq!(grad, [2.0, 4.0]);
/// // Mean over a window of 3 steps with 2 outputs, as PyTorch's reduction='mean':
/// assert_eq!(Loss::Mse.normalizer(3, 2), 6);
///
/// let ce: Loss = "ce".parse()?;
/// let v = ce.value(&[0.0, 3f64.ln()], &[0.0, 1.0]);
/// assert!((v - (4.0f64 / 3.0).ln()).abs() < 1e-15);
/// # Ok::<(), tbptt::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Loss {
    /// Squared error `(y - t)²`, summed over components (the default).
    #[default]
    Mse,
    /// Huber loss with threshold `delta`: quadratic for small residuals, linear beyond.
    Huber {
        /// Threshold between the quadratic and linear parts, in output units; must be
        /// positive and finite. Default (when omitted in serde or in `"huber"`): `1.0`.
        #[serde(default = "default_huber_delta")]
        delta: f64,
    },
    /// Softmax cross-entropy of logits against a class-probability (one-hot or soft) target.
    CrossEntropy,
}

impl Loss {
    /// Returns the sum over the components of one step's loss and writes `d(that sum)/dy`
    /// into `grad`.
    ///
    /// `y` is the model output (logits for [`Loss::CrossEntropy`]); `target` and `grad` must
    /// have the same length as `y`. Shapes are the caller's to check: only the common prefix
    /// of the three slices is used and components of `grad` beyond it are left untouched.
    /// Does not allocate.
    #[inline]
    pub fn step_to<T: Float>(&self, y: &[T], target: &[T], grad: &mut [T]) -> T {
        let zero = T::cast(0.0);
        match *self {
            Loss::Mse => {
                let two = T::cast(2.0);
                let mut sum = zero;
                for ((&yi, &ti), gi) in y.iter().zip(target).zip(grad.iter_mut()) {
                    let r = yi - ti;
                    sum += r * r;
                    *gi = two * r;
                }
                sum
            }
            Loss::Huber { delta } => {
                let delta = T::cast(delta);
                let half = T::cast(0.5);
                let mut sum = zero;
                for ((&yi, &ti), gi) in y.iter().zip(target).zip(grad.iter_mut()) {
                    let r = yi - ti;
                    sum += huber_term(r, delta, half);
                    // torch's huber_loss_backward: -delta if r <= -delta, delta if r >= delta,
                    // else r.
                    *gi = if r <= -delta {
                        -delta
                    } else if r >= delta {
                        delta
                    } else {
                        r
                    };
                }
                sum
            }
            Loss::CrossEntropy => {
                let n = y.len().min(target.len()).min(grad.len());
                let (y, target) = (&y[..n], &target[..n]);
                let (shift, log_sum) = log_sum_exp_parts(y);
                let mut t_sum = zero;
                for &ti in target {
                    t_sum += ti;
                }
                let mut sum = zero;
                for ((&yi, &ti), gi) in y.iter().zip(target).zip(grad.iter_mut()) {
                    let log_p = (yi - shift) - log_sum;
                    sum -= ti * log_p;
                    // log_softmax backward with upstream gradient -t:
                    // -t - exp(log_p) * sum(-t).
                    *gi = log_p.exp() * t_sum - ti;
                }
                sum
            }
        }
    }

    /// Same value as [`Loss::step_to`], without the gradient. Does not allocate.
    #[inline]
    pub fn value<T: Float>(&self, y: &[T], target: &[T]) -> T {
        let zero = T::cast(0.0);
        match *self {
            Loss::Mse => {
                let mut sum = zero;
                for (&yi, &ti) in y.iter().zip(target) {
                    let r = yi - ti;
                    sum += r * r;
                }
                sum
            }
            Loss::Huber { delta } => {
                let delta = T::cast(delta);
                let half = T::cast(0.5);
                let mut sum = zero;
                for (&yi, &ti) in y.iter().zip(target) {
                    sum += huber_term(yi - ti, delta, half);
                }
                sum
            }
            Loss::CrossEntropy => {
                let n = y.len().min(target.len());
                let (y, target) = (&y[..n], &target[..n]);
                let (shift, log_sum) = log_sum_exp_parts(y);
                let mut sum = zero;
                for (&yi, &ti) in y.iter().zip(target) {
                    sum -= ti * ((yi - shift) - log_sum);
                }
                sum
            }
        }
    }

    /// The number the summed loss of `steps` steps with output size `d_out` is divided by
    /// to give the reported mean, matching PyTorch's default `reduction='mean'`:
    /// `steps * d_out` for `Mse` and `Huber` (mean over elements), `steps` for
    /// `CrossEntropy` (mean over steps, i.e. over the batch of class distributions).
    /// Saturates instead of overflowing.
    pub fn normalizer(&self, steps: usize, d_out: usize) -> usize {
        match self {
            Loss::Mse | Loss::Huber { .. } => steps.saturating_mul(d_out),
            Loss::CrossEntropy => steps,
        }
    }

    /// Checks the loss's parameters.
    ///
    /// # Errors
    /// [`Error::Config`] with field `"delta"` if a Huber `delta` is not positive and finite.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Loss::Huber { delta } if !(delta > 0.0 && delta.is_finite()) => Err(Error::config(
                "delta",
                format!("Huber delta must be positive and finite, got {delta}"),
            )),
            _ => Ok(()),
        }
    }
}

/// One component of torch's Huber loss: `z = |r|`,
/// `z < delta ? 0.5 z z : delta (z - 0.5 delta)`.
#[inline(always)]
fn huber_term<T: Float>(r: T, delta: T, half: T) -> T {
    let z = if r < T::cast(0.0) { -r } else { r };
    if z < delta {
        half * z * z
    } else {
        delta * (z - half * delta)
    }
}

/// The max `m` of `y` (0 for an empty slice) and `ln Σ exp(y_i - m)`, as torch's
/// `log_softmax` computes them; `log_softmax(y)_i = (y_i - m) - ln Σ`.
#[inline]
fn log_sum_exp_parts<T: Float>(y: &[T]) -> (T, T) {
    let Some((&first, rest)) = y.split_first() else {
        return (T::cast(0.0), T::cast(0.0));
    };
    // A NaN anywhere makes the sum below NaN, so it reaches the loss and every gradient.
    let mut max = first;
    for &v in rest {
        if v > max {
            max = v;
        }
    }
    let mut sum = T::cast(0.0);
    for &v in y {
        sum += (v - max).exp();
    }
    (max, sum.ln())
}

impl fmt::Display for Loss {
    /// Writes the spelling [`FromStr`] accepts: `mse`, `huber:DELTA` or `cross-entropy`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loss::Mse => f.write_str("mse"),
            Loss::Huber { delta } => write!(f, "huber:{delta}"),
            Loss::CrossEntropy => f.write_str("cross-entropy"),
        }
    }
}

impl FromStr for Loss {
    type Err = Error;

    /// Parses `mse`, `huber` (delta 1.0), `huber:DELTA` (e.g. `huber:0.5`), and `ce`,
    /// `cross-entropy` or `cross_entropy`, ignoring ASCII case and surrounding spaces.
    ///
    /// # Errors
    /// [`Error::Config`] with field `"loss"` for an unknown name or a malformed or invalid
    /// Huber delta.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (s, None),
        };
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let loss = if is("huber") {
            let delta = match arg {
                None => default_huber_delta(),
                Some(a) => a.parse::<f64>().map_err(|_| {
                    Error::config(
                        "loss",
                        format!(
                            "bad Huber delta {a:?} in {s:?}: expected a number, as in huber:0.5"
                        ),
                    )
                })?,
            };
            if !(delta > 0.0 && delta.is_finite()) {
                return Err(Error::config(
                    "loss",
                    format!("Huber delta must be positive and finite, got {delta} in {s:?}"),
                ));
            }
            Loss::Huber { delta }
        } else if arg.is_none() && is("mse") {
            Loss::Mse
        } else if arg.is_none() && (is("ce") || is("cross-entropy") || is("cross_entropy")) {
            Loss::CrossEntropy
        } else {
            return Err(Error::config(
                "loss",
                format!(
                    "unknown loss {s:?}: expected mse, huber, huber:DELTA (e.g. huber:0.5), \
                     ce or cross-entropy"
                ),
            ));
        };
        Ok(loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Loss; 4] = [
        Loss::Mse,
        Loss::Huber { delta: 1.0 },
        Loss::Huber { delta: 0.3 },
        Loss::CrossEntropy,
    ];

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
    }

    /// A deterministic pseudo-random sequence in [-1, 1) (splitmix64), for test inputs.
    fn pseudo(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn mse_by_hand() {
        // (1-0)^2 + (2-0)^2 = 5; grad 2*[1, 2].
        let mut g = [0.0f64; 2];
        assert_eq!(Loss::Mse.step_to(&[1.0, 2.0], &[0.0, 0.0], &mut g), 5.0);
        assert_eq!(g, [2.0, 4.0]);
        assert_eq!(Loss::Mse.value(&[1.0f64, 2.0], &[0.0, 0.0]), 5.0);
        // f32 too: (0.5-1.5)^2 + (3-1)^2 = 1 + 4.
        let mut g = [0.0f32; 2];
        assert_eq!(Loss::Mse.step_to(&[0.5f32, 3.0], &[1.5, 1.0], &mut g), 5.0);
        assert_eq!(g, [-2.0, 4.0]);
    }

    #[test]
    fn huber_by_hand() {
        let h = Loss::Huber { delta: 1.0 };
        // r = 0.5 < 1: 0.5 * 0.25 = 0.125, grad 0.5.
        // r = 3 >= 1: 1 * (3 - 0.5) = 2.5, grad 1.
        // r = -3: 2.5, grad -1.
        let mut g = [0.0f64; 3];
        let v = h.step_to(&[0.5, 4.0, -1.0], &[0.0, 1.0, 2.0], &mut g);
        assert_eq!(v, 0.125 + 2.5 + 2.5);
        assert_eq!(g, [0.5, 1.0, -1.0]);
        assert_eq!(h.value(&[0.5f64, 4.0, -1.0], &[0.0, 1.0, 2.0]), 5.125);
        // delta 0.5, r = 2: 0.5 * (2 - 0.25) = 0.875, grad 0.5; at r = delta exactly:
        // linear branch 0.5 * (0.5 - 0.25) = 0.125 = 0.5 * 0.5^2, grad delta.
        let h = Loss::Huber { delta: 0.5 };
        let mut g = [0.0f64; 2];
        assert_eq!(h.step_to(&[2.0, 0.5], &[0.0, 0.0], &mut g), 1.0);
        assert_eq!(g, [0.5, 0.5]);
    }

    #[test]
    fn cross_entropy_by_hand() {
        // softmax([0, ln 3]) = [1/4, 3/4]; loss on class 1 = -ln(3/4) = ln(4/3);
        // grad = softmax - onehot = [1/4, -1/4].
        let mut g = [0.0f64; 2];
        let v = Loss::CrossEntropy.step_to(&[0.0, 3f64.ln()], &[0.0, 1.0], &mut g);
        assert!(close(v, (4.0f64 / 3.0).ln(), 1e-15), "{v}");
        assert!(
            close(g[0], 0.25, 1e-15) && close(g[1], 0.75 - 1.0, 1e-15),
            "{g:?}"
        );
        // Soft target summing to 2: grad = softmax * 2 - t.
        let mut g = [0.0f64; 2];
        let v = Loss::CrossEntropy.step_to(&[0.0, 3f64.ln()], &[1.0, 1.0], &mut g);
        assert!(close(v, -(0.25f64.ln() + 0.75f64.ln()), 1e-15));
        assert!(close(g[0], -0.5, 1e-15) && close(g[1], 0.5, 1e-15), "{g:?}");
        // f32.
        let mut g = [0.0f32; 2];
        let v = Loss::CrossEntropy.step_to(&[0.0f32, 3f32.ln()], &[0.0, 1.0], &mut g);
        assert!((v - (4.0f32 / 3.0).ln()).abs() < 1e-6);
        assert!((g[0] - 0.25).abs() < 1e-6 && (g[1] + 0.25).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_is_stable() {
        // log_softmax([1000, 0]) = [-ln(1 + e^-1000), -1000 - ...] = [~0, ~-1000].
        let mut g = [0.0f64; 2];
        let v = Loss::CrossEntropy.step_to(&[1000.0, 0.0], &[1.0, 0.0], &mut g);
        assert_eq!(v, 0.0);
        assert_eq!(g, [0.0, 0.0]);
        let v = Loss::CrossEntropy.step_to(&[1000.0, 0.0], &[0.0, 1.0], &mut g);
        assert!(close(v, 1000.0, 1e-15), "{v}");
        assert_eq!(g, [1.0, -1.0]);
        let mut g = [0.0f32; 3];
        let v = Loss::CrossEntropy.step_to(&[-1000.0f32, 1000.0, 999.0], &[0.0, 0.0, 1.0], &mut g);
        // -log_softmax at 999 = 1000 - 999 + ln(1 + e^-1 + e^-2000) = 1 + ln(1 + e^-1).
        assert!(
            v.is_finite() && (v - (1.0 + (1.0 + (-1.0f32).exp()).ln())).abs() < 1e-5,
            "{v}"
        );
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        assert_eq!(
            Loss::CrossEntropy.value(&[1000.0f32, -1000.0], &[0.0, 1.0]),
            2000.0
        );
        // NaN propagates instead of being hidden.
        assert!(Loss::CrossEntropy
            .value(&[f64::NAN, 0.0], &[0.0, 1.0])
            .is_nan());
        // Empty input: zero loss.
        assert_eq!(Loss::CrossEntropy.value::<f64>(&[], &[]), 0.0);
    }

    #[test]
    fn value_matches_step_to() {
        for (k, loss) in ALL.iter().enumerate() {
            for seed in 0..5u64 {
                let y: Vec<f64> = pseudo(seed * 7 + k as u64, 5)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect();
                let mut t = pseudo(seed * 7 + k as u64 + 100, 5);
                if *loss == Loss::CrossEntropy {
                    t.iter_mut().for_each(|x| *x = x.abs());
                }
                let mut g = vec![0.0; 5];
                assert_eq!(loss.step_to(&y, &t, &mut g), loss.value(&y, &t));
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        // Central differences in f64 on random-ish inputs away from Huber's kink.
        let h = 1e-6;
        let mut worst = 0.0f64;
        for (k, loss) in ALL.iter().enumerate() {
            for seed in 0..20u64 {
                let n = 2 + (seed as usize % 5);
                let y: Vec<f64> = pseudo(1000 + seed * 31 + k as u64, n)
                    .iter()
                    .map(|x| 4.0 * x)
                    .collect();
                let mut t = pseudo(2000 + seed * 17 + k as u64, n);
                if *loss == Loss::CrossEntropy {
                    // Soft targets (not summing to 1), exercising the sum(t) factor.
                    t.iter_mut().for_each(|x| *x = x.abs());
                }
                let mut g = vec![0.0; n];
                loss.step_to(&y, &t, &mut g);
                for i in 0..n {
                    if let Loss::Huber { delta } = loss {
                        let r = (y[i] - t[i]).abs();
                        if (r - delta).abs() < 1e-3 {
                            continue;
                        }
                    }
                    let mut yp = y.clone();
                    let mut ym = y.clone();
                    yp[i] += h;
                    ym[i] -= h;
                    let fd = (loss.value(&yp, &t) - loss.value(&ym, &t)) / (2.0 * h);
                    let rel = (fd - g[i]).abs() / g[i].abs().max(1.0);
                    worst = worst.max(rel);
                    assert!(
                        rel < 1e-7,
                        "{loss:?} seed {seed} i {i}: fd {fd} vs {}",
                        g[i]
                    );
                }
            }
        }
        assert!(worst > 0.0);
    }

    #[test]
    fn f32_matches_f64() {
        for (k, loss) in ALL.iter().enumerate() {
            let y: Vec<f64> = pseudo(77 + k as u64, 6).iter().map(|x| 2.0 * x).collect();
            let t: Vec<f64> = pseudo(88 + k as u64, 6).iter().map(|x| x.abs()).collect();
            let y32: Vec<f32> = y.iter().map(|&x| x as f32).collect();
            let t32: Vec<f32> = t.iter().map(|&x| x as f32).collect();
            let (mut g, mut g32) = (vec![0.0f64; 6], vec![0.0f32; 6]);
            let v = loss.step_to(&y, &t, &mut g);
            let v32 = loss.step_to(&y32, &t32, &mut g32);
            assert!(close(v, v32 as f64, 1e-5), "{loss:?}: {v} vs {v32}");
            for (a, b) in g.iter().zip(&g32) {
                assert!(close(*a, *b as f64, 1e-5), "{loss:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn normalizer_matches_torch_mean() {
        assert_eq!(Loss::Mse.normalizer(4, 3), 12);
        assert_eq!(Loss::Huber { delta: 1.0 }.normalizer(4, 3), 12);
        assert_eq!(Loss::CrossEntropy.normalizer(4, 3), 4);
        assert_eq!(Loss::Mse.normalizer(usize::MAX, 2), usize::MAX);
    }

    #[test]
    fn validate_checks_delta() {
        assert!(Loss::Mse.validate().is_ok());
        assert!(Loss::CrossEntropy.validate().is_ok());
        assert!(Loss::Huber { delta: 0.1 }.validate().is_ok());
        for delta in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            match (Loss::Huber { delta }).validate() {
                Err(Error::Config { field, .. }) => assert_eq!(field, "delta"),
                other => panic!("delta {delta}: {other:?}"),
            }
        }
    }

    #[test]
    fn parse_and_display() {
        assert_eq!("mse".parse::<Loss>(), Ok(Loss::Mse));
        assert_eq!(" MSE ".parse::<Loss>(), Ok(Loss::Mse));
        assert_eq!("huber".parse::<Loss>(), Ok(Loss::Huber { delta: 1.0 }));
        assert_eq!("huber:0.5".parse::<Loss>(), Ok(Loss::Huber { delta: 0.5 }));
        for s in ["ce", "cross-entropy", "cross_entropy", "CE"] {
            assert_eq!(s.parse::<Loss>(), Ok(Loss::CrossEntropy), "{s}");
        }
        for s in [
            "",
            "l1",
            "huber:",
            "huber:x",
            "huber:0",
            "huber:-1",
            "huber:inf",
            "mse:1",
        ] {
            match s.parse::<Loss>() {
                Err(e @ Error::Config { field: "loss", .. }) => {
                    assert!(e.to_string().contains("loss"), "{e}")
                }
                other => panic!("{s:?}: {other:?}"),
            }
        }
        let e = "l1".parse::<Loss>().map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("\"l1\"") && e.contains("huber:DELTA"), "{e}");
        for loss in ALL.iter().chain(&[Loss::Huber { delta: 1e-3 }]) {
            assert_eq!(loss.to_string().parse::<Loss>().as_ref(), Ok(loss));
        }
        assert_eq!(Loss::Huber { delta: 0.5 }.to_string(), "huber:0.5");
        assert_eq!(Loss::default(), Loss::Mse);
    }

    #[test]
    fn serde_round_trip() {
        for loss in ALL {
            let s = serde_json::to_string(&loss).unwrap();
            assert_eq!(serde_json::from_str::<Loss>(&s).unwrap(), loss, "{s}");
        }
        assert_eq!(
            serde_json::to_string(&Loss::Mse).unwrap(),
            r#"{"kind":"mse"}"#
        );
        assert_eq!(
            serde_json::to_string(&Loss::CrossEntropy).unwrap(),
            r#"{"kind":"cross_entropy"}"#
        );
        assert_eq!(
            serde_json::from_str::<Loss>(r#"{"kind":"huber"}"#).unwrap(),
            Loss::Huber { delta: 1.0 }
        );
        assert_eq!(
            serde_json::from_str::<Loss>(r#"{"kind":"huber","delta":0.25}"#).unwrap(),
            Loss::Huber { delta: 0.25 }
        );
        assert!(serde_json::from_str::<Loss>(r#"{"kind":"huber","delt":0.25}"#).is_err());
        assert!(serde_json::from_str::<Loss>(r#"{"kind":"l1"}"#).is_err());
    }
}
