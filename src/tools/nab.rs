//! Anomaly detection over a Numenta Anomaly Benchmark (NAB) style data tree.
//!
//! A NAB data tree holds `timestamp,value` CSV files in category folders. For every file,
//! [`score_file`] runs a fresh [`Pipeline`] inline (deterministic) and writes a result file
//! `timestamp,value,anomaly_score` with one row per data row, in the same folder and under
//! the same name below the output directory. The score is the pipeline's anomaly score mapped
//! into `[0, 1]` by [`AnomalyKind::unit`]. Nothing looks ahead: row `i`'s score depends only
//! on rows `0..=i`.
//!
//! ```no_run
//! use tbptt::tools::nab;
//! use tbptt::detect::pipeline::PipelineConfig;
//! let files = nab::find_files("data".as_ref())?;
//! for rel in &files {
//!     nab::score_file(&PipelineConfig::default(), "data".as_ref(), "results".as_ref(), rel)?;
//! }
//! # Ok::<(), tbptt::tools::nab::NabError>(())
//! ```

use crate::detect::anomaly::AnomalyKind;
use crate::detect::pipeline::{Pipeline, PipelineConfig};
use crate::event::Event;
use crate::io::format::parse_time;
use std::io::Write;
use std::path::{Path, PathBuf};

/// What can go wrong with a NAB tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NabError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file is not a `timestamp,value` CSV.
    #[error("{path}: line {line}: {field}: {reason}")]
    Parse {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field at fault (`header`, `timestamp` or `value`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The configuration is invalid or the pipeline refused an event.
    #[error("{path}: {source}")]
    Engine {
        /// The data file.
        path: PathBuf,
        /// The engine's error.
        source: crate::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NabError + '_ {
    move |source| NabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One NAB data file: the timestamps as written, their times in seconds, and the values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataFile {
    /// The timestamp field of each row, as written.
    pub stamps: Vec<String>,
    /// Each row's time, in seconds since the Unix epoch.
    pub times: Vec<f64>,
    /// Each row's value.
    pub values: Vec<f64>,
}

/// Every `.csv` file below `dir`, as paths relative to it, sorted.
///
/// # Errors
/// [`NabError::Io`] if a folder cannot be read.
pub fn find_files(dir: &Path) -> Result<Vec<PathBuf>, NabError> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), NabError> {
        let here = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        for entry in std::fs::read_dir(&here).map_err(io(&here))? {
            let entry = entry.map_err(io(&here))?;
            let name = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(io(&here))?;
            if kind.is_dir() {
                walk(root, &name, out)?;
            } else if name.extension().is_some_and(|e| e == "csv") {
                out.push(name);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// Parses a `timestamp,value` CSV (a header naming both columns, in any order, other columns
/// ignored).
///
/// # Errors
/// [`NabError::Parse`] naming the line and field of the first bad row.
pub fn parse_series(path: &Path, text: &str) -> Result<DataFile, NabError> {
    let err = |line: usize, field, reason: String| NabError::Parse {
        path: path.to_path_buf(),
        line: line as u64 + 1,
        field,
        reason,
    };
    let mut lines = text.lines().enumerate();
    let (_, header) = lines
        .next()
        .ok_or_else(|| err(0, "header", "the file is empty".into()))?;
    let names: Vec<&str> = header
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect();
    let find = |want: &str| names.iter().position(|n| *n == want);
    let (Some(ti), Some(vi)) = (find("timestamp"), find("value")) else {
        return Err(err(
            0,
            "header",
            format!("expected columns timestamp and value, got {header:?}"),
        ));
    };
    let mut s = DataFile::default();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != names.len() {
            return Err(err(
                n,
                "row",
                format!("{} fields, the header has {}", fields.len(), names.len()),
            ));
        }
        let stamp = fields[ti].trim().trim_matches('"');
        let time = parse_time(stamp)
            .ok_or_else(|| err(n, "timestamp", format!("{stamp:?} is not a time")))?;
        let raw = fields[vi].trim().trim_matches('"');
        let value = raw
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| err(n, "value", format!("{raw:?} is not a finite number")))?;
        s.stamps.push(stamp.to_string());
        s.times.push(time);
        s.values.push(value);
    }
    Ok(s)
}

/// The anomaly score in `[0, 1]` of every row of `series`, from a fresh pipeline with
/// `config` trained inline (the `background` setting is ignored).
///
/// # Errors
/// [`crate::Error`] if the configuration is invalid.
pub fn score_series(config: &PipelineConfig, series: &DataFile) -> crate::Result<Vec<f64>> {
    let mut config = config.clone();
    config.background = false;
    let kind: AnomalyKind = config.anomaly.kind;
    let mut pipeline = Pipeline::new(config)?;
    let mut ev = Event::new();
    let mut scores = Vec::with_capacity(series.values.len());
    for (t, v) in series.times.iter().zip(&series.values) {
        ev.values.clear();
        ev.values.push(*v);
        ev.time = Some(*t);
        let out = pipeline.process(&ev)?;
        scores.push(kind.unit(out.score));
    }
    Ok(scores)
}

/// Scores the data file `data_dir/rel` and writes `out_dir/rel` (folders created as needed).
/// Returns the number of rows.
///
/// # Errors
/// [`NabError`] naming the file, and the line and field for bad data.
pub fn score_file(
    config: &PipelineConfig,
    data_dir: &Path,
    out_dir: &Path,
    rel: &Path,
) -> Result<usize, NabError> {
    let input = data_dir.join(rel);
    let text = std::fs::read_to_string(&input).map_err(io(&input))?;
    let series = parse_series(&input, &text)?;
    let scores = score_series(config, &series).map_err(|source| NabError::Engine {
        path: input.clone(),
        source,
    })?;
    let output = out_dir.join(rel);
    if let Some(parent) = output.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let file = std::fs::File::create(&output).map_err(io(&output))?;
    let mut w = std::io::BufWriter::new(file);
    let mut write = || -> std::io::Result<()> {
        writeln!(w, "timestamp,value,anomaly_score")?;
        for ((stamp, v), s) in series.stamps.iter().zip(&series.values).zip(&scores) {
            writeln!(w, "{stamp},{v},{s}")?;
        }
        w.flush()
    };
    write().map_err(io(&output))?;
    Ok(scores.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_line_and_field_of_bad_rows() {
        let p = Path::new("x.csv");
        let s = parse_series(
            p,
            "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,2\n",
        )
        .unwrap();
        assert_eq!(s.values, vec![1.5, 2.0]);
        assert_eq!(s.times[1] - s.times[0], 300.0);
        let e = parse_series(p, "timestamp,value\n2014-04-01 00:00:00,abc\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.csv: line 2: value: \"abc\" is not a finite number"
        );
        let e = parse_series(p, "timestamp,value\nyesterday,1\n").unwrap_err();
        assert!(e.to_string().contains("line 2: timestamp"), "{e}");
        let e = parse_series(p, "time,v\n").unwrap_err();
        assert!(e.to_string().contains("line 1: header"), "{e}");
        let e = parse_series(p, "").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn every_row_gets_a_score_in_the_unit_interval() {
        let mut s = DataFile::default();
        for t in 0..600 {
            s.stamps.push(t.to_string());
            s.times.push(t as f64 * 300.0);
            s.values.push(if t == 500 {
                50.0
            } else {
                (t as f64 * 0.1).sin()
            });
        }
        let scores = score_series(&PipelineConfig::default(), &s).unwrap();
        assert_eq!(scores.len(), 600);
        assert!(scores.iter().all(|v| (0.0..=1.0).contains(v)));
        let confirm = crate::detect::anomaly::LikelihoodConfig::default().confirm;
        assert!(
            scores[500 + confirm] > 0.9,
            "{:?}",
            &scores[500..=500 + confirm]
        );
    }
}
