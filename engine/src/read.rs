//! The read side: read-only connections to the state database, each use one read transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard, TryLockError, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, InterruptHandle, OpenFlags};

use crate::command::{LogIndex, Stamp, Statement};
use crate::determinism::StampCell;
use crate::error::{sqlstate_of, EngineError, ExecError, Fatal};
use crate::exec::{run, Column, ResultRoom, StatementResult};
use crate::meta;

/// Idle read connections kept open for reuse. More may be open at once while many sessions
/// read; beyond this number they are closed after use. Sixteen covers the client concurrency
/// this node is sized for (the connection limit is enforced in front, in pgwire-server).
pub const READ_CONNECTIONS_MAX: usize = 16;

/// How long a snapshot installation waits for running reads to finish before it interrupts
/// them (they fail with 40001 and can be retried). Installing stops applying and every new
/// read on this node, so the wait is short.
pub const INSTALL_READ_WAIT: Duration = Duration::from_secs(1);

/// Size of the write-ahead log file past which the node releases the read views held by
/// transaction blocks (their next statement fails with 40001), so that a checkpoint can copy
/// the log back into the database and the file shrink: a block that keeps reading would
/// otherwise make the WAL grow with every write applied meanwhile.
pub const WAL_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// Read-only connections to the state database. Snapshot installation pauses all readers
/// (write-locks `gate`) and drops every pooled connection, because a connection keeps the old
/// file open after the rename.
pub struct ReadPool {
    path: PathBuf,
    /// Held shared by every read, exclusively by snapshot installation.
    gate: RwLock<()>,
    /// Set while an installation waits for the gate: new reads wait before taking it, so the
    /// installation is not starved by a stream of reads.
    pausing: AtomicBool,
    /// Interrupt handles of the reads running now, by a number of their own; the installation
    /// interrupts them after [`INSTALL_READ_WAIT`].
    running: Mutex<HashMap<u64, InterruptHandle>>,
    next_read: AtomicU64,
    /// Bumped whenever running reads are interrupted for an installation: a read that fails
    /// after it changed was stopped by the node, not by its statement.
    interruptions: AtomicU64,
    /// Idle connections; cleared when a snapshot is installed.
    idle: Mutex<Vec<Reader>>,
    /// Connections held by transactions across statements ([`HeldRead`]); closed when a
    /// snapshot is installed or the WAL grows too large (the transaction then gets 40001).
    held: Mutex<Vec<Weak<Mutex<HeldSlot>>>>,
    /// [`WAL_BYTES_MAX`], smaller in tests.
    wal_bytes_max: AtomicU64,
}

/// The connection of a [`HeldRead`], or why it was taken away.
struct HeldSlot {
    conn: Option<Reader>,
    released_because: &'static str,
}

/// A read transaction kept open across statements: the snapshot of a transaction block.
/// Every read sees the state as of [`HeldRead::applied_index`]. Dropping it ends the read
/// transaction and returns the connection to the pool.
pub struct HeldRead {
    pool: Arc<ReadPool>,
    slot: Arc<Mutex<HeldSlot>>,
    applied: Option<LogIndex>,
}

/// A read transaction on one read-only connection: every call sees the same committed state.
pub struct ReadView<'a> {
    conn: &'a Connection,
    guard: &'a crate::privileges::Guard,
}

/// A read-only connection and the cell its time and randomness functions read.
struct Reader {
    conn: Connection,
    stamp: Arc<StampCell>,
    /// The privileges its reads are checked against.
    guard: Arc<crate::privileges::Guard>,
}

impl std::ops::Deref for Reader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

/// Time and seed of a read that belongs to no transaction block: the node's clock now and a
/// seed of its own. Reads are local and never replicated, so they may see local time.
pub fn local_stamp() -> Stamp {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unix_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Stamp {
        unix_micros,
        seed: STATE
            .get_or_init(Default::default)
            .hash_one((n, unix_micros)),
    }
}

fn open_reader(path: &Path) -> Result<Reader, Fatal> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| Fatal(format!("open read connection: {e}")))?;
    conn.set_prepared_statement_cache_capacity(128);
    // The same time and randomness functions as the writers', reading a stamp that each read
    // sets: a block's reads see the block's time and draw its random numbers, as its replay
    // will.
    let stamp = Arc::new(StampCell::default());
    crate::determinism::install(&conn, stamp.clone())
        .map_err(|e| Fatal(format!("register functions: {e}")))?;
    crate::functions::install(&conn, &stamp)
        .map_err(|e| Fatal(format!("register functions: {e}")))?;
    crate::sequences::install_read_only(&conn)
        .map_err(|e| Fatal(format!("register sequence functions: {e}")))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| Fatal(format!("configure read connection: {e}")))?;
    crate::limits::configure(&conn).map_err(|e| Fatal(format!("set limits: {e}")))?;
    crate::limits::install_read_handler(&mut conn)
        .map_err(|e| Fatal(format!("install progress handler: {e}")))?;
    let guard = Arc::new(crate::privileges::Guard::default());
    crate::privileges::install(&conn, &guard)
        .map_err(|e| Fatal(format!("register role functions: {e}")))?;
    let g = guard.clone();
    conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
        g.decide(&ctx)
    }))
    .map_err(|e| Fatal(format!("install authorizer: {e}")))?;
    Ok(Reader { conn, stamp, guard })
}

impl ReadPool {
    pub(crate) fn new(path: PathBuf) -> ReadPool {
        ReadPool {
            path,
            gate: RwLock::new(()),
            pausing: AtomicBool::new(false),
            running: Mutex::new(HashMap::new()),
            next_read: AtomicU64::new(0),
            interruptions: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            wal_bytes_max: AtomicU64::new(WAL_BYTES_MAX),
        }
    }

    /// Pauses every reader until the guard is dropped, and forgets idle connections. Reads
    /// still running after [`INSTALL_READ_WAIT`] are interrupted.
    pub(crate) fn pause(&self) -> RwLockWriteGuard<'_, ()> {
        self.pausing.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + INSTALL_READ_WAIT;
        let guard = loop {
            match self.gate.try_write() {
                Ok(g) => break g,
                Err(TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    if Instant::now() >= deadline {
                        self.interruptions.fetch_add(1, Ordering::SeqCst);
                        for h in self
                            .running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .values()
                        {
                            h.interrupt();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        self.pausing.store(false, Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        // Lock order everywhere: gate, then a held slot.
        self.release_held("a snapshot was installed on this node while the transaction ran");
        guard
    }

    /// Closes every held read transaction (their blocks get 40001 at their next read).
    fn release_held(&self, why: &'static str) {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        for slot in held.iter().filter_map(Weak::upgrade) {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            // Closing the connection ends its read transaction.
            slot.conn.take();
            slot.released_because = why;
        }
    }

    /// Size of the write-ahead log file now (0 if there is none).
    pub fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
    }

    /// Called by the apply thread after a batch: if the WAL has grown past [`WAL_BYTES_MAX`],
    /// releases the read views held by transaction blocks, which keep a checkpoint from
    /// completing. Returns whether it did.
    pub(crate) fn bound_wal(&self) -> bool {
        if self.wal_bytes() <= self.wal_bytes_max.load(Ordering::Relaxed) {
            return false;
        }
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        self.release_held(
            "the write-ahead log grew too large while the transaction held its read view",
        );
        true
    }

    /// Waits while an installation is pausing readers, then takes the gate shared.
    fn enter(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        while self.pausing.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` as a running read that an installation may interrupt; an error caused by that
    /// interruption becomes 40001.
    fn interruptible<T>(
        &self,
        conn: &Connection,
        f: impl FnOnce() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let id = self.next_read.fetch_add(1, Ordering::Relaxed);
        let before = self.interruptions.load(Ordering::SeqCst);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn.get_interrupt_handle());
        let r = f();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        match r {
            Err(EngineError::Exec(_)) if self.interruptions.load(Ordering::SeqCst) != before => {
                Err(EngineError::Exec(ExecError::new(
                    "40001",
                    "canceling statement: a snapshot is being installed on this node; retry it",
                )))
            }
            r => r,
        }
    }

    fn checkout(&self) -> Result<Reader, Fatal> {
        match self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(c) => Ok(c),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Reader) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READ_CONNECTIONS_MAX && conn.is_autocommit() {
            idle.push(conn);
        }
    }

    /// Opens a read transaction that stays open until the returned [`HeldRead`] is dropped.
    /// Its reads see `stamp`'s time and draw random numbers from its seed in order, as the
    /// block's replay will.
    pub fn hold(self: &Arc<Self>, stamp: Stamp) -> Result<HeldRead, Fatal> {
        let _gate = self.enter();
        let conn = self.checkout()?;
        conn.stamp.set(&stamp);
        let f = |e: rusqlite::Error| Fatal(format!("begin held read: {e}"));
        crate::step::exec_fixed(&conn, "BEGIN").map_err(f)?;
        // The first read fixes the snapshot: these two values describe it.
        let applied = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX).map_err(f)?;
        let slot = Arc::new(Mutex::new(HeldSlot {
            conn: Some(conn),
            released_because: "",
        }));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|w| w.strong_count() > 0);
        held.push(Arc::downgrade(&slot));
        Ok(HeldRead {
            pool: self.clone(),
            slot,
            applied: applied.map(|i| LogIndex(i as u64)),
        })
    }

    /// Runs `f` in one read transaction, at the node's time ([`local_stamp`]). `on_start`
    /// receives the connection's interrupt handle before the transaction starts, so a caller
    /// can cancel a long query.
    pub fn read<T>(
        &self,
        on_start: impl FnOnce(InterruptHandle),
        f: impl FnOnce(&ReadView<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.read_at(local_stamp(), on_start, f)
    }

    /// Runs `f` in one read transaction whose time and randomness come from `stamp` (a
    /// transaction block's reads see the block's time).
    pub fn read_at<T>(
        &self,
        stamp: Stamp,
        on_start: impl FnOnce(InterruptHandle),
        f: impl FnOnce(&ReadView<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let _gate = self.enter();
        let conn = self.checkout()?;
        conn.stamp.set(&stamp);
        on_start(conn.get_interrupt_handle());
        let result = self.interruptible(&conn, || {
            crate::step::exec_fixed(&conn, "BEGIN")
                .map_err(|e| Fatal(format!("begin read: {e}")))?;
            // Unchecked until a client's read says whose it is (`ReadView::query_as`).
            conn.guard.set_role(None);
            let view = ReadView {
                conn: &conn,
                guard: &conn.guard,
            };
            let r = f(&view);
            // A read transaction has nothing to keep; rollback also ends it after an error.
            let _ = crate::step::exec_fixed(&conn, "ROLLBACK");
            r
        });
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
    /// Runs one read statement as a superuser (the node's own reads). A statement that
    /// would write is refused with 25006.
    pub fn query(&self, stmt: &Statement) -> Result<StatementResult, ExecError> {
        self.query_as(None, stmt)
    }

    /// Runs one read statement of a client whose role is `role` (`None`: a superuser): a
    /// table the role may not read is refused with 42501 (`privileges.rs`).
    pub fn query_as(
        &self,
        role: Option<&str>,
        stmt: &Statement,
    ) -> Result<StatementResult, ExecError> {
        self.guard.set_role(role);
        self.guard.prepare(self.conn).map_err(|e| sqlstate_of(&e))?;
        let mut room = ResultRoom::new(crate::limits::READ_RESULT_BYTES_MAX);
        run(self.conn, stmt, None, &mut room).map_err(|e| match self.guard.take_denied() {
            Some(denied) => denied,
            None => e.into_exec(),
        })
    }

    /// Runs the probes of one write (its reading, see `sqlkeeper_sql::Translated::probe`) with
    /// the write's step budget, all of them together as its entry would. Returns 54000 if they
    /// go over it; any other error of a probe is ignored (the write itself will report it, or a
    /// table it creates is not there yet).
    /// They run as the write's `role`: what it may not read is not read (the write itself is
    /// refused when it is applied), so neither the answer nor its time tells anything of it.
    pub fn probe(
        &self,
        role: Option<&str>,
        probes: &[Statement],
        vm_steps_max: u64,
    ) -> Result<(), ExecError> {
        self.guard.set_role(role);
        self.guard.prepare(self.conn).map_err(|e| sqlstate_of(&e))?;
        let budget = Arc::new(crate::limits::Budget::default());
        budget.start_entry(vm_steps_max);
        for p in probes {
            // A probe may use fewer parameters than its statement (`?2` alone).
            let Ok(used) = self
                .conn
                .prepare_cached(&p.sql)
                .map(|s| s.parameter_count())
            else {
                continue;
            };
            let probe = Statement {
                sql: p.sql.clone(),
                params: p.params.iter().take(used).cloned().collect(),
                effect: Default::default(),
            };
            let mut room = ResultRoom::new(crate::limits::READ_RESULT_BYTES_MAX);
            let _ = crate::limits::with_probe_budget(&budget, || {
                run(self.conn, &probe, Some(&budget), &mut room)
            });
            if budget.exceeded() {
                return Err(crate::limits::budget_error(vm_steps_max));
            }
        }
        Ok(())
    }

    /// Describes a statement without running it: its result columns and number of parameters.
    pub fn describe(&self, stmt: &Statement) -> Result<(Vec<Column>, usize), ExecError> {
        crate::exec::describe(self.conn, stmt).map_err(|e| sqlstate_of(&e))
    }

    /// Whether a table, view or index of this name exists (SQLite compares names without
    /// case, as it resolves them).
    pub fn relation_exists(&self, name: &str) -> Result<bool, ExecError> {
        self.conn
            .prepare_cached(
                "SELECT count(*) FROM sqlite_schema \
                 WHERE type IN ('table', 'view', 'index') AND name = ?1 COLLATE NOCASE",
            )
            .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)))
            .map(|n| n > 0)
            .map_err(|e| sqlstate_of(&e))
    }

    /// Whether a user type (an enum, `sqlkeeper_sql::TYPES_TABLE`) of this name exists.
    pub fn type_exists(&self, name: &str) -> Result<bool, ExecError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT count(*) FROM {} WHERE name = ?1 COLLATE NOCASE",
                sqlkeeper_sql::TYPES_TABLE
            ))
            .and_then(|mut s| s.query_row([name], |r| r.get::<_, i64>(0)))
            .map(|n| n > 0)
            .map_err(|e| sqlstate_of(&e))
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

    /// Runs `f` on the held read view. Fails with 40001 if it was closed (a snapshot
    /// installation, the WAL bound).
    pub fn read<T>(
        &self,
        on_start: impl FnOnce(InterruptHandle),
        f: impl FnOnce(&ReadView<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let _gate = self.pool.enter();
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let Some(conn) = slot.conn.as_ref() else {
            return Err(EngineError::Exec(ExecError::new(
                "40001",
                format!("could not serialize access: {}", slot.released_because),
            )));
        };
        on_start(conn.get_interrupt_handle());
        conn.guard.set_role(None);
        self.pool.interruptible(conn, || {
            f(&ReadView {
                conn,
                guard: &conn.guard,
            })
        })
    }
}

impl Drop for HeldRead {
    fn drop(&mut self) {
        // Gate first, as `pause` takes it: a connection is never returned to the pool while a
        // snapshot is being installed.
        let _gate = self.pool.gate.read().unwrap_or_else(|p| p.into_inner());
        let conn = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conn
            .take();
        if let Some(conn) = conn {
            let _ = crate::step::exec_fixed(&conn, "ROLLBACK");
            self.pool.give_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::{apply1, exec, sql};
    use crate::StateMachine;

    /// Issue 9: a long read held the read gate, and a snapshot installation waited for it
    /// while every new read (and apply) waited behind the installation.
    #[test]
    fn an_installation_interrupts_reads_that_outlast_its_wait() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let pool = sm.read_pool();
        let reader = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                pool.read(
                    |_| {},
                    |v| {
                        Ok(v.query(&sql(
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                             SELECT count(*) FROM c",
                        ))?)
                    },
                )
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        drop(pool.pause());
        let waited = started.elapsed();
        assert!(waited >= INSTALL_READ_WAIT, "{waited:?}");
        assert!(waited < INSTALL_READ_WAIT * 5, "{waited:?}");
        match reader.join().unwrap() {
            Err(EngineError::Exec(e)) => assert_eq!(e.sqlstate, "40001", "{e}"),
            other => panic!("the read was not stopped: {:?}", other.map(|r| r.rows)),
        }
        // Reads go on afterwards.
        let r = pool
            .read(|_| {}, |v| Ok(v.query(&sql("SELECT 1"))?))
            .unwrap();
        assert_eq!(r.rows.len(), 1);
    }

    /// Issue 9: a held read transaction kept checkpoints from completing (a two-minute test
    /// left a 69 MB WAL). Past the bound the node releases held read views.
    #[test]
    fn held_snapshots_are_released_when_the_wal_passes_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let pool = sm.read_pool();
        pool.wal_bytes_max.store(4 * 1024 * 1024, Ordering::Relaxed);
        apply1(&mut sm, 0, &exec("CREATE TABLE t (v BLOB)"));
        let held = pool.hold(Stamp::default()).unwrap();
        for i in 1..40 {
            apply1(
                &mut sm,
                i,
                &exec("INSERT INTO t VALUES (randomblob(200000))"),
            );
        }
        let e = held
            .read(|_| {}, |v| Ok(v.query(&sql("SELECT count(*) FROM t"))?))
            .unwrap_err();
        match e {
            EngineError::Exec(e) => {
                assert_eq!(e.sqlstate, "40001");
                assert!(e.message.contains("write-ahead log"), "{e}");
            }
            other => panic!("{other}"),
        }
        drop(held);
        // With the snapshot gone the log is checkpointed and starts over: it stays bounded.
        for i in 40..80 {
            apply1(
                &mut sm,
                i,
                &exec("INSERT INTO t VALUES (randomblob(200000))"),
            );
        }
        assert!(pool.wal_bytes() < 12 * 1024 * 1024, "{}", pool.wal_bytes());
    }

    #[test]
    fn a_probe_over_its_budget_is_refused_and_others_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (k INTEGER)"));
        let pool = sm.read_pool();
        let endless = sql(
            "SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c)",
        );
        let small = Statement {
            sql: "SELECT count(*) FROM t WHERE k > ?2".into(),
            params: vec![crate::Value::Integer(1), crate::Value::Integer(2)],
            effect: Default::default(),
        };
        let missing = sql("SELECT count(*) FROM not_yet_created");
        let r = pool
            .read(
                |_| {},
                |v| Ok(v.probe(None, &[small.clone(), missing.clone()], 1_000_000)),
            )
            .unwrap();
        assert_eq!(r, Ok(()));
        let started = Instant::now();
        let r = pool
            .read(|_| {}, |v| Ok(v.probe(None, &[small, endless], 1_000_000)))
            .unwrap();
        assert_eq!(r.unwrap_err().sqlstate, "54000");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The connection serves ordinary reads afterwards, without a budget.
        let r = pool
            .read(|_| {}, |v| Ok(v.query(&sql("SELECT count(*) FROM t"))?))
            .unwrap();
        assert_eq!(r.rows.len(), 1);
    }
}
