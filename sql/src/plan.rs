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
    Expr, FunctionArgumentClause, FunctionArguments, Query, Statement, Visit, Visitor,
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

#[cfg(test)]
mod tests {
    use crate::translate;

    fn refused(sql: &str) -> String {
        match translate(sql) {
            Err(e) => format!("{} {}", e.sqlstate, e.message),
            Ok(_) => String::new(),
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
