//! The tokio boundary of the state machine: one OS thread owns `engine::StateMachine` (and so
//! the only writable SQLite connection); async code sends it closures over a channel and
//! awaits a oneshot reply. No SQLite call ever runs on a tokio worker.

use std::io;
use std::sync::mpsc;

use sqlkeeper_engine::StateMachine;

type Job = Box<dyn FnOnce(&mut StateMachine) + Send>;

/// Handle to the apply thread. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct ApplyThread {
    /// Jobs for the thread, run one at a time in order. The thread holds the receiver.
    jobs: mpsc::Sender<Job>,
}

impl ApplyThread {
    pub(crate) fn spawn(mut sm: StateMachine, node_id: u64) -> io::Result<ApplyThread> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlkeeper-apply".into())
            .spawn(move || {
                let _span = tracing::info_span!("apply", node_id).entered();
                while let Ok(job) = rx.recv() {
                    job(&mut sm);
                }
            })?;
        Ok(ApplyThread { jobs: tx })
    }

    /// Runs `f` on the apply thread and waits for its result.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut StateMachine) -> T + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |sm| {
                let _ = tx.send(f(sm));
            }))
            .map_err(|_| io::Error::other("apply thread has stopped"))?;
        rx.await
            .map_err(|_| io::Error::other("apply thread dropped a job"))
    }
}
