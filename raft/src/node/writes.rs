//! Writes through the log: stamping, proposing on the leader, retries with the same request id, and
//! waiting for the local apply.

use super::*;

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

    /// Proposes a command on this node, which must be the leader (a write forwarded to it).
    pub(crate) async fn propose(
        &self,
        request_id: RequestId,
        proposal: Proposal,
    ) -> Result<(Outcome, LogIndex), RemoteError> {
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
            Proposal::Statements(statements) => Command::Execute {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                stamp: self.stamp(request_id.serial),
                statements,
            },
            Proposal::Transaction(record) => Command::Transaction {
                header: Some(EntryHeader::current()),
                request_id: Some(request_id),
                record,
            },
        };
        match self.raft.client_write(command).await {
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
        self.write_proposal(Proposal::Statements(statements), timeout)
            .await
    }

    /// Replicates a finished transaction block as one entry (see [`Node::write`]). The
    /// outcome is 40001 if its statements return other results at its place in the log.
    pub async fn commit_block(
        &self,
        record: TxnRecord,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        self.write_proposal(Proposal::Transaction(record), timeout)
            .await
    }

    pub(super) async fn write_proposal(
        &self,
        proposal: Proposal,
        timeout: Duration,
    ) -> Result<(Outcome, LogIndex), NodeError> {
        let statements: Vec<&Statement> = match &proposal {
            Proposal::Statements(s) => s.iter().collect(),
            Proposal::Transaction(r) => r.steps.iter().flat_map(|s| s.statements()).collect(),
        };
        let size = encoded_size_bound(&statements);
        if size > COMMAND_BYTES_MAX {
            return Err(NodeError::Exec(ExecError::new(
                "54000",
                format!("the statement and its parameters take up to {size} bytes in the log; the limit is {COMMAND_BYTES_MAX}"),
            )));
        }
        let request_id = self.new_request_id();
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

/// Largest encoded command (statements and parameters). A log entry must fit, with up to
/// `MAX_PAYLOAD_ENTRIES` others, in one cluster frame (`rpc::FRAME_BYTES_MAX`); a metadata
/// store's statements are far smaller.
pub const COMMAND_BYTES_MAX: usize = 512 * 1024;

/// Pause between retries of a write or read index while the leader changes.
pub const WRITE_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// JSON length of a string: quotes, plus one extra byte per escaped `"` or `\`, five per
/// control character (`\u00XX`); other characters are written as UTF-8.
pub(super) fn json_str_len(s: &str) -> usize {
    2 + s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// An upper bound of the JSON size of `statements` in a log entry, computed without encoding
/// them (this runs for every write).
pub(super) fn encoded_size_bound(statements: &[&Statement]) -> usize {
    statements
        .iter()
        .map(|s| {
            let effect = match &s.effect {
                // {"Defaults":{"table":"...","width":4294967295,"assigned":[...]}}, each
                // assigned {"column":{"Position":4294967295},"from":"..."} or
                // {"column":{"Name":"..."},"from":"..."}
                sqlkeeper_engine::Effect::Defaults {
                    table, assigned, ..
                } => {
                    64 + json_str_len(table)
                        + assigned
                            .iter()
                            .map(|a| {
                                let column = match &a.column {
                                    sqlkeeper_engine::AssignedColumn::Name(n) => json_str_len(n),
                                    sqlkeeper_engine::AssignedColumn::Position(_) => 10,
                                };
                                56 + column + json_str_len(&a.from)
                            })
                            .sum::<usize>()
                }
                _ => 0,
            };
            64 + effect
                + json_str_len(&s.sql)
                + s.params
                    .iter()
                    .map(|p| match p {
                        Value::Null => 8,
                        Value::Integer(_) | Value::Real(_) => 40,
                        Value::Text(t) => 16 + json_str_len(t),
                        // a byte is a number of at most 3 digits and a comma
                        Value::Blob(b) => 16 + 4 * b.len(),
                    })
                    .sum::<usize>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_is_never_below_the_real_encoding() {
        let stmts = vec![Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3) -- \"quoted\" \\ \n\t é".into(),
            params: vec![
                Value::Text("a\u{1}b\"c\\".into()),
                Value::Blob(vec![255, 0, 17]),
                Value::Integer(i64::MIN),
            ],
            // The longest effect, which the JSON spells out.
            effect: sqlkeeper_engine::Effect::Defaults {
                table: "a \"quoted\" \\ table".into(),
                width: Some(u32::MAX),
                assigned: vec![
                    sqlkeeper_engine::Assigned {
                        column: sqlkeeper_engine::AssignedColumn::Name("\"c\"\u{1}".into()),
                        from: "double precision".into(),
                    },
                    sqlkeeper_engine::Assigned {
                        column: sqlkeeper_engine::AssignedColumn::Position(u32::MAX),
                        from: "timestamp with time zone".into(),
                    },
                ],
            },
        }];
        let real = serde_json::to_vec(&stmts).unwrap().len();
        assert!(
            encoded_size_bound(&stmts.iter().collect::<Vec<_>>()) >= real,
            "{} < {real}",
            encoded_size_bound(&stmts.iter().collect::<Vec<_>>())
        );
        assert_eq!(
            json_str_len("a\"\\\u{1}é"),
            serde_json::to_string("a\"\\\u{1}é").unwrap().len()
        );
    }
}
