//! The two steps of `generate_series(start, stop [, step])` over integers, as PostgreSQL has
//! it. The translator writes the series as a recursive common table expression
//! (`sqlkeeper_sql::SERIES_FIRST_FUNCTION` for its first value, `SERIES_NEXT_FUNCTION` for each
//! next one), so each value is a row of an ordinary SQLite statement, charged to its step
//! budget. What the functions decide: a step of zero is 22023; NULL arguments make an empty
//! series; a step pointing away from `stop` gives nothing; a value that would pass `stop`, or
//! overflow a `bigint`, ends the series (NULL), as PostgreSQL's `int8` series ends.

use rusqlite::functions::Context;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;
use sqlkeeper_sql::{SERIES_FIRST_FUNCTION, SERIES_NEXT_FUNCTION};

use crate::error::raise;
use crate::functions::flags;

/// An argument as an integer: `None` for NULL, 0A000 for a type this series does not have
/// (PostgreSQL also has `numeric` and timestamp series).
fn integer(v: ValueRef<'_>) -> rusqlite::Result<Option<i64>> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        _ => Err(raise(
            "0A000",
            "generate_series is supported over integers only".into(),
        )),
    }
}

/// The arguments `(value, stop, step)`, or `None` if one is NULL; 22023 for a zero step.
fn args(ctx: &Context<'_>) -> rusqlite::Result<Option<(i64, i64, i64)>> {
    let (v, stop, step) = (
        integer(ctx.get_raw(0))?,
        integer(ctx.get_raw(1))?,
        integer(ctx.get_raw(2))?,
    );
    // Strict, as PostgreSQL's: a NULL argument gives an empty series, whatever the step.
    let (Some(v), Some(stop), Some(step)) = (v, stop, step) else {
        return Ok(None);
    };
    if step == 0 {
        return Err(raise("22023", "step size cannot equal zero".into()));
    }
    Ok(Some((v, stop, step)))
}

/// `v` if it has not gone past `stop` in the step's direction.
fn within(v: i64, stop: i64, step: i64) -> Option<i64> {
    let inside = if step > 0 { v <= stop } else { v >= stop };
    inside.then_some(v)
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(SERIES_FIRST_FUNCTION, 3, flags(), |ctx| {
        let first = args(ctx)?.and_then(|(start, stop, step)| within(start, stop, step));
        Ok(first.map_or(Value::Null, Value::Integer))
    })?;
    conn.create_scalar_function(SERIES_NEXT_FUNCTION, 3, flags(), |ctx| {
        let next = args(ctx)?.and_then(|(v, stop, step)| {
            v.checked_add(step)
                .and_then(|next| within(next, stop, step))
        });
        Ok(next.map_or(Value::Null, Value::Integer))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(conn: &Connection, start: &str, stop: &str, step: &str) -> Result<Vec<i64>, String> {
        let sql = format!(
            "WITH RECURSIVE s(v) AS (SELECT {SERIES_FIRST_FUNCTION}({start}, {stop}, {step}) \
             UNION ALL SELECT {SERIES_NEXT_FUNCTION}(v, {stop}, {step}) FROM s \
             WHERE v IS NOT NULL) SELECT v FROM s WHERE v IS NOT NULL"
        );
        let mut s = conn.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = s
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| crate::error::sqlstate_of(&e).sqlstate.to_string())
    }

    #[test]
    fn series_as_postgres_generates_them() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        let s = |a, b, c| series(&conn, a, b, c);
        assert_eq!(s("1", "4", "1"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(s("5", "1", "-2"), Ok(vec![5, 3, 1]));
        assert_eq!(s("1", "5", "-1"), Ok(vec![]));
        assert_eq!(s("4", "1", "1"), Ok(vec![]));
        assert_eq!(s("1", "NULL", "1"), Ok(vec![]));
        assert_eq!(s("0", "10", "4"), Ok(vec![0, 4, 8]));
        assert_eq!(
            s("9223372036854775806", "9223372036854775807", "5"),
            Ok(vec![9223372036854775806])
        );
        assert_eq!(
            s("-9223372036854775807", "-9223372036854775808", "-1"),
            Ok(vec![-9223372036854775807, -9223372036854775808])
        );
        assert_eq!(s("1", "3", "0"), Err("22023".into()));
        assert_eq!(s("1.5", "3", "1"), Err("0A000".into()));
    }
}
