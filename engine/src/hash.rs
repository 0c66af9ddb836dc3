//! A hash over a canonical dump of the state, to check that replicas converged.

use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::exec::value_of;
use crate::meta::INTERNAL_PREFIX;

/// SHA-256 over every table's schema and rows, in a canonical order: tables by name, rows
/// ordered by all columns. The `_sqlkeeper_meta` table is left out, because the applied index
/// legitimately differs between a node that replayed the log and one that installed a
/// snapshot; `sqlite_sequence` (AUTOINCREMENT state) is included.
pub fn state_hash(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    let mut h = Sha256::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    {
        let mut s = conn.prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_schema \
             WHERE type IN ('table', 'index', 'view', 'trigger') ORDER BY type, name",
        )?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let sql: String = r.get(1)?;
            // Internal tables (applied index, request dedup) legitimately differ between a
            // node that replayed the log and one that installed a snapshot.
            let is_sequences = name == crate::sequences::SEQUENCES_TABLE;
            if (name.starts_with(INTERNAL_PREFIX) && !is_sequences)
                || name.starts_with("sqlite_autoindex_")
            {
                continue;
            }
            h.update(name.as_bytes());
            h.update([0]);
            h.update(sql.as_bytes());
            h.update([0]);
            if sql.starts_with("CREATE TABLE") || name == "sqlite_sequence" {
                tables.push((name, sql));
            }
        }
    }
    for (name, _) in tables {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let width = conn
            .prepare(&format!("SELECT * FROM {quoted} LIMIT 0"))?
            .column_count();
        let order: Vec<String> = (1..=width).map(|i| i.to_string()).collect();
        let sql = if order.is_empty() {
            format!("SELECT * FROM {quoted}")
        } else {
            format!("SELECT * FROM {quoted} ORDER BY {}", order.join(", "))
        };
        let mut s = conn.prepare(&sql)?;
        let mut rows = s.query([])?;
        h.update(name.as_bytes());
        while let Some(r) = rows.next()? {
            for i in 0..width {
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
