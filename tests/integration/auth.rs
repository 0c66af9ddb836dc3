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

/// A client of `addr` as `user` with `password`: `Ok` with its `current_user`, or the
/// SQLSTATE and message of the refusal.
async fn login(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> Result<String, (String, String)> {
    match crate::support::connect_user(addr, user, Some(password)).await {
        Ok(client) => {
            let row = client.query_one("SELECT current_user", &[]).await.unwrap();
            Ok(row.get(0))
        }
        Err(e) => Err(e
            .as_db_error()
            .map(|d| (d.code().code().to_string(), d.message().to_string()))
            .unwrap_or_else(|| ("client".into(), format!("{e:?}")))),
    }
}

/// Roles made, changed and dropped through a follower (`CREATE ROLE`/`CREATE USER`,
/// `ALTER ROLE`, `DROP ROLE`) log in with their own passwords on every node, as PostgreSQL's
/// do: `NOLOGIN` is 28000 after the password, a dropped role 28P01; `ALTER ROLE postgres
/// PASSWORD` replaces the password file's; a client's own SCRAM verifier (what psql's
/// `\password` sends) is kept. No password is anywhere in a node's files: the log and the
/// state hold verifiers only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_log_in_with_their_own_passwords_on_every_node() {
    let cluster = TestCluster::with_password(3, PASSWORD).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let admin = cluster.client(follower).await;
    let hashed = sqlkeeper_session::Verifier::of_password("hashed by the client").to_string();
    admin
        .batch_execute(&format!(
            "CREATE ROLE app LOGIN PASSWORD 'app pw 1'; \
             CREATE USER reader WITH PASSWORD 'reader pw'; \
             CREATE ROLE nologin PASSWORD 'nologin pw'; \
             CREATE ROLE grouping; \
             ALTER USER reader PASSWORD '{hashed}'"
        ))
        .await
        .unwrap();
    for (sql, sqlstate) in [
        ("CREATE ROLE app", "42710"),
        ("CREATE ROLE postgres", "42710"),
        ("CREATE ROLE pg_mine", "42939"),
        ("ALTER ROLE nobody PASSWORD 'x'", "42704"),
        ("DROP ROLE nobody", "42704"),
        ("DROP ROLE postgres", "2BP01"),
        (
            "ALTER ROLE app PASSWORD 'md5d41d8cd98f00b204e9800998ecf8427e'",
            "0A000",
        ),
        ("SELECT * FROM _sqlkeeper_roles", "42501"),
    ] {
        let e = admin.batch_execute(sql).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some(sqlstate), "{sql}: {e:?}");
    }
    admin
        .batch_execute("DROP ROLE IF EXISTS nobody")
        .await
        .unwrap();
    let roles: Vec<(String, bool)> = admin
        .query(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = |names: &[(&str, bool)]| -> Vec<(String, bool)> {
        names.iter().map(|(n, l)| (n.to_string(), *l)).collect()
    };
    assert_eq!(
        roles,
        want(&[
            ("app", true),
            ("grouping", false),
            ("nologin", false),
            ("postgres", true),
            ("reader", true),
        ])
    );
    for id in 1..=3 {
        let addr = cluster.node(id).pg_addr;
        eventually(
            &format!("app logs in on node {id}"),
            Duration::from_secs(10),
            || login(addr, "app", "app pw 1"),
        )
        .await;
        assert_eq!(
            login(addr, "reader", "hashed by the client").await,
            Ok("reader".into())
        );
        assert_eq!(
            login(addr, "app", "reader pw").await.unwrap_err().0,
            "28P01"
        );
        assert_eq!(
            login(addr, "nologin", "nologin pw").await,
            Err((
                "28000".into(),
                "role \"nologin\" is not permitted to log in".into()
            ))
        );
        assert_eq!(login(addr, "grouping", "").await.unwrap_err().0, "28P01");
    }

    // A new password, a dropped role, and the superuser's own password.
    admin
        .batch_execute(
            "ALTER ROLE app WITH PASSWORD 'app pw 2' CREATEDB; DROP ROLE reader; \
             ALTER ROLE postgres PASSWORD 'superuser pw 2'",
        )
        .await
        .unwrap();
    for id in 1..=3 {
        let addr = cluster.node(id).pg_addr;
        eventually(
            &format!("postgres's new password on node {id}"),
            Duration::from_secs(10),
            || login(addr, "postgres", "superuser pw 2"),
        )
        .await;
        assert_eq!(
            login(addr, "postgres", PASSWORD).await.unwrap_err().0,
            "28P01"
        );
        assert_eq!(login(addr, "app", "app pw 2").await, Ok("app".into()));
        assert_eq!(login(addr, "app", "app pw 1").await.unwrap_err().0, "28P01");
        assert_eq!(
            login(addr, "reader", "hashed by the client")
                .await
                .unwrap_err()
                .0,
            "28P01"
        );
    }
    // Without a password of its own, postgres has the password file's again.
    connect_as(cluster.node(follower).pg_addr, Some("superuser pw 2"))
        .await
        .unwrap()
        .batch_execute("ALTER ROLE postgres PASSWORD NULL")
        .await
        .unwrap();
    for id in 1..=3 {
        let addr = cluster.node(id).pg_addr;
        eventually(
            &format!("the file's password on node {id}"),
            Duration::from_secs(10),
            || login(addr, "postgres", PASSWORD),
        )
        .await;
    }

    cluster.assert_state_hashes_equal().await;
    // No password in any file of any node (log, state, snapshots), where the verifiers are.
    for id in 1..=3 {
        assert!(!files_containing(cluster.data_dir(id), b"SCRAM-SHA-256$4096:").is_empty());
        for password in [
            "app pw 1",
            "app pw 2",
            "reader pw",
            "nologin pw",
            "superuser pw 2",
        ] {
            let found = files_containing(cluster.data_dir(id), password.as_bytes());
            assert!(found.is_empty(), "{password:?} is in {found:?}");
        }
    }
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}
