//! A view's definition as `pg_get_viewdef` prints it, from the `CREATE VIEW` text SQLite keeps:
//! one result column per line, `FROM`, `WHERE`, `GROUP BY`, `HAVING`, `ORDER BY` on lines of
//! their own, indented as PostgreSQL indents them, columns qualified by their table when the
//! query reads one table, `AS name` for an expression's column, and, not pretty, parentheses
//! around every operator. PostgreSQL prints its own deparse, with the implicit casts it added
//! (`lower((p.name)::text)` for a `varchar`); here an expression keeps the text it was written
//! with (with the translator's checked arithmetic written back as operators). A query of
//! another shape (joins other than plain ones, set operations, `WITH`) is printed on one line.
//! Pure: every node prints the same.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, Expr, GroupByExpr, Ident, JoinConstraint, JoinOperator, Query,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

/// The definition of the view `create_view_sql` defines, pretty (`pg_get_viewdef(v, true)`)
/// or not; `None` for text that is not a `CREATE VIEW`.
pub fn view_definition(create_view_sql: &str, pretty: bool) -> Option<String> {
    let mut parsed = Parser::parse_sql(&SQLiteDialect {}, create_view_sql).ok()?;
    let Some(Statement::CreateView(v)) = parsed.pop() else {
        return None;
    };
    let mut query = *v.query;
    let _ = visit_expressions_mut(&mut query, |e| {
        *e = crate::declared::untranslated(e);
        ControlFlow::<()>::Continue(())
    });
    Some(formatted(&query, pretty).unwrap_or_else(|| format!(" {query};")))
}

/// The query in PostgreSQL's layout, or `None` for a shape printed on one line.
fn formatted(query: &Query, pretty: bool) -> Option<String> {
    if query.with.is_some() || query.limit_clause.is_some() || query.fetch.is_some() {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let mut select = (**select).clone();
    if select.distinct.is_some() || select.from.len() > 1 {
        return None;
    }
    let mut order_by = query.order_by.clone();
    // One table without joins: its columns are qualified by its name (or alias).
    let qualifier = match select.from.as_slice() {
        [TableWithJoins { relation, joins }] if joins.is_empty() => match relation {
            TableFactor::Table { name, alias, .. } => Some(
                alias
                    .as_ref()
                    .map(|a| a.name.value.clone())
                    .unwrap_or_else(|| name.0.last().map(|p| p.to_string()).unwrap_or_default()),
            ),
            _ => return None,
        },
        _ => None,
    };
    let aliases: Vec<String> = select
        .projection
        .iter()
        .filter_map(|i| match i {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    if let Some(q) = &qualifier {
        let qualify = |e: &mut Expr| {
            let _ = visit_expressions_mut(e, |x| {
                if let Expr::Identifier(i) = x {
                    *x = Expr::CompoundIdentifier(vec![Ident::new(q.clone()), i.clone()]);
                }
                ControlFlow::<()>::Continue(())
            });
        };
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } = item {
                qualify(e);
            }
        }
        select.selection.iter_mut().for_each(qualify);
        select.having.iter_mut().for_each(qualify);
        if let GroupByExpr::Expressions(exprs, _) = &mut select.group_by {
            exprs.iter_mut().for_each(qualify);
        }
        if let Some(o) = &mut order_by {
            if let sqlparser::ast::OrderByKind::Expressions(exprs) = &mut o.kind {
                for x in exprs {
                    // An output column's name is not qualified.
                    let alias =
                        matches!(&x.expr, Expr::Identifier(i) if aliases.contains(&i.value));
                    if !alias {
                        qualify(&mut x.expr);
                    }
                }
            }
        }
    }
    let show = |e: &Expr| expression(e, pretty);
    let mut targets = Vec::new();
    for item in &select.projection {
        targets.push(match item {
            SelectItem::UnnamedExpr(e @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_))) => {
                show(e)
            }
            SelectItem::UnnamedExpr(e) => {
                let name = crate::columns::figure_name(e).unwrap_or_else(|| "?column?".into());
                format!("{} AS {name}", show(e))
            }
            SelectItem::ExprWithAlias { expr, alias } => {
                let column = match expr {
                    Expr::Identifier(i) => Some(&i.value),
                    Expr::CompoundIdentifier(p) => p.last().map(|i| &i.value),
                    _ => None,
                };
                match column {
                    Some(c) if *c == alias.value => show(expr),
                    _ => format!("{} AS {}", show(expr), alias.value),
                }
            }
            _ => return None,
        });
    }
    let mut out = format!(" SELECT {}", targets.join(",\n    "));
    if let [TableWithJoins { relation, joins }] = select.from.as_slice() {
        out += &format!("\n   FROM {}", relation_text(relation)?);
        for j in joins {
            let (word, constraint) = match &j.join_operator {
                JoinOperator::Join(c) | JoinOperator::Inner(c) => ("JOIN", c),
                JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => ("LEFT JOIN", c),
                JoinOperator::Right(c) | JoinOperator::RightOuter(c) => ("RIGHT JOIN", c),
                JoinOperator::FullOuter(c) => ("FULL JOIN", c),
                _ => return None,
            };
            let JoinConstraint::On(on) = constraint else {
                return None;
            };
            out += &format!(
                "\n     {word} {} ON {}",
                relation_text(&j.relation)?,
                show(on)
            );
        }
    }
    if let Some(w) = &select.selection {
        out += &format!("\n  WHERE {}", show(w));
    }
    if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
        if !exprs.is_empty() {
            let list: Vec<String> = exprs.iter().map(show).collect();
            out += &format!("\n  GROUP BY {}", list.join(", "));
        }
    }
    if let Some(h) = &select.having {
        out += &format!("\n HAVING {}", show(h));
    }
    if let Some(o) = &order_by {
        let sqlparser::ast::OrderByKind::Expressions(exprs) = &o.kind else {
            return None;
        };
        let list: Vec<String> = exprs
            .iter()
            .map(|x| {
                let mut item = x.clone();
                item.expr = Expr::Identifier(Ident::new(show(&x.expr)));
                // PostgreSQL's default NULLS placement, which the translator writes out for
                // SQLite, is not printed.
                let descending =
                    matches!(item.options.sort, Some(sqlparser::ast::OrderBySort::Desc));
                if item.options.nulls_first == Some(descending) {
                    item.options.nulls_first = None;
                }
                item.to_string()
            })
            .collect();
        out += &format!("\n  ORDER BY {}", list.join(", "));
    }
    out.push(';');
    Some(out)
}

/// A relation as PostgreSQL prints it in a `FROM`: `items` or `items i` (no `AS`).
fn relation_text(r: &TableFactor) -> Option<String> {
    let TableFactor::Table { name, alias, .. } = r else {
        return None;
    };
    Some(match alias {
        Some(a) => format!("{name} {}", a.name),
        None => name.to_string(),
    })
}

/// An expression's text: as written when pretty; otherwise with parentheses around every
/// operator, as PostgreSQL's non-pretty deparse (`((a + b) * 2)`).
fn expression(e: &Expr, pretty: bool) -> String {
    if pretty {
        return e.to_string();
    }
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        if let Expr::Nested(inner) = x {
            if matches!(inner.as_ref(), Expr::BinaryOp { .. }) {
                *x = (**inner).clone();
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = sqlparser::ast::visit_expressions_mut(&mut e, |x| {
        if matches!(x, Expr::BinaryOp { .. }) {
            *x = Expr::Nested(Box::new(x.clone()));
        }
        ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_print_as_postgres_lays_them_out() {
        let v =
            "CREATE VIEW v2 AS SELECT id, lower(name), name AS n, _sqlkeeper_mul(code, 2) AS dbl, \
                 code AS code FROM parent AS p WHERE code > 1 ORDER BY id NULLS LAST";
        assert_eq!(
            view_definition(v, true).unwrap(),
            " SELECT p.id,\n    lower(p.name) AS lower,\n    p.name AS n,\n    p.code * 2 AS dbl,\n    \
             p.code\n   FROM parent p\n  WHERE p.code > 1\n  ORDER BY p.id;"
        );
        assert_eq!(
            view_definition(v, false).unwrap(),
            " SELECT p.id,\n    lower(p.name) AS lower,\n    p.name AS n,\n    (p.code * 2) AS dbl,\n    \
             p.code\n   FROM parent p\n  WHERE (p.code > 1)\n  ORDER BY p.id;"
        );
        let join =
            "CREATE VIEW v3 AS SELECT p.id FROM parent AS p JOIN parent AS q ON q.id = p.code";
        assert_eq!(
            view_definition(join, true).unwrap(),
            " SELECT p.id\n   FROM parent p\n     JOIN parent q ON q.id = p.code;"
        );
        let union = "CREATE VIEW u AS SELECT 1 UNION SELECT 2";
        assert_eq!(
            view_definition(union, true).unwrap(),
            " SELECT 1 UNION SELECT 2;"
        );
        assert_eq!(view_definition("CREATE TABLE t (a INT)", true), None);
    }
}
