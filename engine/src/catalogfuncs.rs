//! Functions of PostgreSQL's catalog queries (psql's `\d` family, drivers' and ORMs'
//! introspection): regular-expression matching (`~`, `~*`, `OPERATOR(pg_catalog.~)`), the
//! text form of arrays (`ARRAY(subquery)`, `array_to_string`), and the catalog's lookup
//! functions. All deterministic: they read their arguments only, never the node.

use rusqlite::functions::Context;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use crate::error::raise;
use crate::functions::{flags, text};

/// Largest compiled program of one regular expression, in bytes: a pattern is client input,
/// and its compiled form lives as long as the statement; PostgreSQL bounds its own regex
/// engine's memory too. Far above any pattern a catalog query or a validation check uses.
const REGEX_PROGRAM_BYTES_MAX: usize = 1 << 20;

/// The oid of the one role (`postgres`, the bootstrap superuser's oid in PostgreSQL).
pub(crate) const SUPERUSER_OID: i64 = 10;
/// The oid of `pg_database_owner`, which owns schema `public` in PostgreSQL 15.
pub(crate) const DATABASE_OWNER_OID: i64 = 6171;

/// The oid of a relation (`pg_class.oid`): a function of its name, so every replica (one
/// that replayed the log, one that installed a snapshot) gives a relation the same oid, and
/// so does every restart. FNV-1a, above PostgreSQL's reserved range. A rename changes it.
pub(crate) fn relation_oid(name: &str) -> i64 {
    let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    16_384 + i64::from(h % (1 << 30))
}

/// `s ~ pattern` (`case_insensitive`: `~*`): whether the regular expression matches anywhere
/// in `s`. The compiled pattern is kept for the statement when it is a constant.
fn regex_match(ctx: &Context<'_>, case_insensitive: bool) -> rusqlite::Result<Option<bool>> {
    let (Some(s), Some(_)) = (text(ctx, 0), text(ctx, 1)) else {
        return Ok(None);
    };
    let compiled =
        ctx.get_or_create_aux(1, |v| -> Result<Result<regex::Regex, String>, String> {
            let pattern = crate::functions::text_of(v).unwrap_or_default();
            Ok(regex::RegexBuilder::new(&pattern)
                .case_insensitive(case_insensitive)
                .size_limit(REGEX_PROGRAM_BYTES_MAX)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => {
                        "regular expression is too complex".to_string()
                    }
                    e => format!("invalid regular expression: {}", first_line(&e.to_string())),
                }))
        })?;
    match compiled.as_ref() {
        Ok(re) => Ok(Some(re.is_match(&s))),
        Err(message) => Err(raise("2201B", message.clone())),
    }
}

/// The elements of an array's text form (`{a,"b c",NULL}`) or of an `int2vector`/`oidvector`
/// (`1 3`); 22P02 for text that is neither.
fn array_items(array: &str) -> rusqlite::Result<Vec<Option<String>>> {
    if !is_vector(array) {
        return crate::arrays::items(array);
    }
    Ok(array
        .split_whitespace()
        .map(|s| Some(s.to_string()))
        .collect())
}

/// Whether text is an `int2vector` or `oidvector` (`1 2`) rather than an array's text form
/// (`{1,2}`).
fn is_vector(array: &str) -> bool {
    !array.trim_start().starts_with('{')
}

/// The subscript of an array's first element: 1 for an array, 0 for a vector, as in
/// PostgreSQL (`indkey[0]` is an index's first column).
fn lower_bound(array: &str) -> i64 {
    i64::from(!is_vector(array))
}

/// `(a > 0)` without the parentheses that enclose all of it; other text as it is.
fn without_outer_parentheses(e: &str) -> &str {
    let Some(inner) = e.strip_prefix('(').and_then(|e| e.strip_suffix(')')) else {
        return e;
    };
    // The first parenthesis must close at the end: not `(a) AND (b)`.
    let mut depth = 1usize;
    let mut quote = None;
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth == 0 {
                    return e;
                }
            }
            _ => {}
        }
    }
    inner
}

fn first_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or(s)
}

/// The name of the role with oid `oid` (`pg_get_userbyid`), PostgreSQL's placeholder for
/// another.
fn user_name(oid: i64) -> String {
    match oid {
        SUPERUSER_OID => "postgres".into(),
        DATABASE_OWNER_OID => "pg_database_owner".into(),
        _ => format!("unknown (OID={oid})"),
    }
}

/// The oid of a declared column type (`VARCHAR(40)`, `INT`, `timestamptz`): PostgreSQL's
/// built-in oids; `text` for a name without one here.
fn type_oid(declared: &str) -> i64 {
    builtin_type_oid(declared).unwrap_or(25)
}

/// The element type's oid of an array type a column can have here.
fn array_element_oid(oid: i64) -> Option<i64> {
    let array = sqlkeeper_sql::PgType::array_of_oid(u32::try_from(oid).ok()?)?;
    array.element().map(|e| i64::from(e.oid()))
}

/// The oid of a built-in type of this name, if it is one.
fn builtin_type_oid(name: &str) -> Option<i64> {
    if let Some(t) = sqlkeeper_sql::pg_type_of_name(name) {
        return Some(i64::from(t.oid()));
    }
    let lower = name.to_ascii_lowercase();
    Some(match lower.split('(').next().unwrap_or("").trim() {
        "time" | "time without time zone" => 1083,
        "timetz" | "time with time zone" => 1266,
        "interval" => 1186,
        "inet" => 869,
        "cidr" => 650,
        "macaddr" => 829,
        "oid" => 26,
        "name" => 19,
        "xml" => 142,
        "money" => 790,
        "text" => 25,
        _ => return None,
    })
}

/// PostgreSQL's `format_type(oid, typmod)`: the SQL name of a type, with its modifier.
fn format_type(oid: i64, typmod: Option<i64>) -> String {
    // An array type is its element type's name with `[]` (`character varying(20)[]`).
    if let Some(element) = array_element_oid(oid) {
        return format!("{}[]", format_type(element, typmod));
    }
    let m = typmod.filter(|t| *t >= 0);
    let plain = match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        142 => "xml",
        650 => "cidr",
        700 => "real",
        701 => "double precision",
        790 => "money",
        829 => "macaddr",
        869 => "inet",
        1082 => "date",
        1083 => "time without time zone",
        1186 => "interval",
        1266 => "time with time zone",
        2950 => "uuid",
        3802 => "jsonb",
        1042 => {
            return match m {
                Some(m) => format!("character({})", m - 4),
                None => "bpchar".into(),
            }
        }
        1043 => {
            return match m {
                Some(m) => format!("character varying({})", m - 4),
                None => "character varying".into(),
            }
        }
        1114 | 1184 => {
            let zone = if oid == 1114 { "without" } else { "with" };
            return match m {
                Some(p) => format!("timestamp({p}) {zone} time zone"),
                None => format!("timestamp {zone} time zone"),
            };
        }
        1700 => {
            return match m {
                Some(m) => format!("numeric({},{})", (m - 4) >> 16, (m - 4) & 0xffff),
                None => "numeric".into(),
            }
        }
        _ => "???",
    };
    plain.into()
}

/// What `information_schema.columns` says of a column of declared type `declared`: `field`
/// is one of its columns (`data_type`, `character_maximum_length`, `numeric_precision`, ...);
/// NULL where the standard has nothing for the type.
fn type_info(declared: &str, field: &str) -> SqlValue {
    // An array column is `ARRAY` of its `_element` type; its element's length, precision and
    // scale are in `element_types`, not here.
    if let Some(array) = sqlkeeper_sql::pg_type_of_name(declared).filter(|t| t.element().is_some())
    {
        return match field {
            "data_type" => SqlValue::Text("ARRAY".into()),
            "udt_name" => SqlValue::Text(array.internal_name()),
            _ => SqlValue::Null,
        };
    }
    let oid = type_oid(declared);
    let typmod = sqlkeeper_sql::pg_typmod_of_name(declared);
    let m = (typmod >= 0).then_some(i64::from(typmod));
    let int = |v: Option<i64>| v.map_or(SqlValue::Null, SqlValue::Integer);
    let text_type = matches!(oid, 25 | 1042 | 1043);
    match field {
        "data_type" => SqlValue::Text(match oid {
            1042 => "character".into(),
            1043 => "character varying".into(),
            1114 => "timestamp without time zone".into(),
            1184 => "timestamp with time zone".into(),
            1700 => "numeric".into(),
            _ => format_type(oid, None),
        }),
        "character_maximum_length" if matches!(oid, 1042 | 1043) => int(m.map(|m| m - 4)),
        // At most four bytes a character in UTF-8; PostgreSQL's largest field otherwise.
        "character_octet_length" if text_type => {
            int(Some(m.map_or(1_073_741_824, |m| (m - 4) * 4)))
        }
        "numeric_precision" => int(match oid {
            21 => Some(16),
            23 => Some(32),
            20 => Some(64),
            700 => Some(24),
            701 => Some(53),
            1700 => m.map(|m| (m - 4) >> 16),
            _ => None,
        }),
        "numeric_precision_radix" => int(match oid {
            20 | 21 | 23 | 700 | 701 => Some(2),
            1700 => Some(10),
            _ => None,
        }),
        "numeric_scale" => int(match oid {
            20 | 21 | 23 => Some(0),
            1700 => m.map(|m| (m - 4) & 0xffff),
            _ => None,
        }),
        "datetime_precision" => int(match oid {
            1082 => Some(0),
            1083 | 1114 | 1184 | 1186 | 1266 => Some(m.unwrap_or(6)),
            _ => None,
        }),
        "udt_name" => SqlValue::Text(
            match oid {
                16 => "bool",
                17 => "bytea",
                20 => "int8",
                21 => "int2",
                23 => "int4",
                114 => "json",
                700 => "float4",
                701 => "float8",
                1042 => "bpchar",
                1043 => "varchar",
                1082 => "date",
                1083 => "time",
                1114 => "timestamp",
                1184 => "timestamptz",
                1186 => "interval",
                1266 => "timetz",
                1700 => "numeric",
                2950 => "uuid",
                3802 => "jsonb",
                _ => return SqlValue::Text(format_type(oid, None)),
            }
            .into(),
        ),
        _ => SqlValue::Null,
    }
}

/// A column's default as SQLite keeps it (`nextval('t_id_seq')`, `true`, `'x'`), as
/// PostgreSQL prints it (`pg_get_expr` of `pg_attrdef.adbin`): `nextval('t_id_seq'::regclass)`,
/// a string with a cast to the column's type, a negative number as a typed string.
fn default_expr(default: &str, declared: &str) -> String {
    let d = default.trim();
    if let Some(seq) = d
        .strip_prefix("nextval('")
        .and_then(|r| r.strip_suffix("')"))
    {
        return format!("nextval('{seq}'::regclass)");
    }
    let oid = type_oid(declared);
    // A declared name that is no built-in type is an enum's (`CREATE TABLE` refuses any other).
    let type_name = match builtin_type_oid(declared) {
        None if !declared.trim().is_empty() => declared.trim().to_string(),
        _ => format_type(oid, None),
    };
    if oid == 16 {
        match d.to_ascii_lowercase().as_str() {
            "true" | "1" | "'t'" | "'true'" => return "true".into(),
            "false" | "0" | "'f'" | "'false'" => return "false".into(),
            _ => {}
        }
    }
    let number = d.parse::<f64>().is_ok();
    if number && d.starts_with('-') {
        return format!("'{d}'::{type_name}");
    }
    if d.starts_with('\'') && d.ends_with('\'') && d.len() >= 2 {
        return format!("{d}::{type_name}");
    }
    d.to_string()
}

/// Registers the functions on `conn`.
pub(crate) fn install(conn: &Connection) -> rusqlite::Result<()> {
    // PostgreSQL's names of the functions behind `~` and `~*`.
    conn.create_scalar_function("textregexeq", 2, flags(), |ctx| regex_match(ctx, false))?;
    conn.create_scalar_function("texticregexeq", 2, flags(), |ctx| regex_match(ctx, true))?;
    // One element of `ARRAY(subquery)`'s text form (the translator aggregates them).
    conn.create_scalar_function("_sqlkeeper_array_element", 1, flags(), |ctx| {
        Ok(sqlkeeper_sql::array::element(text(ctx, 0).as_deref()))
    })?;
    for n in [2, 3] {
        conn.create_scalar_function("array_to_string", n, flags(), |ctx| {
            let (Some(array), Some(sep)) = (text(ctx, 0), text(ctx, 1)) else {
                return Ok(None);
            };
            let null = if ctx.len() == 3 { text(ctx, 2) } else { None };
            let Some(items) = sqlkeeper_sql::array::elements(&array) else {
                return Err(raise(
                    "22P02",
                    format!("malformed array literal: \"{array}\""),
                ));
            };
            let kept: Vec<String> = items
                .into_iter()
                .filter_map(|i| i.or_else(|| null.clone()))
                .collect();
            Ok(Some(kept.join(&sep)))
        })?;
    }
    // The elements of an array's text form (`{1,2}`) or of an `int2vector` (`1 2`) as a JSON
    // array, numbers as numbers: what `unnest` reads (`json_each`).
    conn.create_scalar_function("array_to_json", 1, flags(), |ctx| {
        let Some(array) = text(ctx, 0) else {
            return Ok(None);
        };
        let values: Vec<serde_json::Value> = array_items(&array)?
            .into_iter()
            .map(|i| match i {
                None => serde_json::Value::Null,
                Some(s) => match s.parse::<i64>() {
                    Ok(n) => serde_json::Value::from(n),
                    Err(_) => serde_json::Value::String(s),
                },
            })
            .collect();
        Ok(Some(serde_json::Value::Array(values).to_string()))
    })?;
    // `a[i]`: element `i` of an array's text form (from 1) or an `int2vector` (from 0), an
    // integer when it is one (so `attnum = conkey[1]` compares numbers); NULL out of range, as
    // PostgreSQL.
    conn.create_scalar_function("_sqlkeeper_array_at", 2, flags(), |ctx| {
        let (Some(array), Ok(Some(i))) = (text(ctx, 0), ctx.get::<Option<i64>>(1)) else {
            return Ok(None);
        };
        let item = i
            .checked_sub(lower_bound(&array))
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| array_items(&array).ok()?.into_iter().nth(i))
            .flatten();
        Ok(item.map(|s| match s.parse::<i64>() {
            Ok(n) => rusqlite::types::Value::Integer(n),
            Err(_) => rusqlite::types::Value::Text(s),
        }))
    })?;
    // The bounds of an array's first dimension (the only one here), from 1 (from 0 for an
    // `int2vector`); NULL for an empty array or another dimension, as PostgreSQL.
    for (name, upper) in [("array_upper", true), ("array_lower", false)] {
        conn.create_scalar_function(name, 2, flags(), move |ctx| {
            let (Some(array), Ok(Some(1))) = (text(ctx, 0), ctx.get::<Option<i64>>(1)) else {
                return Ok(None);
            };
            let n = array_items(&array)?.len() as i64;
            let lower = lower_bound(&array);
            Ok((n > 0).then_some(if upper { lower + n - 1 } else { lower }))
        })?;
    }
    // An index's keys and predicate as its `CREATE INDEX` text declares them
    // (`sqlkeeper_sql::declared_index`): key `n` (from 1) without its ordering; all keys, pretty
    // (`(a + 1) DESC`) or not, where PostgreSQL puts its own parentheses around an operator
    // expression inside the ones around the key (`((a + 1)) DESC`); the predicate.
    conn.create_scalar_function("sqlkeeper_index_key", 2, flags(), |ctx| {
        let (Some(sql), Ok(Some(n))) = (text(ctx, 0), ctx.get::<Option<i64>>(1)) else {
            return Ok(None);
        };
        let Some((keys, _)) = sqlkeeper_sql::declared_index(&sql) else {
            return Ok(None);
        };
        let key = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| keys.into_iter().nth(n));
        Ok(key.map(|k| k.expr))
    })?;
    conn.create_scalar_function("sqlkeeper_index_keys", 2, flags(), |ctx| {
        let pretty = ctx.get::<Option<bool>>(1).ok().flatten().unwrap_or(false);
        let Some((keys, _)) = text(ctx, 0).and_then(|sql| sqlkeeper_sql::declared_index(&sql))
        else {
            return Ok(None);
        };
        let keys: Vec<String> = keys
            .into_iter()
            .map(|k| {
                let expr = match k.expr.starts_with('(') && !pretty {
                    true => format!("({})", k.expr),
                    false => k.expr,
                };
                match k.ordering.as_str() {
                    "" => expr,
                    o => format!("{expr} {o}"),
                }
            })
            .collect();
        Ok(Some(keys.join(", ")))
    })?;
    conn.create_scalar_function("sqlkeeper_index_predicate", 1, flags(), |ctx| {
        Ok(text(ctx, 0)
            .and_then(|sql| sqlkeeper_sql::declared_index(&sql))
            .and_then(|(_, predicate)| predicate))
    })?;
    // Constraints as a table's definition declares them (`sqlkeeper_sql::declared_constraints`):
    // the declared name of a key or foreign key on given columns, and the `CHECK` constraints
    // as a JSON array of `{name, conkey, def}` (`conkey` in its text form, `{2,3}`).
    conn.create_scalar_function("sqlkeeper_constraint_name", 3, flags(), |ctx| {
        let (Some(sql), Some(kind), Some(columns)) = (text(ctx, 0), text(ctx, 1), text(ctx, 2))
        else {
            return Ok(None);
        };
        let kind = kind.chars().next().unwrap_or(' ');
        Ok(sqlkeeper_sql::declared_constraint_name(
            &sql, kind, &columns,
        ))
    })?;
    conn.create_scalar_function("sqlkeeper_check_constraints", 1, flags(), |ctx| {
        let Some(sql) = text(ctx, 0) else {
            return Ok(None);
        };
        let checks: Vec<serde_json::Value> = sqlkeeper_sql::declared_constraints(&sql)
            .into_iter()
            .filter(|d| d.kind == 'c')
            .map(|d| {
                let conkey: Vec<String> = d.conkey.iter().map(usize::to_string).collect();
                serde_json::json!({
                    "name": d.name,
                    "conkey": format!("{{{}}}", conkey.join(",")),
                    "def": d.definition,
                })
            })
            .collect();
        Ok(Some(serde_json::Value::Array(checks).to_string()))
    })?;
    // A view's definition as `pg_get_viewdef` prints it (`sqlkeeper_sql::view_definition`).
    conn.create_scalar_function("sqlkeeper_view_definition", 2, flags(), |ctx| {
        let pretty = ctx.get::<Option<bool>>(1).ok().flatten().unwrap_or(false);
        Ok(text(ctx, 0).and_then(|sql| sqlkeeper_sql::view_definition(&sql, pretty)))
    })?;
    conn.create_scalar_function("cardinality", 1, flags(), |ctx| {
        let Some(array) = text(ctx, 0) else {
            return Ok(None);
        };
        Ok(Some(array_items(&array)?.len() as i64))
    })?;
    conn.create_scalar_function("pg_relation_oid", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|n| relation_oid(&n)))
    })?;
    conn.create_scalar_function("sqlkeeper_type_oid", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|d| type_oid(&d)))
    })?;
    // `'name'::regtype` of a name that is no enum (the catalog's rewrite looks those up):
    // a built-in type's oid, else PostgreSQL's 42704.
    conn.create_scalar_function("sqlkeeper_regtype", 1, flags(), |ctx| {
        let Some(name) = text(ctx, 0) else {
            return Ok(None);
        };
        match builtin_type_oid(&name) {
            Some(oid) => Ok(Some(oid)),
            None => Err(raise("42704", format!("type \"{name}\" does not exist"))),
        }
    })?;
    conn.create_scalar_function("sqlkeeper_typmod", 1, flags(), |ctx| {
        Ok(text(ctx, 0).map(|d| i64::from(sqlkeeper_sql::pg_typmod_of_name(&d))))
    })?;
    conn.create_scalar_function("sqlkeeper_type_info", 2, flags(), |ctx| {
        Ok(match (text(ctx, 0), text(ctx, 1)) {
            (Some(d), Some(f)) => type_info(&d, &f),
            _ => SqlValue::Null,
        })
    })?;
    conn.create_scalar_function("sqlkeeper_default_expr", 2, flags(), |ctx| {
        Ok(text(ctx, 0).map(|d| default_expr(&d, &text(ctx, 1).unwrap_or_default())))
    })?;
    // `format_type` of a built-in type; the catalog's rewrite (`sqlkeeper_sql`) names enum
    // types from the types table and calls this for the rest.
    conn.create_scalar_function("sqlkeeper_format_type", 2, flags(), |ctx| {
        Ok(ctx
            .get::<Option<i64>>(0)?
            .map(|oid| format_type(oid, ctx.get::<Option<i64>>(1).ok().flatten())))
    })?;
    // `adbin` is kept as PostgreSQL prints it (`sqlkeeper_default_expr`), `indpred` in the
    // parentheses PostgreSQL puts around it, which the pretty form leaves out.
    conn.create_scalar_function("pg_get_expr", 2, flags(), |ctx| Ok(text(ctx, 0)))?;
    conn.create_scalar_function("pg_get_expr", 3, flags(), |ctx| {
        let pretty = ctx.get::<Option<bool>>(2).ok().flatten().unwrap_or(false);
        Ok(text(ctx, 0).map(|e| match pretty {
            true => without_outer_parentheses(&e).to_string(),
            false => e,
        }))
    })?;
    // No relation is a partition: a relation's only ancestor is itself.
    conn.create_scalar_function("pg_partition_ancestors", 1, flags(), |ctx| {
        Ok(ctx.get::<Option<i64>>(0).ok().flatten())
    })?;
    conn.create_scalar_function("pg_get_userbyid", 1, flags(), |ctx| {
        Ok(ctx.get::<Option<i64>>(0)?.map(user_name))
    })?;
    // The only encoding is UTF8 (PostgreSQL's number 6).
    conn.create_scalar_function("pg_encoding_to_char", 1, flags(), |ctx| {
        Ok(ctx
            .get::<Option<i64>>(0)?
            .map(|e| if e == 6 { "UTF8" } else { "" }))
    })?;
    // Every relation, type and function is in `pg_catalog` or `public`, both on every
    // search path.
    for name in [
        "pg_table_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
        "pg_collation_is_visible",
    ] {
        conn.create_scalar_function(name, 1, flags(), |ctx| {
            Ok(ctx.get::<Option<i64>>(0)?.map(|_| true))
        })?;
    }
    // Privileges on sequences, schemas, databases and columns are not kept: every one is held
    // (also on objects that do not exist, which PostgreSQL answers with 42P01). The
    // connections that run client statements replace `has_table_privilege` and
    // `has_schema_privilege(schema, privilege)` with the session's role's answers
    // (`privileges::install`); these stay for the others (the introspection database).
    for (name, n) in [
        ("has_table_privilege", 2),
        ("has_table_privilege", 3),
        ("has_sequence_privilege", 2),
        ("has_sequence_privilege", 3),
        ("has_schema_privilege", 2),
        ("has_schema_privilege", 3),
        ("has_database_privilege", 2),
        ("has_database_privilege", 3),
        ("has_any_column_privilege", 2),
        ("has_any_column_privilege", 3),
        ("has_column_privilege", 3),
        ("has_column_privilege", 4),
    ] {
        conn.create_scalar_function(name, n, flags(), |_| Ok(true))?;
    }
    // No user functions exist (`pg_proc` is empty), and comments are kept for relations and
    // their columns only (`obj_description` and `col_description` of those are rewritten to
    // read `pg_description`, `sqlkeeper_sql` `catalog.rs`): these describe nothing.
    for (name, n) in [
        ("pg_get_function_result", 1),
        ("pg_get_function_arguments", 1),
        ("obj_description", 1),
        ("obj_description", 2),
        ("col_description", 2),
        ("shobj_description", 2),
    ] {
        conn.create_scalar_function(name, n, flags(), |_| Ok(None::<String>))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::query_value;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        install(&c).unwrap();
        c
    }

    #[test]
    fn regular_expressions_match_as_postgres_does() {
        let c = conn();
        let q = |sql: &str| query_value(&c, sql);
        assert_eq!(
            q("SELECT textregexeq('items', '^(items)$')"),
            Ok(SqlValue::Integer(1))
        );
        assert_eq!(
            q("SELECT textregexeq('pg_toast', '^pg_')"),
            Ok(SqlValue::Integer(1))
        );
        assert_eq!(
            q("SELECT textregexeq('Items', '^items$')"),
            Ok(SqlValue::Integer(0))
        );
        assert_eq!(
            q("SELECT texticregexeq('Items', '^items$')"),
            Ok(SqlValue::Integer(1))
        );
        assert_eq!(q("SELECT textregexeq(NULL, 'a')"), Ok(SqlValue::Null));
        let bad = q("SELECT textregexeq('a', '(')").unwrap_err();
        assert!(
            bad.contains("2201B") && bad.contains("invalid regular expression"),
            "{bad}"
        );
        let big = q("SELECT textregexeq('a', 'a{1000}{1000}')").unwrap_err();
        assert!(big.contains("too complex"), "{big}");
    }

    #[test]
    fn types_and_defaults_print_as_postgres_prints_them() {
        assert_eq!(
            format_type(type_oid("VARCHAR(40)"), Some(44)),
            "character varying(40)"
        );
        assert_eq!(
            format_type(type_oid("NUMERIC(10,2)"), Some(655366)),
            "numeric(10,2)"
        );
        assert_eq!(format_type(type_oid("INT"), Some(-1)), "integer");
        assert_eq!(
            format_type(type_oid("TIMESTAMPTZ"), None),
            "timestamp with time zone"
        );
        assert_eq!(
            format_type(type_oid("timestamp(3)"), Some(3)),
            "timestamp(3) without time zone"
        );
        assert_eq!(format_type(type_oid("interval"), None), "interval");
        assert_eq!(
            default_expr("nextval('t_id_seq')", "INT"),
            "nextval('t_id_seq'::regclass)"
        );
        assert_eq!(default_expr("true", "BOOLEAN"), "true");
        assert_eq!(default_expr("0", "NUMERIC(10,2)"), "0");
        assert_eq!(default_expr("-1", "INTEGER"), "'-1'::integer");
        assert_eq!(default_expr("'x'", "VARCHAR(8)"), "'x'::character varying");
        assert_eq!(default_expr("now()", "TIMESTAMPTZ"), "now()");
    }

    #[test]
    fn arrays_print_and_split_as_postgres_text() {
        for (v, want) in [
            (Some("a"), "a"),
            (None, "NULL"),
            (Some(""), "\"\""),
            (Some("null"), "\"null\""),
            (Some("a b"), "\"a b\""),
            (Some("x\"y\\"), "\"x\\\"y\\\\\""),
        ] {
            assert_eq!(sqlkeeper_sql::array::element(v), want);
        }
        let c = conn();
        let q = |sql: &str| query_value(&c, sql);
        assert_eq!(
            q("SELECT array_to_string('{a,\"b c\",NULL,\"NULL\"}', '|')"),
            Ok(SqlValue::Text("a|b c|NULL".into()))
        );
        assert_eq!(
            q("SELECT array_to_string('{a,NULL}', ',', '*')"),
            Ok(SqlValue::Text("a,*".into()))
        );
        assert_eq!(
            q("SELECT array_to_string('{}', ',')"),
            Ok(SqlValue::Text("".into()))
        );
        assert_eq!(
            q("SELECT array_to_json('{1,x,NULL}')"),
            Ok(SqlValue::Text("[1,\"x\",null]".into()))
        );
        assert_eq!(
            q("SELECT array_to_json('2 3')"),
            Ok(SqlValue::Text("[2,3]".into()))
        );
        assert!(q("SELECT array_to_string('a,b', ',')")
            .unwrap_err()
            .contains("22P02"));
        assert_eq!(without_outer_parentheses("(a > 0)"), "a > 0");
        assert_eq!(without_outer_parentheses("(a) AND (b)"), "(a) AND (b)");
        assert_eq!(without_outer_parentheses("(a = ')')"), "a = ')'");
        // Arrays count from 1, vectors (`pg_index.indkey`) from 0, as in PostgreSQL.
        let int = |n| Ok(SqlValue::Integer(n));
        assert_eq!(q("SELECT _sqlkeeper_array_at('{7,8}', 1)"), int(7));
        assert_eq!(q("SELECT _sqlkeeper_array_at('7 8', 0)"), int(7));
        assert_eq!(
            q("SELECT _sqlkeeper_array_at('7 8', 2)"),
            Ok(SqlValue::Null)
        );
        assert_eq!(
            q("SELECT array_lower('{7,8}', 1) || array_upper('{7,8}', 1)"),
            Ok(SqlValue::Text("12".into()))
        );
        assert_eq!(
            q("SELECT array_lower('7 8', 1) || array_upper('7 8', 1)"),
            Ok(SqlValue::Text("01".into()))
        );
    }
}
