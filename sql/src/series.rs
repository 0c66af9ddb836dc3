//! `generate_series(start, stop [, step])` in `FROM`, over integers: SQLite has no such
//! table function (its `series` extension is not built in, and differs), so the series
//! becomes a recursive common table expression whose values the engine's functions compute
//! with PostgreSQL's rules ([`SERIES_FIRST_FUNCTION`], [`SERIES_NEXT_FUNCTION`]). The column is
//! named as PostgreSQL names it: after the alias's column list, else the alias
//! (`generate_series(1, 10) AS aid` is a column `aid`, which `pgbench -i` relies on), else
//! `generate_series`. Runs after the expression rewrites, which refuse the engine's function
//! names in what a client wrote.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr, Ident, Query, SetExpr, Statement,
    TableAlias, TableFactor, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::values::{SERIES_FIRST_FUNCTION, SERIES_NEXT_FUNCTION};
use crate::SqlError;

/// The common table expression's name and column: internal names, which a client's statement
/// cannot use (`check_internal_names` runs before this rewrite).
const SERIES_CTE: &str = "_sqlkeeper_series";
const SERIES_COLUMN: &str = "_sqlkeeper_v";

/// The arguments' names in the template (start, stop, step), replaced by the arguments
/// themselves.
const ARG_NAMES: [&str; 3] = ["_sqlkeeper_start", "_sqlkeeper_stop", "_sqlkeeper_step"];

struct Series(Option<SqlError>);

impl VisitorMut for Series {
    type Break = ();

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        let Some((args, table, column)) = series_call(t) else {
            return ControlFlow::Continue(());
        };
        let exprs: Option<Vec<Expr>> = args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect();
        let args = match exprs {
            Some(mut a) if a.len() == 2 => {
                a.push(crate::rewrite::number(1));
                a
            }
            Some(a) if a.len() == 3 => a,
            _ => {
                self.0 = Some(SqlError {
                    sqlstate: crate::SqlState::new("42883"),
                    message: "function generate_series takes two or three arguments".into(),
                    position: None,
                });
                return ControlFlow::Break(());
            }
        };
        let column = column.value;
        // The template names the arguments; they are put in as the AST they are (already in
        // SQLite's form: this runs after the expression rewrites).
        let (all, rest) = (ARG_NAMES.join(", "), ARG_NAMES[1..].join(", "));
        let sql = format!(
            "WITH RECURSIVE {SERIES_CTE}({SERIES_COLUMN}) AS (\
             SELECT {SERIES_FIRST_FUNCTION}({all}) UNION ALL \
             SELECT {SERIES_NEXT_FUNCTION}({SERIES_COLUMN}, {rest}) FROM {SERIES_CTE} \
             WHERE {SERIES_COLUMN} IS NOT NULL) \
             SELECT {SERIES_COLUMN} AS {} FROM {SERIES_CTE} WHERE {SERIES_COLUMN} IS NOT NULL",
            Ident::with_quote('"', column)
        );
        let Some(mut subquery) = parse_query(&sql) else {
            self.0 = Some(SqlError::unsupported("this generate_series call"));
            return ControlFlow::Break(());
        };
        let _ = visit_expressions_mut(&mut subquery, |e| {
            if let Expr::Identifier(i) = e {
                if let Some(k) = ARG_NAMES.iter().position(|n| *n == i.value) {
                    *e = args[k].clone();
                }
            }
            ControlFlow::<()>::Continue(())
        });
        *t = TableFactor::Derived {
            lateral: false,
            subquery,
            alias: Some(TableAlias {
                explicit: true,
                name: table,
                columns: Vec::new(),
                at: None,
            }),
            sample: None,
        };
        ControlFlow::Continue(())
    }
}

/// A `generate_series(...)` call in `FROM`: its arguments, the relation's name (the alias,
/// else `generate_series`) and its column's (the alias's column list, else the alias, else
/// `generate_series`), as PostgreSQL names them.
pub(crate) fn series_call(t: &TableFactor) -> Option<(&[FunctionArg], Ident, Ident)> {
    let TableFactor::Table {
        name,
        args: Some(args),
        alias,
        ..
    } = t
    else {
        return None;
    };
    let last = name.0.last()?.as_ident()?;
    if name.0.len() > 2
        || last.quote_style.is_some()
        || !last.value.eq_ignore_ascii_case("generate_series")
    {
        return None;
    }
    let own = || Ident::new("generate_series");
    let table = alias.as_ref().map_or_else(own, |a| a.name.clone());
    let column = alias
        .as_ref()
        .map(|a| a.columns.first().map_or(&a.name, |c| &c.name).clone())
        .unwrap_or_else(own);
    Some((&args.args, table, column))
}

fn parse_query(sql: &str) -> Option<Box<Query>> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(q) if matches!(q.body.as_ref(), SetExpr::Select(_)) => Some(q),
        _ => None,
    }
}

/// Whether the statement's text (`original`, as the client wrote it, re-printed) names
/// `generate_series` at all: the others skip the walk.
pub(crate) fn may_have_series(original: &str) -> bool {
    const NAME: &[u8] = b"generate_series";
    original
        .as_bytes()
        .windows(NAME.len())
        .any(|w| w.eq_ignore_ascii_case(NAME))
}

/// Rewrites every `generate_series(...)` in `FROM` of `stmt`.
pub(crate) fn rewrite(stmt: &mut Statement) -> Result<(), SqlError> {
    let mut v = Series(None);
    let _ = stmt.visit(&mut v);
    match v.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_series_is_named_after_its_alias() {
        let t = crate::translate(
            "INSERT INTO a (aid, bid) SELECT aid, (aid - 1) / 10 + 1 FROM generate_series(1, 100) AS aid",
        )
        .unwrap();
        let sql = &t[0].sqlite[0];
        assert!(sql.contains("AS \"aid\" FROM _sqlkeeper_series"), "{sql}");
        assert!(sql.contains("_sqlkeeper_series_first(1, 100, 1)"), "{sql}");
        let t = crate::translate("SELECT * FROM generate_series(1, 3)").unwrap();
        let [hint] = t[0].columns.as_slice() else {
            panic!("{:?}", t[0].columns)
        };
        assert_eq!(hint.name.as_deref(), Some("generate_series"));
        assert_eq!(hint.pg_type, Some(crate::PgType::Int4));
        assert!(t[0].sqlite[0].contains("AS \"generate_series\""));
        let t = crate::translate("SELECT x FROM generate_series(5, 1, -1) AS s(x)").unwrap();
        assert!(t[0].sqlite[0].contains("AS \"x\""));
        assert_eq!(
            crate::translate("SELECT * FROM generate_series(1)")
                .unwrap_err()
                .sqlstate
                .to_string(),
            "42883"
        );
    }
}
