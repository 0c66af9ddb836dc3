//! Test helpers: the builder for openraft's storage conformance suite.

use openraft::testing::log::StoreBuilder;
use openraft::type_config::TypeConfigExt;
use openraft::StorageError;

use crate::{LogStore, StateMachineStore, TypeConfig};

/// Builds a fresh log store and state machine in a new temporary directory per call.
pub struct SqliteStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir>
    for SqliteStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir =
            tempfile::tempdir().map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let log = LogStore::open(&dir.path().join("raft"))
            .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        let sm =
            StateMachineStore::open(&dir.path().join("state"), &dir.path().join("snapshots"), 1)
                .map_err(|e| StorageError::write(TypeConfig::err_from_error(&e)))?;
        Ok((dir, log, sm))
    }
}

#[cfg(test)]
mod tests {
    use super::SqliteStoreBuilder;

    /// openraft's storage conformance suite against the SQLite log store and state machine.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openraft_storage_suite() {
        openraft::testing::log::Suite::test_all(SqliteStoreBuilder)
            .await
            .unwrap();
    }
}
