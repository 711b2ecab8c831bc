//! PostgreSQL's text forms, as `COPY … TO … WITH (FORMAT csv, HEADER true)` writes them on a
//! stock PostgreSQL 15 with `TimeZone = 'UTC'` and `DateStyle = 'ISO, MDY'`, so that what
//! dictmon exports and what PostgreSQL dumps are the same bytes:
//!
//! - `timestamptz`: `2026-11-23 17:00:00.123456+00`; microseconds at most, trailing zeros of the
//!   fraction dropped, no fraction when whole seconds. Times are truncated to the microsecond
//!   (PostgreSQL's precision) when exported.
//! - `numeric`: plain decimal, never an exponent (`100000000000000000000`, `0.0000001`); the
//!   shortest text that reads back as the same `f64`; `-0` is written `0`.
//! - `boolean`: `t` / `f`.
//! - NULL: an empty unquoted field; an empty string is `""`. A field is quoted when it holds
//!   the delimiter, a quote, CR or LF (PostgreSQL's `CopyAttributeOutCSV`), quotes doubled.
//!
//! Reading is lenient where PostgreSQL's own output may vary: any UTC offset (`+00`, `-03`,
//! `+05:30`), a `T` separator, up to nanoseconds, exponents in numbers.

use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};

/// Appends a `timestamptz` in PostgreSQL's output form (UTC, microseconds).
pub fn push_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    push_date(out, t);
    out.push(b' ');
    push_time_of_day(out, t.timestamp_micros().rem_euclid(MICROS_PER_DAY));
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `2026-11-23`.
fn push_date(out: &mut Vec<u8>, t: DateTime<Utc>) {
    // By hand: chrono's formatter was most of an export's time.
    let year = t.year();
    if (0..=9999).contains(&year) {
        let y = year.unsigned_abs();
        let mut text = [b'-'; 10];
        put_two(&mut text, 0, y / 100);
        put_two(&mut text, 2, y % 100);
        put_two(&mut text, 5, t.month());
        put_two(&mut text, 8, t.day());
        out.extend_from_slice(&text);
    } else {
        let _ = write!(out, "{year:04}-{:02}-{:02}", t.month(), t.day());
    }
}

/// Writes `n`'s last two decimal digits at `at`.
fn put_two(text: &mut [u8], at: usize, n: u32) {
    if let Some(pair) = text.get_mut(at..at + 2) {
        pair[0] = b'0' + (n / 10 % 10) as u8;
        pair[1] = b'0' + (n % 10) as u8;
    }
}

/// `17:00:00.123+00` from the microseconds since midnight, without a calendar: the fraction's
/// trailing zeros dropped, none when whole seconds.
fn push_time_of_day(out: &mut Vec<u8>, micros_of_day: i64) {
    let micros_of_day = micros_of_day.unsigned_abs();
    let seconds = u32::try_from(micros_of_day / 1_000_000).unwrap_or(0);
    let mut micros = u32::try_from(micros_of_day % 1_000_000).unwrap_or(0);
    // HH:MM:SS.ffffff+00
    let mut text = [b':'; 18];
    put_two(&mut text, 0, seconds / 3600);
    put_two(&mut text, 3, seconds / 60 % 60);
    put_two(&mut text, 6, seconds % 60);
    let mut len = 8;
    if micros != 0 {
        let mut digits = 6;
        while micros % 10 == 0 {
            micros /= 10;
            digits -= 1;
        }
        text[8] = b'.';
        for i in (0..digits).rev() {
            text[9 + i] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        len = 9 + digits;
    }
    text[len..len + 3].copy_from_slice(b"+00");
    out.extend_from_slice(&text[..len + 3]);
}

/// Formats timestamps, remembering the last of each slot (a cycle's rows share their times)
/// and each slot's day (a calendar is computed once a day, not once a row).
#[derive(Default)]
pub struct TimestampCache {
    slots: [(i64, Vec<u8>, i64, Vec<u8>); 2],
}

impl TimestampCache {
    /// Appends `t` as [`push_timestamp`] does; `slot` picks the memory (one per column).
    pub fn push(&mut self, out: &mut Vec<u8>, slot: usize, t: DateTime<Utc>) {
        let micros = t.timestamp_micros();
        let Some((last, text, day, date)) = self.slots.get_mut(slot) else {
            push_timestamp(out, t);
            return;
        };
        if *last != micros || text.is_empty() {
            let today = micros.div_euclid(MICROS_PER_DAY);
            if *day != today || date.is_empty() {
                date.clear();
                push_date(date, t);
                date.push(b' ');
                *day = today;
            }
            text.clear();
            text.extend_from_slice(date);
            push_time_of_day(text, micros.rem_euclid(MICROS_PER_DAY));
            *last = micros;
        }
        out.extend_from_slice(text);
    }
}

/// Appends a `numeric` without exponent (`f64`'s shortest round-trip text, the same as its
/// `Display`; `-0` as `0`). Non-finite values (never stored) are written as `NaN`.
pub fn push_numeric(out: &mut Vec<u8>, x: f64) {
    if x == 0.0 {
        out.push(b'0');
        return;
    }
    if !x.is_finite() {
        out.extend_from_slice(b"NaN");
        return;
    }
    // ryu is several times faster than `Display`; its exponent form is expanded here.
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(x);
    let (mantissa, exponent) = match text.split_once('e') {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
    out.extend_from_slice(sign.as_bytes());
    if exponent == 0 {
        out.extend_from_slice(mantissa.as_bytes());
        return;
    }
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let leading = int.len() - int.trim_start_matches('0').len();
    let point = i64::try_from(int.len() - leading).unwrap_or(0) + exponent;
    let len = i64::try_from(digits.len()).unwrap_or(0);
    let zeros = |n: i64| std::iter::repeat_n(b'0', usize::try_from(n).unwrap_or(0));
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(zeros(-point));
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    } else if point >= len {
        out.extend_from_slice(digits.as_bytes());
        out.extend(zeros(point - len));
    } else {
        let (a, b) = digits.split_at(usize::try_from(point).unwrap_or(0));
        out.extend_from_slice(a.as_bytes());
        let b = b.trim_end_matches('0');
        if !b.is_empty() {
            out.push(b'.');
            out.extend_from_slice(b.as_bytes());
        }
    }
}

/// Appends an optional `numeric` with `scale` decimals when the value was read from such text
/// (an import keeps `12.50` as written), else as [`push_numeric`]; NULL is an empty field.
pub fn push_scaled(out: &mut Vec<u8>, x: Option<f64>, scale: Option<u8>) {
    match (x, scale) {
        (Some(x), Some(scale)) if x.is_finite() => {
            if !push_fixed(out, x, scale) {
                let _ = write!(out, "{x:.*}", usize::from(scale));
            }
        }
        (Some(x), _) => push_numeric(out, x),
        (None, _) => {}
    }
}

/// Appends `x` with `scale` decimals as `format!("{x:.scale$}")` would, by integer arithmetic,
/// when `x` is the double nearest a decimal with that many decimals and at most 15 digits (an
/// imported `12.50`): `m = x · 10^scale` is then an integer below 2^50 whose division by the
/// exact power of ten gives `x` back (correctly rounded, both operands being exact), and `x`
/// lies within a quarter of a last decimal of `m`, so rounding its exact expansion gives `m`.
/// Returns false, having written nothing, for any other value.
fn push_fixed(out: &mut Vec<u8>, x: f64, scale: u8) -> bool {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let Some(&p) = POW10.get(usize::from(scale)) else {
        return false;
    };
    let m = (x * p).round();
    // -0.0 prints as "-0.00": left to the formatter.
    // x is finite, so m is; the division must give x's very bits back.
    if m.abs() >= 1.0e15 || (m / p).to_bits() != x.to_bits() || x.is_sign_negative() && m == 0.0 {
        return false;
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format((m as i64).unsigned_abs());
    if m < 0.0 {
        out.push(b'-');
    }
    let scale = usize::from(scale);
    if scale == 0 {
        out.extend_from_slice(text.as_bytes());
    } else if text.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - text.len()));
        out.extend_from_slice(text.as_bytes());
    } else {
        let (int, frac) = text.split_at(text.len() - scale);
        out.extend_from_slice(int.as_bytes());
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    true
}

/// Appends a text field, quoted when PostgreSQL would quote it.
pub fn push_text(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() || s.contains([',', '"', '\n', '\r']) || s == "\\." {
        out.push(b'"');
        out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Reads a `timestamptz` as PostgreSQL or ISO 8601 writes it, with any offset.
pub fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Some(t) = parse_canonical(s) {
        return Ok(t);
    }
    let bad = || format!("{s:?} is not a timestamp with offset (e.g. 2026-11-23 17:00:00.123+00)");
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // Split the offset: the last '+' or '-' after the time of day.
    let at = s.rfind(['+', '-']).filter(|&i| i > 10).ok_or_else(bad)?;
    let (local, offset) = s.split_at(at);
    let local = local.trim().replacen('T', " ", 1);
    let naive = NaiveDateTime::parse_from_str(&local, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| bad())?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let digits: String = offset[1..].chars().filter(char::is_ascii_digit).collect();
    let (h, m, sec) = match digits.len() {
        2 => (&digits[..2], "0", "0"),
        4 => (&digits[..2], &digits[2..], "0"),
        6 => (&digits[..2], &digits[2..4], &digits[4..]),
        _ => return Err(bad()),
    };
    let secs = |x: &str| x.parse::<i64>().map_err(|_| bad());
    let offset_secs = sign * (secs(h)? * 3_600 + secs(m)? * 60 + secs(sec)?);
    if offset_secs.abs() >= 86_400 {
        return Err(bad());
    }
    // A year like +262142 is valid text, but the offset can carry it past chrono's range.
    let utc = naive
        .checked_sub_signed(chrono::TimeDelta::seconds(offset_secs))
        .ok_or_else(|| {
            format!("{s:?} is outside the range of times (years 1677–2262 can be stored)")
        })?;
    Ok(utc.and_utc())
}

/// The form PostgreSQL writes in UTC, `2026-11-23 17:00:00.123456+00`, read by hand (chrono's
/// general parser was a quarter of an import's time); none for anything else, which the general
/// path reads.
fn parse_canonical(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<u32> {
        b.get(from..from + len)?.iter().try_fold(0_u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let shape = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':')];
    if shape.iter().any(|&(i, c)| b.get(i) != Some(&c)) || !s.ends_with("+00") {
        return None;
    }
    let rest = b.get(19..b.len() - 3)?;
    let nanos = match rest {
        [] => 0,
        [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
            let n = digits(20, frac.len())?;
            n * 10_u32.pow(9 - u32::try_from(frac.len()).ok()?)
        }
        _ => return None,
    };
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(digits(0, 4)?).ok()?,
        digits(5, 2)?,
        digits(8, 2)?,
    )?;
    let time = chrono::NaiveTime::from_hms_nano_opt(
        digits(11, 2)?,
        digits(14, 2)?,
        digits(17, 2)?,
        nanos,
    )?;
    Some(date.and_time(time).and_utc())
}

/// Reads a finite number (`numeric` or `double precision` text).
pub fn parse_numeric(s: &str) -> Result<f64, String> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("{s:?} is not a finite number")),
    }
}

/// Reads an integer.
pub fn parse_integer(s: &str) -> Result<i64, String> {
    let s = s.trim();
    s.parse::<i64>()
        .map_err(|_| format!("{s:?} is not an integer"))
}

/// Reads a `boolean` (`t`/`f`, `true`/`false`, `1`/`0`, `yes`/`no`).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "1" | "yes" | "y" | "on" => Ok(true),
        "f" | "false" | "0" | "no" | "n" | "off" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (t or f)")),
    }
}

#[cfg(test)]
mod fixed_tests {
    use super::*;

    #[test]
    fn cached_timestamps_are_written_as_chrono_writes_them() {
        let mut cache = TimestampCache::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..50_000_i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Runs of one time, days apart and microseconds apart, before and after 1970.
            let secs = i64::try_from(x % 8_000_000_000).unwrap_or(0) - 1_000_000_000;
            let micros = if i % 3 == 0 { 0 } else { (x >> 40) % 1_000_000 };
            let t = DateTime::from_timestamp(secs, u32::try_from(micros * 1000).unwrap_or(0))
                .expect("in range");
            let mut got = Vec::new();
            cache.push(&mut got, usize::try_from(i % 3).unwrap_or(0), t);
            let got = String::from_utf8(got).expect("ASCII");
            let want = t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
            let want = want.trim_end_matches('0').trim_end_matches('.').to_owned() + "+00";
            assert_eq!(got, want);
        }
    }

    #[test]
    fn fixed_decimals_by_integers_match_the_formatter() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut fast = 0;
        for i in 0..200_000_u32 {
            let scale = u8::try_from(next() % 17).unwrap_or(0);
            // Decimals as an import reads them, and arbitrary doubles.
            let value = if i % 2 == 0 {
                let digits =
                    i64::try_from(next() % 10_u64.pow(u32::from(scale.min(15)) + 3)).unwrap_or(0);
                let sign = if next() % 3 == 0 { -1.0 } else { 1.0 };
                sign * format!("{digits}e-{scale}").parse::<f64>().unwrap_or(0.0)
            } else {
                f64::from_bits(next() >> 2) * if next() % 2 == 0 { 1.0 } else { -1.0 }
            };
            let mut got = Vec::new();
            push_scaled(&mut got, Some(value), Some(scale));
            let got = String::from_utf8(got).expect("ASCII");
            let want = format!("{value:.*}", usize::from(scale));
            assert_eq!(got, want, "{value:e} at scale {scale}");
            let mut probe = Vec::new();
            fast += usize::from(push_fixed(&mut probe, value, scale));
        }
        assert!(fast > 60_000, "the fast path served {fast}");
        let mut s = Vec::new();
        push_scaled(&mut s, Some(-0.0), Some(2));
        assert_eq!(s, b"-0.00");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_reads_as_the_general_parser_does() {
        for text in [
            "2026-11-23 17:00:00+00",
            "2026-11-23 17:00:00.1+00",
            "2026-11-23 17:00:00.123456+00",
            "1999-12-31 23:59:59.999999999+00",
        ] {
            let fast = parse_canonical(text).expect(text);
            let general =
                DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1).replace("+00", "Z"))
                    .expect(text)
                    .with_timezone(&Utc);
            assert_eq!(fast, general, "{text}");
        }
        for text in [
            "2026-13-01 00:00:00+00",
            "2026-11-23 17:00:00.+00",
            "2026-11-23T17:00:00+00",
        ] {
            assert_eq!(parse_canonical(text), None, "{text}");
        }
    }

    #[test]
    fn a_time_past_the_calendar_is_an_error_not_a_panic() {
        for text in [
            "+262142-12-31 23:59:59-01",
            "-262143-01-01 00:00:00+01",
            "+262142-12-31T23:59:59-01:00",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text}");
        }
    }

    /// What `push` appends, as text.
    fn text(push: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut bytes = Vec::new();
        push(&mut bytes);
        String::from_utf8(bytes).expect("UTF-8")
    }

    fn ts(t: DateTime<Utc>) -> String {
        text(|s| push_timestamp(s, t))
    }

    fn num(x: f64) -> String {
        text(|s| push_numeric(s, x))
    }

    #[test]
    fn timestamps_as_postgres_writes_them() {
        let t = DateTime::from_timestamp(1_795_000_000, 0).expect("t");
        assert_eq!(ts(t), "2026-11-18 11:06:40+00");
        let t = DateTime::from_timestamp(1_795_000_000, 120_000_000).expect("t");
        assert_eq!(ts(t), "2026-11-18 11:06:40.12+00");
        let t = DateTime::from_timestamp(1_795_000_000, 123_456_789).expect("t");
        assert_eq!(ts(t), "2026-11-18 11:06:40.123456+00");
        // Truncated to PostgreSQL's precision, microseconds.
        let micros = DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t);
        assert_eq!(parse_timestamp(&ts(t)), Ok(micros));
        for (text, expect) in [
            ("2026-11-18 08:06:40-03", "2026-11-18 11:06:40+00"),
            ("2026-11-18 16:36:40.5+05:30", "2026-11-18 11:06:40.5+00"),
            ("2026-11-18T11:06:40.5Z", "2026-11-18 11:06:40.5+00"),
            ("2026-11-18T11:06:40+0000", "2026-11-18 11:06:40+00"),
        ] {
            assert_eq!(ts(parse_timestamp(text).expect(text)), expect, "{text}");
        }
        for bad in [
            "2026-11-18",
            "yesterday",
            "2026-11-18 11:06:40",
            "2026-13-18 11:06:40+00",
            "",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numerics_never_use_an_exponent_and_read_back_exactly() {
        assert_eq!(num(1e20), "100000000000000000000");
        assert_eq!(num(1e-7), "0.0000001");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(33.333_333_333_333_336), "33.333333333333336");
        for x in [0.1, 2.0 / 3.0, 1e300, -5e-300, 12_345.678] {
            assert_eq!(parse_numeric(&num(x)), Ok(x));
        }
        assert!(parse_numeric("NaN").is_err());
        assert!(parse_numeric("Infinity").is_err());
    }

    #[test]
    fn numerics_are_shortest_plain_and_exact() {
        // The fast path writes a shortest round-trip text like `Display` (the same, but for
        // rare ties between two shortest texts), never an exponent.
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut values = vec![
            1.0,
            0.5,
            100.0,
            1e15,
            1e16,
            1e17,
            1.5e-5,
            1e-4,
            123_456_789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
        ];
        for _ in 0..200_000 {
            let bits = next();
            let x = f64::from_bits(bits);
            if x.is_finite() {
                values.push(x);
            }
            values.push((bits % 10_000_000) as f64 / 1_000.0);
        }
        for x in values {
            for x in [x, -x] {
                let expected = if x == 0.0 {
                    "0".to_owned()
                } else {
                    format!("{x}")
                };
                let got = num(x);
                assert_eq!(
                    got.parse::<f64>(),
                    Ok(x),
                    "{got} for bits {:#x}",
                    x.to_bits()
                );
                assert_eq!(got.len(), expected.len(), "{got} vs {expected}");
                assert!(!got.contains(['e', 'E']), "{got}");
            }
        }
    }

    #[test]
    fn text_is_quoted_only_when_postgres_would() {
        let q = |s: &str| text(|o| push_text(o, s));
        assert_eq!(q("plain words"), "plain words");
        assert_eq!(q(""), "\"\"");
        assert_eq!(q("a, b"), "\"a, b\"");
        assert_eq!(q("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(q("two\nlines"), "\"two\nlines\"");
    }
}
