//! The `sqlkeeper` binary: parse flags, start a node, serve until Ctrl-C.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

mod backup;
mod config;
mod http;

/// A replicated metadata store that speaks PostgreSQL.
///
/// With no subcommand, `sqlkeeper` runs `sqlkeeper start` with its defaults: a single node
/// serving Postgres clients on 127.0.0.1:5433 with its data in ./sqlkeeper-data.
#[derive(Parser, Debug)]
#[command(name = "sqlkeeper", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    start: StartArgs,
}

// Parsed once at start; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Start a node (the default).
    Start(StartArgs),
    /// Start a local cluster of several nodes in one command (stops on Ctrl-C).
    Demo(DemoArgs),
    /// Write a consistent SQLite copy of a running cluster's data to a file.
    Backup(backup::BackupArgs),
    /// Seed a new node's data directory from a backup or any SQLite file.
    Restore(backup::RestoreArgs),
}

#[derive(Args, Debug, Clone)]
struct StartArgs {
    /// This node's id: a positive integer, unique in the cluster and never reused.
    #[arg(long, env = "SQLKEEPER_NODE_ID", default_value_t = 1)]
    node_id: u64,
    /// Directory for the Raft log, the SQLite state and snapshots. Created if missing; a
    /// directory written by another node id is refused.
    #[arg(long, env = "SQLKEEPER_DATA_DIR", default_value = "./sqlkeeper-data")]
    data_dir: PathBuf,
    /// Address for Postgres clients (psql, drivers). A non-loopback address needs
    /// --superuser-password-file and --peer-secret-file.
    #[arg(long, env = "SQLKEEPER_PG_ADDR", default_value = "127.0.0.1:5433")]
    pg_addr: String,
    /// File holding the password of the superuser `postgres` (its first line). With it,
    /// every client must log in as `postgres` with that password over SCRAM-SHA-256
    /// (28P01 otherwise); without it, clients are trusted, which only loopback allows.
    #[arg(long, env = "SQLKEEPER_SUPERUSER_PASSWORD_FILE")]
    superuser_password_file: Option<PathBuf>,
    /// Certificate chain (PEM) for TLS with clients; with --tls-key, a client that asks for
    /// TLS (psql's sslmode=require, the default prefer) gets it.
    #[arg(long, env = "SQLKEEPER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "SQLKEEPER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS (FATAL 28000), as PostgreSQL's hostssl lines do.
    #[arg(long, env = "SQLKEEPER_TLS_REQUIRED", requires = "tls_cert")]
    tls_required: bool,
    /// Address for Raft traffic between nodes [default: 127.0.0.1:7433, or this node's entry
    /// in --initial-cluster]. A non-loopback address needs --peer-secret-file and
    /// --superuser-password-file.
    #[arg(long, env = "SQLKEEPER_RAFT_ADDR")]
    raft_addr: Option<String>,
    /// File holding the cluster secret (its first line, at least 32 bytes; e.g. the output of
    /// `openssl rand -hex 32`). Every member needs the same one: peers prove it to each other
    /// by challenge–response before any Raft, forwarded or membership request is read, and a
    /// node refuses peers that do not.
    #[arg(long, env = "SQLKEEPER_PEER_SECRET_FILE")]
    peer_secret_file: Option<PathBuf>,
    /// The cluster CA's certificate (PEM): with --peer-tls-cert and --peer-tls-key, every
    /// connection between nodes is mutual TLS, and a node accepts only peers whose certificate
    /// the CA signed (each node's certificate must name the address others dial it at).
    #[arg(long, env = "SQLKEEPER_PEER_TLS_CA", requires_all = ["peer_tls_cert", "peer_tls_key"])]
    peer_tls_ca: Option<PathBuf>,
    /// This node's certificate chain (PEM), signed by --peer-tls-ca; used both ways.
    #[arg(long, env = "SQLKEEPER_PEER_TLS_CERT", requires_all = ["peer_tls_ca", "peer_tls_key"])]
    peer_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --peer-tls-cert.
    #[arg(long, env = "SQLKEEPER_PEER_TLS_KEY", requires_all = ["peer_tls_ca", "peer_tls_cert"])]
    peer_tls_key: Option<PathBuf>,
    /// A TOML file with any of these flags by name (`node-id = 2`, `pg-addr = "…"`,
    /// `tls-required = true`). A flag on the command line wins over its environment variable,
    /// which wins over the file, which wins over the default.
    #[arg(long, env = "SQLKEEPER_CONFIG")]
    config: Option<PathBuf>,
    /// Address for the operations endpoint: /metrics (Prometheus), /health and /ready.
    /// Without it, none is served.
    #[arg(long, env = "SQLKEEPER_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Start a static cluster: every member's id and Raft address, e.g.
    /// `1=127.0.0.1:7433,2=127.0.0.1:7434,3=127.0.0.1:7435`. Give every member the same value;
    /// the member with the smallest id initializes the cluster, once.
    #[arg(long, env = "SQLKEEPER_INITIAL_CLUSTER", conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Join a running cluster through any member's Raft address: this node is added as a
    /// learner, then promoted to voter once it has caught up.
    #[arg(long, env = "SQLKEEPER_JOIN")]
    join: Option<String>,
    /// Start without bootstrapping a cluster and wait to be added by a member
    /// (`SELECT sqlkeeper.add_node(ID, 'RAFT_ADDR')` or `sqlkeeper.add_learner`).
    #[arg(long, env = "SQLKEEPER_NO_BOOTSTRAP", conflicts_with_all = ["join", "initial_cluster"])]
    no_bootstrap: bool,
    /// Move leadership back to this node id whenever it is a healthy, caught-up voter. Give
    /// every member the same value.
    #[arg(long, env = "SQLKEEPER_PREFERRED_LEADER")]
    preferred_leader: Option<u64>,
    /// Test hook: build a snapshot every N entries (and keep no log behind it), so tests can
    /// make a node catch up by snapshot.
    #[arg(long, env = "SQLKEEPER_DEBUG_SNAPSHOT_EVERY", hide = true)]
    debug_snapshot_every: Option<u64>,
    /// Test hook: delay every applied batch by this many milliseconds (a slow replica).
    #[arg(
        long,
        env = "SQLKEEPER_DEBUG_APPLY_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    debug_apply_delay_ms: u64,
}

#[derive(Args, Debug, Clone)]
struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory holding one data directory per node.
    #[arg(long, default_value = "./sqlkeeper-demo")]
    data_dir: PathBuf,
    /// Postgres port of node 1; node N listens on this port + N - 1.
    #[arg(long, default_value_t = 5433)]
    pg_port: u16,
    /// Raft port of node 1; node N listens on this port + N - 1.
    #[arg(long, default_value_t = 7433)]
    raft_port: u16,
}

fn resolve(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid {what} {addr:?}"))?
        .next()
        .with_context(|| format!("{what} {addr:?} resolves to no address"))
}

fn parse_initial_cluster(v: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("--initial-cluster entry {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().ok().filter(|n| *n > 0).with_context(|| {
            format!("--initial-cluster entry {part:?}: the id must be a positive integer")
        })?;
        if members.insert(id, addr.trim().to_string()).is_some() {
            bail!("--initial-cluster lists node {id} twice");
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(members)
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    if args.node_id == 0 {
        bail!("--node-id must be a positive integer");
    }
    let initial_cluster = args
        .initial_cluster
        .as_deref()
        .map(parse_initial_cluster)
        .transpose()?;
    let raft_addr = match (&args.raft_addr, &initial_cluster) {
        (Some(a), _) => a.clone(),
        (None, Some(m)) => m.get(&args.node_id).cloned().with_context(|| {
            format!(
                "--initial-cluster does not list this node (id {})",
                args.node_id
            )
        })?,
        (None, None) => "127.0.0.1:7433".to_string(),
    };
    let pg_addr = resolve(&args.pg_addr, "--pg-addr")?;
    let raft_sock = resolve(&raft_addr, "--raft-addr")?;
    for (addr, flag) in [(pg_addr, "--pg-addr"), (raft_sock, "--raft-addr")] {
        let missing: Vec<&str> = [
            (
                args.superuser_password_file.is_none(),
                "client authentication (--superuser-password-file)",
            ),
            (
                args.peer_secret_file.is_none() && args.peer_tls_ca.is_none(),
                "peer authentication (--peer-secret-file or --peer-tls-ca)",
            ),
        ]
        .into_iter()
        .filter_map(|(absent, what)| absent.then_some(what))
        .collect();
        if !addr.ip().is_loopback() && !missing.is_empty() {
            bail!(
                "refusing to listen on {addr} ({flag}): a non-loopback address needs {}; \
                 without them, use a loopback address",
                missing.join(" and ")
            );
        }
    }
    let auth = args
        .superuser_password_file
        .as_deref()
        .map(|f| first_line(f, "--superuser-password-file", "password"))
        .transpose()?
        .map(|p| Arc::new(sqlkeeper_pgwire::ClientAuth::superuser_password(&p)));
    let peer_auth = match args.peer_secret_file.as_deref() {
        Some(f) => {
            let secret = first_line(f, "--peer-secret-file", "secret")?;
            sqlkeeper_raft::PeerAuth::with_secret(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("--peer-secret-file {}: {e}", f.display()))?
        }
        None => sqlkeeper_raft::PeerAuth::none(),
    };
    let peer_auth = match (&args.peer_tls_ca, &args.peer_tls_cert, &args.peer_tls_key) {
        (Some(ca), Some(cert), Some(key)) => peer_auth.with_tls(
            sqlkeeper_raft::PeerTls::from_pem_files(ca, cert, key).map_err(|e| {
                anyhow::anyhow!("--peer-tls-ca/--peer-tls-cert/--peer-tls-key: {e}")
            })?,
        ),
        _ => peer_auth,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            sqlkeeper_pgwire::Tls::from_pem_files(cert, key, args.tls_required)
                .map_err(|e| anyhow::anyhow!("--tls-cert/--tls-key: {e}"))?,
        ),
        _ => None,
    };
    let security = sqlkeeper_pgwire::Security { auth, tls };
    let listener = TcpListener::bind(pg_addr)
        .await
        .with_context(|| format!("cannot listen for Postgres clients on {pg_addr}"))?;
    let raft_listener = TcpListener::bind(raft_sock)
        .await
        .with_context(|| format!("cannot listen for Raft traffic on {raft_sock}"))?;
    let config = sqlkeeper::ServeConfig {
        node_id: args.node_id,
        data_dir: args.data_dir.clone(),
        initial_cluster,
        join: args.join.clone(),
        no_bootstrap: args.no_bootstrap,
        preferred_leader: args.preferred_leader,
        apply_delay: Duration::from_millis(args.debug_apply_delay_ms),
        snapshot_every: args.debug_snapshot_every,
        peer_auth,
    };
    let metrics = args
        .http_addr
        .as_deref()
        .map(|a| Ok::<_, anyhow::Error>((resolve(a, "--http-addr")?, http::install_recorder()?)))
        .transpose()?;
    let serving = sqlkeeper::start(config, &listener, raft_listener).await?;
    let http_addr = match metrics {
        Some((addr, handle)) => http::serve(addr, serving.node.clone(), handle)?.to_string(),
        None => "none".to_string(),
    };
    tracing::info!(
        node_id = args.node_id,
        pg_addr = %serving.pg_addr,
        raft_addr = %serving.raft_addr,
        http_addr = %http_addr,
        data_dir = %args.data_dir.display(),
        "sqlkeeper is ready"
    );
    if let Some(failure) =
        sqlkeeper::run_until(serving.node.clone(), listener, security, shutdown_signal()).await
    {
        bail!("node stopped after a fatal error: {failure}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// A password or secret from `path` (given by `flag`): its first line, without the line end.
/// An empty one, or a file that cannot be read, stops the start-up.
pub(crate) fn first_line(path: &std::path::Path, flag: &str, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {flag} {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    if line.is_empty() {
        bail!(
            "{flag} {} holds no {what} (its first line is empty)",
            path.display()
        );
    }
    Ok(line)
}

/// Runs `nodes` child processes of this binary as one static cluster on loopback.
async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > 9 {
        bail!("--nodes must be between 1 and 9");
    }
    let exe = std::env::current_exe().context("find the sqlkeeper binary")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot use data directory {}", args.data_dir.display()))?;
    let port = |base: u16, i: u64| base as u64 + i - 1;
    let cluster: Vec<String> = (1..=args.nodes)
        .map(|i| format!("{i}=127.0.0.1:{}", port(args.raft_port, i)))
        .collect();
    let cluster = cluster.join(",");
    let mut children = Vec::new();
    for i in 1..=args.nodes {
        let dir = args.data_dir.join(format!("node-{i}"));
        let log_path = args.data_dir.join(format!("node-{i}.log"));
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let child = std::process::Command::new(&exe)
            .arg("start")
            .args(["--node-id", &i.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(["--pg-addr", &format!("127.0.0.1:{}", port(args.pg_port, i))])
            .args(["--initial-cluster", &cluster])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start node {i}"))?;
        children.push(child);
    }
    println!(
        "sqlkeeper demo: {} nodes, data in {}",
        args.nodes,
        args.data_dir.display()
    );
    for i in 1..=args.nodes {
        println!(
            "  node {i}: psql -h 127.0.0.1 -p {} -U postgres    (log: {})",
            port(args.pg_port, i),
            args.data_dir.join(format!("node-{i}.log")).display()
        );
    }
    println!(
        "Any node accepts reads and writes. See the cluster with: SELECT * FROM sqlkeeper.nodes;"
    );
    println!("Press Ctrl-C to stop all nodes.");
    let mut exited = None;
    // One signal future for the whole loop: a new one per turn would miss a Ctrl-C that
    // arrives between two turns.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                for (i, c) in children.iter_mut().enumerate() {
                    if let Ok(Some(status)) = c.try_wait() {
                        exited = Some((i + 1, status));
                    }
                }
                if exited.is_some() {
                    break;
                }
            }
        }
    }
    for c in &mut children {
        // SIGTERM: each node stops cleanly.
        let _ = std::process::Command::new("kill")
            .arg(c.id().to_string())
            .status();
    }
    for c in &mut children {
        let _ = c.wait();
    }
    match exited {
        Some((i, status)) => bail!(
            "node {i} exited ({status}); see its log in {}",
            args.data_dir.display()
        ),
        None => {
            println!("stopped");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// What a node logs unless `RUST_LOG` says otherwise: its own information and every warning,
/// except openraft's warning for each failed heartbeat (ten a second while a peer is down):
/// the node logs a peer going down and coming back itself, at most every 30 s in between
/// (`docs/reliability.md`).
const DEFAULT_LOG_FILTER: &str =
    "warn,openraft::core::heartbeat::worker=error,sqlkeeper=info,sqlkeeper_raft=info,sqlkeeper_pgwire=info,sqlkeeper_session=info";

fn main() -> ExitCode {
    let args = match config::with_config_file::<Cli>(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Start(a)) => runtime.block_on(start(a)),
        Some(Command::Demo(d)) => runtime.block_on(demo(d)),
        Some(Command::Backup(b)) => runtime.block_on(backup::backup(b)),
        Some(Command::Restore(r)) => runtime.block_on(backup::restore(r)),
        None => runtime.block_on(start(cli.start)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
