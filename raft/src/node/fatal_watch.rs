//! Watching openraft's metrics for a fatal error.

use super::*;

/// Logs leadership changes and reports a fatal Raft error.
pub(super) async fn watch_raft(
    raft: Raft<TypeConfig, StateMachineStore>,
    fatal: watch::Sender<Option<String>>,
) {
    let mut rx = raft.metrics();
    let mut last: Option<(Option<NodeId>, ServerState, u64)> = None;
    loop {
        let m = rx.borrow_watched().clone();
        if let Err(e) = &m.running_state {
            if matches!(e, openraft::errors::Fatal::Stopped) {
                // A clean shutdown (Node::shutdown), not a failure.
                tracing::debug!(node_id = m.id, "raft stopped");
            } else {
                tracing::error!(node_id = m.id, error = %e, "raft stopped with a fatal error");
            }
            let _ = fatal.send(Some(e.to_string()));
            return;
        }
        let now = (m.current_leader, m.state, m.current_term);
        if last.as_ref() != Some(&now) {
            if last.as_ref().map(|l| l.0) != Some(now.0)
                || last.as_ref().map(|l| l.1) != Some(now.1)
            {
                tracing::info!(node_id = m.id, term = m.current_term, leader = ?m.current_leader, role = role_of(m.state), "raft role changed");
            }
            last = Some(now);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
