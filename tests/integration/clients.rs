//! Client libraries against a real node: SQLAlchemy 2 (psycopg2) ORM sessions and an Alembic
//! migration (`tests/clients/sqlalchemy_alembic.py`), and typed values through asyncpg and
//! psycopg 3 (`tests/clients/typed_drivers.py`). The test command (`scripts/test.sh`) installs
//! them in a virtualenv and names its Python in `SQLKEEPER_TEST_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Postgres, TestNode};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("SQLKEEPER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-venv/bin/python"))
}

/// Runs `tests/clients/{script}` against the server at `addr`; panics with its output unless it
/// ends with `== OK`.
async fn run_script(script: &str, addr: String) {
    let python = python();
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh, which installs the Python clients",
        python.display()
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .arg(addr)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{text}");
    assert!(text.contains("== OK"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_orm_and_alembic_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_script("sqlalchemy_alembic.py", node.pg_addr.to_string()).await;
    node.stop().await;
}

/// asyncpg (untyped prepared statements, binary) and psycopg 3 (server-side binding, text and
/// binary cursors): the script passes against PostgreSQL 15 first, so its expectations are
/// PostgreSQL's, then against a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg3_round_trip_typed_values() {
    let pg = Postgres::start();
    run_script("typed_drivers.py", format!("127.0.0.1:{}", pg.port)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_script("typed_drivers.py", node.pg_addr.to_string()).await;
    node.stop().await;
}
