//! Timestamps: a plain number, or an ISO-8601 date/time turned into seconds since the Unix
//! epoch with Howard Hinnant's `days_from_civil`.

/// Parses a time field: a finite number is returned as is (epoch seconds, a year, a step);
/// otherwise one of these ISO-8601 forms is converted to seconds since 1970-01-01T00:00:00Z:
///
/// - `YYYY-MM` (the first of the month), `YYYY-MM-DD`,
/// - `YYYY-MM-DD HH:MM[:SS[.fff]]` or with `T` instead of the space,
/// - either of those followed by `Z` or an offset `+hh:mm`, `-hh:mm`, `+hhmm`, `+hh`.
///
/// Times without an offset are taken as UTC. Surrounding whitespace is ignored. Returns `None`
/// for anything else (including NaN and infinities, and out-of-range fields such as
/// `2023-02-29`).
///
/// # Example
/// ```
/// use tbptt::io::format::parse_time;
///
/// assert_eq!(parse_time("2022-03-20T11:00:00+01:00"), Some(1647770400.0));
/// assert_eq!(parse_time("1949-01"), Some(-662688000.0));
/// assert_eq!(parse_time("1871"), Some(1871.0));
/// assert_eq!(parse_time("yesterday"), None);
/// ```
pub fn parse_time(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(x) = s.parse::<f64>() {
        return x.is_finite().then_some(x);
    }
    parse_iso8601(s)
}

/// Parses only the ISO-8601 forms of [`parse_time`].
pub(crate) fn parse_iso8601(s: &str) -> Option<f64> {
    let mut c = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    let year = c.digits(4)?;
    c.byte(b'-')?;
    let month = c.digits(2)?;
    if !(1..=12).contains(&month) {
        return None;
    }
    let mut day = 1;
    let mut secs = 0.0;
    if c.peek().is_some() {
        c.byte(b'-')?;
        day = c.digits(2)?;
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        if c.peek().is_some() {
            match c.next()? {
                b'T' | b't' | b' ' => {}
                _ => return None,
            }
            secs = c.time_of_day()?;
        }
    }
    if c.peek().is_some() {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days as f64 * 86_400.0 + secs)
}

/// How the input wrote its times, so that output can write them back the same way
/// ([`TimeStyle::write`]). Fixed by the first record of a stream.
///
/// # Example
/// ```
/// use tbptt::io::format::TimeStyle;
///
/// let style = TimeStyle::of("2014-04-01 00:05:00");
/// let mut out = String::new();
/// style.write(1396310700.0, &mut out)?;
/// assert_eq!(out, "2014-04-01 00:05:00");
/// out.clear();
/// TimeStyle::of("1700000000123").write(1700000000.5, &mut out)?;
/// assert_eq!(out, "1700000000500");
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TimeStyle {
    /// Plain numbers written as they came: Unix seconds, years, step counters.
    #[default]
    Number,
    /// Unix time, an integer count of this unit in the first record; read as seconds, written
    /// back in the unit.
    Epoch(TimeUnit),
    /// ISO 8601 text.
    Iso(IsoStyle),
}

/// The unit of integer Unix times (the magnitude tells: ms near 1.7e12, and so on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeUnit {
    /// Seconds (about 1.7e9 in 2024).
    Seconds,
    /// Milliseconds (about 1.7e12).
    Millis,
    /// Microseconds (about 1.7e15).
    Micros,
    /// Nanoseconds (about 1.7e18).
    Nanos,
}

impl TimeUnit {
    /// Seconds per unit.
    pub fn seconds(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Millis => 1e-3,
            TimeUnit::Micros => 1e-6,
            TimeUnit::Nanos => 1e-9,
        }
    }

    /// Units per second: 1, 1e3, 1e6 or 1e9.
    pub fn per_second(self) -> f64 {
        match self {
            TimeUnit::Seconds => 1.0,
            TimeUnit::Millis => 1e3,
            TimeUnit::Micros => 1e6,
            TimeUnit::Nanos => 1e9,
        }
    }

    /// The unit of a number that looks like an integer Unix time between 2000 and 2100, if it
    /// does: `1700000000` is seconds, `1700000000000` milliseconds, and so on.
    pub fn of_epoch(v: f64) -> Option<TimeUnit> {
        const Y2000: f64 = 946_684_800.0;
        const Y2100: f64 = 4_102_444_800.0;
        if v.fract() != 0.0 {
            return None;
        }
        [
            TimeUnit::Seconds,
            TimeUnit::Millis,
            TimeUnit::Micros,
            TimeUnit::Nanos,
        ]
        .into_iter()
        .find(|u| (Y2000..Y2100).contains(&(v * u.seconds())))
    }

    fn name(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "Unix seconds",
            TimeUnit::Millis => "Unix milliseconds",
            TimeUnit::Micros => "Unix microseconds",
            TimeUnit::Nanos => "Unix nanoseconds",
        }
    }
}

/// The shape of an ISO 8601 time: how much of it there is, the date/time separator and
/// whether it named its zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoStyle {
    /// `YYYY-MM` only.
    pub month_only: bool,
    /// Clock digits: 0 (a date), 2 (`HH:MM`), 3 (`HH:MM:SS`).
    pub clock_parts: u8,
    /// Digits after the seconds' decimal point (at most 9).
    pub fraction: u8,
    /// The date/time separator, `T` or a space.
    pub separator: char,
    /// Whether the input named its zone (`Z` or an offset): times are then written in UTC
    /// with `Z`.
    pub zone: bool,
}

impl TimeStyle {
    /// The style of one time field as the input wrote it (a number, an integer Unix time in
    /// some unit, ISO text). Text that is neither is [`TimeStyle::Number`].
    pub fn of(text: &str) -> TimeStyle {
        let t = text.trim();
        if let Ok(v) = t.parse::<f64>() {
            return Self::of_number(v);
        }
        if parse_iso8601(t).is_none() {
            return TimeStyle::Number;
        }
        let b = t.as_bytes();
        let clock = b.get(11..).unwrap_or_default();
        let clock_len = clock
            .iter()
            .position(|c| !(c.is_ascii_digit() || matches!(c, b':' | b'.' | b',')))
            .unwrap_or(clock.len());
        let clock_text = clock.get(..clock_len).unwrap_or_default();
        let fraction = clock_text
            .iter()
            .position(|c| matches!(c, b'.' | b','))
            .map_or(0, |p| (clock_len - p - 1).min(9));
        TimeStyle::Iso(IsoStyle {
            month_only: b.len() == 7,
            clock_parts: match clock_text.iter().filter(|&&c| c == b':').count() {
                _ if b.len() <= 10 => 0,
                0 | 1 => 2,
                _ => 3,
            },
            fraction: fraction as u8,
            separator: if b.get(10) == Some(&b' ') { ' ' } else { 'T' },
            zone: clock_len < clock.len(),
        })
    }

    /// The style of a numeric time: [`TimeStyle::Epoch`] for an integer Unix time (in s, ms,
    /// µs or ns), else [`TimeStyle::Number`].
    pub fn of_number(v: f64) -> TimeStyle {
        TimeUnit::of_epoch(v).map_or(TimeStyle::Number, TimeStyle::Epoch)
    }

    /// Units per second of a numeric time in this style (1 unless [`TimeStyle::Epoch`]): a
    /// number read in this style is divided by it to give seconds.
    pub fn per_second(self) -> f64 {
        match self {
            TimeStyle::Epoch(unit) => unit.per_second(),
            _ => 1.0,
        }
    }

    /// RFC 3339 in UTC with whole seconds, `2026-12-01T22:33:47Z`.
    pub fn rfc3339() -> TimeStyle {
        TimeStyle::Iso(IsoStyle {
            month_only: false,
            clock_parts: 3,
            fraction: 0,
            separator: 'T',
            zone: true,
        })
    }

    /// Writes time `t` (seconds since the Unix epoch, or the raw number for
    /// [`TimeStyle::Number`]) in this style. Times ISO text cannot hold (beyond year 9999 or
    /// before year 0) are written as numbers.
    ///
    /// # Errors
    /// Only the writer's.
    pub fn write<W: std::fmt::Write>(self, t: f64, out: &mut W) -> std::fmt::Result {
        match self {
            TimeStyle::Number => write!(out, "{t}"),
            TimeStyle::Epoch(TimeUnit::Seconds) => write!(out, "{t}"),
            TimeStyle::Epoch(unit) => write!(out, "{}", (t * unit.per_second()).round()),
            TimeStyle::Iso(iso) if (-62_167_219_200.0..253_402_300_800.0).contains(&t) => {
                iso.write(t, out)
            }
            TimeStyle::Iso(_) => write!(out, "{t}"),
        }
    }

    /// What the style is, for messages: `ISO 8601`, `Unix milliseconds`, `numbers`.
    pub fn name(self) -> &'static str {
        match self {
            TimeStyle::Iso(_) => "ISO 8601",
            TimeStyle::Epoch(unit) => unit.name(),
            TimeStyle::Number => "numbers",
        }
    }
}

impl IsoStyle {
    fn write<W: std::fmt::Write>(self, t: f64, out: &mut W) -> std::fmt::Result {
        let scale = 10f64.powi(i32::from(self.fraction));
        // Round to the written precision first, so that 59.9995 s does not print as "60".
        let ticks = (t * scale).round();
        let secs = (ticks / scale).floor();
        let frac = ticks - secs * scale;
        let secs = secs as i64;
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        write!(out, "{year:04}-{month:02}")?;
        if self.month_only {
            return Ok(());
        }
        write!(out, "-{day:02}")?;
        if self.clock_parts == 0 {
            return Ok(());
        }
        write!(
            out,
            "{}{:02}:{:02}",
            self.separator,
            rem / 3600,
            rem % 3600 / 60
        )?;
        if self.clock_parts >= 3 {
            write!(out, ":{:02}", rem % 60)?;
            if self.fraction > 0 {
                let width = usize::from(self.fraction);
                write!(out, ".{:0width$}", frac as u64)?;
            }
        }
        if self.zone {
            out.write_char('Z')?;
        }
        Ok(())
    }
}

/// The proleptic Gregorian date of a day count from 1970-01-01, the inverse of
/// [`days_from_civil`] (Howard Hinnant's `civil_from_days`; a date crate for this one
/// conversion is not worth its weight).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (negative before it).
///
/// Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms", `days_from_civil`.
/// 2000-03-01 is day 11017.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Exactly `n` ASCII digits as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(d - b'0');
        }
        Some(v)
    }

    /// `HH:MM[:SS[.fff]][Z|±hh[:mm]]` as seconds after midnight UTC.
    fn time_of_day(&mut self) -> Option<f64> {
        let h = self.digits(2)?;
        self.byte(b':')?;
        let m = self.digits(2)?;
        let mut s = 0;
        let mut frac = 0.0;
        if self.peek() == Some(b':') {
            self.i += 1;
            s = self.digits(2)?;
            if matches!(self.peek(), Some(b'.' | b',')) {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|d| d.is_ascii_digit()) {
                    self.i += 1;
                }
                if self.i == start + 1 {
                    return None;
                }
                // ".fff" parsed as a decimal fraction; the slice holds ASCII only.
                let digits = self.b.get(start + 1..self.i)?;
                let text = std::str::from_utf8(digits).ok()?;
                frac = format_fraction(text)?;
            }
        }
        // 60 seconds admits a leap second, which simply runs into the next minute.
        if h > 23 || m > 59 || s > 60 {
            return None;
        }
        let offset = match self.next() {
            None => {
                return Some((h * 3600 + m * 60 + s) as f64 + frac);
            }
            Some(b'Z' | b'z') => 0,
            Some(sign @ (b'+' | b'-')) => {
                let oh = self.digits(2)?;
                let om = match self.peek() {
                    None => 0,
                    Some(b':') => {
                        self.i += 1;
                        self.digits(2)?
                    }
                    Some(_) => self.digits(2)?,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = oh * 3600 + om * 60;
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            Some(_) => return None,
        };
        Some((h * 3600 + m * 60 + s - offset) as f64 + frac)
    }
}

/// `"25"` -> 0.25: the digits after the decimal point as a fraction.
fn format_fraction(digits: &str) -> Option<f64> {
    // At most 18 digits are significant for an f64 anyway; ignore the rest.
    let d = digits.get(..digits.len().min(18))?;
    let n: u64 = d.parse().ok()?;
    Some(n as f64 / 10f64.powi(d.len() as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styles_write_back_what_they_read() {
        for text in [
            "2014-04-01 00:05:00",
            "2014-04-01T00:05:00Z",
            "2014-04-01T00:05Z",
            "2014-04-01 23:59",
            "2024-02-29",
            "1949-01",
            "2022-03-20T10:00:00.250Z",
            "1969-12-31T23:59:59.5",
            "1700000000",
            "1700000000123",
            "1700000000123456",
            "1871",
            "0.25",
        ] {
            let style = TimeStyle::of(text);
            let t = parse_time(text).unwrap() / style.per_second();
            let mut out = String::new();
            style.write(t, &mut out).unwrap();
            assert_eq!(out, text, "{style:?}");
        }
    }

    #[test]
    fn offsets_are_written_in_utc_and_rounding_carries() {
        let style = TimeStyle::of("2022-03-20T11:00:00+01:00");
        let mut out = String::new();
        style
            .write(parse_time("2022-03-20T11:00:00+01:00").unwrap(), &mut out)
            .unwrap();
        assert_eq!(out, "2022-03-20T10:00:00Z");
        out.clear();
        TimeStyle::of("2022-03-20T11:00:00.5")
            .write(59.9996, &mut out)
            .unwrap();
        assert_eq!(out, "1970-01-01T00:01:00.0");
        out.clear();
        TimeStyle::rfc3339().write(1e300, &mut out).unwrap();
        assert_eq!(out, format!("{}", 1e300));
    }

    #[test]
    fn epoch_units_by_magnitude() {
        assert_eq!(TimeUnit::of_epoch(1_700_000_000.0), Some(TimeUnit::Seconds));
        assert_eq!(
            TimeUnit::of_epoch(1_700_000_000_000.0),
            Some(TimeUnit::Millis)
        );
        assert_eq!(TimeUnit::of_epoch(1.7e15), Some(TimeUnit::Micros));
        assert_eq!(TimeUnit::of_epoch(1.7e18), Some(TimeUnit::Nanos));
        assert_eq!(TimeUnit::of_epoch(1_700_000_000.5), None);
        assert_eq!(TimeUnit::of_epoch(2024.0), None);
        assert_eq!(TimeUnit::of_epoch(5e9), None);
        assert_eq!(
            TimeStyle::of_number(1.7e9),
            TimeStyle::Epoch(TimeUnit::Seconds)
        );
        assert_eq!(TimeStyle::of_number(2024.0), TimeStyle::Number);
        for days in [-719_468, -1, 0, 11017, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn hinnant_reference_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1600, 2, 29), -135081);
        assert_eq!(days_from_civil(2024, 2, 29), 19782);
    }

    #[test]
    fn iso_forms() {
        // 2022-03-20T10:00:00Z: 19071 days * 86400 + 10 h.
        assert_eq!(parse_time("2022-03-20T11:00:00+01:00"), Some(1647770400.0));
        assert_eq!(parse_time("2022-03-20T10:00:00Z"), Some(1647770400.0));
        assert_eq!(parse_time("2022-03-20 10:00:00"), Some(1647770400.0));
        assert_eq!(parse_time("2022-03-20T05:30:00-0430"), Some(1647770400.0));
        assert_eq!(parse_time("2022-03-20T12:00+02"), Some(1647770400.0));
        // 1949-01-01 is 7670 days before the epoch (21 years, 5 of them leap).
        assert_eq!(parse_time("1949-01"), Some(-662688000.0));
        assert_eq!(parse_time("1958-03-29"), Some(-371174400.0));
        assert_eq!(parse_time("2018-07-31 18:22:28"), Some(1533061348.0));
        assert_eq!(parse_time("1970-01-01T00:00:00.25Z"), Some(0.25));
        assert_eq!(parse_time(" 1970-01-01T00:00:01,5 "), Some(1.5));
    }

    #[test]
    fn numbers_pass_through() {
        assert_eq!(parse_time("1871"), Some(1871.0));
        assert_eq!(parse_time("1.5e9"), Some(1.5e9));
        assert_eq!(parse_time("-3"), Some(-3.0));
        assert_eq!(parse_time("NaN"), None);
        assert_eq!(parse_time("inf"), None);
    }

    #[test]
    fn rejects_out_of_range_and_junk() {
        for s in [
            "",
            "2023-02-29",
            "2023-13-01",
            "2023-00",
            "2023-04-31",
            "2023-01-01T24:00:00",
            "2023-01-01T10:60",
            "2023-01-01T10:00:00.",
            "2023-01-01T10:00:00+",
            "2023-01-01T10:00:00+1",
            "2023-01-01T10:00:00+01:",
            "2023-01-01X10:00",
            "2023-01-01T10:00:00Zjunk",
            "23-01-01",
            "2023/01/01",
            "2023-1-1",
            "twenty",
        ] {
            assert_eq!(parse_time(s), None, "{s:?}");
        }
        assert_eq!(parse_time("2024-02-29"), Some(19782.0 * 86400.0));
    }
}
