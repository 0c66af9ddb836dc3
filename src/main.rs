//! The `sqlkeeper` binary: parse flags, start a node, serve until Ctrl-C.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

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

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a node (the default).
    Start(StartArgs),
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
    /// Address for Postgres clients (psql, drivers). Must be a loopback address until
    /// authentication is configured.
    #[arg(long, env = "SQLKEEPER_PG_ADDR", default_value = "127.0.0.1:5433")]
    pg_addr: String,
    /// Address for Raft traffic between nodes, advertised in the cluster membership.
    #[arg(long, env = "SQLKEEPER_RAFT_ADDR", default_value = "127.0.0.1:7433")]
    raft_addr: String,
}

fn resolve(addr: &str, what: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid {what} {addr:?}"))?
        .next()
        .with_context(|| format!("{what} {addr:?} resolves to no address"))
}

async fn start(args: StartArgs) -> anyhow::Result<()> {
    if args.node_id == 0 {
        bail!("--node-id must be a positive integer");
    }
    let pg_addr = resolve(&args.pg_addr, "--pg-addr")?;
    if !pg_addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {pg_addr}: clients connect without a password, which is only safe on a loopback address \
             (use --pg-addr 127.0.0.1:PORT; password authentication is not available yet)"
        );
    }
    let listener = TcpListener::bind(pg_addr)
        .await
        .with_context(|| format!("cannot listen for Postgres clients on {pg_addr}"))?;
    let config = sqlkeeper::ServeConfig {
        node_id: args.node_id,
        data_dir: args.data_dir.clone(),
        raft_addr: args.raft_addr.clone(),
    };
    let serving = sqlkeeper::start(config, &listener).await?;
    tracing::info!(
        node_id = args.node_id,
        pg_addr = %serving.pg_addr,
        raft_addr = %args.raft_addr,
        data_dir = %args.data_dir.display(),
        "sqlkeeper is ready"
    );
    if let Some(failure) =
        sqlkeeper::run_until(serving.node.clone(), listener, shutdown_signal()).await
    {
        bail!("node stopped after a fatal error: {failure}");
    }
    tracing::info!("stopped");
    Ok(())
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,sqlkeeper=info,sqlkeeper_raft=info,sqlkeeper_pgwire=info",
        )
    });
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = match cli.command {
        Some(Command::Start(a)) => a,
        None => cli.start,
    };
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
    match runtime.block_on(start(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
