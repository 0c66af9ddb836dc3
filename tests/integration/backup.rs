//! Backup and restore (issue 13): `sqlkeeper backup` takes a consistent SQLite file from a
//! running cluster through a node's Postgres port while clients write; the file opens with the
//! `sqlite3` shell and passes `PRAGMA integrity_check`; `sqlkeeper restore` seeds a new node
//! from it, two more nodes join, and every node of the restored cluster has the state hash of
//! the backup, which is the source's state at the backup's log index, and takes writes. Any
//! SQLite database restores too; a file that is not one, or a data directory in use, is a
//! clear error.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use crate::support::{connect_as, eventually, run_binary as run, NodeProcess, TestCluster, WAIT};

const PASSWORD: &str = "backup pw";

/// `sqlkeeper backup` of the node at `pg` into `to`, off the async workers (the writers of the
/// test go on meanwhile).
async fn backup(pg: std::net::SocketAddr, to: &Path, password_file: &str) -> Output {
    let args: Vec<String> = [
        "backup",
        &pg.to_string(),
        "--to",
        to.to_str().unwrap(),
        "--password-file",
        password_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    tokio::task::spawn_blocking(move || {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.insert(1, "--pg-addr");
        run(&args)
    })
    .await
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The state hash of an SQLite file, computed as a node computes `sqlkeeper.state_hash()`.
fn file_hash(path: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    hex(&sqlkeeper_engine::state_hash(&conn).unwrap())
}

async fn hash_of(addr: std::net::SocketAddr) -> Result<String, String> {
    let c = connect_as(addr, Some(PASSWORD))
        .await
        .map_err(|e| format!("{e:?}"))?;
    c.query_one("SELECT sqlkeeper.state_hash()", &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_restores_to_the_same_state() {
    let cluster = TestCluster::with_password(3, PASSWORD).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let files = tempfile::tempdir().unwrap();
    let password_file = files.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let password_file = password_file.to_str().unwrap().to_string();
    cluster
        .client(leader)
        .await
        .batch_execute(
            "CREATE TABLE load (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), note text); \
             CREATE SEQUENCE tickets; CREATE ROLE app LOGIN PASSWORD 'app pw'",
        )
        .await
        .unwrap();

    // Writers on the leader and a follower while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicI64::new(0));
    let mut writers = Vec::new();
    for (w, id) in [leader, follower].into_iter().enumerate() {
        let c = cluster.client(id).await;
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                c.execute(
                    "INSERT INTO load (id, note) VALUES ($1, 'n' || nextval('tickets'))",
                    &[&(n * 2 + w as i64)],
                )
                .await
                .unwrap();
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    eventually("writes under way", WAIT, || async {
        match acknowledged.load(Ordering::Relaxed) {
            n if n >= 50 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let backup_file = files.path().join("cluster.db");
    let out = backup(cluster.node(follower).pg_addr, &backup_file, &password_file).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("backup at log index "), "{stdout}");
    let during = acknowledged.load(Ordering::Relaxed);
    // The writes go on after the backup.
    eventually("writes after the backup", WAIT, || async {
        match acknowledged.load(Ordering::Relaxed) {
            n if n >= during + 20 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // The sqlite3 shell opens it. Its CHECK constraints call the engine's functions, which the
    // shell lacks: it is told not to evaluate them (the bundled SQLite of `sqlkeeper backup`
    // checked them already).
    let sqlite3 = |sql: &str| {
        Command::new("sqlite3")
            .args(["-readonly", "-cmd", "PRAGMA ignore_check_constraints = ON"])
            .arg(&backup_file)
            .arg(sql)
            .output()
            .expect("sqlite3 not found: run scripts/test.sh, which installs it")
    };
    let check = sqlite3("PRAGMA integrity_check");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "{check:?}"
    );
    let rows: i64 = String::from_utf8_lossy(&sqlite3("SELECT count(*) FROM load").stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(
        rows > 0 && rows < acknowledged.load(Ordering::Relaxed),
        "{rows}"
    );
    let backup_hash = file_hash(&backup_file);

    // Quiet now: a second backup's hash is the source's own `sqlkeeper.state_hash()`, so the
    // first one's is the source's state at its log index.
    cluster.assert_state_hashes_equal().await;
    let quiet = files.path().join("quiet.db");
    let out = backup(cluster.node(leader).pg_addr, &quiet, &password_file).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        Ok(file_hash(&quiet)),
        hash_of(cluster.node(leader).pg_addr).await
    );
    assert_ne!(
        file_hash(&quiet),
        backup_hash,
        "the writes went on after the backup"
    );

    // A new cluster from it: node 1 restored, nodes 2 and 3 join and receive it.
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let restored_dir = dirs[0].path().join("data");
    let raft = format!("127.0.0.1:{}", crate::support::free_port());
    let out = run(&[
        "restore",
        "--from",
        backup_file.to_str().unwrap(),
        "--data-dir",
        restored_dir.to_str().unwrap(),
        "--raft-addr",
        &raft,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restored a sqlkeeper state at log index"),
        "{out:?}"
    );
    let password_flags = ["--superuser-password-file", password_file.as_str()];
    let mut flags = vec!["--node-id", "1", "--raft-addr", raft.as_str()];
    flags.extend(password_flags);
    let mut nodes = vec![NodeProcess::start(&restored_dir, &flags)];
    for id in ["2", "3"] {
        let mut flags = vec!["--node-id", id, "--join", raft.as_str()];
        flags.extend(password_flags);
        nodes.push(NodeProcess::start(dirs[nodes.len()].path(), &flags));
    }
    for node in &nodes {
        let addr = node.pg_addr;
        eventually("a restored node has the backup's state", WAIT, || async {
            match hash_of(addr).await {
                Ok(h) if h == backup_hash => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }
    let c = connect_as(nodes[2].pg_addr, Some(PASSWORD)).await.unwrap();
    let voters: i64 = c
        .query_one("SELECT count(*) FROM sqlkeeper.nodes WHERE voter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(voters, 3);
    // The restored cluster takes writes: its requests are numbered afresh and none is taken
    // for one the source cluster remembered.
    for node in &nodes {
        let c = connect_as(node.pg_addr, Some(PASSWORD)).await.unwrap();
        let inserted = c
            .execute(
                "INSERT INTO load (id, note) VALUES ($1, 'restored')",
                &[&-(node.pg_addr.port() as i64)],
            )
            .await
            .unwrap();
        assert_eq!(inserted, 1);
    }
    // Its roles came along: `app` logs in with its password.
    let mut app = tokio_postgres::Config::new();
    app.host("127.0.0.1")
        .port(nodes[1].pg_addr.port())
        .user("app")
        .dbname("postgres")
        .password("app pw");
    let (app, connection) = app.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let who: String = app
        .query_one("SELECT current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "app");
    eventually("every restored node has the new rows", WAIT, || async {
        let mut counts = Vec::new();
        for node in &nodes {
            let c = connect_as(node.pg_addr, Some(PASSWORD))
                .await
                .map_err(|e| format!("{e:?}"))?;
            let n: i64 = c
                .query_one("SELECT count(*) FROM load", &[])
                .await
                .map_err(|e| format!("{e:?}"))?
                .get(0);
            counts.push(n);
        }
        if counts.iter().all(|n| *n == rows + 3) {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_takes_any_sqlite_database_and_refuses_anything_else() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_string();

    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "these are not the pages you are looking for\n".repeat(100),
    )
    .unwrap();
    let out = run(&[
        "restore",
        "--from",
        not_sqlite.to_str().unwrap(),
        "--data-dir",
        &data_arg,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not an SQLite database"),
        "{out:?}"
    );
    assert!(!data.exists(), "a failed restore leaves nothing behind");

    // An application's own SQLite file.
    let app_db = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&app_db).unwrap();
        conn.execute_batch(
            "CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             INSERT INTO things (name) VALUES ('disk'), ('tape'), ('card');",
        )
        .unwrap();
    }
    let raft = format!("127.0.0.1:{}", crate::support::free_port());
    let out = run(&[
        "restore",
        "--from",
        app_db.to_str().unwrap(),
        "--data-dir",
        &data_arg,
        "--raft-addr",
        &raft,
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "restore",
        "--from",
        app_db.to_str().unwrap(),
        "--data-dir",
        &data_arg,
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not empty"),
        "{out:?}"
    );
    let node = NodeProcess::start(&data, &["--raft-addr", raft.as_str()]);
    let c = connect_as(node.pg_addr, None).await.unwrap();
    c.execute("INSERT INTO things (name) VALUES ('drum')", &[])
        .await
        .unwrap();
    let names: Vec<String> = c
        .query("SELECT name FROM things ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["disk", "tape", "card", "drum"]);
}

/// `sqlkeeper backup` over TLS, as libpq's `sslmode` says: a node started with
/// `--tls-required` refuses a backup in clear and serves one over TLS (`prefer`, the default,
/// and `require`); `verify-full` checks the certificate against `--sslrootcert` (another CA is
/// refused) and needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_reaches_a_node_that_requires_tls() {
    let dir = tempfile::tempdir().unwrap();
    crate::tls::ca(dir.path(), "other");
    crate::tls::ca_and_server(dir.path(), "DNS:localhost,IP:127.0.0.1");
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(
        data.path(),
        &[
            "--superuser-password-file",
            &file("password"),
            "--tls-cert",
            &file("server.pem"),
            "--tls-key",
            &file("server.key"),
            "--tls-required",
        ],
    );
    let pg = node.pg_addr.to_string();
    let run_backup = |to: &str, tls: &[&str]| {
        let mut args = vec![
            "backup",
            "--pg-addr",
            &pg,
            "--to",
            to,
            "--password-file",
            password_file.to_str().unwrap(),
        ];
        args.extend_from_slice(tls);
        run(&args)
    };
    let clear = run_backup(&file("clear.db"), &["--sslmode", "disable"]);
    assert!(!clear.status.success());
    assert!(
        String::from_utf8_lossy(&clear.stderr).contains("no encryption"),
        "{}",
        String::from_utf8_lossy(&clear.stderr)
    );
    assert!(!dir.path().join("clear.db").exists());
    for (name, tls) in [
        ("prefer.db", vec![]),
        ("require.db", vec!["--sslmode", "require"]),
        (
            "verified.db",
            vec!["--sslmode", "verify-full", "--sslrootcert", &file("ca.pem")],
        ),
    ] {
        let out = run_backup(&file(name), &tls);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let db = rusqlite::Connection::open(dir.path().join(name)).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "{name}");
    }
    let other = run_backup(
        &file("other.db"),
        &[
            "--sslmode",
            "verify-full",
            "--sslrootcert",
            &file("other.pem"),
        ],
    );
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let unrooted = run_backup(&file("unrooted.db"), &["--sslmode", "verify-full"]);
    assert!(!unrooted.status.success());
    assert!(
        String::from_utf8_lossy(&unrooted.stderr).contains("needs --sslrootcert"),
        "{}",
        String::from_utf8_lossy(&unrooted.stderr)
    );
}
