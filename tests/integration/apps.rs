//! Real applications that keep their metadata in PostgreSQL, installed from PyPI by the test
//! command and run unmodified (issue 12, acceptance 6): their own schema migrations to head, a
//! workload through their own API, and the data read back through a follower, compared with
//! what the same calls leave in PostgreSQL 15.

use std::path::PathBuf;
use std::process::Command;

use crate::clients::{clients_dir, output_of, python, run_client};
use crate::support::{Postgres, TestCluster};

/// The virtualenv with Optuna 2.10 (and SQLAlchemy 1.4, which it needs), made by the test
/// command beside the main one: the release whose schema the upgrade starts from.
fn optuna2_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("SQLKEEPER_TEST_OPTUNA2_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-venv-optuna2/bin/python"))
}

/// `tests/clients/optuna_app.py MODE ADDR` with `python`.
fn optuna_script(python: PathBuf, mode: &str) -> Command {
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh, which installs Optuna",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("optuna_app.py"))
        .arg(mode)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Optuna's whole life on one server at `addr`: Optuna 2.10 makes its schema and runs a
/// study; `optuna storage upgrade` (Optuna 5.1, the release the main virtualenv pins) runs
/// Alembic's migrations of the years between (new enum types and columns, column types, data
/// rewritten through a server-side cursor); Optuna 5.1 goes on with the old study and makes new
/// ones (pruning with infinite and NaN intermediate values, two objectives, ask/tell, a failed
/// trial, a study deleted).
async fn optuna_lifecycle(addr: &str) {
    run_client(
        "optuna 2.10",
        optuna_script(optuna2_python(), "legacy"),
        addr.to_string(),
    )
    .await;
    let mut upgrade = Command::new(python().with_file_name("optuna"));
    upgrade.args([
        "storage",
        "upgrade",
        "--storage",
        &format!("postgresql+psycopg2://postgres@{addr}/postgres"),
    ]);
    let out = output_of("optuna storage upgrade", upgrade).await;
    assert!(out.contains("Completed to upgrade the storage"), "{out}");
    run_client(
        "optuna 5.1",
        optuna_script(python(), "workload"),
        addr.to_string(),
    )
    .await;
}

/// Every study at `addr`, as JSON (`optuna_app.py summary`).
async fn optuna_summary(addr: &str) -> String {
    let mut cmd = optuna_script(python(), "summary");
    cmd.arg(addr);
    let out = output_of("optuna summary", cmd).await;
    let json = out
        .lines()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    json.to_string()
}

/// Optuna, pointed at a follower of a 3-node cluster, upgrades and runs as it does on
/// PostgreSQL: the studies read back through the other follower, and through the leader, are
/// the ones PostgreSQL holds after the same calls (seeded samplers, deterministic
/// objectives), to the last bit of every float. The nodes end with equal state hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optuna_upgrades_and_runs_through_a_follower() {
    let pg = Postgres::start();
    let pg_addr = format!("127.0.0.1:{}", pg.port);
    optuna_lifecycle(&pg_addr).await;
    let expected = optuna_summary(&pg_addr).await;
    assert!(
        expected.contains("\"legacy\"") && expected.contains("PRUNED"),
        "{expected}"
    );

    let cluster = TestCluster::start(3, |_| Vec::new()).await;
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster
        .live_ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let writer = cluster.node(followers[0]).pg_addr.to_string();
    optuna_lifecycle(&writer).await;
    let index = cluster
        .status(leader)
        .await
        .and_then(|s| s.2)
        .expect("leader status");
    cluster.wait_applied(index).await;
    let reader = cluster.node(followers[1]).pg_addr.to_string();
    assert_eq!(
        optuna_summary(&reader).await,
        expected,
        "read through a follower"
    );
    let on_leader = cluster.node(leader).pg_addr.to_string();
    assert_eq!(
        optuna_summary(&on_leader).await,
        expected,
        "read through the leader"
    );
    cluster.assert_state_hashes_equal().await;
}
