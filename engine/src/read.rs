//! The read side: read-only connections to the state database, each use one read transaction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard, Weak};

use rusqlite::{Connection, InterruptHandle, OpenFlags};

use crate::command::{LogIndex, Statement};
use crate::error::{sqlstate_of, EngineError, ExecError, Fatal};
use crate::exec::{run, Column, ResultRoom, RunError, StatementResult};
use crate::meta;

/// Idle read connections kept open for reuse. More may be open at once while many sessions
/// read; beyond this number they are closed after use. Sixteen covers the client concurrency
/// this node is sized for (the connection limit is enforced in front, in pgwire-server).
pub const READ_CONNECTIONS_MAX: usize = 16;

/// Read-only connections to the state database. Snapshot installation pauses all readers
/// (write-locks `gate`) and drops every pooled connection, because a connection keeps the old
/// file open after the rename.
pub struct ReadPool {
    path: PathBuf,
    /// Held shared by every read, exclusively by snapshot installation.
    gate: RwLock<()>,
    /// Idle connections; cleared when a snapshot is installed.
    idle: Mutex<Vec<Connection>>,
    /// Connections held by transactions across statements ([`HeldRead`]); closed when a
    /// snapshot is installed (the transaction then gets 40001).
    held: Mutex<Vec<Weak<Mutex<Option<Connection>>>>>,
}

/// A read transaction kept open across statements: the snapshot of a transaction block.
/// Every read sees the state as of [`HeldRead::applied_index`]. Dropping it ends the read
/// transaction and returns the connection to the pool.
pub struct HeldRead {
    pool: Arc<ReadPool>,
    slot: Arc<Mutex<Option<Connection>>>,
    applied: Option<LogIndex>,
    last_write: Option<LogIndex>,
}

/// A read transaction on one read-only connection: every call sees the same committed state.
pub struct ReadView<'a> {
    conn: &'a Connection,
}

fn open_reader(path: &Path) -> Result<Connection, Fatal> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Fatal(format!("open read connection: {e}")))?;
    conn.set_prepared_statement_cache_capacity(128);
    crate::determinism::install_local(&conn)
        .map_err(|e| Fatal(format!("register functions: {e}")))?;
    crate::functions::install(&conn).map_err(|e| Fatal(format!("register functions: {e}")))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| Fatal(format!("configure read connection: {e}")))?;
    Ok(conn)
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            gate: RwLock::new(()),
            idle: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Pauses every reader until the guard is dropped, and forgets idle connections.
    pub(crate) fn pause(&self) -> RwLockWriteGuard<'_, ()> {
        let guard = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Lock order everywhere: gate, then a held slot.
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        for slot in held.iter().filter_map(Weak::upgrade) {
            // Closing the connection ends its read transaction.
            slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        guard
    }

    fn checkout(&self) -> Result<Connection, Fatal> {
        match self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(c) => Ok(c),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READ_CONNECTIONS_MAX && conn.is_autocommit() {
            idle.push(conn);
        }
    }

    /// Opens a read transaction that stays open until the returned [`HeldRead`] is dropped.
    pub fn hold(self: &Arc<Self>) -> Result<HeldRead, Fatal> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let conn = self.checkout()?;
        let f = |e: rusqlite::Error| Fatal(format!("begin held read: {e}"));
        conn.execute_batch("BEGIN").map_err(f)?;
        // The first read fixes the snapshot: these two values describe it.
        let applied = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX).map_err(f)?;
        let last_write = meta::get_i64(&conn, meta::KEY_LAST_WRITE_INDEX).map_err(f)?;
        let slot = Arc::new(Mutex::new(Some(conn)));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|w| w.strong_count() > 0);
        held.push(Arc::downgrade(&slot));
        Ok(HeldRead {
            pool: self.clone(),
            slot,
            applied: applied.map(|i| LogIndex(i as u64)),
            last_write: last_write.map(|i| LogIndex(i as u64)),
        })
    }

    /// Runs `f` in one read transaction. `on_start` receives the connection's interrupt
    /// handle before the transaction starts, so a caller can cancel a long query.
    pub fn read<T>(
        &self,
        on_start: impl FnOnce(InterruptHandle),
        f: impl FnOnce(&ReadView<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let conn = self.checkout()?;
        on_start(conn.get_interrupt_handle());
        let result = (|| {
            conn.execute_batch("BEGIN")
                .map_err(|e| Fatal(format!("begin read: {e}")))?;
            let view = ReadView { conn: &conn };
            let r = f(&view);
            // A read transaction has nothing to keep; rollback also ends it after an error.
            let _ = conn.execute_batch("ROLLBACK");
            r
        })();
        self.give_back(conn);
        result
    }

    /// Writes a consistent copy of the state to `dest` (see `sqlkeeper_snapshots`), from a
    /// read transaction, so applies continue meanwhile. Returns the applied index and the raft
    /// metadata read from the copy itself.
    pub fn write_snapshot(&self, dest: &Path) -> Result<SnapshotInfo, Fatal> {
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let conn = open_reader(&self.path)?;
        sqlkeeper_snapshots::write_snapshot(&conn, dest)
            .map_err(|e| Fatal(format!("write snapshot: {e}")))?;
        drop(conn);
        read_snapshot_info(dest)
    }
}

/// Identity of a snapshot file, read from the `_sqlkeeper_meta` table inside it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// Applied index at the time of the copy.
    pub applied_index: Option<LogIndex>,
    /// Raft's serialized last applied log id.
    pub raft_applied: Option<Vec<u8>>,
    /// Raft's serialized membership.
    pub raft_membership: Option<Vec<u8>>,
}

/// Reads the identity of the snapshot file at `path`.
pub fn read_snapshot_info(path: &Path) -> Result<SnapshotInfo, Fatal> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Fatal(format!("open snapshot {}: {e}", path.display())))?;
    let f = |e: rusqlite::Error| Fatal(format!("read snapshot meta {}: {e}", path.display()));
    Ok(SnapshotInfo {
        applied_index: meta::get_i64(&conn, meta::KEY_APPLIED_INDEX)
            .map_err(f)?
            .map(|i| LogIndex(i as u64)),
        raft_applied: meta::get_blob(&conn, meta::KEY_RAFT_APPLIED).map_err(f)?,
        raft_membership: meta::get_blob(&conn, meta::KEY_RAFT_MEMBERSHIP).map_err(f)?,
    })
}

impl ReadView<'_> {
    /// Runs one read statement. A statement that would write is refused with 25006.
    pub fn query(&self, stmt: &Statement) -> Result<StatementResult, ExecError> {
        let mut room = ResultRoom::new(crate::limits::READ_RESULT_BYTES_MAX);
        run(self.conn, stmt, None, &mut room).map_err(RunError::into_exec)
    }

    /// Describes a statement without running it: its result columns and number of parameters.
    pub fn describe(&self, sql: &str) -> Result<(Vec<Column>, usize), ExecError> {
        let s = self.conn.prepare_cached(sql).map_err(|e| sqlstate_of(&e))?;
        let cols = s
            .columns()
            .map(|c| Column {
                name: c.name().to_string(),
                decl_type: c.decl_type().map(str::to_string),
            })
            .collect();
        Ok((cols, s.parameter_count()))
    }

    /// The applied index of the state this view reads.
    pub fn applied_index(&self) -> Result<Option<LogIndex>, Fatal> {
        meta::get_i64(self.conn, meta::KEY_APPLIED_INDEX)
            .map(|o| o.map(|i| LogIndex(i as u64)))
            .map_err(|e| Fatal(format!("read applied index: {e}")))
    }

    /// Hash of the canonical dump of the state this view reads.
    pub fn state_hash(&self) -> Result<[u8; 32], Fatal> {
        crate::hash::state_hash(self.conn).map_err(|e| Fatal(format!("hash state: {e}")))
    }
}

impl HeldRead {
    /// The applied index of the snapshot this transaction reads.
    pub fn applied_index(&self) -> Option<LogIndex> {
        self.applied
    }

    /// The last data-changing entry in the snapshot (see `Command::Transaction::base`).
    pub fn last_write_index(&self) -> Option<LogIndex> {
        self.last_write
    }

    /// Runs `f` on the held snapshot. Fails with 40001 if a snapshot installation closed it.
    pub fn read<T>(
        &self,
        on_start: impl FnOnce(InterruptHandle),
        f: impl FnOnce(&ReadView<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let _gate = self.pool.gate.read().unwrap_or_else(|p| p.into_inner());
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = slot.as_ref() else {
            return Err(EngineError::Exec(ExecError::new(
                "40001",
                "could not serialize access: a snapshot was installed on this node while the transaction ran",
            )));
        };
        on_start(conn.get_interrupt_handle());
        f(&ReadView { conn })
    }
}

impl Drop for HeldRead {
    fn drop(&mut self) {
        // Gate first, as `pause` takes it: a connection is never returned to the pool while a
        // snapshot is being installed.
        let _gate = self.pool.gate.read().unwrap_or_else(|p| p.into_inner());
        let conn = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(conn) = conn {
            let _ = conn.execute_batch("ROLLBACK");
            self.pool.give_back(conn);
        }
    }
}
