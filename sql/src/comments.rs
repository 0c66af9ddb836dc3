//! `COMMENT ON`: descriptions of tables, views, indexes, sequences and columns, kept in a
//! replicated internal table ([`COMMENTS_TABLE`], created with the engine's other internal
//! tables) and read back through `pg_description`, `obj_description` and `col_description`
//! (`catalog.rs`). A comment follows its relation through `ALTER TABLE ... RENAME` and goes
//! with it when it is dropped ([`maintenance`]).

use sqlparser::ast::{AlterTableOperation, CommentObject, ObjectName, Statement};

use crate::error::SqlError;

/// The internal table of comments: one row per commented relation (`colname` empty) or column.
pub const COMMENTS_TABLE: &str = "_sqlkeeper_comments";

/// Its definition, run by the engine when it opens a state database.
pub const COMMENTS_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS _sqlkeeper_comments \
     (relname TEXT NOT NULL, colname TEXT NOT NULL, description TEXT NOT NULL, \
     PRIMARY KEY (relname, colname)) STRICT, WITHOUT ROWID";

/// Removes the comments of relations and columns that no longer exist: run after every
/// `DROP` and `ALTER TABLE` (a table's indexes and columns go with it).
const COMMENTS_GC_SQL: &str = "DELETE FROM _sqlkeeper_comments WHERE \
     (NOT EXISTS (SELECT 1 FROM sqlite_schema AS s WHERE s.name = _sqlkeeper_comments.relname) \
     AND NOT EXISTS (SELECT 1 FROM _sqlkeeper_sequences AS q \
     WHERE q.name = _sqlkeeper_comments.relname)) \
     OR (colname <> '' AND NOT EXISTS (SELECT 1 FROM pragma_table_info(_sqlkeeper_comments.relname) \
     AS p WHERE p.name = _sqlkeeper_comments.colname))";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The parts of `name`, unquoted ones folded to lower case as PostgreSQL folds them.
pub(crate) fn fold(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_some() => i.value.clone(),
            Some(i) => i.value.to_lowercase(),
            None => p.to_string(),
        })
        .collect()
}

/// The SQLite statements of a `COMMENT ON`: a check that the object exists (42P01, 42703,
/// with PostgreSQL's messages), then the upsert, or the delete of `IS NULL`.
pub(crate) fn comment_sql(stmt: &Statement) -> Result<Vec<String>, SqlError> {
    let Statement::Comment {
        object_type,
        object_name,
        comment,
        ..
    } = stmt
    else {
        return Err(SqlError::unsupported("this statement as COMMENT"));
    };
    let mut parts = fold(object_name);
    if parts.len() > 1 && parts[0] == "public" {
        parts.remove(0);
    }
    let (relname, colname, check) = match (object_type, parts.as_slice()) {
        (CommentObject::Column, [table, column]) => (
            table.clone(),
            column.clone(),
            format!(
                "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = {t} AND type IN ('table', 'view')) \
                 THEN pg_raise('42P01', {missing_table}) \
                 WHEN NOT EXISTS (SELECT 1 FROM pragma_table_info({t}) WHERE name = {c}) \
                 THEN pg_raise('42703', {missing_column}) END",
                t = quote(table),
                c = quote(column),
                missing_table = quote(&format!("relation \"{table}\" does not exist")),
                missing_column = quote(&format!(
                    "column \"{column}\" of relation \"{table}\" does not exist"
                )),
            ),
        ),
        (
            CommentObject::Table | CommentObject::View | CommentObject::Index,
            [name],
        ) => {
            let kinds = match object_type {
                CommentObject::Index => "'index'",
                CommentObject::View => "'view'",
                _ => "'table'",
            };
            (
                name.clone(),
                String::new(),
                format!(
                    "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = {n} AND type = {kinds}) \
                     THEN pg_raise('42P01', {missing}) END",
                    n = quote(name),
                    missing = quote(&format!("relation \"{name}\" does not exist")),
                ),
            )
        }
        (CommentObject::Sequence, [name]) => (
            name.clone(),
            String::new(),
            format!(
                "SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM _sqlkeeper_sequences WHERE name = {n}) \
                 THEN pg_raise('42P01', {missing}) END",
                n = quote(name),
                missing = quote(&format!("relation \"{name}\" does not exist")),
            ),
        ),
        (CommentObject::Column, _) => {
            return Err(SqlError {
                sqlstate: crate::SqlState::new("42601"),
                message: "column name must be qualified".into(),
                position: None,
            })
        }
        (other, _) => return Err(SqlError::unsupported(format!("COMMENT ON {other}"))),
    };
    let change = match comment {
        Some(text) => format!(
            "INSERT INTO {COMMENTS_TABLE} (relname, colname, description) VALUES ({}, {}, {}) \
             ON CONFLICT (relname, colname) DO UPDATE SET description = excluded.description",
            quote(&relname),
            quote(&colname),
            quote(text)
        ),
        None => format!(
            "DELETE FROM {COMMENTS_TABLE} WHERE relname = {} AND colname = {}",
            quote(&relname),
            quote(&colname)
        ),
    };
    // Only the owner of a relation comments on it (an index: its table's owner).
    let owned = format!(
        "{}('own', coalesce((SELECT tbl_name FROM sqlite_schema WHERE name = {n}), {n}))",
        crate::privileges::MAY_FUNCTION,
        n = quote(&relname)
    );
    let owner = format!(
        "SELECT {}",
        crate::privileges::require(owned, &format!("must be owner of relation {relname}"))
    );
    Ok(vec![check, owner, change])
}

/// What a `DROP` or an `ALTER TABLE` that renames or drops (SQLite's own forms) does to
/// comments: renames carry them over, and those of objects that are gone are removed.
pub(crate) fn maintenance(stmt: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    match stmt {
        Statement::AlterTable(at) => {
            let table = fold(&at.name).pop().unwrap_or_default();
            if !at.operations.iter().any(|op| {
                matches!(
                    op,
                    AlterTableOperation::RenameTable { .. }
                        | AlterTableOperation::RenameColumn { .. }
                        | AlterTableOperation::DropColumn { .. }
                )
            }) {
                return out;
            }
            for op in &at.operations {
                match op {
                    AlterTableOperation::RenameTable { table_name } => {
                        let new = match table_name {
                            sqlparser::ast::RenameTableNameKind::As(n)
                            | sqlparser::ast::RenameTableNameKind::To(n) => {
                                fold(n).pop().unwrap_or_default()
                            }
                        };
                        out.push(format!(
                            "UPDATE {COMMENTS_TABLE} SET relname = {} WHERE relname = {}",
                            quote(&new),
                            quote(&table)
                        ));
                    }
                    AlterTableOperation::RenameColumn {
                        old_column_name,
                        new_column_name,
                    } => out.push(format!(
                        "UPDATE {COMMENTS_TABLE} SET colname = {} WHERE relname = {} AND colname = {}",
                        quote(&fold(&ObjectName::from(vec![new_column_name.clone()])).concat()),
                        quote(&table),
                        quote(&fold(&ObjectName::from(vec![old_column_name.clone()])).concat()),
                    )),
                    _ => {}
                }
            }
        }
        Statement::Drop { .. } => {}
        _ => return out,
    }
    out.push(COMMENTS_GC_SQL.to_string());
    out
}
