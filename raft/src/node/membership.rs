//! Membership: admin calls (add, remove, transfer), the members table, joining a cluster, and
//! keeping a preferred leader.

use super::*;

impl Node {
    /// Runs a membership or leadership operation on the leader (forwarding it there).
    pub async fn admin(&self, op: AdminOp, timeout: Duration) -> Result<String, NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (r, _) = self
                .on_leader_once(
                    deadline,
                    |left| {
                        let op = op.clone();
                        async move {
                            match tokio::time::timeout(left, self.admin_on_leader(op)).await {
                                Ok(r) => r,
                                Err(_) => Err(RemoteError::Failed(format!(
                                    "the operation did not finish within {timeout:?} (is the new node reachable?)"
                                ))),
                            }
                        }
                    },
                    || Request::Admin(op.clone()),
                    |resp| match resp {
                        Response::Admin(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            match r {
                Ok(msg) => return Ok(msg),
                Err(RemoteError::Failed(m)) => {
                    return Err(NodeError::Exec(ExecError::new("55000", m)))
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(NodeError::Unavailable(format!("{e}")));
                }
                Err(_) => tokio::time::sleep(WRITE_RETRY_BACKOFF).await,
            }
        }
    }

    /// Runs an admin operation; this node must be the leader.
    pub(crate) async fn admin_on_leader(&self, op: AdminOp) -> Result<String, RemoteError> {
        // A membership change refused because leadership moved names the new leader.
        let failed =
            |e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>| match e.forward_to_leader() {
                Some(f) => RemoteError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node.clone(),
                },
                None => RemoteError::Failed(e.to_string()),
            };
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            return Err(RemoteError::NotLeader {
                leader_id: m.current_leader,
                leader: None,
            });
        }
        let membership = m.membership_config.membership().clone();
        if let AdminOp::AddLearner { node_id, info } | AdminOp::AddNode { node_id, info } = &op {
            if let Some(existing) = membership.get_node(node_id) {
                if existing != info {
                    return Err(RemoteError::Failed(format!(
                        "node id {node_id} is already a member with other addresses"
                    )));
                }
                // A retried join finds itself added; finish the promotion if it was cut short.
                let voter = membership.voter_ids().any(|v| v == *node_id);
                if matches!(op, AdminOp::AddNode { .. }) && !voter {
                    self.raft
                        .change_membership(
                            ChangeMembers::AddVoterIds(BTreeSet::from([*node_id])),
                            false,
                        )
                        .await
                        .map_err(failed)?;
                    return Ok(format!("node {node_id} promoted to voter"));
                }
                return Ok(format!("node {node_id} is already a member"));
            }
        }
        match op {
            AdminOp::AddLearner { node_id, info } => {
                self.check_id_unused(node_id).await?;
                self.raft
                    .add_learner(node_id, info, false)
                    .await
                    .map_err(failed)?;
                Ok(format!("node {node_id} added as a learner"))
            }
            AdminOp::AddNode { node_id, info } => {
                self.check_id_unused(node_id).await?;
                self.raft
                    .add_learner(node_id, info, true)
                    .await
                    .map_err(failed)?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([node_id])), false)
                    .await
                    .map_err(failed)?;
                Ok(format!("node {node_id} added as a voter"))
            }
            AdminOp::RemoveNode { node_id } => {
                if membership.get_node(&node_id).is_none() {
                    return Err(RemoteError::Failed(format!(
                        "node {node_id} is not a member"
                    )));
                }
                // Record the id first: it must never be accepted again, even if the removal
                // is interrupted and retried.
                let stmt = Statement {
                    sql: format!(
                        "INSERT OR IGNORE INTO {REMOVED_NODES_TABLE} (node_id) VALUES (?1)"
                    ),
                    params: vec![Value::Integer(node_id as i64)],
                    effect: Default::default(),
                };
                self.propose_now(
                    self.new_request_id(),
                    Proposal::Statements {
                        statements: vec![stmt],
                        role: None,
                    },
                )
                .await?;
                let change = if membership.voter_ids().any(|v| v == node_id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([node_id]))
                } else {
                    ChangeMembers::RemoveNodes(BTreeSet::from([node_id]))
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(failed)?;
                Ok(format!("node {node_id} removed"))
            }
            AdminOp::TransferLeader { node_id } => {
                if !membership.voter_ids().any(|v| v == node_id) {
                    return Err(RemoteError::Failed(format!(
                        "node {node_id} is not a voter"
                    )));
                }
                if node_id == self.id {
                    return Ok(format!("node {node_id} is already the leader"));
                }
                self.raft
                    .trigger()
                    .transfer_leader(node_id)
                    .await
                    .map_err(|e| RemoteError::Failed(e.to_string()))?;
                self.raft
                    .wait(Some(ELECTION_TIMEOUT_MAX * 10))
                    .current_leader(node_id, "leadership transfer")
                    .await
                    .map_err(|e| {
                        RemoteError::Failed(format!(
                            "leadership did not move to node {node_id}: {e}"
                        ))
                    })?;
                Ok(format!("node {node_id} is now the leader"))
            }
        }
    }

    pub(super) async fn check_id_unused(&self, node_id: NodeId) -> Result<(), RemoteError> {
        // A leader elected moments ago may not have applied a removal yet: read at the
        // commit index.
        self.leader_read_index().await?;
        let removed = self
            .read(INTERNAL_READ_TIMEOUT, move |v| {
                v.query(&Statement {
                    sql: format!("SELECT 1 FROM {REMOVED_NODES_TABLE} WHERE node_id = ?1"),
                    params: vec![Value::Integer(node_id as i64)],
                    effect: Default::default(),
                })
                .map_err(EngineError::from)
            })
            .await
            .map_err(|e| RemoteError::Failed(e.to_string()))?;
        if !removed.rows.is_empty() {
            return Err(RemoteError::Failed(format!(
                "node id {node_id} belonged to a removed node and is never reused; choose a new id"
            )));
        }
        Ok(())
    }

    /// The Postgres address of a member, if known.
    pub(super) fn pg_addr_of(&self, id: NodeId, info: &NodeInfo) -> Option<String> {
        if !info.pg_addr.is_empty() {
            return Some(info.pg_addr.clone());
        }
        self.pg_addrs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every member as the leader sees it (matched index only on the leader). Postgres
    /// addresses not in the membership are asked from the members themselves.
    pub async fn members(&self) -> Vec<MemberRow> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut rows = Vec::new();
        for (id, info) in membership.nodes() {
            let mut pg_addr = if *id == self.id {
                Some(self.info.pg_addr.clone())
            } else {
                self.pg_addr_of(*id, info)
            };
            if pg_addr.is_none() {
                if let Ok(Response::Info(i)) = self
                    .call_peer(
                        *id,
                        &info.raft_addr,
                        &Request::Info,
                        Duration::from_millis(300),
                    )
                    .await
                {
                    self.pg_addrs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(*id, i.pg_addr.clone());
                    pg_addr = Some(i.pg_addr);
                }
            }
            let voter = voters.contains(id);
            let role = if m.current_leader == Some(*id) {
                "leader"
            } else if voter {
                "follower"
            } else {
                "learner"
            };
            let matched_index = if m.state == ServerState::Leader {
                if *id == self.id {
                    m.last_log_index
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).cloned().flatten())
                        .map(|l| l.index)
                }
            } else {
                None
            };
            rows.push(MemberRow {
                node_id: *id,
                raft_addr: info.raft_addr.clone(),
                pg_addr,
                role,
                voter,
                matched_index,
            });
        }
        rows
    }
}

/// How often the leader checks whether the preferred leader is ready to take over.
pub(super) const PREFERRED_LEADER_CHECK: Duration = Duration::from_millis(500);

/// The preferred leader counts as caught up within this many entries of the leader's log.
pub(super) const PREFERRED_LEADER_LAG_MAX: u64 = 8;

/// One member as `sqlkeeper.nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Node id.
    pub node_id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// Postgres address, if known.
    pub pg_addr: Option<String>,
    /// leader, follower or learner.
    pub role: &'static str,
    /// Whether it votes.
    pub voter: bool,
    /// Highest log index the leader knows it has (only on the leader).
    pub matched_index: Option<u64>,
}

/// While a join is refused for want of the cluster secret, at most one warning per this
/// interval.
const JOIN_REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// Asks the member at `addr` to add this node to its cluster (learner, then voter), retrying
/// until it succeeds: the member may not be up yet.
pub(super) async fn join_cluster(node: Arc<Node>, addr: String) {
    let op = AdminOp::AddNode {
        node_id: node.id,
        info: node.info.clone(),
    };
    let mut last_warned = None;
    loop {
        // The member at `addr` forwards the request to its leader. Its id is not known yet:
        // the hello names id 0, which every node accepts only for `Info`-like joins.
        let r = async {
            let mut conn = Conn::connect_any(&addr, node.id, &node.peer_auth).await?;
            conn.call(&Request::Admin(op.clone())).await
        }
        .await;
        match r {
            Ok(Response::Admin(Ok(msg))) => {
                tracing::info!(node_id = node.id, via = %addr, "{msg}");
                return;
            }
            Ok(Response::Admin(Err(e))) => {
                tracing::warn!(via = %addr, error = %e, "join refused; retrying")
            }
            Ok(other) => {
                tracing::warn!(via = %addr, response = ?other, "unexpected join response; retrying")
            }
            // A cluster that refuses this node's secret (or lack of one) will go on refusing
            // it: said as a warning, at most every JOIN_REFUSED_LOG_EVERY.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                if last_warned.is_none_or(|t: Instant| t.elapsed() >= JOIN_REFUSED_LOG_EVERY) {
                    last_warned = Some(Instant::now());
                    tracing::warn!(via = %addr, error = %e, "cannot join: peer authentication failed; retrying");
                }
            }
            Err(e) => {
                tracing::debug!(via = %addr, error = %e, "cannot reach the cluster yet; retrying")
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the leader: hands leadership to `preferred` whenever it is a voter that has caught up.
pub(super) async fn keep_preferred_leader(node: Arc<Node>, preferred: NodeId) {
    loop {
        tokio::time::sleep(PREFERRED_LEADER_CHECK).await;
        let m = node.raft.metrics().borrow_watched().clone();
        if m.running_state.is_err() || m.state == ServerState::Shutdown {
            return;
        }
        if m.state != ServerState::Leader || preferred == node.id {
            continue;
        }
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == preferred);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&preferred).cloned().flatten())
            .map(|l| l.index);
        let caught_up = matches!((matched, m.last_log_index), (Some(a), Some(b)) if a + PREFERRED_LEADER_LAG_MAX >= b);
        // Caught up but silent is a crashed node: hand leadership only to one that answers.
        let answering = m
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(&preferred).cloned().flatten())
            .is_some_and(|t| t.elapsed() < HEARTBEAT_INTERVAL * 4);
        let caught_up = caught_up && answering;
        if voter && caught_up {
            tracing::info!(
                node_id = node.id,
                to = preferred,
                "moving leadership back to the preferred leader"
            );
            let _ = node.raft.trigger().transfer_leader(preferred).await;
            // Give the transfer an election's time before checking again.
            tokio::time::sleep(ELECTION_TIMEOUT_MAX * 2).await;
        }
    }
}
