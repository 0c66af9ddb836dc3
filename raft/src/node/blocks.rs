//! Transaction blocks on this node's block writer: running a statement, reserving sequence values,
//! cancelling.

use super::*;

impl Node {
    /// Time and seed for a transaction block, fixed when it begins.
    pub fn new_stamp(&self) -> Stamp {
        self.stamp(self.next_serial.fetch_add(1, Ordering::Relaxed))
    }

    /// Opens a read transaction that stays open across statements (the read view of a
    /// `REPEATABLE READ` or `SERIALIZABLE` block), reading with the block's `stamp`.
    pub async fn hold_read(&self, stamp: Stamp) -> Result<HeldRead, NodeError> {
        let reads = self.reads.clone();
        tokio::task::spawn_blocking(move || reads.hold(stamp))
            .await
            .map_err(|e| NodeError::Fatal(format!("read task: {e}")))?
            .map_err(|e| NodeError::Fatal(e.0))
    }

    /// Runs `f` on a held read transaction (see [`Node::read`] for cancellation and the
    /// timeout).
    pub async fn read_held<T, F>(
        &self,
        held: Arc<HeldRead>,
        timeout: Duration,
        f: F,
    ) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        interruptible(timeout, move |on_start, on_end| {
            held.read(on_start, move |v| {
                let r = f(v);
                on_end();
                r
            })
        })
        .await
    }

    /// Does `work` for a transaction block on this node's writer connection for blocks, on
    /// the latest applied state (see `sqlkeeper_engine::BlockWriter::run`). Returns what it
    /// did and the applied index it ran at. If the returned future is dropped, or `timeout`
    /// passes first (57014), the statement is cancelled: it is not recorded, and the block is
    /// as it was before it.
    ///
    /// A statement that needs sequence values when none are reserved for this node gets them
    /// here (one ordinary entry calling `_sqlkeeper_reserve`) and runs again.
    pub async fn run_block(
        &self,
        block: Arc<Mutex<Block>>,
        work: Work,
        timeout: Duration,
    ) -> Result<(Done, Option<LogIndex>), NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut reservations = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .run_block_once(block.clone(), work.clone(), left)
                .await?
            {
                Err(BlockError::NeedValues(sequence)) if reservations < RESERVATIONS_MAX => {
                    // Four times as many each time: a statement that needs more values than one
                    // reservation gives gets them in a few rounds.
                    let count = (sqlkeeper_engine::RESERVED_VALUES << (2 * reservations))
                        .min(sqlkeeper_engine::RESERVED_VALUES_MAX);
                    reservations += 1;
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.reserve(&block, sequence, count, left).await?;
                }
                r => return r.map_err(spec_error),
            }
        }
    }

    /// Reserves `count` values of `sequence` for this node's blocks, through the log. A
    /// sequence that does not exist outside the block (it created it) is marked as the
    /// block's own instead.
    pub(super) async fn reserve(
        &self,
        block: &Arc<Mutex<Block>>,
        sequence: String,
        count: i64,
        timeout: Duration,
    ) -> Result<(), NodeError> {
        let stmt = Statement {
            sql: format!("SELECT {}(?1, ?2)", sqlkeeper_engine::RESERVE_FUNCTION),
            params: vec![Value::Text(sequence.clone()), Value::Integer(count)],
            effect: Default::default(),
        };
        let (outcome, _) = self.write(vec![stmt], timeout).await?;
        if let Some((_, e)) = outcome.error {
            if e.sqlstate == "42P01" {
                block
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .mark_local(sequence);
                return Ok(());
            }
            return Err(NodeError::Exec(e));
        }
        match outcome
            .results
            .first()
            .and_then(|r| r.rows.first())
            .and_then(|r| r.first())
        {
            Some(Value::Text(reserved)) => self
                .block_writer
                .add_reserved(&sequence, reserved)
                .map_err(|f| NodeError::Fatal(f.0)),
            other => Err(NodeError::Fatal(format!(
                "reserving values of {sequence}: unexpected answer {other:?}"
            ))),
        }
    }

    /// One try of [`Node::run_block`].
    pub(super) async fn run_block_once(
        &self,
        block: Arc<Mutex<Block>>,
        work: Work,
        timeout: Duration,
    ) -> Result<Result<(Done, Option<LogIndex>), BlockError>, NodeError> {
        let ticket = Ticket::default();
        let mut guard = CancelOnDrop {
            block_writer: self.block_writer.clone(),
            ticket: ticket.clone(),
            armed: true,
        };
        let block_writer = self.block_writer.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut block = block.lock().unwrap_or_else(|p| p.into_inner());
            block_writer.run(&mut block, work, &ticket)
        });
        let r = match tokio::time::timeout(timeout, task).await {
            Ok(r) => r,
            // `guard` is still armed: dropping it cancels the statement.
            Err(_) => return Err(statement_timeout()),
        };
        guard.armed = false;
        r.map_err(|e| NodeError::Fatal(format!("block task: {e}")))
    }

    /// Forgets what the writer connection holds for an ended block.
    pub async fn forget_block(&self, block: Arc<Mutex<Block>>) {
        let block_writer = self.block_writer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            block_writer.forget(&block.lock().unwrap_or_else(|p| p.into_inner()))
        })
        .await;
    }
}

pub(super) fn spec_error(e: BlockError) -> NodeError {
    match e {
        BlockError::Conflict(why) => NodeError::Exec(ExecError::new(
            "40001",
            format!("could not serialize access: {why}"),
        )),
        BlockError::Cancelled => NodeError::Exec(ExecError::new(
            "57014",
            "canceling statement due to user request",
        )),
        // The statement ended the transaction (its budget ran out, ...): the block can only
        // be rolled back, and the client gets the statement's error.
        BlockError::Aborted(e) => NodeError::Exec(e),
        BlockError::NeedValues(sequence) => NodeError::Exec(ExecError::new(
            "40001",
            format!(
                "could not serialize access: the values of sequence \"{sequence}\" reserved for this node ran out {RESERVATIONS_MAX} times while the statement ran (other transactions on this node took them, or it needs more than {} values)",
                sqlkeeper_engine::RESERVED_VALUES_MAX
            ),
        )),
        BlockError::Fatal(f) => NodeError::Fatal(f.0),
    }
}

/// How many times one block statement reserves sequence values before it gives up (40001):
/// more than once only when other blocks on the node took the values first.
pub(super) const RESERVATIONS_MAX: u32 = 8;

/// Cancels the block statement of a future that was dropped.
pub(super) struct CancelOnDrop {
    block_writer: Arc<BlockWriter>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.block_writer.cancel(&self.ticket);
        }
    }
}
