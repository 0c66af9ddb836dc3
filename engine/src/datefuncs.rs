//! PostgreSQL's date/time functions and operators over stored values ("Date/Time Functions
//! and Operators"): `extract`, `date_part`, `date_trunc`, `make_date`, `make_timestamp`, and
//! `date ± integer`, `date - date`. Values are stored in the form PostgreSQL prints
//! (`sqlkeeper_sql::datetime::format`), so a value's form tells its type: a date is
//! `YYYY-MM-DD`, a timestamp has a time, a `timestamptz` ends in `+00` (the session time zone
//! is UTC). Pure functions of their arguments, registered as deterministic.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use sqlkeeper_sql::datetime::{self, DateTimeType, Moment};

use crate::error::raise;
use crate::functions::{flags, text};
use crate::pgfuncs::{integer, number};

/// Length of a date in the form it is stored in (`YYYY-MM-DD`, years 1..9999).
const DATE_TEXT_LEN: usize = 10;

/// The type and value of a stored date, timestamp or `timestamptz`, read from its form;
/// other text is read as a timestamp (with a zone if it has an offset), as PostgreSQL reads an
/// untyped literal given to these functions.
fn moment_of(s: &str) -> rusqlite::Result<(DateTimeType, Moment)> {
    let t = s.trim();
    let ty = if t.len() == DATE_TEXT_LEN && !t.contains(':') {
        DateTimeType::Date
    } else if t.ends_with("+00") || t.ends_with('Z') || t.contains('+') {
        DateTimeType::Timestamptz
    } else {
        DateTimeType::Timestamp
    };
    match datetime::parse(t, ty, None) {
        Ok(Some(m)) => Ok((ty, m)),
        Ok(None) => Err(raise(
            "0A000",
            format!("\"{t}\" has no value without the statement's clock: cast it first"),
        )),
        Err(e) => Err(raise(e.sqlstate, e.message)),
    }
}

/// A stored date only (`YYYY-MM-DD`), for the date operators.
fn date_of(v: ValueRef<'_>) -> Option<NaiveDate> {
    let ValueRef::Text(t) = v else { return None };
    let t = std::str::from_utf8(t).ok()?;
    if t.len() != DATE_TEXT_LEN {
        return None;
    }
    match datetime::parse(t, DateTimeType::Date, None) {
        Ok(Some(Moment::At(at))) => Some(at.date()),
        _ => None,
    }
}

fn date_out_of_range() -> rusqlite::Error {
    raise("22008", "date out of range".to_string())
}

/// `date + integer`, `integer + date`, `date - integer` (a date) and `date - date` (days), if
/// the operands are those; `None` for any other operands.
pub(crate) fn date_arithmetic(
    a: ValueRef<'_>,
    b: ValueRef<'_>,
    op: &str,
) -> Option<rusqlite::Result<SqlValue>> {
    let shifted = |d: NaiveDate, days: i64| {
        Duration::try_days(days)
            .and_then(|delta| d.checked_add_signed(delta))
            .map(|d| SqlValue::Text(d.format("%Y-%m-%d").to_string()))
            .ok_or_else(date_out_of_range)
    };
    match (op, a, b) {
        ("+", ValueRef::Integer(n), d) | ("+", d, ValueRef::Integer(n)) => {
            Some(shifted(date_of(d)?, n))
        }
        ("-", d, ValueRef::Integer(n)) => Some(shifted(date_of(d)?, n.checked_neg()?)),
        ("-", x, y) => {
            let (x, y) = (date_of(x)?, date_of(y)?);
            Some(Ok(SqlValue::Integer((x - y).num_days())))
        }
        _ => None,
    }
}

/// A field of `extract`, as PostgreSQL computes it: an integer, or a number with a fixed
/// count of decimals (`extract` returns numeric: `second` of a timestamp prints
/// `40.000000`).
enum Field {
    Int(i64),
    /// The value in millionths, and the decimals printed.
    Scaled(i128, u32),
}

impl Field {
    fn as_f64(&self) -> f64 {
        match self {
            Field::Int(n) => *n as f64,
            Field::Scaled(v, _) => *v as f64 / 1e6,
        }
    }

    fn numeric_text(&self) -> SqlValue {
        match self {
            Field::Int(n) => SqlValue::Integer(*n),
            Field::Scaled(v, decimals) => {
                let sign = if *v < 0 { "-" } else { "" };
                let v = v.unsigned_abs();
                let (whole, frac) = (v / 1_000_000, v % 1_000_000);
                if *decimals == 0 {
                    return SqlValue::Text(format!("{sign}{whole}"));
                }
                let frac = format!("{frac:06}");
                SqlValue::Text(format!("{sign}{whole}.{}", &frac[..*decimals as usize]))
            }
        }
    }
}

fn unit_error(unit: &str, ty: DateTimeType, recognized: bool) -> rusqlite::Error {
    if recognized {
        raise(
            "0A000",
            format!("unit \"{unit}\" not supported for type {}", ty.pg_name()),
        )
    } else {
        raise(
            "22023",
            format!("unit \"{unit}\" not recognized for type {}", ty.pg_name()),
        )
    }
}

/// Microseconds of the time of day's seconds, fraction included.
fn second_micros(at: &NaiveDateTime) -> i128 {
    at.second() as i128 * 1_000_000 + (at.nanosecond() / 1_000) as i128
}

/// `extract(unit FROM value)`; `None` for an infinite value (PostgreSQL gives NULL, or
/// ±Infinity for the units that grow without end, which numeric prints the same way).
fn extract(unit: &str, ty: DateTimeType, m: Moment) -> rusqlite::Result<Option<Field>> {
    let unit = unit.to_ascii_lowercase();
    let at = match m {
        Moment::At(at) => at,
        _ => return Ok(None),
    };
    let date = ty == DateTimeType::Date;
    let year = at.year() as i64;
    let time_unit = matches!(
        unit.as_str(),
        "hour" | "minute" | "second" | "milliseconds" | "microseconds"
    );
    if date && time_unit {
        return Err(unit_error(&unit, ty, true));
    }
    let int = |n: i64| Ok(Some(Field::Int(n)));
    match unit.as_str() {
        "year" | "years" => int(year),
        "month" | "mon" | "months" => int(at.month() as i64),
        "day" | "days" => int(at.day() as i64),
        "hour" | "hours" => int(at.hour() as i64),
        "minute" | "min" | "minutes" => int(at.minute() as i64),
        "second" | "sec" | "seconds" => Ok(Some(Field::Scaled(second_micros(&at), 6))),
        "milliseconds" | "millisecond" | "ms" => {
            Ok(Some(Field::Scaled(second_micros(&at) * 1_000, 3)))
        }
        "microseconds" | "microsecond" | "us" => int(second_micros(&at) as i64),
        "quarter" => int((at.month() as i64 - 1) / 3 + 1),
        "week" => int(at.iso_week().week() as i64),
        "isoyear" => int(at.iso_week().year() as i64),
        "dow" => int(at.weekday().num_days_from_sunday() as i64),
        "isodow" => int(at.weekday().number_from_monday() as i64),
        "doy" => int(at.ordinal() as i64),
        "decade" => int(year.div_euclid(10)),
        "century" => int(if year > 0 {
            (year + 99) / 100
        } else {
            -((99 - (year - 1)) / 100)
        }),
        "millennium" => int(if year > 0 {
            (year + 999) / 1000
        } else {
            -((999 - (year - 1)) / 1000)
        }),
        "epoch" => {
            let micros = at.and_utc().timestamp_micros() as i128;
            if date {
                int((micros / 1_000_000) as i64)
            } else {
                Ok(Some(Field::Scaled(micros, 6)))
            }
        }
        "timezone" | "timezone_hour" | "timezone_minute" => match ty {
            DateTimeType::Timestamptz => int(0),
            _ => Err(unit_error(&unit, ty, true)),
        },
        _ => Err(unit_error(&unit, ty, false)),
    }
}

/// `date_trunc(unit, value)`: the value cut down to the unit. A date is truncated as the
/// `timestamptz` it converts to, as in PostgreSQL.
fn truncate(unit: &str, ty: DateTimeType, m: Moment) -> rusqlite::Result<(DateTimeType, Moment)> {
    let ty = if ty == DateTimeType::Date {
        DateTimeType::Timestamptz
    } else {
        ty
    };
    let unit = unit.to_ascii_lowercase();
    let Moment::At(at) = m else {
        return Ok((ty, m));
    };
    let day = at.date();
    let year_start = |y: i32| NaiveDate::from_ymd_opt(y, 1, 1);
    let y = at.year();
    let date = match unit.as_str() {
        "millennium" => year_start(((y - 1).div_euclid(1000)) * 1000 + 1),
        "century" => year_start(((y - 1).div_euclid(100)) * 100 + 1),
        "decade" => year_start(y.div_euclid(10) * 10),
        "year" => year_start(y),
        "quarter" => NaiveDate::from_ymd_opt(y, (at.month() - 1) / 3 * 3 + 1, 1),
        "month" => NaiveDate::from_ymd_opt(y, at.month(), 1),
        "week" => {
            day.checked_sub_signed(Duration::days(day.weekday().num_days_from_monday() as i64))
        }
        "day" | "hour" | "minute" | "second" | "milliseconds" | "microseconds" => Some(day),
        _ => return Err(unit_error(&unit, ty, false)),
    }
    .ok_or_else(date_out_of_range)?;
    let micros = second_micros(&at) as i64;
    let (h, mi, us) = match unit.as_str() {
        "hour" => (at.hour(), 0, 0),
        "minute" => (at.hour(), at.minute(), 0),
        "second" => (at.hour(), at.minute(), micros / 1_000_000 * 1_000_000),
        "milliseconds" => (at.hour(), at.minute(), micros / 1_000 * 1_000),
        "microseconds" => (at.hour(), at.minute(), micros),
        _ => (0, 0, 0),
    };
    let t = date
        .and_hms_opt(h, mi, 0)
        .and_then(|t| t.checked_add_signed(Duration::microseconds(us)))
        .ok_or_else(date_out_of_range)?;
    Ok((ty, Moment::At(t)))
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    // extract(unit FROM x) is translated to pg_extract('unit', x): numeric, as in PostgreSQL 15.
    conn.create_scalar_function("pg_extract", 2, flags(), |ctx| {
        let (Some(unit), Some(v)) = (text(ctx, 0), text(ctx, 1)) else {
            return Ok(SqlValue::Null);
        };
        let (ty, m) = moment_of(&v)?;
        Ok(extract(&unit, ty, m)?.map_or(SqlValue::Null, |f| f.numeric_text()))
    })?;
    // date_part(unit, x): double precision; a date is the timestamp at its midnight.
    conn.create_scalar_function("date_part", 2, flags(), |ctx| {
        let (Some(unit), Some(v)) = (text(ctx, 0), text(ctx, 1)) else {
            return Ok(SqlValue::Null);
        };
        let (ty, m) = moment_of(&v)?;
        let ty = if ty == DateTimeType::Date {
            DateTimeType::Timestamp
        } else {
            ty
        };
        Ok(extract(&unit, ty, m)?.map_or(SqlValue::Null, |f| SqlValue::Real(f.as_f64())))
    })?;
    conn.create_scalar_function("date_trunc", 2, flags(), |ctx| {
        let (Some(unit), Some(v)) = (text(ctx, 0), text(ctx, 1)) else {
            return Ok(SqlValue::Null);
        };
        let (ty, m) = moment_of(&v)?;
        let (ty, m) = truncate(&unit, ty, m)?;
        Ok(SqlValue::Text(datetime::format(m, ty)))
    })?;
    conn.create_scalar_function("make_date", 3, flags(), |ctx| {
        let (Some(y), Some(m), Some(d)) = (integer(ctx, 0)?, integer(ctx, 1)?, integer(ctx, 2)?)
        else {
            return Ok(SqlValue::Null);
        };
        let date = make_date(y, m, d)?;
        Ok(SqlValue::Text(datetime::format(
            Moment::At(date.and_hms_opt(0, 0, 0).unwrap_or_default()),
            DateTimeType::Date,
        )))
    })?;
    conn.create_scalar_function("make_timestamp", 6, flags(), |ctx| {
        let mut f = [0i64; 5];
        for (i, slot) in f.iter_mut().enumerate() {
            match integer(ctx, i)? {
                Some(v) => *slot = v,
                None => return Ok(SqlValue::Null),
            }
        }
        let Some(sec) = number(ctx, 5)? else {
            return Ok(SqlValue::Null);
        };
        let date = make_date(f[0], f[1], f[2])?;
        let (h, mi) = (f[3], f[4]);
        let micros = (sec * 1e6).round_ties_even();
        if !(0..24).contains(&h) || !(0..60).contains(&mi) || !(0.0..60e6).contains(&micros) {
            return Err(raise(
                "22008",
                format!("time field value out of range: {h}:{mi:02}:{sec:09.6}"),
            ));
        }
        let at = date.and_hms_opt(h as u32, mi as u32, 0).unwrap_or_default()
            + Duration::microseconds(micros as i64);
        Ok(SqlValue::Text(datetime::format(
            Moment::At(at),
            DateTimeType::Timestamp,
        )))
    })?;
    Ok(())
}

/// `make_date(year, month, day)`: 22008 for a day that does not exist; negative years are BC.
fn make_date(y: i64, m: i64, d: i64) -> rusqlite::Result<NaiveDate> {
    let out = || {
        raise(
            "22008",
            format!("date field value out of range: {y}-{m:02}-{d:02}"),
        )
    };
    if y == 0 {
        return Err(out());
    }
    // Year 1 BC is year 0 of the proleptic calendar.
    let year = if y < 0 { y + 1 } else { y };
    let (Ok(year), Ok(m), Ok(d)) = (i32::try_from(year), u32::try_from(m), u32::try_from(d)) else {
        return Err(out());
    };
    NaiveDate::from_ymd_opt(year, m, d).ok_or_else(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::functions::query_value as q;

    #[test]
    fn functions_give_postgres_values_and_errors() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        let text = |s: &str| Ok(SqlValue::Text(s.into()));
        let cases: &[(&str, Result<SqlValue, String>)] = &[
            (
                "SELECT pg_extract('year', '2001-02-16 20:38:40')",
                Ok(SqlValue::Integer(2001)),
            ),
            (
                "SELECT pg_extract('second', '2001-02-16 20:38:40.5')",
                text("40.500000"),
            ),
            (
                "SELECT pg_extract('dow', '2001-02-18')",
                Ok(SqlValue::Integer(0)),
            ),
            (
                "SELECT pg_extract('doy', '2001-02-16')",
                Ok(SqlValue::Integer(47)),
            ),
            (
                "SELECT pg_extract('epoch', '2001-02-16')",
                Ok(SqlValue::Integer(982281600)),
            ),
            (
                "SELECT pg_extract('century', '2000-12-16')",
                Ok(SqlValue::Integer(20)),
            ),
            (
                "SELECT pg_extract('week', '2001-02-16')",
                Ok(SqlValue::Integer(7)),
            ),
            (
                "SELECT date_part('hour', '2001-02-16 20:38:40')",
                Ok(SqlValue::Real(20.0)),
            ),
            (
                "SELECT date_part('hour', '2001-02-16')",
                Ok(SqlValue::Real(0.0)),
            ),
            (
                "SELECT date_trunc('hour', '2001-02-16 20:38:40')",
                text("2001-02-16 20:00:00"),
            ),
            (
                "SELECT date_trunc('week', '2001-02-16 20:38:40')",
                text("2001-02-12 00:00:00"),
            ),
            (
                "SELECT date_trunc('month', '2001-02-16')",
                text("2001-02-01 00:00:00+00"),
            ),
            (
                "SELECT date_trunc('century', '2001-02-16 20:38:40')",
                text("2001-01-01 00:00:00"),
            ),
            ("SELECT make_date(2013, 7, 15)", text("2013-07-15")),
            (
                "SELECT make_timestamp(2013, 7, 15, 8, 15, 23.5)",
                text("2013-07-15 08:15:23.5"),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(&q(&conn, sql), want, "{sql}");
        }
        for (sql, code) in [
            ("SELECT pg_extract('hour', '2001-02-16')", "0A000"),
            (
                "SELECT pg_extract('fortnight', '2001-02-16 20:38:40')",
                "22023",
            ),
            ("SELECT make_date(2013, 2, 30)", "22008"),
            ("SELECT pg_extract('year', 'yesterday-ish')", "22007"),
        ] {
            let err = q(&conn, sql).unwrap_err();
            assert!(err.contains(code), "{sql}: {err}");
        }
    }

    #[test]
    fn dates_add_and_subtract_days() {
        let d = |s: &'static str| ValueRef::Text(s.as_bytes());
        let r = |a, b, op| date_arithmetic(a, b, op).map(|r| r.unwrap());
        assert_eq!(
            r(d("2001-09-28"), ValueRef::Integer(7), "+"),
            Some(SqlValue::Text("2001-10-05".into()))
        );
        assert_eq!(
            r(ValueRef::Integer(7), d("2001-09-28"), "+"),
            Some(SqlValue::Text("2001-10-05".into()))
        );
        assert_eq!(
            r(d("2001-10-01"), ValueRef::Integer(7), "-"),
            Some(SqlValue::Text("2001-09-24".into()))
        );
        assert_eq!(
            r(d("2001-10-01"), d("2001-09-28"), "-"),
            Some(SqlValue::Integer(3))
        );
        assert_eq!(r(d("not a date"), ValueRef::Integer(1), "+"), None);
        assert_eq!(r(ValueRef::Integer(1), ValueRef::Integer(1), "+"), None);
    }
}
