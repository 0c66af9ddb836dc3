//! The minimum of `pg_catalog` that drivers and ORMs query on connect and for `has_table`
//! (SQLAlchemy, Alembic, psycopg2's hstore probe): `pg_class`, `pg_namespace` and `pg_type`
//! as subqueries over SQLite's own schema table. Rewritten after the internal-name checks, so
//! users still cannot name `sqlite_schema` themselves. The full catalog (psql `\d`) is later
//! work; see `docs/compat.md`.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, Query, SetExpr, Statement, TableAlias, TableFactor, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// The catalog relations served, with the query standing in for each.
const RELATIONS: &[(&str, &str)] = &[
    (
        "pg_class",
        "SELECT pg_relation_oid(s.name) AS oid, s.name AS relname, 2200 AS relnamespace, \
         CASE s.type WHEN 'table' THEN 'r' WHEN 'view' THEN 'v' ELSE 'i' END AS relkind, \
         10 AS relowner FROM sqlite_schema AS s \
         WHERE s.type IN ('table', 'view', 'index') AND s.name NOT LIKE 'sqlite!_%' ESCAPE '!' \
         AND s.name NOT LIKE '!_sqlkeeper%' ESCAPE '!'",
    ),
    (
        "pg_namespace",
        "SELECT 2200 AS oid, 'public' AS nspname UNION ALL SELECT 11, 'pg_catalog'",
    ),
    (
        "pg_type",
        "SELECT 0 AS oid, '' AS typname, 0 AS typarray, 0 AS typnamespace WHERE 1 = 0",
    ),
];

/// The catalog relation `name` stands for (`pg_class`, `pg_catalog.pg_class`), if any.
pub(crate) fn relation(name: &ObjectName) -> Option<&'static str> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
        .collect();
    let bare = match parts.as_slice() {
        [n] => n,
        [s, n] if s == "pg_catalog" => n,
        _ => return None,
    };
    RELATIONS.iter().find(|(r, _)| r == bare).map(|(r, _)| *r)
}

struct Rewriter {
    /// Replace catalog relations (not in UPDATE or DELETE: their target keeps its name).
    catalog: bool,
    /// Names of common table expressions, which take precedence over the catalog.
    ctes: Vec<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &q.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_ascii_lowercase()),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        match t {
            TableFactor::Table { name, alias, .. } if self.catalog => {
                let shadowed = name.0.len() == 1
                    && self
                        .ctes
                        .contains(&name.to_string().trim_matches('"').to_ascii_lowercase());
                if let Some(rel) = relation(name).filter(|_| !shadowed) {
                    if let Some(query) = parse_query(
                        RELATIONS
                            .iter()
                            .find(|(r, _)| *r == rel)
                            .map(|(_, q)| *q)
                            .unwrap_or(""),
                    ) {
                        let alias = alias.clone().unwrap_or(TableAlias {
                            explicit: true,
                            name: Ident::new(rel),
                            columns: Vec::new(),
                            at: None,
                        });
                        *t = TableFactor::Derived {
                            lateral: false,
                            subquery: Box::new(query),
                            alias: Some(alias),
                            sample: None,
                        };
                    }
                }
            }
            // SQLite has no column list on a derived table's alias: `(VALUES ...) AS v(a, b)`
            // becomes `(SELECT column1 AS a, column2 AS b FROM (VALUES ...)) AS v`.
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } if !alias.columns.is_empty() && matches!(*subquery.body, SetExpr::Values(_)) => {
                let width = match &*subquery.body {
                    SetExpr::Values(v) => v.rows.first().map_or(0, |r| r.len()),
                    _ => 0,
                };
                // Columns past the alias list keep SQLite's names.
                let items: Vec<String> = (0..width.max(alias.columns.len()))
                    .map(|i| match alias.columns.get(i) {
                        Some(c) => format!("column{} AS {}", i + 1, c.name),
                        None => format!("column{}", i + 1),
                    })
                    .collect();
                let sql = format!("SELECT {} FROM ({subquery})", items.join(", "));
                if let Some(q) = parse_query(&sql) {
                    **subquery = q;
                    alias.columns.clear();
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        // pg_catalog.pg_class.relname -> pg_class.relname
        if let Expr::CompoundIdentifier(parts) = e {
            if parts.len() == 3 && parts[0].value.eq_ignore_ascii_case("pg_catalog") {
                parts.remove(0);
            }
        }
        ControlFlow::Continue(())
    }
}

fn parse_query(sql: &str) -> Option<Query> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(q) => Some(*q),
        _ => None,
    }
}

/// Replaces catalog relations by their stand-in queries, and derived `VALUES` tables with
/// column aliases by a form SQLite accepts.
pub(crate) fn rewrite(stmt: &mut Statement) {
    // Not in UPDATE or DELETE, whose target is a table factor too: a user table keeps its name.
    let catalog = !matches!(stmt, Statement::Update { .. } | Statement::Delete(_));
    let _ = stmt.visit(&mut Rewriter {
        catalog,
        ctes: Vec::new(),
    });
}
