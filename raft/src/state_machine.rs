//! openraft's state machine, backed by the engine on its apply thread, and SQLite-file
//! snapshots.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt};
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend};
use sqlkeeper_engine::{
    read_snapshot_info, ApplyItem, BlockWriter, LogIndex, Outcome, RaftMeta, ReadPool,
    SnapshotInfo, StateMachine,
};

use crate::apply_thread::ApplyThread;
use crate::types::TypeConfig;

/// Committed entries applied in one SQLite transaction at most. Bounds the size of a write
/// transaction (and of the WAL) when a restarted node re-applies a long log; 1024 entries
/// keep one transaction well under a second on this machine.
pub const APPLY_BATCH_MAX: usize = 1024;

/// A snapshot as openraft passes it around: a SQLite file, opened. Everything reads it through
/// the open handle, with positional reads, never through its name: a newer snapshot may replace
/// the name (and the old file be deleted) while a transfer or an install is still reading, and
/// the handle keeps the bytes alive until the last reader is done.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// Where the file is (or was) in the snapshot directory.
    pub path: PathBuf,
    /// Open handle to it, shared by every reader; reads never move a shared offset.
    pub file: Arc<File>,
}

impl SnapshotFile {
    /// Opens the snapshot file at `path`.
    pub fn open(path: PathBuf) -> io::Result<SnapshotFile> {
        let file = File::open(&path)?;
        Ok(SnapshotFile {
            path,
            file: Arc::new(file),
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads up to `buf.len()` bytes at `offset` (0 at the end).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        self.file.read_at(buf, offset)
    }

    /// Copies the whole file to a new file at `dest` (made durable by the caller).
    fn copy_to(&self, dest: &Path) -> io::Result<()> {
        use std::io::Write;
        let mut out = File::create(dest)?;
        let mut buf = vec![0u8; crate::rpc::SNAPSHOT_CHUNK_BYTES];
        let mut offset = 0u64;
        loop {
            let n = self.read_at(&mut buf, offset)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
            offset += n as u64;
        }
        out.flush()
    }
}

#[derive(Clone)]
struct Current {
    meta: SnapshotMetaOf<TypeConfig>,
    snapshot: SnapshotFile,
}

/// The state machine handed to openraft.
pub struct StateMachineStore {
    apply: ApplyThread,
    reads: Arc<ReadPool>,
    block_writer: Arc<BlockWriter>,
    snapshot_dir: PathBuf,
    /// The newest complete snapshot. Shared with snapshot builders, which run in their own
    /// tasks and replace it when they finish.
    current: Arc<Mutex<Option<Current>>>,
    /// Test hook: a pause before each applied batch, to simulate a slow replica.
    apply_delay: std::time::Duration,
}

fn other<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> io::Error {
    move |e| io::Error::other(format!("{context}: {e}"))
}

pub(crate) fn snapshot_file_name(last: &Option<LogIdOf<TypeConfig>>) -> String {
    // Zero-padded so names sort in log order: position = index + 1, and 0 (no entry applied
    // yet) sorts before every real index.
    match last {
        Some(l) => format!("snap-{:020}-{:020}.db", l.index + 1, l.leader_id.term),
        None => format!("snap-{:020}.db", 0),
    }
}

fn meta_from_info(info: &SnapshotInfo) -> io::Result<SnapshotMetaOf<TypeConfig>> {
    let last_log_id: Option<LogIdOf<TypeConfig>> = match &info.raft_applied {
        Some(b) => serde_json::from_slice(b).map_err(other("decode snapshot applied id"))?,
        None => None,
    };
    let last_membership: StoredMembershipOf<TypeConfig> = match &info.raft_membership {
        Some(b) => serde_json::from_slice(b).map_err(other("decode snapshot membership"))?,
        None => Default::default(),
    };
    // Pair assertion: the engine's own applied index must agree with Raft's log id.
    if info.applied_index.map(|i| i.0) != last_log_id.as_ref().map(|l| l.index) {
        return Err(io::Error::other(format!(
            "snapshot is inconsistent: applied index {:?} but raft log id {:?}",
            info.applied_index, last_log_id
        )));
    }
    Ok(SnapshotMetaOf::<TypeConfig> {
        last_log_id,
        last_membership,
    })
}

/// Finds the newest complete snapshot in `dir` (by file name order) and deletes older ones.
fn load_current(dir: &Path) -> io::Result<Option<Current>> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    for p in &entries {
        // A crash during a build leaves a complete but unnamed copy: never loaded, removed.
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("building-"))
        {
            std::fs::remove_file(p)?;
        }
    }
    let mut names: Vec<PathBuf> = entries
        .into_iter()
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with("snap-") && n.ends_with(".db")
        })
        .collect();
    names.sort();
    let Some(newest) = names.pop() else {
        return Ok(None);
    };
    for old in names {
        std::fs::remove_file(&old)?;
    }
    let info = read_snapshot_info(&newest).map_err(other("read snapshot"))?;
    Ok(Some(Current {
        meta: meta_from_info(&info)?,
        snapshot: SnapshotFile::open(newest)?,
    }))
}

impl StateMachineStore {
    /// Opens the state database in `state_dir` on a new apply thread; snapshots live in
    /// `snapshot_dir`.
    pub fn open(
        state_dir: &Path,
        snapshot_dir: &Path,
        node_id: u64,
    ) -> io::Result<StateMachineStore> {
        std::fs::create_dir_all(snapshot_dir)?;
        sqlkeeper_snapshots::remove_partials(snapshot_dir).map_err(io::Error::from)?;
        sqlkeeper_snapshots::remove_partials(state_dir).map_err(io::Error::from)?;
        let sm = StateMachine::open(state_dir).map_err(other("open state machine"))?;
        let reads = sm.read_pool();
        let block_writer = sm.block_writer();
        let current = load_current(snapshot_dir)?;
        Ok(StateMachineStore {
            apply: ApplyThread::spawn(sm, node_id)?,
            reads,
            block_writer,
            snapshot_dir: snapshot_dir.to_path_buf(),
            current: Arc::new(Mutex::new(current)),
            apply_delay: std::time::Duration::ZERO,
        })
    }

    /// Delays every applied batch by `delay` (tests: a follower that lags).
    pub fn with_apply_delay(mut self, delay: std::time::Duration) -> StateMachineStore {
        self.apply_delay = delay;
        self
    }

    /// The writer connection of transaction blocks.
    pub fn block_writer(&self) -> Arc<BlockWriter> {
        self.block_writer.clone()
    }

    /// The read pool over the state database.
    pub fn read_pool(&self) -> Arc<ReadPool> {
        self.reads.clone()
    }

    /// Hash of the state as seen by the writer (see `engine::state_hash`).
    pub async fn state_hash(&self) -> io::Result<[u8; 32]> {
        self.apply
            .call(|sm| sm.state_hash())
            .await?
            .map_err(other("hash state"))
    }

    /// Makes `new` the current snapshot unless a newer one is current already, and removes
    /// the file that lost. Removing is safe: whoever was handed that snapshot reads it through
    /// its open handle, which keeps the bytes until it is closed.
    fn set_current(current: &Mutex<Option<Current>>, new: Current) -> io::Result<()> {
        let loser = {
            let mut guard = current.lock().unwrap_or_else(|p| p.into_inner());
            let newer_exists = guard
                .as_ref()
                .is_some_and(|c| c.meta.last_log_id > new.meta.last_log_id);
            if newer_exists {
                // A concurrent build finished a newer snapshot first: this one goes.
                Some(new.snapshot.path)
            } else {
                let new_path = new.snapshot.path.clone();
                guard
                    .replace(new)
                    .map(|old| old.snapshot.path)
                    .filter(|old| *old != new_path)
            }
        };
        match loser.map(std::fs::remove_file) {
            Some(Err(e)) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Builds a snapshot from a read transaction while applies continue.
pub struct SnapshotBuilder {
    reads: Arc<ReadPool>,
    snapshot_dir: PathBuf,
    current: Arc<Mutex<Option<Current>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotFile>, io::Error> {
        let reads = self.reads.clone();
        let dir = self.snapshot_dir.clone();
        let current = self.current.clone();
        tokio::task::spawn_blocking(move || {
            // The index is known only after the copy, so copy under a unique building name,
            // then rename to the final, index-ordered name.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let building = dir.join(format!("building-{nanos}.db"));
            let info = reads.write_snapshot(&building).map_err(other("build snapshot"))?;
            let meta = meta_from_info(&info)?;
            let path = dir.join(snapshot_file_name(&meta.last_log_id));
            // Both names hold a complete, fsynced file; the directory fsync makes the new
            // name durable. A crash before it may leave `building-*.db`, which is not a
            // `snap-*` name and is never loaded.
            sqlkeeper_snapshots::publish(&building, &path).map_err(io::Error::from)?;
            tracing::info!(log_index = ?meta.last_log_id.as_ref().map(|l| l.index), "built snapshot");
            // Opened before it is published: once published, a newer build may remove it.
            let snapshot = SnapshotFile::open(path)?;
            StateMachineStore::set_current(
                &current,
                Current {
                    meta: meta.clone(),
                    snapshot: snapshot.clone(),
                },
            )?;
            Ok(Snapshot { meta, snapshot })
        })
        .await
        .map_err(other("snapshot task"))?
    }
}

pub(crate) fn raft_meta_for(
    last: &LogIdOf<TypeConfig>,
    membership: Option<StoredMembershipOf<TypeConfig>>,
) -> io::Result<RaftMeta> {
    Ok(RaftMeta {
        applied: serde_json::to_vec(&Some(last)).map_err(other("encode applied id"))?,
        membership: membership
            .map(|m| serde_json::to_vec(&m))
            .transpose()
            .map_err(other("encode membership"))?,
    })
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<TypeConfig>>, StoredMembershipOf<TypeConfig>), io::Error> {
        let (applied, membership) = self
            .apply
            .call(|sm| sm.raft_meta())
            .await?
            .map_err(other("read applied state"))?;
        let applied: Option<LogIdOf<TypeConfig>> = match applied {
            Some(b) => serde_json::from_slice(&b).map_err(other("decode applied id"))?,
            None => None,
        };
        let membership: StoredMembershipOf<TypeConfig> = match membership {
            Some(b) => serde_json::from_slice(&b).map_err(other("decode membership"))?,
            None => Default::default(),
        };
        Ok((applied, membership))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            // A command that rebuilds a table is applied in a transaction of its own (the engine
            // switches foreign keys off for it, which SQLite allows only between transactions).
            if matches!(&item.0.payload, EntryPayload::Normal(c) if c.rebuilds_tables()) {
                self.apply_batch(std::mem::take(&mut batch)).await?;
                self.apply_batch(vec![item]).await?;
                continue;
            }
            batch.push(item);
            if batch.len() >= APPLY_BATCH_MAX {
                self.apply_batch(std::mem::take(&mut batch)).await?;
            }
        }
        self.apply_batch(batch).await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            reads: self.reads.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            current: self.current.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let own = self
            .snapshot_dir
            .join(snapshot_file_name(&meta.last_log_id));
        let dst = own.clone();
        // File copies and fsyncs block: keep them off the async workers.
        let (file_meta, installed) = tokio::task::spawn_blocking(
            move || -> io::Result<(SnapshotMetaOf<TypeConfig>, SnapshotFile)> {
                let installed = if snapshot.path != dst {
                    // Keep a copy in our own directory: it becomes this node's current
                    // snapshot. Copied through the handle: the name may be gone already.
                    let partial = dst.with_extension("db.partial");
                    snapshot.copy_to(&partial)?;
                    sqlkeeper_snapshots::publish(&partial, &dst).map_err(io::Error::from)?;
                    SnapshotFile::open(dst.clone())?
                } else {
                    snapshot
                };
                let info = read_snapshot_info(&dst).map_err(other("read snapshot"))?;
                Ok((meta_from_info(&info)?, installed))
            },
        )
        .await
        .map_err(other("snapshot task"))??;
        // Pair assertion: the file must carry the identity openraft gave us.
        if file_meta.last_log_id != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot file is at {:?}, but raft installs it as {:?}",
                file_meta.last_log_id, meta.last_log_id
            )));
        }
        let path = own.clone();
        self.apply
            .call(move |sm| sm.install_snapshot(&path))
            .await?
            .map_err(other("install snapshot"))?;
        tracing::info!(log_index = ?meta.last_log_id.as_ref().map(|l| l.index), "installed snapshot");
        StateMachineStore::set_current(
            &self.current,
            Current {
                meta: meta.clone(),
                snapshot: installed,
            },
        )
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>, io::Error> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // The handle was cloned under the lock: the file stays readable whatever happens to
        // its name from here on.
        Ok(current.map(|c| Snapshot {
            meta: c.meta,
            snapshot: c.snapshot,
        }))
    }
}

impl StateMachineStore {
    async fn apply_batch(&self, batch: Vec<EntryResponder<TypeConfig>>) -> io::Result<()> {
        let Some((last, _)) = batch.last() else {
            return Ok(());
        };
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
        let last_membership = batch.iter().rev().find_map(|(e, _)| match &e.payload {
            EntryPayload::Membership(m) => Some(StoredMembershipOf::<TypeConfig>::new(
                Some(e.log_id),
                m.clone(),
            )),
            _ => None,
        });
        let raft_meta = raft_meta_for(&last.log_id, last_membership)?;
        let (entries, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        metrics::counter!("sqlkeeper_applied_entries_total").increment(entries.len() as u64);
        let started = std::time::Instant::now();
        let outcomes = self
            .apply
            .call(move |sm| {
                let items: Vec<ApplyItem<'_>> = entries
                    .iter()
                    .map(|e| ApplyItem {
                        index: LogIndex(e.log_id.index),
                        command: match &e.payload {
                            EntryPayload::Normal(c) => Some(c),
                            _ => None,
                        },
                    })
                    .collect();
                sm.apply_batch(&items, &raft_meta)
            })
            .await?;
        metrics::histogram!("sqlkeeper_apply_seconds").record(started.elapsed());
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(fatal) => {
                tracing::error!(error = %fatal, "state machine failed; the node stops applying");
                return Err(io::Error::other(fatal.to_string()));
            }
        };
        for (responder, outcome) in responders.into_iter().zip(outcomes) {
            if let Some(r) = responder {
                r.send(outcome.unwrap_or_else(Outcome::default));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sqlite_file(s: &SnapshotFile) -> bool {
        let mut head = [0u8; 16];
        s.read_at(&mut head, 0).unwrap() == 16 && &head == b"SQLite format 3\0"
    }

    /// Issue 9: `get_current_snapshot` opened the current file by name after releasing the
    /// lock, and `build_snapshot` reopened its own file after publishing it, while a concurrent
    /// build could delete either; openraft treats both failures as fatal. Every snapshot handed
    /// out must stay readable, whatever builds finish meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshots_handed_out_stay_readable_while_newer_ones_replace_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm =
            StateMachineStore::open(&dir.path().join("state"), &dir.path().join("snap"), 1)
                .unwrap();
        let mut builds = Vec::new();
        for _ in 0..8 {
            let mut b = sm.get_snapshot_builder().await;
            builds.push(tokio::spawn(async move { b.build_snapshot().await }));
        }
        let mut handed_out = Vec::new();
        for _ in 0..200 {
            if let Some(s) = sm.get_current_snapshot().await.unwrap() {
                handed_out.push(s.snapshot);
            }
            tokio::task::yield_now().await;
        }
        for b in builds {
            handed_out.push(b.await.unwrap().unwrap().snapshot);
        }
        assert!(!handed_out.is_empty());
        for s in &handed_out {
            assert!(is_sqlite_file(s), "{} is unreadable", s.path.display());
        }
        // Only the current snapshot keeps a name.
        let names = std::fs::read_dir(dir.path().join("snap")).unwrap().count();
        assert_eq!(names, 1);
    }

    /// Crash points of snapshot work, as files left behind: a build killed before its rename
    /// (`building-*`), a received snapshot killed before install (`incoming-*.partial`), an
    /// install killed before its rename (`*.db.partial`), an older snapshot not yet removed.
    /// Start-up keeps the newest complete snapshot and removes the rest.
    #[tokio::test]
    async fn start_up_cleans_up_after_a_crash_at_each_step() {
        let dir = tempfile::tempdir().unwrap();
        let (state, snap) = (dir.path().join("state"), dir.path().join("snap"));
        let newest = {
            let mut sm = StateMachineStore::open(&state, &snap, 1).unwrap();
            let mut b = sm.get_snapshot_builder().await;
            b.build_snapshot().await.unwrap().snapshot.path
        };
        // Sorts before the newest name (zero-padded positions sort in log order).
        let older = snap.join("snap-0.db");
        std::fs::copy(&newest, &older).unwrap();
        for leftover in [
            "building-1.db",
            "incoming-2.db.partial",
            "snap-00000000000000000009-00000000000000000001.db.partial",
        ] {
            std::fs::write(snap.join(leftover), b"torn").unwrap();
        }
        std::fs::write(state.join("state.db.partial"), b"torn").unwrap();
        let mut sm = StateMachineStore::open(&state, &snap, 1).unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.path, newest);
        assert!(is_sqlite_file(&current.snapshot));
        let mut left: Vec<String> = std::fs::read_dir(&snap)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![newest.file_name().unwrap().to_string_lossy().into_owned()]
        );
        assert!(!state.join("state.db.partial").exists());
    }
}
