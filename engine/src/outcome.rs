//! What applying a command produced, and the digest of it that the request table keeps.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::LogIndex;
use crate::error::ExecError;
use crate::exec::StatementResult;

/// What applying one command produced: the result of each statement, in order, up to the
/// first failure. If `error` is set, the whole command was rolled back (as Postgres rolls back
/// an implicit transaction) and `results` holds what the statements before it returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Outcome {
    /// One result per statement that ran successfully.
    pub results: Vec<StatementResult>,
    /// The deterministic failure that stopped the command, with the index of its statement.
    pub error: Option<(usize, ExecError)>,
    /// Set when the request had been applied before (a retry with the same request id): the
    /// answer is rebuilt from the stored digest, which keeps counts but not rows.
    #[serde(default)]
    pub deduplicated: Option<Deduplicated>,
}

/// How a deduplicated request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deduplicated {
    /// The entry that applied the request first.
    pub first_index: LogIndex,
    /// Whether the first application returned rows that the digest could not keep.
    pub rows_lost: bool,
}

/// What the request table keeps of an outcome: per statement the rows affected, the number of
/// rows returned and a SHA-256 of them; the error with its statement. Never the rows: a write's
/// `RETURNING` rows go to the node that proposed it, and kept here they would travel in every
/// snapshot (`docs/determinism.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OutcomeDigest {
    results: Vec<ResultDigest>,
    error: Option<(usize, ExecError)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ResultDigest {
    rows_affected: u64,
    rows: u64,
    /// Hex SHA-256 of the rows' JSON; empty when there were none.
    rows_sha256: String,
}

impl OutcomeDigest {
    pub(crate) fn of(outcome: &Outcome) -> OutcomeDigest {
        OutcomeDigest {
            results: outcome
                .results
                .iter()
                .map(|r| ResultDigest {
                    rows_affected: r.rows_affected,
                    rows: r.rows.len() as u64,
                    rows_sha256: if r.rows.is_empty() {
                        String::new()
                    } else {
                        let json = serde_json::to_vec(&r.rows).unwrap_or_default();
                        Sha256::digest(&json)
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect()
                    },
                })
                .collect(),
            error: outcome.error.clone(),
        }
    }

    /// The answer to a retry of the request first applied at `first_index`.
    pub(crate) fn replayed(self, first_index: LogIndex) -> Outcome {
        let rows_lost = self.results.iter().any(|r| r.rows > 0);
        Outcome {
            results: self
                .results
                .into_iter()
                .map(|r| StatementResult {
                    columns: Vec::new(),
                    rows: Vec::new(),
                    rows_affected: r.rows_affected,
                })
                .collect(),
            error: self.error,
            deduplicated: Some(Deduplicated {
                first_index,
                rows_lost,
            }),
        }
    }
}
