//! Literal values bound as parameters ([`Translated::literals`](crate::Translated)).
//!
//! A statement sent with the simple protocol carries its values in its text: pgbench's
//! `UPDATE pgbench_accounts SET abalance = abalance + 1795 WHERE aid = 83612` differs from the
//! next one only in its numbers. SQLite caches prepared statements by their text, so each such
//! statement was compiled anew on the node that ran it and again on every replica that applied
//! it, with the value checks and triggers of its table compiled into it each time. Here the
//! literals of the places that hold values (the values of `INSERT`, `SET` and `WHERE`) become
//! parameters numbered after the client's own (`?n`), so that statements that differ only in
//! their values have one text and come from the statement cache.
//!
//! A parameter behaves as the literal did in SQLite: neither has a type affinity, an integer
//! literal is bound as an integer and a fractional one as a float (as SQLite reads them), text
//! as text. The writers plan without looking at bound values (the query planner stability
//! guarantee, `engine/src/step.rs`), so a plan does not depend on them either. Left as they
//! are: literals in result columns (they name the column), `ORDER BY` and `GROUP BY` (`1` is a
//! position there), `LIMIT`, `LIKE` patterns (a literal prefix can use an index), subqueries,
//! DDL, and the type names and markers the translator
//! passes to its own functions (`_sqlkeeper_add(a, b, 'int4')`).

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, OnConflictAction, OnInsert, SetExpr,
    Statement, UnaryOperator, Value,
};

/// At most this many literals of one statement become parameters; a statement with more (a
/// bulk `INSERT` of many rows) keeps them all. Such statements rarely repeat with the same
/// shape, and SQLite allows at most 32,766 parameters, some of which the client's own take.
pub const LITERAL_PARAMS_MAX: usize = 256;

/// A literal value taken out of a statement, bound as parameter `?n` when it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An integer literal that fits 64 bits.
    Integer(i64),
    /// A fractional or exponent literal, finite as a 64-bit float.
    Real(f64),
    /// A string literal.
    Text(String),
}

/// Replaces the literals of `stmt`'s value places with parameters `?{first}`, `?{first + 1}`,
/// ... and returns their values in that order (empty when none, or more than
/// [`LITERAL_PARAMS_MAX`], were found: then `stmt` is unchanged).
pub(crate) fn bind(stmt: &mut Statement, first: usize) -> Vec<Literal> {
    let mut count = 0usize;
    visit(stmt, &mut |v| count += usize::from(literal(v).is_some()));
    if count == 0 || count > LITERAL_PARAMS_MAX {
        return Vec::new();
    }
    let mut values = Vec::with_capacity(count);
    visit(stmt, &mut |v| {
        if let Some(lit) = literal(v) {
            values.push(lit);
            *v = Value::Placeholder(format!("?{}", first + values.len() - 1));
        }
    });
    values
}

/// What is done to each literal value found.
type OnValue<'a> = dyn FnMut(&mut Value) + 'a;

fn visit(stmt: &mut Statement, found: &mut OnValue) {
    match stmt {
        Statement::Insert(i) => {
            if let Some(SetExpr::Values(v)) = i.source.as_mut().map(|s| s.body.as_mut()) {
                for e in v.rows.iter_mut().flat_map(|r| r.content.iter_mut()) {
                    expr(e, found);
                }
            }
            if let Some(OnInsert::OnConflict(c)) = &mut i.on {
                if let OnConflictAction::DoUpdate(u) = &mut c.action {
                    for a in &mut u.assignments {
                        expr(&mut a.value, found);
                    }
                    if let Some(w) = &mut u.selection {
                        expr(w, found);
                    }
                }
            }
        }
        Statement::Update(u) => {
            for a in &mut u.assignments {
                expr(&mut a.value, found);
            }
            if let Some(w) = &mut u.selection {
                expr(w, found);
            }
        }
        Statement::Delete(d) => {
            if let Some(w) = &mut d.selection {
                expr(w, found);
            }
        }
        Statement::Query(q) => {
            if let SetExpr::Select(s) = q.body.as_mut() {
                if let Some(w) = &mut s.selection {
                    expr(w, found);
                }
            }
        }
        _ => {}
    }
}

/// The value of a literal that binds to the same SQLite value, if it is one.
fn literal(v: &Value) -> Option<Literal> {
    match v {
        Value::Number(n, false) => {
            let digits = n.strip_prefix('-').unwrap_or(n);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                // Past 64 bits SQLite reads an integer literal as a float: left as it is.
                n.parse().ok().map(Literal::Integer)
            } else {
                n.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Literal::Real)
            }
        }
        Value::SingleQuotedString(s) => Some(Literal::Text(s.clone())),
        _ => None,
    }
}

fn expr(e: &mut Expr, found: &mut OnValue) {
    match e {
        Expr::Value(v) => found(&mut v.value),
        // `-12` is one literal, so that negative values give the same text as positive ones.
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr: inner,
        } if matches!(inner.as_ref(), Expr::Value(v) if matches!(&v.value, Value::Number(n, false) if !n.starts_with('-'))) =>
        {
            if let Expr::Value(v) = inner.as_mut() {
                if let Value::Number(n, _) = &v.value {
                    v.value = Value::Number(format!("-{n}"), false);
                }
            }
            *e = std::mem::replace(inner.as_mut(), Expr::value(Value::Null));
            expr(e, found);
        }
        Expr::BinaryOp { left, right, .. } => {
            expr(left, found);
            expr(right, found);
        }
        Expr::UnaryOp { expr: inner, .. }
        | Expr::Nested(inner)
        | Expr::IsNull(inner)
        | Expr::IsNotNull(inner)
        | Expr::Cast { expr: inner, .. } => expr(inner, found),
        Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
            expr(a, found);
            expr(b, found);
        }
        Expr::InList {
            expr: inner, list, ..
        } => {
            expr(inner, found);
            for e in list {
                expr(e, found);
            }
        }
        Expr::Between {
            expr: inner,
            low,
            high,
            ..
        } => {
            expr(inner, found);
            expr(low, found);
            expr(high, found);
        }
        Expr::Like {
            expr: inner,
            pattern,
            ..
        }
        | Expr::ILike {
            expr: inner,
            pattern,
            ..
        } => {
            // The pattern stays: SQLite uses an index for a literal prefix (`'ab%'`), which it
            // cannot see in a parameter when it plans without looking at bound values.
            let _ = pattern;
            expr(inner, found);
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                expr(o, found);
            }
            for c in conditions {
                expr(&mut c.condition, found);
                expr(&mut c.result, found);
            }
            if let Some(e) = else_result {
                expr(e, found);
            }
        }
        Expr::Function(f) => {
            // The translator's own functions take type names and markers as string literals,
            // which stay in the text; their other arguments are values.
            let internal = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.starts_with("_sqlkeeper_"));
            let FunctionArguments::List(list) = &mut f.args else {
                return;
            };
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() || f.over.is_some() {
                return;
            }
            for a in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) = a {
                    let is_text = matches!(
                        arg,
                        Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_))
                    );
                    if !(internal && is_text) {
                        expr(arg, found);
                    }
                }
            }
        }
        // Anything else (subqueries, COLLATE, intervals, ...) keeps its literals.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate;

    fn one(sql: &str) -> crate::Translated {
        translate(sql).unwrap().pop().unwrap()
    }

    #[test]
    fn statements_that_differ_in_values_have_one_text() {
        let a = one("UPDATE pgbench_accounts SET abalance = abalance + 1795 WHERE aid = 83612");
        let b = one("UPDATE pgbench_accounts SET abalance = abalance + -12 WHERE aid = 7");
        assert_eq!(a.sqlite, b.sqlite);
        assert_eq!(
            a.literals,
            [Literal::Integer(1795), Literal::Integer(83612)]
        );
        assert_eq!(b.literals, [Literal::Integer(-12), Literal::Integer(7)]);
        let a = one("INSERT INTO h (tid, delta, note) VALUES (3, 2.5, 'x')");
        let b = one("INSERT INTO h (tid, delta, note) VALUES (4, 1e3, 'it''s')");
        assert_eq!(a.sqlite, b.sqlite);
        assert_eq!(
            b.literals,
            [
                Literal::Integer(4),
                Literal::Real(1000.0),
                Literal::Text("it's".into())
            ]
        );
        let a = one("SELECT abalance FROM pgbench_accounts WHERE aid = 5");
        let b = one("SELECT abalance FROM pgbench_accounts WHERE aid = 6");
        assert_eq!(a.sqlite, b.sqlite);
    }

    #[test]
    fn parameters_follow_the_clients_own() {
        let t = one("UPDATE t SET a = $1 WHERE b = 5 AND c = $2");
        assert_eq!(t.param_count, 2);
        assert_eq!(t.sqlite, ["UPDATE t SET a = ?1 WHERE b = ?3 AND c = ?2"]);
        assert_eq!(t.literals, [Literal::Integer(5)]);
    }

    #[test]
    fn literals_that_are_not_values_stay() {
        // Result columns are named by their text; ORDER BY 1 is a position; LIMIT, LIKE
        // patterns, subqueries and the translator's type names stay literal.
        let t = one("SELECT 1, 'a' FROM t WHERE x = 2 AND name LIKE 'ab%' \
             AND y IN (SELECT z FROM u WHERE w = 3) ORDER BY 1 LIMIT 4");
        assert_eq!(t.literals, [Literal::Integer(2)]);
        let sql = &t.sqlite[0];
        for kept in [
            "SELECT 1, 'a'",
            "LIKE 'ab%'",
            "w = 3",
            "ORDER BY 1",
            "LIMIT 4",
        ] {
            assert!(sql.contains(kept), "{kept} in {sql}");
        }
        let t = one("INSERT INTO t (a) VALUES (CAST('7' AS int4))");
        assert!(t.sqlite[0].contains("'int4'"), "{}", t.sqlite[0]);
        // DDL keeps every literal.
        assert!(one("CREATE TABLE d (a int DEFAULT 5)").literals.is_empty());
    }

    #[test]
    fn values_sqlite_reads_otherwise_stay() {
        // Past 64 bits an integer literal is a float to SQLite; past a float's range, infinity
        // (which the log cannot carry as a parameter).
        let t = one("UPDATE t SET a = 9223372036854775808, b = 1e400 WHERE c = 1");
        assert_eq!(t.literals, [Literal::Integer(1)]);
        assert!(t.sqlite[0].contains("9223372036854775808"));
        assert!(t.sqlite[0].contains("1e400"));
    }

    #[test]
    fn a_statement_with_too_many_literals_keeps_them_all() {
        let rows: Vec<String> = (0..=LITERAL_PARAMS_MAX).map(|i| format!("({i})")).collect();
        let t = one(&format!("INSERT INTO t (a) VALUES {}", rows.join(", ")));
        assert!(t.literals.is_empty());
        assert!(t.sqlite[0].contains(&format!("({LITERAL_PARAMS_MAX})")));
        let rows = &rows[..LITERAL_PARAMS_MAX];
        let t = one(&format!("INSERT INTO t (a) VALUES {}", rows.join(", ")));
        assert_eq!(t.literals.len(), LITERAL_PARAMS_MAX);
    }
}
