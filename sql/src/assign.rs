//! Assignment into table columns, as PostgreSQL types it. A value written by `INSERT`, `UPDATE`
//! or `ON CONFLICT DO UPDATE` must have the column's type or one with an implicit or assignment
//! cast to it; otherwise PostgreSQL refuses the statement before it runs, whatever the value
//! (`INSERT INTO t (d) VALUES (NULL::text)` into a `date` column is 42804, "column "d" is of
//! type date but expression is of type text"). An untyped literal (`'2024-01-01'`, `NULL`) or a
//! parameter takes the column's type and is never refused here.
//!
//! The translator does not know the columns' types (they are the engine's, as they are at the
//! statement's place in the log), so it lists each typed value with its type
//! ([`Assigned`], carried by [`crate::Effect::Defaults`]) and the engine checks the list
//! against the table when the statement runs, with [`assignable`]: the same on every replica,
//! and before any row is written, as PostgreSQL does at parse time.

use sqlparser::ast::{
    AssignmentTarget, Expr, ObjectName, OnConflictAction, OnInsert, SelectItem, SetExpr, Statement,
    TableFactor, TableObject, Value,
};

use crate::columns::{infer_type, PgType};

/// The column a value is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AssignedColumn {
    /// By name (as written: SQLite matches names without regard to case).
    Name(String),
    /// By 1-based position, for an `INSERT` that names no columns.
    Position(u32),
}

/// A value of a known type assigned to a column: checked with [`assignable`] when the
/// statement runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Assigned {
    /// The column written.
    pub column: AssignedColumn,
    /// The value's type, as PostgreSQL names it in messages ([`PgType::name`]).
    pub from: String,
}

impl PgType {
    /// The array type of this element type, where there is one here (`array_agg` of it).
    pub fn array(self) -> Option<PgType> {
        ELEMENTS
            .iter()
            .find(|(_, element)| *element == self)
            .map(|(array, _)| *array)
    }

    /// The array type with this oid, of those a value can have here.
    pub fn array_of_oid(oid: u32) -> Option<PgType> {
        ELEMENTS
            .iter()
            .find(|(array, _)| array.oid() == oid)
            .map(|(array, _)| *array)
    }

    /// The element type of an array type.
    pub fn element(self) -> Option<PgType> {
        ELEMENTS
            .iter()
            .find(|(array, _)| *array == self)
            .map(|(_, element)| *element)
    }

    /// PostgreSQL's internal name of the type (`pg_type.typname`: `int4`, `_text`), which
    /// names a column that is a cast of a literal.
    pub fn internal_name(self) -> String {
        if let Some(element) = self.element() {
            return format!("_{}", element.internal_name());
        }
        match self {
            PgType::Bool => "bool",
            PgType::Int2 => "int2",
            PgType::Int4 => "int4",
            PgType::Int8 => "int8",
            PgType::Float4 => "float4",
            PgType::Float8 => "float8",
            PgType::Numeric => "numeric",
            PgType::Varchar => "varchar",
            PgType::Text => "text",
            PgType::Bpchar => "bpchar",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp",
            PgType::Timestamptz => "timestamptz",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            _ => "",
        }
        .into()
    }

    /// The type's oid in PostgreSQL's `pg_type`.
    pub fn oid(self) -> u32 {
        match self {
            PgType::Bool => 16,
            PgType::Int2 => 21,
            PgType::Int4 => 23,
            PgType::Int8 => 20,
            PgType::Float4 => 700,
            PgType::Float8 => 701,
            PgType::Numeric => 1700,
            PgType::Text => 25,
            PgType::Varchar => 1043,
            PgType::Bpchar => 1042,
            PgType::Bytea => 17,
            PgType::Date => 1082,
            PgType::Timestamp => 1114,
            PgType::Timestamptz => 1184,
            PgType::Uuid => 2950,
            PgType::Json => 114,
            PgType::Jsonb => 3802,
            PgType::TextArray => 1009,
            PgType::BoolArray => 1000,
            PgType::Int4Array => 1007,
            PgType::Int8Array => 1016,
            PgType::Int2Array => 1005,
            PgType::Float4Array => 1021,
            PgType::Float8Array => 1022,
            PgType::NumericArray => 1231,
            PgType::VarcharArray => 1015,
            PgType::BpcharArray => 1014,
            PgType::UuidArray => 2951,
            PgType::DateArray => 1182,
            PgType::TimestampArray => 1115,
            PgType::TimestamptzArray => 1185,
            PgType::JsonbArray => 3807,
        }
    }

    /// The type's name as PostgreSQL prints it in messages (`format_type_be`).
    pub fn name(self) -> &'static str {
        match self {
            PgType::Bool => "boolean",
            PgType::Int2 => "smallint",
            PgType::Int4 => "integer",
            PgType::Int8 => "bigint",
            PgType::Float4 => "real",
            PgType::Float8 => "double precision",
            PgType::Numeric => "numeric",
            PgType::Text => "text",
            PgType::Varchar => "character varying",
            PgType::Bpchar => "character",
            PgType::Bytea => "bytea",
            PgType::Date => "date",
            PgType::Timestamp => "timestamp without time zone",
            PgType::Timestamptz => "timestamp with time zone",
            PgType::Uuid => "uuid",
            PgType::Json => "json",
            PgType::Jsonb => "jsonb",
            PgType::TextArray => "text[]",
            PgType::BoolArray => "boolean[]",
            PgType::Int4Array => "integer[]",
            PgType::Int8Array => "bigint[]",
            PgType::Int2Array => "smallint[]",
            PgType::Float4Array => "real[]",
            PgType::Float8Array => "double precision[]",
            PgType::NumericArray => "numeric[]",
            PgType::VarcharArray => "character varying[]",
            PgType::BpcharArray => "character[]",
            PgType::UuidArray => "uuid[]",
            PgType::DateArray => "date[]",
            PgType::TimestampArray => "timestamp without time zone[]",
            PgType::TimestamptzArray => "timestamp with time zone[]",
            PgType::JsonbArray => "jsonb[]",
        }
    }
}

/// Each array type with its element type.
const ELEMENTS: &[(PgType, PgType)] = &[
    (PgType::TextArray, PgType::Text),
    (PgType::BoolArray, PgType::Bool),
    (PgType::Int4Array, PgType::Int4),
    (PgType::Int8Array, PgType::Int8),
    (PgType::Int2Array, PgType::Int2),
    (PgType::Float4Array, PgType::Float4),
    (PgType::Float8Array, PgType::Float8),
    (PgType::NumericArray, PgType::Numeric),
    (PgType::VarcharArray, PgType::Varchar),
    (PgType::BpcharArray, PgType::Bpchar),
    (PgType::UuidArray, PgType::Uuid),
    (PgType::DateArray, PgType::Date),
    (PgType::TimestampArray, PgType::Timestamp),
    (PgType::TimestamptzArray, PgType::Timestamptz),
    (PgType::JsonbArray, PgType::Jsonb),
];

/// Whether PostgreSQL assigns a value of type `from` to a column of type `to`: the same type, an
/// implicit or assignment cast of `pg_cast`, or the I/O conversion to a string type (which
/// PostgreSQL allows in assignment, and from a string type only when written as a cast).
/// Checked against PostgreSQL 15 for every pair of these types.
pub fn assignable(from: PgType, to: PgType) -> bool {
    use PgType::*;
    let numeric = |t| matches!(t, Int2 | Int4 | Int8 | Float4 | Float8 | Numeric);
    let time = |t| matches!(t, Date | Timestamp | Timestamptz);
    if let (Some(from), Some(to)) = (from.element(), to.element()) {
        // An array is assigned element by element (`ArrayCoerceExpr`).
        return assignable(from, to);
    }
    from == to
        || matches!(to, Text | Varchar | Bpchar)
        || (numeric(from) && numeric(to))
        || (time(from) && time(to))
        || matches!((from, to), (Json, Jsonb) | (Jsonb, Json))
}

/// The type of a value as PostgreSQL resolves it for assignment, where this layer knows it
/// for sure; `None` for an untyped literal or parameter (which takes the column's type) and
/// for what it cannot type.
fn assigned_type(e: &Expr) -> Option<PgType> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(..) | Value::Boolean(_) => infer_type(e),
            _ => None,
        },
        Expr::Nested(inner) => assigned_type(inner),
        // A CASE's result type is its branches' common type; branches that are all untyped
        // literals make it `text`. Only branches of one type are typed here.
        Expr::Case {
            conditions,
            else_result,
            ..
        } => {
            let results = conditions
                .iter()
                .map(|c| &c.result)
                .chain(else_result.as_deref());
            let mut typed = None;
            let mut untyped_only = true;
            for r in results {
                if is_untyped(r) {
                    continue;
                }
                untyped_only = false;
                match (typed, assigned_type(r)) {
                    (_, None) => return None,
                    (None, t) => typed = t,
                    (Some(a), Some(b)) if a == b => {}
                    _ => return None,
                }
            }
            if untyped_only {
                Some(PgType::Text)
            } else {
                typed
            }
        }
        _ => infer_type(e),
    }
}

/// A string literal or NULL, possibly parenthesized: PostgreSQL's `unknown`.
fn is_untyped(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_untyped(inner),
        Expr::Value(v) => matches!(
            v.value,
            Value::Null
                | Value::SingleQuotedString(_)
                | Value::EscapedStringLiteral(_)
                | Value::DollarQuotedString(_)
        ),
        _ => false,
    }
}

/// The column an assignment names, folded as PostgreSQL folds an unquoted name (so that
/// messages name it as PostgreSQL does).
fn column_of(target: &ObjectName) -> Option<AssignedColumn> {
    let part = target.0.last()?.as_ident()?;
    Some(AssignedColumn::Name(match part.quote_style {
        Some(_) => part.value.clone(),
        None => part.value.to_lowercase(),
    }))
}

/// The table `stmt` writes to and the typed values it assigns to its columns, each
/// (column, type) once; `None` when it assigns none.
pub(crate) fn checks(stmt: &Statement) -> Option<(String, Vec<Assigned>)> {
    let mut found: Vec<Assigned> = Vec::new();
    let mut add = |column: Option<AssignedColumn>, value: &Expr| {
        let (Some(column), Some(t)) = (column, assigned_type(value)) else {
            return;
        };
        let a = Assigned {
            column,
            from: t.name().to_string(),
        };
        if !found.contains(&a) {
            found.push(a);
        }
    };
    let table = match stmt {
        Statement::Insert(ins) => {
            let TableObject::TableName(name) = &ins.table else {
                return None;
            };
            let key = |k: usize| match ins.columns.get(k) {
                Some(c) => column_of(c),
                None if ins.columns.is_empty() => Some(AssignedColumn::Position(k as u32 + 1)),
                // More values than named columns: SQLite reports it.
                None => None,
            };
            match ins.source.as_ref().map(|s| s.body.as_ref()) {
                Some(SetExpr::Values(v)) => {
                    for row in &v.rows {
                        for (k, value) in row.iter().enumerate() {
                            add(key(k), value);
                        }
                    }
                }
                // A query's untyped literals are left for the column to type, as its values.
                Some(SetExpr::Select(s)) => {
                    for (k, item) in s.projection.iter().enumerate() {
                        match item {
                            SelectItem::UnnamedExpr(e)
                            | SelectItem::ExprWithAlias { expr: e, .. } => add(key(k), e),
                            // A wildcard shifts the positions of what follows it.
                            _ => break,
                        }
                    }
                }
                _ => {}
            }
            if let Some(OnInsert::OnConflict(c)) = &ins.on {
                if let OnConflictAction::DoUpdate(u) = &c.action {
                    for a in &u.assignments {
                        if let AssignmentTarget::ColumnName(c) = &a.target {
                            add(column_of(c), &a.value);
                        }
                    }
                }
            }
            name
        }
        Statement::Update(up) => {
            let TableFactor::Table { name, .. } = &up.table.relation else {
                return None;
            };
            for a in &up.assignments {
                if let AssignmentTarget::ColumnName(c) = &a.target {
                    add(column_of(c), &a.value);
                }
            }
            name
        }
        _ => return None,
    };
    let table = table.0.last()?.as_ident()?.value.clone();
    (!found.is_empty()).then_some((table, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks_of(sql: &str) -> Vec<(AssignedColumn, String)> {
        let dialect = sqlparser::dialect::PostgreSqlDialect {};
        let stmt = sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .unwrap()
            .remove(0);
        checks(&stmt)
            .map(|(_, list)| list.into_iter().map(|a| (a.column, a.from)).collect())
            .unwrap_or_default()
    }

    fn name(n: &str, t: &str) -> (AssignedColumn, String) {
        (AssignedColumn::Name(n.into()), t.into())
    }

    #[test]
    fn typed_values_are_listed_and_untyped_ones_are_not() {
        assert_eq!(
            checks_of("INSERT INTO t (a, b, c, d) VALUES ('x', NULL, $1, ('2024-01-01'))"),
            []
        );
        assert_eq!(
            checks_of("INSERT INTO t (a, b) VALUES (NULL::text, 1), (NULL::text, true)"),
            [
                name("a", "text"),
                name("b", "integer"),
                name("b", "boolean")
            ]
        );
        assert_eq!(
            checks_of("INSERT INTO t VALUES (1, -5000000000)"),
            [
                (AssignedColumn::Position(1), "integer".into()),
                (AssignedColumn::Position(2), "bigint".into())
            ]
        );
        assert_eq!(
            checks_of("UPDATE t SET d = 'x'::text, e = 'y' WHERE false"),
            [name("d", "text")]
        );
        assert_eq!(
            checks_of(
                "INSERT INTO t (a) VALUES ('1') ON CONFLICT (a) DO UPDATE SET d = 'a' || 'b'"
            ),
            [name("d", "text")]
        );
        assert_eq!(
            checks_of("INSERT INTO t (a, b) SELECT 4, '2024-01-01'"),
            [name("a", "integer")]
        );
    }

    #[test]
    fn a_case_is_typed_by_its_typed_branches_or_is_text() {
        assert_eq!(
            checks_of("INSERT INTO t (d) VALUES (CASE WHEN true THEN '2024-01-01' END)"),
            [name("d", "text")]
        );
        assert_eq!(
            checks_of("INSERT INTO t (b) VALUES (CASE WHEN c THEN NULL ELSE true END)"),
            [name("b", "boolean")]
        );
        assert_eq!(
            checks_of("INSERT INTO t (b) VALUES (CASE WHEN c THEN 1 ELSE 2.5 END)"),
            []
        );
    }

    #[test]
    fn assignment_follows_postgres_casts() {
        use PgType::*;
        assert!(assignable(Bool, Text));
        assert!(assignable(Uuid, Varchar));
        assert!(assignable(Float8, Int2));
        assert!(assignable(Timestamptz, Date));
        assert!(assignable(Json, Jsonb));
        assert!(!assignable(Int4, Bool));
        assert!(!assignable(Bool, Int4));
        assert!(!assignable(Text, Date));
        assert!(!assignable(Text, Uuid));
        assert!(!assignable(Int4, Date));
        assert!(!assignable(Bytea, Uuid));
    }
}
