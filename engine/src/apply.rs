//! The writer side: applying committed commands in log order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::command::{Command, LogIndex, RequestId, Stamp, TxnStep};
use crate::determinism::{self, StampCell};
use crate::error::{ExecError, Fatal};
use crate::meta;
use crate::meta::{DEDUP_WINDOW_ENTRIES, REQUESTS_TABLE};
use crate::read::ReadPool;
use crate::sequences::SequenceCell;
use crate::txn::{run_statement, run_step, Cells, Digest256, Speculator};
use crate::Outcome;

/// File name of the state database inside the node's state directory.
pub const STATE_DB_FILE: &str = "state.db";

/// Raft's bookkeeping for a batch, stored opaquely (the engine does not know openraft) in the
/// same SQLite transaction as the batch's effects.
#[derive(Debug, Clone, Default)]
pub struct RaftMeta {
    /// Serialized id of the last applied log entry.
    pub applied: Vec<u8>,
    /// Serialized membership, if an entry of the batch changed it.
    pub membership: Option<Vec<u8>>,
}

/// One committed log entry handed to [`StateMachine::apply_batch`]: `command` is `None` for
/// entries that carry no application data (blank and membership entries).
#[derive(Debug, Clone, Copy)]
pub struct ApplyItem<'a> {
    /// Log position.
    pub index: LogIndex,
    /// The application command, if any.
    pub command: Option<&'a Command>,
}

fn fatal(context: &str) -> impl FnOnce(rusqlite::Error) -> Fatal + '_ {
    move |e| Fatal(format!("{context}: {e}"))
}

/// The deterministic state machine: owns the only writable connection to the state database.
pub struct StateMachine {
    db_path: PathBuf,
    /// `None` only while a snapshot is being installed or after a fatal error.
    conn: Option<Connection>,
    applied_index: Option<LogIndex>,
    /// Latched first fatal error; every later call returns it (redb's "previous I/O error").
    failed: Option<Fatal>,
    /// Time and seed of the command being applied, its sequences and the table rebuild its
    /// statement requested: read by the functions registered on the writer connection.
    cells: Cells,
    reads: Arc<ReadPool>,
    /// The speculation slot of interactive transactions; revoked before every apply.
    speculator: Arc<Speculator>,
}

pub(crate) fn open_writer(
    path: &Path,
    stamp: Arc<StampCell>,
    sequences: Arc<Mutex<SequenceCell>>,
    rebuild: crate::rebuild::RebuildCell,
) -> Result<Connection, Fatal> {
    let conn = Connection::open(path).map_err(fatal("open state database"))?;
    // WAL lets read connections run beside the writer. synchronous=NORMAL: a commit is not
    // fsynced until the next checkpoint, so power loss may drop the last applied batches; the
    // applied index lives in the same transactions and drops with them, and Raft re-applies
    // those entries from its fsynced log at start-up. A process crash (kill -9) loses nothing.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA recursive_triggers = ON;",
    )
    .map_err(fatal("configure state database"))?;
    conn.set_prepared_statement_cache_capacity(256);
    determinism::install(&conn, stamp).map_err(fatal("register deterministic functions"))?;
    crate::functions::install(&conn).map_err(fatal("register functions"))?;
    meta::create(&conn).map_err(fatal("create metadata table"))?;
    crate::sequences::create_table(&conn).map_err(fatal("create sequences table"))?;
    crate::sequences::install(&conn, sequences).map_err(fatal("register sequence functions"))?;
    crate::rebuild::install(&conn, rebuild).map_err(fatal("register rebuild function"))?;
    Ok(conn)
}

impl StateMachine {
    /// Opens (or creates) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<StateMachine, Fatal> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Fatal(format!("create {}: {e}", dir.display())))?;
        let db_path = dir.join(STATE_DB_FILE);
        let cells = Cells::default();
        let conn = open_writer(
            &db_path,
            cells.stamp.clone(),
            cells.sequences.clone(),
            cells.rebuild.clone(),
        )?;
        let applied_index = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX)
            .map_err(fatal("read applied index"))?
            .map(|i| LogIndex(i as u64));
        let reads = Arc::new(ReadPool::new(db_path.clone()));
        let speculator = Arc::new(Speculator::new(db_path.clone()));
        Ok(StateMachine {
            db_path,
            conn: Some(conn),
            applied_index,
            failed: None,
            cells,
            reads,
            speculator,
        })
    }

    /// The speculation slot for interactive transactions on this state.
    pub fn speculator(&self) -> Arc<Speculator> {
        self.speculator.clone()
    }

    /// The pool of read-only connections to the same database.
    pub fn read_pool(&self) -> Arc<ReadPool> {
        self.reads.clone()
    }

    /// Path of the live state database.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Index of the last applied entry, `None` before the first.
    pub fn applied_index(&self) -> Option<LogIndex> {
        self.applied_index
    }

    fn conn(&self) -> Result<&Connection, Fatal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        self.conn
            .as_ref()
            .ok_or_else(|| Fatal("state database is not open".into()))
    }

    fn latch<T>(&mut self, r: Result<T, Fatal>) -> Result<T, Fatal> {
        if let Err(e) = &r {
            if self.failed.is_none() {
                self.failed = Some(e.clone());
            }
        }
        r
    }

    /// Raft's stored bookkeeping: (last applied log id, membership), as written by
    /// [`StateMachine::apply_batch`].
    pub fn raft_meta(&self) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Fatal> {
        let conn = self.conn()?;
        let applied = meta::get_blob(conn, meta::KEY_RAFT_APPLIED).map_err(fatal("read meta"))?;
        let membership =
            meta::get_blob(conn, meta::KEY_RAFT_MEMBERSHIP).map_err(fatal("read meta"))?;
        Ok((applied, membership))
    }

    /// Applies committed entries in log order, in one SQLite transaction together with
    /// `raft_meta` and the new applied index. Returns one outcome per item (`None` for items
    /// without a command).
    ///
    /// An entry at or below the applied index is a bug that would apply an entry twice: it is
    /// refused as fatal.
    pub fn apply_batch(
        &mut self,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
    ) -> Result<Vec<Option<Outcome>>, Fatal> {
        let r = self.apply_batch_inner(items, raft_meta);
        self.latch(r)
    }

    fn apply_batch_inner(
        &mut self,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
    ) -> Result<Vec<Option<Outcome>>, Fatal> {
        let Some(last) = items.last() else {
            return Ok(Vec::new());
        };
        let mut expect_above = self.applied_index;
        for item in items {
            if let Some(prev) = expect_above {
                if item.index <= prev {
                    return Err(Fatal(format!(
                        "entry {} is not after applied index {prev}: refusing to apply twice",
                        item.index
                    )));
                }
            }
            expect_above = Some(item.index);
        }
        // The apply thread never waits for a client: a running speculation is ended (its
        // transaction gets 40001) and none starts until this batch is committed.
        let speculator = self.speculator.clone();
        let _hold = speculator.hold_for_apply(
            "the data this transaction read was changed by a concurrent write (an entry was applied on this node)",
            false,
        );
        let conn = self.conn()?;
        // A table rebuild runs alone, with foreign keys off and checked at its end.
        let rebuild_alone =
            items.len() == 1 && items[0].command.is_some_and(|c| c.rebuilds_tables());
        if rebuild_alone {
            conn.execute_batch("PRAGMA foreign_keys = OFF")
                .map_err(fatal("disable foreign keys for a rebuild"))?;
        }
        let result = conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(fatal("begin apply"))
            .and_then(|()| self.apply_items(conn, items, raft_meta, rebuild_alone));
        let end = match &result {
            Ok(_) => conn.execute_batch("COMMIT").map_err(fatal("commit apply")),
            Err(_) => {
                // Best effort: the node stops anyway; the transaction must not be committed.
                let _ = conn.execute_batch("ROLLBACK");
                Ok(())
            }
        };
        if rebuild_alone {
            conn.execute_batch("PRAGMA foreign_keys = ON")
                .map_err(fatal("enable foreign keys after a rebuild"))?;
        }
        end?;
        let outcomes = result?;
        self.applied_index = Some(last.index);
        Ok(outcomes)
    }

    fn apply_items(
        &self,
        conn: &Connection,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
        check_foreign_keys: bool,
    ) -> Result<Vec<Option<Outcome>>, Fatal> {
        let Some(last) = items.last() else {
            return Ok(Vec::new());
        };
        {
            let mut outcomes = Vec::with_capacity(items.len());
            // The last data-changing entry so far, including this batch's own: a transaction
            // is checked against the entry just before it, however the log was cut into
            // batches on this node.
            let stored = meta::get_i64(conn, meta::KEY_LAST_WRITE_INDEX)
                .map_err(fatal("read last write index"))?
                .map(|i| LogIndex(i as u64));
            let mut last_write = stored;
            for item in items {
                outcomes.push(match item.command {
                    None => None,
                    Some(cmd) => {
                        let (outcome, wrote) = apply_command(
                            conn,
                            &self.cells,
                            item.index,
                            cmd,
                            check_foreign_keys,
                            last_write,
                        )?;
                        if wrote {
                            last_write = Some(item.index);
                        }
                        Some(outcome)
                    }
                });
            }
            if let Some(w) = last_write.filter(|_| last_write != stored) {
                meta::put(conn, meta::KEY_LAST_WRITE_INDEX, w.0 as i64)
                    .map_err(fatal("write last write index"))?;
            }
            meta::put(conn, meta::KEY_APPLIED_INDEX, last.index.0 as i64)
                .map_err(fatal("write applied index"))?;
            meta::put(conn, meta::KEY_RAFT_APPLIED, &raft_meta.applied)
                .map_err(fatal("write raft meta"))?;
            if let Some(m) = &raft_meta.membership {
                meta::put(conn, meta::KEY_RAFT_MEMBERSHIP, m).map_err(fatal("write membership"))?;
            }
            Ok(outcomes)
        }
    }

    /// Replaces the whole state with the snapshot file at `snapshot` (atomic file replace).
    /// Readers are paused for the duration.
    pub fn install_snapshot(&mut self, snapshot: &Path) -> Result<(), Fatal> {
        let r = self.install_snapshot_inner(snapshot);
        self.latch(r)
    }

    fn install_snapshot_inner(&mut self, snapshot: &Path) -> Result<(), Fatal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let reads = self.reads.clone();
        let _paused = reads.pause();
        let speculator = self.speculator.clone();
        let _hold = speculator.hold_for_apply(
            "a snapshot was installed on this node while the transaction ran",
            true,
        );
        // Closing the last connection checkpoints the WAL into the file and removes it.
        if let Some(conn) = self.conn.take() {
            conn.close()
                .map_err(|(_, e)| Fatal(format!("close state database: {e}")))?;
        }
        sqlkeeper_snapshots::install_snapshot(snapshot, &self.db_path)
            .map_err(|e| Fatal(format!("install snapshot: {e}")))?;
        let conn = open_writer(
            &self.db_path,
            self.cells.stamp.clone(),
            self.cells.sequences.clone(),
            self.cells.rebuild.clone(),
        )?;
        self.applied_index = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX)
            .map_err(fatal("read applied index"))?
            .map(|i| LogIndex(i as u64));
        self.conn = Some(conn);
        Ok(())
    }

    /// Hash of the canonical dump of the state (see [`crate::state_hash`]).
    pub fn state_hash(&self) -> Result<[u8; 32], Fatal> {
        crate::hash::state_hash(self.conn()?).map_err(fatal("hash state"))
    }
}

/// Applies one command. Returns its outcome and whether it may have changed data (which moves
/// the base later transactions are checked against).
fn apply_command(
    conn: &Connection,
    cells: &Cells,
    index: LogIndex,
    cmd: &Command,
    check_foreign_keys: bool,
    last_write: Option<LogIndex>,
) -> Result<(Outcome, bool), Fatal> {
    match cmd {
        Command::Execute {
            statements,
            request_id,
            stamp,
        } => {
            cells.stamp.set(stamp);
            if let Some(id) = request_id {
                if let Some(first) = seen_request(conn, id)? {
                    return Ok((first, false));
                }
            }
            // Sequences can be used without being named in the statement (a column DEFAULT
            // calling nextval), so every command starts from the stored values: a read of
            // the whole sequences table (one row per sequence, small in a metadata store).
            crate::sequences::load(conn, &cells.sequences).map_err(fatal("load sequences"))?;
            let outcome = execute_statements(conn, statements, cells, check_foreign_keys)?;
            // After the savepoint was released or rolled back: like Postgres, nextval is not
            // undone when the statement that called it fails.
            crate::sequences::flush(conn, &cells.sequences).map_err(fatal("store sequences"))?;
            if let Some(id) = request_id {
                remember_request(conn, id, index, &outcome)?;
            }
            Ok((outcome, true))
        }
        Command::Transaction {
            request_id,
            stamp,
            base,
            steps,
            digest,
        } => {
            if let Some(id) = request_id {
                if let Some(first) = seen_request(conn, id)? {
                    return Ok((first, false));
                }
            }
            let outcome = if *base != last_write {
                // The data changed after the transaction read it: refused on every replica.
                Outcome {
                    results: Vec::new(),
                    error: Some((
                        0,
                        ExecError::new(
                            "40001",
                            format!(
                                "could not serialize access due to concurrent update: log entry {} changed the data this transaction read",
                                last_write.map(|c| c.to_string()).unwrap_or_default()
                            ),
                        ),
                    )),
                }
            } else {
                replay_transaction(conn, cells, index, *stamp, steps, digest)?
            };
            if let Some(id) = request_id {
                remember_request(conn, id, index, &outcome)?;
            }
            let wrote = outcome.error.is_none();
            Ok((outcome, wrote))
        }
    }
}

/// Replays a transaction whose data did not change since it ran speculatively, and checks
/// that replay returned what the client saw. Either it all applies or nothing does.
fn replay_transaction(
    conn: &Connection,
    cells: &Cells,
    index: LogIndex,
    stamp: Stamp,
    steps: &[TxnStep],
    digest: &str,
) -> Result<Outcome, Fatal> {
    cells.stamp.set(&stamp);
    crate::sequences::load(conn, &cells.sequences).map_err(fatal("load sequences"))?;
    conn.execute_batch("SAVEPOINT entry")
        .map_err(fatal("savepoint"))?;
    let mut replayed = Digest256::default();
    for step in steps {
        replayed.add(&run_step(conn, step, cells)?);
    }
    let replayed = replayed.hex();
    if replayed != digest {
        // Every replica computes the same replay, so every replica refuses alike.
        tracing::error!(%index, expected = %digest, %replayed, "a transaction replayed differently from its speculative execution; it was not applied");
        conn.execute_batch("ROLLBACK TO entry; RELEASE entry")
            .map_err(fatal("roll back diverging transaction"))?;
        return Ok(Outcome {
            results: Vec::new(),
            error: Some((
                0,
                ExecError::new(
                    "XX000",
                    format!("the transaction replayed with results different from those its client saw (log entry {index}); nothing was applied"),
                ),
            )),
        });
    }
    crate::sequences::flush(conn, &cells.sequences).map_err(fatal("store sequences"))?;
    conn.execute_batch("RELEASE entry")
        .map_err(fatal("release savepoint"))?;
    Ok(Outcome::default())
}

fn seen_request(conn: &Connection, id: &RequestId) -> Result<Option<Outcome>, Fatal> {
    use rusqlite::OptionalExtension;
    let blob: Option<Vec<u8>> = conn
        .prepare_cached(&format!(
            "SELECT outcome FROM {REQUESTS_TABLE} WHERE origin = ?1 AND serial = ?2"
        ))
        .and_then(|mut s| {
            s.query_row([id.origin as i64, id.serial as i64], |r| r.get(0))
                .optional()
        })
        .map_err(fatal("look up request id"))?;
    blob.map(|b| {
        serde_json::from_slice(&b).map_err(|e| Fatal(format!("decode stored outcome: {e}")))
    })
    .transpose()
}

fn remember_request(
    conn: &Connection,
    id: &RequestId,
    index: LogIndex,
    outcome: &Outcome,
) -> Result<(), Fatal> {
    let blob = serde_json::to_vec(outcome).map_err(|e| Fatal(format!("encode outcome: {e}")))?;
    conn.prepare_cached(&format!(
        "INSERT INTO {REQUESTS_TABLE} (origin, serial, log_index, outcome) VALUES (?1, ?2, ?3, ?4)"
    ))
    .and_then(|mut s| {
        s.execute(rusqlite::params![
            id.origin as i64,
            id.serial as i64,
            index.0 as i64,
            blob
        ])
    })
    .map_err(fatal("remember request id"))?;
    // Forget old ids, at positions every replica reaches: the state stays identical.
    if index.0 % 1024 == 0 && index.0 > DEDUP_WINDOW_ENTRIES {
        conn.execute(
            &format!("DELETE FROM {REQUESTS_TABLE} WHERE log_index < ?1"),
            [(index.0 - DEDUP_WINDOW_ENTRIES) as i64],
        )
        .map_err(fatal("forget old request ids"))?;
    }
    Ok(())
}

fn execute_statements(
    conn: &Connection,
    statements: &[crate::command::Statement],
    cells: &Cells,
    check_foreign_keys: bool,
) -> Result<Outcome, Fatal> {
    conn.execute_batch("SAVEPOINT entry")
        .map_err(fatal("savepoint"))?;
    let mut outcome = Outcome::default();
    for (i, stmt) in statements.iter().enumerate() {
        match run_statement(conn, stmt, cells)? {
            Ok(r) => outcome.results.push(r),
            Err(e) => {
                outcome.error = Some((i, e));
                break;
            }
        }
    }
    if check_foreign_keys && outcome.error.is_none() {
        // Foreign keys were not enforced while this command ran: check them all now.
        let violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(fatal("check foreign keys"))?;
        if violations > 0 {
            outcome.error = Some((
                statements.len().saturating_sub(1),
                ExecError::new(
                    "23503",
                    "the statement leaves rows that violate a foreign key constraint",
                ),
            ));
        }
    }
    if outcome.error.is_some() {
        conn.execute_batch("ROLLBACK TO entry")
            .map_err(fatal("roll back failed entry"))?;
    }
    conn.execute_batch("RELEASE entry")
        .map_err(fatal("release savepoint"))?;
    Ok(outcome)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::{Stamp, Statement, Value};

    /// One statement as an autocommit command.
    pub(crate) fn exec(sql: &str) -> Command {
        Command::Execute {
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![Statement {
                sql: sql.into(),
                params: vec![],
            }],
        }
    }

    /// Applies `cmd` alone at `index` and returns its outcome.
    pub(crate) fn apply1(sm: &mut StateMachine, index: u64, cmd: &Command) -> Outcome {
        let items = [ApplyItem {
            index: LogIndex(index),
            command: Some(cmd),
        }];
        sm.apply_batch(&items, &RaftMeta::default())
            .unwrap()
            .pop()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn applies_in_order_and_persists_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index(), None);
        let o = apply1(
            &mut sm,
            0,
            &exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"),
        );
        assert!(o.error.is_none());
        let o = apply1(
            &mut sm,
            1,
            &exec("INSERT INTO kv VALUES (1, 'a'), (2, 'b') RETURNING k"),
        );
        assert_eq!(o.results[0].rows_affected, 2);
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(2)]]
        );
        drop(sm);
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index(), Some(LogIndex(1)));
    }

    #[test]
    fn deterministic_failure_is_an_outcome_and_rolls_back_the_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(
            &mut sm,
            0,
            &exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"),
        );
        let cmd = Command::Execute {
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![
                Statement {
                    sql: "INSERT INTO kv VALUES (5, 'x')".into(),
                    params: vec![],
                },
                Statement {
                    sql: "INSERT INTO kv VALUES (5, 'y')".into(),
                    params: vec![],
                },
            ],
        };
        let o = apply1(&mut sm, 1, &cmd);
        let (at, err) = o.error.unwrap();
        assert_eq!(at, 1);
        assert_eq!(err.sqlstate, "23505");
        assert_eq!(
            sm.applied_index(),
            Some(LogIndex(1)),
            "the failed entry's index is recorded"
        );
        let o = apply1(&mut sm, 2, &exec("SELECT count(*) FROM kv"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(0)]],
            "first insert rolled back"
        );
        let o = apply1(&mut sm, 3, &exec("SELECT * FROM missing"));
        assert_eq!(o.error.unwrap().1.sqlstate, "42P01");
    }

    #[test]
    fn a_request_applied_twice_runs_once_and_answers_the_first_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (a INTEGER PRIMARY KEY)"));
        let cmd = Command::Execute {
            request_id: Some(RequestId {
                origin: 7,
                serial: 1,
            }),
            stamp: Stamp::default(),
            statements: vec![Statement {
                sql: "INSERT INTO t VALUES (1)".into(),
                params: vec![],
            }],
        };
        let first = apply1(&mut sm, 1, &cmd);
        assert_eq!(first.results[0].rows_affected, 1);
        let again = apply1(&mut sm, 2, &cmd);
        assert_eq!(
            again, first,
            "the duplicate is answered with the first outcome"
        );
        let o = apply1(&mut sm, 3, &exec("SELECT count(*) FROM t"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(1)]]);
    }

    #[test]
    fn refuses_to_apply_an_entry_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 3, &exec("CREATE TABLE t (a)"));
        let cmd = exec("INSERT INTO t VALUES (1)");
        let items = [ApplyItem {
            index: LogIndex(3),
            command: Some(&cmd),
        }];
        assert!(sm.apply_batch(&items, &RaftMeta::default()).is_err());
        // latched: even a valid entry is refused now
        let items = [ApplyItem {
            index: LogIndex(4),
            command: Some(&cmd),
        }];
        assert!(sm.apply_batch(&items, &RaftMeta::default()).is_err());
    }
}
