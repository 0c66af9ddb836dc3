//! Deterministic SQLite state machine.
//!
//! [`StateMachine`] owns the only writable SQLite connection. Raft hands it committed
//! [`Command`]s in log order. Each batch of commands and the new applied index (and the Raft
//! membership, as opaque bytes) are written in one SQLite transaction, so after a crash the
//! database and [`StateMachine::applied_index`] agree and no entry is applied twice.
//!
//! A statement that fails the same way on every replica (a constraint violation, a missing
//! table) is an [`Outcome`] with a SQLSTATE, not an error of the engine. An I/O error is
//! [`Fatal`]: the state machine stops and refuses further work.
//!
//! Reads run on a [`ReadPool`] of read-only connections (WAL mode), never on the writer.
//!
//! This crate is synchronous. It knows nothing about tokio, Raft, or Postgres.
#![deny(missing_docs)]

mod apply;
mod arrays;
mod catalogfuncs;
mod command;
mod datefuncs;
mod defaults;
mod determinism;
mod error;
mod exec;
mod functions;
mod hash;
mod jsonb;
mod jsonfuncs;
mod limits;
mod meta;
mod outcome;
mod pgfuncs;
mod privileges;
mod read;
mod rebuild;
mod rowlocks;
mod scratch;
mod sequences;
mod series;
mod staged;
mod step;
mod txn;
mod values;

pub use apply::{ApplyItem, RaftMeta, StateMachine, StoredRaftMeta, STATE_DB_FILE};
pub use command::{
    Assigned, AssignedColumn, Command, Effect, EntryHeader, LogIndex, RequestId, SeqValue, Staged,
    Stamp, Statement, TxnRecord, TxnStep, Value, ENGINE_APPLY_VERSION,
};
pub use error::{sqlstate_of, EngineError, ExecError, Fatal, SqlState};
pub use exec::{Column, StatementResult};
pub use hash::state_hash;
pub use limits::{
    ENTRY_RESULT_BYTES_MAX, ENTRY_VM_STEPS_MAX, READ_RESULT_BYTES_MAX, VALUE_BYTES_MAX,
};
pub use meta::{META_TABLE, REMOVED_NODES_TABLE};
pub(crate) use outcome::OutcomeDigest;
pub use outcome::{Deduplicated, Outcome};
pub use read::{
    local_stamp, read_snapshot_info, HeldRead, ReadPool, ReadView, SnapshotInfo, INSTALL_READ_WAIT,
    READ_CONNECTIONS_MAX, WAL_BYTES_MAX,
};
pub use rowlocks::{RowHold, ROW_LOCKS_PER_BLOCK_MAX};
pub use scratch::{query_scratch, ScratchTable};
pub use sequences::{RESERVED_VALUES, RESERVED_VALUES_MAX, RESERVE_FUNCTION};
pub use staged::{
    effect_size_bound, json_str_len, split_steps, statement_size_bound, step_size_bound,
    txn_vm_steps_max, value_size_bound, TxnSize, COMMAND_BYTES_MAX, STAGED_TABLE,
    STAGED_TTL_MICROS, TXN_BYTES_MAX,
};
pub use txn::{Block, BlockError, BlockWriter, Done, Ticket, Work, STATEMENT_ATTEMPTS_MAX};
pub use values::check_literal_cast;
