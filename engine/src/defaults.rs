//! Column lists and defaults that SQLite does not fill in itself ([`Effect::Defaults`]): an
//! `INSERT` naming no columns with fewer values than the table has columns, and `DEFAULT` as a
//! value. The translator leaves markers in the SQL; here, when the statement runs, they are
//! replaced with the table's columns and their defaults as they are at this point of the log,
//! the same on every replica. The typed values a statement assigns are checked here too,
//! against the columns' types at that same point.

use std::borrow::Cow;

use rusqlite::Connection;
use sqlkeeper_sql::{
    assignable, pg_type_of_name, Assigned, AssignedColumn, COLUMNS_MARKER, DEFAULT_MARKER,
};

use crate::command::{Effect, Statement};

/// A column's name, its default as SQL text (`None`: no default, so NULL) and its declared
/// type.
struct TableColumn {
    name: String,
    default: Option<String>,
    decl_type: Option<String>,
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<TableColumn>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, dflt_value, type FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid",
    )?;
    let rows = stmt.query_map([table], |r| {
        Ok(TableColumn {
            name: r.get(0)?,
            default: r.get(1)?,
            decl_type: r.get(2)?,
        })
    })?;
    rows.collect()
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL's 42804 for the first typed value that its column's type does not take
/// ([`assignable`]): the same at this point of the log on every replica, and before
/// any row is written, as PostgreSQL checks it while it parses. `declared` gives a column's
/// name and declared type; a column it does not find is SQLite's to report.
fn check_assigned(
    assigned: &[Assigned],
    declared: impl Fn(&AssignedColumn) -> Option<(String, Option<String>)>,
) -> rusqlite::Result<()> {
    for a in assigned {
        let Some((name, decl_type)) = declared(&a.column) else {
            continue;
        };
        let to = decl_type.as_deref().and_then(pg_type_of_name);
        let from = pg_type_of_name(&a.from);
        if let (Some(to), Some(from)) = (to, from) {
            if !assignable(from, to) {
                return Err(crate::error::refuse(
                    "42804",
                    format!(
                        "column \"{name}\" is of type {} but expression is of type {}",
                        to.name(),
                        from.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `stmt` with its markers replaced, or `stmt` itself when it has none, once its typed values
/// are checked against their columns' types. A table that does not exist leaves the markers,
/// and SQLite reports the table.
pub(crate) fn resolve<'a>(
    conn: &Connection,
    stmt: &'a Statement,
) -> rusqlite::Result<Cow<'a, Statement>> {
    let Effect::Defaults {
        table,
        width,
        assigned,
    } = &stmt.effect
    else {
        return Ok(Cow::Borrowed(stmt));
    };
    let markers = width.is_some() || stmt.sql.contains(DEFAULT_MARKER);
    if !markers
        && assigned
            .iter()
            .all(|a| matches!(a.column, AssignedColumn::Name(_)))
    {
        // Only named columns to check (the common case, an INSERT with typed literals): their
        // declared types straight from SQLite's schema, without a query.
        return check_assigned(assigned, |column| {
            let AssignedColumn::Name(name) = column else {
                return None;
            };
            let (decl, ..) = conn
                .column_metadata(None, table.as_str(), name.as_str())
                .ok()?;
            let decl = decl.map(|d| d.to_string_lossy().into_owned());
            Some((name.clone(), decl))
        })
        .map(|()| Cow::Borrowed(stmt));
    }
    let cols = columns(conn, table)?;
    if cols.is_empty() {
        return Ok(Cow::Borrowed(stmt));
    }
    check_assigned(assigned, |column| {
        let col = match column {
            AssignedColumn::Name(n) => cols.iter().find(|c| c.name.eq_ignore_ascii_case(n)),
            AssignedColumn::Position(p) => cols.get((*p as usize).wrapping_sub(1)),
        }?;
        Some((col.name.clone(), col.decl_type.clone()))
    })?;
    if !markers {
        return Ok(Cow::Borrowed(stmt));
    }
    let default_of = |key: &str| -> String {
        let col = match key.parse::<usize>() {
            Ok(position) => cols.get(position.wrapping_sub(1)),
            Err(_) => {
                let name = key.trim_matches('\'').replace("''", "'");
                cols.iter().find(|c| c.name.eq_ignore_ascii_case(&name))
            }
        };
        match col.and_then(|c| c.default.as_ref()) {
            Some(d) => format!("({d})"),
            None => "NULL".to_string(),
        }
    };
    let list = {
        // More values than columns: every column, and SQLite reports the difference.
        let n = width.map_or(cols.len(), |w| (w as usize).min(cols.len()));
        cols[..n]
            .iter()
            .map(|c| quoted(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = replace_markers(&stmt.sql, &list, default_of);
    Ok(Cow::Owned(Statement {
        sql,
        params: stmt.params.clone(),
        effect: stmt.effect.clone(),
    }))
}

/// `sql` with the quoted [`COLUMNS_MARKER`] replaced by `list` and every
/// `DEFAULT_MARKER(key)` by `default_of(key)`, outside string literals (the translator wrote
/// them; a client's text cannot name them, but its strings may contain their spelling).
fn replace_markers(sql: &str, list: &str, default_of: impl Fn(&str) -> String) -> String {
    let columns = format!("\"{COLUMNS_MARKER}\"");
    let default = format!("{DEFAULT_MARKER}(");
    let mut out = String::with_capacity(sql.len() + list.len());
    let mut rest = sql;
    while let Some(c) = rest.chars().next() {
        if c == '\'' {
            // A string literal, quotes doubled inside: copied as it is.
            let mut end = 1;
            let bytes = rest.as_bytes();
            while end < bytes.len() {
                if bytes[end] == b'\'' {
                    if bytes.get(end + 1) == Some(&b'\'') {
                        end += 2;
                        continue;
                    }
                    end += 1;
                    break;
                }
                end += 1;
            }
            out.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if rest.starts_with(&columns) {
            out.push_str(list);
            rest = &rest[columns.len()..];
        } else if rest.starts_with(&default) {
            let args = &rest[default.len()..];
            // The key is a number or a string literal with no ')' the translator did not
            // double: find the closing parenthesis outside quotes.
            let mut in_str = false;
            let close = args.char_indices().find(|&(_, ch)| {
                if ch == '\'' {
                    in_str = !in_str;
                }
                ch == ')' && !in_str
            });
            match close {
                Some((i, _)) => {
                    out.push_str(&default_of(args[..i].trim()));
                    rest = &args[i + 1..];
                }
                None => {
                    out.push_str(rest);
                    rest = "";
                }
            }
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str, width: Option<u32>) -> Statement {
        Statement {
            sql: sql.into(),
            params: vec![],
            effect: Effect::Defaults {
                table: "t".into(),
                width,
                assigned: Vec::new(),
            },
        }
    }

    #[test]
    fn markers_become_the_tables_columns_and_defaults() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER, \"odd\"\"name\" TEXT DEFAULT 'x', n INT DEFAULT (1 + 1))",
        )
        .unwrap();
        let r = |s: Statement| resolve(&conn, &s).unwrap().sql.clone();
        assert_eq!(
            r(stmt(
                "INSERT INTO t (\"_sqlkeeper_columns\") VALUES (1)",
                Some(1)
            )),
            "INSERT INTO t (\"id\") VALUES (1)"
        );
        assert_eq!(
            r(stmt(
                "INSERT INTO t (\"_sqlkeeper_columns\") VALUES (1, _sqlkeeper_default(2), _sqlkeeper_default(3)), (2, 'a''_sqlkeeper_default(2)', _sqlkeeper_default(1))",
                Some(3)
            )),
            "INSERT INTO t (\"id\", \"odd\"\"name\", \"n\") VALUES (1, ('x'), (1 + 1)), (2, 'a''_sqlkeeper_default(2)', NULL)"
        );
        assert_eq!(
            r(stmt("UPDATE t SET n = _sqlkeeper_default('n')", None)),
            "UPDATE t SET n = (1 + 1)"
        );
        assert_eq!(
            r(stmt(
                "UPDATE t SET \"odd\"\"name\" = _sqlkeeper_default('odd\"name')",
                None
            )),
            "UPDATE t SET \"odd\"\"name\" = ('x')"
        );
        // More values than columns: every column, for SQLite to report.
        assert_eq!(
            r(stmt(
                "INSERT INTO t (\"_sqlkeeper_columns\") VALUES (1, 2, 3, 4)",
                Some(4)
            )),
            "INSERT INTO t (\"id\", \"odd\"\"name\", \"n\") VALUES (1, 2, 3, 4)"
        );
    }
}
