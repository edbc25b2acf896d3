//! Canonical series keys for labelled metrics.
//!
//! Monitoring protocols name a series by a metric name and a set of labels (Prometheus labels,
//! InfluxDB tags). tbptt keys such a series by one canonical string in Prometheus' own series
//! notation, `name{label="value",...}`, with the labels sorted by name and each value escaped as
//! in the Prometheus text format (`\\`, `\"`, `\n`). A metric without labels is its bare name.
//! The same series therefore always gets the same key, whatever order its labels arrived in,
//! and the key reads back into its name and labels ([`parse`]) for `/metrics` and for writing
//! results to a time-series database.
//!
//! A key with no braces (a Graphite path, a CSV `--key` value) is a plain name.
//!
//! ```
//! use tbptt::io::labels;
//!
//! let mut key = String::new();
//! labels::canonical("cpu_usage_idle", &mut [("host", "a"), ("cpu", "cpu0")], &mut key);
//! assert_eq!(key, r#"cpu_usage_idle{cpu="cpu0",host="a"}"#);
//! let (name, pairs) = labels::parse(&key).unwrap();
//! assert_eq!(name, "cpu_usage_idle");
//! assert_eq!(pairs, [("cpu".to_string(), "cpu0".to_string()), ("host".into(), "a".into())]);
//! ```

/// The longest key tbptt accepts, in bytes: longer series names are refused as malformed, so
/// one peer cannot make every series cost kilobytes of key.
pub const MAX_KEY_LEN: usize = 1024;

/// Writes the canonical key of metric `name` with `labels` into `out` (cleared first).
///
/// Sorts `labels` by name in place (no allocation beyond `out`'s growth). Labels with an empty
/// value are dropped, as Prometheus treats them as absent. Duplicate label names keep the last
/// one given.
pub fn canonical(name: &str, labels: &mut [(&str, &str)], out: &mut String) {
    out.clear();
    out.push_str(name);
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let mut first = true;
    for (i, (k, v)) in labels.iter().enumerate() {
        let duplicate = labels.get(i + 1).is_some_and(|next| next.0 == *k);
        if v.is_empty() || duplicate {
            continue;
        }
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        escape_into(v, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
}

fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Splits a key into its metric name and labels; `None` when the key has braces but they do
/// not hold well-formed `label="value"` pairs. A key without braces is a name with no labels.
pub fn parse(key: &str) -> Option<(&str, Vec<(String, String)>)> {
    let Some(open) = key.find('{') else {
        return Some((key, Vec::new()));
    };
    let body = key[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let eq = rest.find("=\"")?;
        let name = &rest[..eq];
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break eq + 2 + i + 1,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &rest[end..];
        rest = match rest.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return None,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some((&key[..open], labels))
}

/// Splits a key into its metric name and an iterator over its labels without allocating;
/// `None` when the key has braces that do not hold well-formed `label="value"` pairs (as
/// [`parse`]). A key without braces is a name with no labels.
///
/// ```
/// use tbptt::io::labels;
///
/// let (name, mut pairs) = labels::split(r#"up{job="a \"b\"",x="1"}"#).unwrap();
/// assert_eq!(name, "up");
/// let (k, v) = pairs.next().unwrap();
/// assert_eq!((k, v.chars().collect::<String>()), ("job", r#"a "b""#.to_string()));
/// assert_eq!(pairs.next().map(|(k, _)| k), Some("x"));
/// assert!(pairs.next().is_none());
/// ```
pub fn split(key: &str) -> Option<(&str, Pairs<'_>)> {
    let Some(open) = key.find('{') else {
        return Some((key, Pairs { rest: "" }));
    };
    let body = key[open + 1..].strip_suffix('}')?;
    // Check the whole body first, so that the iterator never meets a malformed pair.
    let mut check = Pairs { rest: body };
    while !check.rest.is_empty() {
        check.step()?;
    }
    Some((&key[..open], Pairs { rest: body }))
}

/// The labels of a key, in key order: `(name, value)` ([`split`]).
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    rest: &'a str,
}

/// A label value as it stands in the key, escaped; [`Value::chars`] unescapes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a>(&'a str);

impl<'a> Value<'a> {
    /// The value's characters, unescaped (`\\`, `\"`, `\n`).
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        let mut it = self.0.chars();
        std::iter::from_fn(move || match it.next()? {
            '\\' => match it.next()? {
                'n' => Some('\n'),
                c => Some(c),
            },
            c => Some(c),
        })
    }

    /// Whether the value has no characters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> Pairs<'a> {
    /// The next pair, or `None` (malformed) and the rest left as it was.
    fn step(&mut self) -> Option<(&'a str, Value<'a>)> {
        let rest = self.rest;
        let eq = rest.find("=\"")?;
        let name = &rest[..eq];
        let value_start = eq + 2;
        let mut bytes = rest[value_start..].bytes().enumerate();
        let end = loop {
            match bytes.next()? {
                (i, b'"') => break value_start + i,
                (_, b'\\') => {
                    bytes.next()?;
                }
                _ => {}
            }
        };
        let value = Value(&rest[value_start..end]);
        let after = &rest[end + 1..];
        self.rest = match after.strip_prefix(',') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return None,
            None if after.is_empty() => after,
            None => return None,
        };
        Some((name, value))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.step()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, labels: &mut [(&str, &str)]) -> String {
        let mut s = String::new();
        canonical(name, labels, &mut s);
        s
    }

    #[test]
    fn order_of_labels_does_not_change_the_key() {
        let a = key("m", &mut [("b", "2"), ("a", "1")]);
        let b = key("m", &mut [("a", "1"), ("b", "2")]);
        assert_eq!(a, b);
        assert_eq!(a, r#"m{a="1",b="2"}"#);
    }

    #[test]
    fn no_labels_is_the_bare_name_and_empty_values_are_absent() {
        assert_eq!(key("up", &mut []), "up");
        assert_eq!(key("up", &mut [("job", "")]), "up");
        assert_eq!(key("up", &mut [("a", ""), ("b", "x")]), r#"up{b="x"}"#);
    }

    #[test]
    fn duplicate_label_names_keep_one() {
        assert_eq!(key("m", &mut [("a", "1"), ("a", "1")]), r#"m{a="1"}"#);
    }

    #[test]
    fn escaped_values_round_trip() {
        let raw = "a \"quoted\"\\path\nnext, x=\"y\"";
        let k = key("m", &mut [("v", raw), ("w", "}")]);
        let (name, labels) = parse(&k).unwrap();
        assert_eq!(name, "m");
        assert_eq!(labels[0], ("v".to_string(), raw.to_string()));
        assert_eq!(labels[1], ("w".to_string(), "}".to_string()));
    }

    #[test]
    fn split_agrees_with_parse() {
        for k in [
            r#"m{a="1",b="x \"y\" \\ \n"}"#,
            "plain.graphite.path",
            "m{}",
            "m{a=1}",
            "m{a=\"1\",}",
            "m{a=\"1\"b=\"2\"}",
            "m{a=\"1\\",
        ] {
            let parsed = parse(k);
            let split = split(k).map(|(n, p)| {
                let pairs: Vec<(String, String)> = p
                    .map(|(k, v)| (k.to_string(), v.chars().collect()))
                    .collect();
                (n, pairs)
            });
            assert_eq!(parsed, split, "{k}");
        }
    }

    #[test]
    fn plain_keys_and_malformed_braces() {
        assert_eq!(
            parse("collectd.host.load").unwrap(),
            ("collectd.host.load", vec![])
        );
        assert!(parse("m{a=1}").is_none());
        assert!(parse("m{a=\"1\"").is_none());
        assert!(parse("m{a=\"1\",}").is_none());
        assert!(parse("m{a=\"1\"b=\"2\"}").is_none());
        assert!(parse("m{a=\"1\\").is_none());
        assert_eq!(parse("m{}").unwrap(), ("m", vec![]));
    }
}
