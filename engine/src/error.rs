//! Errors, and the one place where SQLite errors become Postgres SQLSTATEs.

use serde::{Deserialize, Serialize};

pub use sqlkeeper_sql::SqlState;

/// A deterministic statement failure: the same on every replica, returned to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ExecError {
    /// Postgres SQLSTATE.
    pub sqlstate: SqlState,
    /// Message in Postgres style (lowercase, no trailing period).
    pub message: String,
    /// Optional DETAIL line, e.g. which key was duplicated.
    #[serde(default)]
    pub detail: Option<String>,
}

impl ExecError {
    /// Builds an error with a SQLSTATE and message.
    pub fn new(sqlstate: impl Into<SqlState>, message: impl Into<String>) -> ExecError {
        ExecError {
            sqlstate: sqlstate.into(),
            message: message.into(),
            detail: None,
        }
    }
}

/// A failure of the node itself (disk, corruption, out of memory). Once the state machine has
/// returned one it refuses all further work; the node must stop and recover from its files.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state machine failed: {0}")]
pub struct Fatal(pub String);

impl Fatal {
    /// A failure of this node reported by SQLite, with what the operator can do about it.
    pub(crate) fn of_sqlite(err: &rusqlite::Error) -> Fatal {
        use rusqlite::ffi;
        let what = err.to_string();
        let hint = match err.sqlite_error_code().map(|_| err) {
            Some(rusqlite::Error::SqliteFailure(e, _)) => match e.extended_code & 0xff {
                ffi::SQLITE_FULL => {
                    "; the disk holding the data directory is full: free space and restart the \
                     node, which re-applies its log from the last applied entry"
                }
                ffi::SQLITE_IOERR
                | ffi::SQLITE_CANTOPEN
                | ffi::SQLITE_PERM
                | ffi::SQLITE_READONLY => {
                    "; the data directory could not be read or written: fix the disk or its \
                     permissions and restart the node"
                }
                ffi::SQLITE_CORRUPT | ffi::SQLITE_NOTADB => {
                    "; the state database is damaged: remove this node's data directory and add \
                     the node again, so it receives a snapshot"
                }
                ffi::SQLITE_NOMEM => "; the node ran out of memory: restart it",
                _ => "",
            },
            _ => "",
        };
        Fatal(format!("{what}{hint}"))
    }
}

/// Errors of engine operations that are not statement outcomes.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The node cannot continue.
    #[error(transparent)]
    Fatal(#[from] Fatal),
    /// A statement failed deterministically (reads return this directly).
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// Whether an SQLite error is a property of the statement and the data, the same on every
/// replica, or a failure of this node (its disk, its memory, its files). Decided from SQLite's
/// primary result code, exhaustively: a code SQLite may add later is treated as a failure of
/// the node, which stops rather than risk deciding differently from the other replicas. The
/// table, with the reason for each code, is in `docs/determinism.md`.
pub(crate) fn is_deterministic(err: &rusqlite::Error) -> bool {
    use rusqlite::ffi;
    match err {
        rusqlite::Error::SqliteFailure(e, _) => match e.extended_code & 0xff {
            // Properties of the statement and the data.
            ffi::SQLITE_ERROR // syntax, missing table or column, a function's error
            | ffi::SQLITE_ABORT // a statement aborted by a ROLLBACK of the same connection
            | ffi::SQLITE_TOOBIG // a value over SQLITE_LIMIT_LENGTH
            | ffi::SQLITE_CONSTRAINT
            | ffi::SQLITE_MISMATCH
            | ffi::SQLITE_MISUSE // a statement the engine cannot run as given
            | ffi::SQLITE_AUTH
            | ffi::SQLITE_RANGE => true,
            // This node: I/O, corruption, memory, locks held by another connection of this
            // node, its files. Interrupts and SQLITE_FULL are deterministic only when the
            // engine knows why they happened (the step budget, a row id at its maximum):
            // those are decided before this function is asked (`crate::txn::run_statement`).
            ffi::SQLITE_INTERNAL
            | ffi::SQLITE_PERM
            | ffi::SQLITE_BUSY
            | ffi::SQLITE_LOCKED
            | ffi::SQLITE_NOMEM
            | ffi::SQLITE_READONLY
            | ffi::SQLITE_INTERRUPT
            | ffi::SQLITE_IOERR
            | ffi::SQLITE_CORRUPT
            | ffi::SQLITE_NOTFOUND
            | ffi::SQLITE_FULL
            | ffi::SQLITE_CANTOPEN
            | ffi::SQLITE_PROTOCOL
            | ffi::SQLITE_EMPTY
            | ffi::SQLITE_SCHEMA
            | ffi::SQLITE_NOLFS
            | ffi::SQLITE_FORMAT
            | ffi::SQLITE_NOTADB => false,
            _ => false,
        },
        // Raised by rusqlite before SQLite runs anything: a property of the statement.
        rusqlite::Error::InvalidParameterCount(..)
        | rusqlite::Error::InvalidParameterName(_)
        | rusqlite::Error::MultipleStatement
        | rusqlite::Error::ExecuteReturnedResults
        | rusqlite::Error::NulError(_)
        | rusqlite::Error::ToSqlConversionFailure(_)
        | rusqlite::Error::SqlInputError { .. } => true,
        _ => false,
    }
}

/// An error a function raises on purpose with a Postgres SQLSTATE; [`sqlstate_of`] reads the
/// SQLSTATE back from the message (`sqlkeeper:XXXXX:message`). Only for functions SQLite
/// calls: SQLite reports it as its own (deterministic) error.
pub(crate) fn raise(sqlstate: &str, message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(
        format!("{}{sqlstate}:{message}", crate::sequences::RAISE_PREFIX).into(),
    )
}

/// A statement the engine refuses itself, outside SQLite, with a Postgres SQLSTATE: shaped as
/// SQLite's own error for a bad statement, so that it is classified as deterministic (the
/// same on every replica) and read back as [`raise`]'s.
pub(crate) fn refuse(sqlstate: &str, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(format!(
            "{}{sqlstate}:{message}",
            crate::sequences::RAISE_PREFIX
        )),
    )
}

/// Converts an SQLite error into a deterministic [`ExecError`] or a [`Fatal`] (see
/// [`is_deterministic`]).
pub(crate) fn classify(err: rusqlite::Error) -> Result<ExecError, Fatal> {
    if is_deterministic(&err) {
        Ok(sqlstate_of(&err))
    } else {
        Err(Fatal::of_sqlite(&err))
    }
}

/// Maps an SQLite error to the Postgres SQLSTATE and message a Postgres user expects.
///
/// This is the only place where SQLite errors get SQLSTATEs. SQLite reports most SQL errors
/// as `SQLITE_ERROR` with a message, so the message text decides; the table is in
/// `docs/compat.md`.
pub fn sqlstate_of(err: &rusqlite::Error) -> ExecError {
    let (code, msg) = match err {
        rusqlite::Error::SqliteFailure(e, msg) => (
            Some(e.extended_code),
            msg.clone().unwrap_or_else(|| e.to_string()),
        ),
        rusqlite::Error::SqlInputError { msg, .. } => (None, msg.clone()),
        other => (None, other.to_string()),
    };
    // Errors raised on purpose with a Postgres SQLSTATE (sequences, pg_raise).
    if let Some(rest) = msg.split(crate::sequences::RAISE_PREFIX).nth(1) {
        if let Some((state, message)) = rest.split_once(':') {
            if let Some(sqlstate) = SqlState::parse(state) {
                return ExecError {
                    sqlstate,
                    message: message.to_string(),
                    detail: None,
                };
            }
        }
    }
    let state = match code {
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
        | Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => "23505",
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL) => "23502",
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => "23503",
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_CHECK) => "23514",
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_DATATYPE) => "22P02",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_CONSTRAINT => "23000",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_INTERRUPT => "57014",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_TOOBIG => "54000",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_MISMATCH => "42804",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_RANGE => "08P01",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_BUSY => "40001",
        Some(c) if c & 0xff == rusqlite::ffi::SQLITE_READONLY => "25006",
        _ => state_from_message(&msg),
    };
    let (message, detail) = postgres_message(state, &msg);
    ExecError {
        sqlstate: SqlState::new(state),
        message,
        detail,
    }
}

fn state_from_message(msg: &str) -> &'static str {
    let m = msg.to_ascii_lowercase();
    if m.starts_with("no such table") {
        "42P01"
    } else if m.starts_with("no such column") || m.contains("has no column named") {
        "42703"
    } else if m.starts_with("no such function") || m.starts_with("wrong number of arguments") {
        "42883"
    } else if m.starts_with("no such index") {
        "42704"
    } else if m.starts_with("use drop table to delete table")
        || m.starts_with("use drop view to delete view")
    {
        // `DROP VIEW t` of a table (also `CREATE OR REPLACE VIEW t`), `DROP TABLE v` of a view.
        "42809"
    } else if (m.starts_with("table") || m.starts_with("index") || m.starts_with("view"))
        && m.contains("already exists")
    {
        "42P07"
    } else if m.contains("syntax error")
        // "SELECTs to the left and right of UNION do not have the same number of result
        // columns": PostgreSQL's "each UNION query must have the same number of columns".
        || m.contains("do not have the same number of result columns")
        || m.starts_with("incomplete input")
        || m.starts_with("unrecognized token")
    {
        "42601"
    } else if m.contains("values were supplied")
        || m.contains("values for") && m.contains("columns")
    {
        // "table t has 3 columns but 1 values were supplied": Postgres would fill the missing
        // columns with their defaults; SQLite refuses. Closest Postgres error: 42601.
        "42601"
    } else if m.contains("too many terms in compound select")
        || m.starts_with("expression tree is too large")
        || m.contains("nested too deep")
        || m.contains("parser stack overflow")
    {
        // SQLite's limits on the shape of a statement: Postgres' statement_too_complex.
        "54001"
    } else if m.starts_with("too many columns") {
        "54011"
    } else if m.starts_with("too many arguments on function")
        || m.starts_with("too many sql variables")
        || m.contains("variable number must be between")
    {
        "54023"
    } else if m.contains("pattern too complex") {
        "54000"
    } else if m.contains("ambiguous column name") {
        "42702"
    } else if m.contains("distinct aggregates must have exactly one argument") {
        // `string_agg(DISTINCT x, ',')`: SQLite has DISTINCT only for one argument.
        "0A000"
    } else if m.contains("datatype mismatch") || m.contains("cannot store") {
        "22P02"
    } else if m.contains("integer overflow") {
        "22003"
    } else if m.contains("interrupted") {
        "57014"
    } else if m.contains("cannot start a transaction within a transaction")
        || m.contains("cannot commit - no transaction is active")
        || m.contains("cannot rollback - no transaction is active")
    {
        "25000"
    } else if m.contains("attempt to write a readonly database") {
        "25006"
    } else {
        "XX000"
    }
}

/// Rewrites SQLite's wording into the shape of the Postgres message for the same SQLSTATE
/// (see Postgres' `errmsg` texts in `nbtinsert.c`, `execMain.c`, `ri_triggers.c`), keeping
/// what SQLite knows (table, columns, the failing expression) in the message or detail.
fn postgres_message(state: &str, msg: &str) -> (String, Option<String>) {
    let columns_of = |list: &str| -> (String, String) {
        // "t.a, t.b" -> table "t", columns "a, b"
        let mut table = String::new();
        let cols: Vec<&str> = list
            .split(", ")
            .map(|tc| match tc.split_once('.') {
                Some((t, c)) => {
                    table = t.to_string();
                    c
                }
                None => tc,
            })
            .collect();
        (table, cols.join(", "))
    };
    match state {
        "42P01" => match msg.strip_prefix("no such table: ") {
            Some(t) => (
                format!(
                    "relation \"{}\" does not exist",
                    t.trim_start_matches("main.")
                ),
                None,
            ),
            None => (msg.to_string(), None),
        },
        // "use DROP TABLE to delete table t" -> "t" is not a view (and the other way round)
        "42809" => {
            let name = msg.rsplit(' ').next().unwrap_or_default();
            let what = if msg.contains("DROP TABLE") {
                "view"
            } else {
                "table"
            };
            (format!("\"{name}\" is not a {what}"), None)
        }
        "42703" => match msg.strip_prefix("no such column: ") {
            // A quoted name SQLite would once have read as a string: it says so.
            Some(c) => {
                let c = c
                    .trim_end_matches(" - should this be a string literal in single-quotes?")
                    .trim_matches('"');
                (format!("column \"{c}\" does not exist"), None)
            }
            None => (msg.to_string(), None),
        },
        "42P07" => {
            // "table kv already exists" -> relation "kv" already exists
            let mut words = msg.split_whitespace();
            match (words.next(), words.next()) {
                (Some(_), Some(name)) => (
                    format!("relation \"{}\" already exists", name.trim_matches('"')),
                    None,
                ),
                _ => (msg.to_string(), None),
            }
        }
        "23505" => match msg.strip_prefix("UNIQUE constraint failed: ") {
            Some(list) => {
                let (table, cols) = columns_of(list);
                (
                    format!("duplicate key value violates unique constraint on \"{table}\""),
                    Some(format!("Key ({cols}) already exists.")),
                )
            }
            None => (
                "duplicate key value violates unique constraint".to_string(),
                Some(msg.to_string()),
            ),
        },
        "23502" => match msg.strip_prefix("NOT NULL constraint failed: ") {
            Some(list) => {
                let (table, col) = columns_of(list);
                (format!("null value in column \"{col}\" of relation \"{table}\" violates not-null constraint"), None)
            }
            None => (msg.to_string(), None),
        },
        "23503" => (
            "insert or update violates foreign key constraint".to_string(),
            None,
        ),
        "23514" => match msg.strip_prefix("CHECK constraint failed: ") {
            Some(expr) => (
                "new row violates check constraint".to_string(),
                Some(format!("Failing check: {expr}.")),
            ),
            None => (msg.to_string(), None),
        },
        _ => (msg.to_string(), None),
    }
}
