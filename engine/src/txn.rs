//! Interactive transaction blocks. A block is data kept by its session ([`Block`]): its stamp,
//! the steps it ran and the hashes of the results its client saw. Each new statement runs on
//! the node's writer connection ([`BlockWriter`]) inside a short SQLite transaction that first
//! replays the block's earlier steps on the latest applied state, checking that each returns
//! what it returned before, and that is rolled back afterwards (or kept open for the block's
//! next statement while nothing else needs the connection). Nothing is held while a client
//! thinks. At `COMMIT` the steps and the digest of their results go into the log; every replica
//! replays them at the entry's position through the same [`run_step`] and applies them only
//! if the digest matches. Design: `docs/transactions.md`.
//!
//! The apply thread never waits for a block: before it applies a batch it rolls back whatever
//! the writer connection holds and interrupts a statement running on it
//! ([`BlockWriter::hold_for_apply`]); that statement runs again after the batch.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, InterruptHandle};

use crate::command::{LogIndex, SeqValue, Stamp, Statement, TxnRecord, TxnStep};
use crate::error::{ExecError, Fatal};
use crate::exec::StatementResult;
use crate::meta;
use crate::rowlocks::{Row, RowHold, RowLocks, WaitError, ROW_LOCKS_PER_BLOCK_MAX};
use crate::sequences::{Draw, ReservedValues};
use crate::staged::{step_size_bound, txn_vm_steps_max, TxnSize, TXN_BYTES_MAX};
use crate::step::{
    digest_of, replay_step, result_hash, run_read, run_step, run_step_drawing, Cells, StepResult,
    Stop,
};

/// How many times a block's statement starts over after the apply thread interrupted it
/// (each time after the batch that interrupted it was applied) before it fails with 40001.
/// An interruption costs the statement its replay, microseconds for a metadata transaction;
/// only a statement that runs longer than the time between apply batches, batch after
/// batch, meets this limit.
pub const STATEMENT_ATTEMPTS_MAX: u32 = 16;

/// After this many interruptions, a block's statement runs once more with the apply thread
/// waiting for it instead of interrupting it, so that a statement longer than the time
/// between apply batches (a large COPY, or any statement after one, which replays it) still
/// runs, while other sessions write. The apply thread then waits for at most one statement,
/// bounded by the block's work budget.
pub const UNINTERRUPTED_AFTER: u32 = 4;

/// Numbers blocks within this process, so the writer connection knows whose steps it holds.
static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);

/// The replicated part of a transaction block, kept by its session between statements: the
/// stamp, the steps whose results the client saw, and the hashes of those results.
#[derive(Debug)]
pub struct Block {
    id: u64,
    stamp: Stamp,
    steps: Vec<TxnStep>,
    seen: Vec<[u8; 32]>,
    /// The values `nextval` gave the steps.
    values: Vec<SeqValue>,
    /// Sequences that do not exist outside the block (it created them): `nextval` draws from
    /// their rows, not from values reserved for the node.
    local: HashSet<String>,
    /// Tables the block's steps wrote rows of.
    written: HashSet<String>,
    /// The log entries its steps take.
    size: TxnSize,
    /// The rows it holds (`rowlocks.rs`), from its first held row on.
    rows: Option<RowHold>,
    /// Rows its steps touched that another block held, with that block: a recorded read of
    /// such a row's table waits until the holder ended.
    depends: HashMap<Row, u64>,
    /// The role its steps run as; `None` for a superuser.
    role: Option<String>,
}

impl Block {
    /// A block that has run nothing yet; every step runs with `stamp`, as `role` (`None`: a
    /// superuser).
    pub fn new(stamp: Stamp, role: Option<String>) -> Block {
        Block {
            id: NEXT_BLOCK.fetch_add(1, Ordering::Relaxed),
            stamp,
            steps: Vec::new(),
            seen: Vec::new(),
            values: Vec::new(),
            local: Default::default(),
            written: Default::default(),
            size: TxnSize::default(),
            rows: None,
            depends: HashMap::new(),
            role,
        }
    }

    /// Takes the block's row locks out of it, so that they stay held until the returned value
    /// is dropped: at `COMMIT`, until the commit is applied on this node.
    pub fn hold_rows(&mut self) -> Option<RowHold> {
        self.rows.take()
    }

    /// Marks `sequence` as one that exists only inside the block (no values of it can be
    /// reserved).
    pub fn mark_local(&mut self, sequence: String) {
        self.local.insert(sequence);
    }

    /// The block's time and seed.
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Whether the block ran a statement that may write: only then has it anything to
    /// replicate.
    pub fn writes(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, TxnStep::Sql(_)))
    }

    /// Records a step that ran elsewhere (a read on the block's held read view) with the
    /// result its client got.
    pub fn record(&mut self, step: TxnStep, result: &StepResult) {
        self.record_hash(step, result_hash(result));
    }

    fn record_hash(&mut self, step: TxnStep, seen: [u8; 32]) {
        self.seen.push(seen);
        self.size.add(step_size_bound(&step));
        self.steps.push(step);
    }

    /// The block's work budget with `next` added to its steps: one entry's budget for each
    /// entry the steps take, as at apply ([`txn_vm_steps_max`]).
    fn vm_steps_max(&self, next: &[TxnStep]) -> u64 {
        let mut size = self.size;
        for step in next {
            size.add(step_size_bound(step));
        }
        txn_vm_steps_max(crate::limits::ENTRY_VM_STEPS_MAX, size)
    }

    /// What to propose at `COMMIT`.
    pub fn finish(self) -> TxnRecord {
        TxnRecord {
            stamp: self.stamp,
            digest: digest_of(&self.seen),
            steps: self.steps,
            values: self.values,
            staged: None,
            role: self.role,
        }
    }
}

/// Why a block's statement did not run.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// What the block saw no longer holds on the latest state (or the statement could not
    /// run for the apply thread): the block can never commit, and must be retried (40001).
    #[error("{0}")]
    Conflict(String),
    /// The statement was cancelled (its client asked, or its statement timeout passed). It
    /// was not recorded; the block is as it was before it.
    #[error("canceling statement due to user request")]
    Cancelled,
    /// A statement failed in a way that ends the whole transaction (its step budget ran out, a
    /// row id reached its maximum, SQLite rolled the transaction back): it can only be rolled
    /// back. Replaying it would end the same way on every replica.
    #[error(transparent)]
    Aborted(ExecError),
    /// The statement needs a value of this sequence and none is reserved for the node: the
    /// caller reserves some (an ordinary entry calling [`crate::RESERVE_FUNCTION`]) and runs
    /// the statement again. Nothing was recorded.
    #[error("no values of sequence \"{0}\" are reserved on this node")]
    NeedValues(String),
    /// The node failed.
    #[error(transparent)]
    Fatal(#[from] Fatal),
}

/// Why one attempt at a block's statement ended without a result.
enum Attempt {
    /// The apply thread or a cancel stopped it.
    Interrupted,
    /// Step `n` (from 0) returned something else than its client saw.
    Changed(usize),
    /// No values of this sequence are reserved for the node.
    NeedValues(String),
    /// The block must wait until this block ended, then run the statement again.
    Wait(u64),
    Stop(Stop),
}

impl From<Stop> for Attempt {
    fn from(s: Stop) -> Attempt {
        Attempt::Stop(s)
    }
}

impl From<Fatal> for Attempt {
    fn from(f: Fatal) -> Attempt {
        Attempt::Stop(Stop::Fatal(f))
    }
}

/// What a block asks of the writer connection.
#[derive(Clone)]
pub enum Work {
    /// Run a step and record it in the block.
    Record(TxnStep),
    /// Run steps one after another in one go, recording each, up to the first that fails (a
    /// COPY's inserts): one replay for all of them. The result is the sum of their row counts,
    /// or the failed step's error.
    Steps(Vec<TxnStep>),
    /// A `READ COMMITTED` read after the block's first write. If it reads a table the block
    /// wrote rows of, it is recorded as a [`TxnStep::Read`] (checked at `COMMIT`): what a
    /// client sees of its own writes is what commits, as a row lock makes it in PostgreSQL.
    /// Otherwise it is not recorded: it changes nothing, it draws randomness of its own, and
    /// the steps it uses are given back.
    Read(Vec<Statement>),
    /// Describe a statement against the block's state.
    Describe(Statement),
}

impl Work {
    /// The steps the work adds to the block (none for reads and descriptions).
    fn steps(&self) -> &[TxnStep] {
        match self {
            Work::Record(step) => std::slice::from_ref(step),
            Work::Steps(steps) => steps,
            Work::Read(_) | Work::Describe(_) => &[],
        }
    }
}

/// What the writer connection did for a block.
#[derive(Debug)]
pub enum Done {
    /// The result of a step or a read.
    Ran(StepResult),
    /// The columns and parameter count of a described statement, or why it cannot run.
    Described(Result<(Vec<crate::exec::Column>, usize), ExecError>),
}

struct WriterInner {
    path: PathBuf,
    /// The writer connection for blocks, opened on first use, closed when a snapshot is
    /// installed.
    conn: Option<Connection>,
    cells: Cells,
    /// The block whose first `n` steps the connection's open SQLite transaction holds, and the
    /// applied index of the state under them. The next statement of that block goes on from
    /// there; anything else rolls it back first.
    open: Option<Open>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Open {
    block: u64,
    steps: usize,
    applied: Option<LogIndex>,
}

/// Identifies one statement of a block while it runs, so it can be cancelled (and only it).
#[derive(Clone, Default)]
pub struct Ticket(Arc<AtomicBool>);

/// The node's writer connection for transaction blocks: a second writable connection to the
/// state database, used by one block statement at a time, each for as long as its replay and
/// its statement take.
pub struct BlockWriter {
    inner: Mutex<WriterInner>,
    /// Interrupts the statement running on the connection.
    interrupt: Mutex<Option<InterruptHandle>>,
    /// The apply thread wants the connection: a running statement stops (also one between the
    /// SQLite statements of a step, where an interrupt alone would be lost: the connection's
    /// progress handler reads this flag).
    apply_wants: Arc<AtomicBool>,
    /// The running statement was cancelled; read by the progress handler too.
    cancel_running: Arc<AtomicBool>,
    /// The running statement is not to be interrupted by the apply thread, which waits for it
    /// ([`UNINTERRUPTED_AFTER`]); read by the progress handler too. Set and read under the lock
    /// of `interrupt`.
    protected: Arc<AtomicBool>,
    /// Sequence values reserved for this node's blocks.
    reserved: Arc<ReservedValues>,
    /// The ticket of the running statement.
    running: Mutex<Option<Ticket>>,
    /// The rows the node's blocks hold.
    locks: Arc<RowLocks>,
}

impl BlockWriter {
    pub(crate) fn new(path: PathBuf) -> BlockWriter {
        BlockWriter {
            inner: Mutex::new(WriterInner {
                path,
                conn: None,
                cells: Cells::default(),
                open: None,
            }),
            interrupt: Mutex::new(None),
            apply_wants: Arc::new(AtomicBool::new(false)),
            cancel_running: Arc::new(AtomicBool::new(false)),
            protected: Arc::new(AtomicBool::new(false)),
            running: Mutex::new(None),
            reserved: Arc::default(),
            locks: Arc::default(),
        }
    }

    /// Adds values reserved for this node's blocks: the text `first increment count` that
    /// [`crate::RESERVE_FUNCTION`] returned for `sequence`.
    pub fn add_reserved(&self, sequence: &str, reserved: &str) -> Result<(), Fatal> {
        let n: Vec<i64> = reserved
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| Fatal(format!("reserved values {reserved:?}: {e}")))?;
        let [first, increment, count] = n[..] else {
            return Err(Fatal(format!("reserved values {reserved:?}")));
        };
        self.reserved.add(sequence, first, increment, count);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, WriterInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn interrupt_now(&self) {
        if let Some(h) = self
            .interrupt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
    }

    /// Rolls back what the writer connection holds for a block, interrupting a statement
    /// running on it, and keeps blocks out until the guard is dropped. Called by the apply
    /// thread before it writes, and by snapshot installation (`close` = true: the connection
    /// is closed, because it would keep the old file open). The interrupted statement starts
    /// over once the guard is dropped.
    pub(crate) fn hold_for_apply(&self, close: bool) -> WriterHold<'_> {
        self.apply_wants.store(true, Ordering::SeqCst);
        {
            // A protected statement is waited for, not interrupted (`UNINTERRUPTED_AFTER`).
            let handle = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
            if !self.protected.load(Ordering::SeqCst) {
                if let Some(h) = handle.as_ref() {
                    h.interrupt();
                }
            }
        }
        let mut inner = self.lock();
        Self::drop_open(&mut inner);
        self.apply_wants.store(false, Ordering::SeqCst);
        if close {
            inner.conn = None;
            *self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        WriterHold { _inner: inner }
    }

    /// Cancels the statement that runs (or will run) with `ticket`: it fails with
    /// [`BlockError::Cancelled`] and is not recorded.
    pub fn cancel(&self, ticket: &Ticket) {
        ticket.0.store(true, Ordering::SeqCst);
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(&r.0, &ticket.0))
        {
            self.cancel_running.store(true, Ordering::SeqCst);
            self.interrupt_now();
        }
    }

    /// Forgets what the writer connection holds for `block` (the block ended).
    pub fn forget(&self, block: &Block) {
        let mut inner = self.lock();
        if inner.open.is_some_and(|o| o.block == block.id) {
            Self::drop_open(&mut inner);
        }
    }

    /// Does `work` for `block` on the latest applied state: replays the block's steps (each
    /// must return what its client saw, or the block conflicts), then runs the work. Returns
    /// what it did and the applied index of the state it ran on. A statement the apply thread
    /// interrupts starts over after the apply, up to [`STATEMENT_ATTEMPTS_MAX`] times.
    pub fn run(
        &self,
        block: &mut Block,
        work: Work,
        ticket: &Ticket,
    ) -> Result<(Done, Option<LogIndex>), BlockError> {
        let adds = work.steps();
        if !adds.is_empty() {
            let total = adds.iter().fold(block.size.total, |t, s| {
                t.saturating_add(step_size_bound(s))
            });
            if total > TXN_BYTES_MAX {
                let mut e = ExecError::new(
                    "54000",
                    format!("this transaction would take up to {total} bytes in the log; the limit is {TXN_BYTES_MAX}"),
                );
                e.detail = Some("Split the work into several transactions.".into());
                return Err(BlockError::Aborted(e));
            }
        }
        self.retake(block);
        let mut interrupted = 0;
        loop {
            if ticket.0.load(Ordering::SeqCst) {
                return Err(BlockError::Cancelled);
            }
            let mut inner = self.lock();
            let protect = interrupted >= UNINTERRUPTED_AFTER;
            {
                // Decided under the interrupt handle's lock, which the apply thread takes to
                // decide whether to interrupt.
                let _handle = self.interrupt.lock().unwrap_or_else(|p| p.into_inner());
                if self.apply_wants.load(Ordering::SeqCst) {
                    // The apply thread is about to take the connection: let it.
                    drop(_handle);
                    drop(inner);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    continue;
                }
                self.protected.store(protect, Ordering::SeqCst);
            }
            *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(ticket.clone());
            self.cancel_running
                .store(ticket.0.load(Ordering::SeqCst), Ordering::SeqCst);
            let r = self.attempt(&mut inner, block, &work);
            if block.rows.is_none() && self.locks.live(block.id) {
                block.rows = Some(RowHold::new(self.locks.clone(), block.id));
            }
            let stopped = (self.apply_wants.load(Ordering::SeqCst) && !protect)
                || self.cancel_running.load(Ordering::SeqCst);
            self.protected.store(false, Ordering::SeqCst);
            *self.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.cancel_running.store(false, Ordering::SeqCst);
            let r = match r {
                // A statement that was stopped may have failed for that reason alone.
                Err(_) | Ok(_) if stopped => Err(Attempt::Interrupted),
                r => r,
            };
            match r {
                Ok((done, applied, recorded)) => {
                    for Recorded {
                        step,
                        seen,
                        drawn,
                        written,
                        local,
                        depends,
                    } in recorded
                    {
                        block.local.extend(local);
                        if block.depends.len() < ROW_LOCKS_PER_BLOCK_MAX {
                            block.depends.extend(depends);
                        }
                        let n = block.steps.len() as u32;
                        block
                            .values
                            .extend(drawn.into_iter().map(|v| SeqValue { step: n, ..v }));
                        block.written.extend(written);
                        block.record_hash(step, seen);
                    }
                    if let Some(o) = inner.open.as_mut() {
                        o.steps = block.steps.len();
                    }
                    return Ok((done, applied));
                }
                Err(e) => {
                    Self::drop_open(&mut inner);
                    match e {
                        Attempt::Interrupted if ticket.0.load(Ordering::SeqCst) => {
                            return Err(BlockError::Cancelled)
                        }
                        Attempt::Interrupted => {
                            interrupted += 1;
                            if interrupted >= STATEMENT_ATTEMPTS_MAX {
                                return Err(BlockError::Conflict(format!(
                                    "the statement was interrupted {interrupted} times by concurrent writes being applied on this node"
                                )));
                            }
                        }
                        Attempt::Changed(n) => {
                            return Err(BlockError::Conflict(format!(
                                "statement {} of this transaction now returns different results: a concurrent write changed the data it read",
                                n + 1
                            )))
                        }
                        Attempt::NeedValues(sequence) => {
                            return Err(BlockError::NeedValues(sequence))
                        }
                        Attempt::Wait(holder) => {
                            // Registered while the connection is held: two blocks that wait
                            // for each other find the cycle.
                            let entered = self.locks.enter_wait(block.id, holder);
                            drop(inner);
                            let cancelled = || ticket.0.load(Ordering::SeqCst);
                            match entered.and_then(|()| self.locks.wait(block.id, cancelled)) {
                                Ok(()) => self.retake(block),
                                Err(WaitError::Cancelled) => return Err(BlockError::Cancelled),
                                Err(WaitError::Deadlock) => {
                                    let mut e = ExecError::new("40P01", "deadlock detected");
                                    e.detail = Some(
                                        "Two transactions on this node each wait for a row the other changed; this one was chosen to fail."
                                            .into(),
                                    );
                                    return Err(BlockError::Aborted(e));
                                }
                            }
                        }
                        Attempt::Stop(Stop::Abort(e)) => return Err(BlockError::Aborted(e)),
                        Attempt::Stop(Stop::Fatal(f)) => return Err(f.into()),
                    }
                }
            }
        }
    }

    /// Takes the rows the block depends on whose holder ended: the block holds them now, or
    /// depends on the block that took them meanwhile.
    fn retake(&self, block: &mut Block) {
        let locks = &self.locks;
        if block.depends.is_empty() {
            return;
        }
        let ended = locks.ended(&block.depends);
        if ended.is_empty() {
            return;
        }
        for row in &ended {
            block.depends.remove(row);
        }
        block.depends.extend(locks.take(block.id, ended));
        if block.rows.is_none() && locks.live(block.id) {
            block.rows = Some(RowHold::new(locks.clone(), block.id));
        }
    }

    /// Rolls back whatever SQLite transaction the writer connection holds. If SQLite refuses,
    /// the connection is closed (closing rolls back), so the next statement never finds a
    /// transaction it did not begin.
    fn drop_open(inner: &mut WriterInner) {
        inner.open = None;
        if let Some(c) = &inner.conn {
            if !c.is_autocommit() {
                if let Err(e) = crate::step::exec_fixed(c, "ROLLBACK") {
                    tracing::warn!(error = %e, "rolling back a block's replay failed; reopening the writer connection");
                    inner.conn = None;
                }
            }
        }
    }

    /// One try: bring the connection to the block's state, then do the work.
    fn attempt(
        &self,
        inner: &mut WriterInner,
        block: &Block,
        work: &Work,
    ) -> Result<(Done, Option<LogIndex>, Vec<Recorded>), Attempt> {
        if inner.conn.is_none() {
            let (apply, cancel, protected) = (
                self.apply_wants.clone(),
                self.cancel_running.clone(),
                self.protected.clone(),
            );
            let conn = crate::step::open_writer(&inner.path, &inner.cells, move || {
                (apply.load(Ordering::Relaxed) && !protected.load(Ordering::Relaxed))
                    || cancel.load(Ordering::Relaxed)
            })?;
            *self.interrupt.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(conn.get_interrupt_handle());
            inner.conn = Some(conn);
        }
        let WriterInner {
            conn, cells, open, ..
        } = inner;
        let Some(conn) = conn.as_ref() else {
            return Err(Fatal("the writer connection is not open".into()).into());
        };
        // A block that rebuilds a table runs, from its first step, with foreign keys off and
        // checked after each step, as its entry will be applied (`Command::rebuilds_tables`);
        // every other block with them on. SQLite switches them only outside a transaction:
        // the connection's is rolled back and the block replayed in the new mode (a step whose
        // result then differs is a conflict, as any).
        let loose = block.steps.iter().any(TxnStep::rebuilds_tables)
            || matches!(work, Work::Record(step) if step.rebuilds_tables());
        let enforced = crate::step::foreign_keys_enforced(conn)
            .map_err(|e| Fatal(format!("read foreign-key mode: {e}")))?;
        if enforced == loose {
            *open = None;
            if !conn.is_autocommit() {
                crate::step::exec_fixed(conn, "ROLLBACK")
                    .map_err(|e| Fatal(format!("roll back a block's replay: {e}")))?;
            }
            let mode = if loose { "OFF" } else { "ON" };
            conn.execute_batch(&format!("PRAGMA foreign_keys = {mode}"))
                .map_err(|e| Fatal(format!("switch foreign keys {mode}: {e}")))?;
        }
        let here = open.filter(|o| {
            o.block == block.id && o.steps == block.steps.len() && !conn.is_autocommit()
        });
        let applied = match here {
            Some(o) => o.applied,
            None => {
                let held = open.take();
                if !conn.is_autocommit() {
                    if held.is_none() {
                        tracing::warn!(
                            "the block writer found a transaction nobody recorded; rolling it back"
                        );
                    }
                    crate::step::exec_fixed(conn, "ROLLBACK")
                        .map_err(|e| Fatal(format!("roll back a block's replay: {e}")))?;
                }
                let applied = replay(conn, cells, block)?;
                *open = Some(Open {
                    block: block.id,
                    steps: block.steps.len(),
                    applied,
                });
                applied
            }
        };
        // The budget grows with the block: the steps replayed so far got the budget of the
        // entries they take, the new one may take one more.
        cells.budget.raise_max(block.vm_steps_max(work.steps()));
        let mut recorded = Vec::new();
        let reads_own = match work {
            Work::Read(statements) => {
                let read = tables_read(conn, cells, block, statements);
                // A row it wrote that another live block holds: see that block's end first.
                if let Some((_, holder)) = block
                    .depends
                    .iter()
                    .find(|(row, h)| read.contains(&row.0) && self.locks.live(**h))
                {
                    return Err(Attempt::Wait(*holder));
                }
                read.iter().any(|t| block.written.contains(t))
            }
            _ => false,
        };
        let done = match work {
            Work::Read(statements) if reads_own => {
                let step = TxnStep::Read(statements.clone());
                let r = run_step(conn, &step, cells)?;
                recorded.push(Recorded {
                    seen: result_hash(&r),
                    step,
                    drawn: Vec::new(),
                    written: HashSet::new(),
                    local: HashSet::new(),
                    depends: Vec::new(),
                });
                Done::Ran(r)
            }
            Work::Record(step) => {
                let (r, rec) = self.run_recorded(conn, cells, block, step, &block.local)?;
                recorded.push(rec);
                Done::Ran(r)
            }
            Work::Steps(steps) => {
                let mut local = block.local.clone();
                let mut total = StatementResult::default();
                let mut failed = None;
                for step in steps {
                    let (r, rec) = self.run_recorded(conn, cells, block, step, &local)?;
                    local.extend(rec.local.iter().cloned());
                    recorded.push(rec);
                    match r {
                        Ok(r) => total.rows_affected += r.rows_affected,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                Done::Ran(failed.map_or(Ok(total), Err))
            }
            Work::Read(statements) => {
                let (stamp, steps) = (cells.stamp.save(), cells.budget.save());
                // Randomness of its own: the read is not replayed, and what it draws must not
                // be what the block's next step draws.
                cells.stamp.restore(crate::read::local_stamp().seed);
                let r = run_read(conn, statements, cells);
                cells.stamp.restore(stamp);
                cells.budget.restore(steps);
                Done::Ran(r?)
            }
            // Describing is not running: unchecked, as on a read connection (PostgreSQL checks
            // privileges when a statement runs, not when it is parsed).
            Work::Describe(stmt) => Done::Described(
                cells
                    .guard
                    .unchecked(|| crate::exec::describe(conn, stmt))
                    .map_err(|e| crate::error::sqlstate_of(&e)),
            ),
        };
        if let Done::Ran(_) = &done {
            if conn.is_autocommit() {
                // SQLite ended the transaction (it does for some failures): the next statement
                // replays from the start.
                *open = None;
            }
        }
        Ok((done, applied, recorded))
    }

    /// Runs one step of the block that is to be recorded, with the sequences in `local` drawn
    /// from their rows.
    fn run_recorded(
        &self,
        conn: &Connection,
        cells: &Cells,
        block: &Block,
        step: &TxnStep,
        local: &HashSet<String>,
    ) -> Result<(StepResult, Recorded), Attempt> {
        cells.written.start();
        cells.rows.start();
        let fresh = Draw::Fresh {
            reserved: self.reserved.clone(),
            local: local.clone(),
            drawn: Vec::new(),
            needs: None,
        };
        let (r, draw) = run_step_drawing(conn, step, cells, fresh);
        let written = cells.written.stop();
        let touched = cells.rows.stop();
        let mut depends = Vec::new();
        if let (Ok(Ok(result)), false) = (&r, touched.is_empty()) {
            depends = self.locks.take(block.id, touched);
            if let (Some((_, holder)), false) = (depends.first(), result.rows.is_empty()) {
                // It returned rows another block changed and has not committed: run it
                // again once that block ended, as PostgreSQL's row lock makes it wait.
                return Err(Attempt::Wait(*holder));
            }
        }
        let Draw::Fresh {
            drawn,
            needs,
            local,
            ..
        } = draw
        else {
            return Err(Fatal("a block step drew from a replay".into()).into());
        };
        if let Some(sequence) = needs {
            return Err(Attempt::NeedValues(sequence));
        }
        let r = r?;
        let rec = Recorded {
            seen: result_hash(&r),
            step: step.clone(),
            drawn,
            written,
            local,
            depends,
        };
        Ok((r, rec))
    }
}

/// A step to record in the block after it ran: the hash of its result, the values `nextval`
/// gave it and the tables it wrote rows of.
struct Recorded {
    step: TxnStep,
    seen: [u8; 32],
    drawn: Vec<SeqValue>,
    written: HashSet<String>,
    /// Sequences the block now draws from their rows (it created or set them).
    local: HashSet<String>,
    /// Rows the step touched that another block held, with that block.
    depends: Vec<(Row, u64)>,
}

/// The tables `statements` read, if `block` wrote rows of any table (otherwise none are
/// needed). SQLite's authorizer names every table a statement reads (through views too) when
/// the statement is prepared, so they are prepared here once more, past the statement cache.
fn tables_read(
    conn: &Connection,
    cells: &Cells,
    block: &Block,
    statements: &[Statement],
) -> HashSet<String> {
    if block.written.is_empty() {
        return HashSet::new();
    }
    cells.read.start();
    for s in statements {
        // A statement that does not prepare fails when it runs, with its own error.
        let _ = conn.prepare(&s.sql);
    }
    cells.read.stop()
}

/// Opens a SQLite transaction on the latest applied state and replays `block`'s steps on it,
/// checking each result against the one its client saw. Returns the applied index.
fn replay(conn: &Connection, cells: &Cells, block: &Block) -> Result<Option<LogIndex>, Attempt> {
    let f = |what: &'static str| move |e: rusqlite::Error| Fatal(format!("{what}: {e}"));
    crate::step::exec_fixed(conn, "BEGIN IMMEDIATE").map_err(f("begin a block's replay"))?;
    let applied = meta::get_i64(conn, meta::KEY_APPLIED_INDEX)
        .map_err(f("read applied index"))?
        .map(|i| LogIndex(i as u64));
    crate::sequences::load(conn, &cells.sequences).map_err(f("load sequences"))?;
    cells.guard.set_role(block.role.as_deref());
    // One budget for all the block's steps, as at apply.
    cells.start_entry(&block.stamp, block.vm_steps_max(&[]));
    for (n, (step, seen)) in block.steps.iter().zip(&block.seen).enumerate() {
        let r = replay_step(conn, n, step, &block.values, cells)?;
        if result_hash(&r) != *seen {
            return Err(Attempt::Changed(n));
        }
    }
    Ok(applied)
}

/// Keeps blocks off the writer connection while the apply thread writes.
pub(crate) struct WriterHold<'a> {
    _inner: MutexGuard<'a, WriterInner>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::{apply1 as apply, exec, sql};
    use crate::apply::{ApplyItem, RaftMeta, StateMachine};
    use crate::command::EntryHeader;
    use crate::command::{Command, Value};
    use crate::exec::StatementResult;

    fn commit(block: Block) -> Command {
        Command::Transaction {
            header: Some(EntryHeader::current()),
            request_id: None,
            record: block.finish(),
        }
    }

    /// The translator's SQLite statements for one Postgres statement.
    fn pg(sql_text: &str) -> Vec<Statement> {
        let t = sqlkeeper_sql::translate(sql_text).unwrap().pop().unwrap();
        let params: Vec<Value> = t.literals.iter().map(Value::from).collect();
        t.sqlite
            .into_iter()
            .map(|s| Statement {
                effect: t.effect.clone(),
                params: params.clone(),
                ..sql(&s)
            })
            .collect()
    }

    /// A Postgres statement as an autocommit entry, translated as the leader does.
    fn exec_pg(sql_text: &str) -> Command {
        Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: pg(sql_text),
            role: None,
        }
    }

    /// Runs and records a step. A sequence with no values reserved is taken to be the
    /// block's own (what a node learns when reserving fails with 42P01); tests that use a
    /// committed sequence reserve its values first ([`reserve`]).
    fn step(spec: &BlockWriter, b: &mut Block, s: TxnStep) -> Result<StepResult, BlockError> {
        loop {
            match spec.run(b, Work::Record(s.clone()), &Ticket::default()) {
                Err(BlockError::NeedValues(seq)) => b.mark_local(seq),
                r => match r?.0 {
                    Done::Ran(r) => return Ok(r),
                    Done::Described(_) => unreachable!(),
                },
            }
        }
    }

    /// Reserves values of `seq` for the node's blocks, as a node does: an entry at `index`.
    fn reserve(sm: &mut StateMachine, spec: &BlockWriter, index: u64, seq: &str) {
        let o = apply(
            sm,
            index,
            &exec(&format!(
                "SELECT {}('{seq}', {})",
                crate::RESERVE_FUNCTION,
                crate::RESERVED_VALUES
            )),
        );
        let Value::Text(t) = &o.results[0].rows[0][0] else {
            panic!("{o:?}")
        };
        spec.add_reserved(seq, t).unwrap();
    }

    fn ok(spec: &BlockWriter, b: &mut Block, s: TxnStep) -> StatementResult {
        step(spec, b, s).unwrap().unwrap()
    }

    fn sqlstate(o: &crate::Outcome) -> Option<&str> {
        o.error.as_ref().map(|(_, e)| e.sqlstate.as_str())
    }

    #[test]
    fn sequence_values_survive_rollback_to_a_savepoint_before_a_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let create = exec_pg("CREATE SEQUENCE s");
        assert_eq!(apply(&mut sm, 1, &create).error, None);
        let spec = sm.block_writer();
        reserve(&mut sm, &spec, 2, "s");
        let mut b = Block::new(Stamp::default(), None);
        let next = |b: &mut Block| ok(&spec, b, TxnStep::Sql(pg("SELECT nextval('s')"))).rows;
        assert_eq!(next(&mut b), vec![vec![Value::Integer(1)]]);
        ok(&spec, &mut b, TxnStep::Savepoint("_sqlkeeper_sp_0".into()));
        ok(&spec, &mut b, TxnStep::Sql(pg("DROP SEQUENCE s")));
        ok(&spec, &mut b, TxnStep::RollbackTo("_sqlkeeper_sp_0".into()));
        assert_eq!(
            next(&mut b),
            vec![vec![Value::Integer(2)]],
            "the sequence is back, with its value"
        );
        ok(&spec, &mut b, TxnStep::Savepoint("_sqlkeeper_sp_1".into()));
        ok(&spec, &mut b, TxnStep::Sql(pg("CREATE SEQUENCE t")));
        ok(&spec, &mut b, TxnStep::RollbackTo("_sqlkeeper_sp_1".into()));
        let e = step(&spec, &mut b, TxnStep::Sql(pg("SELECT nextval('t')")))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.sqlstate, "42P01", "a creation rolled back is gone");
        assert_eq!(apply(&mut sm, 3, &commit(b)).error, None);
        let after = exec_pg("SELECT nextval('s')");
        assert_eq!(
            apply(&mut sm, 4, &after).results[0].rows,
            vec![vec![Value::Integer(crate::RESERVED_VALUES + 1)]],
            "after the values reserved for the node"
        );
    }

    #[test]
    fn concurrent_blocks_insert_into_a_serial_table_with_reserved_ids_and_both_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let create = exec_pg("CREATE TABLE t (id SERIAL PRIMARY KEY, v text)");
        assert_eq!(apply(&mut sm, 1, &create).error, None);
        let spec = sm.block_writer();
        // Without reserved values a block's nextval asks for them (the node reserves).
        let mut a = Block::new(Stamp::default(), None);
        let insert = |v: &str| {
            TxnStep::Sql(pg(&format!(
                "INSERT INTO t (v) VALUES ('{v}') RETURNING id"
            )))
        };
        assert!(matches!(
            spec.run(&mut a, Work::Record(insert("a")), &Ticket::default()),
            Err(BlockError::NeedValues(s)) if s == "t_id_seq"
        ));
        reserve(&mut sm, &spec, 2, "t_id_seq");
        let mut b = Block::new(Stamp::default(), None);
        assert_eq!(
            ok(&spec, &mut a, insert("a")).rows,
            vec![vec![Value::Integer(1)]]
        );
        assert_eq!(
            ok(&spec, &mut b, insert("b")).rows,
            vec![vec![Value::Integer(2)]]
        );
        assert_eq!(
            ok(&spec, &mut a, insert("a2")).rows,
            vec![vec![Value::Integer(3)]]
        );
        // An autocommit insert in between takes the value after the reserved ones.
        let o = apply(
            &mut sm,
            3,
            &exec_pg("INSERT INTO t (v) VALUES ('auto') RETURNING id"),
        );
        assert_eq!(
            o.results.last().unwrap().rows,
            vec![vec![Value::Integer(crate::RESERVED_VALUES + 1)]]
        );
        // Both blocks commit, in either order, with the ids their clients saw.
        assert_eq!(apply(&mut sm, 4, &commit(b)).error, None);
        assert_eq!(apply(&mut sm, 5, &commit(a)).error, None);
        let o = apply(&mut sm, 6, &exec("SELECT id, v FROM t ORDER BY id"));
        let text = |s: &str| Value::Text(s.into());
        assert_eq!(
            o.results[0].rows,
            vec![
                vec![Value::Integer(1), text("a")],
                vec![Value::Integer(2), text("b")],
                vec![Value::Integer(3), text("a2")],
                vec![Value::Integer(crate::RESERVED_VALUES + 1), text("auto")],
            ]
        );
    }

    #[test]
    fn a_block_replays_to_the_same_results_and_commits_unless_what_it_saw_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(
            &mut sm,
            1,
            &exec(
                "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v INTEGER UNIQUE, r REAL)",
            ),
        );
        let spec = sm.block_writer();
        let stamp = Stamp {
            unix_micros: 5,
            seed: 42,
        };

        let mut b = Block::new(stamp, None);
        let r = ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql(
                "INSERT INTO t (v, r) VALUES (1, random()) RETURNING id",
            )]),
        );
        assert_eq!(r.rows, vec![vec![Value::Integer(1)]]);
        // A failed statement is undone alone and recorded; a read sees the block's row and
        // gives back the randomness it drew.
        let failed = step(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (1)")]),
        );
        assert_eq!(failed.unwrap().unwrap_err().sqlstate, "23505");
        let stmts = [sql("SELECT count(*), random() FROM t")];
        let (seen, _) = spec
            .run(&mut b, Work::Read(stmts.to_vec()), &Ticket::default())
            .unwrap();
        let Done::Ran(Ok(seen)) = seen else { panic!() };
        assert_eq!(seen.rows[0][0], Value::Integer(1));
        ok(&spec, &mut b, TxnStep::Savepoint("a".into()));
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v, r) VALUES (2, random())")]),
        );
        ok(&spec, &mut b, TxnStep::RollbackTo("a".into()));
        // The apply thread takes the connection between two statements: the next one replays.
        drop(spec.hold_for_apply(false));
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v, r) VALUES (3, random())")]),
        );
        let cmd = commit(b);
        // Nothing is visible before the entry applies.
        let n = sm
            .read_pool()
            .read(|_| {}, |v| Ok(v.query(&sql("SELECT count(*) FROM t"))?))
            .unwrap();
        assert_eq!(n.rows, vec![vec![Value::Integer(0)]]);
        assert_eq!(apply(&mut sm, 3, &cmd).error, None);
        let o = apply(&mut sm, 4, &exec("SELECT v FROM t ORDER BY v"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
        );

        // A write to rows the block did not see, between its statements and its entry: it
        // commits all the same.
        let mut b = Block::new(stamp, None);
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("UPDATE t SET r = 0.5 WHERE v = 1")]),
        );
        apply(&mut sm, 5, &exec("INSERT INTO t (v) VALUES (11)"));
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (10)")]),
        );
        apply(&mut sm, 6, &exec("INSERT INTO t (v) VALUES (12)"));
        assert_eq!(apply(&mut sm, 7, &commit(b)).error, None);

        // A write that changes what the block saw before the entry applies: 40001, nothing
        // applied.
        let mut b = Block::new(stamp, None);
        let n = ok(
            &spec,
            &mut b,
            TxnStep::Read(vec![sql("SELECT count(*) FROM t")]),
        );
        assert_eq!(n.rows, vec![vec![Value::Integer(5)]]);
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (20)")]),
        );
        let cmd = commit(b);
        apply(&mut sm, 8, &exec("INSERT INTO t (v) VALUES (21)"));
        assert_eq!(sqlstate(&apply(&mut sm, 9, &cmd)), Some("40001"));
        let o = apply(&mut sm, 10, &exec("SELECT count(*) FROM t WHERE v = 20"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(0)]]);

        // ... and the block's next statement already sees it.
        let mut b = Block::new(stamp, None);
        ok(
            &spec,
            &mut b,
            TxnStep::Read(vec![sql("SELECT count(*) FROM t")]),
        );
        apply(&mut sm, 11, &exec("DELETE FROM t WHERE v = 21"));
        assert!(matches!(
            step(
                &spec,
                &mut b,
                TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (30)")])
            ),
            Err(BlockError::Conflict(_))
        ));

        // A tampered digest is refused on apply.
        let mut b = Block::new(stamp, None);
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (40)")]),
        );
        let mut cmd = commit(b);
        if let Command::Transaction { record, .. } = &mut cmd {
            record.digest = "00".into();
        }
        assert_eq!(sqlstate(&apply(&mut sm, 12, &cmd)), Some("40001"));

        // The same conflict inside one apply batch: the check is the replay at the entry's
        // place, however the log was cut into batches.
        let mut b = Block::new(stamp, None);
        ok(
            &spec,
            &mut b,
            TxnStep::Read(vec![sql("SELECT max(v) FROM t")]),
        );
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t (v) VALUES (50)")]),
        );
        let txn = commit(b);
        let other = exec("INSERT INTO t (v) VALUES (51)");
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
        assert_eq!(sqlstate(outcomes[1].as_ref().unwrap()), Some("40001"));
    }

    /// A block larger than one entry: its parts are staged by their entries and applied, all
    /// together, by its commit, also on a node that installed a snapshot taken between them; a
    /// commit whose part is missing applies nothing. Parts left behind expire; a part applied
    /// again after its commit is not kept.
    #[test]
    fn a_block_larger_than_one_entry_is_applied_by_its_commit_from_its_staged_parts() {
        use crate::command::{RequestId, Staged};
        use crate::staged::{split_steps, STAGED_TABLE, STAGED_TTL_MICROS};
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(
            &mut sm,
            1,
            &exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"),
        );
        let spec = sm.block_writer();
        let count = |sm: &StateMachine, table: &str| -> i64 {
            rusqlite::Connection::open(sm.db_path())
                .unwrap()
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        // 40 inserts of 200 rows of 100 bytes: about 1 MiB, three entries.
        let block = || {
            let mut b = Block::new(Stamp::default(), None);
            for i in 0..40i64 {
                let mut params = Vec::new();
                let mut sql_text = "INSERT INTO t VALUES ".to_string();
                for r in 0..200i64 {
                    if r > 0 {
                        sql_text.push_str(", ");
                    }
                    sql_text.push_str(&format!("(?{}, ?{})", 2 * r + 1, 2 * r + 2));
                    params.push(Value::Integer(i * 200 + r));
                    params.push(Value::Text("x".repeat(100)));
                }
                let stmt = Statement::plain(sql_text, params);
                ok(&spec, &mut b, TxnStep::Sql(vec![stmt]));
            }
            spec.forget(&b);
            b.finish()
        };
        // What a node proposes (`Node::commit_block`): parts, then the commit with the last.
        let proposed = |mut record: TxnRecord, txn: RequestId, stamp: i64| {
            let (parts, _) = split_steps(&record.steps);
            assert_eq!(parts.len(), 3, "{parts:?}");
            let mut entries = Vec::new();
            for (seq, range) in parts[..parts.len() - 1].iter().enumerate() {
                entries.push(Command::TransactionPart {
                    header: Some(EntryHeader::current()),
                    txn,
                    seq: seq as u32,
                    stamp: Stamp {
                        unix_micros: stamp,
                        seed: 0,
                    },
                    steps: record.steps[range.clone()].to_vec(),
                });
            }
            let last = parts.last().unwrap().clone();
            record.steps = record.steps[last].to_vec();
            record.staged = Some(Staged {
                parts: parts.len() as u32 - 1,
                rebuilds_tables: false,
            });
            let commit = Command::Transaction {
                header: Some(EntryHeader::current()),
                request_id: Some(txn),
                record,
            };
            (entries, commit)
        };
        let txn = RequestId {
            origin: 1,
            serial: 7,
        };
        let (parts, commit) = proposed(block(), txn, 1_000);
        let mut index = 2;
        for p in &parts {
            assert_eq!(sqlstate(&apply(&mut sm, index, p)), None);
            index += 1;
        }
        assert_eq!(count(&sm, STAGED_TABLE), 2);
        assert_eq!(count(&sm, "t"), 0, "a part changes no table");
        // A node that installs a snapshot taken between the parts and the commit applies the
        // commit as this one does.
        let snapshot = dir.path().join("between.db");
        sqlkeeper_snapshots::write_snapshot(
            &rusqlite::Connection::open(sm.db_path()).unwrap(),
            &snapshot,
        )
        .unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = StateMachine::open(other_dir.path()).unwrap();
        other.install_snapshot(&snapshot).unwrap();
        assert_eq!(sqlstate(&apply(&mut other, index, &commit)), None);
        assert_eq!(sqlstate(&apply(&mut sm, index, &commit)), None);
        index += 1;
        assert_eq!(count(&sm, "t"), 8_000);
        assert_eq!(count(&sm, STAGED_TABLE), 0);
        assert_eq!(sm.state_hash().unwrap(), other.state_hash().unwrap());
        // The same part again, after its commit: not kept.
        apply(&mut sm, index, &parts[0]);
        index += 1;
        assert_eq!(count(&sm, STAGED_TABLE), 0);

        // A commit whose first part never came: 40001, nothing applied, its parts dropped.
        apply(&mut sm, index, &exec("DELETE FROM t"));
        index += 1;
        let txn = RequestId {
            origin: 1,
            serial: 8,
        };
        let (parts, commit) = proposed(block(), txn, 2_000);
        apply(&mut sm, index, &parts[1]);
        index += 1;
        assert_eq!(sqlstate(&apply(&mut sm, index, &commit)), Some("40001"));
        index += 1;
        assert_eq!(count(&sm, "t"), 0);
        assert_eq!(count(&sm, STAGED_TABLE), 0);

        // Parts left behind are dropped once a later part is applied after their expiry.
        let (left, _) = proposed(
            block(),
            RequestId {
                origin: 2,
                serial: 1,
            },
            3_000,
        );
        apply(&mut sm, index, &left[0]);
        index += 1;
        assert_eq!(count(&sm, STAGED_TABLE), 1);
        let (late, _) = proposed(
            block(),
            RequestId {
                origin: 2,
                serial: 2,
            },
            3_000 + STAGED_TTL_MICROS + 1,
        );
        apply(&mut sm, index, &late[0]);
        assert_eq!(count(&sm, STAGED_TABLE), 1, "only the new part is left");
    }

    /// A block statement longer than the time between apply batches, while entries are applied
    /// one after another: interrupted a few times, then run with the apply thread waiting for
    /// it (`UNINTERRUPTED_AFTER`), it completes instead of failing with 40001.
    #[test]
    fn a_long_statement_completes_while_entries_are_applied_without_pause() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(&mut sm, 1, &exec("CREATE TABLE t (x INTEGER)"));
        apply(&mut sm, 2, &exec("CREATE TABLE other (x INTEGER)"));
        let spec = sm.block_writer();
        let long = TxnStep::Sql(vec![sql(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 400000) SELECT x FROM c",
        )]);
        let running = {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut b = Block::new(Stamp::default(), None);
                let r = spec.run(&mut b, Work::Record(long), &Ticket::default());
                r.map(|(done, _)| match done {
                    Done::Ran(r) => r.map(|r| r.rows_affected),
                    Done::Described(_) => unreachable!(),
                })
            })
        };
        let mut index = 3;
        while !running.is_finished() && index < 100_000 {
            apply(&mut sm, index, &exec("INSERT INTO other VALUES (1)"));
            index += 1;
        }
        let r = running.join().unwrap();
        assert!(matches!(r, Ok(Ok(400_000))), "{r:?} after {index} entries");
    }

    #[test]
    fn a_cancelled_statement_is_not_recorded_and_the_block_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(&mut sm, 1, &exec("CREATE TABLE t (v INTEGER)"));
        let spec = sm.block_writer();
        let mut b = Block::new(Stamp::default(), None);
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t VALUES (1)")]),
        );
        let ticket = Ticket::default();
        spec.cancel(&ticket);
        let r = spec.run(
            &mut b,
            Work::Record(TxnStep::Sql(vec![sql("INSERT INTO t VALUES (2)")])),
            &ticket,
        );
        assert!(matches!(r, Err(BlockError::Cancelled)));
        ok(
            &spec,
            &mut b,
            TxnStep::Sql(vec![sql("INSERT INTO t VALUES (3)")]),
        );
        assert_eq!(apply(&mut sm, 2, &commit(b)).error, None);
        let o = apply(&mut sm, 3, &exec("SELECT v FROM t ORDER BY v"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(3)]]
        );
    }
}
