//! PostgreSQL's mathematical and string functions that SQLite lacks ("Mathematical Functions
//! and Operators", "String Functions and Operators"), with PostgreSQL's errors. Pure functions
//! of their arguments, registered as deterministic on every connection (`functions::install`).
//! Functions of a float return a float (`float8`); `ceil`, `floor`, `trunc`, `round`-like ones
//! keep an integer argument an integer.

use md5::{Digest, Md5};
use rusqlite::functions::Context;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::error::raise;
use crate::functions::{flags, text_of};
use crate::limits::VALUE_BYTES_MAX;

/// Text read as a number of type `T` (Postgres' name for it in the error), 22P02 otherwise.
fn from_text<T: std::str::FromStr>(v: ValueRef<'_>, pg_name: &str) -> rusqlite::Result<T> {
    let s = text_of(v).unwrap_or_default();
    s.trim().parse().map_err(|_| {
        raise(
            "22P02",
            format!("invalid input syntax for type {pg_name}: \"{s}\""),
        )
    })
}

/// A numeric argument: `None` for NULL, 22P02 for text that is no number.
pub(crate) fn number(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<f64>> {
    match ctx.get_raw(i) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n as f64)),
        ValueRef::Real(f) => Ok(Some(f)),
        v => from_text(v, "double precision").map(Some),
    }
}

/// An integer argument (a float without a fraction is one), as [`number`].
pub(crate) fn integer(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<i64>> {
    match ctx.get_raw(i) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        v => from_text(v, "bigint").map(Some),
    }
}

/// A float result of the float arguments `of`: 22003 where PostgreSQL finds it out of range
/// (an infinity or NaN from finite arguments); NaN (as SQLite keeps it,
/// [`crate::values::float`]) or an infinity from such arguments, as PostgreSQL's
/// `check_float8_val` lets them through.
fn finite(f: f64, of: &[f64]) -> rusqlite::Result<SqlValue> {
    let from_special = |g: fn(&f64) -> bool| of.iter().any(g);
    if f.is_finite()
        || f.is_nan() && from_special(|x| x.is_nan())
        || f.is_infinite() && from_special(|x| x.is_infinite())
    {
        Ok(crate::values::float(f))
    } else {
        Err(raise("22003", "value out of range: overflow".to_string()))
    }
}

/// `f(x)` of one float, NULL for NULL; `check` may refuse an argument first.
fn unary(
    conn: &Connection,
    name: &'static str,
    check: fn(f64) -> Option<(&'static str, &'static str)>,
    f: fn(f64) -> f64,
) -> rusqlite::Result<()> {
    conn.create_scalar_function(name, 1, flags(), move |ctx| {
        let Some(x) = number(ctx, 0)? else {
            return Ok(SqlValue::Null);
        };
        if let Some((state, message)) = check(x) {
            return Err(raise(state, message.to_string()));
        }
        finite(f(x), &[x])
    })
}

/// `ceil`, `floor`, `trunc`: an integer stays an integer.
fn rounding(conn: &Connection, name: &'static str, f: fn(f64) -> f64) -> rusqlite::Result<()> {
    conn.create_scalar_function(name, 1, flags(), move |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(n) => SqlValue::Integer(n),
            _ => match number(ctx, 0)? {
                None => SqlValue::Null,
                Some(x) => crate::values::float(f(x)),
            },
        })
    })
}

fn no_check(_: f64) -> Option<(&'static str, &'static str)> {
    None
}

fn log_check(x: f64) -> Option<(&'static str, &'static str)> {
    if x == 0.0 {
        Some(("2201E", "cannot take logarithm of zero"))
    } else if x < 0.0 {
        Some(("2201E", "cannot take logarithm of a negative number"))
    } else {
        None
    }
}

fn gcd(a: i64, b: i64) -> rusqlite::Result<i64> {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    i64::try_from(a).map_err(|_| raise("22003", "bigint out of range".into()))
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    rounding(conn, "ceil", f64::ceil)?;
    rounding(conn, "ceiling", f64::ceil)?;
    rounding(conn, "floor", f64::floor)?;
    rounding(conn, "trunc", f64::trunc)?;
    // SQLite's `abs` reads text as a number's prefix (`abs('NaN')` is 0.0): here text is read
    // as a float (22P02 if it is none), so the NaN a float column keeps as text stays NaN.
    conn.create_scalar_function("abs", 1, flags(), |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(n) => SqlValue::Integer(
                n.checked_abs()
                    .ok_or_else(|| raise("22003", "bigint out of range".into()))?,
            ),
            _ => match number(ctx, 0)? {
                None => SqlValue::Null,
                Some(x) => crate::values::float(x.abs()),
            },
        })
    })?;
    conn.create_scalar_function("sign", 1, flags(), |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Integer(n) => SqlValue::Integer(n.signum()),
            _ => match number(ctx, 0)? {
                None => SqlValue::Null,
                // signum(0.0) is 1.0; Postgres' sign(0) is 0.
                // And sign(NaN) is 0 in Postgres (neither above nor below zero).
                Some(x) if x == 0.0 || x.is_nan() => SqlValue::Real(0.0),
                Some(x) => SqlValue::Real(x.signum()),
            },
        })
    })?;
    unary(
        conn,
        "sqrt",
        |x| (x < 0.0).then_some(("2201F", "cannot take square root of a negative number")),
        f64::sqrt,
    )?;
    unary(conn, "cbrt", no_check, f64::cbrt)?;
    unary(conn, "exp", no_check, f64::exp)?;
    unary(conn, "ln", log_check, f64::ln)?;
    unary(conn, "log10", log_check, f64::log10)?;
    unary(conn, "degrees", no_check, f64::to_degrees)?;
    unary(conn, "radians", no_check, f64::to_radians)?;
    conn.create_scalar_function("pi", 0, flags(), |_| Ok(std::f64::consts::PI))?;
    conn.create_scalar_function("log", -1, flags(), |ctx| {
        // log(x) is base 10; log(b, x) base b.
        let (base, x) = match ctx.len() {
            1 => (Some(10.0), number(ctx, 0)?),
            2 => (number(ctx, 0)?, number(ctx, 1)?),
            _ => {
                return Err(raise(
                    "42883",
                    "function log takes one or two arguments".into(),
                ))
            }
        };
        let (Some(b), Some(x)) = (base, x) else {
            return Ok(SqlValue::Null);
        };
        for v in [b, x] {
            if let Some((state, message)) = log_check(v) {
                return Err(raise(state, message.into()));
            }
        }
        if b == 1.0 {
            return Err(raise("22012", "division by zero".into()));
        }
        finite(
            if b == 10.0 {
                x.log10()
            } else {
                x.ln() / b.ln()
            },
            &[b, x],
        )
    })?;
    for name in ["power", "pow"] {
        conn.create_scalar_function(name, 2, flags(), |ctx| {
            let (Some(x), Some(y)) = (number(ctx, 0)?, number(ctx, 1)?) else {
                return Ok(SqlValue::Null);
            };
            if x == 0.0 && y < 0.0 {
                return Err(raise(
                    "2201F",
                    "zero raised to a negative power is undefined".into(),
                ));
            }
            if x < 0.0 && y.fract() != 0.0 {
                return Err(raise(
                    "2201F",
                    "a negative number raised to a non-integer power yields a complex result"
                        .into(),
                ));
            }
            finite(x.powf(y), &[x, y])
        })?;
    }
    conn.create_scalar_function("div", 2, flags(), |ctx| {
        let (Some(a), Some(b)) = (number(ctx, 0)?, number(ctx, 1)?) else {
            return Ok(SqlValue::Null);
        };
        if b == 0.0 {
            return Err(raise("22012", "division by zero".into()));
        }
        let q = (a / b).trunc();
        Ok(if q.abs() < 9.2e18 {
            SqlValue::Integer(q as i64)
        } else {
            SqlValue::Real(q)
        })
    })?;
    conn.create_scalar_function("gcd", 2, flags(), |ctx| {
        let (Some(a), Some(b)) = (integer(ctx, 0)?, integer(ctx, 1)?) else {
            return Ok(None);
        };
        gcd(a, b).map(Some)
    })?;
    conn.create_scalar_function("lcm", 2, flags(), |ctx| {
        let (Some(a), Some(b)) = (integer(ctx, 0)?, integer(ctx, 1)?) else {
            return Ok(None);
        };
        if a == 0 || b == 0 {
            return Ok(Some(0));
        }
        (a / gcd(a, b)?)
            .checked_mul(b)
            .map(|l| Some(l.abs()))
            .ok_or_else(|| raise("22003", "bigint out of range".into()))
    })?;

    // Strings.
    conn.create_scalar_function("initcap", 1, flags(), |ctx| {
        let Some(s) = text_of(ctx.get_raw(0)) else {
            return Ok(None);
        };
        // Upper case after anything that is not a letter or digit, lower case elsewhere.
        let mut out = String::with_capacity(s.len());
        let mut word_start = true;
        for c in s.chars() {
            if word_start {
                out.extend(one_to_one(c, char::to_uppercase));
            } else {
                out.extend(one_to_one(c, char::to_lowercase));
            }
            word_start = !c.is_alphanumeric();
        }
        Ok(Some(out))
    })?;
    conn.create_scalar_function("repeat", 2, flags(), |ctx| {
        let (Some(s), Some(n)) = (text_of(ctx.get_raw(0)), integer(ctx, 1)?) else {
            return Ok(None);
        };
        let n = usize::try_from(n.max(0)).unwrap_or(0);
        if s.len().saturating_mul(n) > VALUE_BYTES_MAX {
            return Err(raise(
                "54000",
                format!("requested length too large (more than {VALUE_BYTES_MAX} bytes)"),
            ));
        }
        Ok(Some(s.repeat(n)))
    })?;
    conn.create_scalar_function("starts_with", 2, flags(), |ctx| {
        Ok(match (text_of(ctx.get_raw(0)), text_of(ctx.get_raw(1))) {
            (Some(s), Some(p)) => Some(s.starts_with(&p)),
            _ => None,
        })
    })?;
    conn.create_scalar_function("md5", 1, flags(), |ctx| {
        Ok(text_of(ctx.get_raw(0)).map(|s| {
            Md5::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }))
    })?;
    conn.create_scalar_function("translate", 3, flags(), |ctx| {
        let (Some(s), Some(from), Some(to)) = (
            text_of(ctx.get_raw(0)),
            text_of(ctx.get_raw(1)),
            text_of(ctx.get_raw(2)),
        ) else {
            return Ok(None);
        };
        let from: Vec<char> = from.chars().collect();
        let to: Vec<char> = to.chars().collect();
        // A character of `from` without a partner in `to` is removed.
        Ok(Some(
            s.chars()
                .filter_map(|c| match from.iter().position(|f| *f == c) {
                    Some(i) => to.get(i).copied(),
                    None => Some(c),
                })
                .collect::<String>(),
        ))
    })?;
    conn.create_scalar_function("ascii", 1, flags(), |ctx| {
        Ok(text_of(ctx.get_raw(0)).map(|s| s.chars().next().map_or(0, |c| c as i64)))
    })?;
    conn.create_scalar_function("chr", 1, flags(), |ctx| {
        let Some(n) = integer(ctx, 0)? else {
            return Ok(None);
        };
        match u32::try_from(n).ok().and_then(char::from_u32) {
            Some('\0') => Err(raise("54000", "null character not permitted".into())),
            Some(c) => Ok(Some(c.to_string())),
            None => Err(raise(
                "54000",
                format!("requested character too large for encoding: {n}"),
            )),
        }
    })?;
    conn.create_scalar_function("to_hex", 1, flags(), |ctx| {
        Ok(integer(ctx, 0)?.map(|n| match i32::try_from(n) {
            // An int4 argument prints its 32 bits, as PostgreSQL's to_hex(integer).
            Ok(i) => format!("{:x}", i as u32),
            Err(_) => format!("{:x}", n as u64),
        }))
    })?;
    Ok(())
}

/// `s` with each character's case changed by `f` (`char::to_uppercase`, `to_lowercase`), one
/// character at a time as PostgreSQL does.
pub(crate) fn change_case<I: Iterator<Item = char> + ExactSizeIterator>(
    s: &str,
    f: impl Fn(char) -> I + Copy,
) -> String {
    s.chars().flat_map(|c| one_to_one(c, f)).collect()
}

/// `f(c)` where it is a single character, else `c` unchanged: PostgreSQL changes case one
/// character at a time (`upper('ß')` is `ß`, not `SS`).
fn one_to_one<I: Iterator<Item = char> + ExactSizeIterator>(
    c: char,
    f: impl Fn(char) -> I,
) -> impl Iterator<Item = char> {
    let mapped = f(c);
    let single = mapped.len() == 1;
    mapped
        .filter(move |_| single)
        .chain(std::iter::once(c).filter(move |_| !single))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Result<SqlValue, String> {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, SqlValue>(0))
            .map_err(|e| crate::error::sqlstate_of(&e).sqlstate.to_string())
    }

    #[test]
    fn functions_answer_as_postgres() {
        let text = |s: &str| Ok(SqlValue::Text(s.into()));
        let cases: &[(&str, Result<SqlValue, String>)] = &[
            ("SELECT ceil(42.2)", Ok(SqlValue::Real(43.0))),
            ("SELECT floor(-42.8)", Ok(SqlValue::Real(-43.0))),
            ("SELECT trunc(7)", Ok(SqlValue::Integer(7))),
            ("SELECT sign(-8.4)", Ok(SqlValue::Real(-1.0))),
            ("SELECT sqrt(-1)", Err("2201F".into())),
            ("SELECT ln(0)", Err("2201E".into())),
            ("SELECT log(100)", Ok(SqlValue::Real(2.0))),
            ("SELECT log(2, 8)", Ok(SqlValue::Real(3.0))),
            ("SELECT power(0, -1)", Err("2201F".into())),
            ("SELECT power(2, 10)", Ok(SqlValue::Real(1024.0))),
            ("SELECT exp(1000)", Err("22003".into())),
            // A float NaN is the text 'NaN' (`values::float`); specials in, specials out.
            ("SELECT sqrt('NaN')", text("NaN")),
            ("SELECT abs('NaN')", text("NaN")),
            ("SELECT abs(-9223372036854775807 - 1)", Err("22003".into())),
            ("SELECT abs(-2.5)", Ok(SqlValue::Real(2.5))),
            ("SELECT abs('abc')", Err("22P02".into())),
            ("SELECT ceil('NaN')", text("NaN")),
            ("SELECT sign('NaN')", Ok(SqlValue::Real(0.0))),
            ("SELECT exp('Infinity')", Ok(SqlValue::Real(f64::INFINITY))),
            ("SELECT power('NaN', 0)", Ok(SqlValue::Real(1.0))),
            ("SELECT div(-9, 4)", Ok(SqlValue::Integer(-2))),
            ("SELECT div(1, 0)", Err("22012".into())),
            ("SELECT gcd(1071, 462)", Ok(SqlValue::Integer(21))),
            ("SELECT lcm(-4, 6)", Ok(SqlValue::Integer(12))),
            ("SELECT initcap('hello wORLD-x')", text("Hello World-X")),
            ("SELECT repeat('ab', 3)", text("ababab")),
            ("SELECT repeat('ab', -1)", text("")),
            ("SELECT repeat('ab', 100000000)", Err("54000".into())),
            (
                "SELECT md5('abc')",
                text("900150983cd24fb0d6963f7d28e17f72"),
            ),
            ("SELECT translate('12345', '143', 'ax')", text("a2x5")),
            ("SELECT ascii('é')", Ok(SqlValue::Integer(233))),
            ("SELECT chr(0)", Err("54000".into())),
            ("SELECT to_hex(-1)", text("ffffffff")),
            (
                "SELECT to_hex(9223372036854775807)",
                text("7fffffffffffffff"),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(&one(sql), want, "{sql}");
        }
    }
}
