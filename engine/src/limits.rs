//! Limits on what one log entry may make a replica do, and the SQLite settings that make the
//! work of a statement the same on every replica.
//!
//! Every replica applies every entry, so an entry that runs forever stalls them all, and an
//! entry that fails on one replica but not on another splits them. Every limit here is
//! therefore counted in units that are the same on every replica: SQLite virtual-machine steps
//! (not time), bytes of values and results (not memory in use). A statement over a limit fails
//! with the same SQLSTATE everywhere (`docs/determinism.md`, `docs/reliability.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::limits::Limit;
use rusqlite::Connection;

/// SQLite virtual-machine steps one log entry may take, all its statements together (a
/// transaction block's steps count as one entry). Measured on this project's machines SQLite
/// runs 35–100 million steps a second; inserting a million rows with `INSERT ... SELECT` takes
/// about 27 million steps and updating a million rows about 9 million, so a metadata workload,
/// migrations included, stays below. A statement over it costs every replica at most about
/// one second of apply time (during which the replica applies nothing else), then fails with
/// 54000 on every replica.
pub const ENTRY_VM_STEPS_MAX: u64 = 50_000_000;

/// SQLite calls the budget check every this many virtual-machine steps: often enough to stop
/// a runaway statement within a fraction of a millisecond, rarely enough to cost nothing.
pub(crate) const BUDGET_CHECK_STEPS: i32 = 10_000;

/// Largest value (text, blob, or a whole row as SQLite encodes it) a statement may create:
/// `SQLITE_LIMIT_LENGTH`. A metadata store keeps small values; 16 MiB is far above a JSON
/// document of configuration and bounds the memory one expression can allocate (SQLite checks
/// the limit before it allocates). Over it: 54000 (`string or blob too big`).
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Bytes of result rows (values as stored, see [`value_bytes`]) one log entry may return,
/// `RETURNING` and the `SELECT`s of a multi-statement write together. The rows travel to the
/// proposing node in one cluster frame (64 MiB): in the frame's JSON a byte of a blob takes up
/// to four bytes and a byte of text up to six, so 8 MiB always fits. Over it: 54000.
pub const ENTRY_RESULT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Bytes of result rows one read may collect before it is sent. Reads are answered by the
/// node the client is connected to and never travel between nodes; the limit bounds the
/// memory one query can pin (rows are collected before they are sent). Over it: 54000.
pub const READ_RESULT_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Deepest expression SQLite compiles (`SQLITE_LIMIT_EXPR_DEPTH`). The SQL layer already
/// refuses Postgres statements nested deeper than its parser limit (200); translation adds a
/// few levels.
const EXPR_DEPTH_MAX: i32 = 400;

/// Terms of one compound `SELECT` (`UNION` ...). SQLite's default; named so the limit is
/// explicit and the same on every build.
const COMPOUND_SELECT_MAX: i32 = 500;

/// Nested trigger levels. Triggers are created only by the translator (boolean columns); a
/// user cannot create them.
const TRIGGER_DEPTH_MAX: i32 = 32;

/// Longest `LIKE` pattern: SQLite's default, named.
const LIKE_PATTERN_BYTES_MAX: i32 = 50_000;

/// Bound parameters of one statement: SQLite's default. The wire protocol allows 65,535; the
/// log's entry size limit allows far fewer in practice.
const VARIABLES_MAX: i32 = 32_766;

/// The work budget of the entry being applied (or of a transaction block's replay): the steps its
/// finished statements took, and a running estimate for the statement in progress. Shared with
/// the connection's progress handler.
///
/// The check is exact and the same on every replica: a statement's steps are read from SQLite
/// when it finishes ([`Budget::finish_statement`]); while it runs, the handler counts one
/// call per [`BUDGET_CHECK_STEPS`] steps, which never overestimates the steps taken, so a
/// statement is stopped early only if it would have gone over the budget anyway.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Steps of the entry's finished statements.
    used: AtomicU64,
    /// The entry's budget.
    max: AtomicU64,
    /// Handler calls while the current statement runs.
    calls: AtomicU64,
    /// Whether a user statement is running: internal statements (sequences, metadata) are not
    /// charged, so that only what the entry asked for counts.
    active: AtomicBool,
    /// Set when the budget ran out.
    exceeded: AtomicBool,
}

impl Budget {
    /// Starts an entry with `max` steps.
    pub(crate) fn start_entry(&self, max: u64) {
        self.used.store(0, Ordering::SeqCst);
        self.max.store(max, Ordering::SeqCst);
        self.calls.store(0, Ordering::SeqCst);
        self.active.store(false, Ordering::SeqCst);
        self.exceeded.store(false, Ordering::SeqCst);
    }

    /// Raises the entry's budget to `max` if it is below (a transaction block that grew).
    pub(crate) fn raise_max(&self, max: u64) {
        self.max.fetch_max(max, Ordering::SeqCst);
    }

    /// A user statement starts: its steps are charged until [`Budget::finish_statement`].
    pub(crate) fn start_statement(&self) {
        self.calls.store(0, Ordering::SeqCst);
        self.active.store(true, Ordering::SeqCst);
    }

    /// The statement ended after `steps` virtual-machine steps (SQLite's exact count). Returns
    /// whether the entry is still within its budget.
    pub(crate) fn finish_statement(&self, steps: u64) -> bool {
        self.active.store(false, Ordering::SeqCst);
        let used = self.used.fetch_add(steps, Ordering::SeqCst) + steps;
        if used > self.max.load(Ordering::SeqCst) {
            self.exceeded.store(true, Ordering::SeqCst);
        }
        !self.exceeded.load(Ordering::SeqCst)
    }

    /// Called by the progress handler: whether the running statement must stop.
    pub(crate) fn tick(&self) -> bool {
        if !self.active.load(Ordering::Relaxed) {
            return false;
        }
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        let estimate = self.used.load(Ordering::Relaxed) + calls * BUDGET_CHECK_STEPS as u64;
        if estimate > self.max.load(Ordering::Relaxed) {
            self.exceeded.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// Whether the entry went over its budget.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::SeqCst)
    }

    /// The entry's budget.
    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }

    /// Steps charged so far, to give back the steps of a read inside a transaction.
    pub(crate) fn save(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Returns the charged steps to a value from [`Budget::save`].
    pub(crate) fn restore(&self, saved: u64) {
        self.used.store(saved, Ordering::SeqCst);
        self.exceeded.store(saved > self.max(), Ordering::SeqCst);
    }
}

/// The error of an entry over its step budget.
pub(crate) fn budget_error(max: u64) -> crate::ExecError {
    crate::ExecError {
        sqlstate: crate::SqlState::new("54000"),
        message: format!("statement exceeded the work limit of one log entry ({max} SQLite steps)"),
        detail: Some(
            "Every replica applies every write, so a write may only do a bounded amount of work; \
             split it into smaller writes."
                .into(),
        ),
    }
}

/// The bytes a result value counts for against the result limits: its stored size.
pub(crate) fn value_bytes(v: &crate::Value) -> usize {
    match v {
        crate::Value::Null => 1,
        crate::Value::Integer(_) | crate::Value::Real(_) => 8,
        crate::Value::Text(t) => t.len(),
        crate::Value::Blob(b) => b.len(),
    }
}

/// The error of a statement whose result rows went over `max` bytes.
pub(crate) fn result_too_big(max: usize) -> crate::ExecError {
    crate::ExecError::new(
        "54000",
        format!("the result of the statement is larger than {max} bytes"),
    )
}

/// Shared by every connection to the state database: SQLite's own limits, set to the named
/// values above so that they are explicit and the same on every build; and no double-quoted
/// string literals, so that `"name"` is always an identifier, as in PostgreSQL (SQLite would
/// read a quoted name that is no column as the string `'name'`, and answer a misspelt column
/// with its name instead of 42703).
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::config::DbConfig;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DML, false)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DQS_DDL, false)?;
    for (limit, value) in [
        (Limit::SQLITE_LIMIT_LENGTH, VALUE_BYTES_MAX as i32),
        (Limit::SQLITE_LIMIT_EXPR_DEPTH, EXPR_DEPTH_MAX),
        (Limit::SQLITE_LIMIT_COMPOUND_SELECT, COMPOUND_SELECT_MAX),
        (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, TRIGGER_DEPTH_MAX),
        (
            Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
            LIKE_PATTERN_BYTES_MAX,
        ),
        (Limit::SQLITE_LIMIT_VARIABLE_NUMBER, VARIABLES_MAX),
    ] {
        conn.set_limit(limit, value)?;
    }
    Ok(())
}

thread_local! {
    /// The budget of a probe running on this thread (`ReadView::probe`). Read connections are
    /// shared by every read; a probe's steps are charged only while it runs, on the thread
    /// that steps its statement, which is where SQLite calls the progress handler.
    static PROBE_BUDGET: std::cell::RefCell<Option<Arc<Budget>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with `budget` as this thread's probe budget.
pub(crate) fn with_probe_budget<T>(budget: &Arc<Budget>, f: impl FnOnce() -> T) -> T {
    PROBE_BUDGET.with(|b| *b.borrow_mut() = Some(budget.clone()));
    let r = f();
    PROBE_BUDGET.with(|b| *b.borrow_mut() = None);
    r
}

/// Installs the progress handler of a read connection: it stops a probe that goes over its
/// budget, and does nothing for other reads (their bound is `statement_timeout`).
pub(crate) fn install_read_handler(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.progress_handler(
        BUDGET_CHECK_STEPS,
        Some(|| PROBE_BUDGET.with(|b| b.borrow().as_ref().is_some_and(|b| b.tick()))),
    )
}

/// Installs the progress handler of a writable connection: it stops the running statement when
/// the budget runs out or when `stop` says so (on the writer connection for blocks: the apply
/// thread needs the database, or the statement was cancelled).
pub(crate) fn install_handler(
    conn: &mut Connection,
    budget: Arc<Budget>,
    stop: impl Fn() -> bool + Send + 'static,
) -> rusqlite::Result<()> {
    conn.progress_handler(BUDGET_CHECK_STEPS, Some(move || budget.tick() || stop()))
}
