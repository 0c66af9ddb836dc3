//! Errors of the SQL layer, each with its Postgres SQLSTATE.

/// A statement that cannot be parsed or translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// Postgres SQLSTATE: 42601 syntax, 0A000 not supported, 54001 too complex, ...
    pub sqlstate: &'static str,
    /// Message in Postgres style.
    pub message: String,
    /// 1-based character position in the query string, for the ErrorResponse `P` field.
    pub position: Option<u32>,
}

impl SqlError {
    /// A `0A000 feature_not_supported` error naming the construct.
    pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
        SqlError {
            sqlstate: "0A000",
            message: format!("{what} is not supported"),
            position: None,
        }
    }

    pub(crate) fn syntax(message: String, position: Option<u32>) -> SqlError {
        SqlError {
            sqlstate: "42601",
            message,
            position,
        }
    }
}
