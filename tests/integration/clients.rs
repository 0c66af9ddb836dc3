//! Client libraries against a real node: SQLAlchemy 2 (psycopg2) ORM sessions and an Alembic
//! migration, run by `tests/clients/sqlalchemy_alembic.py`. The test command
//! (`scripts/test.sh`) installs them in a virtualenv and names its Python in
//! `SQLKEEPER_TEST_PYTHON`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::TestNode;

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("SQLKEEPER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-venv/bin/python"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_orm_and_alembic_migrations() {
    let python = python();
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh, which installs SQLAlchemy, psycopg2 and Alembic",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let addr = node.pg_addr.to_string();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sqlalchemy_alembic.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
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
    assert!(out.status.success(), "client script failed:\n{text}");
    assert!(text.contains("== OK"), "{text}");
    node.stop().await;
}
