//! Transaction blocks of one connection: `BEGIN` ... `COMMIT`, savepoints, the aborted state,
//! and the idle timeout. The replicated side (speculation, the write slot, the commit entry)
//! is the node's; this module decides, per statement, where it runs and what the client sees.
//! Design and limits: `docs/transactions.md`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use pgwire::messages::response::TransactionStatus;
use sqlkeeper_engine::{HeldRead, Speculation, Statement, TxnStep, Value};
use sqlkeeper_raft::WriteSlot;
use sqlkeeper_sql::{StatementKind, Translated, TxnOp};
use tokio::task::JoinHandle;

use crate::backend::{Backend, Produced};
use crate::errors::ClientError;

/// How long a block may sit idle holding this node's write slot while other writes wait for
/// it. Other writes wait for the slot for at most 10 s (`WRITE_SLOT_WAIT`) before they fail;
/// one second of an idle holder is already long for a block that a program runs.
pub(crate) const WRITER_IDLE_PREEMPT: Duration = Duration::from_secs(1);

/// How often an idle writing block checks whether writes wait for its slot.
const PREEMPT_CHECK: Duration = Duration::from_millis(100);

/// Where a connection stands with respect to transaction blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No block: every statement commits on its own.
    Idle,
    /// Inside `BEGIN` ... `COMMIT`.
    Active,
    /// A statement failed inside the block: only `ROLLBACK` (or `ROLLBACK TO`) is accepted.
    Failed,
}

/// The writing part of a transaction: this node's write slot and the speculation.
pub(crate) struct Writer {
    slot: WriteSlot,
    /// `None` while a statement runs on it (it is moved into a blocking task).
    spec: Option<Speculation>,
}

/// One connection's transaction block.
pub(crate) struct Txn {
    pub(crate) phase: Phase,
    read_only: bool,
    /// Savepoint names, innermost last (Postgres allows repeating a name).
    savepoints: Vec<String>,
    /// The snapshot of a block that has only read so far.
    held: Option<Arc<HeldRead>>,
    /// Set from the first write on.
    writer: Option<Writer>,
    /// Why the block can never commit (its speculation was revoked): every later `ROLLBACK TO`
    /// repeats it.
    doomed: Option<ClientError>,
    /// Bumped whenever a statement starts: an idle timer of an older generation does nothing.
    generation: u64,
    idle_timer: Option<JoinHandle<()>>,
    /// The idle timeout ended the block; the next message gets a FATAL error.
    pub(crate) timed_out: bool,
}

impl Default for Txn {
    fn default() -> Txn {
        Txn {
            phase: Phase::Idle,
            read_only: false,
            savepoints: Vec::new(),
            held: None,
            writer: None,
            doomed: None,
            generation: 0,
            idle_timer: None,
            timed_out: false,
        }
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if let Some(t) = self.idle_timer.take() {
            t.abort();
        }
        self.release();
    }
}

/// Ends a speculation, then frees the write slot, off the async workers: rolling back waits
/// for the apply thread's batch, and closing a read view waits out a snapshot installation.
fn release_in_background(held: Option<Arc<HeldRead>>, writer: Option<Writer>) {
    if held.is_none() && writer.is_none() {
        return;
    }
    let work = move || {
        drop(held);
        if let Some(Writer { slot, spec }) = writer {
            // The speculation first: the next writer must not find it still running.
            drop(spec);
            drop(slot);
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn_blocking(work);
        }
        Err(_) => work(),
    }
}

impl Txn {
    /// The ReadyForQuery status byte for this state.
    pub(crate) fn status(&self) -> TransactionStatus {
        match self.phase {
            Phase::Idle => TransactionStatus::Idle,
            Phase::Active => TransactionStatus::Transaction,
            Phase::Failed => TransactionStatus::Error,
        }
    }

    /// Ends the block: the speculation is rolled back, the slot and the snapshot released.
    fn end(&mut self) {
        self.phase = Phase::Idle;
        self.read_only = false;
        self.savepoints.clear();
        self.release();
        self.doomed = None;
    }

    fn release(&mut self) {
        release_in_background(self.held.take(), self.writer.take());
    }

    /// Marks the block failed after a statement error.
    pub(crate) fn fail(&mut self) {
        if self.phase == Phase::Active {
            self.phase = Phase::Failed;
        }
    }

    /// Called when a statement starts: stops the idle timer.
    pub(crate) fn statement_started(&mut self) {
        self.generation += 1;
        if let Some(t) = self.idle_timer.take() {
            t.abort();
        }
    }

    /// Called when the connection goes idle: inside a block, arms the idle timer. A block that
    /// holds this node's write slot is also watched: if other writes wait for the slot while
    /// the block sits idle, it is ended after [`WRITER_IDLE_PREEMPT`] (its next statement gets
    /// 40001), so one forgotten session cannot stop every write.
    pub(crate) fn went_idle(
        this: &Arc<tokio::sync::Mutex<Txn>>,
        txn: &mut Txn,
        timeout: Duration,
        node: &Arc<sqlkeeper_raft::Node>,
    ) {
        if txn.phase == Phase::Idle {
            return;
        }
        let generation = txn.generation;
        let weak: Weak<tokio::sync::Mutex<Txn>> = Arc::downgrade(this);
        let writing = txn.writer.is_some();
        let node = node.clone();
        txn.idle_timer = Some(tokio::spawn(async move {
            let idle_since = tokio::time::Instant::now();
            let mut waited_since: Option<tokio::time::Instant> = None;
            loop {
                let left = timeout.saturating_sub(idle_since.elapsed());
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(if writing {
                    left.min(PREEMPT_CHECK)
                } else {
                    left
                })
                .await;
                if !writing {
                    continue;
                }
                if node.write_slot_waiters() == 0 {
                    waited_since = None;
                    continue;
                }
                let since = *waited_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() < WRITER_IDLE_PREEMPT {
                    continue;
                }
                let Some(txn) = weak.upgrade() else { return };
                let mut txn = txn.lock().await;
                if txn.generation != generation || txn.writer.is_none() {
                    return;
                }
                tracing::info!("a transaction block sat idle holding the write slot while writes waited: ended");
                release_in_background(None, txn.writer.take());
                txn.doomed = Some(ClientError::new(
                    "40001",
                    "could not serialize access: the transaction sat idle holding this node's write slot while other writes waited, and was ended",
                ));
                return;
            }
            let Some(txn) = weak.upgrade() else { return };
            let mut txn = txn.lock().await;
            if txn.generation == generation && txn.phase != Phase::Idle {
                tracing::info!(?timeout, "idle in transaction for too long: rolled back");
                txn.end();
                txn.timed_out = true;
            }
        }));
    }

    /// Whether a statement may run in this state (`Failed` accepts only the block's exits).
    fn refuses(&self, kind: &StatementKind) -> Option<ClientError> {
        if self.phase != Phase::Failed {
            return None;
        }
        match kind {
            StatementKind::Transaction(TxnOp::Rollback | TxnOp::Commit | TxnOp::RollbackTo(_)) => {
                None
            }
            _ => Some(aborted()),
        }
    }
}

pub(crate) fn aborted() -> ClientError {
    ClientError::new(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// The error a client gets on its next message after the idle timeout ended its block.
pub(crate) fn idle_timeout_error() -> ClientError {
    ClientError::fatal(
        "25P03",
        "terminating connection due to idle-in-transaction timeout",
    )
}

fn statements_of(t: &Translated, params: &[Value]) -> Vec<Statement> {
    t.sqlite
        .iter()
        .map(|sql| Statement {
            sql: sql.clone(),
            params: params.to_vec(),
        })
        .collect()
}

fn done(tag: &str) -> Produced {
    Produced::Done(tag.to_string())
}

/// Where a session stands between two messages, for the connection's idle-session timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Between {
    /// No transaction block: the idle-session timeout applies.
    Idle,
    /// Inside a block (or the block is busy): `idle_in_transaction_session_timeout` applies.
    InBlock,
    /// `idle_in_transaction_session_timeout` ended the block; the client was not told yet.
    BlockTimedOut,
}

impl Backend {
    /// Fails an open block after an error the connection loop answered itself (a malformed
    /// message), as any error inside a block does in PostgreSQL. Errors of extended-query
    /// messages need not come here: `on_sync` fails the block for them.
    pub(crate) async fn fail_block(&self) {
        self.txn.lock().await.fail();
    }

    /// Where the session stands between messages (see [`Between`]).
    pub(crate) fn between(&self) -> Between {
        match self.txn.try_lock() {
            Ok(t) if t.timed_out => Between::BlockTimedOut,
            Ok(t) if t.phase == Phase::Idle => Between::Idle,
            // Locked: the idle timer is ending the block right now. Ask again later.
            _ => Between::InBlock,
        }
    }

    /// Whether this statement batch goes through transaction-block handling: a block is open,
    /// or the batch opens or ends one.
    pub(crate) async fn in_block_or_control(&self, batch: &[(Translated, Vec<Value>)]) -> bool {
        batch
            .iter()
            .any(|(t, _)| matches!(t.kind, StatementKind::Transaction(_)))
            || self.txn.lock().await.phase != Phase::Idle
    }

    /// Runs statements one by one with transaction-block semantics, stopping at the first
    /// error (which fails an open block).
    pub(crate) async fn run_block(
        &self,
        batch: Vec<(Translated, Vec<Value>)>,
    ) -> (Vec<Produced>, Option<ClientError>) {
        let mut out = Vec::with_capacity(batch.len());
        let mut txn = self.txn.lock().await;
        for (t, params) in batch {
            let r = match txn.refuses(&t.kind) {
                Some(e) => Err(e),
                None if txn.phase == Phase::Idle
                    && !matches!(t.kind, StatementKind::Transaction(_)) =>
                {
                    // Outside a block (a statement before BEGIN in the same string): autocommit.
                    drop(txn);
                    let r = self.run_autocommit_one(t, params).await;
                    txn = self.txn.lock().await;
                    r
                }
                None => self.run_in_block(&mut txn, &t, params).await,
            };
            match r {
                Ok(p) => out.push(p),
                Err(e) => {
                    txn.fail();
                    return (out, Some(e));
                }
            }
        }
        (out, None)
    }

    async fn run_in_block(
        &self,
        txn: &mut Txn,
        t: &Translated,
        params: Vec<Value>,
    ) -> Result<Produced, ClientError> {
        if let Some(e) = &txn.doomed {
            // The block's writes are gone (revoked, ended while idle): nothing but leaving it
            // may run, or a read would see a state without them.
            if matches!(
                t.kind,
                StatementKind::Read | StatementKind::Write | StatementKind::Ddl
            ) {
                return Err(e.clone());
            }
        }
        match &t.kind {
            StatementKind::Transaction(op) => self.control(txn, op).await,
            StatementKind::Read => {
                if txn.writer.is_some() {
                    let stmts = statements_of(t, &params);
                    let r = speculate_on(&self.node, txn, move |s| s.query(&stmts)).await??;
                    return Ok(Produced::rows(r, t));
                }
                let held = self.snapshot(txn).await?;
                self.read_on(held, t, params).await
            }
            StatementKind::Write | StatementKind::Ddl => {
                if txn.read_only {
                    return Err(ClientError::new(
                        "25006",
                        format!(
                            "cannot execute {} in a read-only transaction",
                            t.tag
                                .render(0)
                                .split(' ')
                                .next()
                                .unwrap_or("this statement")
                        ),
                    ));
                }
                if t.sqlite.is_empty() {
                    // VACUUM and ANALYZE.
                    return Err(ClientError::new(
                        "25001",
                        format!("{} cannot run inside a transaction block", t.tag.render(0)),
                    ));
                }
                self.ensure_writer(txn).await?;
                let step = TxnStep::Sql(statements_of(t, &params));
                let r = speculate_on(&self.node, txn, move |s| s.execute(step)).await??;
                Ok(if r.columns.is_empty() || t.kind == StatementKind::Ddl {
                    Produced::Done(t.tag.render(r.rows_affected))
                } else {
                    Produced::rows(r, t)
                })
            }
            StatementKind::Session(op) => self.session_op(op),
            StatementKind::Introspection => self.introspect(t, params).await,
            StatementKind::Admin(call) => Err(ClientError::new(
                "25001",
                format!(
                    "sqlkeeper.{} cannot run inside a transaction block",
                    call.function
                ),
            )),
        }
    }

    async fn control(&self, txn: &mut Txn, op: &TxnOp) -> Result<Produced, ClientError> {
        match (txn.phase, op) {
            (Phase::Idle, TxnOp::Begin { start, read_only }) => {
                txn.phase = Phase::Active;
                txn.read_only = *read_only;
                Ok(done(if *start { "START TRANSACTION" } else { "BEGIN" }))
            }
            // Postgres warns and goes on.
            (_, TxnOp::Begin { start, .. }) => {
                Ok(done(if *start { "START TRANSACTION" } else { "BEGIN" }))
            }
            (Phase::Idle, TxnOp::Commit) => Ok(done("COMMIT")),
            (Phase::Idle, TxnOp::Rollback) => Ok(done("ROLLBACK")),
            (Phase::Idle, TxnOp::Savepoint(_)) => Err(ClientError::new(
                "25P01",
                "SAVEPOINT can only be used in transaction blocks",
            )),
            (Phase::Idle, TxnOp::Release(_)) => Err(ClientError::new(
                "25P01",
                "RELEASE SAVEPOINT can only be used in transaction blocks",
            )),
            (Phase::Idle, TxnOp::RollbackTo(_)) => Err(ClientError::new(
                "25P01",
                "ROLLBACK TO SAVEPOINT can only be used in transaction blocks",
            )),
            (Phase::Failed, TxnOp::Commit) => {
                // Postgres answers COMMIT of a failed block with the tag ROLLBACK.
                txn.end();
                Ok(done("ROLLBACK"))
            }
            (_, TxnOp::Rollback) => {
                if let Some(w) = &txn.writer {
                    if let Some(s) = &w.spec {
                        self.session().observe(s.applied_index().map_or(0, |i| i.0));
                    }
                }
                txn.end();
                Ok(done("ROLLBACK"))
            }
            (_, TxnOp::Commit) => self.commit(txn).await,
            (_, TxnOp::Savepoint(name)) => {
                if txn.writer.is_some() {
                    let step = TxnStep::Savepoint(savepoint_name(txn.savepoints.len()));
                    speculate_on(&self.node, txn, move |s| s.execute(step)).await??;
                }
                txn.savepoints.push(name.clone());
                Ok(done("SAVEPOINT"))
            }
            (_, TxnOp::Release(name)) => {
                let at = find_savepoint(txn, name)?;
                if txn.writer.is_some() {
                    let step = TxnStep::Release(savepoint_name(at));
                    speculate_on(&self.node, txn, move |s| s.execute(step)).await??;
                }
                txn.savepoints.truncate(at);
                Ok(done("RELEASE"))
            }
            (_, TxnOp::RollbackTo(name)) => {
                if let Some(e) = &txn.doomed {
                    return Err(e.clone());
                }
                let at = find_savepoint(txn, name)?;
                if txn.writer.is_some() {
                    let step = TxnStep::RollbackTo(savepoint_name(at));
                    speculate_on(&self.node, txn, move |s| s.execute(step)).await??;
                }
                txn.savepoints.truncate(at + 1);
                txn.phase = Phase::Active;
                Ok(done("ROLLBACK"))
            }
        }
    }

    async fn commit(&self, txn: &mut Txn) -> Result<Produced, ClientError> {
        let writer = txn.writer.take();
        let held = txn.held.take();
        txn.end();
        let Some(Writer {
            slot,
            spec: Some(spec),
        }) = writer
        else {
            // Read-only: nothing to replicate.
            if let Some(h) = held {
                self.session().observe(h.applied_index().map_or(0, |i| i.0));
            }
            return Ok(done("COMMIT"));
        };
        if !spec.has_steps() {
            self.session()
                .observe(spec.applied_index().map_or(0, |i| i.0));
            return Ok(done("COMMIT"));
        }
        // Spawned, so that nothing (a cancel, a disconnect) drops the commit half way; a simple
        // query's cancel waits for it (`committing`).
        let _committing = Flag::raise(&self.committing);
        let node = self.node.clone();
        let committed = tokio::spawn(async move {
            node.commit_transaction(slot, spec, crate::backend::WRITE_TIMEOUT)
                .await
        })
        .await;
        let (outcome, index) =
            committed.map_err(|e| ClientError::new("XX000", format!("commit task: {e}")))??;
        self.session().observe(index.0);
        if let Some((_, e)) = outcome.error {
            return Err(e.into());
        }
        Ok(done("COMMIT"))
    }

    /// The block's snapshot, opened at its first read (after the session's consistency wait).
    async fn snapshot(&self, txn: &mut Txn) -> Result<Arc<HeldRead>, ClientError> {
        if let Some(h) = &txn.held {
            return Ok(h.clone());
        }
        self.before_read().await?;
        let h = Arc::new(self.node.hold_read().await?);
        txn.held = Some(h.clone());
        Ok(h)
    }

    async fn read_on(
        &self,
        held: Arc<HeldRead>,
        t: &Translated,
        params: Vec<Value>,
    ) -> Result<Produced, ClientError> {
        let stmts = statements_of(t, &params);
        let applied = held.applied_index();
        let timeout = self.session().statement_timeout();
        let mut results = self
            .node
            .read_held(held, timeout, move |view| {
                let mut out = Vec::with_capacity(stmts.len());
                for s in &stmts {
                    out.push(view.query(s).map_err(sqlkeeper_engine::EngineError::from)?);
                }
                Ok(out)
            })
            .await?;
        if let Some(a) = applied {
            self.session().observe(a.0);
        }
        Ok(Produced::rows(results.pop().unwrap_or_default(), t))
    }

    /// Takes the write slot and starts speculating, at the block's first write. A block that
    /// read before must still see the same data, or it cannot be serialized: 40001.
    async fn ensure_writer(&self, txn: &mut Txn) -> Result<(), ClientError> {
        if txn.writer.is_some() {
            return Ok(());
        }
        if let Some(e) = &txn.doomed {
            return Err(e.clone());
        }
        let expect_base = txn.held.as_ref().map(|h| h.last_write_index());
        if expect_base.is_none() {
            self.before_read().await?;
        }
        let stamp = self.node.new_stamp();
        let (slot, spec) = self
            .node
            .begin_write_transaction(stamp, expect_base)
            .await?;
        release_in_background(txn.held.take(), None);
        txn.writer = Some(Writer {
            slot,
            spec: Some(spec),
        });
        // Savepoints taken while the block only read exist on the speculation too.
        let depth = txn.savepoints.len();
        if depth > 0 {
            speculate_on(&self.node, txn, move |s| {
                for level in 0..depth {
                    if let Err(e) = s.execute(TxnStep::Savepoint(savepoint_name(level)))? {
                        return Ok(Err(e));
                    }
                }
                Ok(Ok(()))
            })
            .await??;
        }
        Ok(())
    }
}

/// Runs `f` on `txn`'s speculation in a blocking task and puts it back; if the speculation
/// was revoked (or is gone), the block is doomed: its writer is released and every later
/// `ROLLBACK TO` repeats the error.
async fn speculate_on<T, F>(
    node: &sqlkeeper_raft::Node,
    txn: &mut Txn,
    f: F,
) -> Result<Result<T, ClientError>, ClientError>
where
    T: Send + 'static,
    F: FnOnce(
            &mut Speculation,
        )
            -> Result<Result<T, sqlkeeper_engine::ExecError>, sqlkeeper_engine::SpecError>
        + Send
        + 'static,
{
    let Some(spec) = txn.writer.as_mut().and_then(|w| w.spec.take()) else {
        return Err(txn.doomed.clone().unwrap_or_else(|| {
            ClientError::new(
                "40001",
                "could not serialize access: the transaction was ended",
            )
        }));
    };
    match node.speculate(spec, f).await {
        Ok((spec, r)) => {
            if let Some(w) = txn.writer.as_mut() {
                w.spec = Some(spec);
            }
            Ok(r.map_err(ClientError::from))
        }
        Err(e) => {
            let e = ClientError::from(e);
            release_in_background(None, txn.writer.take());
            txn.doomed = Some(e.clone());
            Err(e)
        }
    }
}

/// Describes `sql` inside an open block, against the block's own state: the speculation once
/// it wrote, else its snapshot. `None` outside a block or before its first statement.
pub(crate) async fn describe_in_block(
    node: &sqlkeeper_raft::Node,
    txn: &mut Txn,
    sql: &str,
    timeout: Duration,
) -> Option<Result<Vec<sqlkeeper_engine::Column>, ClientError>> {
    if txn.phase == Phase::Idle {
        return None;
    }
    if txn.writer.is_some() {
        let sql = sql.to_string();
        let r = speculate_on(node, txn, move |s| s.describe(&sql)).await;
        return Some(r.and_then(|r| r.map(|(cols, _)| cols)));
    }
    let held = txn.held.clone()?;
    let sql = sql.to_string();
    Some(
        node.read_held(held, timeout, move |v| {
            v.describe(&sql)
                .map(|(cols, _)| cols)
                .map_err(sqlkeeper_engine::EngineError::from)
        })
        .await
        .map_err(ClientError::from),
    )
}

/// Called when a message that runs something arrives: a block the idle timeout ended is
/// reported (FATAL, the connection closes), and the idle timer stops.
pub(crate) async fn begin_message(txn: &tokio::sync::Mutex<Txn>) -> Result<(), ClientError> {
    let mut t = txn.lock().await;
    if t.timed_out {
        return Err(idle_timeout_error());
    }
    t.statement_started();
    Ok(())
}

/// Sets a flag for as long as it lives (also when the future holding it is dropped).
struct Flag(Arc<std::sync::atomic::AtomicBool>);

impl Flag {
    fn raise(flag: &Arc<std::sync::atomic::AtomicBool>) -> Flag {
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        Flag(flag.clone())
    }
}

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The SQLite name of the savepoint at `level` of the stack. Client names stay in the
/// session: Postgres compares them case-sensitively where SQLite does not, and a client name
/// must not collide with the engine's own savepoints.
fn savepoint_name(level: usize) -> String {
    format!("_sqlkeeper_sp_{level}")
}

fn find_savepoint(txn: &Txn, name: &str) -> Result<usize, ClientError> {
    txn.savepoints
        .iter()
        .rposition(|s| s == name)
        .ok_or_else(|| ClientError::new("3B001", format!("savepoint \"{name}\" does not exist")))
}
