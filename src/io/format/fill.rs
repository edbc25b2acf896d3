//! Filling an [`Event`] from the fields of one record, shared by all formats: the per-column
//! routing, the missing-value policy, and serde visitors that walk a JSON or MessagePack value
//! straight into the event (no intermediate `Value`, no allocation once warmed up).

use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{snippet, ParseError, Position};
use super::layout::{parse_number, Discovered, Field, Kind, Layout, Mode, Number, Route};
use super::time::parse_iso8601;
use super::Missing;
use crate::event::Event;

/// One field value as the source format delivered it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scalar<'a> {
    Num(f64),
    Str(&'a str),
    Null,
    Bool(bool),
}

/// The last accepted value of each input and target column, for [`Missing::Hold`]; NaN when
/// there is none yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct Hold {
    inputs: Vec<f64>,
    targets: Vec<f64>,
}

/// Fills one event; errors raised inside serde visitors are parked in `err`.
pub(crate) struct Filler<'l, 'e> {
    pub layout: &'l Layout,
    pub out: &'e mut Event,
    pub pos: Position,
    pub err: Option<ParseError>,
}

impl<'l, 'e> Filler<'l, 'e> {
    /// Clears `out` and sizes its values and targets for `layout` (NaN = not seen yet).
    pub(crate) fn new(layout: &'l Layout, out: &'e mut Event, pos: Position) -> Self {
        out.clear();
        out.values.resize(layout.input_labels.len(), f64::NAN);
        out.targets.resize(layout.target_labels.len(), f64::NAN);
        Self {
            layout,
            out,
            pos,
            err: None,
        }
    }

    /// Routes the value of column `idx` (an index into `layout.routes`).
    pub(crate) fn put_column(&mut self, idx: usize, s: Scalar<'_>) -> Result<(), ParseError> {
        let layout = self.layout;
        match (layout.routes.get(idx), layout.labels.get(idx)) {
            (Some(route), Some(label)) => self.put(*route, label, s),
            _ => Ok(()),
        }
    }

    /// Puts `s` into target slot `slot` (structured form's `target` field).
    pub(crate) fn put_target(&mut self, slot: usize, s: Scalar<'_>) -> Result<(), ParseError> {
        let layout = self.layout;
        let Some(label) = layout.target_labels.get(slot) else {
            return Ok(());
        };
        let route = Route {
            target: Some(slot),
            ..Route::default()
        };
        self.put(route, label, s)
    }

    fn put(&mut self, route: Route, label: &str, s: Scalar<'_>) -> Result<(), ParseError> {
        let pos = self.pos;
        if route.time {
            self.out.time = match s {
                Scalar::Num(v) if v.is_finite() => Some(v / self.layout.time_style.per_second()),
                Scalar::Num(_) => {
                    return Err(ParseError::NonFinite {
                        pos,
                        column: label.to_owned(),
                    })
                }
                Scalar::Str(t) => match parse_number(t) {
                    Number::Missing => None,
                    Number::Value(v) => Some(v / self.layout.time_style.per_second()),
                    Number::NonFinite | Number::Invalid => Some(
                        parse_iso8601(t.trim()).ok_or_else(|| ParseError::BadTimestamp {
                            pos,
                            value: snippet(t),
                        })?,
                    ),
                },
                Scalar::Null => None,
                Scalar::Bool(b) => {
                    return Err(ParseError::BadTimestamp {
                        pos,
                        value: b.to_string(),
                    })
                }
            };
        }
        if route.key {
            self.out.key.clear();
            match s {
                Scalar::Str(t) => self.out.key.push_str(t.trim()),
                // Writing into a String cannot fail.
                Scalar::Num(v) => _ = write!(self.out.key, "{v}"),
                Scalar::Bool(b) => _ = write!(self.out.key, "{b}"),
                Scalar::Null => {}
            }
        }
        if route.input.is_none() && route.target.is_none() {
            return Ok(());
        }
        let value = match s {
            Scalar::Num(v) if v.is_finite() => v,
            Scalar::Num(_) => {
                return Err(ParseError::NonFinite {
                    pos,
                    column: label.to_owned(),
                })
            }
            Scalar::Null => return Ok(()),
            Scalar::Str(t) => match parse_number(t) {
                Number::Value(v) => v,
                Number::Missing => return Ok(()),
                Number::NonFinite => {
                    return Err(ParseError::NonFinite {
                        pos,
                        column: label.to_owned(),
                    })
                }
                Number::Invalid => {
                    return Err(ParseError::NotANumber {
                        pos,
                        column: label.to_owned(),
                        value: snippet(t),
                    })
                }
            },
            Scalar::Bool(b) => {
                return Err(ParseError::NotANumber {
                    pos,
                    column: label.to_owned(),
                    value: b.to_string(),
                })
            }
        };
        if let Some(slot) = route.input.and_then(|i| self.out.values.get_mut(i)) {
            *slot = value;
        }
        if let Some(slot) = route.target.and_then(|i| self.out.targets.get_mut(i)) {
            *slot = value;
        }
        Ok(())
    }

    /// Applies the missing-value policy, checks the time, and remembers the accepted values.
    pub(crate) fn finish(self, hold: &mut Hold, missing: Missing) -> Result<(), ParseError> {
        let pos = self.pos;
        if let (Some(label), None) = (&self.layout.time_label, self.out.time) {
            return Err(ParseError::Missing {
                pos,
                column: label.clone(),
            });
        }
        let fill = |values: &mut [f64], last: &[f64], labels: &[String]| {
            for (i, v) in values.iter_mut().enumerate() {
                if !v.is_nan() {
                    continue;
                }
                let held = match missing {
                    Missing::Hold => last.get(i).copied().filter(|x| !x.is_nan()),
                    Missing::Skip => None,
                };
                match held {
                    Some(x) => *v = x,
                    None => {
                        return Err(ParseError::Missing {
                            pos,
                            column: labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                        })
                    }
                }
            }
            Ok(())
        };
        fill(
            &mut self.out.values,
            &hold.inputs,
            &self.layout.input_labels,
        )?;
        fill(
            &mut self.out.targets,
            &hold.targets,
            &self.layout.target_labels,
        )?;
        hold.inputs.clear();
        hold.inputs.extend_from_slice(&self.out.values);
        hold.targets.clear();
        hold.targets.extend_from_slice(&self.out.targets);
        Ok(())
    }

    /// Parks `e` and returns a placeholder serde error that aborts deserialization.
    fn fail<E: de::Error>(&mut self, e: ParseError) -> E {
        self.err = Some(e);
        E::custom("record rejected")
    }
}

/// Where a JSON/MessagePack value goes.
#[derive(Debug, Clone, Copy)]
enum Dest {
    /// The whole record.
    Top,
    /// The structured form's `values` array.
    Values,
    /// The structured form's `target` array or scalar.
    Targets,
    /// A column (index into `Layout::routes`).
    Column(usize),
    /// One element of the `target` array.
    Target(usize),
}

/// Deserializes one record into the filler's event. Use as
/// `Fill::top(&mut filler).deserialize(deserializer)`.
pub(crate) struct Fill<'a, 'l, 'e> {
    f: &'a mut Filler<'l, 'e>,
    dest: Dest,
}

impl<'a, 'l, 'e> Fill<'a, 'l, 'e> {
    /// The seed for a whole record.
    pub(crate) fn top(f: &'a mut Filler<'l, 'e>) -> Self {
        Self { f, dest: Dest::Top }
    }

    fn scalar<E: de::Error>(self, s: Scalar<'_>) -> Result<(), E> {
        let r = match self.dest {
            Dest::Column(i) => self.f.put_column(i, s),
            Dest::Target(i) => self.f.put_target(i, s),
            Dest::Values => self
                .one_of(self.f.layout.width)
                .and_then(|()| self.f.put_column(0, s)),
            Dest::Targets => self
                .one_of(self.f.layout.target_labels.len())
                .and_then(|()| self.f.put_target(0, s)),
            Dest::Top => Err(ParseError::Malformed {
                pos: self.f.pos,
                reason: "expected an array or an object, found a scalar".into(),
            }),
        };
        r.map_err(|e| self.f.fail(e))
    }

    /// A scalar standing for an array is fine if one element is expected.
    fn one_of(&self, expected: usize) -> Result<(), ParseError> {
        if expected == 1 {
            Ok(())
        } else {
            Err(ParseError::Arity {
                pos: self.f.pos,
                expected,
                got: 1,
            })
        }
    }

    fn wrong_shape<E: de::Error>(self, what: &str) -> E {
        let reason = match (self.dest, self.f.layout.mode) {
            (Dest::Top, Mode::Positional) => {
                format!("expected an array like the first record, found {what}")
            }
            (Dest::Top, _) => format!("expected an object like the first record, found {what}"),
            (Dest::Values | Dest::Targets, _) => format!("expected an array, found {what}"),
            (Dest::Column(_) | Dest::Target(_), _) => {
                format!("expected a number or string, found {what}")
            }
        };
        let pos = self.f.pos;
        self.f.fail(ParseError::Malformed { pos, reason })
    }
}

impl<'de> DeserializeSeed<'de> for Fill<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Fill<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record: an array of numbers or an object")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::Num(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::Num(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::Num(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<(), E> {
        match std::str::from_utf8(v) {
            Ok(s) => self.scalar(Scalar::Str(s)),
            Err(_) => Err(self.wrong_shape("non-UTF-8 bytes")),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (expected, targets) = match (self.dest, self.f.layout.mode) {
            (Dest::Top, Mode::Positional) | (Dest::Values, _) => (self.f.layout.width, false),
            (Dest::Targets, _) => (self.f.layout.target_labels.len(), true),
            _ => return Err(self.wrong_shape("an array")),
        };
        let mut got = 0;
        loop {
            let more = if got < expected {
                let dest = if targets {
                    Dest::Target(got)
                } else {
                    Dest::Column(got)
                };
                seq.next_element_seed(Fill { f: self.f, dest })?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
            got += 1;
        }
        if got != expected {
            let pos = self.f.pos;
            return Err(self.f.fail(ParseError::Arity { pos, expected, got }));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if !matches!(self.dest, Dest::Top) || self.f.layout.mode == Mode::Positional {
            return Err(self.wrong_shape("an object"));
        }
        let layout = self.f.layout;
        while let Some(field) = map.next_key_seed(KeySeed(layout))? {
            let dest = match field {
                None => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Some(Field::Column(i)) => Dest::Column(i),
                Some(Field::Values) => Dest::Values,
                Some(Field::Targets) => Dest::Targets,
            };
            map.next_value_seed(Fill { f: self.f, dest })?;
        }
        Ok(())
    }
}

/// Looks an object key up in the layout without allocating.
struct KeySeed<'l>(&'l Layout);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<Field>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<Field>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.fields.get(v).copied())
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        match std::str::from_utf8(v) {
            Ok(s) => self.visit_str(s),
            Err(_) => Err(E::invalid_type(de::Unexpected::Bytes(v), &self)),
        }
    }
}

/// Deserializes a record's shape (field names and value kinds). Allocates; used once, on the
/// first record, to fix the layout.
pub(crate) struct Discover;

impl<'de> DeserializeSeed<'de> for Discover {
    type Value = Discovered;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Discovered, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Discover {
    type Value = Discovered;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record: an array of numbers or an object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Discovered, A::Error> {
        let mut kinds = Vec::new();
        while let Some(k) = seq.next_element_seed(KindSeed)? {
            kinds.push(k);
        }
        Ok(Discovered::Array(kinds))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Discovered, A::Error> {
        let mut fields: Vec<(String, Kind)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            let kind = map.next_value_seed(KindSeed)?;
            if !fields.iter().any(|(n, _)| *n == name) {
                fields.push((name, kind));
            }
        }
        Ok(Discovered::Object(fields))
    }
}

/// Classifies one value for [`Discover`].
struct KindSeed;

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KindSeed {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::of_number(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::of_number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::of_number(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::of_text(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Kind, E> {
        Ok(Kind::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Missing)
    }

    fn visit_none<E: de::Error>(self) -> Result<Kind, E> {
        Ok(Kind::Missing)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Kind::Array(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Kind::Other)
    }
}

/// The JSON/MessagePack decoding state shared by [`JsonLinesDecoder`](super::JsonLinesDecoder)
/// and [`MsgPackDecoder`](super::MsgPackDecoder): the layout, fixed by the first record, and
/// the held values.
#[derive(Debug, Clone)]
pub(crate) struct FillState {
    pub spec: super::ColumnSpec,
    pub missing: Missing,
    pub layout: Option<Layout>,
    pub hold: Hold,
}

impl FillState {
    pub(crate) fn new(spec: super::ColumnSpec, missing: Missing) -> Self {
        Self {
            spec,
            missing,
            layout: None,
            hold: Hold::default(),
        }
    }

    /// Decodes one record. `discover` and `fill` each run a fresh deserializer over the same
    /// bytes; `discover` runs only while the layout is unknown. A serde error is turned into
    /// [`ParseError::Malformed`] by `malformed`, unless a visitor parked a precise error.
    pub(crate) fn decode<E>(
        &mut self,
        pos: Position,
        out: &mut Event,
        discover: impl FnOnce() -> Result<Discovered, E>,
        fill: impl FnOnce(&mut Filler<'_, '_>) -> Result<(), E>,
        malformed: impl Fn(E) -> ParseError,
    ) -> Result<(), ParseError> {
        let layout = match &mut self.layout {
            Some(l) => l,
            slot @ None => {
                let first = discover().map_err(&malformed)?;
                slot.insert(super::layout::resolve_record(&self.spec, &first)?)
            }
        };
        let mut filler = Filler::new(layout, out, pos);
        if let Err(e) = fill(&mut filler) {
            return Err(filler.err.take().unwrap_or_else(|| malformed(e)));
        }
        filler.finish(&mut self.hold, self.missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::format::layout::{resolve, Auto};
    use crate::io::format::ColumnSpec;

    fn layout(n: usize) -> Layout {
        resolve(
            &ColumnSpec::default(),
            None,
            &vec![Kind::Number; n],
            Auto::default(),
        )
        .unwrap()
    }

    #[test]
    fn hold_reuses_last_accepted_value_per_column() {
        let l = layout(2);
        let mut hold = Hold::default();
        let mut ev = Event::new();
        let pos = Position::Line(1);

        let mut f = Filler::new(&l, &mut ev, pos);
        f.put_column(0, Scalar::Str("")).unwrap();
        f.put_column(1, Scalar::Num(2.0)).unwrap();
        let e = f.finish(&mut hold, Missing::Hold).unwrap_err();
        assert_eq!(e.to_string(), "line 1: column `0`: missing value");

        let mut f = Filler::new(&l, &mut ev, Position::Line(2));
        f.put_column(0, Scalar::Num(1.0)).unwrap();
        f.put_column(1, Scalar::Num(2.0)).unwrap();
        f.finish(&mut hold, Missing::Hold).unwrap();

        let mut f = Filler::new(&l, &mut ev, Position::Line(3));
        f.put_column(0, Scalar::Num(5.0)).unwrap();
        f.put_column(1, Scalar::Str("NA")).unwrap();
        f.finish(&mut hold, Missing::Hold).unwrap();
        assert_eq!(ev.values, [5.0, 2.0]);

        let mut f = Filler::new(&l, &mut ev, Position::Line(4));
        f.put_column(0, Scalar::Null).unwrap();
        f.put_column(1, Scalar::Num(7.0)).unwrap();
        f.finish(&mut hold, Missing::Hold).unwrap();
        assert_eq!(ev.values, [5.0, 7.0]);

        let mut f = Filler::new(&l, &mut ev, Position::Line(5));
        f.put_column(0, Scalar::Null).unwrap();
        f.put_column(1, Scalar::Num(7.0)).unwrap();
        let e = f.finish(&mut hold, Missing::Skip).unwrap_err();
        assert!(matches!(
            e,
            ParseError::Missing {
                pos: Position::Line(5),
                ..
            }
        ));
    }

    #[test]
    fn scalars_are_checked() {
        let l = layout(1);
        let mut ev = Event::new();
        let mut f = Filler::new(&l, &mut ev, Position::Offset(9));
        let e = f.put_column(0, Scalar::Num(f64::INFINITY)).unwrap_err();
        assert_eq!(e.to_string(), "byte 9: column `0`: non-finite number");
        let e = f.put_column(0, Scalar::Str("nan")).unwrap_err();
        assert!(matches!(e, ParseError::NonFinite { .. }));
        let e = f.put_column(0, Scalar::Bool(true)).unwrap_err();
        assert_eq!(e.to_string(), "byte 9: column `0`: not a number: `true`");
        let e = f.put_column(0, Scalar::Str("abc")).unwrap_err();
        assert_eq!(e.to_string(), "byte 9: column `0`: not a number: `abc`");
        // Out-of-range columns are ignored, not a panic.
        f.put_column(5, Scalar::Num(1.0)).unwrap();
        f.put_target(5, Scalar::Num(1.0)).unwrap();
    }
}
