//! Transaction blocks of one connection: `BEGIN` ... `COMMIT`, isolation levels,
//! savepoints, the aborted state, and the idle timeout. This module decides, per statement,
//! where it runs and what is recorded; the node runs a block's statements on its writer
//! connection for blocks (`Node::run_block`) and replicates the block at `COMMIT`. Nothing is
//! held for a block while its client thinks. Design and limits: `docs/transactions.md`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlkeeper_engine::{Block, Done, HeldRead, Stamp, Statement, TxnStep, Value, Work};
use sqlkeeper_sql::CommandTag;
use sqlkeeper_sql::{Isolation, SessionOp, StatementKind, Translated, TxnOp};
use tokio::task::JoinHandle;

use crate::error::ClientError;
use crate::session::{Produced, Session};

/// What ReadyForQuery reports about the session (`I`, `T`, `E` in the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    /// No transaction block.
    Idle,
    /// Inside a block.
    InBlock,
    /// Inside a failed block: only its end is accepted.
    Failed,
}

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

/// One connection's transaction block.
pub(crate) struct Txn {
    pub(crate) phase: Phase,
    read_only: bool,
    isolation: Isolation,
    /// A statement ran in the block: its isolation level is fixed.
    started: bool,
    /// Savepoint names, innermost last (Postgres allows repeating a name).
    pub(crate) savepoints: Vec<String>,
    /// The block's replicated part (stamp, recorded steps), from `BEGIN` on. Shared with the
    /// task that runs a statement on the writer connection, so a cancelled statement leaves
    /// the block as it was.
    block: Option<Arc<Mutex<Block>>>,
    /// The read view of a `REPEATABLE READ` or `SERIALIZABLE` block, from its first read
    /// until its first statement on the writer connection.
    held: Option<Arc<HeldRead>>,
    /// A statement of the block ran on the writer connection: every later one does too, so
    /// it sees the block's writes.
    on_writer: bool,
    /// Why the block can never commit (what it saw changed, its budget ran out): every later
    /// statement but `ROLLBACK` repeats it.
    doomed: Option<ClientError>,
    /// Bumped whenever a statement starts: an idle timer of an older generation does nothing.
    generation: u64,
    idle_timer: Option<JoinHandle<()>>,
    /// The idle timeout ended the block; the next message gets a FATAL error.
    pub(crate) timed_out: bool,
    /// The block's open cursors (`cursor.rs`), closed with it.
    pub(crate) cursors: crate::cursor::Cursors,
}

impl Default for Txn {
    fn default() -> Txn {
        Txn {
            phase: Phase::Idle,
            read_only: false,
            isolation: Isolation::ReadCommitted,
            started: false,
            savepoints: Vec::new(),
            block: None,
            held: None,
            on_writer: false,
            doomed: None,
            generation: 0,
            idle_timer: None,
            timed_out: false,
            cursors: Default::default(),
        }
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        if let Some(t) = self.idle_timer.take() {
            t.abort();
        }
        self.release(None);
    }
}

impl Txn {
    /// The ReadyForQuery status for this state.
    pub(crate) fn status(&self) -> TxnStatus {
        match self.phase {
            Phase::Idle => TxnStatus::Idle,
            Phase::Active => TxnStatus::InBlock,
            Phase::Failed => TxnStatus::Failed,
        }
    }

    /// Ends the block: its read view is closed and the writer connection forgets it.
    fn end(&mut self, node: Option<&Arc<sqlkeeper_raft::Node>>) {
        self.phase = Phase::Idle;
        self.read_only = false;
        self.started = false;
        self.on_writer = false;
        self.savepoints.clear();
        self.cursors.clear();
        self.release(node);
        self.doomed = None;
    }

    /// Closes the read view and, given the node, tells the writer connection to forget the
    /// block, off the async workers (closing a read view waits out a snapshot installation).
    fn release(&mut self, node: Option<&Arc<sqlkeeper_raft::Node>>) {
        let held = self.held.take();
        let block = self.block.take();
        let node = node.cloned();
        if held.is_none() && block.is_none() {
            return;
        }
        let work = async move {
            if let (Some(node), Some(block)) = (node, block) {
                node.forget_block(block).await;
            }
            if let Some(held) = held {
                let _ = tokio::task::spawn_blocking(move || drop(held)).await;
            }
        };
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(work);
        }
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

    /// Called when the connection goes idle: inside a block, arms the idle timer. The block
    /// holds nothing other sessions need (at most a read view), so it only ends after
    /// `idle_in_transaction_session_timeout`.
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
        let node = node.clone();
        txn.idle_timer = Some(tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(txn) = weak.upgrade() else { return };
            let mut txn = txn.lock().await;
            if txn.generation == generation && txn.phase != Phase::Idle {
                tracing::info!(?timeout, "idle in transaction for too long: rolled back");
                txn.end(Some(&node));
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

    fn block(&self) -> Result<Arc<Mutex<Block>>, ClientError> {
        self.block
            .clone()
            .ok_or_else(|| ClientError::new("XX000", "the transaction block has no state"))
    }

    /// Records a step that needs no run now (a savepoint while the block has not reached the
    /// writer connection): the replay runs it.
    fn record_here(&self, step: TxnStep) -> Result<(), ClientError> {
        self.block()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(step, &Ok(Default::default()));
        Ok(())
    }
}

pub(crate) fn aborted() -> ClientError {
    ClientError::new(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// The error a client gets on its next message after the idle timeout ended its block.
pub fn idle_timeout_error() -> ClientError {
    ClientError::fatal(
        "25P03",
        "terminating connection due to idle-in-transaction timeout",
    )
}

impl Session {
    fn statements_of(
        &self,
        t: &Translated,
        params: &[Value],
    ) -> Result<Vec<Statement>, ClientError> {
        self.statements_from(t, params.to_vec())
    }

    /// [`Session::statements_of`], with the parameters moved in (a COPY's rows are not copied
    /// again); cloned only for the second and later SQLite statements of the translation.
    fn statements_from(
        &self,
        t: &Translated,
        params: Vec<Value>,
    ) -> Result<Vec<Statement>, ClientError> {
        let mut params = Some(self.bound(t, params)?);
        let last = t.sqlite.len().saturating_sub(1);
        Ok(t.sqlite
            .iter()
            .enumerate()
            .map(|(i, sql)| Statement {
                sql: sql.clone(),
                params: if i == last {
                    params.take().unwrap_or_default()
                } else {
                    params.clone().unwrap_or_default()
                },
                effect: t.effect.clone(),
            })
            .collect())
    }
}

fn done(tag: &str) -> Produced {
    Produced::Done(tag.to_string())
}

/// Where a session stands between two messages, for the connection's idle-session timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Between {
    /// No transaction block: the idle-session timeout applies.
    Idle,
    /// Inside a block (or the block is busy): `idle_in_transaction_session_timeout` applies.
    InBlock,
    /// `idle_in_transaction_session_timeout` ended the block; the client was not told yet.
    BlockTimedOut,
}

impl Session {
    /// Fails an open block after an error the connection loop answered itself (a malformed
    /// message), as any error inside a block does in PostgreSQL. Errors of extended-query
    /// messages need not come here: `on_sync` fails the block for them.
    pub async fn fail_block(&self) {
        self.txn.lock().await.fail();
    }

    /// Where the session stands between messages (see [`Between`]).
    pub fn between(&self) -> Between {
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
            let refused = txn
                .refuses(&t.kind)
                .or_else(|| crate::values::literal_cast_error(&t));
            let r = match refused {
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

    /// The inserts of a `COPY ... FROM STDIN` inside the open block, run on the block writer
    /// in one go (one replay of the block for all of them, `Work::Steps`) and recorded as the
    /// block's steps. Returns the rows written; an error fails the block.
    pub(crate) async fn copy_in_block(
        &self,
        batch: Vec<(Translated, Vec<Value>)>,
    ) -> Result<u64, ClientError> {
        let mut txn = self.txn.lock().await;
        let r = self.copy_steps(&mut txn, batch).await;
        if r.is_err() {
            txn.fail();
        }
        r
    }

    async fn copy_steps(
        &self,
        txn: &mut Txn,
        batch: Vec<(Translated, Vec<Value>)>,
    ) -> Result<u64, ClientError> {
        if let Some(e) = &txn.doomed {
            return Err(e.clone());
        }
        if txn.phase == Phase::Failed {
            return Err(aborted());
        }
        txn.started = true;
        if txn.read_only {
            return Err(ClientError::new(
                "25006",
                "cannot execute COPY FROM in a read-only transaction",
            ));
        }
        let mut steps = Vec::with_capacity(batch.len());
        for (t, params) in batch {
            steps.push(TxnStep::Sql(self.statements_from(&t, params)?));
        }
        let r = self.on_writer(txn, Work::Steps(steps)).await??;
        Ok(r.rows_affected)
    }

    pub(crate) async fn run_in_block(
        &self,
        txn: &mut Txn,
        t: &Translated,
        params: Vec<Value>,
    ) -> Result<Produced, ClientError> {
        if let Some(e) = &txn.doomed {
            // The block can never commit: nothing but leaving it may run, or a read would see
            // a state the block could not have seen.
            if matches!(
                t.kind,
                StatementKind::Read
                    | StatementKind::Write
                    | StatementKind::Ddl
                    | StatementKind::Cursor(_)
            ) {
                return Err(e.clone());
            }
        }
        match &t.kind {
            StatementKind::Transaction(op) => self.control(txn, op).await,
            StatementKind::Read => {
                txn.started = true;
                let stmts = self.statements_of(t, &params)?;
                if txn.on_writer {
                    let work = if txn.isolation.checks_reads() {
                        Work::Record(TxnStep::Read(stmts))
                    } else {
                        Work::Read(stmts)
                    };
                    let r = self.on_writer(txn, work).await?;
                    return Ok(Produced::rows(r?, t));
                }
                if !txn.isolation.checks_reads() {
                    // READ COMMITTED: the latest committed state, at the block's time, with
                    // randomness of its own (the read is not replayed: what it draws must not
                    // be what the block's writes draw).
                    let stamp = txn
                        .block()?
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stamp();
                    let stamp = Stamp {
                        seed: sqlkeeper_engine::local_stamp().seed,
                        ..stamp
                    };
                    return self.read_one_at(t, params, stamp).await;
                }
                let held = self.snapshot(txn).await?;
                let r = self.read_on(held, stmts.clone()).await?;
                // What the block read must still hold where it commits.
                txn.block()?
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .record(TxnStep::Read(stmts), &Ok(r.clone()));
                Ok(Produced::rows(r, t))
            }
            StatementKind::Write | StatementKind::Ddl => {
                txn.started = true;
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
                    // VACUUM.
                    return Err(ClientError::new(
                        "25001",
                        format!("{} cannot run inside a transaction block", t.tag.render(0)),
                    ));
                }
                let step = TxnStep::Sql(self.statements_of(t, &params)?);
                let r = self.on_writer(txn, Work::Record(step)).await??;
                Ok(if r.columns.is_empty() || t.kind == StatementKind::Ddl {
                    Produced::Done(t.tag.render(r.rows_affected))
                } else {
                    Produced::rows(r, t)
                })
            }
            StatementKind::Session(SessionOp::Show(name))
                if matches!(
                    name.as_str(),
                    "transaction_isolation" | "transaction isolation level"
                ) =>
            {
                Ok(Produced::text(
                    name.clone(),
                    txn.isolation.name().into(),
                    CommandTag::Fixed("SHOW"),
                ))
            }
            StatementKind::Session(SessionOp::Set {
                name,
                value: Some(v),
            }) if name == "transaction_isolation" => {
                let isolation = Isolation::parse(v).ok_or_else(|| {
                    ClientError::new(
                        "22023",
                        format!("invalid value for parameter \"transaction_isolation\": \"{v}\""),
                    )
                })?;
                set_transaction(txn, None, Some(isolation))?;
                Ok(done("SET"))
            }
            StatementKind::Session(op) => self.session_op(op),
            StatementKind::Introspection => self.introspect(t, params).await,
            StatementKind::Cursor(op) => self.cursor(txn, op, params).await,
            StatementKind::Copy(_) => Err(ClientError::new("XX000", "COPY reached the block path")),
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
            (
                Phase::Idle,
                TxnOp::Begin {
                    start,
                    read_only,
                    isolation,
                },
            ) => {
                let (default_isolation, default_read_only) = {
                    let s = self.settings();
                    (s.default_isolation(), s.default_read_only())
                };
                txn.phase = Phase::Active;
                txn.read_only = read_only.unwrap_or(default_read_only);
                txn.isolation = isolation.unwrap_or(default_isolation);
                // The block's time is fixed when it begins, as Postgres's transaction
                // timestamp is; every statement of it, and its replay, sees it.
                let role = self.role().await?;
                txn.block = Some(Arc::new(Mutex::new(Block::new(
                    self.node.new_stamp(),
                    role,
                ))));
                Ok(done(if *start { "START TRANSACTION" } else { "BEGIN" }))
            }
            // Postgres warns and goes on.
            (_, TxnOp::Begin { start, .. }) => {
                Ok(done(if *start { "START TRANSACTION" } else { "BEGIN" }))
            }
            // Postgres warns and changes nothing.
            (Phase::Idle, TxnOp::SetTransaction { .. }) => Ok(done("SET")),
            (
                _,
                TxnOp::SetTransaction {
                    read_only,
                    isolation,
                },
            ) => {
                set_transaction(txn, *read_only, *isolation)?;
                Ok(done("SET"))
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
                txn.end(Some(&self.node));
                Ok(done("ROLLBACK"))
            }
            (_, TxnOp::Rollback) => {
                txn.end(Some(&self.node));
                Ok(done("ROLLBACK"))
            }
            (_, TxnOp::Commit) => self.commit(txn).await,
            (_, TxnOp::Savepoint(name)) => {
                let step = TxnStep::Savepoint(savepoint_name(txn.savepoints.len()));
                self.savepoint_step(txn, step).await?;
                txn.savepoints.push(name.clone());
                Ok(done("SAVEPOINT"))
            }
            (_, TxnOp::Release(name)) => {
                let at = find_savepoint(txn, name)?;
                self.savepoint_step(txn, TxnStep::Release(savepoint_name(at)))
                    .await?;
                txn.savepoints.truncate(at);
                crate::cursor::released(&mut txn.cursors, at);
                Ok(done("RELEASE"))
            }
            (_, TxnOp::RollbackTo(name)) => {
                if let Some(e) = &txn.doomed {
                    return Err(e.clone());
                }
                let at = find_savepoint(txn, name)?;
                self.savepoint_step(txn, TxnStep::RollbackTo(savepoint_name(at)))
                    .await?;
                txn.savepoints.truncate(at + 1);
                crate::cursor::rolled_back_to(&mut txn.cursors, at);
                txn.phase = Phase::Active;
                Ok(done("ROLLBACK"))
            }
        }
    }

    /// Records a savepoint step: run on the writer connection once the block is there (so
    /// what it holds stays the block's state), else recorded for the replay to run.
    async fn savepoint_step(&self, txn: &mut Txn, step: TxnStep) -> Result<(), ClientError> {
        if txn.on_writer {
            self.on_writer(txn, Work::Record(step)).await??;
            Ok(())
        } else {
            txn.record_here(step)
        }
    }

    async fn commit(&self, txn: &mut Txn) -> Result<Produced, ClientError> {
        let block = txn.block.take();
        let held = txn.held.take();
        let on_writer = txn.on_writer;
        txn.end(None);
        if let Some(h) = &held {
            self.settings()
                .observe(h.applied_index().map_or(0, |i| i.0));
        }
        drop(held);
        let Some(block) = block else {
            return Ok(done("COMMIT"));
        };
        if on_writer {
            // What the writer connection holds for the block is of no more use.
            self.node.forget_block(block.clone()).await;
        }
        let mut block = std::mem::replace(
            &mut *block.lock().unwrap_or_else(|p| p.into_inner()),
            Block::new(Default::default(), None),
        );
        if !block.writes() {
            // Read-only: nothing to replicate.
            return Ok(done("COMMIT"));
        }
        // The rows the block changed stay locked until its commit is applied here, so that a
        // block waiting for one of them sees the commit (`transactions.md`, Row locks).
        let rows = block.hold_rows();
        let record = block.finish();
        // Spawned, so that nothing (a cancel, a disconnect) drops the commit half way; a simple
        // query's cancel waits for it (`committing`).
        let _committing = Flag::raise(&self.committing);
        let node = self.node.clone();
        let committed = tokio::spawn(async move {
            let r = node
                .commit_block(record, crate::session::WRITE_TIMEOUT)
                .await;
            drop(rows);
            r
        })
        .await;
        let (outcome, index) =
            committed.map_err(|e| ClientError::new("XX000", format!("commit task: {e}")))??;
        self.settings().observe(index.0);
        if let Some((_, e)) = outcome.error {
            return Err(e.into());
        }
        Ok(done("COMMIT"))
    }

    /// Runs `work` for the block on the node's writer connection for blocks. The first time,
    /// the session's read consistency is waited for (the block's statements run on this
    /// node's latest state, which must include what the session saw), and the block's read
    /// view is let go: from now on every statement of the block runs there. A conflict, or a
    /// statement that ends the whole block, dooms the block.
    async fn on_writer(
        &self,
        txn: &mut Txn,
        work: Work,
    ) -> Result<Result<sqlkeeper_engine::StatementResult, ClientError>, ClientError> {
        if !txn.on_writer && txn.held.is_none() {
            self.before_read().await?;
        }
        let timeout = self.settings().statement_timeout();
        let r = self.node.run_block(txn.block()?, work, timeout).await;
        let (done, applied) = match r {
            Ok(v) => v,
            Err(e) => {
                let e = ClientError::from(e);
                if e.sqlstate != "57014" {
                    txn.doomed = Some(e.clone());
                }
                return Err(e);
            }
        };
        if !txn.on_writer {
            txn.on_writer = true;
            if let Some(h) = txn.held.take() {
                let _ = tokio::task::spawn_blocking(move || drop(h)).await;
            }
        }
        if let Some(a) = applied {
            self.settings().observe(a.0);
        }
        match done {
            Done::Ran(r) => Ok(r.map_err(ClientError::from)),
            Done::Described(_) => Err(ClientError::new(
                "XX000",
                "a statement was described, not run",
            )),
        }
    }

    /// The block's read view, opened at its first read (after the session's consistency wait).
    async fn snapshot(&self, txn: &mut Txn) -> Result<Arc<HeldRead>, ClientError> {
        if let Some(h) = &txn.held {
            return Ok(h.clone());
        }
        self.before_read().await?;
        let stamp = txn
            .block()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stamp();
        let h = Arc::new(self.node.hold_read(stamp).await?);
        if let Some(a) = h.applied_index() {
            self.settings().observe(a.0);
        }
        txn.held = Some(h.clone());
        Ok(h)
    }

    async fn read_on(
        &self,
        held: Arc<HeldRead>,
        stmts: Vec<Statement>,
    ) -> Result<sqlkeeper_engine::StatementResult, ClientError> {
        let timeout = self.settings().statement_timeout();
        let role = self.role().await?;
        let mut results = self
            .node
            .read_held(held, timeout, move |view| {
                let mut out = Vec::with_capacity(stmts.len());
                for s in &stmts {
                    out.push(
                        view.query_as(role.as_deref(), s)
                            .map_err(sqlkeeper_engine::EngineError::from)?,
                    );
                }
                Ok(out)
            })
            .await?;
        Ok(results.pop().unwrap_or_default())
    }
}

/// `SET TRANSACTION` inside a block: the isolation level only before its first statement,
/// as in PostgreSQL; `READ ONLY` at any time, `READ WRITE` only before the first statement.
fn set_transaction(
    txn: &mut Txn,
    read_only: Option<bool>,
    isolation: Option<Isolation>,
) -> Result<(), ClientError> {
    if let Some(i) = isolation {
        if txn.started && i != txn.isolation {
            return Err(ClientError::new(
                "25001",
                "SET TRANSACTION ISOLATION LEVEL must be called before any query",
            ));
        }
        txn.isolation = i;
    }
    match read_only {
        Some(false) if txn.started && txn.read_only => Err(ClientError::new(
            "25001",
            "transaction read-write mode must be set before any query",
        )),
        Some(r) => {
            txn.read_only = r;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Describes `sql` inside an open block, against the block's own state: the writer
/// connection once the block is there, else its read view. `None` outside a block, and where
/// the block's state is the latest committed one (a `READ COMMITTED` block that has not
/// written).
pub(crate) async fn describe_in_block(
    node: &Arc<sqlkeeper_raft::Node>,
    txn: &mut Txn,
    stmt: &Statement,
    timeout: Duration,
) -> Option<Result<Vec<sqlkeeper_engine::Column>, ClientError>> {
    if txn.phase == Phase::Idle {
        return None;
    }
    if txn.on_writer {
        let block = txn.block.clone()?;
        let r = node
            .run_block(block, Work::Describe(stmt.clone()), timeout)
            .await;
        return Some(match r {
            Ok((Done::Described(d), _)) => d.map(|(cols, _)| cols).map_err(ClientError::from),
            Ok((Done::Ran(_), _)) => Err(ClientError::new(
                "XX000",
                "a statement was run, not described",
            )),
            Err(e) => Err(ClientError::from(e)),
        });
    }
    let held = txn.held.clone()?;
    let stmt = stmt.clone();
    Some(
        node.read_held(held, timeout, move |v| {
            v.describe(&stmt)
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
