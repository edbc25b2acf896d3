//! Anomaly scores from the learner's prediction errors.
//!
//! Three scorers are available ([`AnomalyKind`]):
//!
//! - `likelihood` (the default): the [`Likelihood`] of the event, in `[0, 1]`, from the
//!   forecast error, level-shift, seasonal and new-extreme statistics, each judged by a
//!   [`Tail`] (a bounded summary of its recent history) against its own history, reported
//!   once per episode: by default 5 events after the episode starts, with its peak, and
//!   discounted by earlier episodes as surprising (see [`likelihood`](mod@likelihood)).
//! - `zscore`: the [`ZScore`] of the forecast error, unbounded (described below).
//! - `raw`: the forecast error `|r|` in normalized units, squashed to `|r| / (1 + |r|)`.
//!
//! The residual of each event, `|r| = sqrt(mean_i (r_i / std_i)^2)` in normalized units, is
//! standardized against an exponentially weighted running mean and variance of the residuals
//! seen *before* it: `score = (|r| − mean) / std`. Online and O(1) per event; the score is 0
//! during a warm-up of `warmup` residuals. An event is flagged when `score > threshold`.
//!
//! After the warm-up a residual enters the statistics winsorized at `mean + 10 · std`, so a
//! burst of huge residuals is flagged without masking the anomalies that follow it. A
//! residual beyond measure (at least [`likelihood::SATURATED`]) scores that value and leaves
//! the statistics as they were.

pub mod likelihood;
mod phase;
pub mod tail;

pub use likelihood::{Likelihood, LikelihoodConfig};
pub use tail::{Grid, Tail};

use serde::{Deserialize, Serialize};

/// Which score the pipeline reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyKind {
    /// The [`Likelihood`], in `[0, 1]`. The default.
    #[default]
    Likelihood,
    /// The [`ZScore`] of the forecast error (unbounded; 0 during warm-up).
    #[serde(rename = "zscore")]
    ZScore,
    /// The forecast error `|r|` in normalized units as `|r| / (1 + |r|)`.
    Raw,
}

impl AnomalyKind {
    /// The default threshold of this score: 0.5 for the likelihood (a tail probability of
    /// `10^-5` at the default 10 decades), 4 for the z-score, 0.8 (`|r| = 4`) for the raw
    /// error.
    pub fn default_threshold(self) -> f64 {
        match self {
            AnomalyKind::Likelihood => 0.5,
            AnomalyKind::ZScore => 4.0,
            AnomalyKind::Raw => 0.8,
        }
    }

    /// Maps a score of this kind into `[0, 1]`, monotonically: the z-score `z` as
    /// `max(z, 0) / (1 + max(z, 0))`; the others are already there.
    ///
    /// # Example
    /// ```
    /// use tbptt::detect::anomaly::AnomalyKind;
    /// assert_eq!(AnomalyKind::ZScore.unit(3.0), 0.75);
    /// assert_eq!(AnomalyKind::ZScore.unit(-2.0), 0.0);
    /// assert_eq!(AnomalyKind::Likelihood.unit(0.25), 0.25);
    /// ```
    pub fn unit(self, score: f64) -> f64 {
        match self {
            AnomalyKind::ZScore => {
                let z = if score.is_nan() { 0.0 } else { score.max(0.0) };
                if z.is_infinite() {
                    1.0
                } else {
                    z / (1.0 + z)
                }
            }
            _ => score.clamp(0.0, 1.0),
        }
    }

    /// The name used by `--anomaly`.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::Likelihood => "likelihood",
            AnomalyKind::ZScore => "zscore",
            AnomalyKind::Raw => "raw",
        }
    }
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for AnomalyKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "likelihood" => Ok(AnomalyKind::Likelihood),
            "zscore" => Ok(AnomalyKind::ZScore),
            "raw" => Ok(AnomalyKind::Raw),
            other => Err(crate::Error::config(
                "anomaly",
                format!("expected likelihood, zscore or raw, got {other:?}"),
            )),
        }
    }
}

/// Configurations written before the kind existed used the z-score.
fn legacy_kind() -> AnomalyKind {
    AnomalyKind::ZScore
}

/// Settings of the anomaly score.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Which score is reported. Default: [`AnomalyKind::Likelihood`] (a stored configuration
    /// without this field, written before it existed, reads as the z-score).
    #[serde(default = "legacy_kind")]
    pub kind: AnomalyKind,
    /// Half-life of the z-score's residual statistics, in events. Default: 1000.
    pub half_life: f64,
    /// Residuals observed before z-scores are reported (0 before that). Default: 50.
    pub warmup: u64,
    /// Score above which an event is flagged. Default: the kind's
    /// [`AnomalyKind::default_threshold`], 0.5 for the likelihood.
    pub threshold: f64,
    /// Settings of the likelihood.
    pub likelihood: LikelihoodConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            kind: AnomalyKind::Likelihood,
            half_life: 1000.0,
            warmup: 50,
            threshold: AnomalyKind::Likelihood.default_threshold(),
            likelihood: LikelihoodConfig::default(),
        }
    }
}

impl AnomalyConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`crate::Error::Config`] if the half-life is not positive or the threshold not finite.
    pub fn validate(&self) -> crate::Result<()> {
        if !(self.half_life > 0.0 && self.half_life.is_finite()) {
            return Err(crate::Error::config(
                "anomaly.half_life",
                format!("must be positive, got {}", self.half_life),
            ));
        }
        if !self.threshold.is_finite() {
            return Err(crate::Error::config("threshold", "must be finite"));
        }
        self.likelihood.validate()
    }

    /// Checks that the threshold can flag an event with this score: the likelihood and the
    /// raw score lie in `[0, 1]` (the raw one below 1), so their threshold must be in
    /// `[0, 1)`; the z-score is unbounded.
    ///
    /// # Errors
    /// [`crate::Error::Config`] naming the score's range and a threshold that works.
    pub fn check_threshold(&self) -> crate::Result<()> {
        let bounded = matches!(self.kind, AnomalyKind::Likelihood | AnomalyKind::Raw);
        if bounded && !(0.0..1.0).contains(&self.threshold) {
            return Err(crate::Error::config(
                "threshold",
                format!(
                    "{} is outside [0, 1), where the {} score lies, so it would flag no event \
                     or every one; use e.g. {} (or the z-score, which is unbounded)",
                    self.threshold,
                    if self.kind == AnomalyKind::Raw {
                        "raw"
                    } else {
                        "likelihood"
                    },
                    self.kind.default_threshold()
                ),
            ));
        }
        Ok(())
    }
}

/// Running residual statistics and the score they give.
///
/// # Example
/// ```
/// use tbptt::detect::anomaly::{AnomalyConfig, ZScore};
/// let config = AnomalyConfig { warmup: 10, threshold: 4.0, ..Default::default() };
/// let mut z = ZScore::new(config);
/// for i in 0..200 {
///     z.score(1.0 + 0.1 * ((i % 7) as f64 - 3.0));
/// }
/// assert!(z.score(10.0) > 4.0); // a residual far outside the usual range
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    config: AnomalyConfig,
    count: u64,
    weight: f64,
    mean: f64,
    var: f64,
}

impl ZScore {
    /// Fresh statistics.
    pub fn new(config: AnomalyConfig) -> Self {
        ZScore {
            config,
            count: 0,
            weight: 0.0,
            mean: 0.0,
            var: 0.0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// Scores `residual` against the residuals seen so far, then adds it to them. A residual
    /// beyond measure (at least [`likelihood::SATURATED`], or infinite) scores
    /// [`likelihood::SATURATED`] and is not added; a NaN scores 0 and is not added.
    pub fn score(&mut self, residual: f64) -> f64 {
        if residual.is_nan() {
            return 0.0;
        }
        if residual.abs() >= likelihood::SATURATED {
            return likelihood::SATURATED;
        }
        let warm = self.count >= self.config.warmup.max(2);
        let std = self.var.sqrt().max(1e-9 * self.mean.abs().max(1e-12));
        let score = if warm {
            (residual - self.mean) / std
        } else {
            0.0
        };
        let limit = if warm { 10.0 * std } else { f64::MAX };
        let decay = 0.5f64.powf(1.0 / self.config.half_life);
        self.weight = self.weight * decay + 1.0;
        let a = 1.0 / self.weight;
        let d = (residual - self.mean)
            .clamp(-limit, limit)
            .clamp(-1e150, 1e150);
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        self.count += 1;
        score
    }

    /// Checks a deserialized state: valid settings and finite statistics.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn validate(&self) -> crate::Result<()> {
        self.config.validate()?;
        if !(self.mean.is_finite()
            && self.var.is_finite()
            && self.var >= 0.0
            && self.weight.is_finite()
            && self.weight >= 0.0)
        {
            return Err(crate::Error::state(
                "anomaly",
                "anomaly statistics are not finite",
            ));
        }
        Ok(())
    }

    /// Sets the threshold (a reporting knob: the statistics do not depend on it).
    pub fn set_threshold(&mut self, threshold: f64) {
        self.config.threshold = threshold;
    }

    /// Whether a score is above the threshold.
    pub fn flags(&self, score: f64) -> bool {
        score > self.config.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_scores_zero_and_a_spike_stands_out() {
        let mut z = ZScore::new(AnomalyConfig {
            threshold: 4.0,
            ..Default::default()
        });
        let mut s = 0x1234_5678_u64;
        let mut worst_quiet = 0.0f64;
        for i in 0..5000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let r = 1.0 + ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 0.2;
            let sc = z.score(r);
            if i < 50 {
                assert_eq!(sc, 0.0);
            } else {
                worst_quiet = worst_quiet.max(sc);
            }
        }
        assert!(worst_quiet < 2.5, "uniform noise scored {worst_quiet}");
        let spike = z.score(3.0);
        assert!(z.flags(spike), "spike scored {spike}");
        assert_eq!(z.score(f64::NAN), 0.0);
        // Beyond measure: flagged with a finite score, and the statistics stay as they were.
        let before = z.clone();
        for r in [f64::INFINITY, 1e200] {
            let s = z.score(r);
            assert!(s.is_finite() && z.flags(s), "{s}");
        }
        assert_eq!(z, before);
    }

    #[test]
    fn a_burst_is_flagged_and_does_not_mask_later_anomalies() {
        let mut z = ZScore::new(AnomalyConfig {
            threshold: 4.0,
            ..Default::default()
        });
        for i in 0..2000 {
            z.score(1.0 + 0.1 * ((i % 7) as f64 - 3.0));
        }
        for _ in 0..20 {
            let s = z.score(1e30);
            assert!(z.flags(s));
        }
        for i in 0..500 {
            z.score(1.0 + 0.1 * ((i % 7) as f64 - 3.0));
        }
        // Without winsorizing, the burst would leave std ≈ 1e29 and this would score ~0.
        let s = z.score(5.0);
        assert!(z.flags(s), "a 5x residual after the burst scored {s}");
        assert!(z.validate().is_ok());
    }
}
