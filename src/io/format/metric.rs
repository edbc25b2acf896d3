//! What the monitoring formats share: metric and label names in Prometheus' alphabet, keys
//! built with [`labels::canonical`] and bounded by [`labels::MAX_KEY_LEN`], and the queue of
//! events that one record (an InfluxDB line with several fields, a remote-write request)
//! yields.

use crate::event::Event;
use crate::io::labels;

/// The most labels (tags) one series may carry; more is refused as malformed. A key of
/// [`labels::MAX_KEY_LEN`] bytes has room for at most about 170 non-empty labels.
pub const MAX_LABELS: usize = 128;

/// Appends `name` to `out` as a Prometheus metric name: every character outside
/// `[a-zA-Z0-9_:]` becomes `_`, and a leading digit gets a `_` before it (the influxdb_exporter
/// and graphite_exporter convention).
pub(crate) fn push_metric_name(name: &str, out: &mut String) {
    push_name(name, out, true);
}

/// Appends `name` to `out` as a Prometheus label name: every character outside
/// `[a-zA-Z0-9_]` becomes `_`, and a leading digit gets a `_` before it.
pub(crate) fn push_label_name(name: &str, out: &mut String) {
    push_name(name, out, false);
}

fn push_name(name: &str, out: &mut String, colon: bool) {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        out.push(if ok { c } else { '_' });
    }
}

/// Writes the canonical key of `name` with `pairs` into `out`.
///
/// # Errors
/// A reason when the key is longer than [`labels::MAX_KEY_LEN`].
pub(crate) fn key_to(
    name: &str,
    pairs: &mut [(&str, &str)],
    out: &mut String,
) -> Result<(), String> {
    labels::canonical(name, pairs, out);
    if out.len() > labels::MAX_KEY_LEN {
        return Err(format!(
            "series key of {} bytes is longer than {} bytes",
            out.len(),
            labels::MAX_KEY_LEN
        ));
    }
    Ok(())
}

/// Events decoded from one record and not yet handed out, oldest first. Keys are kept end to
/// end in one string, so once its buffers have grown nothing is allocated per record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    keys: String,
    /// (end of the key in `keys`, value, time).
    items: Vec<(usize, f64, Option<f64>)>,
    next: usize,
}

impl Pending {
    /// Forgets every event.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.items.clear();
        self.next = 0;
    }

    /// Queues one event.
    pub(crate) fn push(&mut self, key: &str, value: f64, time: Option<f64>) {
        self.keys.push_str(key);
        self.items.push((self.keys.len(), value, time));
    }

    /// Events queued and not yet taken.
    pub(crate) fn len(&self) -> usize {
        self.items.len() - self.next
    }

    /// Whether any earlier event of this record has `key`; `Some(i)` is its index.
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        let mut start = 0;
        for (i, (end, _, _)) in self.items.iter().enumerate() {
            if self.keys.get(start..*end) == Some(key) {
                return Some(i);
            }
            start = *end;
        }
        None
    }

    /// Sets event `i`'s value and time.
    pub(crate) fn set(&mut self, i: usize, value: f64, time: Option<f64>) {
        if let Some(item) = self.items.get_mut(i) {
            item.1 = value;
            item.2 = time;
        }
    }

    /// Moves the next event into `out` (cleared first); `false` when none is left.
    pub(crate) fn pop_into(&mut self, out: &mut Event) -> bool {
        let Some(&(end, value, time)) = self.items.get(self.next) else {
            if !self.items.is_empty() {
                self.clear();
            }
            return false;
        };
        let start = match self.next {
            0 => 0,
            n => self.items.get(n - 1).map_or(0, |i| i.0),
        };
        self.next += 1;
        out.clear();
        out.key
            .push_str(self.keys.get(start..end).unwrap_or_default());
        out.values.push(value);
        out.time = time;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped_into_prometheus_alphabets() {
        let mut s = String::new();
        push_metric_name("cpu.usage-idle:x", &mut s);
        assert_eq!(s, "cpu_usage_idle:x");
        s.clear();
        push_label_name("a:b c", &mut s);
        assert_eq!(s, "a_b_c");
        s.clear();
        push_metric_name("5min", &mut s);
        assert_eq!(s, "_5min");
        s.clear();
        push_label_name("é", &mut s);
        assert_eq!(s, "_");
    }

    #[test]
    fn pending_hands_out_events_in_order_and_finds_keys() {
        let mut p = Pending::default();
        p.push("a", 1.0, Some(5.0));
        p.push("bb", 2.0, None);
        assert_eq!(p.find("bb"), Some(1));
        assert_eq!(p.find("b"), None);
        p.set(0, 3.0, Some(6.0));
        let mut e = Event::new();
        assert!(p.pop_into(&mut e));
        assert_eq!(
            (e.key.as_str(), e.values.as_slice(), e.time),
            ("a", &[3.0][..], Some(6.0))
        );
        assert_eq!(p.len(), 1);
        assert!(p.pop_into(&mut e));
        assert_eq!(
            (e.key.as_str(), e.values.as_slice(), e.time),
            ("bb", &[2.0][..], None)
        );
        assert!(!p.pop_into(&mut e));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn keys_longer_than_the_bound_are_refused() {
        let mut out = String::new();
        let long = "v".repeat(labels::MAX_KEY_LEN);
        let err = key_to("m", &mut [("a", &long)], &mut out).unwrap_err();
        assert!(err.contains("longer than 1024 bytes"), "{err}");
        key_to("m", &mut [("a", "1")], &mut out).unwrap();
        assert_eq!(out, r#"m{a="1"}"#);
    }
}
