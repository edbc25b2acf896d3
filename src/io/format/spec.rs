//! Column selection: which input columns become values, targets, the time and the key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One column, by name (resolved through the CSV header or the JSON/MessagePack field names)
/// or by 0-based position.
///
/// Parsing (`"2".parse()`) gives an [`Index`](Selector::Index) for an all-digit string and a
/// [`Name`](Selector::Name) otherwise, so a column literally named `2024` can only be chosen
/// by its position. In a config file a selector is a string (name) or an integer (index).
///
/// # Example
/// ```
/// use tbptt::io::format::Selector;
///
/// assert_eq!("2".parse::<Selector>()?, Selector::Index(2));
/// assert_eq!(" cpu ".parse::<Selector>()?, Selector::Name("cpu".into()));
/// assert_eq!(Selector::Index(2).to_string(), "2");
/// # Ok::<(), tbptt::io::format::SelectorError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Selector {
    /// A 0-based column position.
    Index(usize),
    /// A column name, compared exactly (case-sensitive) with the header.
    Name(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Index(i) => write!(f, "{i}"),
            Selector::Name(n) => f.write_str(n),
        }
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    /// # Errors
    /// [`SelectorError`] for an empty (or all-blank) selector or an index that overflows
    /// `usize`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(SelectorError::new(s, "empty column selector"));
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return t
                .parse()
                .map(Selector::Index)
                .map_err(|_| SelectorError::new(s, "column index too large"));
        }
        Ok(Selector::Name(t.to_owned()))
    }
}

/// A column list such as `a,,b` or `9999999999999999999999` could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad column list `{input}`: {reason}")]
pub struct SelectorError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl SelectorError {
    fn new(input: &str, reason: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            reason,
        }
    }
}

impl From<SelectorError> for crate::Error {
    fn from(e: SelectorError) -> Self {
        crate::Error::Config {
            field: "columns",
            reason: e.to_string(),
        }
    }
}

/// Which columns of the input become [`Event`](crate::event::Event) values, targets, time and
/// key.
///
/// With nothing chosen (the default), every column is an input, except that a column whose
/// first data value is not a number but is a timestamp (see
/// [`parse_time`](super::parse_time)) becomes the time column. For JSON/MessagePack objects the
/// default inputs are the numeric fields of the first record, in their order, a field named
/// `time`, `timestamp` or `ts` is the time and a field named `key` is the key.
///
/// If only targets are chosen, every other column (except time and key) is an input. A column
/// may be both an input and a target.
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::{ColumnSpec, DecoderConfig, Selector};
///
/// // `--columns pace --target 2 --time timestamp`
/// let columns = ColumnSpec::from_flags(Some("pace"), Some("2"), Some("timestamp"), None)?;
/// assert_eq!(columns.targets, [Selector::Index(2)]);
/// let mut decoder = DecoderConfig { columns, ..Default::default() }.build()?;
/// let mut event = Event::new();
/// decoder.decode_line(b"timestamp,pace,distance", 1, &mut event)?;
/// decoder.decode_line(b"1970-01-01 00:00:05,30.5,0.0", 2, &mut event)?;
/// assert_eq!((event.time, event.values.as_slice(), event.targets.as_slice()),
///            (Some(5.0), &[30.5][..], &[0.0][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnSpec {
    /// Input columns, in the order they appear in [`Event::values`](crate::event::Event).
    /// Default: empty, meaning all columns except time, key and targets.
    pub inputs: Vec<Selector>,
    /// Target columns, in the order they appear in
    /// [`Event::targets`](crate::event::Event). Default: empty (no targets).
    pub targets: Vec<Selector>,
    /// The time column. Default: `None` (auto-detected if `auto_time`).
    pub time: Option<Selector>,
    /// The key column. Default: `None` (no key; for objects a field named `key`).
    pub key: Option<Selector>,
    /// Whether to detect the time column when `time` is `None`. Default: `true`.
    pub auto_time: bool,
}

impl Default for ColumnSpec {
    fn default() -> Self {
        Self {
            inputs: Vec::new(),
            targets: Vec::new(),
            time: None,
            key: None,
            auto_time: true,
        }
    }
}

impl ColumnSpec {
    /// Parses a comma-separated list of selectors, such as `cpu,mem` or `0,2`. Blanks around
    /// items are ignored; an empty or blank string gives an empty list (the default).
    ///
    /// # Errors
    /// [`SelectorError`] for an empty item (`a,,b`, a trailing comma) or an index too large.
    ///
    /// # Example
    /// ```
    /// use tbptt::io::format::{ColumnSpec, Selector};
    ///
    /// let list = ColumnSpec::parse_list("cpu, 2")?;
    /// assert_eq!(list, [Selector::Name("cpu".into()), Selector::Index(2)]);
    /// assert!(ColumnSpec::parse_list("a,,b").is_err());
    /// # Ok::<(), tbptt::io::format::SelectorError>(())
    /// ```
    pub fn parse_list(s: &str) -> Result<Vec<Selector>, SelectorError> {
        if s.trim().is_empty() {
            return Ok(Vec::new());
        }
        s.split(',')
            .map(|item| {
                item.parse().map_err(|e: SelectorError| SelectorError {
                    input: s.to_owned(),
                    reason: e.reason,
                })
            })
            .collect()
    }

    /// Builds a spec from the command-line flags `--columns`, `--target`, `--time` and `--key`
    /// (each optional), with time auto-detection on.
    ///
    /// # Errors
    /// [`SelectorError`] if a list or a single selector does not parse.
    pub fn from_flags(
        columns: Option<&str>,
        target: Option<&str>,
        time: Option<&str>,
        key: Option<&str>,
    ) -> Result<Self, SelectorError> {
        Ok(Self {
            inputs: columns
                .map(Self::parse_list)
                .transpose()?
                .unwrap_or_default(),
            targets: target
                .map(Self::parse_list)
                .transpose()?
                .unwrap_or_default(),
            time: time.map(str::parse).transpose()?,
            key: key.map(str::parse).transpose()?,
            auto_time: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_list_names_and_indices() {
        assert_eq!(
            ColumnSpec::parse_list("a, 0 ,b2").unwrap(),
            [
                Selector::Name("a".into()),
                Selector::Index(0),
                Selector::Name("b2".into())
            ]
        );
        assert_eq!(ColumnSpec::parse_list("  ").unwrap(), []);
        let e = ColumnSpec::parse_list("a,").unwrap_err();
        assert_eq!(e.to_string(), "bad column list `a,`: empty column selector");
        assert!(ColumnSpec::parse_list("99999999999999999999999").is_err());
    }

    #[test]
    fn selectors_deserialize_from_strings_and_integers() {
        let spec: ColumnSpec =
            serde_json::from_str(r#"{"inputs": ["cpu", 2], "time": "ts"}"#).unwrap();
        assert_eq!(
            spec.inputs,
            [Selector::Name("cpu".into()), Selector::Index(2)]
        );
        assert_eq!(spec.time, Some(Selector::Name("ts".into())));
        assert!(spec.auto_time);
        assert!(serde_json::from_str::<ColumnSpec>(r#"{"input": []}"#).is_err());
    }

    #[test]
    fn from_flags() {
        let s = ColumnSpec::from_flags(Some("a,b"), None, Some("0"), Some("host")).unwrap();
        assert_eq!(s.inputs.len(), 2);
        assert!(s.targets.is_empty());
        assert_eq!(s.time, Some(Selector::Index(0)));
        assert_eq!(s.key, Some(Selector::Name("host".into())));
        assert!(ColumnSpec::from_flags(None, None, Some(""), None).is_err());
    }
}
