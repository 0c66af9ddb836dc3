//! SQLite-file snapshots.
//!
//! A snapshot is a plain SQLite database file, written with `VACUUM INTO` from a read
//! transaction, so it is a consistent point-in-time copy that a user can open with `sqlite3`.
//! The Raft metadata (last applied log id, membership) lives *inside* the file, in the
//! engine's `_sqlkeeper_meta` table, so a snapshot carries its own identity.
//!
//! This crate does file work only: build, fsync, atomic install. It knows nothing about Raft
//! or tokio. Layout and crash behaviour: `docs/snapshot-format.md`.
#![deny(missing_docs)]

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// Suffix of a file that is still being written. A crash leaves at most one such file
/// behind; it is never read and is deleted by [`remove_partials`] at start-up.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Errors of snapshot file operations. Every one of them is an I/O-class failure for the node.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A file system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// SQLite failed while copying the database.
    #[error("copy database into {path}: {source}")]
    Sqlite {
        /// The destination file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
}

impl From<SnapshotError> for io::Error {
    fn from(e: SnapshotError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The one way a file becomes durable under its name: `partial`, complete and written by the
/// caller, is fsynced, renamed over `dest` and the directory fsynced. A crash leaves either the
/// old `dest` (or none) or the new one, never a torn file; a leftover `partial` is the
/// caller's to clean up (start-up removes `*.partial` files).
pub fn publish(partial: &Path, dest: &Path) -> Result<(), SnapshotError> {
    fsync_file(partial)?;
    fs::rename(partial, dest).map_err(io_err("rename into place", dest))?;
    fsync_dir(parent(dest))
}

/// Writes `bytes` to `dest` durably, through `dest.partial` ([`publish`]).
pub fn write_file(dest: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let partial = partial_path(dest);
    fs::write(&partial, bytes).map_err(io_err("write", &partial))?;
    publish(&partial, dest)
}

/// fsyncs a directory so that a rename or a file creation inside it is durable.
pub fn fsync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// fsyncs a file's contents and metadata.
pub fn fsync_file(path: &Path) -> Result<(), SnapshotError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsync file", path))
}

fn partial_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// Writes a consistent copy of the database behind `conn` to `dest`, atomically.
///
/// `conn` may be a read-only connection; `VACUUM INTO` runs as one read transaction, so the
/// copy is the state at one commit. Steps and what a crash at each leaves behind:
/// 1. `VACUUM INTO dest.partial` — crash: a partial file, ignored and removed at start-up.
/// 2. fsync `dest.partial` — crash: same.
/// 3. rename to `dest` — crash before the directory fsync: either name may survive, and both
///    are complete files, because the content was fsynced in step 2.
/// 4. fsync the directory — from here on the snapshot survives power loss.
pub fn write_snapshot(conn: &Connection, dest: &Path) -> Result<(), SnapshotError> {
    let partial = partial_path(dest);
    // A leftover from an earlier crash would make VACUUM INTO fail ("output file already exists").
    match fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("remove stale partial snapshot", &partial)(e)),
    }
    let target = partial.to_string_lossy().into_owned();
    conn.execute("VACUUM main INTO ?1", [&target])
        .map_err(|source| SnapshotError::Sqlite {
            path: partial.clone(),
            source,
        })?;
    publish(&partial, dest)
}

/// Replaces the database file at `live` with a copy of the snapshot file `snapshot`.
///
/// The caller must have closed every connection to `live` first (the engine does this under
/// its exclusive lock). The snapshot file itself is kept, because it stays the node's current
/// snapshot. Steps and what a crash at each leaves behind:
/// 1. remove `live-wal` and `live-shm` — all connections were closed cleanly, so SQLite has
///    already checkpointed the WAL into `live`; a crash here leaves the old, complete state.
/// 2. copy `snapshot` to `live.partial` and fsync it — crash: the old state plus a partial
///    file that start-up removes.
/// 3. rename `live.partial` over `live` — the atomic switch; crash before step 4 leaves
///    either the old or the new complete file, both consistent with their own applied index
///    (stored inside the file), so Raft re-applies or re-installs as needed.
/// 4. fsync the directory — the new state is durable.
pub fn install_snapshot(snapshot: &Path, live: &Path) -> Result<(), SnapshotError> {
    for suffix in ["-wal", "-shm"] {
        let mut s = live.as_os_str().to_owned();
        s.push(suffix);
        let side = PathBuf::from(s);
        match fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove old wal file", &side)(e)),
        }
    }
    let partial = partial_path(live);
    fs::copy(snapshot, &partial).map_err(io_err("copy snapshot", &partial))?;
    publish(&partial, live)
}

/// Removes `*.partial` files left in `dir` by a crash during a snapshot build or install.
pub fn remove_partials(dir: &Path) -> Result<(), SnapshotError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("list directory", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let path = entry.path();
        if path.to_string_lossy().ends_with(PARTIAL_SUFFIX) {
            fs::remove_file(&path).map_err(io_err("remove partial file", &path))?;
        }
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_a_consistent_sqlite_file_and_install_replaces_live() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("state.db");
        let conn = Connection::open(&live).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1),(2);",
        )
        .unwrap();
        let snap = dir.path().join("snap.db");
        write_snapshot(&conn, &snap).unwrap();
        conn.execute("INSERT INTO t VALUES (3)", []).unwrap();
        drop(conn);

        let copy = Connection::open(&snap).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            n, 2,
            "the snapshot holds the state at the time it was taken"
        );
        drop(copy);

        install_snapshot(&snap, &live).unwrap();
        let conn = Connection::open(&live).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "install replaced the live file");
        assert!(snap.exists(), "the snapshot file is kept");
    }

    #[test]
    fn partial_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.db.partial"), b"junk").unwrap();
        std::fs::write(dir.path().join("y.db"), b"keep").unwrap();
        remove_partials(dir.path()).unwrap();
        assert!(!dir.path().join("x.db.partial").exists());
        assert!(dir.path().join("y.db").exists());
    }
}
