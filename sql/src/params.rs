//! Types of `$n` parameters the client left unspecified, inferred from where they stand, as
//! PostgreSQL infers them for ParameterDescription (`parse_param.c`, `variable_paramref_hook`):
//! a parameter compared with, assigned to or inserted into a column has the column's type; one
//! cast (`$1::int8`) has the cast's type; `LIMIT $1` and `OFFSET $1` are `bigint`; a `LIKE`
//! pattern is `text`. Drivers that prepare without types (asyncpg, tokio-postgres' `prepare`,
//! sqlx, psycopg 3 with server-side binding) then send an integer for an integer column.
//!
//! Column types live in SQLite's schema, which this crate does not read: the columns are named
//! in a *type probe*, a `SELECT` of those columns over the statement's tables, whose result
//! columns' declared types the node reads when it describes the statement. A parameter whose
//! place says nothing (`SELECT $1`, a function argument) stays unknown, and is `text`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, FromTable, LimitClause, ObjectName, OnConflictAction,
    OnInsert, Query, SetExpr, Statement, TableObject, TableWithJoins, UpdateTableFromKind, Value,
    Visit, Visitor,
};

/// What decides the type of one parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ParamType {
    /// Nothing in the statement: the client's type, else `text`.
    #[default]
    Unknown,
    /// A type the statement names (`$1::int8`, `LIMIT $1`), as a column would declare it.
    Named(String),
    /// The declared type of result column `i` of the statement's type probe: a parameter
    /// assigned to or inserted into that column.
    Column(usize),
    /// The same, for a parameter compared with the column: as in PostgreSQL, where `varchar`
    /// has no comparison operators of its own, a `varchar` column makes the parameter `text`.
    Compared(usize),
    /// An array of the column's type (as compared): `c = ANY ($1)`.
    ArrayOf(usize),
    /// The element type of the column's array type: `$1 = ANY (c)`.
    ElementOf(usize),
}

/// The parameters' types (index 0 is `$1`), and the type probe (Postgres SQL) their
/// [`ParamType::Column`]s refer to.
pub(crate) fn infer(stmt: &Statement) -> (Vec<ParamType>, Option<String>) {
    let mut param_count = 0;
    let _ = sqlparser::ast::visit_expressions(stmt, |e| {
        param_count = param_count.max(placeholder(e).unwrap_or(0));
        ControlFlow::<()>::Continue(())
    });
    if param_count == 0 {
        return (Vec::new(), None);
    }
    let mut found = Found::default();
    let scope = scope(stmt, &mut found);
    let _ = stmt.visit(&mut found);
    // An INSERT without a column list names its columns by position: the probe is `*`.
    let positional = found
        .types
        .values()
        .any(|s| matches!(s, Source::Position(_)));
    let mut columns: Vec<String> = Vec::new();
    let types = (1..=param_count)
        .map(|n| match found.types.remove(&n) {
            Some(Source::Named(t)) => ParamType::Named(t),
            Some(Source::Position(k)) => ParamType::Column(k),
            Some(Source::Column(c, how)) if scope.is_some() && !positional => {
                let i = columns.iter().position(|x| *x == c).unwrap_or_else(|| {
                    columns.push(c);
                    columns.len() - 1
                });
                match how {
                    Use::Compared => ParamType::Compared(i),
                    Use::Assigned => ParamType::Column(i),
                    Use::ArrayOf => ParamType::ArrayOf(i),
                    Use::ElementOf => ParamType::ElementOf(i),
                }
            }
            _ => ParamType::Unknown,
        })
        .collect();
    let probe = scope.and_then(|(with, from)| {
        let list = match positional {
            true => "*".to_string(),
            false if columns.is_empty() => return None,
            false => columns.join(", "),
        };
        Some(format!("{with}SELECT {list} FROM {from}"))
    });
    (types, probe)
}

/// How a parameter stands to a column.
#[derive(Clone, Copy)]
enum Use {
    /// Assigned to it or inserted into it.
    Assigned,
    /// Compared with it.
    Compared,
    /// The array of a quantified comparison with it (`c = ANY ($1)`).
    ArrayOf,
    /// Compared with the elements of the column's array (`$1 = ANY (c)`).
    ElementOf,
}

enum Source {
    Named(String),
    /// A column reference as written (`c`, `t.c`, `"Name"`), and how the parameter stands to it.
    Column(String, Use),
    /// The column at this position of an `INSERT` target without a column list.
    Position(usize),
}

#[derive(Default)]
struct Found {
    /// The first source seen for each parameter number.
    types: BTreeMap<usize, Source>,
}

impl Found {
    fn set(&mut self, param: usize, source: Source) {
        self.types.entry(param).or_insert(source);
    }
}

fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        Expr::Nested(inner) => placeholder(inner),
        _ => None,
    }
}

fn column_ref(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Some(e.to_string()),
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

fn column_name(target: &ObjectName) -> String {
    target.0.last().map(|p| p.to_string()).unwrap_or_default()
}

impl Visitor for Found {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if let Some(LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
            let limit = limit.as_ref().and_then(placeholder);
            let offset = offset.as_ref().and_then(|o| placeholder(&o.value));
            for n in limit.into_iter().chain(offset) {
                self.set(n, Source::Named("int8".into()));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        use BinaryOperator::*;
        let mut both = |a: &Expr, b: &Expr| {
            if let (Some(n), Some(c)) = (placeholder(a), column_ref(b)) {
                self.set(n, Source::Column(c, Use::Compared));
            }
        };
        match e {
            Expr::BinaryOp {
                left,
                op: Eq | NotEq | Lt | Gt | LtEq | GtEq,
                right,
            } => {
                both(left, right);
                both(right, left);
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                both(a, b);
                both(b, a);
            }
            Expr::InList { expr, list, .. } => list.iter().for_each(|x| both(x, expr)),
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                if let (Some(n), Some(c)) = (placeholder(right), column_ref(left)) {
                    self.set(n, Source::Column(c, Use::ArrayOf));
                }
                if let (Some(n), Some(c)) = (placeholder(left), column_ref(right)) {
                    self.set(n, Source::Column(c, Use::ElementOf));
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                both(low, expr);
                both(high, expr);
            }
            Expr::Like { pattern, .. } | Expr::ILike { pattern, .. } => {
                if let Some(n) = placeholder(pattern) {
                    self.set(n, Source::Named("text".into()));
                }
            }
            Expr::Cast {
                expr, data_type, ..
            } => {
                if let Some(n) = placeholder(expr) {
                    self.set(n, Source::Named(data_type.to_string()));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn tables(list: &[TableWithJoins]) -> Vec<String> {
    list.iter().map(|t| t.to_string()).collect()
}

/// The tables a statement's column references resolve in (its `WITH` clause, if any, and a
/// `FROM` list), and the parameters assigned to its target's columns. `None` for statements
/// whose columns this does not place (set operations, `INSERT … SELECT` sources, DDL).
fn scope(stmt: &Statement, found: &mut Found) -> Option<(String, String)> {
    let assign = |target: &str, value: &Expr, found: &mut Found| {
        if let Some(n) = placeholder(value) {
            found.set(n, Source::Column(target.to_string(), Use::Assigned));
        }
    };
    let mut with = String::new();
    let from = match stmt {
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Select(s) if !s.from.is_empty() => {
                if let Some(w) = &q.with {
                    with = format!("{w} ");
                }
                tables(&s.from)
            }
            _ => return None,
        },
        Statement::Update(u) => {
            for a in &u.assignments {
                if let AssignmentTarget::ColumnName(c) = &a.target {
                    assign(&column_name(c), &a.value, found);
                }
            }
            let mut from = tables(std::slice::from_ref(&u.table));
            if let Some(UpdateTableFromKind::AfterSet(f) | UpdateTableFromKind::BeforeSet(f)) =
                &u.from
            {
                from.extend(tables(f));
            }
            from
        }
        Statement::Delete(d) => {
            let (FromTable::WithFromKeyword(f) | FromTable::WithoutKeyword(f)) = &d.from;
            let mut from = tables(f);
            from.extend(d.using.as_deref().map(tables).unwrap_or_default());
            from
        }
        Statement::Insert(i) => {
            let TableObject::TableName(table) = &i.table else {
                return None;
            };
            let names: Vec<String> = i.columns.iter().map(column_name).collect();
            if let Some(SetExpr::Values(v)) = i.source.as_ref().map(|s| s.body.as_ref()) {
                for row in &v.rows {
                    for (k, value) in row.iter().enumerate() {
                        match names.get(k) {
                            Some(name) => assign(name, value, found),
                            // Without a column list, values fill the columns in order:
                            // SQLite's `*` lists them so.
                            None if names.is_empty() => {
                                if let Some(n) = placeholder(value) {
                                    found.set(n, Source::Position(k));
                                }
                            }
                            None => {}
                        }
                    }
                }
            }
            if let Some(OnInsert::OnConflict(c)) = &i.on {
                if let OnConflictAction::DoUpdate(u) = &c.action {
                    for a in &u.assignments {
                        if let AssignmentTarget::ColumnName(c) = &a.target {
                            assign(&column_name(c), &a.value, found);
                        }
                    }
                }
            }
            vec![table.to_string()]
        }
        _ => return None,
    };
    Some((with, from.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_sql(sql: &str) -> (Vec<ParamType>, Option<String>) {
        let dialect = sqlparser::dialect::PostgreSqlDialect {};
        let stmt = sqlparser::parser::Parser::parse_sql(&dialect, sql)
            .unwrap()
            .remove(0);
        infer(&stmt)
    }

    #[test]
    fn parameters_take_the_type_of_where_they_stand() {
        use ParamType::*;
        let cases: &[(&str, &[ParamType], Option<&str>)] = &[
            (
                "SELECT * FROM t WHERE id = $1 AND $2 < t.at",
                &[Compared(0), Compared(1)],
                Some("SELECT id, t.at FROM t"),
            ),
            (
                "SELECT name FROM a JOIN b ON a.id = b.a_id WHERE b.k IN ($1, $2) LIMIT $3 OFFSET $4",
                &[Compared(0), Compared(0), Named("int8".into()), Named("int8".into())],
                Some("SELECT b.k FROM a JOIN b ON a.id = b.a_id"),
            ),
            (
                "INSERT INTO t (a, \"B\") VALUES ($1, $2), ($3, $4) ON CONFLICT (a) DO UPDATE SET c = $5",
                &[Column(0), Column(1), Column(0), Column(1), Column(2)],
                Some("SELECT a, \"B\", c FROM t"),
            ),
            ("INSERT INTO t VALUES ($1, 7, $2)", &[Column(0), Column(2)], Some("SELECT * FROM t")),
            (
                "UPDATE t SET v = $1 WHERE k BETWEEN $2 AND $3 AND name LIKE $4",
                &[Column(0), Compared(1), Compared(1), Named("text".into())],
                Some("SELECT v, k FROM t"),
            ),
            ("DELETE FROM t WHERE id = $1::bigint", &[Named("BIGINT".into())], None),
            (
                "WITH w AS (SELECT id FROM t) SELECT * FROM w WHERE id = $1",
                &[Compared(0)],
                Some("WITH w AS (SELECT id FROM t) SELECT id FROM w"),
            ),
            ("SELECT $1, upper($2)", &[Unknown, Unknown], None),
            ("SELECT 1 FROM t WHERE id = $2", &[Unknown, Compared(0)], Some("SELECT id FROM t")),
        ];
        for (sql, types, probe) in cases {
            let (t, p) = infer_sql(sql);
            assert_eq!((&t[..], p.as_deref()), (*types, *probe), "{sql}");
        }
    }
}
