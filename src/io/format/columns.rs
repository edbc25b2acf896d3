//! What a decoder found in its input: the [`Columns`] the first record fixed.

use super::layout::Layout;
use super::time::TimeStyle;

/// The columns of an input, fixed by its first record: which column is the time (and how it
/// is written), which is the key, and the names of the inputs and targets. Output uses them
/// to name its columns after the input's (`forecast_cpu`) and to write times as the input did.
///
/// Columns without a name (CSV without a header, JSON arrays) are named by their position,
/// `0`, `1`, ...
///
/// # Example
/// ```
/// use tbptt::event::Event;
/// use tbptt::io::format::{Decoded, DecoderConfig, TimeStyle};
///
/// let mut decoder = DecoderConfig::default().build()?;
/// let mut event = Event::new();
/// assert!(decoder.columns().is_none());
/// decoder.decode_line(b"timestamp,cpu", 1, &mut event)?;
/// decoder.decode_line(b"2024-01-02 03:04:05,0.5", 2, &mut event)?;
/// let columns = decoder.columns().unwrap();
/// assert_eq!(columns.time.as_deref(), Some("timestamp"));
/// assert_eq!(columns.inputs, ["cpu"]);
/// assert!(matches!(columns.time_style, TimeStyle::Iso(_)));
/// assert_eq!(columns.describe(), "time `timestamp` (ISO 8601), values `cpu`");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Columns {
    /// The time column's name, if there is one.
    pub time: Option<String>,
    /// How the first record wrote its time ([`TimeStyle::Number`] without a time column).
    pub time_style: TimeStyle,
    /// The key column's name, if there is one.
    pub key: Option<String>,
    /// The input columns' names, in the order of [`Event::values`](crate::event::Event).
    pub inputs: Vec<String>,
    /// The target columns' names (empty when the inputs are forecast).
    pub targets: Vec<String>,
    /// Input columns whose first value looks like a Unix time: they are learned as values,
    /// which is rarely what was meant (`--time NAME` takes one as the time).
    pub epoch_inputs: Vec<String>,
    /// Whether the columns have names (a CSV header, object fields). Without, the names
    /// above are the columns' positions in the input.
    pub named: bool,
}

impl Columns {
    pub(crate) fn of(layout: &Layout) -> Columns {
        let key = layout
            .routes
            .iter()
            .position(|r| r.key)
            .and_then(|i| layout.labels.get(i).cloned());
        Columns {
            time: layout.time_label.clone(),
            time_style: layout.time_style,
            key,
            inputs: layout.input_labels.clone(),
            targets: layout.target_labels.clone(),
            epoch_inputs: layout.epoch_inputs.clone(),
            named: layout.named,
        }
    }

    /// The names of what is forecast: the targets when there are any, else the inputs;
    /// `None` when the columns have no names (output then numbers them from 0).
    pub fn forecast_names(&self) -> Option<&[String]> {
        if !self.named {
            None
        } else if self.targets.is_empty() {
            Some(&self.inputs)
        } else {
            Some(&self.targets)
        }
    }

    /// One line for the start of a run, such as
    /// ``time `ts` (Unix seconds), key `host`, values `cpu`, `mem` ``.
    pub fn describe(&self) -> String {
        let quote = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        match &self.time {
            Some(t) => parts.push(format!("time `{t}` ({})", self.time_style.name())),
            None => parts.push("no time column".to_string()),
        }
        if let Some(k) = &self.key {
            parts.push(format!("key `{k}`"));
        }
        parts.push(format!("values {}", quote(&self.inputs)));
        if !self.targets.is_empty() {
            parts.push(format!("targets {}", quote(&self.targets)));
        }
        parts.join(", ")
    }
}
