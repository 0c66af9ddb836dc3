//! The one place where every error a client can see gets its SQLSTATE and shape (the wire
//! protocol crate only sends it).

use sqlkeeper_engine::ExecError;
use sqlkeeper_raft::NodeError;
use sqlkeeper_sql::{SqlError, SqlState};

/// An error as sent to the client.
#[derive(Debug, Clone)]
pub struct ClientError {
    /// Its SQLSTATE.
    pub sqlstate: SqlState,
    /// The primary message.
    pub message: String,
    /// 1-based character position in the query string, for syntax errors.
    pub position: Option<u32>,
    /// The DETAIL field.
    pub detail: Option<String>,
    /// The HINT field.
    pub hint: Option<String>,
    /// The CONTEXT field (PostgreSQL's "where": `COPY t, line 3, column a: "x"`).
    pub context: Option<String>,
    /// Sent with severity FATAL: the connection is closed after it.
    pub fatal: bool,
}

impl ClientError {
    /// An error with this SQLSTATE and message.
    pub fn new(sqlstate: impl Into<SqlState>, message: impl Into<String>) -> ClientError {
        ClientError {
            sqlstate: sqlstate.into(),
            message: message.into(),
            position: None,
            detail: None,
            hint: None,
            context: None,
            fatal: false,
        }
    }

    /// An error that ends the connection.
    pub fn fatal(sqlstate: impl Into<SqlState>, message: impl Into<String>) -> ClientError {
        let mut e = ClientError::new(sqlstate, message);
        e.fatal = true;
        e
    }
}

impl From<SqlError> for ClientError {
    fn from(e: SqlError) -> ClientError {
        ClientError {
            sqlstate: e.sqlstate,
            message: e.message,
            position: e.position,
            detail: None,
            hint: None,
            context: None,
            fatal: false,
        }
    }
}

impl From<ExecError> for ClientError {
    fn from(e: ExecError) -> ClientError {
        let mut c = ClientError::new(e.sqlstate, e.message);
        c.detail = e.detail;
        c
    }
}

/// SQLSTATE for each node error. Exhaustive on purpose: a new variant must be mapped here.
impl From<NodeError> for ClientError {
    fn from(e: NodeError) -> ClientError {
        match e {
            NodeError::Exec(e) => e.into(),
            NodeError::NotLeader {
                leader_id,
                leader_pg_addr,
            } => {
                // Nothing was applied: retrying is safe, and drivers retry 40001.
                let mut c = ClientError::new(
                    "40001",
                    match leader_id {
                        Some(l) => format!(
                            "could not complete the write: leadership is changing; the current leader is node {l}"
                        ),
                        None => "could not complete the write: the cluster has no leader right now".to_string(),
                    },
                );
                c.hint = Some(match leader_pg_addr {
                    Some(a) => format!("retry the statement, or connect to the leader at {a}"),
                    None => "retry the statement".to_string(),
                });
                c
            }
            NodeError::OutcomeUnknown { leader_id } => {
                let mut c = ClientError::new(
                    "40003",
                    format!(
                        "the write may or may not have been applied: the leader changed while it was in flight{}",
                        leader_id.map(|l| format!(" (last known leader: node {l})")).unwrap_or_default()
                    ),
                );
                c.hint = Some("read the data back before retrying".into());
                c
            }
            NodeError::Unavailable(m) => {
                let mut c = ClientError::new("57P03", m);
                c.hint = Some("retry the statement".into());
                c
            }
            NodeError::Fatal(m) => ClientError::new("XX000", m),
        }
    }
}
