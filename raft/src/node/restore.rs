//! `sqlkeeper restore`: a new data directory seeded from an SQLite file, a backup
//! (`sqlkeeper backup`, a snapshot) or any SQLite database a user brings. A node started on it
//! is a single-node cluster holding that data; other nodes join it (`--join`) and receive the
//! data as a snapshot. Layout: `docs/snapshot-format.md`, Backup and restore.

use openraft::alias::{LogIdOf, StoredMembershipOf};
use openraft::vote::RaftLeaderIdExt;
use openraft::{Membership, StoredMembership};
use rusqlite::{Connection, OpenFlags};
use sqlkeeper_engine::StateMachine;

use super::*;

/// Where and as whom the restored node will run.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The restored node's id: start it with the same `--node-id`.
    pub node_id: NodeId,
    /// The new data directory (absent or empty).
    pub data_dir: PathBuf,
    /// The Raft address the node will listen on (`--raft-addr`), recorded in its membership.
    pub raft_addr: String,
    /// The Postgres address it will listen on (`--pg-addr`).
    pub pg_addr: String,
}

/// What a restore made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// The log index the new cluster starts after (`StateMachine::restored_position`).
    pub log_index: u64,
    /// The log index the file's state was at, if it is a sqlkeeper state (a backup or a
    /// snapshot); `None` for another SQLite database.
    pub source_index: Option<u64>,
}

/// Seeds `config.data_dir` from the SQLite file `from`.
///
/// The file is checked (`PRAGMA quick_check`) and copied with `VACUUM INTO` (compact, and the
/// source is only read). The copy is opened by the engine, which adds its internal tables to a
/// file that lacks them and refuses a state of another layout version. Its applied position
/// becomes the backup's log index with term 0 and this node's id, and its membership this node
/// alone; the Raft log is empty, purged up to that position, and the copy is also this node's
/// first snapshot, so a joining node is sent the data instead of a log that does not hold it.
pub async fn restore(from: &Path, config: &RestoreConfig) -> Result<Restored, StartError> {
    let dir = &config.data_dir;
    let existed = match std::fs::read_dir(dir).map(|mut e| e.next().is_some()) {
        Ok(true) => {
            return Err(StartError::Other(format!(
                "data directory {} is not empty: restore seeds a new node's directory",
                dir.display()
            )))
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let result = seed(from, config).await;
    if result.is_err() {
        // Nothing half-made stays behind: the directory is as it was (absent, or empty).
        let _ = std::fs::remove_dir_all(dir);
        if existed {
            let _ = std::fs::create_dir_all(dir);
        }
    }
    result
}

async fn seed(from: &Path, config: &RestoreConfig) -> Result<Restored, StartError> {
    let dir = &config.data_dir;
    let (from, config) = (from.to_path_buf(), config.clone());
    let (restored, log_id) = tokio::task::spawn_blocking(move || seed_state(&from, &config))
        .await
        .map_err(|e| StartError::Other(format!("restore task: {e}")))??;
    let mut log = LogStore::open(&dir.join("raft")).map_err(other("open raft log"))?;
    openraft::storage::RaftLogStorage::purge(&mut log, log_id)
        .await
        .map_err(other("record the restored position in the raft log"))?;
    Ok(restored)
}

fn seed_state(
    from: &Path,
    config: &RestoreConfig,
) -> Result<(Restored, LogIdOf<TypeConfig>), StartError> {
    check_sqlite_file(from)?;
    prepare_data_dir(&config.data_dir, config.node_id)?;
    let state_dir = config.data_dir.join("state");
    let snapshot_dir = config.data_dir.join("snapshots");
    for d in [&state_dir, &snapshot_dir] {
        std::fs::create_dir_all(d).map_err(|source| StartError::DataDir {
            path: d.clone(),
            source,
        })?;
    }
    let state = state_dir.join(sqlkeeper_engine::STATE_DB_FILE);
    {
        // SQLite's online backup, page by page: it needs none of the functions the schema's
        // checks and triggers call (VACUUM INTO would), and copies a WAL's content too.
        let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| not_sqlite(from, e))?;
        let partial = state.with_extension("db.partial");
        src.backup(
            rusqlite::MAIN_DB,
            &partial,
            None::<fn(rusqlite::backup::Progress)>,
        )
        .map_err(|e| StartError::Other(format!("copy {}: {e}", from.display())))?;
        sqlkeeper_snapshots::publish(&partial, &state)
            .map_err(|e| StartError::Other(e.to_string()))?;
    }
    let mut sm = StateMachine::open(&state_dir)
        .map_err(|e| StartError::Other(format!("{}: {e}", from.display())))?;
    let (applied, _) = sm
        .raft_meta()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let source_index = match applied {
        Some(b) => serde_json::from_slice::<Option<LogIdOf<TypeConfig>>>(&b)
            .map_err(other("decode the file's applied log id"))?
            .map(|l| l.index),
        None => None,
    };
    let position = sm
        .restored_position()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let index = position.0 .0;
    // Term 0: the new cluster's first election starts term 1, above every entry it holds.
    let log_id = LogIdOf::<TypeConfig>::new(
        <openraft::alias::LeaderIdOf<TypeConfig>>::new_committed(0, config.node_id),
        index,
    );
    let node = NodeInfo {
        raft_addr: config.raft_addr.clone(),
        pg_addr: config.pg_addr.clone(),
    };
    let membership: StoredMembershipOf<TypeConfig> = StoredMembership::new(
        Some(log_id),
        Membership::new(
            vec![BTreeSet::from([config.node_id])],
            BTreeMap::from([(config.node_id, node)]),
        )
        .map_err(other("membership"))?,
    );
    let raft_meta = crate::state_machine::raft_meta_for(&log_id, Some(membership))
        .map_err(other("encode the restored position"))?;
    sm.seed_position(position, &raft_meta)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let hash = sm
        .state_hash()
        .map_err(|e| StartError::Other(e.to_string()))?;
    drop(sm);
    // The node's first snapshot: what a joining node is sent. Named as the builder names them.
    let snapshot = snapshot_dir.join(crate::state_machine::snapshot_file_name(&Some(log_id)));
    let partial = snapshot.with_extension("db.partial");
    std::fs::copy(&state, &partial).map_err(|source| StartError::DataDir {
        path: partial.clone(),
        source,
    })?;
    sqlkeeper_snapshots::publish(&partial, &snapshot)
        .map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!(log_index = index, hash = %hex(&hash), "restored state");
    Ok((
        Restored {
            log_index: index,
            source_index,
        },
        log_id,
    ))
}

/// Refuses a file that is not a sound SQLite database, with SQLite's reason.
fn check_sqlite_file(path: &Path) -> Result<(), StartError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| not_sqlite(path, e))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| not_sqlite(path, e))?;
    if check != "ok" {
        return Err(StartError::Other(format!(
            "{} fails SQLite's integrity check: {check}",
            path.display()
        )));
    }
    Ok(())
}

fn not_sqlite(path: &Path, e: rusqlite::Error) -> StartError {
    StartError::Other(format!(
        "{} is not an SQLite database that can be read ({e})",
        path.display()
    ))
}

fn other<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Other(format!("{what}: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
