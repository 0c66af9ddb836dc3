//! Running statements and transaction steps on a writable connection to the state database,
//! shared by the apply thread (entries in log order) and the block writer (a transaction
//! block's statements before `COMMIT`): the same connection setup, the same per-statement
//! accounting, the same replay and result digest. Neither of them is needed here, so each uses
//! this module and not the other.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::config::DbConfig;
use rusqlite::hooks::Action;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::command::{SeqValue, Stamp, Statement, TxnRecord, TxnStep};
use crate::determinism::{self, StampCell};
use crate::error::{classify, ExecError, Fatal};
use crate::exec::{run, ResultRoom, RunError, StatementResult};
use crate::limits::Budget;
use crate::meta;
use crate::rebuild::RebuildCell;
use crate::sequences::{Draw, SequenceCell};

/// Shorthand for the fatal errors of setting a connection up.
fn fatal(what: &'static str) -> impl Fn(rusqlite::Error) -> Fatal {
    move |e| Fatal(format!("{what}: {e}"))
}

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
    /// The work budget of the entry being applied, or of a transaction block's replay.
    pub(crate) budget: Arc<Budget>,
    /// Result bytes the entry may still return.
    pub(crate) room: Arc<Mutex<ResultRoom>>,
    /// Set by the connection's update hook when a statement writes a row whose row id is
    /// `i64::MAX` (see [`rowid_error`]).
    pub(crate) rowid_max: Arc<AtomicBool>,
    /// Tables the statements write (update hook), while a block step runs on the block writer.
    pub(crate) written: Arc<TableLog>,
    /// Tables the statements prepared read (authorizer), while a block's read is examined.
    pub(crate) read: Arc<TableLog>,
    /// Rows the statements update or delete (update hook), while a block step runs.
    pub(crate) rows: Arc<RowLog>,
    /// The role statements run as, and what it may do (`privileges.rs`).
    pub(crate) guard: Arc<crate::privileges::Guard>,
}

/// Rows a block step updated or deleted, but did not insert itself (`rowlocks.rs`), while on.
/// The engine's own tables are left out. It runs for every row a block writes: table names are
/// kept once each, and a row is a table number and a row id, so that noting a row allocates
/// nothing; the rows a step inserted are looked at only when it also updated or deleted some.
#[derive(Default)]
pub(crate) struct RowLog {
    on: AtomicBool,
    rows: Mutex<RowEvents>,
}

#[derive(Default)]
struct RowEvents {
    tables: Vec<String>,
    touched: Vec<(usize, i64)>,
    inserted: Vec<(usize, i64)>,
}

impl RowEvents {
    fn table(&mut self, name: &str) -> usize {
        match self.tables.iter().position(|t| t == name) {
            Some(i) => i,
            None => {
                self.tables.push(name.to_string());
                self.tables.len() - 1
            }
        }
    }
}

impl RowLog {
    fn note(&self, action: Action, table: &str, rowid: i64) {
        if !self.on.load(Ordering::Relaxed) || table.starts_with("_sqlkeeper_") {
            return;
        }
        let mut ev = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            Action::SQLITE_INSERT
                if ev.inserted.len() < crate::rowlocks::ROW_LOCKS_PER_BLOCK_MAX =>
            {
                let t = ev.table(table);
                ev.inserted.push((t, rowid));
            }
            Action::SQLITE_UPDATE | Action::SQLITE_DELETE
                if ev.touched.len() < crate::rowlocks::ROW_LOCKS_PER_BLOCK_MAX =>
            {
                let t = ev.table(table);
                ev.touched.push((t, rowid));
            }
            _ => {}
        }
    }

    pub(crate) fn start(&self) {
        *self.rows.lock().unwrap_or_else(|p| p.into_inner()) = RowEvents::default();
        self.on.store(true, Ordering::Relaxed);
    }

    /// The rows noted since [`RowLog::start`], each once.
    pub(crate) fn stop(&self) -> Vec<crate::rowlocks::Row> {
        self.on.store(false, Ordering::Relaxed);
        let ev = std::mem::take(&mut *self.rows.lock().unwrap_or_else(|p| p.into_inner()));
        if ev.touched.is_empty() {
            return Vec::new();
        }
        let inserted: HashSet<(usize, i64)> = ev.inserted.into_iter().collect();
        let mut touched = ev.touched;
        touched.retain(|r| !inserted.contains(r));
        touched.sort_unstable();
        touched.dedup();
        touched
            .into_iter()
            .map(|(t, rowid)| (ev.tables[t].clone(), rowid))
            .collect()
    }
}

/// Names of tables a connection's hooks saw while on.
#[derive(Default)]
pub(crate) struct TableLog {
    on: AtomicBool,
    names: Mutex<HashSet<String>>,
}

impl TableLog {
    pub(crate) fn note(&self, table: &str) {
        if self.on.load(Ordering::Relaxed) {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            if !names.contains(table) {
                names.insert(table.to_string());
            }
        }
    }

    pub(crate) fn start(&self) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.on.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stop(&self) -> HashSet<String> {
        self.on.store(false, Ordering::Relaxed);
        std::mem::take(&mut *self.names.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Cells {
    /// Starts an entry (or a block's replay): its time and seed, its budget, and an
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
/// Runs one of the fixed statements that frame every write (`BEGIN IMMEDIATE`, `SAVEPOINT
/// entry`, `RELEASE entry`, `ROLLBACK`, ...) from the connection's statement cache: they run
/// several times per write, and preparing them each time was a tenth of a busy leader's CPU.
pub(crate) fn exec_fixed(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

pub(crate) fn rowid_error() -> ExecError {
    ExecError {
        sqlstate: crate::SqlState::new("22003"),
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
/// apply path and the writer connection for blocks.
pub(crate) fn run_statement(
    conn: &Connection,
    stmt: &Statement,
    cells: &Cells,
) -> Result<StepResult, Stop> {
    cells.rowid_max.store(false, Ordering::SeqCst);
    if let Err(e) = cells.guard.prepare(conn) {
        return failed(conn, classify(e)?);
    }
    let stmt = match cells
        .guard
        .unchecked(|| crate::defaults::resolve(conn, stmt))
    {
        Ok(s) => s,
        Err(e) => return failed(conn, classify(e)?),
    };
    let r = {
        let mut room = cells.room.lock().unwrap_or_else(|p| p.into_inner());
        run(conn, &stmt, Some(&cells.budget), &mut room)
    };
    let rowid_max = cells.rowid_max.swap(false, Ordering::SeqCst);
    // Refused by the privileges when it was prepared.
    if let (Err(_), Some(e)) = (&r, cells.guard.take_denied()) {
        return failed(conn, e);
    }
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
        if !cells.guard.owns(&table) {
            return failed(
                conn,
                ExecError::new("42501", format!("must be owner of table {table}")),
            );
        }
        match cells
            .guard
            .unchecked(|| crate::rebuild::run(conn, &table, &op))
        {
            Ok(()) => {}
            Err(crate::rebuild::RebuildError::Exec(e)) => return failed(conn, e),
            Err(crate::rebuild::RebuildError::Sqlite(e)) => return failed(conn, classify(e)?),
        }
    }
    if stmt.effect == crate::command::Effect::Sequences {
        crate::sequences::refresh(conn, &cells.sequences)
            .map_err(|e| Fatal(format!("reload sequences: {e}")))?;
    }
    Ok(Ok(r))
}

/// Runs the statements of a read until one fails. A read's rows go to its client only, so it
/// gets a read's result limit, not the entry's.
pub(crate) fn run_read(
    conn: &Connection,
    statements: &[Statement],
    cells: &Cells,
) -> Result<StepResult, Stop> {
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
    *cells.room.lock().unwrap_or_else(|p| p.into_inner()) = room;
    last
}

/// Runs one transaction step. A failing `Sql` step is undone alone and its error is the
/// result; the transaction goes on (the client decides, with `ROLLBACK TO`).
pub(crate) fn run_step(
    conn: &Connection,
    step: &TxnStep,
    cells: &Cells,
) -> Result<StepResult, Stop> {
    let control = |sql: String| -> Result<StepResult, Stop> {
        match exec_fixed(conn, &sql) {
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
        TxnStep::Read(statements) => run_read(conn, statements, cells),
        TxnStep::Sql(statements) => {
            let f = |what: &'static str| move |e: rusqlite::Error| Fatal(format!("{what}: {e}"));
            exec_fixed(conn, &format!("SAVEPOINT {STATEMENT_SAVEPOINT}"))
                .map_err(f("statement savepoint"))?;
            let mut last = Ok(StatementResult::default());
            for (i, s) in statements.iter().enumerate() {
                last = run_statement(conn, s, cells)?;
                if i + 1 == statements.len() {
                    last = last.and_then(|r| loose_keys_hold(conn).map(|()| r));
                }
                if last.is_err() {
                    exec_fixed(conn, &format!("ROLLBACK TO {STATEMENT_SAVEPOINT}"))
                        .map_err(f("undo failed statement"))?;
                    if statements
                        .iter()
                        .any(|s| s.effect == crate::command::Effect::Sequences)
                    {
                        refresh_sequences()?;
                    }
                    break;
                }
            }
            exec_fixed(conn, &format!("RELEASE {STATEMENT_SAVEPOINT}"))
                .map_err(f("release statement savepoint"))?;
            Ok(last)
        }
    }
}

/// Foreign keys are off on a connection only for a command that rebuilds a table
/// (`Command::rebuilds_tables`): then each step of a transaction is checked when it ends, as
/// PostgreSQL checks a statement, and a step that leaves a row without its parent fails with
/// 23503 (and is undone). Actions (`ON DELETE CASCADE`, `SET NULL`) do not run meanwhile: a
/// statement that needs one fails instead.
fn loose_keys_hold(conn: &Connection) -> Result<(), ExecError> {
    let check = |conn: &Connection| -> rusqlite::Result<i64> {
        conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
    };
    match foreign_keys_enforced(conn).and_then(|on| if on { Ok(0) } else { check(conn) }) {
        Ok(0) => Ok(()),
        Ok(_) => Err(ExecError::new(
            "23503",
            "the statement leaves rows that violate a foreign key constraint",
        )),
        Err(e) => Err(crate::error::sqlstate_of(&e)),
    }
}

/// Whether the connection enforces foreign keys (`PRAGMA foreign_keys`); asked for every
/// step of a block, so the statement is kept prepared.
pub(crate) fn foreign_keys_enforced(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("PRAGMA foreign_keys")?
        .query_row([], |r| r.get::<_, i64>(0))
        .map(|v| v == 1)
}

/// The hash of one step's result: what the client saw of it. Row counts, rows and SQLSTATEs;
/// not messages, which may name the node.
pub(crate) fn result_hash(r: &StepResult) -> [u8; 32] {
    let canonical = match r {
        Ok(r) => serde_json::json!({"n": r.rows_affected, "rows": r.rows}),
        Err(e) => serde_json::json!({"err": e.sqlstate}),
    };
    Sha256::digest(canonical.to_string().as_bytes()).into()
}

/// The digest of a block: SHA-256 over the hashes of its steps' results, in order, as hex.
pub(crate) fn digest_of<'a>(hashes: impl IntoIterator<Item = &'a [u8; 32]>) -> String {
    let mut d = Sha256::new();
    for h in hashes {
        d.update(h);
    }
    d.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs step `n` of a block again, giving `nextval` the values it drew when it first ran
/// (`values`: all of the block's). A step that asks for other values, or fewer, returns
/// 40001: what it does now differs from what its client saw.
pub(crate) fn replay_step(
    conn: &Connection,
    n: usize,
    step: &TxnStep,
    values: &[SeqValue],
    cells: &Cells,
) -> Result<StepResult, Stop> {
    let mine = values.iter().filter(|v| v.step as usize == n).cloned();
    let (r, draw) = run_step_drawing(conn, step, cells, Draw::Replay(mine.collect()));
    let r = r?;
    match draw {
        Draw::Replay(left) if !left.is_empty() => Ok(Err(ExecError::new(
            "40001",
            "could not serialize access: the statement asks sequences for fewer values than when it first ran",
        ))),
        _ => Ok(r),
    }
}

/// Runs a step with `nextval` taking its values as `draw` says, and returns the step's result
/// and what is left of `draw` (the values it drew, or did not).
pub(crate) fn run_step_drawing(
    conn: &Connection,
    step: &TxnStep,
    cells: &Cells,
    draw: Draw,
) -> (Result<StepResult, Stop>, Draw) {
    let sequences = || cells.sequences.lock().unwrap_or_else(|p| p.into_inner());
    sequences().draw = draw;
    let r = run_step(conn, step, cells);
    (r, std::mem::take(&mut sequences().draw))
}

/// Replays the steps of a committed transaction on the apply connection and returns the
/// digest of their results, to compare with the one its client saw.
pub(crate) fn replay_digest(
    conn: &Connection,
    record: &TxnRecord,
    cells: &Cells,
) -> Result<String, Stop> {
    let mut hashes = Vec::with_capacity(record.steps.len());
    for (n, step) in record.steps.iter().enumerate() {
        hashes.push(result_hash(&replay_step(
            conn,
            n,
            step,
            &record.values,
            cells,
        )?));
    }
    Ok(digest_of(&hashes))
}

/// Opens a writable connection to the state database: the apply thread's, or the one for
/// transaction blocks.
/// Both are set up identically (functions, hooks, limits, planner settings), so a statement
/// computes the same rows and takes the same steps on either. `stop` lets the owner interrupt
/// a running statement (blocks); the step budget in `cells` can too.
pub(crate) fn open_writer(
    path: &Path,
    cells: &Cells,
    stop: impl Fn() -> bool + Send + 'static,
) -> Result<Connection, Fatal> {
    let mut conn = Connection::open(path).map_err(fatal("open state database"))?;
    // WAL lets read connections run beside the writer. synchronous=NORMAL: a commit is not
    // fsynced until the next checkpoint, so power loss may drop the last applied batches; the
    // applied index lives in the same transactions and drops with them, and Raft re-applies
    // those entries from its fsynced log at start-up. A process crash (kill -9) loses nothing.
    // journal_size_limit: once a checkpoint has copied the WAL back and readers have moved on,
    // the WAL file is cut back to this size instead of keeping its largest size forever.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA recursive_triggers = ON;
         PRAGMA journal_size_limit = {WAL_KEPT_BYTES};"
    ))
    .map_err(fatal("configure state database"))?;
    // Plans must not depend on the values bound to a statement, or on what an earlier
    // execution bound: the query planner stability guarantee.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(fatal("configure query planner"))?;
    crate::limits::configure(&conn).map_err(fatal("set limits"))?;
    conn.set_prepared_statement_cache_capacity(256);
    determinism::install(&conn, cells.stamp.clone())
        .map_err(fatal("register deterministic functions"))?;
    crate::functions::install(&conn, &cells.stamp).map_err(fatal("register functions"))?;
    meta::create(&conn).map_err(fatal("create metadata table"))?;
    crate::sequences::create_table(&conn).map_err(fatal("create sequences table"))?;
    crate::sequences::install(&conn, cells.sequences.clone())
        .map_err(fatal("register sequence functions"))?;
    crate::rebuild::install(&conn, cells.rebuild.clone())
        .map_err(fatal("register rebuild function"))?;
    crate::limits::install_handler(&mut conn, cells.budget.clone(), stop)
        .map_err(fatal("install progress handler"))?;
    let (rowid_max, written, rows, guard) = (
        cells.rowid_max.clone(),
        cells.written.clone(),
        cells.rows.clone(),
        cells.guard.clone(),
    );
    crate::privileges::install(&conn, &cells.guard).map_err(fatal("register role functions"))?;
    let touched = guard.clone();
    conn.update_hook(Some(
        move |action: Action, _db: &str, table: &str, rowid: i64| {
            if rowid == i64::MAX && matches!(action, Action::SQLITE_INSERT | Action::SQLITE_UPDATE)
            {
                rowid_max.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            written.note(table);
            rows.note(action, table, rowid);
            if crate::privileges::is_privilege_table(table) {
                touched
                    .touched
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
    ))
    .map_err(fatal("install update hook"))?;
    let read = cells.read.clone();
    conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
        if let rusqlite::hooks::AuthAction::Read { table_name, .. } = ctx.action {
            read.note(table_name);
        }
        guard.decide(&ctx)
    }))
    .map_err(fatal("install authorizer"))?;
    Ok(conn)
}

/// Size the WAL file is cut back to after a checkpoint (`journal_size_limit`).
const WAL_KEPT_BYTES: u64 = 64 * 1024 * 1024;
