//! `numeric` values as decimal digits: read, rounded to a scale, checked against a precision,
//! printed as PostgreSQL prints them, and in PostgreSQL's binary form. Pure functions on text,
//! shared by the engine (checks and casts of `numeric(p, s)` columns) and the wire protocol
//! (results in the column's scale, binary parameters and results).
//!
//! A `numeric` column keeps SQLite's NUMERIC affinity (`compat.md`, Values): its values are
//! stored as 64-bit integers or floats. What a client reads is PostgreSQL's form: the decimal
//! digits of the stored value (a float's shortest digits that read back as it), rounded half
//! away from zero to the column's scale and padded to it (`numeric(10,2)` prints `12.50`).

/// How a float `NaN` is held in SQLite, which would store a NaN float as NULL: as this text,
/// which sorts after every number (as PostgreSQL sorts NaN after every other float) and is
/// equal to itself (as NaN is in PostgreSQL's comparisons), and is how PostgreSQL prints it.
pub const NAN_TEXT: &str = "NaN";

/// Why text is not a `float8` or `float4` ([`parse_float`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatInputError {
    /// Not a number's spelling (22P02).
    Syntax,
    /// A finite spelling past the type's range, or one that would round to zero (22003).
    OutOfRange,
}

/// Text read as PostgreSQL's `float8in` (`single`: `float4in`) reads it: surrounding
/// whitespace, `1.5e3`, `.5`, `Infinity`, `-inf`, `NaN` (any case, signed); a `float4` is
/// rounded to single precision. A finite spelling never reads as an infinity or as zero: that
/// is [`FloatInputError::OutOfRange`].
pub fn parse_float(text: &str, single: bool) -> Result<f64, FloatInputError> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if lower.len() > unsigned.len() + 1 {
        return Err(FloatInputError::Syntax);
    }
    let f = match unsigned {
        "nan" => return Ok(f64::NAN),
        "infinity" | "inf" => lower.parse::<f64>().map_err(|_| FloatInputError::Syntax)?,
        _ if unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            text.parse::<f64>().map_err(|_| FloatInputError::Syntax)?
        }
        _ => return Err(FloatInputError::Syntax),
    };
    let g = if single { f64::from(f as f32) } else { f };
    let nonzero_digits = unsigned
        .split(['e', 'E'])
        .next()
        .is_some_and(|m| m.bytes().any(|b| (b'1'..=b'9').contains(&b)));
    if g.is_infinite() && !unsigned.starts_with('i') || g == 0.0 && nonzero_digits {
        return Err(FloatInputError::OutOfRange);
    }
    Ok(g)
}

/// Sign words of the binary form (PostgreSQL's `numeric.c`).
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// The binary form's digits are base 10,000: four decimal digits each.
const DEC_DIGITS: usize = 4;
const NBASE: i16 = 10_000;

/// Largest precision a `numeric(p, s)` may declare (PostgreSQL's `NUMERIC_MAX_PRECISION`).
pub const PRECISION_MAX: i64 = 1000;
/// Largest exponent a number's text may have (`1e131072`): `numeric` has at most 131,072
/// digits before the point and 16,383 after it; past this the digits are not built (22003
/// where a value is read, as in PostgreSQL's "value overflows numeric format").
pub const EXPONENT_MAX: i32 = 131_072;
/// Largest display scale of the binary form (PostgreSQL's `NUMERIC_DSCALE_MASK`).
const DSCALE_MAX: u16 = 0x3FFF;

/// The type modifier of `numeric(precision, scale)`: `((p << 16) | s) + 4`, as in PostgreSQL;
/// `None` outside PostgreSQL's ranges (precision 1 to [`PRECISION_MAX`], scale 0 to the
/// precision), which are not checked here.
pub fn typmod(precision: i64, scale: i64) -> Option<i64> {
    ((1..=PRECISION_MAX).contains(&precision) && (0..=precision).contains(&scale))
        .then(|| ((precision << 16) | scale) + 4)
}

/// The precision and scale a `numeric` type modifier gives ([`typmod`]'s inverse), if it
/// gives them.
pub fn precision_scale(typmod: i64) -> Option<(usize, usize)> {
    (typmod >= 4).then(|| {
        (
            (((typmod - 4) >> 16) & 0xffff) as usize,
            ((typmod - 4) & 0xffff) as usize,
        )
    })
}

/// A decimal number as digits: sign, integer digits (no leading zeros) and fraction digits.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimal {
    negative: bool,
    /// Digits before the point, without leading zeros (empty for zero).
    int: String,
    /// Digits after the point.
    frac: String,
}

impl Decimal {
    /// Reads `-12.50`, `+.5`, `1e3`, `1.5E-7`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Decimal> {
        let (negative, rest) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(at) => (&rest[..at], rest[at + 1..].parse::<i32>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // Move the point by the exponent, within what numeric can hold.
        if exp.abs() > EXPONENT_MAX {
            return None;
        }
        let all: String = format!("{int}{frac}");
        let point = int.len() as i64 + i64::from(exp);
        let (int, frac) = if point <= 0 {
            (String::new(), "0".repeat((-point) as usize) + &all)
        } else if point as usize >= all.len() {
            (
                all.clone() + &"0".repeat(point as usize - all.len()),
                String::new(),
            )
        } else {
            (
                all[..point as usize].to_string(),
                all[point as usize..].to_string(),
            )
        };
        Some(Decimal {
            negative,
            int: int.trim_start_matches('0').to_string(),
            frac,
        })
    }

    /// Rounded half away from zero to `scale` fraction digits, and padded to them.
    pub fn rounded(mut self, scale: usize) -> Decimal {
        if self.frac.len() <= scale {
            self.frac.push_str(&"0".repeat(scale - self.frac.len()));
            return self;
        }
        let up = self.frac.as_bytes()[scale] >= b'5';
        self.frac.truncate(scale);
        if up {
            // Add one at the last kept digit, carrying into the integer digits.
            let mut digits: Vec<u8> = format!("{}{}", self.int, self.frac).into_bytes();
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, b'1');
                    break;
                }
                i -= 1;
                if digits[i] == b'9' {
                    digits[i] = b'0';
                } else {
                    digits[i] += 1;
                    break;
                }
            }
            let split = digits.len() - scale;
            let s = String::from_utf8(digits).unwrap_or_default();
            self.int = s[..split].trim_start_matches('0').to_string();
            self.frac = s[split..].to_string();
        }
        self
    }

    fn is_zero(&self) -> bool {
        self.int.is_empty() && self.frac.bytes().all(|b| b == b'0')
    }

    /// Rounded to the scale of `typmod` (as [`precision_scale`] reads it), and checked against
    /// its precision: PostgreSQL's 22003 `numeric field overflow` as `Err` (its detail).
    pub fn fitted(self, typmod: i64) -> Result<Decimal, String> {
        let Some((precision, scale)) = precision_scale(typmod) else {
            return Ok(self);
        };
        let d = self.rounded(scale);
        let int_max = precision.saturating_sub(scale);
        if d.int.len() > int_max {
            return Err(if int_max == 0 {
                format!(
                    "A field with precision {precision}, scale {scale} must round to an absolute value less than 1."
                )
            } else {
                format!(
                    "A field with precision {precision}, scale {scale} must round to an absolute value less than 10^{int_max}."
                )
            });
        }
        Ok(d)
    }

    /// Rounded to the scale of `typmod` and padded to it (unchanged without a scale), as a
    /// value of the type is printed.
    pub fn rounded_to(self, typmod: i64) -> Decimal {
        match precision_scale(typmod) {
            Some((_, scale)) => self.rounded(scale),
            None => self,
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // PostgreSQL has no negative zero.
        if self.negative && !self.is_zero() {
            f.write_str("-")?;
        }
        f.write_str(if self.int.is_empty() { "0" } else { &self.int })?;
        if !self.frac.is_empty() {
            write!(f, ".{}", self.frac)?;
        }
        Ok(())
    }
}

/// PostgreSQL's binary form of a `numeric` given as decimal text (as [`Decimal`] prints it):
/// digit count, weight, sign, display scale, then base-10,000 digits, all big-endian 16-bit.
pub fn to_binary(text: &str) -> Option<Vec<u8>> {
    let header = |ndigits: usize, weight: i16, sign: u16, dscale: u16| {
        let mut out = Vec::with_capacity(8 + 2 * ndigits);
        out.extend_from_slice(&(ndigits as i16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
        out
    };
    match text {
        "NaN" => return Some(header(0, 0, NUMERIC_NAN, 0)),
        "Infinity" => return Some(header(0, 0, NUMERIC_PINF, 0)),
        "-Infinity" => return Some(header(0, 0, NUMERIC_NINF, 0)),
        _ => {}
    }
    let d = Decimal::parse(text)?;
    let dscale = u16::try_from(d.frac.len()).ok()?;
    let int_pad = (DEC_DIGITS - d.int.len() % DEC_DIGITS) % DEC_DIGITS;
    let frac_pad = (DEC_DIGITS - d.frac.len() % DEC_DIGITS) % DEC_DIGITS;
    let int = format!("{}{}", "0".repeat(int_pad), d.int);
    let frac = format!("{}{}", d.frac, "0".repeat(frac_pad));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(DEC_DIGITS)
            .map(|c| c.iter().fold(0i16, |n, b| n * 10 + i16::from(b - b'0')))
            .collect()
    };
    let mut digits = group(&int);
    let mut weight = digits.len() as i64 - 1;
    digits.extend(group(&frac));
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let sign = if d.negative && !digits.is_empty() {
        NUMERIC_NEG
    } else {
        NUMERIC_POS
    };
    if digits.is_empty() {
        weight = 0;
    }
    let mut out = header(digits.len(), i16::try_from(weight).ok()?, sign, dscale);
    for g in digits {
        out.extend_from_slice(&g.to_be_bytes());
    }
    Some(out)
}

/// The decimal text of a `numeric` in PostgreSQL's binary form, checked as `numeric_recv`
/// checks it; `None` when it is not well formed. Every byte comes from the client.
pub fn from_binary(raw: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<[u8; 2]> { raw.get(2 * i..2 * i + 2)?.try_into().ok() };
    let ndigits = usize::try_from(i16::from_be_bytes(word(0)?)).ok()?;
    let weight = i16::from_be_bytes(word(1)?);
    let sign = u16::from_be_bytes(word(2)?);
    let dscale = u16::from_be_bytes(word(3)?);
    if raw.len() != 8 + 2 * ndigits || dscale > DSCALE_MAX {
        return None;
    }
    match sign {
        NUMERIC_NAN => return Some("NaN".into()),
        NUMERIC_PINF => return Some("Infinity".into()),
        NUMERIC_NINF => return Some("-Infinity".into()),
        NUMERIC_POS | NUMERIC_NEG => {}
        _ => return None,
    }
    let mut digits = Vec::with_capacity(ndigits);
    for i in 0..ndigits {
        let d = i16::from_be_bytes(word(4 + i)?);
        if !(0..NBASE).contains(&d) {
            return None;
        }
        digits.push(d);
    }
    // Digit i stands for NBASE^(weight - i).
    let at = |pos: i64| -> i16 {
        let i = i64::from(weight) - pos;
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    for pos in (0..=i64::from(weight)).rev() {
        int.push_str(&format!("{:04}", at(pos)));
    }
    let mut frac = String::new();
    let mut pos = -1i64;
    while frac.len() < usize::from(dscale) {
        frac.push_str(&format!("{:04}", at(pos)));
        pos -= 1;
    }
    frac.truncate(usize::from(dscale));
    let d = Decimal {
        negative: sign == NUMERIC_NEG,
        int: int.trim_start_matches('0').to_string(),
        frac,
    };
    Some(d.to_string())
}

/// A float as PostgreSQL prints it (`float8out`, `float4out` with `extra_float_digits = 1`,
/// `single` for `real`): the shortest digits that read back as the same value, in fixed
/// notation when the decimal exponent is in [-4, 15) (`real`: [-4, 6)), else as `1.5e+300`,
/// `1e-05` (compare PostgreSQL's `src/common/d2s.c`); `NaN`, `Infinity`, `-Infinity`.
pub fn float_text(f: f64, single: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let (scientific, fixed, fixed_max) = match single {
        true => (format!("{:e}", f as f32), format!("{}", f as f32), 6),
        false => (format!("{f:e}"), format!("{f}"), 15),
    };
    // Rust's `{:e}` has the shortest digits too: `1.5e300`, `-1e-5`, `0e0`.
    let Some((mantissa, exp)) = scientific.split_once('e') else {
        return fixed;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..fixed_max).contains(&exp) {
        return fixed;
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_to_a_scale_and_checked_against_a_precision() {
        let fit = |s: &str, typmod: i64| {
            Decimal::parse(s)
                .unwrap()
                .fitted(typmod)
                .map(|d| d.to_string())
        };
        let n10_2 = ((10 << 16) | 2) + 4;
        assert_eq!(fit("12.5", n10_2).unwrap(), "12.50");
        assert_eq!(fit("7", n10_2).unwrap(), "7.00");
        // Half away from zero.
        assert_eq!(fit("2.675", n10_2).unwrap(), "2.68");
        assert_eq!(fit("-2.675", n10_2).unwrap(), "-2.68");
        assert_eq!(fit("99.995", n10_2).unwrap(), "100.00");
        assert_eq!(fit("-0.001", n10_2).unwrap(), "0.00");
        assert_eq!(fit("12.5", -1).unwrap(), "12.5");
        assert_eq!(fit("1e20", -1).unwrap(), "100000000000000000000");
        assert_eq!(fit("1.5E-7", -1).unwrap(), "0.00000015");
        assert_eq!(fit("+.5", -1).unwrap(), "0.5");
        let n5_2 = ((5 << 16) | 2) + 4;
        assert_eq!(fit("999.994", n5_2).unwrap(), "999.99");
        assert!(fit("999.995", n5_2).unwrap_err().contains("less than 10^3"));
        let n2_2 = ((2 << 16) | 2) + 4;
        assert!(fit("1", n2_2).unwrap_err().contains("less than 1."));
        assert_eq!(typmod(10, 2), Some(n10_2));
        assert_eq!(precision_scale(n10_2), Some((10, 2)));
        assert_eq!(typmod(0, 0), None);
        assert_eq!(typmod(5, 6), None);
        assert_eq!(fit("1e131072", -1).unwrap().len(), 131_073);
        for bad in [
            "", "-", ".", "abc", "1.2.3", "1e", "--1", "1e131073", "1e999999",
        ] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn binary_form_round_trips() {
        for s in [
            "0",
            "1",
            "-1",
            "12.50",
            "0.0001",
            "0.00001",
            "10000",
            "-9999.9999",
            "12345678901234567890123456789012345678",
            "0.000000000000000000000000000000000012",
            "100000000.00",
            "NaN",
        ] {
            let b = to_binary(s).unwrap();
            assert_eq!(from_binary(&b).as_deref(), Some(s), "{s}");
        }
        // PostgreSQL's own bytes for 12.50: 2 digits, weight 0, positive, scale 2, [12, 5000].
        assert_eq!(
            to_binary("12.50").unwrap(),
            [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88]
        );
        // Malformed: short, digit out of range, bad sign.
        assert_eq!(from_binary(&[0, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(from_binary(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]), None);
        assert_eq!(from_binary(&[0, 0, 0, 0, 0x12, 0x34, 0, 0]), None);
        assert_eq!(from_binary(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]), None);
    }

    #[test]
    fn floats_read_as_float8in_reads_them() {
        use FloatInputError::{OutOfRange, Syntax};
        let cases: &[(&str, bool, Result<f64, FloatInputError>)] = &[
            (" 1.5e3 ", false, Ok(1500.0)),
            ("+.5", false, Ok(0.5)),
            ("-Infinity", false, Ok(f64::NEG_INFINITY)),
            ("INF", true, Ok(f64::INFINITY)),
            ("0e5", false, Ok(0.0)),
            ("0.1", true, Ok(f64::from(0.1f32))),
            ("1e400", false, Err(OutOfRange)),
            ("1e-400", false, Err(OutOfRange)),
            ("1e39", true, Err(OutOfRange)),
            ("1e-50", true, Err(OutOfRange)),
            ("", false, Err(Syntax)),
            ("abc", false, Err(Syntax)),
            ("--1", false, Err(Syntax)),
            ("+-inf", false, Err(Syntax)),
            ("nanx", false, Err(Syntax)),
        ];
        for (text, single, want) in cases {
            assert_eq!(&parse_float(text, *single), want, "{text:?}");
        }
        for nan in ["NaN", " nan ", "-NaN", "+nan"] {
            assert!(parse_float(nan, false).is_ok_and(f64::is_nan), "{nan:?}");
        }
    }
}
