//! Table rebuilds for `ALTER TABLE` forms SQLite lacks, inside the command's transaction: the
//! old table is renamed away, the new definition is created under the real name, rows are
//! copied, the old table is dropped, indexes and triggers are created again. The translator emits `SELECT sqlkeeper_rebuild_table(table,
//! op)`; that function only records the request, and the apply loop performs it right after
//! the statement, with the connection. The new definition is computed by
//! `sqlkeeper_sql::rebuild_create_table`, a pure function, so every replica rebuilds alike.

use std::sync::{Arc, Mutex};

use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension};

use crate::error::ExecError;

/// Name of the old table while it is being rebuilt.
const REBUILD_NAME: &str = "_sqlkeeper_rebuild";

/// A rebuild requested by the statement just run: (table, op as JSON).
pub(crate) type RebuildCell = Arc<Mutex<Option<(String, String)>>>;

pub(crate) fn install(conn: &Connection, cell: RebuildCell) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        sqlkeeper_sql::REBUILD_TABLE_FUNCTION,
        2,
        FunctionFlags::SQLITE_UTF8,
        move |ctx| {
            let table: String = ctx.get(0)?;
            let op: String = ctx.get(1)?;
            *cell.lock().unwrap_or_else(|p| p.into_inner()) = Some((table, op));
            Ok(0i64)
        },
    )
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut s = conn.prepare(&format!(
        "SELECT name FROM pragma_table_info({})",
        sql_string(table)
    ))?;
    let names = s
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Performs a requested rebuild. Errors are statement failures (a duplicate key when adding
/// a primary key, a NULL when setting NOT NULL, ...): the caller rolls the command back.
pub(crate) fn run(conn: &Connection, table: &str, op_json: &str) -> Result<(), RebuildError> {
    let op: sqlkeeper_sql::AlterOp = serde_json::from_str(op_json).map_err(|e| {
        RebuildError::Exec(ExecError::new("XX000", format!("bad rebuild request: {e}")))
    })?;
    let old: Option<(String, String)> = conn
        .query_row(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [table],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((name, old_sql)) = old else {
        return Err(RebuildError::Exec(ExecError::new(
            "42P01",
            format!("relation \"{table}\" does not exist"),
        )));
    };
    // Foreign keys are off for every command that rebuilds (`Command::rebuilds_tables`, also a
    // transaction block's, which the block writer runs so too). Were they on, renaming a table
    // other tables reference would rewrite their REFERENCES to the old copy: refuse instead of
    // corrupting them.
    if crate::step::foreign_keys_enforced(conn)? {
        let referenced: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_schema s, pragma_foreign_key_list(s.name) f \
             WHERE s.type = 'table' AND f.\"table\" = ?1 COLLATE NOCASE AND s.name <> ?1 COLLATE NOCASE",
            [&name],
            |r| r.get(0),
        )?;
        if referenced > 0 {
            return Err(RebuildError::Exec(ExecError::new(
                "0A000",
                format!("this ALTER TABLE rebuilds table \"{name}\", which other tables reference, with foreign keys enforced"),
            )));
        }
    }
    let new_sql = sqlkeeper_sql::rebuild_create_table(&old_sql, &name, &name, &op)
        .map_err(|e| RebuildError::Exec(ExecError::new(e.sqlstate, e.message)))?;
    // A column whose type changed gets the value triggers of its new type in place of its
    // old type's (a widened varchar must not be cut to the old length).
    let (stale, retyped) = match &op {
        sqlkeeper_sql::AlterOp::SetType { column, .. } => {
            sqlkeeper_sql::retyped_column_triggers(&new_sql, &name, column)
                .map_err(|e| RebuildError::Exec(ExecError::new(e.sqlstate, e.message)))?
        }
        _ => (Vec::new(), Vec::new()),
    };
    // Indexes and triggers are dropped with the table and created again after the rename.
    let mut s = conn.prepare(
        "SELECT name, sql FROM sqlite_schema WHERE tbl_name = ?1 AND type IN ('index', 'trigger') AND sql IS NOT NULL",
    )?;
    let mut dependents: Vec<String> = s
        .query_map([&name], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?
        .filter_map(|r| match r {
            Ok((n, _)) if stale.iter().any(|st| st.eq_ignore_ascii_case(&n)) => None,
            Ok((_, sql)) => Some(Ok(sql)),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    drop(s);
    dependents.extend(retyped);
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [&name],
            |r| r.get(0),
        )
        .optional()
        .unwrap_or(None);
    // Other tables' foreign keys name this table. Renaming it away with legacy_alter_table
    // leaves their REFERENCES untouched (they point at the name, which the new table takes
    // back), and nothing is deleted from a parent they reference: no deferred violations.
    conn.execute_batch("PRAGMA legacy_alter_table = ON")?;
    let result = (|| -> rusqlite::Result<()> {
        conn.execute_batch(&format!(
            "ALTER TABLE {} RENAME TO {}",
            quote(&name),
            quote(REBUILD_NAME)
        ))?;
        conn.execute_batch(&new_sql)?;
        let old_cols = columns(conn, REBUILD_NAME)?;
        let new_cols = columns(conn, &name)?;
        let common: Vec<String> = new_cols
            .iter()
            .filter(|c| old_cols.iter().any(|o| o.eq_ignore_ascii_case(c)))
            .map(|c| quote(c))
            .collect();
        let list = common.join(", ");
        conn.execute_batch(&format!(
            "INSERT INTO {} ({list}) SELECT {list} FROM {}; DROP TABLE {};",
            quote(&name),
            quote(REBUILD_NAME),
            quote(REBUILD_NAME)
        ))
    })();
    conn.execute_batch("PRAGMA legacy_alter_table = OFF")?;
    result?;
    for sql in dependents {
        conn.execute_batch(&sql)?;
    }
    if let Some(seq) = seq {
        // AUTOINCREMENT keeps its high-water mark: ids are still never reused.
        conn.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?2) WHERE name = ?1",
            rusqlite::params![name, seq],
        )?;
    }
    let violations: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM pragma_foreign_key_check({})",
            sql_string(&name)
        ),
        [],
        |r| r.get(0),
    )?;
    if violations > 0 {
        return Err(RebuildError::Exec(ExecError::new(
            "23503",
            format!("insert or update on table \"{name}\" violates a foreign key constraint"),
        )));
    }
    Ok(())
}

/// Why a rebuild failed.
pub(crate) enum RebuildError {
    /// A deterministic statement failure.
    Exec(ExecError),
    /// An SQLite error, classified by the caller.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for RebuildError {
    fn from(e: rusqlite::Error) -> RebuildError {
        RebuildError::Sqlite(e)
    }
}
