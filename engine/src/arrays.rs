//! Arrays as values of columns and expressions. An array is stored in PostgreSQL's text form
//! (`{1,2,NULL}`, `sqlkeeper_sql::array`), each element in the form its type prints (so that
//! equal arrays are equal text); a column of an array type keeps its values in that form (its
//! check and triggers call [`element_values`] through `_sqlkeeper_valid`/`_sqlkeeper_cast`).
//! The functions here are the array constructor, the quantified comparisons `x op ANY|ALL
//! (array)`, containment and overlap, and PostgreSQL's array functions.

use std::cmp::Ordering;

use rusqlite::functions::Context;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::error::raise;
use crate::functions::{flags, text};

use sqlkeeper_sql::array::{
    COMPARE_FUNCTION as COMPARE, CONSTRUCT_FUNCTION as CONSTRUCT, OVERLAPS_FUNCTION as OVERLAPS,
};

/// The elements of an array: each `None` for a NULL.
type Items = Vec<Option<String>>;

/// The elements of an array given as text, or PostgreSQL's error.
pub(crate) fn items(array: &str) -> rusqlite::Result<Items> {
    sqlkeeper_sql::array::parse(array).map_err(|e| raise(e.sqlstate, e.message))
}

/// One SQLite value as an array element's text: numbers as their types print them.
fn element_text(v: ValueRef<'_>) -> rusqlite::Result<Option<String>> {
    Ok(match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(sqlkeeper_sql::numeric::float_text(f, false)),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => {
            return Err(raise("0A000", "arrays of bytea are not supported".into()))
        }
    })
}

fn array_text(items: &[Option<String>]) -> String {
    sqlkeeper_sql::array::text(items.iter().map(Option::as_deref))
}

/// Two elements compared as PostgreSQL compares values of their type: numbers as numbers
/// (`1.50` is `1.5`), booleans' forms as booleans, everything else as its printed text (which
/// is how uuids, dates and timestamps are kept).
fn compare_elements(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    if let (Ok(x), Ok(y)) = (a.parse::<i64>(), b.parse::<i64>()) {
        return x.cmp(&y);
    }
    if let (Ok(x), Ok(y)) = (a.parse::<f64>(), b.parse::<f64>()) {
        if let Some(o) = x.partial_cmp(&y) {
            return o;
        }
    }
    a.cmp(b)
}

/// A value compared with an element: the value's storage class decides how the element is
/// read (an integer column's value against `{1,2}`'s elements as numbers; a boolean, 1 or 0
/// here, against `t`/`f`).
fn compare_value(x: ValueRef<'_>, element: &str) -> Option<Ordering> {
    let as_bool = |e: &str| match e {
        "t" => Some(1),
        "f" => Some(0),
        _ => None,
    };
    Some(match x {
        ValueRef::Null => return None,
        ValueRef::Integer(i) => match element.parse::<i64>() {
            Ok(e) => i.cmp(&e),
            Err(_) => match (element.parse::<f64>(), as_bool(element)) {
                (Ok(e), _) => (i as f64).partial_cmp(&e)?,
                (_, Some(b)) => i.cmp(&b),
                _ => i.to_string().as_str().cmp(element),
            },
        },
        ValueRef::Real(f) => f.partial_cmp(&element.parse::<f64>().ok()?)?,
        ValueRef::Text(t) => compare_elements(&String::from_utf8_lossy(t), element),
        ValueRef::Blob(b) => b.cmp(element.as_bytes()),
    })
}

/// `x op ANY (a)` (`all` false) or `x op ALL (a)`, with SQL's three values: ANY is true if one
/// comparison is, else NULL if one is unknown (a NULL element or `x`), else false (also for an
/// empty array); ALL the other way round. NULL for a NULL array.
fn quantified(ctx: &Context<'_>) -> rusqlite::Result<Option<bool>> {
    let x = ctx.get_raw(0);
    let op = text(ctx, 1).unwrap_or_default();
    let all = ctx.get::<bool>(2)?;
    let Some(array) = text(ctx, 3) else {
        return Ok(None);
    };
    let holds = |o: Ordering| match op.as_str() {
        "=" => o == Ordering::Equal,
        "<>" | "!=" => o != Ordering::Equal,
        "<" => o == Ordering::Less,
        "<=" => o != Ordering::Greater,
        ">" => o == Ordering::Greater,
        ">=" => o != Ordering::Less,
        _ => false,
    };
    let mut unknown = false;
    for item in items(&array)? {
        match item.as_deref().and_then(|e| compare_value(x, e)).map(holds) {
            None => unknown = true,
            Some(r) if r != all => return Ok(Some(r)),
            Some(_) => {}
        }
    }
    Ok((!unknown).then_some(all))
}

/// Whether an element of `a` equals `y` (a NULL element equals nothing).
fn has(a: &[Option<String>], y: &str) -> bool {
    a.iter()
        .flatten()
        .any(|x| compare_elements(x, y) == Ordering::Equal)
}

/// Whether every element of `b` equals an element of `a`, as PostgreSQL's `arraycontains` (a
/// NULL element equals nothing, so `{1,NULL} @> {NULL}` is false).
fn contains(a: &[Option<String>], b: &[Option<String>]) -> bool {
    b.iter().all(|y| y.as_deref().is_some_and(|y| has(a, y)))
}

/// Whether element `e` is not distinct from value `x` (`array_remove`, `array_position`): a
/// NULL is not distinct from a NULL only; values compare as [`compare_value`] compares them.
fn not_distinct(e: &Option<String>, x: ValueRef<'_>) -> bool {
    match (e, x) {
        (None, ValueRef::Null) => true,
        (None, _) | (Some(_), ValueRef::Null) => false,
        (Some(e), x) => compare_value(x, e) == Some(Ordering::Equal),
    }
}

/// `a @> b` when an operand is not JSON (`@>` and `<@` are translated without knowing their
/// operands' types, as JSON containment): NULL when either is NULL, the arrays' containment
/// when both are arrays' text forms, `None` otherwise (the JSON error stands).
pub(crate) fn contains_if_arrays(ctx: &Context<'_>) -> rusqlite::Result<Option<Option<bool>>> {
    let (ValueRef::Text(a), ValueRef::Text(b)) = (ctx.get_raw(0), ctx.get_raw(1)) else {
        // NULL contains nothing and is contained in nothing, whatever the other operand is.
        if matches!(ctx.get_raw(0), ValueRef::Null) || matches!(ctx.get_raw(1), ValueRef::Null) {
            return Ok(Some(None));
        }
        return Ok(None);
    };
    let (Ok(a), Ok(b)) = (
        sqlkeeper_sql::array::parse(&String::from_utf8_lossy(a)),
        sqlkeeper_sql::array::parse(&String::from_utf8_lossy(b)),
    ) else {
        return Ok(None);
    };
    Ok(Some(Some(contains(&a, &b))))
}

/// Two array arguments, or `None` if either is NULL.
fn two(ctx: &Context<'_>) -> rusqlite::Result<Option<(Items, Items)>> {
    let (Some(a), Some(b)) = (text(ctx, 0), text(ctx, 1)) else {
        return Ok(None);
    };
    Ok(Some((items(&a)?, items(&b)?)))
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(CONSTRUCT, -1, flags(), |ctx| {
        let items = (0..ctx.len())
            .map(|i| element_text(ctx.get_raw(i)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(array_text(&items))
    })?;
    conn.create_scalar_function(COMPARE, 4, flags(), quantified)?;
    conn.create_scalar_function(OVERLAPS, 2, flags(), |ctx| {
        Ok(two(ctx)?.map(|(a, b)| b.iter().flatten().any(|y| has(&a, y))))
    })?;
    // The length of the first (only) dimension; NULL for an empty array or another dimension.
    conn.create_scalar_function("array_length", 2, flags(), |ctx| {
        let (Some(array), Ok(Some(1))) = (text(ctx, 0), ctx.get::<Option<i64>>(1)) else {
            return Ok(None);
        };
        let n = items(&array)?.len() as i64;
        Ok((n > 0).then_some(n))
    })?;
    // `array_append(a, e)`, `array_prepend(e, a)`: a NULL array is an empty one.
    conn.create_scalar_function("array_append", 2, flags(), |ctx| {
        let mut a = match text(ctx, 0) {
            Some(array) => items(&array)?,
            None => Vec::new(),
        };
        a.push(element_text(ctx.get_raw(1))?);
        Ok(array_text(&a))
    })?;
    conn.create_scalar_function("array_prepend", 2, flags(), |ctx| {
        let mut a = match text(ctx, 1) {
            Some(array) => items(&array)?,
            None => Vec::new(),
        };
        a.insert(0, element_text(ctx.get_raw(0))?);
        Ok(array_text(&a))
    })?;
    // `array_cat(a, b)`: NULL only when both are.
    conn.create_scalar_function("array_cat", 2, flags(), |ctx| {
        let (a, b) = (text(ctx, 0), text(ctx, 1));
        if a.is_none() && b.is_none() {
            return Ok(None);
        }
        let mut out = match a {
            Some(a) => items(&a)?,
            None => Vec::new(),
        };
        if let Some(b) = b {
            out.extend(items(&b)?);
        }
        Ok(Some(array_text(&out)))
    })?;
    // `array_remove(a, e)`: every element equal to `e` removed (NULL removes NULLs).
    conn.create_scalar_function("array_remove", 2, flags(), |ctx| {
        let Some(array) = text(ctx, 0) else {
            return Ok(None);
        };
        let x = ctx.get_raw(1);
        let kept: Items = items(&array)?
            .into_iter()
            .filter(|e| !not_distinct(e, x))
            .collect();
        Ok(Some(array_text(&kept)))
    })?;
    // `array_position(a, e)`: the subscript of the first element equal to `e` (`IS NOT
    // DISTINCT FROM`: NULL finds a NULL), else NULL.
    conn.create_scalar_function("array_position", 2, flags(), |ctx| {
        let Some(array) = text(ctx, 0) else {
            return Ok(None);
        };
        let x = ctx.get_raw(1);
        Ok(items(&array)?
            .iter()
            .position(|e| not_distinct(e, x))
            .map(|p| p as i64 + 1))
    })?;
    Ok(())
}

/// A value as an array of `element` (`int4`, `varchar`, … as `_sqlkeeper_cast` names types)
/// with modifier `typmod`: its text form with every element converted by `convert` (the
/// element type's cast, or check when `cast` is false) and printed as its type prints it.
pub(crate) fn element_values(
    v: ValueRef<'_>,
    element: &str,
    typmod: i64,
    mut convert: impl FnMut(ValueRef<'_>, &str, i64) -> rusqlite::Result<SqlValue>,
) -> rusqlite::Result<SqlValue> {
    let array = match v {
        ValueRef::Null => return Ok(SqlValue::Null),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(_) | ValueRef::Real(_) | ValueRef::Blob(_) => {
            return Err(raise(
                "42804",
                format!("a value of type {} is not an array", storage_name(v)),
            ))
        }
    };
    let mut out = Vec::new();
    for item in items(&array)? {
        let Some(s) = item else {
            out.push(None);
            continue;
        };
        let value = match element {
            "bool" => bool_element(&s)?,
            "numeric" => numeric_element(&s, typmod, &mut convert)?,
            _ => convert(ValueRef::Text(s.as_bytes()), element, typmod)?,
        };
        out.push(match value {
            SqlValue::Null => None,
            SqlValue::Integer(i) => Some(i.to_string()),
            SqlValue::Real(f) => Some(sqlkeeper_sql::numeric::float_text(f, element == "float4")),
            // A `char(n)` element prints blank-padded to n, as PostgreSQL's does.
            SqlValue::Text(mut t) if element == "bpchar" && typmod > 0 => {
                let n = typmod as usize;
                let len = t.chars().count();
                t.extend(std::iter::repeat_n(' ', n.saturating_sub(len)));
                Some(t)
            }
            SqlValue::Text(t) => Some(t),
            SqlValue::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        });
    }
    Ok(SqlValue::Text(array_text(&out)))
}

fn storage_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "double precision",
        ValueRef::Blob(_) => "bytea",
        _ => "text",
    }
}

/// A boolean element as PostgreSQL reads (`boolin`) and prints it: `t` or `f`.
fn bool_element(s: &str) -> rusqlite::Result<SqlValue> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Ok(SqlValue::Text("t".into())),
        "f" | "false" | "n" | "no" | "off" | "0" => Ok(SqlValue::Text("f".into())),
        _ => Err(raise(
            "22P02",
            format!("invalid input syntax for type boolean: \"{s}\""),
        )),
    }
}

/// A `numeric` element keeps all its digits (it is text, unlike a `numeric` column's value),
/// rounded to the modifier's scale; what is not a decimal number goes to the scalar conversion
/// for its error (or its infinity).
fn numeric_element(
    s: &str,
    typmod: i64,
    convert: &mut impl FnMut(ValueRef<'_>, &str, i64) -> rusqlite::Result<SqlValue>,
) -> rusqlite::Result<SqlValue> {
    match sqlkeeper_sql::numeric::Decimal::parse(s.trim()) {
        Some(d) => match d.fitted(typmod) {
            Ok(d) => Ok(SqlValue::Text(d.to_string())),
            Err(_) => Err(raise("22003", "numeric field overflow".into())),
        },
        None => convert(ValueRef::Text(s.as_bytes()), "numeric", typmod),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        // With every engine function: `@>` of arrays is `pg_json_contains`'s.
        let c = Connection::open_in_memory().unwrap();
        crate::functions::install(&c, &Default::default()).unwrap();
        c
    }

    fn one(c: &Connection, sql: &str) -> Option<String> {
        c.query_row(sql, [], |r| {
            Ok(match r.get::<_, SqlValue>(0)? {
                SqlValue::Null => None,
                SqlValue::Integer(i) => Some(i.to_string()),
                SqlValue::Text(t) => Some(t),
                other => Some(format!("{other:?}")),
            })
        })
        .unwrap()
    }

    #[test]
    fn constructs_and_compares_as_postgres() {
        let c = conn();
        assert_eq!(
            one(&c, "SELECT _sqlkeeper_array(1, 'b c', NULL, 2.5)").as_deref(),
            Some(r#"{1,"b c",NULL,2.5}"#)
        );
        assert_eq!(one(&c, "SELECT _sqlkeeper_array()").as_deref(), Some("{}"));
        let q = |sql: &str| one(&c, sql);
        // ANY: true if one holds, NULL if none does but one is unknown, false otherwise.
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(2, '=', 0, '{1,2}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(3, '=', 0, '{1,NULL}')"),
            None
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(3, '=', 0, '{}')").as_deref(),
            Some("0")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(3, '>', 1, '{1,2}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(3, '>', 1, '{}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(1.5, '=', 0, '{1.50}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_cmp(1, '=', 0, '{t}')").as_deref(),
            Some("1")
        );
        assert_eq!(q("SELECT _sqlkeeper_array_cmp(1, '=', 0, NULL)"), None);
        assert_eq!(
            q("SELECT pg_json_contains('{1,2,3}', '{3,1}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT pg_json_contains('{1,NULL}', '{NULL}')").as_deref(),
            Some("0")
        );
        assert_eq!(
            q("SELECT pg_json_contains('{1}', '{}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_overlaps('{1,2}', '{2,3}')").as_deref(),
            Some("1")
        );
        assert_eq!(
            q("SELECT _sqlkeeper_array_overlaps('{1,2}', '{}')").as_deref(),
            Some("0")
        );
        // A NULL operand of `@>` is a NULL answer, also beside an array that is not JSON.
        assert_eq!(q("SELECT pg_json_contains(NULL, '{7}')"), None);
        assert_eq!(q("SELECT pg_json_contains('{7}', NULL)"), None);
    }

    #[test]
    fn array_functions_follow_postgres() {
        let c = conn();
        let q = |sql: &str| one(&c, sql);
        assert_eq!(q("SELECT array_length('{a,b}', 1)").as_deref(), Some("2"));
        assert_eq!(q("SELECT array_length('{}', 1)"), None);
        assert_eq!(
            q("SELECT array_append('{a}', 'b c')").as_deref(),
            Some(r#"{a,"b c"}"#)
        );
        assert_eq!(q("SELECT array_append(NULL, 1)").as_deref(), Some("{1}"));
        assert_eq!(
            q("SELECT array_prepend(0, '{1}')").as_deref(),
            Some("{0,1}")
        );
        assert_eq!(
            q("SELECT array_cat('{1}', '{2,3}')").as_deref(),
            Some("{1,2,3}")
        );
        assert_eq!(q("SELECT array_cat(NULL, NULL)"), None);
        assert_eq!(
            q("SELECT array_remove('{1,2,1,NULL}', 1)").as_deref(),
            Some("{2,NULL}")
        );
        assert_eq!(
            q("SELECT array_remove('{1,NULL}', NULL)").as_deref(),
            Some("{1}")
        );
        assert_eq!(
            q("SELECT array_position('{a,b,b}', 'b')").as_deref(),
            Some("2")
        );
        assert_eq!(q("SELECT array_position('{a}', 'z')"), None);
    }
}
