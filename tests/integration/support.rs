//! Test fixtures: an in-process node, a node as a child process, and waiting helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use sqlkeeper_raft::Node;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a test waits for a node to start or a condition to hold before failing.
pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A node running inside the test process, serving Postgres on a port-0 listener.
pub struct TestNode {
    pub node: Arc<Node>,
    pub pg_addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Option<String>>>,
}

impl TestNode {
    pub async fn start(data_dir: &Path) -> TestNode {
        init_tracing();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raft_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let serving = sqlkeeper::start(
            sqlkeeper::ServeConfig {
                node_id: 1,
                data_dir: data_dir.to_path_buf(),
                ..Default::default()
            },
            &listener,
            raft_listener,
        )
        .await
        .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let node = serving.node.clone();
        let task = tokio::spawn(sqlkeeper::run_until(node, listener, async move {
            let _ = stopped.await;
        }));
        TestNode {
            node: serving.node,
            pg_addr: serving.pg_addr,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(self.pg_addr).await
    }

    /// Stops serving and shuts Raft down cleanly.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            assert_eq!(t.await.unwrap(), None, "node failed");
        }
    }
}

pub async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    let conn_str = format!(
        "host={} port={} user=postgres dbname=postgres",
        addr.ip(),
        addr.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The `sqlkeeper` binary as a child process.
pub struct NodeProcess {
    child: Child,
    pub pg_addr: SocketAddr,
    /// Every stderr line the process printed so far.
    pub stderr: Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sqlkeeper"))
}

impl NodeProcess {
    /// Starts `sqlkeeper --data-dir DIR --pg-addr 127.0.0.1:0` and waits until it reports
    /// its address.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        let mut child = binary()
            .args([
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--pg-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split("pg_addr=").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr = match rx.recv_timeout(WAIT) {
            Ok(a) => a,
            Err(_) => panic!(
                "node did not start; stderr:\n{}",
                lines.lock().unwrap().join("\n")
            ),
        };
        NodeProcess {
            child,
            pg_addr: addr.parse().unwrap(),
            stderr: lines,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns true, or panics after [`WAIT`].
pub async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
