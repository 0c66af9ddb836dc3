//! The one place where every error a client can see gets its SQLSTATE and shape.

use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR, SEVERITY_FATAL};
use sqlkeeper_engine::ExecError;
use sqlkeeper_raft::NodeError;
use sqlkeeper_sql::SqlError;

/// An error as sent to the client.
#[derive(Debug, Clone)]
pub(crate) struct ClientError {
    pub sqlstate: String,
    pub message: String,
    pub position: Option<u32>,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// Sent with severity FATAL: the connection is closed after it.
    pub fatal: bool,
}

impl ClientError {
    pub(crate) fn new(sqlstate: &str, message: impl Into<String>) -> ClientError {
        ClientError {
            sqlstate: sqlstate.to_string(),
            message: message.into(),
            position: None,
            detail: None,
            hint: None,
            fatal: false,
        }
    }

    /// An error that ends the connection.
    pub(crate) fn fatal(sqlstate: &str, message: impl Into<String>) -> ClientError {
        let mut e = ClientError::new(sqlstate, message);
        e.fatal = true;
        e
    }

    pub(crate) fn into_info(self) -> ErrorInfo {
        let severity = if self.fatal {
            SEVERITY_FATAL
        } else {
            SEVERITY_ERROR
        };
        let mut info = ErrorInfo::new(severity.to_owned(), self.sqlstate, self.message);
        info.position = self.position.map(|p| p.to_string());
        info.detail = self.detail;
        info.hint = self.hint;
        info
    }

    pub(crate) fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.into_info()))
    }
}

impl From<SqlError> for ClientError {
    fn from(e: SqlError) -> ClientError {
        ClientError {
            sqlstate: e.sqlstate.to_string(),
            message: e.message,
            position: e.position,
            detail: None,
            hint: None,
            fatal: false,
        }
    }
}

impl From<ExecError> for ClientError {
    fn from(e: ExecError) -> ClientError {
        let mut c = ClientError::new(&e.sqlstate, e.message);
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
