//! Writes whose result would depend on the order SQLite happens to read rows in.
//!
//! Every replica runs the same write with the same SQLite build, schema and settings, and no
//! planner statistics, so it reads rows in the same order (`docs/determinism.md`). Two
//! constructs would still make a write depend on that order rather than on the data, and
//! PostgreSQL itself leaves their result unspecified: a `LIMIT`/`OFFSET` that picks "some" rows
//! (no `ORDER BY`), and an aggregate that concatenates rows in reading order (`string_agg`,
//! `array_agg`, `json_agg`, ... without `ORDER BY`). Inside a write they are refused (0A000),
//! naming the construct; in reads they stay allowed.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions, Expr, FromTable, FunctionArgumentClause, FunctionArguments, Query, SetExpr,
    Statement, TableWithJoins, UpdateTableFromKind, Visit, Visitor,
};

use crate::error::SqlError;

/// Aggregates whose result lists their input rows in the order they are read.
const ORDER_DEPENDENT_AGGREGATES: &[&str] = &[
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "xmlagg",
    "group_concat",
    "json_group_array",
    "json_group_object",
];

struct Check;

impl Visitor for Check {
    type Break = SqlError;

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<SqlError> {
        if q.limit_clause.is_some() && q.order_by.is_none() {
            return ControlFlow::Break(SqlError::unsupported(
                "LIMIT or OFFSET without ORDER BY inside a write (the rows it picks would depend \
                 on the order rows are read; add an ORDER BY)",
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<SqlError> {
        let Expr::Function(f) = e else {
            return ControlFlow::Continue(());
        };
        let name = f
            .name
            .0
            .last()
            .map(|p| p.to_string().to_ascii_lowercase())
            .unwrap_or_default();
        if !ORDER_DEPENDENT_AGGREGATES.contains(&name.as_str()) {
            return ControlFlow::Continue(());
        }
        let ordered = !f.within_group.is_empty()
            || matches!(&f.args, FunctionArguments::List(list)
                if list.clauses.iter().any(|c| matches!(c, FunctionArgumentClause::OrderBy(_))));
        if ordered {
            return ControlFlow::Continue(());
        }
        ControlFlow::Break(SqlError::unsupported(format!(
            "{name}() without ORDER BY inside a write (its result would depend on the order rows \
             are read; add ORDER BY inside the call)"
        )))
    }
}

/// Refuses a write whose result would depend on reading order (see the module docs).
pub(crate) fn check_order_independent(stmt: &Statement) -> Result<(), SqlError> {
    match stmt.visit(&mut Check) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Whether an expression holds a subquery, the one way a single expression can read without
/// bound.
fn has_query(e: &Expr) -> bool {
    visit_expressions(e, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

fn tables(t: &[TableWithJoins]) -> String {
    t.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn where_clause(w: &Option<Expr>) -> String {
    w.as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default()
}

/// A read that does the reading of a write whose reading is not bounded by the rows it names:
/// an `INSERT … SELECT` (or `VALUES` with a subquery), an `UPDATE … FROM` or with subqueries, a
/// `DELETE` with subqueries. The node that accepts the write runs it first, on a read
/// connection with the entry's step budget, and refuses the write (54000) if it goes over, so
/// a hopeless statement never reaches the log (`docs/determinism.md`, Budgets and limits).
/// `None` for writes that touch rows by their values or keys (`INSERT … VALUES`,
/// `UPDATE t … WHERE k = $1`): their reads are bounded by the table, and a probe would cost
/// every such write a read.
///
/// `statement` is the translated (SQLite) statement; the probe uses its parameters `?n`.
pub(crate) fn probe(statement: &Statement) -> Option<String> {
    match statement {
        Statement::Insert(ins) => {
            let q = ins.source.as_ref()?;
            let plain_values = q.with.is_none()
                && matches!(q.body.as_ref(), SetExpr::Values(v)
                    if !v.rows.iter().flat_map(|r| &r.content).any(has_query));
            (!plain_values).then(|| format!("SELECT count(*) FROM ({q})"))
        }
        Statement::Update(u) => {
            let from = match &u.from {
                Some(UpdateTableFromKind::AfterSet(t) | UpdateTableFromKind::BeforeSet(t)) => {
                    Some(tables(t))
                }
                None => None,
            };
            let reads = from.is_some()
                || !u.table.joins.is_empty()
                || u.assignments.iter().any(|a| has_query(&a.value))
                || u.selection.as_ref().is_some_and(has_query);
            if !reads {
                return None;
            }
            // count(e) evaluates every assigned expression on every row the update touches.
            let counts: String = u
                .assignments
                .iter()
                .map(|a| format!(", count({})", a.value))
                .collect();
            let from = match from {
                Some(f) => format!("{}, {f}", u.table),
                None => u.table.to_string(),
            };
            Some(format!(
                "SELECT count(*){counts} FROM {from}{}",
                where_clause(&u.selection)
            ))
        }
        Statement::Delete(d) => {
            let reads = d.using.is_some() || d.selection.as_ref().is_some_and(has_query);
            if !reads {
                return None;
            }
            let (FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t)) = &d.from;
            let mut from = tables(t);
            if let Some(using) = &d.using {
                from = format!("{from}, {}", tables(using));
            }
            Some(format!(
                "SELECT count(*) FROM {from}{}",
                where_clause(&d.selection)
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::translate;

    fn refused(sql: &str) -> String {
        match translate(sql) {
            Err(e) => format!("{} {}", e.sqlstate, e.message),
            Ok(_) => String::new(),
        }
    }

    fn probe_of(sql: &str) -> Option<String> {
        translate(sql).unwrap().remove(0).probe
    }

    #[test]
    fn writes_that_read_without_bound_get_a_probe_and_point_writes_do_not() {
        assert_eq!(
            probe_of("INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c").as_deref(),
            Some("SELECT count(*) FROM (WITH RECURSIVE c (x) AS (SELECT 1 UNION ALL SELECT _sqlkeeper_add(x, 1) FROM c) SELECT x FROM c)")
        );
        assert_eq!(
            probe_of("UPDATE t SET v = (SELECT max(v) FROM u WHERE u.k = t.k) WHERE k > $1").as_deref(),
            Some("SELECT count(*), count((SELECT max(v) FROM u WHERE u.k = t.k)) FROM t WHERE k > ?1")
        );
        assert_eq!(
            probe_of("UPDATE t SET v = u.v FROM u WHERE u.k = t.k").as_deref(),
            Some("SELECT count(*), count(u.v) FROM t, u WHERE u.k = t.k")
        );
        assert_eq!(
            probe_of("DELETE FROM t WHERE k IN (SELECT k FROM u)").as_deref(),
            Some("SELECT count(*) FROM t WHERE k IN (SELECT k FROM u)")
        );
        for point in [
            "INSERT INTO t (k, v) VALUES ($1, $2)",
            "UPDATE t SET v = v + 1 WHERE k = $1",
            "DELETE FROM t WHERE k = 3",
            "SELECT x FROM t",
        ] {
            assert_eq!(probe_of(point), None, "{point}");
        }
    }

    /// Inputs the long fuzz runs of the `sql_text` target found (`scripts/fuzz.sh`), replayed on
    /// every test run: translation returns, whatever it returns.
    #[test]
    fn fuzz_regressions_still_translate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/regressions/sql_text");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                let _ = translate(&text);
            }
        }
    }

    #[test]
    fn order_dependent_writes_are_refused_and_reads_are_not() {
        for sql in [
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs LIMIT 10)",
            "UPDATE jobs SET owner = 'a' WHERE id IN (SELECT id FROM jobs OFFSET 5)",
            "INSERT INTO names (n) SELECT string_agg(name, ',') FROM users",
            "INSERT INTO t (v) SELECT v FROM u LIMIT 1",
            "UPDATE t SET v = (SELECT json_agg(x) FROM u)",
        ] {
            let e = refused(sql);
            assert!(e.starts_with("0A000"), "{sql}: {e:?}");
        }
        for sql in [
            "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 10)",
            "INSERT INTO names (n) SELECT string_agg(name, ',' ORDER BY name) FROM users",
            "SELECT id FROM jobs LIMIT 10",
            "SELECT string_agg(name, ',') FROM users",
        ] {
            assert_eq!(refused(sql), "", "{sql}");
        }
    }
}
