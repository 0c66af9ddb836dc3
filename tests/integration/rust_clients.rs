//! sqlx (its runtime API, no compile-time checked macros) against PostgreSQL 15 and a node, the
//! same checks on both: sqlx's own migrations (`Migrator` over `tests/clients/sqlx_migrations`,
//! with its `_sqlx_migrations` bookkeeping, run twice), then typed rows with `query_as` into
//! Rust tuples. sqlx prepares every statement and reads results in binary, and refuses a
//! column whose described type is not the Rust type's, so this checks the row descriptions too.
//! sqlx's migration lock is `pg_advisory_lock`, which is not served yet (`docs/compat.md`): the
//! migrator runs with locking off.

use std::path::PathBuf;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Row};

use crate::support::{Postgres, TestNode};

/// A row of `jobs`: id, name, attempts, weight, payload, done, owner.
type Job = (
    i64,
    String,
    i32,
    Option<f64>,
    Option<Vec<u8>>,
    bool,
    Option<String>,
);

async fn check(port: u16) {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username("postgres")
        .database("postgres");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap();

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sqlx_migrations");
    let mut migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    migrator.set_locking(false);
    migrator.run(&pool).await.unwrap();
    // Run again: both are recorded with their checksums, so nothing is applied.
    migrator.run(&pool).await.unwrap();
    let applied: Vec<(i64, String, bool)> = sqlx::query_as(
        "SELECT version, description, success FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        applied,
        vec![
            (20240101000000, "create jobs".to_string(), true),
            (20240102000000, "add owner".to_string(), true),
        ]
    );

    // Typed parameters and rows, in binary.
    for (i, name) in ["build", "test", "deploy"].iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (name, attempts, weight, payload, owner) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(*name)
        .bind(i as i32)
        .bind(0.5 * i as f64)
        .bind(vec![i as u8, 0xff])
        .bind(Some("ci"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(id, i as i64 + 1);
    }
    let rows: Vec<Job> =
        sqlx::query_as(
            "SELECT id, name, attempts, weight, payload, done, owner FROM jobs WHERE attempts >= $1 ORDER BY id",
        )
        .bind(1i32)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                2,
                "test".into(),
                1,
                Some(0.5),
                Some(vec![1, 0xff]),
                false,
                Some("ci".into())
            ),
            (
                3,
                "deploy".into(),
                2,
                Some(1.0),
                Some(vec![2, 0xff]),
                false,
                Some("ci".into())
            ),
        ]
    );
    let (n, total): (i64, Option<i64>) = sqlx::query_as("SELECT count(*), sum(attempts) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((n, total), (3, Some(3)));

    // A transaction rolled back, one committed, and a unique violation's SQLSTATE.
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("UPDATE jobs SET done = true")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let done = sqlx::query("UPDATE jobs SET done = true, attempts = attempts + 1 WHERE name = $1")
        .bind("build")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    tx.commit().await.unwrap();
    let row = sqlx::query("SELECT count(*) AS n FROM jobs WHERE done")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 1);
    let err = sqlx::query("INSERT INTO jobs (name) VALUES ($1)")
        .bind("build")
        .execute(&mut conn)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(code.as_deref(), Some("23505"), "{err}");
    conn.close().await.unwrap();
    pool.close().await;
}

/// sqlx migrations and typed rows: PostgreSQL 15 first (so the expectations are its answers),
/// then a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_migrations_and_typed_rows() {
    let pg = Postgres::start();
    check(pg.port).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    check(node.pg_addr.port()).await;
    node.stop().await;
}
