//! `ALTER TABLE` forms SQLite lacks (add or drop a constraint, change a column's type,
//! nullability or default) are done by rebuilding the table: the engine creates a new table
//! from the old definition with the change applied, copies the rows, drops the old table and
//! renames the new one, all inside the command's SQLite transaction. This module computes the
//! new definition; it is pure, so every replica computes the same one.

use serde::{Deserialize, Serialize};
use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, ColumnOptionDef, Ident, ObjectName,
    Statement, TableConstraint,
};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::error::SqlError;

/// The engine function an internal statement calls to ask for a table rebuild:
/// `SELECT sqlkeeper_rebuild_table('<table>', '<AlterOp as JSON>')`. The engine performs the
/// rebuild right after that statement, in the same transaction. See `docs/log-format.md`.
pub const REBUILD_TABLE_FUNCTION: &str = "sqlkeeper_rebuild_table";

/// One change to a table's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlterOp {
    /// Add a table constraint, given as SQL (always named, Postgres-style, by the translator).
    AddConstraint(String),
    /// Drop a named constraint.
    DropConstraint {
        /// Constraint name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `ALTER COLUMN c SET NOT NULL`.
    SetNotNull(String),
    /// `ALTER COLUMN c DROP NOT NULL`.
    DropNotNull(String),
    /// `ALTER COLUMN c SET DEFAULT expr` (expression as SQLite SQL).
    SetDefault {
        /// Column.
        column: String,
        /// Default expression.
        expr: String,
    },
    /// `ALTER COLUMN c DROP DEFAULT`.
    DropDefault(String),
    /// `ALTER COLUMN c TYPE t`.
    SetType {
        /// Column.
        column: String,
        /// New type.
        data_type: String,
    },
}

fn not_found(what: String) -> SqlError {
    SqlError {
        sqlstate: crate::SqlState::new("42704"),
        message: what,
        position: None,
    }
}

fn parse_one(dialect: &dyn sqlparser::dialect::Dialect, sql: &str) -> Result<Statement, SqlError> {
    let mut v = Parser::parse_sql(dialect, sql).map_err(|e| SqlError {
        sqlstate: crate::SqlState::new("XX000"),
        message: format!("cannot parse table definition: {e}"),
        position: None,
    })?;
    v.pop()
        .ok_or_else(|| not_found("empty table definition".into()))
}

fn constraint_name(c: &TableConstraint) -> Option<String> {
    let name = match c {
        TableConstraint::PrimaryKey(p) => p.name.as_ref(),
        TableConstraint::Unique(u) => u.name.as_ref(),
        TableConstraint::ForeignKey(f) => f.name.as_ref(),
        TableConstraint::Check(c) => c.name.as_ref(),
        _ => None,
    };
    name.map(|n| n.value.to_lowercase())
}

/// For a rebuild that changed `column`'s type: the names of the triggers that kept its values
/// in the old type's form (dropped with the old table, not to be created again) and the
/// triggers of its new type, from the new table's SQL as SQLite keeps it.
pub fn retyped_column_triggers(
    new_sql: &str,
    table: &str,
    column: &str,
) -> Result<(Vec<String>, Vec<String>), SqlError> {
    let Statement::CreateTable(mut ct) = parse_one(&SQLiteDialect {}, new_sql)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    ct.name = ObjectName::from(vec![Ident::new(table)]);
    let old = crate::translate::value_trigger_names(&table.to_lowercase(), column);
    let new = crate::translate::column_value_triggers(&ct)
        .into_iter()
        .filter(|(c, _)| c.eq_ignore_ascii_case(column))
        .map(|(_, sql)| sql)
        .collect();
    Ok((old, new))
}

/// The definition of `table` after `op`, as `CREATE TABLE new_name (...)`.
pub fn rebuild_create_table(
    old_sql: &str,
    table: &str,
    new_name: &str,
    op: &AlterOp,
) -> Result<String, SqlError> {
    let Statement::CreateTable(mut ct) = parse_one(&SQLiteDialect {}, old_sql)? else {
        return Err(not_found(format!("relation \"{table}\" is not a table")));
    };
    let column = |ct: &mut sqlparser::ast::CreateTable, name: &str| -> Result<usize, SqlError> {
        ct.columns
            .iter()
            .position(|c| c.name.value.eq_ignore_ascii_case(name))
            .ok_or_else(|| SqlError {
                sqlstate: crate::SqlState::new("42703"),
                message: format!("column \"{name}\" of relation \"{table}\" does not exist"),
                position: None,
            })
    };
    match op {
        AlterOp::AddConstraint(sql) => {
            let Statement::CreateTable(dummy) = parse_one(
                &PostgreSqlDialect {},
                &format!("CREATE TABLE _x (_c int, {sql})"),
            )?
            else {
                return Err(not_found("constraint".into()));
            };
            let constraint = dummy
                .constraints
                .into_iter()
                .next()
                .ok_or_else(|| not_found("constraint".into()))?;
            if let Some(n) = constraint_name(&constraint) {
                if ct
                    .constraints
                    .iter()
                    .any(|c| constraint_name(c).as_deref() == Some(n.as_str()))
                {
                    return Err(SqlError {
                        sqlstate: crate::SqlState::new("42710"),
                        message: format!(
                            "constraint \"{n}\" for relation \"{table}\" already exists"
                        ),
                        position: None,
                    });
                }
            }
            if matches!(constraint, TableConstraint::PrimaryKey(_))
                && (ct
                    .constraints
                    .iter()
                    .any(|c| matches!(c, TableConstraint::PrimaryKey(_)))
                    || ct.columns.iter().any(|c| {
                        c.options
                            .iter()
                            .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
                    }))
            {
                return Err(SqlError {
                    sqlstate: crate::SqlState::new("42P16"),
                    message: format!("multiple primary keys for table \"{table}\" are not allowed"),
                    position: None,
                });
            }
            ct.constraints.push(constraint);
        }
        AlterOp::DropConstraint { name, if_exists } => {
            // Under its declared name, or the one PostgreSQL generated for it (`t_pkey`,
            // `t_a_fkey`, ...), which is what clients read from the catalog and drop by.
            let lname = name.to_lowercase();
            let t = table.to_lowercase();
            let columns: Vec<String> = ct
                .columns
                .iter()
                .map(|c| c.name.value.to_lowercase())
                .collect();
            let before = ct.constraints.len();
            let named =
                |w: Option<crate::declared::Written>| w.is_some_and(|w| w.pg_name(&t) == lname);
            ct.constraints
                .retain(|c| !named(crate::declared::table_constraint(c, &columns)));
            let mut dropped = ct.constraints.len() != before;
            for c in &mut ct.columns {
                let own = c.name.value.to_lowercase();
                let n = c.options.len();
                c.options
                    .retain(|o| !named(crate::declared::column_constraint(o, &own, &columns)));
                dropped |= c.options.len() != n;
            }
            if !dropped && !if_exists {
                return Err(not_found(format!(
                    "constraint \"{name}\" of relation \"{table}\" does not exist"
                )));
            }
        }
        AlterOp::SetNotNull(col) => {
            let i = column(&mut ct, col)?;
            let c = &mut ct.columns[i];
            if !c
                .options
                .iter()
                .any(|o| matches!(o.option, ColumnOption::NotNull))
            {
                c.options.push(ColumnOptionDef {
                    name: None,
                    option: ColumnOption::NotNull,
                });
            }
        }
        AlterOp::DropNotNull(col) => {
            let i = column(&mut ct, col)?;
            ct.columns[i]
                .options
                .retain(|o| !matches!(o.option, ColumnOption::NotNull));
        }
        AlterOp::SetDefault { column: col, expr } => {
            let i = column(&mut ct, col)?;
            let e = Parser::new(&SQLiteDialect {})
                .try_with_sql(expr)
                .and_then(|mut p| p.parse_expr())
                .map_err(|e| SqlError::syntax(format!("default expression: {e}"), None))?;
            let c = &mut ct.columns[i];
            c.options
                .retain(|o| !matches!(o.option, ColumnOption::Default(_)));
            c.options.push(ColumnOptionDef {
                name: None,
                option: ColumnOption::Default(sqlparser::ast::Expr::Nested(Box::new(e))),
            });
        }
        AlterOp::DropDefault(col) => {
            let i = column(&mut ct, col)?;
            ct.columns[i]
                .options
                .retain(|o| !matches!(o.option, ColumnOption::Default(_)));
        }
        AlterOp::SetType {
            column: col,
            data_type,
        } => {
            let i = column(&mut ct, col)?;
            let dt = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(data_type)
                .and_then(|mut p| p.parse_data_type())
                .map_err(|e| SqlError::syntax(format!("type: {e}"), None))?;
            ct.columns[i].data_type = dt;
            crate::values::column_check(&mut ct.columns[i]);
        }
    }
    ct.name = ObjectName::from(vec![Ident::with_quote('"', new_name)]);
    Ok(Statement::CreateTable(ct).to_string())
}

fn col_list(cols: &[sqlparser::ast::IndexColumn]) -> String {
    cols.iter()
        .map(|c| c.column.expr.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}

/// Gives an unnamed constraint Postgres' default name, so it can be dropped by that name.
fn named_constraint(table: &str, mut c: TableConstraint) -> TableConstraint {
    let t = table.to_lowercase();
    match &mut c {
        TableConstraint::PrimaryKey(p) if p.name.is_none() => {
            p.name = Some(Ident::new(format!("{t}_pkey")))
        }
        TableConstraint::Unique(u) if u.name.is_none() => {
            u.name = Some(Ident::new(format!("{t}_{}_key", col_list(&u.columns))))
        }
        TableConstraint::ForeignKey(f) if f.name.is_none() => {
            let cols: Vec<String> = f.columns.iter().map(|c| c.value.to_lowercase()).collect();
            f.name = Some(Ident::new(format!("{t}_{}_fkey", cols.join("_"))))
        }
        TableConstraint::Check(k) if k.name.is_none() => {
            k.name = Some(Ident::new(format!("{t}_check")))
        }
        _ => {}
    }
    c
}

/// The rebuild operations for the `ALTER TABLE` operations SQLite lacks; `None` when every
/// operation is one SQLite runs itself (ADD/DROP/RENAME COLUMN, RENAME TO).
pub(crate) fn alter_ops(
    table: &str,
    ops: &[AlterTableOperation],
) -> Result<Option<Vec<AlterOp>>, SqlError> {
    let native = ops.iter().all(|o| {
        matches!(
            o,
            AlterTableOperation::AddColumn { .. }
                | AlterTableOperation::DropColumn { .. }
                | AlterTableOperation::RenameColumn { .. }
                | AlterTableOperation::RenameTable { .. }
        )
    });
    if native {
        return Ok(None);
    }
    let mut out = Vec::new();
    for o in ops {
        out.push(match o {
            AlterTableOperation::AddConstraint { constraint, .. } => {
                AlterOp::AddConstraint(named_constraint(table, constraint.clone()).to_string())
            }
            AlterTableOperation::DropConstraint {
                if_exists, name, ..
            } => AlterOp::DropConstraint {
                name: name.value.clone(),
                if_exists: *if_exists,
            },
            AlterTableOperation::AlterColumn { column_name, op } => {
                let col = column_name.value.clone();
                match op {
                    AlterColumnOperation::SetNotNull => AlterOp::SetNotNull(col),
                    AlterColumnOperation::DropNotNull => AlterOp::DropNotNull(col),
                    AlterColumnOperation::SetDefault { value } => AlterOp::SetDefault {
                        column: col,
                        expr: value.to_string(),
                    },
                    AlterColumnOperation::DropDefault => AlterOp::DropDefault(col),
                    AlterColumnOperation::SetDataType {
                        data_type,
                        using: None,
                        ..
                    } => AlterOp::SetType {
                        column: col,
                        data_type: data_type.to_string(),
                    },
                    other => {
                        return Err(SqlError::unsupported(format!(
                            "ALTER TABLE ... ALTER COLUMN {other}"
                        )))
                    }
                }
            }
            other => {
                return Err(SqlError::unsupported(format!(
                    "ALTER TABLE ... {other} combined with constraint or column changes"
                )))
            }
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each constraint declared without a name is found by the name PostgreSQL gave it, and
    /// only that one goes; the checks the translator adds to typed columns are never found.
    #[test]
    fn constraints_are_dropped_by_their_generated_names() {
        let sql = "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER REFERENCES p (id), \
                   b TEXT UNIQUE, c INTEGER CHECK (c > 0), d INTEGER \
                   CHECK (_sqlkeeper_valid(d, 'int4', -1)), FOREIGN KEY (d) REFERENCES p (id), \
                   UNIQUE (b, d), CHECK (a < d))";
        let drop = |sql: &str, name: &str| {
            let op = AlterOp::DropConstraint {
                name: name.into(),
                if_exists: false,
            };
            rebuild_create_table(sql, "t", "t", &op)
        };
        let names = [
            "t_pkey",
            "t_a_fkey",
            "t_b_key",
            "t_c_check",
            "t_d_fkey",
            "t_b_d_key",
            "t_check",
        ];
        let mut left = sql.to_string();
        for name in names {
            let dropped = drop(&left, name).unwrap_or_else(|e| panic!("{name}: {}", e.message));
            assert!(dropped.len() < left.len(), "{name}: {dropped}");
            let again = drop(&dropped, name).unwrap_err();
            assert_eq!(again.sqlstate.to_string(), "42704", "{name} again");
            left = dropped;
        }
        assert!(left.contains("_sqlkeeper_valid"), "{left}");
        assert_eq!(
            drop(sql, "t_d_check").unwrap_err().sqlstate.to_string(),
            "42704"
        );
    }
}
