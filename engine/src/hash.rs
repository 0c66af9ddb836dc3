//! A hash over a canonical dump of the state, to check that replicas converged.

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::exec::value_of;
use crate::meta::{
    KEY_APPLIED_INDEX, KEY_LOG_CLOCK, KEY_RAFT_APPLIED, KEY_RAFT_MEMBERSHIP, META_TABLE,
};

/// SHA-256 over every object's schema and every table's rows, in a canonical order: objects by
/// type and name; rows of a rowid table by row id, with the row id hashed too (it decides scan
/// order and the next generated key, so replicas must agree on it); rows of a `WITHOUT ROWID`
/// table by all columns. Every replicated table is covered, the engine's own included (the
/// request digests, sequences, removed nodes, `sqlite_sequence`). Of `_sqlkeeper_meta`, the
/// values that name the applied position, the log's clock there and the cluster are left out
/// (`applied_index`, `raft_applied`, `log_clock`, `raft_membership`), so that nodes that
/// applied the same data through different blank entries compare equal, and so does a cluster
/// restored from a backup (`sqlkeeper restore`, which moves the position) with the cluster the
/// backup was taken from, at the backup's index. The clock of each remembered request is in its
/// row, which is hashed.
pub fn state_hash(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut tables: Vec<String> = Vec::new();
    {
        let mut s = conn.prepare(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_schema ORDER BY type, name",
        )?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let kind: String = r.get(0)?;
            let name: String = r.get(1)?;
            let sql: String = r.get(2)?;
            for part in [&kind, &name, &sql] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            if kind == "table" {
                tables.push(name);
            }
        }
    }
    for name in tables {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let without_rowid: bool = conn.query_row(
            "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
            [&name],
            |r| r.get(0),
        )?;
        let width = conn
            .prepare(&format!("SELECT * FROM {quoted} LIMIT 0"))?
            .column_count();
        let sql = if name == META_TABLE {
            format!(
                "SELECT key, value FROM {quoted} WHERE key NOT IN ('{KEY_APPLIED_INDEX}', \
                 '{KEY_RAFT_APPLIED}', '{KEY_LOG_CLOCK}', '{KEY_RAFT_MEMBERSHIP}') ORDER BY key"
            )
        } else if name == "sqlite_sequence" {
            // SQLite's own bookkeeping, looked up by name; a snapshot copy may number its rows
            // differently.
            "SELECT name, seq FROM sqlite_sequence ORDER BY name".to_string()
        } else if without_rowid {
            let order: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
            format!("SELECT * FROM {quoted} ORDER BY {}", order.join(", "))
        } else {
            format!("SELECT _rowid_, * FROM {quoted} ORDER BY _rowid_")
        };
        let mut s = conn.prepare(&sql)?;
        let columns = s.column_count();
        let mut rows = s.query([])?;
        h.update(name.as_bytes());
        while let Some(r) = rows.next()? {
            for i in 0..columns {
                let v = value_of(r.get_ref(i)?);
                // serde_json of Value is canonical enough: tagged, exact for integers and
                // text; floats print with shortest round-trip representation.
                let bytes = serde_json::to_vec(&v).unwrap_or_default();
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            h.update([0xff]);
        }
    }
    Ok(h.finalize().into())
}
