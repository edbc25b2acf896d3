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
