//! Writes through the log: stamping, proposing on the leader, retries with the same request id, and
//! waiting for the local apply.

use super::*;
use sqlkeeper_engine::{split_steps, Staged, TxnStep, COMMAND_BYTES_MAX, TXN_BYTES_MAX};

impl Node {
    pub(super) fn stamp(&self, serial: u64) -> Stamp {
        let unix_micros = now_micros();
        Stamp {
            unix_micros,
            seed: self.random.hash_one((serial, unix_micros)),
        }
    }

    pub(super) fn new_request_id(&self) -> RequestId {
        RequestId {
            origin: self.id,
            serial: self.next_serial.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Proposes a write a follower forwarded to this node, which must be the leader. Its size
    /// is checked again here, where it is proposed: the limit holds whatever a peer sends.
    pub(crate) async fn propose_forwarded(
        &self,
        request_id: RequestId,
        proposal: Proposal,
    ) -> Result<(Outcome, LogIndex), RemoteError> {
        let size = proposal.size_bound();
        if size > COMMAND_BYTES_MAX {
            return Err(RemoteError::Failed(
                too_large(size, COMMAND_BYTES_MAX).to_string(),
            ));
        }
        self.propose_now(request_id, proposal).await
    }

    /// Proposes a command on this node, which must be the leader. The leader fixes the time
    /// and seed of autocommit statements.
    pub(super) async fn propose_now(
        &self,
        request_id: RequestId,
        proposal: Proposal,
    ) -> Result<(Outcome, LogIndex), RemoteError> {
        let command = match proposal {
            Proposal::Statements { statements, role } => Command::Execute {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                stamp: self.stamp(request_id.serial),
                statements,
                role,
            },
            Proposal::Transaction(record) => Command::Transaction {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                record,
            },
            Proposal::TransactionPart { txn, seq, steps } => Command::TransactionPart {
                header: Some(EntryHeader::current()),
                txn,
                seq,
                stamp: self.stamp(request_id.serial),
                steps,
            },
        };
        let started = Instant::now();
        let written = self.raft.client_write(command).await;
        metrics::histogram!("sqlkeeper_proposal_seconds").record(started.elapsed());
        metrics::counter!(
            "sqlkeeper_proposals_total",
            "result" => if written.is_ok() { "committed" } else { "refused" }
        )
        .increment(1);
        match written {
            Ok(resp) => Ok((resp.data, LogIndex(resp.log_id.index))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id,
                leader_node,
                ..
            }))) => Err(RemoteError::NotLeader {
                leader_id,
                leader: leader_node,
            }),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => Err(
                RemoteError::Unknown(format!("the entry was discarded by a leader change: {f}")),
            ),
            Err(RaftError::APIError(e)) => Err(RemoteError::Failed(e.to_string())),
            // Raft stopped: the entry may have been appended before it did.
            Err(RaftError::Fatal(f)) => Err(RemoteError::Unknown(f.to_string())),
        }
    }

    /// Replicates `statements` as one log entry and returns what applying it produced, with
    /// the entry's log index. The statements run all-or-nothing. On a follower the write is
    /// forwarded to the leader, and this returns only after this node has applied the entry
    /// too, so the session's next read here sees it. A leader change is retried with the same
    /// request id, which the state machine deduplicates, so a retried write is never applied
    /// twice.
    pub async fn write(
        &self,
        statements: Vec<Statement>,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_as(None, statements, timeout).await
    }

    /// [`Node::write`] of statements that run as `role` (`None`: a superuser): every replica
    /// checks them against that role's privileges when it applies them.
    pub async fn write_as(
        &self,
        role: Option<String>,
        statements: Vec<Statement>,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_proposal(Proposal::Statements { statements, role }, timeout)
            .await
    }

    /// Replicates a finished transaction block as one entry (see [`Node::write`]). The
    /// outcome is 40001 if its statements return other results at its place in the log.
    ///
    /// A block larger than one entry goes into the log as its parts (`Command::TransactionPart`,
    /// each one entry, proposed in order) and then its commit, which names them by the commit's
    /// request id; every replica applies the block when it applies the commit
    /// (`docs/transactions.md`, Large transactions). `timeout` is per entry.
    pub async fn commit_block(
        &self,
        mut record: TxnRecord,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        let (parts, size) = split_steps(&record.steps);
        if size.total > TXN_BYTES_MAX {
            return Err(too_large(size.total, TXN_BYTES_MAX));
        }
        let request_id = self.new_request_id();
        if parts.len() > 1 {
            let rebuilds_tables = record.steps.iter().any(TxnStep::rebuilds_tables);
            let mut steps = std::mem::take(&mut record.steps);
            let mut chunks: Vec<Vec<TxnStep>> = parts
                .iter()
                .rev()
                .map(|range| steps.split_off(range.start))
                .collect();
            chunks.reverse();
            // The last part travels in the commit itself.
            record.steps = chunks.pop().unwrap_or_default();
            record.staged = Some(Staged {
                parts: chunks.len() as u32,
                rebuilds_tables,
            });
            for (seq, steps) in chunks.into_iter().enumerate() {
                let part = Proposal::TransactionPart {
                    txn: request_id,
                    seq: seq as u32,
                    steps,
                };
                self.write_proposal_as(self.new_request_id(), part, timeout)
                    .await?;
            }
        }
        // Its apply replays every part: a budget, and so a time, that grows with them.
        let timeout = timeout.saturating_mul(parts.len().max(1) as u32);
        self.write_proposal_as(request_id, Proposal::Transaction(record), timeout)
            .await
    }

    pub(super) async fn write_proposal(
        &self,
        proposal: Proposal,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_proposal_as(self.new_request_id(), proposal, timeout)
            .await
    }

    async fn write_proposal_as(
        &self,
        request_id: RequestId,
        proposal: Proposal,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        let size = proposal.size_bound();
        if size > COMMAND_BYTES_MAX {
            return Err(too_large(size, COMMAND_BYTES_MAX));
        }
        let deadline = Instant::now() + timeout;
        let mut unknown = false;
        let mut last_leader = None;
        loop {
            let (result, forwarded_to) = self
                .on_leader_once(
                    deadline,
                    |left| {
                        let proposal = proposal.clone();
                        async move {
                            match tokio::time::timeout(left, self.propose_now(request_id, proposal))
                                .await
                            {
                                Ok(r) => r,
                                // Proposed, maybe committed: retried with the same id, deduplicated.
                                Err(_) => Err(RemoteError::Unknown(
                                    "the write did not commit in time".into(),
                                )),
                            }
                        }
                    },
                    || Request::ForwardWrite {
                        request_id,
                        proposal: proposal.clone(),
                    },
                    |resp| match resp {
                        Response::ForwardWrite(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            if forwarded_to.is_some() {
                last_leader = forwarded_to;
            }
            match result {
                Ok((outcome, index)) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_secs(1));
                    // The entry is committed: the write is done whatever happens next. If this
                    // node is slow to apply it, the session's token (the entry's index) still
                    // makes its next read here wait for it; never report a committed write as
                    // failed, or a client retry would apply it twice.
                    if let Err(e) = self.wait_applied(index, left).await {
                        tracing::debug!(error = %e, "write committed; local apply is behind");
                    }
                    if let Some(d) = outcome.deduplicated.filter(|d| d.rows_lost) {
                        // A retry found the write applied by an earlier attempt whose answer was
                        // lost; the state keeps a digest of the answer, not its rows.
                        let mut e = ExecError::new(
                            "40003",
                            format!(
                                "the write was applied (log entry {}) by an earlier attempt whose answer was lost, and the rows it returned were not kept",
                                d.first_index
                            ),
                        );
                        e.detail = Some("read the rows back instead of retrying".into());
                        return Err(NodeError::Exec(e));
                    }
                    return Ok((outcome, index));
                }
                // An earlier attempt may have been applied: this one's failure does not make
                // the write's outcome known.
                Err(RemoteError::Failed(m)) if unknown => {
                    tracing::debug!(error = %m, "write failed after an attempt with an unknown outcome");
                    return Err(NodeError::OutcomeUnknown {
                        leader_id: last_leader.map(|(id, _)| id),
                    });
                }
                Err(RemoteError::Failed(m)) => return Err(NodeError::Unavailable(m)),
                Err(RemoteError::Unknown(m)) => {
                    unknown = true;
                    tracing::debug!(error = %m, "write outcome unknown; retrying with the same request id");
                }
                Err(RemoteError::NotLeader { leader_id, leader }) => {
                    if let (Some(l), Some(info)) = (leader_id, leader) {
                        last_leader = Some((l, info));
                    }
                }
            }
            if Instant::now() >= deadline {
                let (leader_id, leader_pg_addr) = match last_leader {
                    Some((id, info)) => (Some(id), self.pg_addr_of(id, &info)),
                    None => (None, None),
                };
                return Err(if unknown {
                    NodeError::OutcomeUnknown { leader_id }
                } else {
                    NodeError::NotLeader {
                        leader_id,
                        leader_pg_addr,
                    }
                });
            }
            tokio::time::sleep(WRITE_RETRY_BACKOFF).await;
        }
    }
}

/// Pause between retries of a write or read index while the leader changes.
pub const WRITE_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// 54000 for a write larger than the log takes.
fn too_large(size: usize, max: usize) -> NodeError {
    NodeError::Exec(ExecError::new(
        "54000",
        format!("the statement and its parameters take up to {size} bytes in the log; the limit is {max}"),
    ))
}
