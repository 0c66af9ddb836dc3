//! psql against the server: exact command tags, results and error messages, compared with a
//! golden file (`testdata/*.out`). Set `UPDATE_GOLDEN=1` to rewrite the expected output.

use std::path::PathBuf;
use std::process::Command;

use crate::support::TestNode;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/testdata")
}

fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_matches_golden_output() {
    psql_script_matches_golden("psql_basics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_transaction_blocks_match_golden_output() {
    psql_script_matches_golden("psql_transactions").await;
}

/// Runs `testdata/{name}.sql` through psql against a fresh node and compares the output with
/// `testdata/{name}.out`.
async fn psql_script_matches_golden(name: &'static str) {
    assert!(
        psql_available(),
        "psql is required (the test command installs postgresql-client)"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let addr = node.pg_addr;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .current_dir(testdata())
            .arg("-c")
            .arg(format!(
                "psql -X -a -h {} -p {} -U postgres -d postgres -v ON_ERROR_STOP=0 -f {name}.sql 2>&1",
                addr.ip(),
                addr.port()
            ))
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let actual = String::from_utf8_lossy(&out.stdout).into_owned();
    let golden = testdata().join(format!("{name}.out"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "psql output differs from {}",
        golden.display()
    );
    node.stop().await;
}
