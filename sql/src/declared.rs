//! The constraints a table's definition declares, read from its `CREATE TABLE` text as SQLite
//! keeps it: the catalog (`pg_constraint`) lists primary keys, unique constraints and foreign
//! keys under the names they were declared with (`CONSTRAINT name UNIQUE (a, b)`, what
//! SQLAlchemy and Alembic naming conventions write), and the `CHECK` constraints a user wrote,
//! under their names or the ones PostgreSQL generates. The value checks the translator adds to
//! typed columns (`_sqlkeeper_valid(...)`) are not the user's and are not listed. Pure: every
//! node reads the same definition the same way.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, BinaryOperator, ColumnOption, Expr, FunctionArg, FunctionArgExpr,
    FunctionArguments, Statement, TableConstraint, Visit, Visitor,
};
use sqlparser::dialect::SQLiteDialect;
use sqlparser::parser::Parser;

/// One declared constraint of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// `p` primary key, `u` unique, `f` foreign key, `c` check (`pg_constraint.contype`).
    pub kind: char,
    /// The declared name; for a `CHECK` without one, the name PostgreSQL gives it
    /// (`t_col_check` when it names one column, else `t_check`).
    pub name: Option<String>,
    /// The constrained columns, comma-separated, lower case: for a check, the columns its
    /// expression names, in the table's order.
    pub columns: String,
    /// The column numbers of `columns` (from 1), as `pg_constraint.conkey` lists them.
    pub conkey: Vec<usize>,
    /// A check's expression, as kept.
    pub check: Option<String>,
    /// A check's definition as `pg_get_constraintdef` prints it: `CHECK ((a > 0))`, with
    /// PostgreSQL's parentheses around an expression that is not a column or a call.
    pub definition: Option<String>,
}

/// The constraints `create_table_sql` declares, in the order written (column constraints
/// first, by column); empty for text that is not a `CREATE TABLE`.
pub fn declared_constraints(create_table_sql: &str) -> Vec<Declared> {
    let Ok(mut parsed) = Parser::parse_sql(&SQLiteDialect {}, create_table_sql) else {
        return Vec::new();
    };
    let Some(Statement::CreateTable(ct)) = parsed.pop() else {
        return Vec::new();
    };
    let table = ct.name.0.last().map(|p| p.to_string()).unwrap_or_default();
    let table = table.trim_matches('"').to_lowercase();
    let columns: Vec<String> = ct
        .columns
        .iter()
        .map(|c| c.name.value.to_lowercase())
        .collect();
    let numbers = |names: &[String]| -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| columns.iter().position(|c| c == n).map(|i| i + 1))
            .collect()
    };
    let mut out = Vec::new();
    let mut push = |kind: char,
                    name: Option<&sqlparser::ast::Ident>,
                    names: Vec<String>,
                    check: Option<&Expr>| {
        let check = check.map(untranslated);
        let check_text = check.as_ref().map(|e| e.to_string());
        if check_text
            .as_deref()
            .is_some_and(|t| t.contains(crate::values::VALID_FUNCTION))
        {
            return;
        }
        let definition = check
            .as_ref()
            .zip(check_text.as_deref())
            .map(|(e, t)| match e {
                Expr::Identifier(_)
                | Expr::CompoundIdentifier(_)
                | Expr::Function(_)
                | Expr::Nested(_) => {
                    format!("CHECK ({t})")
                }
                _ => format!("CHECK (({t}))"),
            });
        let name = name
            .map(|n| n.value.to_lowercase())
            .or_else(|| (kind == 'c').then(|| generated_constraint_name(&table, kind, &names)));
        out.push(Declared {
            kind,
            name,
            conkey: numbers(&names),
            columns: names.join(","),
            check: check_text,
            definition,
        });
    };
    for c in &ct.columns {
        let own = vec![c.name.value.to_lowercase()];
        for o in &c.options {
            match &o.option {
                ColumnOption::PrimaryKey(_) => push('p', o.name.as_ref(), own.clone(), None),
                ColumnOption::Unique(_) => push('u', o.name.as_ref(), own.clone(), None),
                ColumnOption::ForeignKey(_) => push('f', o.name.as_ref(), own.clone(), None),
                ColumnOption::Check(k) => {
                    let named = referenced_columns(&k.expr, &columns);
                    push(
                        'c',
                        o.name.as_ref().or(k.name.as_ref()),
                        named,
                        Some(&k.expr),
                    )
                }
                _ => {}
            }
        }
    }
    let idents = |cols: &[sqlparser::ast::IndexColumn]| -> Vec<String> {
        cols.iter()
            .map(|c| c.column.expr.to_string().trim_matches('"').to_lowercase())
            .collect()
    };
    for c in &ct.constraints {
        match c {
            TableConstraint::PrimaryKey(p) => push('p', p.name.as_ref(), idents(&p.columns), None),
            TableConstraint::Unique(u) => push('u', u.name.as_ref(), idents(&u.columns), None),
            TableConstraint::ForeignKey(f) => {
                let names = f.columns.iter().map(|c| c.value.to_lowercase()).collect();
                push('f', f.name.as_ref(), names, None)
            }
            TableConstraint::Check(k) => {
                let named = referenced_columns(&k.expr, &columns);
                push('c', k.name.as_ref(), named, Some(&k.expr))
            }
            _ => {}
        }
    }
    out
}

/// One key of an index, as its definition declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKey {
    /// The column or expression as written (`a`, `lower(b)`, `(a + 1)`), the translator's
    /// checked arithmetic written back as operators.
    pub expr: String,
    /// `ASC`, `DESC`, `NULLS FIRST`/`NULLS LAST` as written, or empty.
    pub ordering: String,
}

/// The keys and the predicate (`WHERE`, as written) of the index `create_index_sql` (the
/// `CREATE INDEX` text SQLite keeps) defines; `None` for text that is not one.
pub fn declared_index(create_index_sql: &str) -> Option<(Vec<IndexKey>, Option<String>)> {
    let mut parsed = Parser::parse_sql(&SQLiteDialect {}, create_index_sql).ok()?;
    let Some(Statement::CreateIndex(ci)) = parsed.pop() else {
        return None;
    };
    let keys = ci
        .columns
        .iter()
        .map(|c| {
            let o = &c.column.options;
            let sort = match o.sort {
                Some(sqlparser::ast::OrderBySort::Asc) => Some("ASC"),
                Some(sqlparser::ast::OrderBySort::Desc) => Some("DESC"),
                _ => None,
            };
            let nulls = o
                .nulls_first
                .map(|f| if f { "NULLS FIRST" } else { "NULLS LAST" });
            IndexKey {
                expr: untranslated(&c.column.expr).to_string(),
                ordering: sort.into_iter().chain(nulls).collect::<Vec<_>>().join(" "),
            }
        })
        .collect();
    Some((
        keys,
        ci.predicate.as_ref().map(|p| untranslated(p).to_string()),
    ))
}

/// An expression as the user wrote it, before the translator made its arithmetic checked:
/// `_sqlkeeper_add(a, 1)` is `a + 1` again (and `-`, `*`, `/`, `%`), an operand that is itself
/// an operation in parentheses, as PostgreSQL prints it.
pub(crate) fn untranslated(e: &Expr) -> Expr {
    let mut e = e.clone();
    let _ = visit_expressions_mut(&mut e, |x| {
        let Expr::Function(f) = x else {
            return ControlFlow::<()>::Continue(());
        };
        let op = match f.name.to_string().as_str() {
            crate::values::ADD_FUNCTION => BinaryOperator::Plus,
            crate::values::SUB_FUNCTION => BinaryOperator::Minus,
            crate::values::MUL_FUNCTION => BinaryOperator::Multiply,
            crate::values::DIV_FUNCTION => BinaryOperator::Divide,
            crate::values::MOD_FUNCTION => BinaryOperator::Modulo,
            _ => return ControlFlow::Continue(()),
        };
        let FunctionArguments::List(list) = &f.args else {
            return ControlFlow::Continue(());
        };
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(l)), FunctionArg::Unnamed(FunctionArgExpr::Expr(r))] =
            list.args.as_slice()
        else {
            return ControlFlow::Continue(());
        };
        let operand = |o: &Expr| match o {
            Expr::BinaryOp { .. } => Expr::Nested(Box::new(o.clone())),
            _ => o.clone(),
        };
        *x = Expr::BinaryOp {
            left: Box::new(operand(l)),
            op,
            right: Box::new(operand(r)),
        };
        ControlFlow::Continue(())
    });
    e
}

/// The name PostgreSQL gives a constraint of `kind` (`p`, `u`, `f`, `c`) on `columns` of
/// `table` declared without one: `t_pkey`, `t_a_b_key`, `t_a_fkey`, `t_a_check` (a check that
/// names one column) or `t_check`.
pub(crate) fn generated_constraint_name(table: &str, kind: char, columns: &[String]) -> String {
    let cols = columns.join("_");
    match (kind, columns) {
        ('p', _) => format!("{table}_pkey"),
        ('u', _) => format!("{table}_{cols}_key"),
        ('f', _) => format!("{table}_{cols}_fkey"),
        (_, [one]) => format!("{table}_{one}_check"),
        _ => format!("{table}_check"),
    }
}

/// The table's columns an expression names, in the table's order, each once.
pub(crate) fn referenced_columns(e: &Expr, columns: &[String]) -> Vec<String> {
    struct Names(BTreeSet<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            match e {
                Expr::Identifier(i) => {
                    self.0.insert(i.value.to_lowercase());
                }
                Expr::CompoundIdentifier(parts) => {
                    if let Some(last) = parts.last() {
                        self.0.insert(last.value.to_lowercase());
                    }
                }
                _ => {}
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(BTreeSet::new());
    let _ = e.visit(&mut names);
    columns
        .iter()
        .filter(|c| names.0.contains(*c))
        .cloned()
        .collect()
}

/// The declared name of the constraint of `kind` on exactly `columns` (comma-separated), if
/// the definition names it.
pub fn declared_constraint_name(
    create_table_sql: &str,
    kind: char,
    columns: &str,
) -> Option<String> {
    let columns = columns.to_lowercase();
    declared_constraints(create_table_sql)
        .into_iter()
        .find(|d| d.kind == kind && d.kind != 'c' && d.columns == columns)?
        .name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_checks_come_from_the_definition() {
        let sql = "CREATE TABLE parent (id INT NOT NULL CHECK (_sqlkeeper_valid(\"id\", 'int4', -1)), \
                   code INT CONSTRAINT code_pos CHECK (code > 0), lo INT CHECK (lo >= 0 AND lo < 10), \
                   hi INT, PRIMARY KEY (id), CONSTRAINT parent_code_uq UNIQUE (code, lo), \
                   UNIQUE (hi), CONSTRAINT parent_fk FOREIGN KEY (hi) REFERENCES other(id), \
                   CHECK (lo < hi), CHECK (hi IS NOT NULL))";
        let d = declared_constraints(sql);
        let summary: Vec<String> = d
            .iter()
            .map(|d| {
                let name = d.name.as_deref().unwrap_or("-");
                let check = d.check.as_deref().unwrap_or("-");
                format!("{} {name} {} {:?} {check}", d.kind, d.columns, d.conkey)
            })
            .collect();
        assert_eq!(
            summary,
            [
                "c code_pos code [2] code > 0",
                "c parent_lo_check lo [3] lo >= 0 AND lo < 10",
                "p - id [1] -",
                "u parent_code_uq code,lo [2, 3] -",
                "u - hi [4] -",
                "f parent_fk hi [4] -",
                "c parent_check lo,hi [3, 4] lo < hi",
                "c parent_hi_check hi [4] hi IS NOT NULL",
            ]
        );
        assert_eq!(
            declared_constraint_name(sql, 'u', "code,lo").as_deref(),
            Some("parent_code_uq")
        );
        assert_eq!(declared_constraint_name(sql, 'u', "hi"), None);
        assert_eq!(
            declared_constraint_name(sql, 'f', "HI").as_deref(),
            Some("parent_fk")
        );
        assert!(declared_constraints("CREATE INDEX i ON t(a)").is_empty());
        let checked =
            "CREATE TABLE t (a INT, b INT, CHECK (_sqlkeeper_mul(_sqlkeeper_add(a, b), 2) > 0))";
        let d = declared_constraints(checked);
        assert_eq!(
            d[0].definition.as_deref(),
            Some("CHECK (((a + b) * 2 > 0))")
        );
        let index =
            "CREATE INDEX i ON t(a, lower(b || ','), \"c d\" DESC, (_sqlkeeper_add(a, 1))) \
                     WHERE a > 0";
        let (keys, predicate) = declared_index(index).unwrap();
        let keys: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.expr.as_str(), k.ordering.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("a", ""),
                ("lower(b || ',')", ""),
                ("\"c d\"", "DESC"),
                ("(a + 1)", "")
            ]
        );
        assert_eq!(predicate.as_deref(), Some("a > 0"));
        assert_eq!(declared_index("CREATE INDEX i ON t(a"), None);
        assert_eq!(declared_index("CREATE TABLE t (a INT)"), None);
        assert!(declared_constraints("not sql").is_empty());
    }
}
