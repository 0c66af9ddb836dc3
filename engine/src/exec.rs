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
        // JSON (the log and outcome encoding) cannot carry them; Postgres spells them so.
        ValueRef::Real(f) if f.is_nan() => Value::Text("NaN".into()),
        ValueRef::Real(f) if f.is_infinite() => {
            Value::Text(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
        }
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
    let columns: Vec<Column> = prepared
        .columns()
        .map(|c| Column {
            name: c.name().to_string(),
            decl_type: c.decl_type().map(str::to_string),
        })
        .collect();
    let readonly = prepared.readonly();
    // `changes()` keeps the count of the last INSERT/UPDATE/DELETE on the connection, so after
    // DDL it would report an older statement's rows (which differ between connections): a
    // statement that changed no row reports 0.
    let total_before = conn.total_changes();
    let width = columns.len();
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
