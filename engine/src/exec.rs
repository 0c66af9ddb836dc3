//! Running one statement on a connection and collecting what it returns. Shared by the apply
//! path (writer) and the read path.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, StatementStatus};
use serde::{Deserialize, Serialize};

use crate::command::{Statement, Value};
use crate::error::ExecError;
use crate::limits::Budget;

/// A result column: its name and the type SQLite recorded in the table declaration (if the
/// column comes straight from a table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name as SQLite reports it.
    pub name: String,
    /// Declared type, e.g. `BIGINT` or `VARCHAR(20)`; `None` for expressions.
    pub decl_type: Option<String>,
}

/// What one statement returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StatementResult {
    /// Result columns; empty for statements that return no rows.
    pub columns: Vec<Column>,
    /// Result rows (for SELECT, or `RETURNING`).
    pub rows: Vec<Vec<Value>>,
    /// Rows inserted, updated or deleted (SQLite `changes()`); 0 for other statements.
    pub rows_affected: u64,
}

pub(crate) fn value_of(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::ToSqlOutput::Borrowed;
        Ok(match self {
            Value::Null => Borrowed(ValueRef::Null),
            Value::Integer(i) => Borrowed(ValueRef::Integer(*i)),
            // SQLite would bind a NaN as NULL ([`crate::values::float`]).
            Value::Real(f) if f.is_nan() => {
                Borrowed(ValueRef::Text(sqlkeeper_sql::numeric::NAN_TEXT.as_bytes()))
            }
            Value::Real(f) => Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Why a statement stopped: an SQLite error, or one of the engine's limits.
#[derive(Debug)]
pub(crate) enum RunError {
    /// SQLite's error (classified by the caller).
    Sqlite(rusqlite::Error),
    /// The result went over its byte limit, or the entry over its step budget.
    Limit(ExecError),
}

impl From<rusqlite::Error> for RunError {
    fn from(e: rusqlite::Error) -> RunError {
        RunError::Sqlite(e)
    }
}

/// Result bytes a statement may still return, out of a limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResultRoom {
    /// Bytes left.
    pub(crate) left: usize,
    /// The limit, for the error message.
    pub(crate) max: usize,
}

impl ResultRoom {
    pub(crate) fn new(max: usize) -> ResultRoom {
        ResultRoom { left: max, max }
    }
}

impl Default for ResultRoom {
    fn default() -> ResultRoom {
        ResultRoom::new(crate::limits::ENTRY_RESULT_BYTES_MAX)
    }
}

impl RunError {
    /// The Postgres error of a statement that has no replicated consequence (reads).
    pub(crate) fn into_exec(self) -> ExecError {
        match self {
            RunError::Sqlite(e) => crate::error::sqlstate_of(&e),
            RunError::Limit(e) => e,
        }
    }
}

/// The result columns of a prepared statement.
fn columns_of(s: &rusqlite::Statement<'_>) -> Vec<Column> {
    s.columns()
        .map(|c| Column {
            name: c.name().to_string(),
            decl_type: c.decl_type().map(str::to_string),
        })
        .collect()
}

/// Describes `stmt` without running it: its result columns and number of parameters. Prepared
/// afresh, not taken from the statement cache: a cached statement is brought up to date with
/// the schema only when it is stepped, so it may describe the columns a table used to have.
/// Its markers ([`crate::command::Effect::Defaults`]) are resolved first, as when it runs.
pub(crate) fn describe(
    conn: &Connection,
    stmt: &Statement,
) -> rusqlite::Result<(Vec<Column>, usize)> {
    let stmt = crate::defaults::resolve(conn, stmt)?;
    let s = conn.prepare(&stmt.sql)?;
    Ok((columns_of(&s), s.parameter_count()))
}

/// Runs `stmt` on `conn` and collects its columns, rows and change count. With a `budget`,
/// the statement's SQLite steps are charged to it (and it is stopped when the budget runs
/// out); its rows may take at most `room` bytes.
pub(crate) fn run(
    conn: &Connection,
    stmt: &Statement,
    budget: Option<&Budget>,
    room: &mut ResultRoom,
) -> Result<StatementResult, RunError> {
    // Prepared (or found in the cache) before the budget is charged: preparing does the
    // same work on every replica only if the cache is in the same state, which it is not.
    let mut prepared = conn.prepare_cached(&stmt.sql)?;
    let expected = prepared.parameter_count();
    if stmt.params.len() != expected {
        return Err(rusqlite::Error::InvalidParameterCount(stmt.params.len(), expected).into());
    }
    for (i, p) in stmt.params.iter().enumerate() {
        prepared.raw_bind_parameter(i + 1, p)?;
    }
    let readonly = prepared.readonly();
    // `changes()` keeps the count of the last INSERT/UPDATE/DELETE on the connection, so after
    // DDL it would report an older statement's rows (which differ between connections): a
    // statement that changed no row reports 0.
    let total_before = conn.total_changes();
    let mut rows = Vec::new();
    // SQLite keeps a cached statement's step counter across executions: start it at zero, so
    // the steps counted (and the points where the budget is checked) depend on this execution
    // alone.
    prepared.reset_status(StatementStatus::VmStep);
    if let Some(b) = budget {
        b.start_statement();
    }
    let collected = (|| -> Result<(), RunError> {
        let mut raw = prepared.raw_query();
        while let Some(row) = raw.next()? {
            // The statement's own width: a cached statement whose table changed is prepared
            // again by its first step, and may have gained or lost columns.
            let width = row.as_ref().column_count();
            let mut out = Vec::with_capacity(width);
            for i in 0..width {
                let v = value_of(row.get_ref(i)?);
                let bytes = crate::limits::value_bytes(&v);
                if bytes > room.left {
                    return Err(RunError::Limit(crate::limits::result_too_big(room.max)));
                }
                room.left -= bytes;
                out.push(v);
            }
            rows.push(out);
        }
        Ok(())
    })();
    if let Some(b) = budget {
        // The exact count, the same on every replica (see `crate::limits::Budget`).
        let steps = prepared.get_status(StatementStatus::VmStep) as u32 as u64;
        if !b.finish_statement(steps) {
            return Err(RunError::Limit(crate::limits::budget_error(b.max())));
        }
    }
    collected?;
    // Only now: before its first step, a cached statement prepared before a schema change
    // still describes the old columns (`SELECT *` after `ADD COLUMN`).
    let columns = columns_of(&prepared);
    let rows_affected = if readonly || conn.total_changes() == total_before {
        0
    } else {
        conn.changes()
    };
    Ok(StatementResult {
        columns,
        rows,
        rows_affected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(columns: &[Column]) -> Vec<&str> {
        columns.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_cached_statement_reports_the_columns_its_table_has_now() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER)").unwrap();
        let select = Statement {
            sql: "SELECT * FROM t".into(),
            params: vec![],
            effect: Default::default(),
        };
        let r = run(&conn, &select, None, &mut ResultRoom::default()).unwrap();
        assert_eq!(names(&r.columns), ["id"]);
        conn.execute_batch("ALTER TABLE t ADD COLUMN label TEXT; INSERT INTO t VALUES (1, 'a')")
            .unwrap();
        // Both from the statement cache, which still holds the one-column statement.
        let r = run(&conn, &select, None, &mut ResultRoom::default()).unwrap();
        assert_eq!(names(&r.columns), ["id", "label"]);
        assert_eq!(
            r.rows,
            vec![vec![Value::Integer(1), Value::Text("a".into())]]
        );
        assert_eq!(names(&describe(&conn, &select).unwrap().0), ["id", "label"]);
        conn.execute_batch("ALTER TABLE t DROP COLUMN id").unwrap();
        let r = run(&conn, &select, None, &mut ResultRoom::default()).unwrap();
        assert_eq!(names(&r.columns), ["label"]);
        assert_eq!(r.rows, vec![vec![Value::Text("a".into())]]);
    }
}
