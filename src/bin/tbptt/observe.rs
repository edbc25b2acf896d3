//! The command's observers of a run: the progress bar of `replay` and the `--plot` file.

use tbptt::detect::pipeline::OutputRecord;
use tbptt::detect::trace::{ForecastTrace, PLOT_POINTS};
use tbptt::event::Event;
use tbptt::service::run::{Observer, ObserverError};

/// A progress bar on stderr, one step per input line (accepted or rejected).
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    /// A bar over `len` lines (a spinner when unknown); `None` when stderr is not a terminal
    /// or the style does not parse.
    pub fn new(len: Option<u64>) -> Option<Self> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = match len {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} lines (eta {eta})",
        )
        .ok()?;
        bar.set_style(style);
        Some(Progress { bar })
    }
}

impl Observer for Progress {
    fn accepted(&mut self, _: &Event, _: &OutputRecord) {
        self.bar.inc(1);
    }

    fn rejected(&mut self) {
        self.bar.inc(1);
    }

    fn stopped(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Collects the run's forecasts and draws them, with the anomaly score, to an SVG file when
/// the run ends.
pub struct Plot {
    trace: ForecastTrace,
    title: String,
    path: std::path::PathBuf,
}

impl Plot {
    /// A plot to `path` titled `title`.
    pub fn new(path: std::path::PathBuf, title: String) -> Self {
        Plot {
            trace: ForecastTrace::new(PLOT_POINTS),
            title,
            path,
        }
    }
}

impl Observer for Plot {
    fn accepted(&mut self, event: &Event, record: &OutputRecord) {
        let actual = if event.targets.is_empty() {
            &event.values
        } else {
            &event.targets
        };
        self.trace.push(record, actual);
    }

    fn finished(&mut self) -> Result<(), ObserverError> {
        tbptt::tools::plot::forecast_svg(&self.trace, &self.title, &self.path)?;
        Ok(())
    }
}
