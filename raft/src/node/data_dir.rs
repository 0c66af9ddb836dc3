//! A node's data directory: its identity file and the boot counter that keeps request ids unique
//! across restarts.

use super::*;

/// Name of the identity file in the data directory.
pub(super) const IDENTITY_FILE: &str = "node.json";

/// Version of the data directory layout.
pub(super) const DATA_DIR_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
pub(super) struct Identity {
    node_id: NodeId,
    format: u32,
}

/// Request serials are `boot << BOOT_SERIAL_SHIFT | counter`: 2^40 requests per start, 2^24
/// starts; unique across restarts whatever the clock does, as deduplication requires.
pub(super) const BOOT_SERIAL_SHIFT: u32 = 40;

/// Name of the file counting the node's starts.
pub(super) const BOOT_FILE: &str = "boot";

/// Counts this start in the data directory and returns its number. Write, fsync, rename,
/// fsync the directory: a crash leaves the old count or the new one, and a count is never
/// handed out twice (a crash after the rename but before use only skips a number).
pub(super) fn next_boot(dir: &Path) -> Result<u64, StartError> {
    let path = dir.join(BOOT_FILE);
    let dir_err = |source: io::Error| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    let previous: u64 = match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|_| StartError::Other(format!("{} is not a number", path.display())))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(dir_err(e)),
    };
    let boot = previous + 1;
    sqlkeeper_snapshots::write_file(&path, boot.to_string().as_bytes())
        .map_err(|e| StartError::Other(e.to_string()))?;
    Ok(boot)
}

/// Creates the data directory (or checks an existing one) and its identity file.
pub(super) fn prepare_data_dir(dir: &Path, node_id: NodeId) -> Result<(), StartError> {
    let dir_err = |source: io::Error| StartError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_err)?;
    let identity_path = dir.join(IDENTITY_FILE);
    match std::fs::read(&identity_path) {
        Ok(bytes) => {
            let id: Identity = serde_json::from_slice(&bytes).map_err(|e| {
                StartError::Other(format!("cannot read {}: {e}", identity_path.display()))
            })?;
            if id.node_id != node_id {
                return Err(StartError::WrongNode {
                    path: dir.to_path_buf(),
                    found: id.node_id,
                    wanted: node_id,
                });
            }
            if id.format != DATA_DIR_FORMAT {
                return Err(StartError::Other(format!(
                    "data directory {} has layout version {}, this build reads {DATA_DIR_FORMAT}",
                    dir.display(),
                    id.format
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bytes = serde_json::to_vec(&Identity {
                node_id,
                format: DATA_DIR_FORMAT,
            })
            .map_err(|e| StartError::Other(e.to_string()))?;
            // A crash leaves either no identity (the directory is then treated as new) or a
            // complete one.
            sqlkeeper_snapshots::write_file(&identity_path, &bytes)
                .map_err(|e| StartError::Other(e.to_string()))
        }
        Err(e) => Err(dir_err(e)),
    }
}
