//! PostgreSQL's JSON operators and functions that SQLite lacks or spells differently ("JSON
//! Functions and Operators"): containment (`@>`, `<@`), key existence (`?`), paths (`#>`,
//! `#>>`, `json[b]_extract_path[_text]`), `jsonb || jsonb`, `jsonb - key`, `json[b]_typeof`,
//! `json[b]_array_length`, `to_json[b]`, and the text the `json_build_*` and
//! `jsonb_build_*` functions print. Results of type `jsonb` are printed as PostgreSQL prints
//! them (`jsonb::normalize`). Pure functions of their arguments, registered as deterministic.

use rusqlite::functions::Context;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::Value as Json;

use crate::error::raise;
use crate::functions::{flags, text_of};

fn invalid() -> rusqlite::Error {
    raise("22P02", "invalid input syntax for type json".into())
}

/// Argument `i` as a JSON value; `None` for NULL, 22P02 for text that is not JSON.
fn json_arg(ctx: &Context<'_>, i: usize) -> rusqlite::Result<Option<Json>> {
    match text_of(ctx.get_raw(i)) {
        None => Ok(None),
        Some(s) => serde_json::from_str(&s).map(Some).map_err(|_| invalid()),
    }
}

/// A `jsonb` result: its text as PostgreSQL prints it.
fn jsonb_text(v: &Json) -> rusqlite::Result<SqlValue> {
    let compact = v.to_string();
    crate::jsonb::normalize(&compact)
        .map(SqlValue::Text)
        .map_err(|(state, msg)| raise(state, msg))
}

/// Postgres `jsonb @>`: every key/value of `b` is in `a`, recursively; every element of an
/// array `b` is contained in some element of `a`; and, at the top level only, an array
/// contains a scalar that is one of its elements (`[1, 2, [1, 3]] @> [1, 3]` is false).
fn contains(a: &Json, b: &Json, top: bool) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Object(x), Object(y)) => y
            .iter()
            .all(|(k, v)| x.get(k).is_some_and(|av| contains(av, v, false))),
        (Array(x), Array(y)) => y.iter().all(|v| x.iter().any(|av| contains(av, v, false))),
        (Array(x), v) if top && !v.is_object() => x.iter().any(|av| av == v),
        (x, y) => x == y,
    }
}

/// The elements of a Postgres text array literal (`'{a,b,1}'`), for paths.
fn text_array(s: &str) -> rusqlite::Result<Vec<String>> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| raise("22P02", format!("malformed array literal: \"{s}\"")))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(inner
        .split(',')
        .map(|p| {
            let p = p.trim();
            p.strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or(p)
                .to_string()
        })
        .collect())
}

/// The value at `path` (keys of objects, indexes of arrays, negative from the end), if any.
fn at_path<'a>(mut v: &'a Json, path: &[String]) -> Option<&'a Json> {
    for step in path {
        v = match v {
            Json::Object(m) => m.get(step)?,
            Json::Array(a) => {
                let i: i64 = step.parse().ok()?;
                let i = if i < 0 { a.len() as i64 + i } else { i };
                a.get(usize::try_from(i).ok()?)?
            }
            _ => return None,
        };
    }
    Some(v)
}

/// A path result: `jsonb`, or with `as_text` the text of a string (unquoted) or of any other
/// value, NULL for JSON null.
fn path_result(v: Option<&Json>, as_text: bool) -> rusqlite::Result<SqlValue> {
    match v {
        None => Ok(SqlValue::Null),
        Some(Json::Null) if as_text => Ok(SqlValue::Null),
        Some(Json::String(s)) if as_text => Ok(SqlValue::Text(s.clone())),
        Some(v) => jsonb_text(v),
    }
}

/// `jsonb - text` (delete a key, or the string elements equal to it), `jsonb - integer`
/// (delete an array element), if the left operand is a JSON object or array; `None` for
/// anything else (other operands are numbers).
pub(crate) fn jsonb_minus(a: ValueRef<'_>, b: ValueRef<'_>) -> Option<rusqlite::Result<SqlValue>> {
    let ValueRef::Text(t) = a else { return None };
    let first = t.iter().find(|c| !c.is_ascii_whitespace())?;
    if *first != b'{' && *first != b'[' {
        return None;
    }
    let mut v: Json = match serde_json::from_slice(t) {
        Ok(v) => v,
        Err(_) => return Some(Err(invalid())),
    };
    let r = match (&mut v, b) {
        (_, ValueRef::Null) => return Some(Ok(SqlValue::Null)),
        (Json::Object(m), ValueRef::Text(k)) => {
            m.remove(&*String::from_utf8_lossy(k));
            Ok(())
        }
        (Json::Array(a), ValueRef::Text(k)) => {
            let k = String::from_utf8_lossy(k);
            a.retain(|e| e.as_str() != Some(&k));
            Ok(())
        }
        (Json::Array(a), ValueRef::Integer(i)) => {
            let i = if i < 0 { a.len() as i64 + i } else { i };
            if let Ok(i) = usize::try_from(i) {
                if i < a.len() {
                    a.remove(i);
                }
            }
            Ok(())
        }
        (Json::Object(_), ValueRef::Integer(_)) => Err(raise(
            "22023",
            "cannot delete from object using integer index".into(),
        )),
        _ => Err(raise(
            "42883",
            "operator does not exist: jsonb - unknown".into(),
        )),
    };
    Some(r.and_then(|()| jsonb_text(&v)))
}

/// `json_build_object(...)` and `json_build_array(...)` print `{"a" : 1, "b" : [1, 2]}`:
/// a space on both sides of `:`, and after `,`.
fn builder_text(v: &Json, out: &mut String) {
    match v {
        Json::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(" : ");
                builder_text(v, out);
            }
            out.push('}');
        }
        Json::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                builder_text(v, out);
            }
            out.push(']');
        }
        v => out.push_str(&v.to_string()),
    }
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("pg_json_contains", 2, flags(), |ctx| {
        match (json_arg(ctx, 0), json_arg(ctx, 1)) {
            (Ok(Some(a)), Ok(Some(b))) => Ok(Some(contains(&a, &b, true))),
            (Ok(_), Ok(_)) => Ok(None),
            // Not JSON: `@>` of two arrays (`{1,2} @> {1}`), else the JSON error.
            (a, b) => match crate::arrays::contains_if_arrays(ctx)? {
                Some(r) => Ok(r),
                None => a.and(b).map(|_| None),
            },
        }
    })?;
    // jsonb ? text: a key of an object, or a string element of an array (or the string).
    conn.create_scalar_function("pg_jsonb_exists", 2, flags(), |ctx| {
        let (Some(v), Some(k)) = (json_arg(ctx, 0)?, text_of(ctx.get_raw(1))) else {
            return Ok(None);
        };
        Ok(Some(match &v {
            Json::Object(m) => m.contains_key(&k),
            Json::Array(a) => a.iter().any(|e| e.as_str() == Some(&k)),
            Json::String(s) => *s == k,
            _ => false,
        }))
    })?;
    // j #> '{a,b,1}' and j #>> '{a,b,1}': pg_json_path(j, path, as_text).
    conn.create_scalar_function("pg_json_path", 3, flags(), |ctx| {
        let (Some(v), Some(path)) = (json_arg(ctx, 0)?, text_of(ctx.get_raw(1))) else {
            return Ok(SqlValue::Null);
        };
        let as_text = ctx.get::<bool>(2)?;
        path_result(at_path(&v, &text_array(&path)?), as_text)
    })?;
    // json[b]_extract_path[_text](j, k1, k2, ...): pg_json_extract_path(as_text, j, k...).
    conn.create_scalar_function("pg_json_extract_path", -1, flags(), |ctx| {
        if ctx.len() < 2 {
            return Err(raise(
                "42883",
                "function json_extract_path needs a value".into(),
            ));
        }
        let as_text = ctx.get::<bool>(0)?;
        let Some(v) = json_arg(ctx, 1)? else {
            return Ok(SqlValue::Null);
        };
        let mut path = Vec::with_capacity(ctx.len() - 2);
        for i in 2..ctx.len() {
            match text_of(ctx.get_raw(i)) {
                Some(k) => path.push(k),
                None => return Ok(SqlValue::Null),
            }
        }
        path_result(at_path(&v, &path), as_text)
    })?;
    conn.create_scalar_function("pg_jsonb_concat", 2, flags(), |ctx| {
        let (Some(a), Some(b)) = (json_arg(ctx, 0)?, json_arg(ctx, 1)?) else {
            return Ok(SqlValue::Null);
        };
        let joined = match (a, b) {
            (Json::Object(mut x), Json::Object(y)) => {
                x.extend(y);
                Json::Object(x)
            }
            (Json::Array(mut x), Json::Array(y)) => {
                x.extend(y);
                Json::Array(x)
            }
            (Json::Array(mut x), y) => {
                x.push(y);
                Json::Array(x)
            }
            (x, Json::Array(y)) => Json::Array(std::iter::once(x).chain(y).collect()),
            (x, y) => Json::Array(vec![x, y]),
        };
        jsonb_text(&joined)
    })?;
    conn.create_scalar_function("pg_json_typeof", 1, flags(), |ctx| {
        let Some(v) = json_arg(ctx, 0)? else {
            return Ok(None);
        };
        Ok(Some(match v {
            Json::Object(_) => "object",
            Json::Array(_) => "array",
            Json::String(_) => "string",
            Json::Number(_) => "number",
            Json::Bool(_) => "boolean",
            Json::Null => "null",
        }))
    })?;
    conn.create_scalar_function("pg_json_array_length", 1, flags(), |ctx| {
        match json_arg(ctx, 0)? {
            None => Ok(None),
            Some(Json::Array(a)) => Ok(Some(a.len() as i64)),
            Some(Json::Object(_)) => Err(raise(
                "22023",
                "cannot get array length of a non-array".into(),
            )),
            Some(_) => Err(raise("22023", "cannot get array length of a scalar".into())),
        }
    })?;
    // to_json(v), to_jsonb(v): a number stays a number, text becomes a JSON string. The
    // translator passes values it knows are JSON through; a value it cannot type (a column)
    // that is a JSON object or array is taken for the json or jsonb it almost always is.
    conn.create_scalar_function("pg_to_json", 1, flags(), |ctx| {
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Integer(i) => Some(i.to_string()),
            ValueRef::Real(f) if f.is_finite() => Some(Json::from(f).to_string()),
            v => {
                let s = text_of(v).unwrap_or_default();
                let structured = s.trim_start().starts_with(['{', '['])
                    && serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok();
                Some(if structured {
                    s
                } else {
                    Json::String(s).to_string()
                })
            }
        })
    })?;
    // The text of json_build_object / json_build_array from SQLite's compact JSON.
    conn.create_scalar_function("pg_json_builder_text", 1, flags(), |ctx| {
        let Some(v) = json_arg(ctx, 0)? else {
            return Ok(None);
        };
        let mut out = String::new();
        builder_text(&v, &mut out);
        Ok(Some(out))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::functions::query_value as q;

    #[test]
    fn operators_and_functions_answer_as_postgres() {
        let conn = Connection::open_in_memory().unwrap();
        install(&conn).unwrap();
        let text = |s: &str| Ok(SqlValue::Text(s.into()));
        let int = |i: i64| Ok(SqlValue::Integer(i));
        let cases: &[(&str, Result<SqlValue, String>)] = &[
            (
                r#"SELECT pg_json_contains('{"a":1,"b":[1,2]}', '{"b":[2]}')"#,
                int(1),
            ),
            (r#"SELECT pg_jsonb_exists('{"a":1}', 'a')"#, int(1)),
            (r#"SELECT pg_jsonb_exists('["a","b"]', 'c')"#, int(0)),
            (
                r#"SELECT pg_json_path('{"a":{"b":["foo","bar"]}}', '{a,b,1}', 1)"#,
                text("bar"),
            ),
            (
                r#"SELECT pg_json_path('{"a":{"b":["foo","bar"]}}', '{a,b}', 0)"#,
                text(r#"["foo", "bar"]"#),
            ),
            (
                r#"SELECT pg_json_path('{"a":1}', '{x}', 1)"#,
                Ok(SqlValue::Null),
            ),
            (
                r#"SELECT pg_json_extract_path(1, '{"f4":{"f6":"foo"}}', 'f4', 'f6')"#,
                text("foo"),
            ),
            (
                r#"SELECT pg_jsonb_concat('{"a":"b"}', '{"c":"d"}')"#,
                text(r#"{"a": "b", "c": "d"}"#),
            ),
            (
                r#"SELECT pg_jsonb_concat('["a","b"]', '["a","d"]')"#,
                text(r#"["a", "b", "a", "d"]"#),
            ),
            (r#"SELECT pg_json_typeof('-123.4')"#, text("number")),
            (r#"SELECT pg_json_array_length('[1,2,[3]]')"#, int(3)),
            (
                r#"SELECT pg_to_json('Fred said "Hi."')"#,
                text(r#""Fred said \"Hi.\"""#),
            ),
            (
                r#"SELECT pg_json_builder_text('{"a":1,"b":[1,"x"]}')"#,
                text(r#"{"a" : 1, "b" : [1, "x"]}"#),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(&q(&conn, sql), want, "{sql}");
        }
        for (sql, code) in [
            ("SELECT pg_json_contains('{', '{}')", "22P02"),
            ("SELECT pg_json_array_length('{}')", "22023"),
            ("SELECT pg_json_path('{}', 'a,b', 0)", "22P02"),
        ] {
            let err = q(&conn, sql).unwrap_err();
            assert!(err.contains(code), "{sql}: {err}");
        }
        let minus = |a: &'static str, b: ValueRef<'static>| {
            jsonb_minus(ValueRef::Text(a.as_bytes()), b).map(|r| r.unwrap())
        };
        assert_eq!(
            minus(r#"{"a": "b", "c": "d"}"#, ValueRef::Text(b"a")),
            Some(SqlValue::Text(r#"{"c": "d"}"#.into()))
        );
        assert_eq!(
            minus(r#"["a", "b"]"#, ValueRef::Integer(-1)),
            Some(SqlValue::Text(r#"["a"]"#.into()))
        );
        assert_eq!(minus("12", ValueRef::Integer(1)), None);
    }
}
