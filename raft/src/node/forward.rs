//! Running a request where the leader is: this node if it leads, else over a pooled connection to
//! the leader; the leader's read index.

use super::*;

impl Node {
    /// Calls a peer over a pooled connection.
    pub(super) async fn call_peer(
        &self,
        target: NodeId,
        addr: &str,
        req: &Request,
        ttl: Duration,
    ) -> io::Result<Response> {
        let pooled = self
            .peer_conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&target)
            .and_then(|v| v.pop());
        let mut conn = match pooled {
            Some(c) => c,
            None => Conn::connect(addr, self.id, target, &self.peer_auth).await?,
        };
        let resp = tokio::time::timeout(ttl, conn.call(req))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node {target} did not answer in {ttl:?}"),
                )
            })??;
        let mut pool = self.peer_conns.lock().unwrap_or_else(|p| p.into_inner());
        let v = pool.entry(target).or_default();
        if v.len() < PEER_CONNECTIONS_KEPT {
            v.push(conn);
        }
        Ok(resp)
    }

    /// The current leader and its addresses, waiting up to an election for one to emerge.
    pub(super) async fn leader(&self) -> Option<(NodeId, NodeInfo)> {
        let deadline = Instant::now() + ELECTION_TIMEOUT_MAX * 3;
        loop {
            let m = self.raft.metrics().borrow_watched().clone();
            if let Some(l) = m.current_leader {
                if let Some(info) = m.membership_config.membership().get_node(&l) {
                    return Some((l, info.clone()));
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One attempt to run a request where the leader is: `local` on this node if it leads,
    /// else `req` forwarded to the leader, whose answer `extract` takes apart. Returns the
    /// result and, when the request was forwarded, the leader it went to. A request that may
    /// have reached the leader without an answer is `RemoteError::Unknown`.
    pub(super) async fn on_leader_once<T, Fut>(
        &self,
        deadline: Instant,
        local: impl FnOnce(Duration) -> Fut,
        req: impl FnOnce() -> Request,
        extract: fn(Response) -> Option<Result<T, RemoteError>>,
    ) -> (Result<T, RemoteError>, Option<(NodeId, NodeInfo)>)
    where
        Fut: std::future::Future<Output = Result<T, RemoteError>>,
    {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        match self.leader().await {
            Some((l, _)) if l == self.id => (local(left).await, None),
            Some((l, info)) => {
                let r = match self.call_peer(l, &info.raft_addr, &req(), left).await {
                    Ok(resp) => {
                        let text = format!("{resp:?}");
                        extract(resp).unwrap_or_else(|| {
                            Err(RemoteError::Failed(format!("unexpected response {text}")))
                        })
                    }
                    Err(e) => Err(RemoteError::Unknown(e.to_string())),
                };
                (r, Some((l, info)))
            }
            None => (
                Err(RemoteError::NotLeader {
                    leader_id: None,
                    leader: None,
                }),
                None,
            ),
        }
    }

    /// A linearizable read index, on the leader: confirms leadership with a quorum.
    pub(crate) async fn leader_read_index(&self) -> Result<LogIndex, RemoteError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(LogIndex(read.index())),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(RemoteError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            Err(e) => Err(RemoteError::Failed(e.to_string())),
        }
    }

    /// Obtains a linearizable read index (from the leader, over the network on a follower)
    /// and waits until this node has applied it.
    pub async fn linearizable_barrier(&self, timeout: Duration) -> Result<LogIndex, NodeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (r, _) = self
                .on_leader_once(
                    deadline,
                    |_| self.leader_read_index(),
                    || Request::ReadIndex,
                    |resp| match resp {
                        Response::ReadIndex(r) => Some(r),
                        _ => None,
                    },
                )
                .await;
            match r {
                Ok(index) => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(100));
                    self.wait_applied(index, left).await?;
                    return Ok(index);
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(NodeError::Unavailable(format!(
                        "no linearizable read index: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(WRITE_RETRY_BACKOFF).await,
            }
        }
    }
}

/// Idle connections kept per peer for forwarded requests.
pub(super) const PEER_CONNECTIONS_KEPT: usize = 8;
