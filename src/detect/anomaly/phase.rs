//! The same-phase statistic: the recent mean against the usual value at this time of day, on
//! this kind of day (weekdays and weekends apart), with a robust spread per phase.
//!
//! A day is cut into `bins` phases; weekdays and weekend days (Saturday, Sunday, UTC) have
//! their own. Each phase keeps a centre and a spread (mean absolute deviation) of the
//! values seen at that phase, moved by each event at a rate that makes them remember about
//! [`MEMORY`] days of their kind, so a slow drift is followed and one odd day is not learnt at
//! once. A deviation beyond [`CLIP`] spreads moves them as if it were `CLIP` spreads: a
//! holiday's dip or a surge changes the usual pattern little. The statistic is
//! `|mean of the last w_s values − centre| / spread`; a phase is judged once it has seen
//! [`WARM`] days of its kind.
//!
//! Nothing of this is in a statistic that compares a value with the day before (a holiday's
//! dip the day after is a departure there) or with all values (a dip at noon stays inside the
//! night's range).

use serde::{Deserialize, Serialize};

/// Days of its kind a phase's centre and spread remember.
pub const MEMORY: f64 = 8.0;
/// Days of its kind a phase sees before it is judged.
pub const WARM: f64 = 2.0;
/// Deviations, in spreads, beyond which an event moves a phase as if it were at this many.
pub const CLIP: f64 = 4.0;
/// Most phases per day.
pub const MAX_BINS: usize = 1440;

/// The centres and spreads of `2 · bins` phases (weekday phases first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    center: Vec<f64>,
    spread: Vec<f32>,
    /// Events seen per phase (saturating).
    seen: Vec<u32>,
}

impl Phases {
    /// Empty phases; they are allocated at the first event, for the `bins` per day it gives.
    pub fn new() -> Self {
        Phases {
            center: Vec::new(),
            spread: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.center.capacity() * 8 + self.spread.capacity() * 4 + self.seen.capacity() * 4
    }

    /// Judges `x` (the recent mean) at `time` (Unix seconds), with `bins` phases per day and
    /// `per_day` events per day, then learns it. Returns `|x − centre| / spread` once the
    /// phase is warm (`None` before, and for a time that is not finite); `floor` is added to
    /// the spread.
    pub fn observe(
        &mut self,
        time: f64,
        x: f64,
        bins: usize,
        per_day: usize,
        floor: f64,
    ) -> Option<f64> {
        let b = phase(time, bins)?;
        if self.center.is_empty() {
            self.center = vec![0.0; 2 * bins];
            self.spread = vec![0.0; 2 * bins];
            self.seen = vec![0; 2 * bins];
        }
        let per_visit = (per_day as f64 / bins as f64).max(1.0);
        let (c, s, n) = (self.center[b], f64::from(self.spread[b]), self.seen[b]);
        let seen_days = f64::from(n) / per_visit;
        let stat = (seen_days >= WARM).then(|| (x - c).abs() / (s + floor));
        // Exact means while few days are seen, then exponential forgetting.
        let rate = (1.0 / (f64::from(n) + 1.0)).max(1.0 / (MEMORY * per_visit));
        let dev = if n == 0 {
            0.0
        } else if s > 0.0 && seen_days >= WARM {
            (x - c).clamp(-CLIP * s, CLIP * s)
        } else {
            x - c
        };
        self.center[b] = if n == 0 { x } else { c + rate * dev };
        if n > 0 {
            self.spread[b] = (s + rate * (dev.abs() - s)) as f32;
        }
        self.seen[b] = n.saturating_add(1);
        stat
    }

    /// Checks a deserialized state for `bins` phases per day.
    ///
    /// # Errors
    /// [`crate::Error::State`] for lengths that do not match, or values that are not finite.
    pub fn validate(&self, bins: usize) -> crate::Result<()> {
        let n = self.center.len();
        let sized = (n == 0 || n == 2 * bins) && self.spread.len() == n && self.seen.len() == n;
        let finite = self.center.iter().all(|v| v.is_finite())
            && self.spread.iter().all(|v| v.is_finite() && *v >= 0.0);
        if !(sized && finite) {
            return Err(crate::Error::state(
                "likelihood",
                "likelihood phases are inconsistent",
            ));
        }
        Ok(())
    }
}

impl Default for Phases {
    fn default() -> Self {
        Phases::new()
    }
}

/// The phase of `time` (Unix seconds, UTC) among `2 · bins`: weekday phases `0..bins`,
/// weekend ones `bins..2·bins`.
fn phase(time: f64, bins: usize) -> Option<usize> {
    if !time.is_finite() || bins == 0 {
        return None;
    }
    let days = (time / 86_400.0).floor();
    let of_day = (time - days * 86_400.0) / 86_400.0;
    // 1970-01-01 was a Thursday: day 0 is weekday 4 (Sunday 0).
    let weekday = (days + 4.0).rem_euclid(7.0) as usize;
    let weekend = matches!(weekday, 0 | 6);
    let bin = ((of_day * bins as f64) as usize).min(bins - 1);
    Some(bin + if weekend { bins } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_split_the_day_and_the_weekend() {
        // 2014-04-05 was a Saturday, 2014-04-07 a Monday.
        let sat = 1_396_656_000.0;
        let mon = sat + 2.0 * 86_400.0;
        assert_eq!(phase(mon, 24), Some(0));
        assert_eq!(phase(mon + 3_600.0 * 13.5, 24), Some(13));
        assert_eq!(phase(sat + 86_399.0, 24), Some(47));
        assert_eq!(phase(sat - 1.0, 24), Some(23)); // Friday, 23:59:59
        assert_eq!(phase(f64::NAN, 24), None);
    }

    #[test]
    fn a_dip_at_the_usual_time_is_judged_against_that_phase_alone() {
        // Hourly events; weekdays follow a daily cycle of amplitude 10, weekends sit at 0.
        let mut p = Phases::new();
        let start = 1_396_828_800.0; // a Monday
        let value = |h: usize| {
            let day = (h / 24 + 1) % 7; // 0 = Sunday
            if matches!(day, 0 | 6) {
                0.0
            } else {
                10.0 * (2.0 * std::f64::consts::PI * (h % 24) as f64 / 24.0).sin()
            }
        };
        let noise = |h: usize| ((h * 7919) % 13) as f64 / 13.0 - 0.5;
        let mut usual = 0.0f64;
        for h in 0..24 * 7 * 4 {
            let t = start + h as f64 * 3_600.0;
            if let Some(s) = p.observe(t, value(h) + noise(h), 24, 24, 1e-3) {
                usual = usual.max(s);
            }
        }
        assert!(usual < 8.0, "{usual}");
        // Monday noon of week 5, the cycle's peak (~0 at 6 a.m. would be 10 below): a dip to
        // the weekend's level, well inside the series' range.
        let h = 24 * 7 * 4 + 6;
        let t = start + h as f64 * 3_600.0;
        let dip = p.observe(t, 0.0, 24, 24, 1e-3).unwrap();
        assert!(dip > 2.0 * usual && dip > 10.0, "{dip} vs {usual}");
        // The dip moved the phase by at most CLIP spreads' worth of one event.
        assert!(p.validate(24).is_ok());
        assert!(p.validate(12).is_err());
    }
}
