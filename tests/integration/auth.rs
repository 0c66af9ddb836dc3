//! Client authentication (issue 13): with `--superuser-password-file`, every node of a
//! cluster asks every client for the superuser's password over SCRAM-SHA-256, as PostgreSQL's
//! `scram-sha-256` method does. No password, a wrong one, or the right one for a role that
//! does not exist: the login fails (28P01, the connection closed after the FATAL error, the
//! node serving on); the right one: the session works, writes through a follower included.
//! Checked with tokio-postgres, psql, asyncpg, psycopg 3, psycopg2 and pgjdbc.

use std::process::Command;
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::clients::{clients_dir, python, run_client, script_command, PGJDBC_JAR};
use crate::support::{connect_as, eventually, TestCluster};

const PASSWORD: &str = "s3cret \u{2603} pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_passwords_are_required_on_every_node() {
    let cluster = TestCluster::with_password(3, PASSWORD).await;
    for id in 1..=3 {
        let addr = cluster.node(id).pg_addr;
        // The node asks for a password; a client with none cannot answer.
        let Err(e) = connect_as(addr, None).await else {
            panic!("logged in without a password");
        };
        assert!(format!("{e:?}").contains("password missing"), "{e:?}");
        for wrong in ["wrong", "", &PASSWORD[1..]] {
            let Err(e) = connect_as(addr, Some(wrong)).await else {
                panic!("logged in with a wrong password");
            };
            assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
        }
        let mut other = tokio_postgres::Config::new();
        other
            .host(addr.ip().to_string())
            .port(addr.port())
            .user("alice")
            .password(PASSWORD);
        let e = other
            .connect(tokio_postgres::NoTls)
            .await
            .err()
            .expect("alice");
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{e}");
        assert_eq!(
            e.as_db_error().map(|d| (d.severity(), d.message())),
            Some(("FATAL", "password authentication failed for user \"alice\""))
        );
    }

    // The right password: a write through a follower, read back on every node.
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster
        .client(follower)
        .await
        .batch_execute("CREATE TABLE logins (id int PRIMARY KEY, who text); INSERT INTO logins VALUES (1, 'postgres')")
        .await
        .unwrap();
    for id in 1..=3 {
        let c = cluster.client(id).await;
        eventually(
            &format!("node {id} has the row"),
            Duration::from_secs(10),
            || async {
                match c
                    .query_opt("SELECT who FROM logins WHERE id = 1", &[])
                    .await
                {
                    Ok(Some(r)) => Ok(r.get::<_, String>(0)),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }

    // psql (libpq) with PGPASSWORD, right and wrong.
    let addr = cluster.node(follower).pg_addr;
    let psql = |password: &str| {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-w", "-At", "-h", &addr.ip().to_string()])
            .args([
                "-p",
                &addr.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-c", "SELECT count(*) FROM logins"])
            .env("PGPASSWORD", password);
        cmd.output().unwrap()
    };
    let ok = psql(PASSWORD);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1");
    let refused = psql("wrong");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("FATAL:  password authentication failed for user \"postgres\""),
        "{refused:?}"
    );

    // asyncpg, psycopg 3, psycopg2, pgjdbc.
    let mut script = script_command(python(), "auth_clients.py");
    script.arg(PASSWORD);
    run_client("auth_clients.py", script, addr.to_string()).await;
    assert!(
        std::path::Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} not found: run scripts/test.sh, which installs libpostgresql-jdbc-java"
    );
    let mut java = Command::new("java");
    java.args(["-cp", PGJDBC_JAR])
        .arg(clients_dir().join("AuthJdbc.java"))
        .arg(PASSWORD);
    run_client("AuthJdbc.java", java, addr.to_string()).await;

    cluster.assert_state_hashes_equal().await;
}
