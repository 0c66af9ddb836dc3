//! Real applications that keep their metadata in PostgreSQL, installed from PyPI by the test
//! command and run unmodified (issue 12, acceptance 6): Optuna and MLflow. Their own schema
//! migrations to head, a workload through their own API, and the data read back through a
//! follower, compared with what the same calls leave in PostgreSQL 15.

use std::path::PathBuf;
use std::process::Command;

use crate::clients::{output_of, python, run_client, script_command};
use crate::support::{Postgres, TestCluster};

/// The Python of an application's own virtualenv (`target/test-venv-{name}`), made by the test
/// command beside the main one from `tests/clients/{name}-requirements.txt`, and named in
/// `var`.
fn app_python(var: &str, name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(format!("target/test-venv-{name}/bin/python")))
}

/// Optuna 2.10 (with SQLAlchemy 1.4, which it needs): the release whose schema the upgrade
/// starts from.
fn optuna2_python() -> PathBuf {
    app_python("SQLKEEPER_TEST_OPTUNA2_PYTHON", "optuna2")
}

/// `tests/clients/{script} MODE` with `python` (the server's address comes last).
fn app_script(python: PathBuf, script: &str, mode: &str) -> Command {
    let mut cmd = script_command(python, script);
    cmd.arg(mode);
    cmd
}

fn optuna_script(python: PathBuf, mode: &str) -> Command {
    app_script(python, "optuna_app.py", mode)
}

/// The JSON line a `summary` mode prints, of the application's data at `addr`.
async fn summary(mut cmd: Command, addr: &str) -> String {
    cmd.arg(addr);
    let out = output_of("summary", cmd).await;
    out.lines()
        .find(|l| l.starts_with('[') || l.starts_with('{'))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"))
        .to_string()
}

/// A 3-node cluster, its leader and its two followers.
async fn cluster() -> (TestCluster, u64, [u64; 2]) {
    let cluster = TestCluster::start(3, |_| Vec::new()).await;
    let leader = cluster.leader().await;
    let followers: Vec<u64> = cluster
        .live_ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    (cluster, leader, [followers[0], followers[1]])
}

/// Makes every node catch up with the leader and checks their state hashes, then that the
/// `summary` command (the application's own reading of its data) reads `expected` through
/// the second follower and through the leader.
async fn read_back(
    cluster: &TestCluster,
    leader: u64,
    follower: u64,
    summary_command: fn() -> Command,
    expected: &str,
) {
    cluster.assert_state_hashes_equal().await;
    for (id, through) in [(follower, "a follower"), (leader, "the leader")] {
        let addr = cluster.node(id).pg_addr.to_string();
        let got = summary(summary_command(), &addr).await;
        assert_eq!(got, expected, "read through {through}");
    }
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

/// `optuna_app.py summary`: every study, as JSON.
fn optuna_summary() -> Command {
    optuna_script(python(), "summary")
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
    let expected = summary(optuna_summary(), &pg_addr).await;
    assert!(
        expected.contains("\"legacy\"") && expected.contains("PRUNED"),
        "{expected}"
    );

    let (cluster, leader, [writer, reader]) = cluster().await;
    optuna_lifecycle(&cluster.node(writer).pg_addr.to_string()).await;
    read_back(&cluster, leader, reader, optuna_summary, &expected).await;
}

/// MLflow 2.22's tracking store and model registry (`tests/clients/mlflow_app.py`).
fn mlflow_script(mode: &str) -> Command {
    app_script(
        app_python("SQLKEEPER_TEST_MLFLOW_PYTHON", "mlflow"),
        "mlflow_app.py",
        mode,
    )
}

fn mlflow_summary() -> Command {
    mlflow_script("summary")
}

/// MLflow, pointed at a follower of a 3-node cluster: its store's first use makes the schema
/// (MLflow's initial tables, then its 30 Alembic migrations, each a transaction that rebuilds
/// tables other tables reference), then experiments, runs with params, metrics and tags
/// (`log_batch`), deleted and restored runs, searches with filters and paging, and the model
/// registry (versions, aliases, tags). Experiments, runs, metric histories and models read back
/// through the other follower and the leader are what PostgreSQL holds after the same calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_migrates_and_tracks_through_a_follower() {
    let pg = Postgres::start();
    let pg_addr = format!("127.0.0.1:{}", pg.port);
    run_client("mlflow", mlflow_script("workload"), pg_addr.clone()).await;
    let expected = summary(mlflow_summary(), &pg_addr).await;
    assert!(
        expected.contains("churn-model") && expected.contains("lr-0.001"),
        "{expected}"
    );

    let (cluster, leader, [writer, reader]) = cluster().await;
    let addr = cluster.node(writer).pg_addr.to_string();
    run_client("mlflow", mlflow_script("workload"), addr).await;
    read_back(&cluster, leader, reader, mlflow_summary, &expected).await;
}
