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
    visit_expressions_mut, BinaryOperator, ColumnOption, ColumnOptionDef, Expr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, Statement, TableConstraint, Visit, Visitor,
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
    let written = ct
        .columns
        .iter()
        .flat_map(|c| {
            let own = c.name.value.to_lowercase();
            let columns = &columns;
            c.options
                .iter()
                .filter_map(move |o| column_constraint(o, &own, columns))
        })
        .chain(
            ct.constraints
                .iter()
                .filter_map(|c| table_constraint(c, &columns)),
        );
    for w in written {
        let check = w.check.map(untranslated);
        let check_text = check.as_ref().map(|e| e.to_string());
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
        // A check is listed under the name PostgreSQL gives it; keys under declared names only
        // (the catalog generates theirs).
        let name = match w.kind {
            'c' => Some(w.pg_name(&table)),
            _ => w.name.clone(),
        };
        out.push(Declared {
            kind: w.kind,
            name,
            conkey: numbers(&w.columns),
            columns: w.columns.join(","),
            check: check_text,
            definition,
        });
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

/// One constraint of a table's definition, as written.
pub(crate) struct Written<'a> {
    /// `p` primary key, `u` unique, `f` foreign key, `c` check.
    pub(crate) kind: char,
    /// The declared name, lower case.
    pub(crate) name: Option<String>,
    /// The constrained columns, lower case: for a check, the columns its expression names, in
    /// the table's order.
    pub(crate) columns: Vec<String>,
    /// A check's expression.
    pub(crate) check: Option<&'a Expr>,
}

impl Written<'_> {
    /// Its name in PostgreSQL: the declared one, else the one PostgreSQL generates.
    pub(crate) fn pg_name(&self, table: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| generated_constraint_name(table, self.kind, &self.columns))
    }
}

/// The constraint option `o` of column `own` is, if any (of the table's `columns`). The
/// checks the translator adds to typed columns (`_sqlkeeper_valid(...)`) are not the user's.
pub(crate) fn column_constraint<'a>(
    o: &'a ColumnOptionDef,
    own: &str,
    columns: &[String],
) -> Option<Written<'a>> {
    let name = |n: Option<&Ident>| n.map(|n| n.value.to_lowercase());
    let (kind, cols, check) = match &o.option {
        ColumnOption::PrimaryKey(_) => ('p', vec![own.to_string()], None),
        ColumnOption::Unique(_) => ('u', vec![own.to_string()], None),
        ColumnOption::ForeignKey(_) => ('f', vec![own.to_string()], None),
        ColumnOption::Check(k) if !is_value_check(&k.expr) => {
            let w = Written {
                kind: 'c',
                name: name(o.name.as_ref().or(k.name.as_ref())),
                columns: referenced_columns(&k.expr, columns),
                check: Some(&*k.expr),
            };
            return Some(w);
        }
        _ => return None,
    };
    Some(Written {
        kind,
        name: name(o.name.as_ref()),
        columns: cols,
        check,
    })
}

/// The table constraint `c` is, if it is a key or a user's check (of the table's `columns`).
pub(crate) fn table_constraint<'a>(
    c: &'a TableConstraint,
    columns: &[String],
) -> Option<Written<'a>> {
    let idents = |cols: &[sqlparser::ast::IndexColumn]| -> Vec<String> {
        cols.iter()
            .map(|c| c.column.expr.to_string().trim_matches('"').to_lowercase())
            .collect()
    };
    let name = |n: Option<&Ident>| n.map(|n| n.value.to_lowercase());
    Some(match c {
        TableConstraint::PrimaryKey(p) => Written {
            kind: 'p',
            name: name(p.name.as_ref()),
            columns: idents(&p.columns),
            check: None,
        },
        TableConstraint::Unique(u) => Written {
            kind: 'u',
            name: name(u.name.as_ref()),
            columns: idents(&u.columns),
            check: None,
        },
        TableConstraint::ForeignKey(f) => Written {
            kind: 'f',
            name: name(f.name.as_ref()),
            columns: f.columns.iter().map(|c| c.value.to_lowercase()).collect(),
            check: None,
        },
        TableConstraint::Check(k) if !is_value_check(&k.expr) => Written {
            kind: 'c',
            name: name(k.name.as_ref()),
            columns: referenced_columns(&k.expr, columns),
            check: Some(&*k.expr),
        },
        _ => return None,
    })
}

/// Whether a check is one the translator adds to a typed column.
fn is_value_check(e: &Expr) -> bool {
    e.to_string().contains(crate::values::VALID_FUNCTION)
}

/// The name PostgreSQL gives a constraint of `kind` (`p`, `u`, `f`, `c`) on `columns` of
/// `table` declared without one: `t_pkey`, `t_a_b_key`, `t_a_fkey`, `t_a_check` (a check that
/// names one column) or `t_check`.
fn generated_constraint_name(table: &str, kind: char, columns: &[String]) -> String {
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
fn referenced_columns(e: &Expr, columns: &[String]) -> Vec<String> {
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
