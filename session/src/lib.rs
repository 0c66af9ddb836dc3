//! Sessions, between the wire protocol (`sqlkeeper-pgwire`) and the node (`sqlkeeper-raft`):
//! one client's settings, read consistency, autocommit statements, transaction blocks, admin
//! calls and introspection. The protocol crate hands a [`Session`] query strings
//! ([`Session::execute`]) and prepared statements ([`Session::prepare`],
//! [`Session::execute_prepared`]) and turns what they [`Produced`] into messages; it needs no
//! type of the engine or of the node. Transaction blocks: `docs/transactions.md`.

mod copy;
mod cursor;
mod error;
mod scram;
mod session;
mod settings;
mod txn;
mod values;

pub use copy::{CopyIn, COPY_IN_BYTES_MAX};
pub use error::ClientError;
pub use scram::{Verifier, SCRAM_ITERATIONS};
pub use session::{Connection, Login, Prepared, Produced, Session, Sessions};
pub use settings::SERVER_VERSION;
pub use sqlkeeper_sql::SqlState;
pub use txn::{idle_timeout_error, Between, TxnStatus};
pub use values::{Column, Value};
