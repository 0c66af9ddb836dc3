//! Errors as the protocol sends them. Every error a client can see gets its SQLSTATE and
//! shape in the session crate ([`ClientError`]); here it becomes an ErrorResponse.

use pgwire::error::{ErrorInfo, PgWireError, SEVERITY_ERROR, SEVERITY_FATAL};
pub(crate) use sqlkeeper_session::ClientError;

/// Turning a [`ClientError`] into pgwire's error forms.
pub(crate) trait IntoPgWire {
    /// The ErrorResponse fields.
    fn into_info(self) -> ErrorInfo;
    /// As a pgwire error (sent as an ErrorResponse).
    fn into_pgwire(self) -> PgWireError;
}

impl IntoPgWire for ClientError {
    fn into_info(self) -> ErrorInfo {
        // Every error a client is sent passes here: counted by SQLSTATE class.
        let sqlstate = self.sqlstate.to_string();
        let class = sqlstate.get(..2).unwrap_or("XX").to_string();
        metrics::counter!("sqlkeeper_errors_total", "class" => class).increment(1);
        let severity = if self.fatal {
            SEVERITY_FATAL
        } else {
            SEVERITY_ERROR
        };
        let mut info = ErrorInfo::new(severity.to_owned(), sqlstate, self.message);
        info.position = self.position.map(|p| p.to_string());
        info.detail = self.detail;
        info.hint = self.hint;
        info.where_context = self.context;
        info
    }

    fn into_pgwire(self) -> PgWireError {
        PgWireError::UserError(Box::new(self.into_info()))
    }
}
