//! Interactive transactions: speculative execution on a second writable connection, and the
//! replay of a committed transaction on the apply connection. Both run the same steps through
//! [`run_step`], so a replay that starts from the state the speculation started from returns
//! the same results; the digest of those results checks it. Design: `docs/transactions.md`.
//!
//! One speculation at a time per node ([`Speculator`]). The apply thread revokes it before it
//! applies anything ([`Speculator::hold_for_apply`]): the speculation read a state that is
//! about to change, so its transaction could not commit anyway (40001), and the apply thread
//! never waits for a client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, InterruptHandle};
use sha2::{Digest, Sha256};

use crate::command::{LogIndex, Stamp, Statement, TxnStep};
use crate::determinism::StampCell;
use crate::error::{classify, ExecError, Fatal};
use crate::exec::{run, ResultRoom, RunError, StatementResult};
use crate::limits::Budget;
use crate::meta;
use crate::rebuild::RebuildCell;
use crate::sequences::SequenceCell;

/// How long a new speculation waits for one whose client went away to finish its statement.
const LEFTOVER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Savepoint around each client statement of a transaction: a failed statement is undone
/// alone, as Postgres undoes it when the client rolls back to a savepoint.
const STATEMENT_SAVEPOINT: &str = "_sqlkeeper_stmt";

/// The cells the functions and hooks of one writable connection read (stamp, sequences,
/// rebuild, budget, result room, row-id guard).
#[derive(Clone, Default)]
pub(crate) struct Cells {
    pub(crate) stamp: Arc<StampCell>,
    pub(crate) sequences: Arc<Mutex<SequenceCell>>,
    pub(crate) rebuild: RebuildCell,
    /// The work budget of the entry being applied, or of the speculative transaction.
    pub(crate) budget: Arc<Budget>,
    /// Result bytes the entry may still return.
    pub(crate) room: Arc<Mutex<ResultRoom>>,
    /// Set by the connection's update hook when a statement writes a row whose row id is
    /// `i64::MAX` (see [`rowid_error`]).
    pub(crate) rowid_max: Arc<AtomicBool>,
}

impl Cells {
    /// Starts an entry (or a speculative transaction): its time and seed, its budget, and an
    /// empty result allowance.
    pub(crate) fn start_entry(&self, stamp: &Stamp, vm_steps_max: u64) {
        self.stamp.set(stamp);
        self.budget.start_entry(vm_steps_max);
        *self.room.lock().unwrap_or_else(|p| p.into_inner()) =
            ResultRoom::new(crate::limits::ENTRY_RESULT_BYTES_MAX);
        self.rowid_max.store(false, Ordering::SeqCst);
    }
}

/// What one step returned: its result or its deterministic failure.
pub(crate) type StepResult = Result<StatementResult, ExecError>;

/// Why a statement or step ended its whole entry, not just itself.
#[derive(Debug)]
pub(crate) enum Stop {
    /// A deterministic failure after which the entry must change nothing: its step budget ran
    /// out, a row id reached `i64::MAX`, or SQLite rolled back the whole transaction (it does
    /// so for some errors, e.g. an interrupted write). The caller undoes the entry.
    Abort(ExecError),
    /// This node cannot go on.
    Fatal(Fatal),
}

impl From<Fatal> for Stop {
    fn from(f: Fatal) -> Stop {
        Stop::Fatal(f)
    }
}

/// The error of a statement that wrote a row with row id `i64::MAX`. At that row id SQLite
/// picks the next generated one at random (or fails with SQLITE_FULL, which it also reports
/// for a full disk), so no write may leave one behind.
pub(crate) fn rowid_error() -> ExecError {
    ExecError {
        sqlstate: "22003".into(),
        message: "key or row id 9223372036854775807 is out of range".into(),
        detail: Some(
            "The largest bigint is reserved: at it SQLite would choose the next row id at random, \
             and replicas could not agree on it."
                .into(),
        ),
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A deterministic failure: of the statement alone while SQLite kept the transaction, of the
/// whole entry if SQLite rolled it back.
fn failed(conn: &Connection, e: ExecError) -> Result<StepResult, Stop> {
    if conn.is_autocommit() {
        Err(Stop::Abort(e))
    } else {
        Ok(Err(e))
    }
}

/// Runs one SQLite statement of an entry, charged to the entry's budget and result room, then
/// the table rebuild it requested (if any), then reloads the sequences if it changed their
/// table (`CREATE SEQUENCE` in the same transaction as its first `nextval`). Shared by the
/// apply path and speculation.
pub(crate) fn run_statement(
    conn: &Connection,
    stmt: &Statement,
    cells: &Cells,
) -> Result<StepResult, Stop> {
    cells.rowid_max.store(false, Ordering::SeqCst);
    let r = {
        let mut room = cells.room.lock().unwrap_or_else(|p| p.into_inner());
        run(conn, stmt, Some(&cells.budget), &mut room)
    };
    let rowid_max = cells.rowid_max.swap(false, Ordering::SeqCst);
    let r = match r {
        Ok(_) if rowid_max => return Err(Stop::Abort(rowid_error())),
        Ok(r) => r,
        Err(_) if cells.budget.exceeded() => {
            return Err(Stop::Abort(crate::limits::budget_error(cells.budget.max())))
        }
        Err(_) if rowid_max => return Err(Stop::Abort(rowid_error())),
        Err(RunError::Limit(e)) => return failed(conn, e),
        Err(RunError::Sqlite(e)) => return failed(conn, classify(e)?),
    };
    let requested = cells
        .rebuild
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some((table, op)) = requested {
        match crate::rebuild::run(conn, &table, &op) {
            Ok(()) => {}
            Err(crate::rebuild::RebuildError::Exec(e)) => return failed(conn, e),
            Err(crate::rebuild::RebuildError::Sqlite(e)) => return failed(conn, classify(e)?),
        }
    }
    if stmt.sql.contains(crate::sequences::SEQUENCES_TABLE) {
        crate::sequences::refresh(conn, &cells.sequences)
            .map_err(|e| Fatal(format!("reload sequences: {e}")))?;
    }
    Ok(Ok(r))
}

/// Runs one transaction step. A failing `Sql` step is undone alone and its error is the
/// result; the transaction goes on (the client decides, with `ROLLBACK TO`).
pub(crate) fn run_step(
    conn: &Connection,
    step: &TxnStep,
    cells: &Cells,
) -> Result<StepResult, Stop> {
    let control = |sql: String| -> Result<StepResult, Stop> {
        match conn.execute_batch(&sql) {
            Ok(()) => Ok(Ok(StatementResult::default())),
            Err(e) => failed(conn, classify(e)?),
        }
    };
    let refresh_sequences = || {
        crate::sequences::refresh(conn, &cells.sequences)
            .map_err(|e| Fatal(format!("reload sequences: {e}")))
    };
    match step {
        TxnStep::Savepoint(name) => control(format!("SAVEPOINT {}", quote_ident(name))),
        TxnStep::Release(name) => control(format!("RELEASE {}", quote_ident(name))),
        TxnStep::RollbackTo(name) => {
            let r = control(format!("ROLLBACK TO {}", quote_ident(name)))?;
            // The rollback may have undone a CREATE or DROP SEQUENCE.
            refresh_sequences()?;
            Ok(r)
        }
        TxnStep::Sql(statements) => {
            let f = |what: &'static str| move |e: rusqlite::Error| Fatal(format!("{what}: {e}"));
            conn.execute_batch(&format!("SAVEPOINT {STATEMENT_SAVEPOINT}"))
                .map_err(f("statement savepoint"))?;
            let mut last = Ok(StatementResult::default());
            for s in statements {
                last = run_statement(conn, s, cells)?;
                if last.is_err() {
                    conn.execute_batch(&format!("ROLLBACK TO {STATEMENT_SAVEPOINT}"))
                        .map_err(f("undo failed statement"))?;
                    if statements
                        .iter()
                        .any(|s| s.sql.contains(crate::sequences::SEQUENCES_TABLE))
                    {
                        refresh_sequences()?;
                    }
                    break;
                }
            }
            conn.execute_batch(&format!("RELEASE {STATEMENT_SAVEPOINT}"))
                .map_err(f("release statement savepoint"))?;
            Ok(last)
        }
    }
}

/// Running digest of step results: what the client saw, compared with what replay computes.
#[derive(Clone, Default)]
pub(crate) struct Digest256(Sha256);

impl Digest256 {
    pub(crate) fn add(&mut self, r: &StepResult) {
        // Row counts, rows and SQLSTATEs; not messages, which may name the node.
        let canonical = match r {
            Ok(r) => serde_json::json!({"n": r.rows_affected, "rows": r.rows}),
            Err(e) => serde_json::json!({"err": e.sqlstate}),
        };
        self.0.update(canonical.to_string().as_bytes());
        self.0.update(b"\n");
    }

    pub(crate) fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Why a speculative transaction cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The state it read changed underneath (an entry was applied, a snapshot installed):
    /// the transaction must be retried (40001).
    #[error("{0}")]
    Revoked(String),
    /// A statement failed in a way that ends the whole transaction (its step budget ran out, a
    /// row id reached its maximum, SQLite rolled the transaction back): it can only be rolled
    /// back. Replaying it would end the same way on every replica.
    #[error(transparent)]
    Aborted(ExecError),
    /// The node failed.
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

struct SpecInner {
    path: PathBuf,
    /// The speculation connection, opened on first use, closed when a snapshot is installed.
    conn: Option<Connection>,
    cells: Cells,
    /// Generation of the running speculation, if one runs.
    active: Option<u64>,
    next_generation: u64,
    /// Why the last speculation was revoked.
    revoked_because: String,
}

/// The node's one speculation slot: a second writable connection to the state database.
pub struct Speculator {
    inner: Mutex<SpecInner>,
    /// Interrupts a running speculative statement when the apply thread needs the database.
    interrupt: Mutex<Option<InterruptHandle>>,
    /// The apply thread wants the database: a speculative statement stops (also one between
    /// the SQLite statements of a step, where an interrupt alone would be lost: the
    /// connection's progress handler reads this flag).
    interrupted: Arc<AtomicBool>,
    /// The running speculation's client went away: its statement stops the same way.
    cancelled: Arc<AtomicBool>,
}

/// A running speculative transaction. Dropping it rolls it back.
pub struct Speculation {
    spec: Arc<Speculator>,
    generation: u64,
    base: Option<LogIndex>,
    applied: Option<LogIndex>,
    stamp: Stamp,
    steps: Vec<TxnStep>,
    digest: Digest256,
}

/// What a finished speculation hands to the log: see [`crate::Command::Transaction`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpeculationRecord {
    /// The last data-changing entry the transaction saw.
    pub base: Option<LogIndex>,
    /// Time and seed of the transaction.
    pub stamp: Stamp,
    /// The steps, in order.
    pub steps: Vec<TxnStep>,
    /// Digest of their results.
    pub digest: String,
}

impl Speculator {
    pub(crate) fn new(path: PathBuf) -> Speculator {
        Speculator {
            inner: Mutex::new(SpecInner {
                path,
                conn: None,
                cells: Cells::default(),
                active: None,
                next_generation: 1,
                revoked_because: String::new(),
            }),
            interrupt: Mutex::new(None),
            interrupted: Arc::new(AtomicBool::new(false)),
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SpecInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends the running speculation (if any) and keeps every new one out until the guard is
    /// dropped. Called by the apply thread before it writes, and by snapshot installation
    /// (`close` = true: the connection is closed, because it would keep the old file open).
    pub(crate) fn hold_for_apply(&self, why: &str, close: bool) -> SpecHold<'_> {
        self.interrupted.store(true, Ordering::SeqCst);
        if let Some(h) = self
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
        let mut inner = self.lock();
        if inner.active.take().is_some() {
            if let Some(c) = &inner.conn {
                let _ = c.execute_batch("ROLLBACK");
            }
            inner.revoked_because = why.to_string();
            *self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.interrupted.store(false, Ordering::SeqCst);
        if close {
            inner.conn = None;
        }
        SpecHold { _inner: inner }
    }

    /// Interrupts the running speculative statement, if any (its client went away). The
    /// statement fails; the speculation is rolled back when it is dropped.
    pub fn interrupt_running(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        if let Some(h) = self
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
    }

    /// Starts a speculative transaction with `stamp` on the current applied state. If
    /// `expect_base` is given (the transaction already read at that state), a different state
    /// is a conflict.
    pub fn begin(
        self: &Arc<Self>,
        stamp: Stamp,
        expect_base: Option<Option<LogIndex>>,
    ) -> Result<Speculation, SpecError> {
        let mut inner = self.lock();
        // A speculation whose client went away may still be finishing its statement (it was
        // interrupted): wait for it to be dropped, briefly.
        let deadline = std::time::Instant::now() + LEFTOVER_WAIT;
        while inner.active.is_some() && std::time::Instant::now() < deadline {
            drop(inner);
            std::thread::sleep(std::time::Duration::from_millis(5));
            inner = self.lock();
        }
        if inner.active.is_some() {
            return Err(SpecError::Revoked(
                "another transaction is writing on this node".into(),
            ));
        }
        self.cancelled.store(false, Ordering::SeqCst);
        if inner.conn.is_none() {
            let (apply, cancelled) = (self.interrupted.clone(), self.cancelled.clone());
            let conn = crate::apply::open_writer(&inner.path, &inner.cells, move || {
                apply.load(Ordering::Relaxed) || cancelled.load(Ordering::Relaxed)
            })?;
            inner.conn = Some(conn);
        }
        let inner = &mut *inner;
        let Some(conn) = inner.conn.as_ref() else {
            return Err(Fatal("speculation connection is not open".into()).into());
        };
        let f = |what: &'static str| move |e: rusqlite::Error| Fatal(format!("{what}: {e}"));
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(f("begin speculation"))?;
        let read = (|| {
            let base = meta::get_i64(conn, meta::KEY_LAST_WRITE_INDEX)?.map(|i| LogIndex(i as u64));
            let applied = meta::get_i64(conn, meta::KEY_APPLIED_INDEX)?.map(|i| LogIndex(i as u64));
            crate::sequences::load(conn, &inner.cells.sequences)?;
            Ok::<_, rusqlite::Error>((base, applied))
        })();
        let (base, applied) = match read {
            Ok(v) => v,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(Fatal(format!("start speculation: {e}")).into());
            }
        };
        if let Some(expected) = expect_base {
            if expected != base {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(SpecError::Revoked(format!(
                    "the data this transaction read was changed by log entry {}",
                    base.map(|b| b.to_string()).unwrap_or_default()
                )));
            }
        }
        // The whole transaction is one entry: one budget for all its steps, as at replay.
        inner
            .cells
            .start_entry(&stamp, crate::limits::ENTRY_VM_STEPS_MAX);
        let generation = inner.next_generation;
        inner.next_generation += 1;
        inner.active = Some(generation);
        *self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(conn.get_interrupt_handle());
        Ok(Speculation {
            spec: self.clone(),
            generation,
            base,
            applied,
            stamp,
            steps: Vec::new(),
            digest: Digest256::default(),
        })
    }
}

/// Keeps speculations out while the apply thread writes.
pub(crate) struct SpecHold<'a> {
    _inner: MutexGuard<'a, SpecInner>,
}

impl Speculation {
    /// The applied index of the state the speculation started from.
    pub fn applied_index(&self) -> Option<LogIndex> {
        self.applied
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection, &Cells) -> Result<T, Stop>,
    ) -> Result<T, SpecError> {
        let mut inner = self.spec.lock();
        if inner.active != Some(self.generation) {
            return Err(SpecError::Revoked(if inner.revoked_because.is_empty() {
                "the transaction was ended".into()
            } else {
                inner.revoked_because.clone()
            }));
        }
        let Some(conn) = inner.conn.as_ref() else {
            return Err(Fatal("speculation connection is not open".into()).into());
        };
        // The apply thread asked for the database (its interrupt would miss a statement
        // that had not started yet): give way instead of making it wait for this one.
        if self.spec.interrupted.load(Ordering::SeqCst) {
            return Err(SpecError::Revoked(
                "a concurrent change is being applied on this node".into(),
            ));
        }
        match f(conn, &inner.cells) {
            Ok(v) => Ok(v),
            Err(Stop::Abort(e)) => {
                // The transaction cannot go on: end it here (SQLite may have rolled it back
                // already) so nothing runs outside it, and remember why.
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                inner.active = None;
                inner.revoked_because = e.message.clone();
                *self
                    .spec
                    .interrupt
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = None;
                Err(SpecError::Aborted(e))
            }
            Err(_)
                if self.spec.interrupted.load(Ordering::SeqCst)
                    || self.spec.cancelled.load(Ordering::SeqCst) =>
            {
                Err(SpecError::Revoked(
                    "the statement was stopped: a concurrent change is being applied, or its client went away".into(),
                ))
            }
            Err(Stop::Fatal(f)) => Err(f.into()),
        }
    }

    /// Runs a step that may write, records it for the log, and returns its result.
    pub fn execute(&mut self, step: TxnStep) -> Result<StepResult, SpecError> {
        let r = self.with_conn(|conn, cells| run_step(conn, &step, cells))?;
        self.digest.add(&r);
        self.steps.push(step);
        Ok(r)
    }

    /// Runs a read in the transaction (it sees the transaction's writes). Not recorded: it
    /// changes nothing, and the randomness it draws is given back, so the recorded steps
    /// replay alike.
    pub fn query(&mut self, statements: &[Statement]) -> Result<StepResult, SpecError> {
        self.with_conn(|conn, cells| {
            // Neither the randomness nor the steps of a read count: replay does not run it.
            let (stamp, steps) = (cells.stamp.save(), cells.budget.save());
            // A read's rows go to its client only: it gets a read's result limit.
            let room = std::mem::replace(
                &mut *cells.room.lock().unwrap_or_else(|p| p.into_inner()),
                ResultRoom::new(crate::limits::READ_RESULT_BYTES_MAX),
            );
            let mut last = Ok(Ok(StatementResult::default()));
            for s in statements {
                last = run_statement(conn, s, cells);
                if !matches!(last, Ok(Ok(_))) {
                    break;
                }
            }
            cells.stamp.restore(stamp);
            cells.budget.restore(steps);
            *cells.room.lock().unwrap_or_else(|p| p.into_inner()) = room;
            last
        })
    }

    /// Describes a statement against the transaction's state (a table it created is there).
    pub fn describe(
        &mut self,
        sql: &str,
    ) -> Result<Result<(Vec<crate::exec::Column>, usize), ExecError>, SpecError> {
        self.with_conn(|conn, _| {
            Ok(match conn.prepare_cached(sql) {
                Ok(s) => Ok((
                    s.columns()
                        .map(|c| crate::exec::Column {
                            name: c.name().to_string(),
                            decl_type: c.decl_type().map(str::to_string),
                        })
                        .collect(),
                    s.parameter_count(),
                )),
                Err(e) => Err(crate::error::sqlstate_of(&e)),
            })
        })
    }

    /// Whether a step that writes was recorded.
    pub fn has_steps(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, TxnStep::Sql(_)))
    }

    /// Rolls the speculation back and returns what to propose.
    pub fn finish(mut self) -> Result<SpeculationRecord, SpecError> {
        self.with_conn(|conn, _| {
            conn.execute_batch("ROLLBACK")
                .map_err(|e| Stop::Fatal(Fatal(format!("end speculation: {e}"))))
        })?;
        self.release();
        Ok(SpeculationRecord {
            base: self.base,
            stamp: self.stamp,
            steps: std::mem::take(&mut self.steps),
            digest: std::mem::take(&mut self.digest).hex(),
        })
    }

    fn release(&mut self) {
        let mut inner = self.spec.lock();
        if inner.active == Some(self.generation) {
            if let Some(c) = &inner.conn {
                // Rolls back if still open; after `finish` there is nothing to roll back.
                if !c.is_autocommit() {
                    let _ = c.execute_batch("ROLLBACK");
                }
            }
            inner.active = None;
            *self
                .spec
                .interrupt
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

impl Drop for Speculation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::{apply1 as apply, exec, sql};
    use crate::apply::{ApplyItem, RaftMeta, StateMachine};
    use crate::command::EntryHeader;
    use crate::command::{Command, Value};

    fn commit(spec: Speculation) -> Command {
        let r = spec.finish().unwrap();
        Command::Transaction {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: r.stamp,
            base: r.base,
            steps: r.steps,
            digest: r.digest,
        }
    }

    /// The translator's SQLite statements for one Postgres statement.
    fn pg(sql_text: &str) -> Vec<Statement> {
        let mut t = sqlkeeper_sql::translate(sql_text).unwrap();
        t.pop()
            .unwrap()
            .sqlite
            .into_iter()
            .map(|s| sql(&s))
            .collect()
    }

    #[test]
    fn sequence_values_survive_rollback_to_a_savepoint_before_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let create = Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: pg("CREATE SEQUENCE s"),
        };
        assert_eq!(apply(&mut sm, 1, &create).error, None);
        let spec = sm.speculator();
        let mut s = spec.begin(Stamp::default(), None).unwrap();
        // Runs a step that must succeed.
        let ok = |s: &mut Speculation, step: TxnStep| s.execute(step).unwrap().unwrap();
        let next = |s: &mut Speculation| ok(s, TxnStep::Sql(pg("SELECT nextval('s')"))).rows;
        assert_eq!(next(&mut s), vec![vec![Value::Integer(1)]]);
        ok(&mut s, TxnStep::Savepoint("_sqlkeeper_sp_0".into()));
        ok(&mut s, TxnStep::Sql(pg("DROP SEQUENCE s")));
        ok(&mut s, TxnStep::RollbackTo("_sqlkeeper_sp_0".into()));
        assert_eq!(
            next(&mut s),
            vec![vec![Value::Integer(2)]],
            "the sequence is back, with its value"
        );
        ok(&mut s, TxnStep::Savepoint("_sqlkeeper_sp_1".into()));
        ok(&mut s, TxnStep::Sql(pg("CREATE SEQUENCE t")));
        ok(&mut s, TxnStep::RollbackTo("_sqlkeeper_sp_1".into()));
        let e = s
            .execute(TxnStep::Sql(pg("SELECT nextval('t')")))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.sqlstate, "42P01", "a creation rolled back is gone");
        let cmd = commit(s);
        assert_eq!(apply(&mut sm, 2, &cmd).error, None);
        let after = Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: pg("SELECT nextval('s')"),
        };
        assert_eq!(
            apply(&mut sm, 3, &after).results[0].rows,
            vec![vec![Value::Integer(3)]]
        );
    }

    #[test]
    fn speculation_replays_to_the_same_results_and_conflicts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(
            &mut sm,
            1,
            &exec(
                "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v INTEGER UNIQUE, r REAL)",
            ),
        );
        let spec = sm.speculator();
        let stamp = Stamp {
            unix_micros: 5,
            seed: 42,
        };

        let mut s = spec.begin(stamp, None).unwrap();
        let r = s
            .execute(TxnStep::Sql(vec![sql(
                "INSERT INTO t (v, r) VALUES (1, random()) RETURNING id",
            )]))
            .unwrap()
            .unwrap();
        assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
        // A failed statement is undone alone and recorded; the read sees the transaction's row.
        assert_eq!(
            s.execute(TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (1)")]))
                .unwrap()
                .unwrap_err()
                .sqlstate,
            "23505"
        );
        let seen = s
            .query(&[sql("SELECT count(*), random() FROM t")])
            .unwrap()
            .unwrap();
        assert_eq!(seen.rows[0][0], Value::Integer(1));
        s.execute(TxnStep::Savepoint("a".into())).unwrap().unwrap();
        s.execute(TxnStep::Sql(vec![sql(
            "INSERT INTO t (v, r) VALUES (2, random())",
        )]))
        .unwrap()
        .unwrap();
        s.execute(TxnStep::RollbackTo("a".into())).unwrap().unwrap();
        s.execute(TxnStep::Sql(vec![sql(
            "INSERT INTO t (v, r) VALUES (3, random())",
        )]))
        .unwrap()
        .unwrap();
        let cmd = commit(s);
        // Nothing is visible before the entry applies.
        let n = sm
            .read_pool()
            .read(|_| {}, |v| Ok(v.query(&sql("SELECT count(*) FROM t"))?))
            .unwrap();
        assert_eq!(n.rows, vec![vec![Value::Integer(0)]]);
        let o = apply(&mut sm, 3, &cmd);
        assert_eq!(o.error, None);
        let o = apply(&mut sm, 4, &exec("SELECT v FROM t ORDER BY v"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
        );

        // A write between the speculation and its entry: 40001, nothing applied.
        let mut s = spec.begin(stamp, None).unwrap();
        s.execute(TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (10)")]))
            .unwrap()
            .unwrap();
        let cmd = commit(s);
        apply(&mut sm, 5, &exec("INSERT INTO t (v) VALUES (11)"));
        let o = apply(&mut sm, 6, &cmd);
        assert_eq!(o.error.unwrap().1.sqlstate, "40001");

        // A tampered digest is refused on apply.
        let s = {
            let mut s = spec.begin(stamp, None).unwrap();
            s.execute(TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (20)")]))
                .unwrap()
                .unwrap();
            s
        };
        let mut cmd = commit(s);
        if let Command::Transaction { digest, .. } = &mut cmd {
            *digest = "00".into();
        }
        let o = apply(&mut sm, 7, &cmd);
        assert_eq!(o.error.unwrap().1.sqlstate, "XX000");
        let o = apply(&mut sm, 8, &exec("SELECT count(*) FROM t WHERE v = 20"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(0)]]);

        // The same conflict inside one apply batch: the check sees the entry just before it,
        // however the log was cut into batches.
        let mut s = spec.begin(stamp, None).unwrap();
        s.execute(TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (40)")]))
            .unwrap()
            .unwrap();
        let txn = commit(s);
        let other = exec("INSERT INTO t (v) VALUES (41)");
        let items = [
            ApplyItem {
                index: LogIndex(20),
                command: Some(&other),
            },
            ApplyItem {
                index: LogIndex(21),
                command: Some(&txn),
            },
        ];
        let outcomes = sm.apply_batch(&items, &RaftMeta::default()).unwrap();
        assert_eq!(
            outcomes[1]
                .as_ref()
                .unwrap()
                .error
                .as_ref()
                .unwrap()
                .1
                .sqlstate,
            "40001"
        );

        // Applying an entry revokes a running speculation.
        let mut s = spec.begin(stamp, None).unwrap();
        apply(&mut sm, 22, &exec("INSERT INTO t (v) VALUES (30)"));
        assert!(matches!(
            s.execute(TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (31)")])),
            Err(SpecError::Revoked(_))
        ));
    }
}
