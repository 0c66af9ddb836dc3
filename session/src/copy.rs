//! `COPY` in a session: `TO STDOUT` is a read whose rows the protocol sends as COPY data;
//! `FROM STDIN` names its target columns first ([`Session::copy_in_start`]), and once the
//! protocol has read every row, they are written as ordinary inserts
//! ([`Session::copy_in`]): outside a transaction block all or nothing, as PostgreSQL's COPY
//! (one log entry, or a transaction of its own when the rows do not fit in one), as steps of
//! the block inside one.

use sqlkeeper_sql::{translate, CommandTag, CopySpec, StatementKind, Translated};

use crate::error::ClientError;
use crate::session::{Produced, Session};
use crate::txn::{aborted, Phase};
use crate::values::{Column, Value};

type EngineValue = sqlkeeper_engine::Value;

/// Most COPY data (as the client sent it) one `COPY ... FROM STDIN` may carry: its rows are
/// held in memory until they are written. Rows take more bytes in the log than in the client's
/// text (narrow rows about five times as many), and a transaction may take at most
/// `TXN_BYTES_MAX` (256 MiB) there, so more than this could never be written; it is refused as
/// it arrives, before anything is buffered further or written (54000). 64 MiB of COPY text is
/// `pgbench -i` at scale 40.
pub const COPY_IN_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Rows per SQLite `INSERT` a COPY is written as: few statements per entry, each small enough
/// to translate quickly.
const COPY_ROWS_PER_INSERT: usize = 256;

/// SQLite's bound on the parameters of one statement (`SQLITE_MAX_VARIABLE_NUMBER` of the
/// bundled library): a wide table gets fewer rows per insert.
const SQLITE_VARIABLES_MAX: usize = 32_766;

/// A `COPY ... FROM STDIN` waiting for its rows.
#[derive(Debug, Clone)]
pub struct CopyIn {
    /// The statement's format and options.
    pub spec: CopySpec,
    /// The target columns in the order the data gives them, with their declared types, which
    /// decide how each field is read.
    pub columns: Vec<Column>,
    /// The table, as the statement wrote it.
    table: String,
}

/// An upper bound of what a COPY's inserts take in the log: the engine's bound of each
/// statement (`statement_size_bound`), for each of its SQLite statements, without building
/// them.
fn size_bound(batch: &[(Translated, Vec<EngineValue>)]) -> usize {
    batch
        .iter()
        .map(|(t, params)| {
            let params: usize = params.iter().map(sqlkeeper_engine::value_size_bound).sum();
            let effect = sqlkeeper_engine::effect_size_bound(&t.effect);
            t.sqlite
                .iter()
                .map(|sql| 64 + effect + sqlkeeper_engine::json_str_len(sql) + params)
                .sum::<usize>()
        })
        .sum()
}

/// `"name"`, with embedded quotes doubled.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Session {
    /// Runs a batch in which `COPY` statements may stand: the statements between them as
    /// [`Session::run`] runs them, a `COPY ... TO STDOUT` as a read, and a `COPY ... FROM STDIN`
    /// (which must come last: the client sends its rows next) as [`Produced::CopyIn`].
    pub(crate) async fn run_copying(
        &self,
        batch: Vec<(Translated, Vec<EngineValue>)>,
    ) -> (Vec<Produced>, Option<ClientError>) {
        if !batch
            .iter()
            .any(|(t, _)| matches!(t.kind, StatementKind::Copy(_)))
        {
            return self.run(batch).await;
        }
        let count = batch.len();
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for (i, (t, params)) in batch.into_iter().enumerate() {
            let StatementKind::Copy(spec) = &t.kind else {
                pending.push((t, params));
                continue;
            };
            if !pending.is_empty() {
                let (produced, error) = self.run(std::mem::take(&mut pending)).await;
                out.extend(produced);
                if error.is_some() {
                    return (out, error);
                }
            }
            let r = match spec.from_client {
                true if i + 1 < count => Err(ClientError::new(
                    "0A000",
                    "COPY FROM STDIN must be the last statement of its query string",
                )),
                true => self.copy_in_start(spec.clone()).await,
                false => self.copy_out(t, params).await,
            };
            match r {
                Ok(p) => out.push(p),
                Err(e) => return (out, Some(e)),
            }
        }
        if !pending.is_empty() {
            let (produced, error) = self.run(pending).await;
            out.extend(produced);
            if error.is_some() {
                return (out, error);
            }
        }
        (out, None)
    }

    /// `COPY ... TO STDOUT`: the query's rows, read as any read of the session is (inside a
    /// block, as the block reads).
    async fn copy_out(
        &self,
        mut t: Translated,
        params: Vec<EngineValue>,
    ) -> Result<Produced, ClientError> {
        let StatementKind::Copy(spec) = std::mem::replace(&mut t.kind, StatementKind::Read) else {
            return Err(ClientError::new("XX000", "not a COPY statement"));
        };
        t.tag = CommandTag::Select;
        let (mut produced, error) = self.run(vec![(t, params)]).await;
        if let Some(e) = error {
            return Err(e);
        }
        match produced.pop() {
            Some(Produced::Rows {
                columns,
                rows,
                hints,
                ..
            }) => Ok(Produced::CopyOut {
                spec,
                columns,
                rows,
                hints,
            }),
            _ => Err(ClientError::new("XX000", "COPY TO produced no rows")),
        }
    }

    /// `COPY table [(columns)] FROM STDIN`: the target columns and their types, described on
    /// this node (caught up with the leader if the table is not here yet). Nothing runs yet.
    async fn copy_in_start(&self, spec: CopySpec) -> Result<Produced, ClientError> {
        if self.txn.lock().await.phase == Phase::Failed {
            return Err(aborted());
        }
        let table = spec
            .table
            .clone()
            .ok_or_else(|| ClientError::new("42601", "COPY FROM needs a table"))?;
        let prepared = self
            .prepare_checked(&format!("SELECT * FROM {table}"))
            .await?
            .ok_or_else(|| ClientError::new("XX000", "COPY target did not describe"))?;
        let all = prepared.columns();
        let mut columns: Vec<Column> = Vec::with_capacity(spec.columns.len());
        for name in &spec.columns {
            let Some(c) = all.iter().find(|c| c.name.eq_ignore_ascii_case(name)) else {
                return Err(ClientError::new(
                    "42703",
                    format!("column \"{name}\" of relation \"{table}\" does not exist"),
                ));
            };
            if columns.iter().any(|d| d.name == c.name) {
                return Err(ClientError::new(
                    "42701",
                    format!("column \"{name}\" specified more than once"),
                ));
            }
            columns.push(c.clone());
        }
        if spec.columns.is_empty() {
            columns = all.to_vec();
        }
        Ok(Produced::CopyIn(CopyIn {
            spec,
            columns,
            table,
        }))
    }

    /// Writes the rows of a `COPY ... FROM STDIN` (each already read as its column's type):
    /// outside a block as one log entry, all or nothing; inside one as the block's steps.
    /// Answers `COPY n`.
    pub async fn copy_in(
        &self,
        copy: &CopyIn,
        rows: Vec<Vec<Value>>,
    ) -> Result<String, ClientError> {
        let width = copy.columns.len();
        let count = rows.len();
        if width == 0 || count == 0 {
            return Ok(CommandTag::Copy.render(0));
        }
        let per_insert = (SQLITE_VARIABLES_MAX / width).clamp(1, COPY_ROWS_PER_INSERT);
        let names = copy
            .columns
            .iter()
            .map(|c| quoted(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        // At most two shapes: full inserts and the last, shorter one.
        let mut shapes: Vec<(usize, Translated)> = Vec::new();
        let mut batch = Vec::with_capacity(count.div_ceil(per_insert));
        // The rows are moved into the parameters, chunk by chunk, not copied: a large COPY
        // holds its values once.
        let mut rows = rows.into_iter();
        loop {
            let chunk: Vec<Vec<Value>> = rows.by_ref().take(per_insert).collect();
            if chunk.is_empty() {
                break;
            }
            let t = match shapes.iter().find(|(n, _)| *n == chunk.len()) {
                Some((_, t)) => t.clone(),
                None => {
                    let t = self.insert_of(&copy.table, &names, width, chunk.len())?;
                    shapes.push((chunk.len(), t.clone()));
                    t
                }
            };
            let params: Vec<EngineValue> = chunk
                .into_iter()
                .flatten()
                .map(Value::into_engine)
                .collect();
            batch.push((t, params));
        }
        let error = if self.in_block_or_control(&batch).await {
            Box::pin(self.copy_in_block(batch)).await.err()
        } else if size_bound(&batch) > sqlkeeper_engine::COMMAND_BYTES_MAX {
            self.copy_in_own_transaction(batch).await
        } else {
            self.run(batch).await.1
        };
        match error {
            Some(e) => Err(e),
            None => Ok(CommandTag::Copy.render(count as u64)),
        }
    }

    /// Writes a COPY's inserts, outside a block but too large for one log entry, as a
    /// transaction of their own, all or nothing: `BEGIN`, the inserts (in one go, as in a
    /// block), `COMMIT` (replicated in several entries, `docs/transactions.md`), or `ROLLBACK`
    /// after the first error.
    async fn copy_in_own_transaction(
        &self,
        batch: Vec<(Translated, Vec<EngineValue>)>,
    ) -> Option<ClientError> {
        let control = |sql: &str| -> Result<(Translated, Vec<EngineValue>), ClientError> {
            let t = translate(sql)?
                .pop()
                .ok_or_else(|| ClientError::new("XX000", "no transaction statement"))?;
            Ok((t, Vec::new()))
        };
        let (begin, commit, rollback) =
            match (control("BEGIN"), control("COMMIT"), control("ROLLBACK")) {
                (Ok(b), Ok(c), Ok(r)) => (b, c, r),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(e),
            };
        // Boxed: the block's future is large, and COPY is rare.
        let mut error = Box::pin(self.run_block(vec![begin])).await.1;
        if error.is_none() {
            error = Box::pin(self.copy_in_block(batch)).await.err();
        }
        if error.is_none() {
            error = Box::pin(self.run_block(vec![commit])).await.1;
        }
        if error.is_some() {
            // The block failed before its COMMIT (a COMMIT that failed ended it already).
            let _ = Box::pin(self.run_block(vec![rollback])).await;
        }
        error
    }

    /// `INSERT INTO table (names) VALUES ($1, ...), ...` for `rows` rows, translated.
    fn insert_of(
        &self,
        table: &str,
        names: &str,
        width: usize,
        rows: usize,
    ) -> Result<Translated, ClientError> {
        let mut sql = format!("INSERT INTO {table} ({names}) VALUES ");
        let mut n = 0;
        for r in 0..rows {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                n += 1;
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${n}"));
            }
            sql.push(')');
        }
        let mut translated = translate(&sql)?;
        match (translated.pop(), translated.is_empty()) {
            (Some(t), true) => Ok(t),
            _ => Err(ClientError::new("XX000", "COPY insert did not translate")),
        }
    }
}
