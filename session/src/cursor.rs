//! Cursors: `DECLARE name CURSOR FOR query`, `FETCH`, `CLOSE`, as psycopg2's named cursors and
//! SQLAlchemy's `yield_per` use them.
//!
//! A cursor belongs to its transaction block (cursors `WITH HOLD` are refused by the
//! translator) and is closed when the block ends. Its query runs when it is declared, as any
//! read of the block (so it sees the block's writes and, under REPEATABLE READ, the block's
//! snapshot), and its rows are kept by the session until they are fetched: a later write of
//! the block does not change what the cursor returns, as in PostgreSQL, whose cursors see the
//! snapshot of their declaration. `ROLLBACK TO SAVEPOINT` closes the cursors opened after the
//! savepoint. Only forward fetches exist.

use std::collections::{HashMap, VecDeque};

use sqlkeeper_sql::{ColumnHint, CommandTag, CursorOp, StatementKind};

use crate::error::ClientError;
use crate::session::{Produced, Session};
use crate::txn::Txn;
use crate::values::{Column, Value};

/// The most rows, counted in bytes, that a session's open cursors may hold between fetches:
/// the engine's bound on one read's result (`READ_RESULT_BYTES_MAX`), for all of them
/// together, so a client cannot make a node hold one read's worth of memory per cursor.
const CURSOR_BYTES_MAX: usize = sqlkeeper_engine::READ_RESULT_BYTES_MAX;

/// A declared cursor: its description and the rows not fetched yet.
#[derive(Debug)]
pub(crate) struct Cursor {
    columns: Vec<Column>,
    hints: Vec<ColumnHint>,
    rows: VecDeque<Vec<Value>>,
    bytes: usize,
    /// How many savepoints were open when it was declared (inside which it was opened).
    depth: usize,
}

/// The open cursors of a block, by name.
pub(crate) type Cursors = HashMap<String, Cursor>;

/// The description of cursor `name` (its columns and their types), if the block has it open:
/// what `FETCH` from it returns, and what a Describe of the portal of that name answers.
pub(crate) fn description(cursors: &Cursors, name: &str) -> Option<(Vec<Column>, Vec<ColumnHint>)> {
    cursors
        .get(name)
        .map(|c| (c.columns.clone(), c.hints.clone()))
}

/// `ROLLBACK TO` the savepoint at `at` (from 0): the cursors opened inside it are closed, as
/// PostgreSQL closes them.
pub(crate) fn rolled_back_to(cursors: &mut Cursors, at: usize) {
    cursors.retain(|_, c| c.depth <= at);
}

/// `RELEASE` of the savepoint at `at`: the cursors opened inside it now belong to the level
/// around it.
pub(crate) fn released(cursors: &mut Cursors, at: usize) {
    for c in cursors.values_mut() {
        c.depth = c.depth.min(at);
    }
}

fn size_of(row: &[Value]) -> usize {
    row.iter()
        .map(|v| match v {
            Value::Text(s) => s.len() + 8,
            Value::Blob(b) => b.len() + 8,
            _ => 8,
        })
        .sum()
}

fn no_cursor(name: &str) -> ClientError {
    ClientError::new("34000", format!("cursor \"{name}\" does not exist"))
}

impl Session {
    /// A cursor statement outside a transaction block: there are no cursors (PostgreSQL's
    /// errors; `CLOSE ALL` closes nothing).
    pub(crate) fn cursor_outside_block(op: &CursorOp) -> Result<Produced, ClientError> {
        match op {
            CursorOp::Declare { .. } => Err(ClientError::new(
                "25P01",
                "DECLARE CURSOR can only be used in transaction blocks",
            )),
            CursorOp::Fetch { name, .. } | CursorOp::Close(Some(name)) => Err(no_cursor(name)),
            CursorOp::Close(None) => Ok(Produced::Done("CLOSE CURSOR ALL".into())),
        }
    }

    /// Runs a cursor statement inside the block `txn`.
    pub(crate) async fn cursor(
        &self,
        txn: &mut Txn,
        op: &CursorOp,
        params: Vec<sqlkeeper_engine::Value>,
    ) -> Result<Produced, ClientError> {
        match op {
            CursorOp::Declare { name, query } => {
                if txn.cursors.contains_key(name) {
                    return Err(ClientError::new(
                        "42P03",
                        format!("cursor \"{name}\" already exists"),
                    ));
                }
                let mut translated = sqlkeeper_sql::translate(query)?;
                let (Some(mut t), true) = (translated.pop(), translated.is_empty()) else {
                    return Err(ClientError::new("42601", "DECLARE CURSOR needs one query"));
                };
                if t.kind != StatementKind::Read {
                    return Err(ClientError::new(
                        "0A000",
                        "DECLARE CURSOR is supported for queries that only read",
                    ));
                }
                // Typed as the same query outside a cursor (`sum(integer)` is `bigint`).
                self.type_aggregates_in(txn, &mut t).await;
                let Produced::Rows {
                    columns,
                    rows,
                    hints,
                    ..
                } = Box::pin(self.run_in_block(txn, &t, params)).await?
                else {
                    return Err(ClientError::new("XX000", "a cursor's query gave no rows"));
                };
                let bytes: usize = rows.iter().map(|r| size_of(r)).sum();
                let held: usize = txn.cursors.values().map(|c| c.bytes).sum();
                if held + bytes > CURSOR_BYTES_MAX {
                    return Err(ClientError::new(
                        "54000",
                        format!(
                            "the open cursors of this session would hold more than {CURSOR_BYTES_MAX} bytes"
                        ),
                    ));
                }
                txn.cursors.insert(
                    name.clone(),
                    Cursor {
                        columns,
                        hints,
                        rows: rows.into(),
                        bytes,
                        depth: txn.savepoints.len(),
                    },
                );
                Ok(Produced::Done("DECLARE CURSOR".into()))
            }
            CursorOp::Fetch { name, count } => {
                let cursor = txn.cursors.get_mut(name).ok_or_else(|| no_cursor(name))?;
                let n = count.map_or(cursor.rows.len(), |c| {
                    usize::try_from(c)
                        .unwrap_or(usize::MAX)
                        .min(cursor.rows.len())
                });
                let rows: Vec<Vec<Value>> = cursor.rows.drain(..n).collect();
                cursor.bytes -= rows.iter().map(|r| size_of(r)).sum::<usize>();
                Ok(Produced::Rows {
                    columns: cursor.columns.clone(),
                    rows,
                    tag: CommandTag::Fetch,
                    hints: cursor.hints.clone(),
                })
            }
            CursorOp::Close(Some(name)) => match txn.cursors.remove(name) {
                Some(_) => Ok(Produced::Done("CLOSE CURSOR".into())),
                None => Err(no_cursor(name)),
            },
            CursorOp::Close(None) => {
                txn.cursors.clear();
                Ok(Produced::Done("CLOSE CURSOR ALL".into()))
            }
        }
    }
}
