//! A scratch in-memory database for queries over values the node computes (introspection
//! views): the values become tables of an attached schema, and the query runs there with the
//! full SQL of SQLite (filters, ordering, aggregates).

use rusqlite::Connection;

use crate::command::{Statement, Value};
use crate::error::{sqlstate_of, ExecError};
use crate::exec::{run, ResultRoom, RunError, StatementResult};

/// One table of the scratch database.
#[derive(Debug, Clone)]
pub struct ScratchTable {
    /// Table name.
    pub name: String,
    /// Column names and declared types (`INTEGER`, `TEXT`, `BOOLEAN`, ...).
    pub columns: Vec<(String, String)>,
    /// Rows.
    pub rows: Vec<Vec<Value>>,
}

/// Runs `stmt` against a fresh in-memory database where `tables` exist in schema `schema`.
pub fn query_scratch(
    schema: &str,
    tables: &[ScratchTable],
    stmt: &Statement,
) -> Result<StatementResult, ExecError> {
    let e = |e: rusqlite::Error| sqlstate_of(&e);
    let conn = Connection::open_in_memory().map_err(e)?;
    crate::functions::install(&conn, &Default::default()).map_err(e)?;
    conn.execute("ATTACH DATABASE ':memory:' AS ?1", [schema])
        .map_err(e)?;
    for t in tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(n, ty)| format!("\"{n}\" {ty}"))
            .collect();
        conn.execute_batch(&format!(
            "CREATE TABLE \"{schema}\".\"{}\" ({})",
            t.name,
            cols.join(", ")
        ))
        .map_err(e)?;
        let marks: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!(
            "INSERT INTO \"{schema}\".\"{}\" VALUES ({})",
            t.name,
            marks.join(", ")
        );
        for row in &t.rows {
            conn.execute(&insert, rusqlite::params_from_iter(row.iter()))
                .map_err(e)?;
        }
    }
    let mut room = ResultRoom::new(crate::limits::READ_RESULT_BYTES_MAX);
    run(&conn, stmt, None, &mut room).map_err(RunError::into_exec)
}
