//! Local reads on the read pool, interruptible by a timeout or by the client going away.

use super::*;

impl Node {
    /// Runs `f` in one read transaction on a local read-only connection. If the returned
    /// future is dropped (the client cancelled), or `timeout` passes first (57014), the running
    /// SQLite statement is interrupted.
    pub async fn read<T, F>(&self, timeout: Duration, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        self.read_at(sqlkeeper_engine::local_stamp(), timeout, f)
            .await
    }

    /// [`Node::read`] with the time and randomness of `stamp` (a transaction block's).
    pub async fn read_at<T, F>(&self, stamp: Stamp, timeout: Duration, f: F) -> Result<T, NodeError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadView<'_>) -> Result<T, EngineError> + Send + 'static,
    {
        let reads = self.reads.clone();
        interruptible(timeout, move |on_start, on_end| {
            reads.read_at(stamp, on_start, move |v| {
                let r = f(v);
                on_end();
                r
            })
        })
        .await
    }

    /// Runs the probes of a write (`sqlkeeper_sql::Translated::probe`) on a local read
    /// connection with the entry's step budget: 54000 if the write's reading alone would go
    /// over it, so a hopeless write is refused before it reaches the log.
    /// The probes run as `role`, the write's (`None`: a superuser).
    pub async fn probe(
        &self,
        role: Option<String>,
        probes: Vec<Statement>,
    ) -> Result<(), NodeError> {
        if probes.is_empty() {
            return Ok(());
        }
        let steps = EntryHeader::current().vm_steps_max;
        self.read(INTERNAL_READ_TIMEOUT, move |v| {
            v.probe(role.as_deref(), &probes, steps)
                .map_err(EngineError::from)
        })
        .await
    }
}

/// Bound on the node's own reads (the removed-node check, the state hash): they are small,
/// but a read never runs unbounded.
pub(super) const INTERNAL_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The callbacks `interruptible` hands to a read: one receives the connection's interrupt
/// handle when the read starts, the other forgets it when the read's work is done (before the
/// connection can go back to the pool and serve another session).
pub(super) type OnStart = Box<dyn FnOnce(rusqlite::InterruptHandle) + Send>;

pub(super) type OnEnd = Box<dyn FnOnce() + Send>;

/// Runs a read in a blocking task; if the returned future is dropped, or `timeout` passes
/// first, the running statement is interrupted.
pub(super) async fn interruptible<T, R>(timeout: Duration, run: R) -> Result<T, NodeError>
where
    T: Send + 'static,
    R: FnOnce(OnStart, OnEnd) -> Result<T, EngineError> + Send + 'static,
{
    let handle: Arc<Mutex<Option<rusqlite::InterruptHandle>>> = Arc::new(Mutex::new(None));
    let mut guard = InterruptOnDrop {
        handle: handle.clone(),
        armed: true,
    };
    let ended = handle.clone();
    let on_start: OnStart = Box::new(move |h| {
        *handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
    });
    let on_end: OnEnd = Box::new(move || {
        ended.lock().unwrap_or_else(|p| p.into_inner()).take();
    });
    let task = tokio::task::spawn_blocking(move || run(on_start, on_end));
    let r = match tokio::time::timeout(timeout, task).await {
        Ok(r) => r,
        // `guard` is still armed: dropping it interrupts the statement, and the task ends
        // soon after, returning its connection to the pool.
        Err(_) => return Err(statement_timeout()),
    };
    guard.armed = false;
    match r {
        Ok(r) => r.map_err(NodeError::from),
        Err(e) => Err(NodeError::Fatal(format!("read task: {e}"))),
    }
}

/// Interrupts the SQLite statement of a read whose future was dropped.
pub(super) struct InterruptOnDrop {
    handle: Arc<Mutex<Option<rusqlite::InterruptHandle>>>,
    /// Cleared once the read finished, so a completed read is not interrupted.
    armed: bool,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(h) = self
            .handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            h.interrupt();
        }
    }
}

/// What a statement that ran out of `statement_timeout` answers (PostgreSQL's words).
pub(super) fn statement_timeout() -> NodeError {
    NodeError::Exec(ExecError::new(
        "57014",
        "canceling statement due to statement timeout",
    ))
}
