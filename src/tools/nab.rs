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
use crate::io::format::{
    ColumnSpec, DecoderConfig, ParseError, Position, ReadError, Reader, Selector, TimeStyle,
};
use std::io::{Read, Write};
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

/// One NAB data file: the timestamps, their times in seconds, and the values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DataFile {
    /// Each row's timestamp, in the style of the file's first one.
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
/// ignored), as [`read_data_file`] does.
///
/// # Errors
/// [`NabError::Parse`] naming the line and field of the first bad row.
pub fn parse_series(path: &Path, text: &str) -> Result<DataFile, NabError> {
    read_data_file(path, text.as_bytes())
}

/// Reads a `timestamp,value` CSV from `input` through the crate's CSV decoder
/// ([`Reader`]): a header naming both columns, in any order, other columns ignored. Each
/// row's stamp is written back in the style of the file's first one, which reproduces NAB's
/// `YYYY-MM-DD HH:MM:SS` stamps exactly.
///
/// # Errors
/// [`NabError::Parse`] naming the line and field of the first bad row (a missing value is
/// one: NAB rows are never skipped), [`NabError::Io`] if `input` cannot be read.
pub fn read_data_file<R: Read>(path: &Path, input: R) -> Result<DataFile, NabError> {
    let config = DecoderConfig {
        columns: ColumnSpec {
            inputs: vec![Selector::Name("value".into())],
            time: Some(Selector::Name("timestamp".into())),
            ..ColumnSpec::default()
        },
        header: Some(true),
        ..DecoderConfig::default()
    };
    let mut reader = Reader::new(input, &config).map_err(|source| NabError::Engine {
        path: path.to_path_buf(),
        source,
    })?;
    let mut s = DataFile::default();
    let mut ev = Event::new();
    let mut style = None;
    loop {
        match reader.read_event(&mut ev) {
            Ok(true) => {}
            Ok(false) if s.values.is_empty() => return no_rows(path, reader.header(), s),
            Ok(false) => return Ok(s),
            Err(ReadError::Io(source)) => return Err(io(path)(source)),
            Err(ReadError::Parse(e)) => return Err(parse_error(path, &e)),
        }
        let (Some(time), [value]) = (ev.time, ev.values.as_slice()) else {
            let line = reader.position().line().unwrap_or(0);
            return Err(bad_row(path, line, "row", "no timestamp and value".into()));
        };
        let style: TimeStyle = *style
            .get_or_insert_with(|| reader.columns().map_or(TimeStyle::Number, |c| c.time_style));
        let mut stamp = String::new();
        // Writing into a String cannot fail.
        _ = style.write(time, &mut stamp);
        s.stamps.push(stamp);
        s.times.push(time);
        s.values.push(*value);
    }
}

/// A file without data rows: empty, or a header only (which must name both columns).
fn no_rows(path: &Path, header: Option<&[String]>, s: DataFile) -> Result<DataFile, NabError> {
    match header {
        None => Err(bad_row(path, 1, "header", "the file is empty".into())),
        Some(h)
            if ["timestamp", "value"]
                .iter()
                .all(|c| h.iter().any(|n| n == c)) =>
        {
            Ok(s)
        }
        Some(h) => Err(bad_row(
            path,
            1,
            "header",
            format!("expected columns timestamp and value, got {h:?}"),
        )),
    }
}

fn bad_row(path: &Path, line: u64, field: &'static str, reason: String) -> NabError {
    NabError::Parse {
        path: path.to_path_buf(),
        line,
        field,
        reason,
    }
}

/// The decoder's rejection in NAB's terms: the line, the field (`header`, `timestamp`,
/// `value` or `row`) and what is wrong with it.
fn parse_error(path: &Path, e: &ParseError) -> NabError {
    let line = e.position().and_then(Position::line).unwrap_or(1);
    let field = |column: &str| {
        if column == "timestamp" {
            "timestamp"
        } else {
            "value"
        }
    };
    let (field, reason) = match e {
        ParseError::NotANumber { column, value, .. } => {
            (field(column), format!("{value:?} is not a finite number"))
        }
        ParseError::NonFinite { column, .. } => (field(column), "not a finite number".into()),
        ParseError::Missing { column, .. } => (field(column), "missing value".into()),
        ParseError::BadTimestamp { value, .. } => ("timestamp", format!("{value:?} is not a time")),
        ParseError::Arity { expected, got, .. } => {
            ("row", format!("{got} fields, the header has {expected}"))
        }
        ParseError::UnknownColumn { header, .. } => (
            "header",
            format!("expected columns timestamp and value, got {header:?}"),
        ),
        other => {
            // The decoder's message without the position this error already names.
            let text = other.to_string();
            let pos = other
                .position()
                .map(|p| format!("{p}: "))
                .unwrap_or_default();
            ("row", text.strip_prefix(&pos).unwrap_or(&text).to_string())
        }
    };
    bad_row(path, line, field, reason)
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
    let file = std::fs::File::open(&input).map_err(io(&input))?;
    let series = read_data_file(&input, file)?;
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
    fn columns_in_any_order_and_stamps_as_the_file_writes_them() {
        let p = Path::new("x.csv");
        let s = parse_series(
            p,
            "value,extra,timestamp\n1.5,a,2014-04-01 00:00:00\n\n\"2\",b,2014-04-01 00:05:00\n",
        )
        .unwrap();
        assert_eq!(s.values, [1.5, 2.0]);
        assert_eq!(s.stamps, ["2014-04-01 00:00:00", "2014-04-01 00:05:00"]);
        let s = parse_series(p, "timestamp,value\n2014-04-01T00:00:00Z,3\n").unwrap();
        assert_eq!(s.stamps, ["2014-04-01T00:00:00Z"]);
        assert_eq!(
            parse_series(p, "timestamp,value\n").unwrap(),
            DataFile::default()
        );
        let e = parse_series(p, "timestamp,value\n2014-04-01 00:00:00,1,9\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.csv: line 2: row: 3 fields, the header has 2"
        );
        let e = parse_series(p, "timestamp,value\n2014-04-01 00:00:00,\n").unwrap_err();
        assert_eq!(e.to_string(), "x.csv: line 2: value: missing value");
        let e = parse_series(p, "timestamp,value\n2014-04-01 00:00:00,inf\n").unwrap_err();
        assert!(e.to_string().starts_with("x.csv: line 2: value: "), "{e}");
        let e = parse_series(p, "timestamp,v\n2014-04-01 00:00:00,1\n").unwrap_err();
        assert!(e.to_string().contains("line 1: header"), "{e}");
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
        // The spike is an alarm on its own event (above the threshold at once), once.
        let confirm = crate::detect::anomaly::LikelihoodConfig::default().confirm;
        assert!(scores[500] > 0.9, "{:?}", &scores[500..=500 + confirm]);
        assert!(scores[501..=500 + confirm].iter().all(|s| *s == 0.0));
    }
}
