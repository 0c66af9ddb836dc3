//! What operators watch: the node's Raft state as Prometheus gauges (set when `/metrics` is
//! scraped; counters and histograms are recorded where things happen) and its readiness.

use super::*;

/// Roles a node reports; `sqlkeeper_raft_role{role}` is 1 for the current one, 0 for the others.
const ROLES: [&str; 5] = ["leader", "follower", "learner", "candidate", "shutdown"];

impl Node {
    /// Sets the Raft gauges from openraft's metrics: role, term, last log, commit, applied and
    /// snapshot indexes, the leader's view of each follower's lag, and the WAL size.
    pub fn record_metrics(&self) {
        let m = self.raft.metrics().borrow_watched().clone();
        let role = role_of(m.state);
        for r in ROLES {
            metrics::gauge!("sqlkeeper_raft_role", "role" => r).set(f64::from(u8::from(r == role)));
        }
        let index = |l: Option<u64>| l.map_or(-1.0, |i| i as f64);
        metrics::gauge!("sqlkeeper_raft_term").set(m.current_term as f64);
        metrics::gauge!("sqlkeeper_raft_last_log_index").set(index(m.last_log_index));
        metrics::gauge!("sqlkeeper_raft_commit_index")
            .set(index(m.local_committed.as_ref().map(|l| l.index)));
        metrics::gauge!("sqlkeeper_raft_applied_index")
            .set(index(m.last_applied.as_ref().map(|l| l.index)));
        metrics::gauge!("sqlkeeper_raft_snapshot_index")
            .set(index(m.snapshot.as_ref().map(|l| l.index)));
        metrics::gauge!("sqlkeeper_state_wal_bytes").set(self.reads.wal_bytes() as f64);
        if let Some(replication) = &m.replication {
            let last = m.last_log_index.unwrap_or(0);
            for (follower, matched) in replication.iter().filter(|(id, _)| **id != self.id) {
                // Entries the follower lacks: all of them while nothing is matched.
                let lag = match matched {
                    Some(l) => last.saturating_sub(l.index),
                    None => last + 1,
                };
                metrics::gauge!("sqlkeeper_replication_lag_entries", "follower" => follower.to_string())
                    .set(lag as f64);
            }
        }
    }

    /// Whether the node is ready to serve (`/ready`): it knows a leader, and it has applied
    /// every entry its log held when it started (a restarted node has caught up with itself).
    pub fn readiness(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.current_leader.is_none() {
            return Err("no leader is known".into());
        }
        let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
        match self.start_log_index {
            Some(start) if applied < start => Err(format!(
                "applied {applied} of the {start} entries in its log at start"
            )),
            _ => Ok(()),
        }
    }
}
