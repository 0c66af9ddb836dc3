//! The binary's user-facing errors: one clear line, no panic, non-zero exit.

use std::net::TcpListener;
use std::process::Output;

use crate::support::{binary, run_binary as run, NodeProcess};

/// Starts a node on port-0 loopback addresses with its data in `data` and `extra` flags
/// (which are expected to stop it).
fn run_node(data: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--data-dir",
        data.to_str().unwrap(),
        "--pg-addr",
        "127.0.0.1:0",
        "--raft-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn assert_clean_failure(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {stderr}"
    );
    assert!(
        stderr.contains(needle),
        "stderr should mention {needle:?}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "no panic for a user mistake: {stderr}"
    );
    assert!(
        !stderr.contains("backtrace"),
        "no backtrace for a user mistake: {stderr}"
    );
    let error_lines = stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(error_lines, 1, "exactly one error line: {stderr}");
}

#[test]
fn busy_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--pg-addr",
        &addr,
    ]);
    assert_clean_failure(&out, "cannot listen for Postgres clients");
}

/// A non-loopback address needs both client and peer authentication; the error says which is
/// missing. With both, the node serves on it.
#[tokio::test]
async fn non_loopback_needs_client_and_peer_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "pw\n").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", "s".repeat(32))).unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "s3cret\n").unwrap();
    let (password, secret, short) = (
        password.to_str().unwrap(),
        secret.to_str().unwrap(),
        short.to_str().unwrap(),
    );
    let data = dir.path().join("data");
    let client = "client authentication (--superuser-password-file)";
    let peer = "peer authentication (--peer-secret-file or --peer-tls-ca)";
    for (flags, missing) in [
        (vec!["--pg-addr", "0.0.0.0:0"], vec![client, peer]),
        (
            vec![
                "--pg-addr",
                "0.0.0.0:0",
                "--superuser-password-file",
                password,
            ],
            vec![peer],
        ),
        (
            vec!["--raft-addr", "0.0.0.0:0", "--peer-secret-file", secret],
            vec![client],
        ),
    ] {
        let mut args = vec!["--data-dir", data.to_str().unwrap()];
        args.extend(&flags);
        let out = run(&args);
        assert_clean_failure(&out, &format!("needs {}", missing.join(" and ")));
    }
    let out = run_node(&data, &["--peer-secret-file", short]);
    assert_clean_failure(&out, "at least 32 are required");

    let node = crate::support::NodeProcess::start(
        &data,
        &[
            "--pg-addr",
            "0.0.0.0:0",
            "--raft-addr",
            "0.0.0.0:0",
            "--superuser-password-file",
            password,
            "--peer-secret-file",
            secret,
        ],
    );
    assert!(node.pg_addr.ip().is_unspecified(), "{}", node.pg_addr);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.pg_addr.port()));
    let c = crate::support::connect_as(addr, Some("pw")).await.unwrap();
    let one: i32 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[test]
fn unwritable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let under_file = file.join("data");
    let out = run(&[
        "--data-dir",
        under_file.to_str().unwrap(),
        "--pg-addr",
        "127.0.0.1:0",
    ]);
    assert_clean_failure(&out, "cannot use data directory");
}

#[test]
fn data_dir_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.json"), br#"{"node_id":2,"format":1}"#).unwrap();
    let out = run(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--pg-addr",
        "127.0.0.1:0",
        "--node-id",
        "1",
    ]);
    assert_clean_failure(&out, "belongs to node 2, not node 1");
    // the same flag through the environment
    let out = binary()
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--pg-addr",
            "127.0.0.1:0",
        ])
        .env("SQLKEEPER_NODE_ID", "3")
        .output()
        .unwrap();
    assert_clean_failure(&out, "belongs to node 2, not node 3");
}

#[test]
fn help_explains_every_flag() {
    let out = run(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--node-id",
        "--data-dir",
        "--pg-addr",
        "--raft-addr",
        "SQLKEEPER_PG_ADDR",
        "--peer-secret-file",
        "SQLKEEPER_PEER_SECRET_FILE",
        "--http-addr",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}: {text}");
    }
}

#[test]
fn unreadable_or_empty_password_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    for (file, needle) in [
        (
            dir.path().join("no-such-file"),
            "cannot read --superuser-password-file",
        ),
        (empty, "holds no password"),
    ] {
        let out = run_node(
            &data,
            &["--superuser-password-file", file.to_str().unwrap()],
        );
        assert_clean_failure(&out, needle);
    }
}

#[test]
fn unreadable_tls_files_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "no certificate here\n").unwrap();
    for (cert, key, needle) in [
        (
            dir.path().join("missing.pem"),
            not_pem.clone(),
            "cannot read certificates",
        ),
        (not_pem.clone(), not_pem.clone(), "holds no certificate"),
    ] {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let out = run_node(&data, &["--tls-cert", cert, "--tls-key", key]);
        assert_clean_failure(&out, needle);
    }
    // A key without a certificate is a usage error.
    let out = run(&["--tls-key", not_pem.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
}

/// `--config FILE`: the settings of `sqlkeeper start` from a TOML file; its environment
/// variable wins over the file, and a flag on the command line over both. An unknown key and a
/// value of the wrong kind are clear errors.
#[tokio::test]
async fn config_file_settings_yield_to_the_environment_and_to_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sqlkeeper.toml");
    // The file's pg-addr is overridden by the command line's (port 0), its node id is used.
    std::fs::write(&config, "node_id = 7\npg-addr = \"127.0.0.1:1\"\n").unwrap();
    let config = config.to_str().unwrap();
    let node_id = |env: Option<&str>, flags: &[&str], data: &str| {
        let mut cmd = binary();
        if let Some(id) = env {
            cmd.env("SQLKEEPER_NODE_ID", id);
        }
        let mut args = vec!["--config", config];
        args.extend_from_slice(flags);
        NodeProcess::start_with(cmd, &dir.path().join(data), &args)
    };
    for (env, flags, data, want) in [
        (None, &[][..], "file", 7i64),
        (Some("8"), &[][..], "env", 8),
        (Some("8"), &["--node-id", "9"][..], "flag", 9),
    ] {
        let node = node_id(env, flags, data);
        let c = crate::support::connect_as(node.pg_addr, None)
            .await
            .unwrap();
        let id: i64 = c
            .query_one("SELECT node_id FROM sqlkeeper.status", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(id, want, "{data}");
    }
    for (text, needle) in [
        ("nodes = 3\n", "unknown setting \"nodes\""),
        (
            "pg-addr = true\n",
            "pg-addr = true is not a string or integer value",
        ),
        ("node-id = [1]\n", "is not a string or integer value"),
        ("node-id = \n", "is not valid TOML"),
    ] {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let out = run_node(
            &dir.path().join("bad"),
            &["--config", bad.to_str().unwrap()],
        );
        assert_clean_failure(&out, needle);
    }
}

/// The command line of `deploy/statefulset.yaml` is one the binary runs: its three pods'
/// commands, with their names mapped to loopback ports and their secrets to files, start a
/// cluster whose nodes all become ready (`/ready`, the pods' readiness probe) and serve the
/// superuser's password. No container runtime is needed to check the flags and their values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_example_runs_a_cluster() {
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/statefulset.yaml"),
    )
    .unwrap();
    // `exec sqlkeeper start \` and its continuation lines.
    let mut lines = manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("exec sqlkeeper start"));
    let mut command = String::new();
    for line in lines.by_ref() {
        command.push_str(line.trim_end_matches('\\'));
        command.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    assert!(command.starts_with("exec sqlkeeper start "), "{command}");
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "k8s password\n").unwrap();
    let secret = dir.path().join("peer-secret");
    std::fs::write(&secret, format!("{}\n", "ab".repeat(32))).unwrap();
    let raft: Vec<u16> = (0..3).map(|_| crate::support::free_port()).collect();
    let mut nodes = Vec::new();
    for ordinal in 0..3usize {
        let mut args: Vec<String> = Vec::new();
        let pod = command.replace("$((ordinal + 1))", &(ordinal + 1).to_string());
        let words = pod.split_whitespace().map(|w| w.trim_matches('"'));
        for w in words.skip(3) {
            let mut w = w
                .replace("$self:5433", "127.0.0.1:0")
                .replace("$self:7433", &format!("127.0.0.1:{}", raft[ordinal]))
                .replace("0.0.0.0:9090", "127.0.0.1:0")
                .replace("/etc/sqlkeeper/password", password.to_str().unwrap())
                .replace("/etc/sqlkeeper/peer-secret", secret.to_str().unwrap())
                .replace(
                    "/var/lib/sqlkeeper/data",
                    dir.path().join(format!("data-{ordinal}")).to_str().unwrap(),
                );
            for (n, port) in raft.iter().enumerate() {
                w = w.replace(
                    &format!("sqlkeeper-{n}.sqlkeeper:7433"),
                    &format!("127.0.0.1:{port}"),
                );
            }
            assert!(!w.contains('$'), "an unmapped shell value in {w}");
            args.push(w);
        }
        // The data directory is the process's own (`start_with` adds it again, as given).
        let at = args.iter().position(|a| a == "--data-dir").unwrap();
        let data = std::path::PathBuf::from(args.remove(at + 1));
        args.remove(at);
        let mut cmd = binary();
        cmd.arg("start");
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(NodeProcess::start_with(cmd, &data, &extra));
    }
    for (ordinal, node) in nodes.iter().enumerate() {
        let http = crate::metrics::http_addr(node);
        crate::support::eventually(
            &format!("pod {ordinal} is ready"),
            crate::support::WAIT,
            || async move {
                match crate::metrics::get(http, "/ready") {
                    (200, _) => Ok(()),
                    other => Err(other),
                }
            },
        )
        .await;
        let client = crate::support::connect_as(node.pg_addr, Some("k8s password"))
            .await
            .unwrap();
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS pods (n int PRIMARY KEY)")
            .await
            .unwrap();
        client
            .execute("INSERT INTO pods VALUES ($1)", &[&(ordinal as i32)])
            .await
            .unwrap();
    }
}
