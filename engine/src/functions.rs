//! Postgres functions and operators SQLite lacks or defines differently, as SQLite functions.
//! Registered on every connection (apply and read), and all deterministic: the same inputs
//! give the same output on every replica. The translator (`sqlkeeper_sql`) rewrites Postgres
//! syntax into calls of these; `docs/compat.md` lists them.

use std::cmp::Ordering;

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

/// The flags of every function the engine registers: pure functions of their arguments.
pub(crate) fn flags() -> FunctionFlags {
    FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC
}

/// Argument `i` as text, as SQLite converts it (NULL stays NULL).
pub(crate) fn text(ctx: &Context<'_>, i: usize) -> Option<String> {
    text_of(ctx.get_raw(i))
}

/// A value as text, as SQLite converts it (NULL stays NULL).
pub(crate) fn text_of(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

/// SQLite's ordering of values of different storage classes: NULL < numbers < text < blob.
fn compare(a: &ValueRef<'_>, b: &ValueRef<'_>) -> Ordering {
    fn class(v: &ValueRef<'_>) -> u8 {
        match v {
            ValueRef::Null => 0,
            ValueRef::Integer(_) | ValueRef::Real(_) => 1,
            ValueRef::Text(_) => 2,
            ValueRef::Blob(_) => 3,
        }
    }
    let num = |v: &ValueRef<'_>| match v {
        ValueRef::Integer(i) => *i as f64,
        ValueRef::Real(f) => *f,
        _ => 0.0,
    };
    match (a, b) {
        (ValueRef::Integer(x), ValueRef::Integer(y)) => x.cmp(y),
        (ValueRef::Text(x), ValueRef::Text(y)) | (ValueRef::Blob(x), ValueRef::Blob(y)) => x.cmp(y),
        _ if class(a) == 1 && class(b) == 1 => {
            num(a).partial_cmp(&num(b)).unwrap_or(Ordering::Equal)
        }
        _ => class(a).cmp(&class(b)),
    }
}

/// An owned SQLite value from a borrowed one.
pub(crate) fn owned(v: ValueRef<'_>) -> SqlValue {
    match v {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

/// Postgres `GREATEST`/`LEAST`: NULL arguments are ignored (SQLite's max/min return NULL).
fn extreme(ctx: &Context<'_>, want: Ordering) -> SqlValue {
    let mut best: Option<ValueRef<'_>> = None;
    for i in 0..ctx.len() {
        let v = ctx.get_raw(i);
        if matches!(v, ValueRef::Null) {
            continue;
        }
        best = match best {
            Some(b) if compare(&v, &b) != want => Some(b),
            _ => Some(v),
        };
    }
    best.map(owned).unwrap_or(SqlValue::Null)
}

/// Postgres `LIKE` semantics: case-sensitive, `%` and `_`, and an escape character
/// (Postgres' default is backslash; the translator always passes it).
pub(crate) fn like_match(pattern: &[char], s: &[char], escape: Option<char>) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star_p, mut star_i) = (usize::MAX, 0usize);
    while i < s.len() {
        if p < pattern.len() {
            let c = pattern[p];
            if Some(c) == escape && p + 1 < pattern.len() {
                if pattern[p + 1] == s[i] {
                    p += 2;
                    i += 1;
                    continue;
                }
            } else if c == '%' {
                star_p = p;
                star_i = i;
                p += 1;
                continue;
            } else if c == '_' || c == s[i] {
                p += 1;
                i += 1;
                continue;
            }
        }
        if star_p != usize::MAX {
            p = star_p + 1;
            star_i += 1;
            i = star_i;
            continue;
        }
        return false;
    }
    while p < pattern.len() && pattern[p] == '%' {
        p += 1;
    }
    p == pattern.len()
}

fn pad(s: &str, n: i64, fill: &str, left: bool) -> String {
    let n = n.max(0) as usize;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() >= n {
        return chars[..n].iter().collect();
    }
    if fill.is_empty() {
        return s.to_string();
    }
    let fill: Vec<char> = fill.chars().collect();
    let padding: String = (0..n - chars.len()).map(|k| fill[k % fill.len()]).collect();
    if left {
        format!("{padding}{s}")
    } else {
        format!("{s}{padding}")
    }
}

/// Registers the functions on `conn`; casts to date and time types read `stamp` for `'now'`.
pub(crate) fn install(
    conn: &Connection,
    stamp: &std::sync::Arc<crate::determinism::StampCell>,
) -> rusqlite::Result<()> {
    crate::values::install(conn, stamp)?;
    crate::pgfuncs::install(conn)?;
    crate::datefuncs::install(conn)?;
    crate::jsonfuncs::install(conn)?;
    crate::series::install(conn)?;
    crate::catalogfuncs::install(conn)?;
    crate::arrays::install(conn)?;
    // Session information functions drivers call on connect. Constant for a build and a
    // schema, so replicas agree.
    // `set_config(name, value, is_local)` changes the session's settings, which live in the
    // session, not in SQLite: the translator serves it as a whole statement (`SELECT
    // set_config(…)`, as `SET`). Inside a larger query it is refused when it runs, so that
    // such a statement still prepares (asyncpg's type introspection asks
    // `current_setting('jit')` beside it, whose 42704 it expects first).
    conn.create_scalar_function("set_config", 3, flags(), |_| -> rusqlite::Result<String> {
        Err(crate::error::raise(
            "0A000",
            "set_config is supported only as a statement of its own: SELECT set_config(…)".into(),
        ))
    })?;
    conn.create_scalar_function("version", 0, flags(), |_| {
        Ok(concat!(
            "PostgreSQL 16.6 (sqlkeeper ",
            env!("CARGO_PKG_VERSION"),
            ") on x86_64-pc-linux-gnu, 64-bit"
        ))
    })?;
    conn.create_scalar_function("current_schema", 0, flags(), |_| Ok("public"))?;
    // Postgres changes the case of every letter; SQLite's upper() and lower() only ASCII ones.
    // (Rust's Unicode tables are part of the build, as SQLite is: one build per cluster.)
    // One character at a time, as Postgres does: `upper('ß')` is `ß`.
    conn.create_scalar_function("upper", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|s| crate::pgfuncs::change_case(&s, char::to_uppercase)))
    })?;
    conn.create_scalar_function("lower", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|s| crate::pgfuncs::change_case(&s, char::to_lowercase)))
    })?;
    // Postgres' replace() is strict (NULL if any argument is); SQLite's returns the string
    // unchanged for an empty pattern even when the replacement is NULL.
    conn.create_scalar_function("replace", 3, flags(), |ctx| {
        Ok(match (text(ctx, 0), text(ctx, 1), text(ctx, 2)) {
            (Some(s), Some(from), Some(_)) if from.is_empty() => Some(s),
            (Some(s), Some(from), Some(to)) => Some(s.replace(&from, &to)),
            _ => None,
        })
    })?;
    conn.create_scalar_function("reverse", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|s| s.chars().rev().collect::<String>()))
    })?;
    conn.create_scalar_function("greatest", -1, flags(), |ctx| {
        Ok(extreme(ctx, Ordering::Greater))
    })?;
    conn.create_scalar_function("least", -1, flags(), |ctx| Ok(extreme(ctx, Ordering::Less)))?;
    for n in [2, 3] {
        conn.create_scalar_function("like", n, flags(), |ctx| {
            let (Some(pattern), Some(s)) = (text(ctx, 0), text(ctx, 1)) else {
                return Ok(None);
            };
            let escape = if ctx.len() == 3 {
                text(ctx, 2).and_then(|e| e.chars().next())
            } else {
                Some('\\')
            };
            let p: Vec<char> = pattern.chars().collect();
            let v: Vec<char> = s.chars().collect();
            Ok(Some(like_match(&p, &v, escape)))
        })?;
    }
    conn.create_scalar_function("pg_bool", 1, flags(), |ctx| {
        // An integer is true when it is not zero (Postgres' int4-to-boolean cast).
        if let ValueRef::Integer(i) = ctx.get_raw(0) {
            return Ok(Some(i64::from(i != 0)));
        }
        let Some(v) = text(ctx, 0) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => Ok(Some(1i64)),
            "f" | "false" | "n" | "no" | "off" | "0" => Ok(Some(0i64)),
            _ => Err(crate::error::raise(
                "22P02",
                format!("invalid input syntax for type boolean: \"{v}\""),
            )),
        }
    })?;
    conn.create_scalar_function("split_part", 3, flags(), |ctx| {
        let (Some(s), Some(d)) = (text(ctx, 0), text(ctx, 1)) else {
            return Ok(None);
        };
        let n: i64 = ctx.get(2)?;
        let parts: Vec<&str> = if d.is_empty() {
            vec![s.as_str()]
        } else {
            s.split(d.as_str()).collect()
        };
        let idx = if n > 0 { n - 1 } else { parts.len() as i64 + n };
        Ok(Some(
            usize::try_from(idx)
                .ok()
                .and_then(|i| parts.get(i))
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ))
    })?;
    conn.create_scalar_function("left", 2, flags(), |ctx| {
        let Some(s) = text(ctx, 0) else {
            return Ok(None);
        };
        let n: i64 = ctx.get(1)?;
        let len = s.chars().count() as i64;
        let take = if n >= 0 { n.min(len) } else { (len + n).max(0) };
        Ok(Some(s.chars().take(take as usize).collect::<String>()))
    })?;
    conn.create_scalar_function("right", 2, flags(), |ctx| {
        let Some(s) = text(ctx, 0) else {
            return Ok(None);
        };
        let n: i64 = ctx.get(1)?;
        let len = s.chars().count() as i64;
        let take = if n >= 0 { n.min(len) } else { (len + n).max(0) };
        Ok(Some(
            s.chars().skip((len - take) as usize).collect::<String>(),
        ))
    })?;
    for (name, left) in [("lpad", true), ("rpad", false)] {
        for n in [2, 3] {
            conn.create_scalar_function(name, n, flags(), move |ctx| {
                let Some(s) = text(ctx, 0) else {
                    return Ok(None);
                };
                let len: i64 = ctx.get(1)?;
                let fill = if ctx.len() == 3 {
                    text(ctx, 2).unwrap_or_default()
                } else {
                    " ".to_string()
                };
                Ok(Some(pad(&s, len, &fill, left)))
            })?;
        }
    }
    Ok(())
}

/// The first column of the one row `sql` returns, or SQLite's error as text (tests of the
/// functions registered here and in the modules beside it).
#[cfg(test)]
pub(crate) fn query_value(conn: &Connection, sql: &str) -> Result<SqlValue, String> {
    conn.query_row(sql, [], |r| r.get::<_, SqlValue>(0))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_is_postgres_like() {
        let m = |p: &str, s: &str| {
            like_match(
                &p.chars().collect::<Vec<_>>(),
                &s.chars().collect::<Vec<_>>(),
                Some('\\'),
            )
        };
        assert!(m("a%", "abc"));
        assert!(!m("A%", "abc"), "case-sensitive");
        assert!(m("a_c", "abc"));
        assert!(m("a\\_c", "a_c"));
        assert!(!m("a\\_c", "abc"));
        assert!(m("%b%", "abc"));
        assert!(!m("%d%", "abc"));
    }

    #[test]
    fn functions() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn, &Default::default()).unwrap();
        let q = |sql: &str| {
            conn.query_row(sql, [], |r| r.get::<_, SqlValue>(0))
                .unwrap()
        };
        assert_eq!(q("SELECT greatest(1, NULL, 3)"), SqlValue::Integer(3));
        assert_eq!(
            q("SELECT least(NULL, 'b', 'a')"),
            SqlValue::Text("a".into())
        );
        assert_eq!(
            q("SELECT split_part('a,b,c', ',', 2)"),
            SqlValue::Text("b".into())
        );
        assert_eq!(
            q("SELECT left('hello', 2) || right('hello', -3)"),
            SqlValue::Text("helo".into())
        );
        assert_eq!(q("SELECT lpad('7', 3, '0')"), SqlValue::Text("007".into()));
        assert_eq!(q("SELECT 'abc' LIKE 'ABC'"), SqlValue::Integer(0));
        assert_eq!(
            q("SELECT date_trunc('month', '2026-11-21 05:10:39')"),
            SqlValue::Text("2026-11-01 00:00:00".into())
        );
    }
}
