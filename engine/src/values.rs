//! Postgres' errors where SQLite would answer with a wrong value: division by zero, integer
//! ranges, invalid casts, too-long strings, invalid uuids, JSON and dates. The translator
//! (`sqlkeeper_sql::values`) writes `/` and `%` as calls of `DIV_FUNCTION` and `MOD_FUNCTION`,
//! casts to these types as `CAST_FUNCTION`, and gives every column of these types a `CHECK`
//! calling `VALID_FUNCTION`. All of them are
//! pure functions of their arguments, so every replica raises the same error for the same
//! entry. The names are reserved: clients cannot call `_sqlkeeper*` functions.

use rusqlite::functions::Context;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use std::sync::Arc;

use crate::determinism::StampCell;
use crate::error::raise;
use crate::functions::flags;
use sqlkeeper_sql::datetime::DateTimeType;
use sqlkeeper_sql::numeric::FloatInputError;

use sqlkeeper_sql::{
    ADD_FUNCTION as ADD, CAST_FUNCTION as CAST, DIV_FUNCTION as DIV, MOD_FUNCTION as MOD,
    MUL_FUNCTION as MUL, NAN_OR_FUNCTION as NAN_OR, NEG_FUNCTION as NEG,
    SINGLE_ROW_FUNCTION as SINGLE_ROW, SUB_FUNCTION as SUB, VALID_FUNCTION as VALID,
};

/// A number as SQLite's arithmetic sees it.
enum Num {
    Int(i64),
    Real(f64),
}

fn number(v: ValueRef<'_>, op: &str) -> rusqlite::Result<Option<Num>> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(Num::Int(i)),
        ValueRef::Real(f) => Some(Num::Real(f)),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Some(Num::Int(i))
            } else if let Ok(f) = s.parse::<f64>() {
                Some(Num::Real(f))
            } else {
                return Err(raise(
                    "22P02",
                    format!("invalid input syntax for type numeric: \"{s}\""),
                ));
            }
        }
        ValueRef::Blob(_) => {
            return Err(raise(
                "42883",
                format!("operator does not exist: bytea {op} bytea"),
            ))
        }
    })
}

fn division(ctx: &Context<'_>, op: &str) -> rusqlite::Result<SqlValue> {
    let (Some(a), Some(b)) = (number(ctx.get_raw(0), op)?, number(ctx.get_raw(1), op)?) else {
        return Ok(SqlValue::Null);
    };
    let zero = || raise("22012", "division by zero".into());
    Ok(match (a, b) {
        (Num::Int(_), Num::Int(0)) => return Err(zero()),
        (Num::Int(a), Num::Int(b)) if op == "/" => match a.checked_div(b) {
            Some(q) => SqlValue::Integer(q),
            None => return Err(raise("22003", "bigint out of range".into())),
        },
        // i64::MIN % -1 overflows in Rust; its remainder is 0.
        (Num::Int(a), Num::Int(b)) => SqlValue::Integer(a.checked_rem(b).unwrap_or(0)),
        (a, b) => {
            let f = |n: Num| match n {
                Num::Int(i) => i as f64,
                Num::Real(f) => f,
            };
            let (a, b) = (f(a), f(b));
            // PostgreSQL's float8_div: NaN divided by zero is NaN, not an error.
            if b == 0.0 && !a.is_nan() {
                return Err(zero());
            }
            if op == "/" {
                // PostgreSQL's float8_div: a finite quotient that does not fit is an error.
                let q = a / b;
                if q.is_infinite() && a.is_finite() {
                    return Err(raise("22003", "value out of range: overflow".into()));
                }
                if q == 0.0 && a != 0.0 && b.is_finite() {
                    return Err(raise("22003", "value out of range: underflow".into()));
                }
                float(q)
            } else {
                float(a % b)
            }
        }
    })
}

/// `a + b`, `a - b`, `a * b` with SQLite's operands (text read as a number, as for `/`) and
/// Postgres' overflow: 22003 where SQLite would give a float for integers past 64 bits or an
/// infinity for finite floats.
fn arithmetic(ctx: &Context<'_>, op: &str) -> rusqlite::Result<SqlValue> {
    if let Some(r) = crate::datefuncs::date_arithmetic(ctx.get_raw(0), ctx.get_raw(1), op) {
        return r;
    }
    if op == "-" {
        if let Some(r) = crate::jsonfuncs::jsonb_minus(ctx.get_raw(0), ctx.get_raw(1)) {
            return r;
        }
    }
    let (Some(a), Some(b)) = (number(ctx.get_raw(0), op)?, number(ctx.get_raw(1), op)?) else {
        return Ok(SqlValue::Null);
    };
    if let (Num::Int(x), Num::Int(y)) = (&a, &b) {
        let r = match op {
            "+" => x.checked_add(*y),
            "-" => x.checked_sub(*y),
            _ => x.checked_mul(*y),
        };
        return r
            .map(SqlValue::Integer)
            .ok_or_else(|| raise("22003", "bigint out of range".into()));
    }
    let f = |n: Num| match n {
        Num::Int(i) => i as f64,
        Num::Real(f) => f,
    };
    let (x, y) = (f(a), f(b));
    let r = match op {
        "+" => x + y,
        "-" => x - y,
        _ => x * y,
    };
    if !r.is_finite() && x.is_finite() && y.is_finite() {
        return Err(raise("22003", "value out of range: overflow".into()));
    }
    // PostgreSQL's float8_mul: a product of two non-zero numbers that rounds to zero.
    if op == "*" && r == 0.0 && x != 0.0 && y != 0.0 {
        return Err(raise("22003", "value out of range: underflow".into()));
    }
    Ok(float(r))
}

/// A float result as SQLite can hold it: `NaN` as the text `'NaN'` (SQLite would store NULL),
/// which sorts after every number as PostgreSQL's NaN does and is equal to itself.
pub(crate) fn float(f: f64) -> SqlValue {
    if f.is_nan() {
        SqlValue::Text(sqlkeeper_sql::numeric::NAN_TEXT.into())
    } else {
        SqlValue::Real(f)
    }
}

/// An integer result checked against the range of the type named by the call's third
/// argument, if it has one.
fn in_range(ctx: &Context<'_>, v: SqlValue) -> rusqlite::Result<SqlValue> {
    if ctx.len() < 3 {
        return Ok(v);
    }
    let ty = match ctx.get_raw(2) {
        ValueRef::Text(t) => std::str::from_utf8(t).unwrap_or_default(),
        _ => "",
    };
    match (&v, int_type(ty)) {
        (SqlValue::Integer(i), Some((_, name, min, max))) if !(min..=max).contains(i) => {
            Err(raise("22003", format!("{name} out of range")))
        }
        _ => Ok(v),
    }
}

/// Postgres' name of an integer type, and its range.
fn int_type(ty: &str) -> Option<(&'static str, &'static str, i64, i64)> {
    match ty {
        "int2" => Some(("smallint", "smallint", i16::MIN as i64, i16::MAX as i64)),
        "int4" => Some(("integer", "integer", i32::MIN as i64, i32::MAX as i64)),
        "int8" => Some(("bigint", "bigint", i64::MIN, i64::MAX)),
        _ => None,
    }
}

/// A value of `float8` (`double precision`) or `float4` (`real`), from what SQLite holds: text
/// read as PostgreSQL reads a float (`1.5e3`, `Infinity`, `-inf`; out of range is 22003, not
/// an infinity or zero), a `float4` rounded to single precision. `NaN` is the text `'NaN'`
/// ([`float`]). `None` for other types.
fn to_float(v: ValueRef<'_>, ty: &str) -> Option<rusqlite::Result<SqlValue>> {
    let (name, single) = match ty {
        "float8" => ("double precision", false),
        "float4" => ("real", true),
        _ => return None,
    };
    let fit = |f: f64| -> rusqlite::Result<SqlValue> {
        let g = if single { f64::from(f as f32) } else { f };
        if g.is_finite() != f.is_finite() || (g == 0.0 && f != 0.0) {
            return Err(raise(
                "22003",
                format!("value out of range: overflow for type {name}"),
            ));
        }
        Ok(SqlValue::Real(g))
    };
    Some(match v {
        ValueRef::Null => Ok(SqlValue::Null),
        ValueRef::Integer(i) => fit(i as f64),
        ValueRef::Real(f) => fit(f),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            match sqlkeeper_sql::numeric::parse_float(&s, single) {
                Ok(f) => Ok(float(f)),
                Err(FloatInputError::Syntax) => Err(raise(
                    "22P02",
                    format!("invalid input syntax for type {name}: \"{s}\""),
                )),
                Err(FloatInputError::OutOfRange) => Err(raise(
                    "22003",
                    format!("\"{}\" is out of range for type {name}", s.trim()),
                )),
            }
        }
        ValueRef::Blob(_) => Err(raise("42846", format!("cannot cast type bytea to {name}"))),
    })
}

/// A value of an integer type, from what SQLite holds. `cast`: an explicit cast (text is
/// parsed as Postgres parses an integer literal); otherwise a stored value, whose numeric
/// text SQLite's column affinity already made a number.
fn to_int(v: ValueRef<'_>, ty: &str, cast: bool) -> rusqlite::Result<SqlValue> {
    let Some((name, range_name, min, max)) = int_type(ty) else {
        return Ok(super::functions::owned(v));
    };
    let out_of_range = || raise("22003", format!("{range_name} out of range"));
    let in_range = |i: i64| {
        if (min..=max).contains(&i) {
            Ok(SqlValue::Integer(i))
        } else {
            Err(out_of_range())
        }
    };
    match v {
        ValueRef::Null => Ok(SqlValue::Null),
        ValueRef::Integer(i) => in_range(i),
        // Postgres rounds a fractional value assigned or cast to an integer type.
        ValueRef::Real(f) => {
            let r = f.round();
            if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&r) {
                if cast {
                    in_range(r as i64)
                } else {
                    in_range(r as i64).map(|_| SqlValue::Real(f))
                }
            } else {
                Err(out_of_range())
            }
        }
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            let trimmed = s.trim();
            let digits = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
            if cast && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                // Text read as an integer (`int4in`) names the value, where arithmetic and
                // casts of numbers say `integer out of range`.
                let text_out_of_range = || {
                    raise(
                        "22003",
                        format!("value \"{s}\" is out of range for type {name}"),
                    )
                };
                return match trimmed.parse::<i64>() {
                    Ok(i) => in_range(i).map_err(|_| text_out_of_range()),
                    Err(_) => Err(text_out_of_range()),
                };
            }
            Err(raise(
                "22P02",
                format!("invalid input syntax for type {name}: \"{s}\""),
            ))
        }
        ValueRef::Blob(_) => Err(raise("42804", format!("cannot cast type bytea to {name}"))),
    }
}

/// A value of `numeric` with type modifier `typmod` (precision and scale, or -1), from what
/// SQLite holds: its decimal digits (a float's shortest round-trip digits, text read as
/// PostgreSQL reads a numeric) rounded half away from zero to the scale; 22P02 for text that is
/// not a number, 22003 when the rounded value has more integer digits than the precision
/// leaves. The result is what SQLite's NUMERIC affinity stores for those digits: an integer
/// when they are one that fits 64 bits, else a float (which keeps 15 to 17 significant
/// digits, `compat.md`). `NaN` cannot be kept (SQLite turns it
/// into NULL): refused (0A000) rather than changed, as for floats.
fn to_numeric(v: ValueRef<'_>, typmod: i64) -> rusqlite::Result<SqlValue> {
    use sqlkeeper_sql::numeric::{precision_scale, Decimal};
    let overflow = || raise("22003", "numeric field overflow".into());
    let digits = match v {
        ValueRef::Null => return Ok(SqlValue::Null),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.is_infinite() => {
            return match precision_scale(typmod) {
                Some(_) => Err(overflow()),
                None => Ok(SqlValue::Real(f)),
            }
        }
        ValueRef::Real(f) => format!("{f}"),
        ValueRef::Text(t) => String::from_utf8_lossy(t).trim().to_string(),
        ValueRef::Blob(_) => {
            return Err(raise("42846", "cannot cast type bytea to numeric".into()))
        }
    };
    let Some(d) = Decimal::parse(&digits) else {
        return match digits.to_ascii_lowercase().trim_start_matches(['+', '-']) {
            "nan" => Err(raise(
                "0A000",
                "NaN is not supported as a value of type numeric".into(),
            )),
            "infinity" | "inf" if precision_scale(typmod).is_some() => Err(overflow()),
            "infinity" | "inf" => Ok(SqlValue::Real(if digits.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })),
            _ => Err(raise(
                "22P02",
                format!("invalid input syntax for type numeric: \"{digits}\""),
            )),
        };
    };
    let text = d.fitted(typmod).map_err(|_| overflow())?.to_string();
    Ok(match text.parse::<i64>() {
        Ok(i) => SqlValue::Integer(i),
        // Past a float's range it cannot be kept (Postgres keeps up to 131,072 digits).
        Err(_) => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => SqlValue::Real(f),
            _ => return Err(overflow()),
        },
    })
}

/// Date and time text as a value of `ty` (`date`, `timestamp`, `timestamptz`): its error, or
/// (`cast`) the text PostgreSQL prints for it, which is also how such values are stored.
/// `now` reads the clock words (`'now'`, `'today'`); without it they stay as written.
fn date_time(
    s: String,
    ty: DateTimeType,
    cast: bool,
    now: Option<i64>,
) -> rusqlite::Result<SqlValue> {
    match sqlkeeper_sql::datetime::canonical(&s, ty, now) {
        Ok(Some(c)) if cast => Ok(SqlValue::Text(c)),
        Ok(_) => Ok(SqlValue::Text(s)),
        Err(e) => Err(raise(e.sqlstate, e.message)),
    }
}

/// Whether a stored `v` is a value of `ty` (its error if not), without building the value
/// where that can be avoided: the common cases return at once.
fn valid(v: ValueRef<'_>, ty: &str, typmod: i64) -> rusqlite::Result<()> {
    match (v, ty) {
        (ValueRef::Null, _) | (ValueRef::Integer(_), "int8") => Ok(()),
        (ValueRef::Integer(_) | ValueRef::Real(_), "numeric") if typmod < 4 => Ok(()),
        (ValueRef::Integer(i), "int4") if i32::try_from(i).is_ok() => Ok(()),
        (ValueRef::Integer(i), "int2") if i16::try_from(i).is_ok() => Ok(()),
        // A string of at most n bytes has at most n characters.
        (ValueRef::Text(t), "varchar" | "bpchar") if typmod >= 0 && t.len() <= typmod as usize => {
            Ok(())
        }
        _ => convert(v, ty, typmod, false, None).map(|_| ()),
    }
}

/// `v` as a value of `ty`, or its error. `cast`: an explicit cast (which converts: a
/// `varchar(n)` cast cuts the text, a uuid is written in lower case); otherwise the check of a
/// stored value (which only validates). `now`: the clock of the command, for `'now'`.
fn convert(
    v: ValueRef<'_>,
    ty: &str,
    typmod: i64,
    cast: bool,
    now: Option<i64>,
) -> rusqlite::Result<SqlValue> {
    if let Some(element) = ty.strip_suffix("[]") {
        // An element is text to be read as its type (a conversion, which a stored scalar's
        // check is not); only a too-long string is refused rather than cut, as a stored
        // `varchar(n)` value is.
        return crate::arrays::element_values(v, element, typmod, |v, ty, typmod| {
            let cut = cast || !matches!(ty, "varchar" | "bpchar");
            convert(v, ty, typmod, cut, now)
        });
    }
    if int_type(ty).is_some() {
        return to_int(v, ty, cast);
    }
    if let Some(f) = to_float(v, ty) {
        return f;
    }
    if ty == "numeric" {
        return to_numeric(v, typmod);
    }
    let Some(s) = crate::functions::text_of(v) else {
        return Ok(SqlValue::Null);
    };
    if let Some(dt) = DateTimeType::from_name(ty) {
        return date_time(s, dt, cast, now);
    }
    match ty {
        "varchar" | "bpchar" if typmod >= 0 => {
            let n = typmod as usize;
            let chars = s.chars().count();
            if chars <= n {
                return Ok(SqlValue::Text(s));
            }
            let cut: String = s.chars().take(n).collect();
            // Postgres cuts an explicit cast, and trailing spaces beyond the length.
            if cast || s.chars().skip(n).all(|c| c == ' ') {
                return Ok(SqlValue::Text(if cast { cut } else { s }));
            }
            let name = if ty == "varchar" {
                "character varying"
            } else {
                "character"
            };
            Err(raise(
                "22001",
                format!("value too long for type {name}({n})"),
            ))
        }
        "uuid" => match sqlkeeper_sql::uuid::parse(s.trim()) {
            Some(b) if cast => Ok(SqlValue::Text(sqlkeeper_sql::uuid::text(&b))),
            Some(_) => Ok(SqlValue::Text(s)),
            None => Err(raise(
                "22P02",
                format!("invalid input syntax for type uuid: \"{s}\""),
            )),
        },
        "jsonb" => match crate::jsonb::normalize(&s) {
            Ok(n) if cast => Ok(SqlValue::Text(n)),
            Ok(_) => Ok(SqlValue::Text(s)),
            Err((state, message)) => Err(raise(state, message)),
        },
        "json" => match serde_json::from_str::<serde::de::IgnoredAny>(&s) {
            Ok(_) => Ok(SqlValue::Text(s)),
            Err(_) => Err(raise(
                "22P02",
                format!("invalid input syntax for type {ty}"),
            )),
        },
        _ => Ok(SqlValue::Text(s)),
    }
}

/// Whether a string literal cast to `ty` (`'abc'::int`, as `Translated::literal_casts` lists
/// them) is a value of it: PostgreSQL converts such a literal while it parses the statement, so
/// its error comes first, wherever the cast stands (an untaken `CASE` branch included). The
/// same conversion as the cast's at run time; clock words (`'now'`) are left to it.
pub fn check_literal_cast(text: &str, ty: &str, typmod: i64) -> Result<(), crate::ExecError> {
    convert(ValueRef::Text(text.as_bytes()), ty, typmod, true, None)
        .map(|_| ())
        .map_err(|e| crate::error::sqlstate_of(&e))
}

/// The type name and typmod arguments, read without copying (a check runs for every stored
/// value of its column).
fn type_args<'a>(ctx: &'a Context<'_>) -> rusqlite::Result<(&'a str, i64)> {
    let ty = ctx
        .get_raw(1)
        .as_str()
        .map_err(|e| rusqlite::Error::UserFunctionError(e.into()))?;
    let typmod = match ctx.len() > 2 {
        true => ctx.get_raw(2).as_i64().unwrap_or(-1),
        false => -1,
    };
    Ok((ty, typmod))
}

/// Registers the functions on `conn`. Casts read the clock words (`'now'::timestamptz`) from `stamp`, the time of the command
/// (or of the read) the connection runs.
pub(crate) fn install(conn: &Connection, stamp: &Arc<StampCell>) -> rusqlite::Result<()> {
    conn.create_scalar_function(SINGLE_ROW, 2, flags(), |ctx| {
        if ctx.get_raw(0).as_i64().unwrap_or(0) > 1 {
            return Err(raise(
                "21000",
                "more than one row returned by a subquery used as an expression".into(),
            ));
        }
        Ok(crate::functions::owned(ctx.get_raw(1)))
    })?;
    conn.create_scalar_function(NEG, 1, flags(), |ctx| {
        Ok(match number(ctx.get_raw(0), "-")? {
            None => SqlValue::Null,
            Some(Num::Int(i)) => SqlValue::Integer(
                i.checked_neg()
                    .ok_or_else(|| raise("22003", "bigint out of range".into()))?,
            ),
            Some(Num::Real(f)) => float(-f),
        })
    })?;
    conn.create_scalar_function(NAN_OR, 2, flags(), |ctx| {
        let (sum, kind) = (ctx.get_raw(0), ctx.get_raw(1).as_i64().unwrap_or(0));
        Ok(match (sum, kind) {
            (_, 2) | (ValueRef::Null, 1) => float(f64::NAN),
            _ => crate::functions::owned(sum),
        })
    })?;
    // With a third argument (`'int2'`, `'int4'`), the translator knows both operands are of
    // that integer type, and so is the result: 22003 past its range, as in PostgreSQL.
    for n in [2, 3] {
        conn.create_scalar_function(ADD, n, flags(), |ctx| in_range(ctx, arithmetic(ctx, "+")?))?;
        conn.create_scalar_function(SUB, n, flags(), |ctx| in_range(ctx, arithmetic(ctx, "-")?))?;
        conn.create_scalar_function(MUL, n, flags(), |ctx| in_range(ctx, arithmetic(ctx, "*")?))?;
        conn.create_scalar_function(DIV, n, flags(), |ctx| in_range(ctx, division(ctx, "/")?))?;
        conn.create_scalar_function(MOD, n, flags(), |ctx| in_range(ctx, division(ctx, "%")?))?;
    }
    for n in [2, 3] {
        let stamp = stamp.clone();
        conn.create_scalar_function(CAST, n, flags(), move |ctx| {
            let (ty, typmod) = type_args(ctx)?;
            convert(ctx.get_raw(0), ty, typmod, true, Some(stamp.micros()))
        })?;
        conn.create_scalar_function(VALID, n, flags(), |ctx| {
            let (ty, typmod) = type_args(ctx)?;
            valid(ctx.get_raw(0), ty, typmod).map(|()| true)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nan() -> SqlValue {
        SqlValue::Text("NaN".into())
    }

    fn one(conn: &Connection, sql: &str) -> Result<SqlValue, String> {
        conn.query_row(sql, [], |r| r.get::<_, SqlValue>(0))
            .map_err(|e| crate::error::sqlstate_of(&e).sqlstate.to_string())
    }

    #[test]
    fn postgres_errors_instead_of_wrong_values() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn, &Default::default()).unwrap();
        let cases: &[(&str, Result<SqlValue, &str>)] = &[
            ("SELECT _sqlkeeper_div(1, 0)", Err("22012")),
            ("SELECT _sqlkeeper_div(1.5, 0)", Err("22012")),
            ("SELECT _sqlkeeper_div(1e-50, 1.5e300)", Err("22003")),
            ("SELECT _sqlkeeper_div(1e300, 1e-300)", Err("22003")),
            ("SELECT _sqlkeeper_mul(1e-200, 1e-200)", Err("22003")),
            (
                "SELECT _sqlkeeper_div(0.0, 1.5e300)",
                Ok(SqlValue::Real(0.0)),
            ),
            ("SELECT _sqlkeeper_mod(7, 0)", Err("22012")),
            ("SELECT _sqlkeeper_div(7, 2)", Ok(SqlValue::Integer(3))),
            ("SELECT _sqlkeeper_div(-7, 2)", Ok(SqlValue::Integer(-3))),
            ("SELECT _sqlkeeper_mod(-7, 2)", Ok(SqlValue::Integer(-1))),
            ("SELECT _sqlkeeper_mod(5.5, 2)", Ok(SqlValue::Real(1.5))),
            (
                "SELECT _sqlkeeper_div(-9223372036854775808, -1)",
                Err("22003"),
            ),
            ("SELECT _sqlkeeper_div(NULL, 0)", Ok(SqlValue::Null)),
            (
                "SELECT _sqlkeeper_add(9223372036854775807, 1)",
                Err("22003"),
            ),
            (
                "SELECT _sqlkeeper_sub(-9223372036854775808, 1)",
                Err("22003"),
            ),
            (
                "SELECT _sqlkeeper_mul(4294967296, 4294967296)",
                Err("22003"),
            ),
            ("SELECT _sqlkeeper_mul(1e300, 1e300)", Err("22003")),
            // numeric: rounded to the scale, checked against the precision and the range
            // a stored value can keep.
            (
                "SELECT _sqlkeeper_cast('2.675', 'numeric', 655366)",
                Ok(SqlValue::Real(2.68)),
            ),
            (
                "SELECT _sqlkeeper_cast(7, 'numeric', 655366)",
                Ok(SqlValue::Real(7.0)),
            ),
            (
                "SELECT _sqlkeeper_cast(123456789.999, 'numeric', 655366)",
                Err("22003"),
            ),
            ("SELECT _sqlkeeper_cast('abc', 'numeric', -1)", Err("22P02")),
            ("SELECT _sqlkeeper_cast('NaN', 'numeric', -1)", Err("0A000")),
            (
                "SELECT _sqlkeeper_cast('1e400', 'numeric', -1)",
                Err("22003"),
            ),
            (
                "SELECT _sqlkeeper_valid(X'00', 'numeric', -1)",
                Err("42846"),
            ),
            ("SELECT _sqlkeeper_add(2, ' 3 ')", Ok(SqlValue::Integer(5))),
            ("SELECT _sqlkeeper_add(2, 0.5)", Ok(SqlValue::Real(2.5))),
            ("SELECT _sqlkeeper_sub(NULL, 1)", Ok(SqlValue::Null)),
            (
                "SELECT _sqlkeeper_cast(' 1.5e3 ', 'float8')",
                Ok(SqlValue::Real(1500.0)),
            ),
            (
                "SELECT _sqlkeeper_cast('-Infinity', 'float8')",
                Ok(SqlValue::Real(f64::NEG_INFINITY)),
            ),
            (
                "SELECT _sqlkeeper_cast('inf', 'float4')",
                Ok(SqlValue::Real(f64::INFINITY)),
            ),
            (
                "SELECT _sqlkeeper_cast('0.1', 'float4')",
                Ok(SqlValue::Real(f64::from(0.1f32))),
            ),
            (
                "SELECT _sqlkeeper_cast(7, 'float8')",
                Ok(SqlValue::Real(7.0)),
            ),
            ("SELECT _sqlkeeper_cast('abc', 'float8')", Err("22P02")),
            ("SELECT _sqlkeeper_cast('', 'float8')", Err("22P02")),
            ("SELECT _sqlkeeper_cast(' nan ', 'float8')", Ok(nan())),
            ("SELECT _sqlkeeper_cast('-NaN', 'float4')", Ok(nan())),
            (
                "SELECT _sqlkeeper_add(_sqlkeeper_cast('NaN', 'float8'), 1)",
                Ok(nan()),
            ),
            (
                "SELECT _sqlkeeper_sub(_sqlkeeper_cast('inf', 'float8'), 'Infinity')",
                Ok(nan()),
            ),
            ("SELECT _sqlkeeper_div('NaN', 0)", Ok(nan())),
            ("SELECT _sqlkeeper_div(1, 0.0)", Err("22012")),
            ("SELECT _sqlkeeper_mul('NaN', 0)", Ok(nan())),
            ("SELECT _sqlkeeper_neg('NaN')", Ok(nan())),
            ("SELECT _sqlkeeper_neg(-0.0)", Ok(SqlValue::Real(0.0))),
            ("SELECT _sqlkeeper_neg(0.5)", Ok(SqlValue::Real(-0.5))),
            (
                "SELECT _sqlkeeper_neg(-9223372036854775807 - 1)",
                Err("22003"),
            ),
            ("SELECT _sqlkeeper_cast('1e400', 'float8')", Err("22003")),
            ("SELECT _sqlkeeper_cast('1e-400', 'float8')", Err("22003")),
            ("SELECT _sqlkeeper_cast('1e39', 'float4')", Err("22003")),
            ("SELECT _sqlkeeper_cast(1e300, 'float4')", Err("22003")),
            (
                "SELECT _sqlkeeper_cast('0e5', 'float8')",
                Ok(SqlValue::Real(0.0)),
            ),
            ("SELECT _sqlkeeper_cast('abc', 'int4')", Err("22P02")),
            (
                "SELECT _sqlkeeper_cast(' 42 ', 'int4')",
                Ok(SqlValue::Integer(42)),
            ),
            ("SELECT _sqlkeeper_cast('12.5', 'int4')", Err("22P02")),
            (
                "SELECT _sqlkeeper_cast(2.5, 'int4')",
                Ok(SqlValue::Integer(3)),
            ),
            ("SELECT _sqlkeeper_cast(2147483648, 'int4')", Err("22003")),
            ("SELECT _sqlkeeper_cast(32768, 'int2')", Err("22003")),
            (
                "SELECT _sqlkeeper_cast('9223372036854775808', 'int8')",
                Err("22003"),
            ),
            ("SELECT _sqlkeeper_valid(2147483648, 'int4')", Err("22003")),
            ("SELECT _sqlkeeper_valid('abc', 'int8')", Err("22P02")),
            (
                "SELECT _sqlkeeper_valid('abcdefghi', 'varchar', 8)",
                Err("22001"),
            ),
            (
                "SELECT _sqlkeeper_valid('abcdefgh  ', 'varchar', 8)",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_cast('abcdefghi', 'varchar', 3)",
                Ok(SqlValue::Text("abc".into())),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-30', 'date')",
                Err("22008"),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29', 'date')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('2023-02-29', 'date')",
                Err("22008"),
            ),
            ("SELECT _sqlkeeper_cast('abc', 'date')", Err("22007")),
            ("SELECT _sqlkeeper_cast('', 'date')", Err("22007")),
            ("SELECT _sqlkeeper_cast('42', 'date')", Err("22008")),
            ("SELECT _sqlkeeper_cast('20240230', 'date')", Err("22008")),
            (
                "SELECT _sqlkeeper_valid('990108', 'date')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-1-5', 'date')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29x', 'date')",
                Err("22007"),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29 25:00', 'date')",
                Err("22008"),
            ),
            (
                "SELECT _sqlkeeper_valid('Feb 3 2024', 'date')",
                Err("0A000"),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29 24:00:01', 'timestamp')",
                Err("22008"),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29 24:00', 'timestamp')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29 10:61', 'timestamptz')",
                Err("22008"),
            ),
            (
                "SELECT _sqlkeeper_valid('2024-02-29T10:00:00.123456+05:30', 'timestamptz')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('abc', 'timestamptz')",
                Err("22007"),
            ),
            ("SELECT _sqlkeeper_valid('{\"a\":', 'jsonb')", Err("22P02")),
            (
                "SELECT _sqlkeeper_valid('not-a-uuid', 'uuid')",
                Err("22P02"),
            ),
            (
                "SELECT _sqlkeeper_cast('{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}', 'uuid')",
                Ok(SqlValue::Text(
                    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into(),
                )),
            ),
            (
                "SELECT _sqlkeeper_valid('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'uuid')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11', 'uuid')",
                Ok(SqlValue::Integer(1)),
            ),
            (
                "SELECT _sqlkeeper_valid('a0eeb-c999c0b4ef8bb6d6bb9bd380a11', 'uuid')",
                Err("22P02"),
            ),
        ];
        for (sql, want) in cases {
            let got = one(&conn, sql);
            let want = want.clone().map_err(str::to_string);
            assert_eq!(got, want, "{sql}");
        }
    }
}
