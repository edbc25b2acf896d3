//! A [`ColumnSpec`] resolved against a header (or the first record): where each input column
//! goes in the [`Event`](crate::event::Event).

use std::collections::HashMap;

use super::error::ParseError;
use super::spec::{ColumnSpec, Selector};
use super::time::{parse_iso8601, TimeStyle, TimeUnit};

/// Field names that are taken as the time of an object record by default.
pub(crate) const TIME_NAMES: [&str; 6] = ["time", "timestamp", "ts", "date", "datetime", "year"];
/// Field names of the input array in the structured object form.
pub(crate) const VALUES_NAMES: [&str; 2] = ["values", "x"];
/// Field names of the target array (or scalar) in the structured object form.
pub(crate) const TARGET_NAMES: [&str; 3] = ["target", "targets", "y"];
/// Field name that is taken as the key of an object record by default.
pub(crate) const KEY_NAME: &str = "key";

/// What the first record's value of a column looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A number, or text that parses as one.
    Number,
    /// An integer that looks like a Unix time between 2000 and 2100, in this unit.
    Epoch(TimeUnit),
    /// Empty, `NA`, `null`, ...
    Missing,
    /// Text that is an ISO-8601 timestamp (and not a number), written in this style.
    Time(TimeStyle),
    /// Any other text.
    Text,
    /// An array of this length.
    Array(usize),
    /// A boolean, a map, bytes.
    Other,
}

impl Kind {
    /// Classifies a text field.
    pub(crate) fn of_text(s: &str) -> Kind {
        match parse_number(s) {
            Number::Value(v) => Kind::of_number(v),
            Number::NonFinite => Kind::Number,
            Number::Missing => Kind::Missing,
            Number::Invalid if parse_iso8601(s.trim()).is_some() => Kind::Time(TimeStyle::of(s)),
            Number::Invalid => Kind::Text,
        }
    }
}

impl Kind {
    /// Classifies a number: [`Kind::Epoch`] when it looks like a Unix time.
    pub(crate) fn of_number(v: f64) -> Kind {
        TimeUnit::of_epoch(v).map_or(Kind::Number, Kind::Epoch)
    }

    /// A number, whether or not it looks like a time.
    pub(crate) fn is_number(self) -> bool {
        matches!(self, Kind::Number | Kind::Epoch(_))
    }

    /// How a time column of this kind writes its times.
    fn time_style(self) -> TimeStyle {
        match self {
            Kind::Time(style) => style,
            Kind::Epoch(unit) => TimeStyle::Epoch(unit),
            _ => TimeStyle::Number,
        }
    }
}

/// A text field read as a number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Number {
    Value(f64),
    Missing,
    NonFinite,
    Invalid,
}

/// Whether (trimmed) text marks a missing value: empty, `NA`, `N/A`, `null` or `NULL`.
pub(crate) fn is_missing(t: &str) -> bool {
    matches!(t, "" | "NA" | "N/A" | "null" | "NULL")
}

/// Reads a text field as a number; blanks around it are ignored.
pub(crate) fn parse_number(s: &str) -> Number {
    let t = s.trim();
    if is_missing(t) {
        return Number::Missing;
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Number::Value(v),
        Ok(_) => Number::NonFinite,
        Err(_) => Number::Invalid,
    }
}

/// Where one source column goes. A column can feed several roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// Slot in `Event::values`.
    pub input: Option<usize>,
    /// Slot in `Event::targets`.
    pub target: Option<usize>,
    /// The column is the time.
    pub time: bool,
    /// The column is the key.
    pub key: bool,
}

impl Route {
    fn is_used(&self) -> bool {
        self.input.is_some() || self.target.is_some() || self.time || self.key
    }
}

/// How records are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// CSV rows and JSON/MessagePack arrays: columns by position.
    Positional,
    /// Objects with a `values` array (positional) plus named `time`, `key`, `target`.
    Structured,
    /// Objects whose fields are the columns.
    Flat,
}

/// An object field's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    /// A column: index into `Layout::routes`.
    Column(usize),
    /// The positional `values` array (structured form).
    Values,
    /// The `target` array or scalar (structured form).
    Targets,
}

/// A resolved column layout, fixed after the header or the first record.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub mode: Mode,
    /// `[0, width)`: positional columns; beyond: named columns of the structured form.
    pub routes: Vec<Route>,
    /// Column names for messages, one per route.
    pub labels: Vec<String>,
    /// Number of positional columns (the expected arity).
    pub width: usize,
    /// Object field names (flat and structured forms).
    pub fields: HashMap<String, Field>,
    /// Column name of each input slot.
    pub input_labels: Vec<String>,
    /// Column name of each target slot.
    pub target_labels: Vec<String>,
    /// Name of the time column, if there is one (then every record needs a time).
    pub time_label: Option<String>,
    /// How the first record wrote its time; numeric times are scaled by its
    /// [`scale`](TimeStyle::scale) into seconds.
    pub time_style: TimeStyle,
    /// Input columns whose first value looks like a Unix time (for a warning: they are
    /// learned as values).
    pub epoch_inputs: Vec<String>,
    /// Whether the columns have names (a CSV header, object fields), not only positions.
    pub named: bool,
}

/// Which defaults apply when the spec leaves a role open.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Auto {
    /// Default inputs are only the columns whose first value is a number or missing.
    pub numeric_only: bool,
    /// A column named time, timestamp, ts, date, datetime or year (in any case, with a number
    /// or timestamp) is the time.
    pub time_by_name: bool,
    /// The first column whose first value is a timestamp but not a number is the time.
    pub time_by_value: bool,
    /// A column named `key` is the key.
    pub key_by_name: bool,
    /// Without names, a first column of integer Unix times (followed by numbers) is the time.
    pub time_by_epoch: bool,
    /// A column named `arrival` (a recording's arrival time) is not a default input.
    pub skip_arrival: bool,
}

/// Resolves `spec` against positional columns with optional names (`header`) and the kinds
/// of the first data record's fields. The result is a [`Mode::Positional`] layout.
pub(crate) fn resolve(
    spec: &ColumnSpec,
    header: Option<&[String]>,
    kinds: &[Kind],
    auto: Auto,
) -> Result<Layout, ParseError> {
    let width = header.map_or(kinds.len(), <[String]>::len);
    let names: Vec<String> = match header {
        Some(h) => h.to_vec(),
        None => (0..width).map(|i| i.to_string()).collect(),
    };
    let kind = |i: usize| kinds.get(i).copied().unwrap_or(Kind::Other);
    let find = |sel: &Selector| -> Result<usize, ParseError> {
        let found = match sel {
            Selector::Index(i) => (*i < width).then_some(*i),
            Selector::Name(n) => names.iter().position(|h| h == n),
        };
        found.ok_or_else(|| ParseError::UnknownColumn {
            name: sel.to_string(),
            header: names.clone(),
        })
    };
    let find_all = |sels: &[Selector]| -> Result<Vec<usize>, ParseError> {
        let mut out: Vec<usize> = Vec::with_capacity(sels.len());
        for sel in sels {
            let i = find(sel)?;
            if out.contains(&i) {
                return Err(ParseError::DuplicateColumn {
                    name: sel.to_string(),
                });
            }
            out.push(i);
        }
        Ok(out)
    };

    let explicit_inputs = find_all(&spec.inputs)?;
    let targets = find_all(&spec.targets)?;
    let mut key = spec.key.as_ref().map(find).transpose()?;
    let explicit_time = spec.time.as_ref().map(find).transpose()?;
    let taken = |i: usize, key: Option<usize>| {
        explicit_inputs.contains(&i) || targets.contains(&i) || key == Some(i)
    };
    if key.is_none() && auto.key_by_name {
        key = (0..width).find(|&i| {
            names.get(i).is_some_and(|n| n == KEY_NAME)
                && (kind(i) == Kind::Text || kind(i).is_number())
                && !explicit_inputs.contains(&i)
                && !targets.contains(&i)
        });
    }
    let mut time = explicit_time;
    if time.is_none() && spec.auto_time {
        if auto.time_by_name {
            time = (0..width).find(|&i| {
                names
                    .get(i)
                    .is_some_and(|n| TIME_NAMES.iter().any(|t| n.eq_ignore_ascii_case(t)))
                    && (kind(i).is_number() || matches!(kind(i), Kind::Time(_)))
                    && !taken(i, key)
            });
        }
        if time.is_none() && auto.time_by_value {
            time = (0..width).find(|&i| matches!(kind(i), Kind::Time(_)) && !taken(i, key));
        }
        // Without names, a first column of integer Unix times followed by numbers is the
        // time: `1700000000,0.5` is an event at a time, not two values.
        if time.is_none() && auto.time_by_epoch && header.is_none() && width >= 2 {
            let rest_numeric = (1..width).any(|i| kind(i).is_number() && !taken(i, key));
            if matches!(kind(0), Kind::Epoch(_)) && rest_numeric && !taken(0, key) {
                time = Some(0);
            }
        }
    }
    let inputs = if spec.inputs.is_empty() {
        (0..width)
            .filter(|&i| {
                Some(i) != time
                    && Some(i) != key
                    && !targets.contains(&i)
                    && !(auto.skip_arrival && names.get(i).is_some_and(|n| n == "arrival"))
                    && (!auto.numeric_only || kind(i).is_number() || kind(i) == Kind::Missing)
            })
            .collect()
    } else {
        explicit_inputs
    };
    if inputs.is_empty() && targets.is_empty() {
        return Err(ParseError::NoColumns { header: names });
    }

    let mut routes = vec![Route::default(); width];
    for (slot, &i) in inputs.iter().enumerate() {
        if let Some(r) = routes.get_mut(i) {
            r.input = Some(slot);
        }
    }
    for (slot, &i) in targets.iter().enumerate() {
        if let Some(r) = routes.get_mut(i) {
            r.target = Some(slot);
        }
    }
    if let Some(r) = time.and_then(|i| routes.get_mut(i)) {
        r.time = true;
    }
    if let Some(r) = key.and_then(|i| routes.get_mut(i)) {
        r.key = true;
    }
    let label = |i: &usize| names.get(*i).cloned().unwrap_or_else(|| i.to_string());
    Ok(Layout {
        mode: Mode::Positional,
        width,
        input_labels: inputs.iter().map(label).collect(),
        target_labels: targets.iter().map(label).collect(),
        time_label: time.as_ref().map(label),
        time_style: time.map_or(TimeStyle::Number, |i| kind(i).time_style()),
        epoch_inputs: inputs
            .iter()
            .filter(|&&i| matches!(kind(i), Kind::Epoch(_)))
            .map(label)
            .collect(),
        named: header.is_some(),
        labels: names,
        routes,
        fields: HashMap::new(),
    })
}

/// The shape of the first JSON/MessagePack record, found by a discovery pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Discovered {
    /// An array with the kinds of its elements.
    Array(Vec<Kind>),
    /// An object with its fields in order.
    Object(Vec<(String, Kind)>),
}

/// Resolves `spec` for JSON/MessagePack records shaped like `first`.
pub(crate) fn resolve_record(spec: &ColumnSpec, first: &Discovered) -> Result<Layout, ParseError> {
    match first {
        Discovered::Array(kinds) => resolve(
            spec,
            None,
            kinds,
            Auto {
                time_by_value: true,
                ..Auto::default()
            },
        ),
        Discovered::Object(fields) => {
            let values = fields.iter().find_map(|(n, k)| match k {
                Kind::Array(w) if VALUES_NAMES.contains(&n.as_str()) => Some((n, *w)),
                _ => None,
            });
            match values {
                Some((name, width)) => resolve_structured(spec, fields, name, width),
                None => resolve_flat(spec, fields),
            }
        }
    }
}

fn resolve_flat(spec: &ColumnSpec, fields: &[(String, Kind)]) -> Result<Layout, ParseError> {
    let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
    let kinds: Vec<Kind> = fields.iter().map(|(_, k)| *k).collect();
    let auto = Auto {
        numeric_only: true,
        time_by_name: true,
        time_by_value: true,
        key_by_name: true,
        time_by_epoch: false,
        skip_arrival: true,
    };
    let mut layout = resolve(spec, Some(&names), &kinds, auto)?;
    layout.mode = Mode::Flat;
    for (i, (name, route)) in names.iter().zip(&layout.routes).enumerate() {
        if route.is_used() {
            layout
                .fields
                .entry(name.clone())
                .or_insert(Field::Column(i));
        }
    }
    Ok(layout)
}

fn resolve_structured(
    spec: &ColumnSpec,
    fields: &[(String, Kind)],
    values_name: &str,
    width: usize,
) -> Result<Layout, ParseError> {
    let field_names = || fields.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let kind_of = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, k)| *k);
    // Index selectors address the `values` array; named time/key address object fields.
    let by_index = |s: &Option<Selector>| match s {
        Some(Selector::Index(i)) => Some(Selector::Index(*i)),
        _ => None,
    };
    let positional = ColumnSpec {
        inputs: spec.inputs.clone(),
        targets: spec.targets.clone(),
        time: by_index(&spec.time),
        key: by_index(&spec.key),
        auto_time: false,
    };
    let kinds = vec![Kind::Number; width];
    let targets_from_field = spec.targets.is_empty();
    let mut layout = match resolve(&positional, None, &kinds, Auto::default()) {
        // `{"values": [], "target": ..}` is still rejected below if there is no target either.
        Err(ParseError::NoColumns { .. }) if targets_from_field => Layout {
            mode: Mode::Positional,
            routes: Vec::new(),
            labels: Vec::new(),
            width: 0,
            fields: HashMap::new(),
            input_labels: Vec::new(),
            target_labels: Vec::new(),
            time_label: None,
            time_style: TimeStyle::Number,
            epoch_inputs: Vec::new(),
            named: false,
        },
        other => other?,
    };
    layout.mode = Mode::Structured;
    for (i, l) in layout.labels.iter_mut().enumerate() {
        *l = format!("{values_name}[{i}]");
    }
    for l in layout
        .input_labels
        .iter_mut()
        .chain(&mut layout.target_labels)
    {
        *l = format!("{values_name}[{l}]");
    }
    if let Some(t) = &layout.time_label {
        layout.time_label = Some(format!("{values_name}[{t}]"));
    }
    layout.fields.insert(values_name.to_owned(), Field::Values);

    if targets_from_field {
        let target = fields.iter().find_map(|(n, k)| {
            if !TARGET_NAMES.contains(&n.as_str()) {
                return None;
            }
            match k {
                Kind::Array(m) => Some((n, *m, true)),
                k if k.is_number() || *k == Kind::Missing => Some((n, 1, false)),
                _ => None,
            }
        });
        if let Some((name, m, is_array)) = target {
            layout.target_labels = if is_array {
                (0..m).map(|j| format!("{name}[{j}]")).collect()
            } else {
                vec![name.clone()]
            };
            layout.fields.insert(name.clone(), Field::Targets);
        }
    }
    if layout.input_labels.is_empty() && layout.target_labels.is_empty() {
        return Err(ParseError::NoColumns {
            header: field_names(),
        });
    }

    let named = |layout: &mut Layout, name: &str, route: Route| {
        let idx = layout.routes.len();
        layout.routes.push(route);
        layout.labels.push(name.to_owned());
        layout.fields.insert(name.to_owned(), Field::Column(idx));
    };
    let unknown = |name: &str| ParseError::UnknownColumn {
        name: name.to_owned(),
        header: field_names(),
    };
    let time_route = Route {
        time: true,
        ..Route::default()
    };
    match &spec.time {
        Some(Selector::Name(n)) => {
            kind_of(n).ok_or_else(|| unknown(n))?;
            named(&mut layout, n, time_route);
            layout.time_label = Some(n.clone());
            layout.time_style = kind_of(n).map_or(TimeStyle::Number, Kind::time_style);
        }
        Some(Selector::Index(_)) => {}
        None if spec.auto_time => {
            let found = TIME_NAMES.iter().find_map(|n| {
                kind_of(n)
                    .filter(|k| k.is_number() || matches!(k, Kind::Time(_)))
                    .map(|k| (n, k))
            });
            if let Some((n, k)) = found {
                named(&mut layout, n, time_route);
                layout.time_label = Some((*n).to_owned());
                layout.time_style = k.time_style();
            }
        }
        None => {}
    }
    let key_route = Route {
        key: true,
        ..Route::default()
    };
    match &spec.key {
        Some(Selector::Name(n)) => {
            kind_of(n).ok_or_else(|| unknown(n))?;
            named(&mut layout, n, key_route);
        }
        Some(Selector::Index(_)) => {}
        None => {
            if kind_of(KEY_NAME).is_some_and(|k| k == Kind::Text || k.is_number()) {
                named(&mut layout, KEY_NAME, key_route);
            }
        }
    }
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn default_takes_all_but_a_timestamp_column() {
        let l = resolve(
            &ColumnSpec::default(),
            Some(&names(&["timestamp", "value"])),
            &[Kind::Time(TimeStyle::Number), Kind::Number],
            Auto {
                time_by_value: true,
                ..Auto::default()
            },
        )
        .unwrap();
        assert_eq!(l.input_labels, ["value"]);
        assert_eq!(l.time_label.as_deref(), Some("timestamp"));
        assert!(l.routes[0].time && l.routes[1].input == Some(0));
    }

    #[test]
    fn numeric_year_column_stays_an_input_without_name_detection() {
        let l = resolve(
            &ColumnSpec::default(),
            Some(&names(&["year", "volume"])),
            &[Kind::Number, Kind::Number],
            Auto {
                time_by_value: true,
                ..Auto::default()
            },
        )
        .unwrap();
        assert_eq!(l.input_labels, ["year", "volume"]);
        assert_eq!(l.time_label, None);
    }

    #[test]
    fn explicit_roles_and_errors() {
        let spec = ColumnSpec {
            inputs: vec![Selector::Name("b".into()), Selector::Index(0)],
            targets: vec![Selector::Name("b".into())],
            key: Some(Selector::Index(2)),
            ..ColumnSpec::default()
        };
        let h = names(&["a", "b", "c"]);
        let k = [Kind::Number, Kind::Number, Kind::Text];
        let l = resolve(&spec, Some(&h), &k, Auto::default()).unwrap();
        assert_eq!(l.input_labels, ["b", "a"]);
        assert_eq!(l.target_labels, ["b"]);
        assert_eq!(l.routes[1].input, Some(0));
        assert_eq!(l.routes[1].target, Some(0));
        assert!(l.routes[2].key);

        let bad = ColumnSpec {
            inputs: vec![Selector::Name("z".into())],
            ..ColumnSpec::default()
        };
        let e = resolve(&bad, Some(&h), &k, Auto::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown column `z`; the input has: [a, b, c]"
        );
        let dup = ColumnSpec {
            inputs: vec![Selector::Index(1), Selector::Name("b".into())],
            ..ColumnSpec::default()
        };
        let e = resolve(&dup, Some(&h), &k, Auto::default()).unwrap_err();
        assert!(matches!(e, ParseError::DuplicateColumn { .. }), "{e}");
        let idx = ColumnSpec {
            inputs: vec![Selector::Index(3)],
            ..ColumnSpec::default()
        };
        assert!(resolve(&idx, None, &k, Auto::default()).is_err());
    }

    #[test]
    fn nothing_to_read_is_an_error() {
        let e = resolve(
            &ColumnSpec::default(),
            Some(&names(&["timestamp"])),
            &[Kind::Time(TimeStyle::Number)],
            Auto {
                time_by_value: true,
                ..Auto::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::NoColumns { .. }), "{e}");
    }

    #[test]
    fn text_kinds() {
        assert_eq!(Kind::of_text(" 1.5 "), Kind::Number);
        assert_eq!(Kind::of_text("NaN"), Kind::Number);
        assert_eq!(Kind::of_text("NA"), Kind::Missing);
        assert_eq!(Kind::of_text(""), Kind::Missing);
        assert!(matches!(
            Kind::of_text("2024-01-02"),
            Kind::Time(TimeStyle::Iso(_))
        ));
        assert_eq!(Kind::of_text("cpu"), Kind::Text);
        assert_eq!(parse_number("inf"), Number::NonFinite);
        assert_eq!(parse_number("1e999"), Number::NonFinite);
        assert_eq!(parse_number("x1"), Number::Invalid);
        assert_eq!(parse_number(" -2.5e-3 "), Number::Value(-2.5e-3));
    }
}
