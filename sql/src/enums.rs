//! Enum types: `CREATE TYPE name AS ENUM (...)`, `ALTER TYPE name ADD VALUE`, `DROP TYPE`.
//!
//! A type and its labels are rows of two replicated internal tables ([`TYPES_TABLE_SQL`],
//! created with the engine's other internal tables), changed only by applied DDL and read back
//! through `pg_type`, `pg_enum`, `format_type` and `information_schema.columns`
//! (`catalog.rs`). The oid of a type is a function of its name (as a relation's is), so every
//! replica and every restart gives it the same one.
//!
//! A column of an enum type is declared to SQLite with the type's name and holds the label as
//! text. Triggers ([`membership_triggers`]) refuse a value that is not a label of the type
//! (22P02, PostgreSQL's message), and read the labels when they fire, so a value added by
//! `ALTER TYPE ... ADD VALUE` is accepted at once. SQLite gives a column of such a declared type
//! NUMERIC affinity, which would store a label that looks like a number (`'1'`, `'2.0'`) as
//! that number: such labels are refused when the type is made (0A000), never stored changed.
//! Values compare and sort as text, not in the labels' order (`docs/compat.md`).

use sqlparser::ast::{
    AlterType, AlterTypeAddValuePosition, AlterTypeOperation, DataType, Ident, ObjectName,
    Statement,
};

use crate::error::{SqlError, SqlState};

/// The internal table of user types: one row per type, with its oid.
pub const TYPES_TABLE: &str = "_sqlkeeper_types";
/// The internal table of enum labels: one row per label, `sort_order` its place in the type.
pub const ENUM_LABELS_TABLE: &str = "_sqlkeeper_enum_labels";

/// Their definitions, run by the engine when it opens a state database.
pub const TYPES_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS _sqlkeeper_types \
     (name TEXT PRIMARY KEY, oid INTEGER NOT NULL UNIQUE) STRICT; \
     CREATE TABLE IF NOT EXISTS _sqlkeeper_enum_labels (type TEXT NOT NULL, \
     sort_order REAL NOT NULL, label TEXT NOT NULL, PRIMARY KEY (type, label), \
     UNIQUE (type, sort_order)) STRICT";

/// PostgreSQL's limit on a label, in bytes: labels are `name`s (NAMEDATALEN - 1).
const ENUM_LABEL_BYTES_MAX: usize = 63;

/// The names of PostgreSQL's own types that the parser gives as plain names (most have
/// variants of their own): a column or cast of any other name must name an enum type.
const BUILTIN_TYPE_NAMES: &[&str] = &[
    "bool",
    "bytea",
    "char",
    "name",
    "int2",
    "int4",
    "int8",
    "int2vector",
    "oidvector",
    "text",
    "oid",
    "tid",
    "xid",
    "xid8",
    "cid",
    "regproc",
    "regprocedure",
    "regoper",
    "regoperator",
    "regclass",
    "regtype",
    "regrole",
    "regnamespace",
    "regconfig",
    "regdictionary",
    "regcollation",
    "json",
    "jsonb",
    "jsonpath",
    "xml",
    "point",
    "lseg",
    "path",
    "box",
    "polygon",
    "line",
    "circle",
    "float4",
    "float8",
    "money",
    "macaddr",
    "macaddr8",
    "inet",
    "cidr",
    "bpchar",
    "varchar",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "bit",
    "varbit",
    "numeric",
    "refcursor",
    "uuid",
    "pg_lsn",
    "tsvector",
    "tsquery",
    "txid_snapshot",
    "pg_snapshot",
    "int4range",
    "int8range",
    "numrange",
    "tsrange",
    "tstzrange",
    "daterange",
    "int4multirange",
    "int8multirange",
    "nummultirange",
    "tsmultirange",
    "tstzmultirange",
    "datemultirange",
    "record",
    "void",
    "unknown",
    "anyelement",
    "anyarray",
    "serial",
    "bigserial",
    "smallserial",
    "serial2",
    "serial4",
    "serial8",
    "citext",
    "hstore",
];

/// The folded name of the enum type `dt` names: a plain name that is none of PostgreSQL's own
/// types (`public.` may lead it). `None` for every other type.
pub(crate) fn enum_type_name(dt: &DataType) -> Option<String> {
    let DataType::Custom(name, modifiers) = dt else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    let parts = crate::comments::fold(name);
    let bare = match parts.as_slice() {
        [one] => one,
        [schema, one] if schema == "public" => one,
        _ => return None,
    };
    (!BUILTIN_TYPE_NAMES.contains(&bare.as_str())).then(|| bare.clone())
}

/// The declared type SQLite keeps for a column of enum type `name` (what
/// `pragma_table_xinfo` reports): the bare name, quoted where it must be.
fn declared_type(name: &str) -> DataType {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let ident = match plain {
        true => Ident::new(name),
        false => Ident::with_quote('"', name),
    };
    DataType::Custom(ObjectName::from(vec![ident]), Vec::new())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Gives every column of an enum type that `stmt` creates, adds or retypes its type's bare
/// name, and returns the statements that refuse it first when the type does not exist (42704).
pub(crate) fn column_type_guards(stmt: &mut Statement) -> Vec<String> {
    use sqlparser::ast::{AlterColumnOperation, AlterTableOperation};
    let mut types: Vec<&mut DataType> = Vec::new();
    match stmt {
        Statement::CreateTable(ct) => types.extend(ct.columns.iter_mut().map(|c| &mut c.data_type)),
        Statement::AlterTable(at) => {
            for op in &mut at.operations {
                match op {
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        types.push(&mut column_def.data_type)
                    }
                    AlterTableOperation::AlterColumn {
                        op: AlterColumnOperation::SetDataType { data_type, .. },
                        ..
                    } => types.push(data_type),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    let mut guards = Vec::new();
    for dt in types {
        if let Some(name) = enum_type_name(dt) {
            *dt = declared_type(&name);
            let n = quote(&name);
            guards.push(format!(
                "SELECT pg_raise('42704', 'type \"' || {n} || '\" does not exist') \
                 WHERE NOT EXISTS (SELECT 1 FROM {TYPES_TABLE} WHERE name = {n})"
            ));
        }
    }
    guards
}

/// The triggers that refuse a value of column `column` of `table` that is not a label of
/// enum type `ty` (22P02), on insert and on update, named as `translate::value_trigger_names`
/// names them (a column dropped or retyped loses them).
pub(crate) fn membership_triggers(table: &str, column: &str, ty: &str) -> [String; 2] {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let (t, c) = (q(table), q(column));
    let message = quote(&format!("invalid input value for enum {ty}: \""));
    ["insert", "update"].map(|event| {
        let name = crate::translate::value_trigger_name("enum", table, column, event);
        let on = match event {
            "insert" => "INSERT".to_string(),
            _ => format!("UPDATE OF {c}"),
        };
        format!(
            "CREATE TRIGGER IF NOT EXISTS {} BEFORE {on} ON {t} WHEN NEW.{c} IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM {ENUM_LABELS_TABLE} WHERE type = {} AND label = NEW.{c}) \
             BEGIN SELECT pg_raise('22P02', {message} || NEW.{c} || '\"'); END",
            q(&name),
            quote(ty)
        )
    })
}

fn error(sqlstate: &str, message: String) -> SqlError {
    SqlError {
        sqlstate: SqlState::new(sqlstate),
        message,
        position: None,
    }
}

/// The bare, folded name of a type a statement names (`public.` may lead it).
fn type_name(name: &ObjectName) -> Result<String, SqlError> {
    match crate::comments::fold(name).as_slice() {
        [one] => Ok(one.clone()),
        [schema, one] if schema == "public" => Ok(one.clone()),
        [schema, _] => Err(error(
            "3F000",
            format!("schema \"{schema}\" does not exist"),
        )),
        _ => Err(error(
            "42601",
            format!("improper qualified name (too many dotted names): {name}"),
        )),
    }
}

/// A label checked as PostgreSQL checks it (at most 63 bytes, 22023), and refused where
/// SQLite would store it as a number (see the module's documentation).
fn checked_label(label: &Ident) -> Result<String, SqlError> {
    let l = &label.value;
    if l.len() > ENUM_LABEL_BYTES_MAX {
        return Err(error("22023", format!("invalid enum label \"{l}\"")));
    }
    if looks_numeric(l) {
        return Err(SqlError::unsupported(format!(
            "an enum label that looks like a number (\"{l}\")"
        )));
    }
    Ok(l.clone())
}

/// Whether SQLite's NUMERIC affinity would store `s` as a number: an integer or real literal,
/// spaces around it allowed.
fn looks_numeric(s: &str) -> bool {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            (digits(a) || a.is_empty())
                && (digits(b) || b.is_empty())
                && !(a.is_empty() && b.is_empty())
        }
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// `CREATE TYPE name AS ENUM (labels)`: the type (42710 if a type or relation of that name
/// exists) and its labels in order. Other kinds of type are refused (0A000).
pub(crate) fn create_type_sql(stmt: &Statement) -> Result<Vec<String>, SqlError> {
    let Statement::CreateType {
        name,
        representation: Some(sqlparser::ast::UserDefinedTypeRepresentation::Enum { labels }),
    } = stmt
    else {
        return Err(SqlError::unsupported("CREATE TYPE other than AS ENUM"));
    };
    let name = type_name(name)?;
    let n = quote(&name);
    let mut labels_sql = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, label) in labels.iter().enumerate() {
        let l = checked_label(label)?;
        if !seen.insert(l.clone()) {
            return Err(error(
                "23505",
                "duplicate key value violates unique constraint \"pg_enum_typid_label_index\""
                    .into(),
            ));
        }
        labels_sql.push(format!("({n}, {}, {})", i + 1, quote(&l)));
    }
    let mut out = vec![
        format!(
            "SELECT pg_raise('42710', 'type \"' || {n} || '\" already exists') \
             WHERE EXISTS (SELECT 1 FROM {TYPES_TABLE} WHERE name = {n}) \
             OR EXISTS (SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') AND name = {n})"
        ),
        format!(
            "INSERT INTO {TYPES_TABLE} (name, oid) VALUES ({n}, pg_relation_oid('type ' || {n}))"
        ),
    ];
    if !labels_sql.is_empty() {
        out.push(format!(
            "INSERT INTO {ENUM_LABELS_TABLE} (type, sort_order, label) VALUES {}",
            labels_sql.join(", ")
        ));
    }
    Ok(out)
}

/// The condition that some table has a column of type `n` (a quoted name).
fn used_by_columns(n: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM sqlite_schema AS s, pragma_table_xinfo(s.name) AS p \
         WHERE s.type = 'table' AND p.type IN ({n}, '\"' || replace({n}, '\"', '\"\"') || '\"'))"
    )
}

/// `DROP TYPE [IF EXISTS] names [CASCADE]`: 42704 for a missing type unless IF EXISTS; a
/// type a column uses is kept (2BP01, and CASCADE, which would drop those columns, is refused).
pub(crate) fn drop_type_sql(
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<Vec<String>, SqlError> {
    let mut out = Vec::new();
    for name in names {
        let name = type_name(name)?;
        let n = quote(&name);
        if !if_exists {
            out.push(format!(
                "SELECT pg_raise('42704', 'type \"' || {n} || '\" does not exist') \
                 WHERE NOT EXISTS (SELECT 1 FROM {TYPES_TABLE} WHERE name = {n})"
            ));
        }
        let (sqlstate, message) = match cascade {
            true => (
                "0A000",
                format!("DROP TYPE ... CASCADE of a type columns use ({name}) is not supported"),
            ),
            false => (
                "2BP01",
                format!("cannot drop type {name} because other objects depend on it"),
            ),
        };
        out.push(format!(
            "SELECT pg_raise('{sqlstate}', {}) WHERE {}",
            quote(&message),
            used_by_columns(&n)
        ));
        out.push(format!("DELETE FROM {ENUM_LABELS_TABLE} WHERE type = {n}"));
        out.push(format!("DELETE FROM {TYPES_TABLE} WHERE name = {n}"));
    }
    Ok(out)
}

/// `ALTER TYPE name ADD VALUE [IF NOT EXISTS] 'label' [BEFORE | AFTER 'neighbor']`: the label
/// takes a place between its neighbors' (a sort order half way, as PostgreSQL gives one).
/// Renaming the type or a label would have to rewrite the columns that hold it: refused
/// (0A000).
pub(crate) fn alter_type_sql(at: &AlterType) -> Result<Vec<String>, SqlError> {
    let name = type_name(&at.name)?;
    let n = quote(&name);
    let add = match &at.operation {
        AlterTypeOperation::AddValue(add) => add,
        AlterTypeOperation::Rename(_) => {
            return Err(SqlError::unsupported("ALTER TYPE ... RENAME TO"))
        }
        AlterTypeOperation::RenameValue(_) => {
            return Err(SqlError::unsupported("ALTER TYPE ... RENAME VALUE"))
        }
    };
    let label = quote(&checked_label(&add.value)?);
    let order_of = |l: &str| {
        format!("(SELECT sort_order FROM {ENUM_LABELS_TABLE} WHERE type = {n} AND label = {l})")
    };
    let mut out = vec![format!(
        "SELECT pg_raise('42704', 'type \"' || {n} || '\" does not exist') \
         WHERE NOT EXISTS (SELECT 1 FROM {TYPES_TABLE} WHERE name = {n})"
    )];
    let sort_order = match &add.position {
        None => format!(
            "(SELECT coalesce(max(sort_order), 0) + 1 FROM {ENUM_LABELS_TABLE} WHERE type = {n})"
        ),
        Some(AlterTypeAddValuePosition::Before(w) | AlterTypeAddValuePosition::After(w)) => {
            let w = quote(&w.value);
            out.push(format!(
                "SELECT pg_raise('22023', '\"' || {w} || '\" is not an existing enum label') \
                 WHERE NOT EXISTS (SELECT 1 FROM {ENUM_LABELS_TABLE} WHERE type = {n} AND label = {w})"
            ));
            let place = order_of(&w);
            match add.position {
                Some(AlterTypeAddValuePosition::Before(_)) => format!(
                    "(({place} + coalesce((SELECT max(sort_order) FROM {ENUM_LABELS_TABLE} \
                     WHERE type = {n} AND sort_order < {place}), {place} - 1)) / 2)"
                ),
                _ => format!(
                    "(({place} + coalesce((SELECT min(sort_order) FROM {ENUM_LABELS_TABLE} \
                     WHERE type = {n} AND sort_order > {place}), {place} + 1)) / 2)"
                ),
            }
        }
    };
    let exists =
        format!("EXISTS (SELECT 1 FROM {ENUM_LABELS_TABLE} WHERE type = {n} AND label = {label})");
    if !add.if_not_exists {
        out.push(format!(
            "SELECT pg_raise('42710', 'enum label \"' || {label} || '\" already exists') \
             WHERE {exists}"
        ));
    }
    out.push(format!(
        "INSERT INTO {ENUM_LABELS_TABLE} (type, sort_order, label) \
         SELECT {n}, {sort_order}, {label} WHERE NOT {exists}"
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sqlite_would_store_as_numbers() {
        for s in ["1", " 2 ", "-3", "+4.5", ".5", "5.", "1e3", "2E-4", "0001"] {
            assert!(looks_numeric(s), "{s}");
        }
        for s in [
            "", ".", "e3", "1e", "0x10", "one", "1a", "NaN", "inf", "1.2.3", "-",
        ] {
            assert!(!looks_numeric(s), "{s}");
        }
    }

    #[test]
    fn enum_names_are_the_names_that_are_not_builtin_types() {
        let ty = |s: &str| {
            sqlparser::parser::Parser::new(&sqlparser::dialect::PostgreSqlDialect {})
                .try_with_sql(s)
                .unwrap()
                .parse_data_type()
                .unwrap()
        };
        assert_eq!(enum_type_name(&ty("Mood")), Some("mood".into()));
        assert_eq!(enum_type_name(&ty("public.\"Mood\"")), Some("Mood".into()));
        for builtin in [
            "int4",
            "timestamptz",
            "inet",
            "integer",
            "text",
            "varchar(3)",
        ] {
            assert_eq!(enum_type_name(&ty(builtin)), None, "{builtin}");
        }
    }
}
