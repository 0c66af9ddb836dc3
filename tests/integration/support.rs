//! Test fixtures: an in-process node, a node as a child process, and waiting helpers.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use sqlkeeper_raft::Node;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long a test waits for a node to start or a condition to hold before failing.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often `eventually` asks again.
const EVENTUALLY_EVERY: Duration = Duration::from_millis(50);

/// Waits until `check` gives `Some(value)` and returns it, asking every 50 ms; fails the test
/// with `what` (and the last `Err` it gave) if that takes longer than `within`. The one wait
/// loop of the integration tests: none of them sleeps a fixed time instead.
pub async fn eventually<T, E, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} (last: {last:?})"
            ),
        }
        tokio::time::sleep(EVENTUALLY_EVERY).await;
    }
}

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
        let task = tokio::spawn(sqlkeeper::run_until(
            node,
            listener,
            Default::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        TestNode {
            node: serving.node,
            pg_addr: serving.pg_addr,
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

/// A loopback port that was free a moment ago, for an address that cannot be port 0 (a Raft
/// address recorded in a membership or an `--initial-cluster`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn connect(addr: SocketAddr) -> tokio_postgres::Client {
    connect_as(addr, None).await.unwrap()
}

/// A client of `addr` as `postgres`, with `password` if given.
pub async fn connect_as(
    addr: SocketAddr,
    password: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    connect_user(addr, "postgres", password).await
}

/// A client of `addr` as `user` (database `postgres`), with `password` if given.
pub async fn connect_user(
    addr: SocketAddr,
    user: &str,
    password: Option<&str>,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .dbname("postgres");
    if let Some(p) = password {
        config.password(p);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The `sqlkeeper` binary as a child process.
pub struct NodeProcess {
    child: Child,
    pub pg_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// Every line the process wrote to stderr (its log), as it comes.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sqlkeeper"))
}

/// Runs the binary with `args` to its end (warnings only in its log): for commands that exit,
/// such as a refused start-up, `backup` and `restore`. One that is still running after
/// [`WAIT`] (a node that started where a refusal was expected) is killed and the test fails,
/// instead of waiting for it for ever.
pub fn run_binary(args: &[&str]) -> std::process::Output {
    let mut child = binary()
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "sqlkeeper {} still ran after {WAIT:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

impl NodeProcess {
    /// Starts `sqlkeeper --data-dir DIR` with `extra` flags, on port-0 loopback addresses
    /// unless `extra` gives `--pg-addr` or `--raft-addr`, and waits until it reports its
    /// addresses.
    pub fn start(data_dir: &Path, extra: &[&str]) -> NodeProcess {
        NodeProcess::start_with(binary(), data_dir, extra)
    }

    /// As [`NodeProcess::start`], from `cmd`: the binary, or a command that runs it (such as
    /// `ip netns exec NS sqlkeeper`).
    pub fn start_with(mut cmd: Command, data_dir: &Path, extra: &[&str]) -> NodeProcess {
        for flag in ["--raft-addr", "--pg-addr"] {
            if !extra.contains(&flag) {
                cmd.args([flag, "127.0.0.1:0"]);
            }
        }
        let mut child = cmd
            .args(["--data-dir", data_dir.to_str().unwrap()])
            .args(extra)
            .env_remove("RUST_LOG")
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
                    if line.contains("sqlkeeper is ready") {
                        let field = |name: &str| {
                            line.split(&format!("{name}="))
                                .nth(1)
                                .and_then(|r| r.split_whitespace().next())
                                .unwrap_or("")
                                .to_string()
                        };
                        let _ = tx.send((field("pg_addr"), field("raft_addr")));
                    }
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let (pg, raft) = match rx.recv_timeout(WAIT) {
            Ok(a) => a,
            Err(_) => panic!(
                "node did not start; stderr:\n{}",
                lines.lock().unwrap().join("\n")
            ),
        };
        NodeProcess {
            child,
            pg_addr: pg.parse().unwrap(),
            raft_addr: raft.parse().unwrap(),
            log: lines,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `n` lines of the process's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
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

/// A cluster of real `sqlkeeper` processes on port-0 listeners and temp dirs. Node 1
/// bootstraps; the others join through it. Dropping it kills every process.
pub struct TestCluster {
    /// Node `i` is `nodes[i - 1]`; `None` while it is down.
    pub nodes: Vec<Option<NodeProcess>>,
    dirs: Vec<tempfile::TempDir>,
    /// Flags each node was started with, without `--join` and `--raft-addr`.
    flags: Vec<Vec<String>>,
    /// Each node's Raft address, kept across restarts.
    raft_addrs: Vec<SocketAddr>,
    /// Log lines each node wrote in processes that were killed since.
    past_log_lines: Vec<usize>,
    /// The superuser's password, when the nodes require one ([`TestCluster::with_password`]).
    password: Option<String>,
    /// Where the password file is.
    _password_dir: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `n` nodes; `flags(id)` gives extra command-line flags for node `id`.
    pub async fn start(n: u64, flags: impl Fn(u64) -> Vec<String>) -> TestCluster {
        TestCluster::launch(n, flags, None).await
    }

    /// Starts `n` nodes that require `password` of every client (`--superuser-password-file`);
    /// the cluster's own clients ([`TestCluster::client`], status reads) give it.
    pub async fn with_password(n: u64, password: &str) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("superuser-password");
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let file = file.to_str().unwrap().to_string();
        let flags = move |_| vec!["--superuser-password-file".to_string(), file.clone()];
        TestCluster::launch(n, flags, Some((password.to_string(), dir))).await
    }

    async fn launch(
        n: u64,
        flags: impl Fn(u64) -> Vec<String>,
        password: Option<(String, tempfile::TempDir)>,
    ) -> TestCluster {
        init_tracing();
        let (password, password_dir) = password.unzip();
        let mut c = TestCluster {
            nodes: Vec::new(),
            dirs: Vec::new(),
            flags: Vec::new(),
            raft_addrs: Vec::new(),
            past_log_lines: Vec::new(),
            password,
            _password_dir: password_dir,
        };
        for id in 1..=n {
            let mut f = vec!["--node-id".to_string(), id.to_string()];
            f.extend(flags(id));
            let join = (id > 1).then(|| c.raft_addrs[0].to_string());
            c.add_process(f, join.as_deref());
        }
        c.wait_voters(n as usize).await;
        c
    }

    /// Starts one more process (new data dir) with `flags`, joining through `join` if given.
    pub fn add_process(&mut self, flags: Vec<String>, join: Option<&str>) -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = flags.clone();
        if let Some(j) = join {
            args.extend(["--join".to_string(), j.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = NodeProcess::start(dir.path(), &args);
        self.raft_addrs.push(p.raft_addr);
        self.nodes.push(Some(p));
        self.dirs.push(dir);
        self.flags.push(flags);
        self.past_log_lines.push(0);
        self.nodes.len() as u64
    }

    pub fn node(&self, id: u64) -> &NodeProcess {
        self.nodes[id as usize - 1].as_ref().expect("node is down")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: u64) -> &Path {
        self.dirs[id as usize - 1].path()
    }

    pub fn raft_addr(&self, id: u64) -> SocketAddr {
        self.raft_addrs[id as usize - 1]
    }

    pub fn live_ids(&self) -> Vec<u64> {
        (1..=self.nodes.len() as u64)
            .filter(|id| self.nodes[*id as usize - 1].is_some())
            .collect()
    }

    pub async fn client(&self, id: u64) -> tokio_postgres::Client {
        connect_as(self.node(id).pg_addr, self.password.as_deref())
            .await
            .unwrap()
    }

    /// SIGKILL node `id`.
    pub fn kill9(&mut self, id: u64) {
        if let Some(mut p) = self.nodes[id as usize - 1].take() {
            p.kill9();
            self.past_log_lines[id as usize - 1] += p.log.lock().unwrap().len();
        }
    }

    /// Log lines node `id` has written, over all its processes.
    pub fn log_lines(&self, id: u64) -> usize {
        let now = self.nodes[id as usize - 1]
            .as_ref()
            .map_or(0, |p| p.log.lock().unwrap().len());
        self.past_log_lines[id as usize - 1] + now
    }

    /// Stops node `id` for good (its process is killed; it stays down).
    pub fn stop(&mut self, id: u64) {
        self.kill9(id);
    }

    /// Restarts node `id` from its data directory on the same Raft address.
    pub fn restart(&mut self, id: u64) {
        assert!(
            self.nodes[id as usize - 1].is_none(),
            "node {id} is running"
        );
        let mut args = self.flags[id as usize - 1].clone();
        args.extend(["--raft-addr".to_string(), self.raft_addr(id).to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let p = NodeProcess::start(self.dirs[id as usize - 1].path(), &args);
        self.nodes[id as usize - 1] = Some(p);
    }

    /// One row of `sqlkeeper.status` from node `id`: (role, leader_id, applied_index).
    pub async fn status(&self, id: u64) -> Option<(String, Option<i64>, Option<i64>)> {
        let p = self.nodes[id as usize - 1].as_ref()?;
        let c = connect_as(p.pg_addr, self.password.as_deref()).await.ok()?;
        let row = c
            .query_one(
                "SELECT role, leader_id, applied_index FROM sqlkeeper.status",
                &[],
            )
            .await
            .ok()?;
        Some((row.get(0), row.get(1), row.get(2)))
    }

    /// Waits until every live node agrees on one leader, and returns it.
    pub async fn leader(&self) -> u64 {
        eventually("an agreed leader", WAIT, || async {
            let mut seen = Vec::new();
            for id in self.live_ids() {
                seen.push(self.status(id).await.and_then(|s| s.1));
            }
            match seen.first() {
                Some(Some(l))
                    if seen.iter().all(|s| s == &Some(*l))
                        && self.live_ids().contains(&(*l as u64)) =>
                {
                    Ok(*l as u64)
                }
                _ => Err(seen),
            }
        })
        .await
    }

    /// Waits until the membership seen by node `via` has `n` voters.
    pub async fn wait_voters(&self, n: usize) {
        let via = self.live_ids()[0];
        eventually(&format!("{n} voters"), WAIT, || async {
            let c = self.client(via).await;
            let voters: i64 = c
                .query_one("SELECT count(*) FROM sqlkeeper.nodes WHERE voter", &[])
                .await
                .map(|r| r.get(0))
                .unwrap_or(-1);
            if voters == n as i64 {
                Ok(())
            } else {
                Err(voters)
            }
        })
        .await
    }

    /// Waits until every live node has applied at least `index`.
    pub async fn wait_applied(&self, index: i64) {
        for id in self.live_ids() {
            eventually(&format!("node {id} applies {index}"), WAIT, || async {
                let applied = self.status(id).await.and_then(|s| s.2).unwrap_or(-1);
                if applied >= index {
                    Ok(())
                } else {
                    Err(applied)
                }
            })
            .await;
        }
    }

    /// Makes every live node catch up to the leader's current applied index, then asserts
    /// that all of them have the same state hash.
    pub async fn assert_state_hashes_equal(&self) {
        let leader = self.leader().await;
        let target = self
            .status(leader)
            .await
            .and_then(|s| s.2)
            .expect("leader status");
        self.wait_applied(target).await;
        let mut hashes = Vec::new();
        for id in self.live_ids() {
            let c = self.client(id).await;
            // Each node reads at its own applied index: a hash taken while it did not move.
            let h = eventually(&format!("node {id} at rest"), WAIT, || async {
                let st = self.status(id).await.and_then(|s| s.2).unwrap_or(-1);
                let h: String = c
                    .query_one("SELECT sqlkeeper.state_hash()", &[])
                    .await
                    .unwrap()
                    .get(0);
                let st2 = self.status(id).await.and_then(|s| s.2).unwrap_or(-1);
                if st == st2 && st >= target {
                    Ok((st, h))
                } else {
                    Err((st, st2))
                }
            })
            .await;
            hashes.push((id, h));
        }
        let first = &hashes[0].1 .1;
        for (id, (applied, h)) in &hashes {
            assert_eq!(
                h, first,
                "node {id} (applied {applied}) diverged: {hashes:?}"
            );
        }
    }
}

/// splitmix64: a test's only source of randomness, so a seed replays a run exactly.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration between `from` and `to` milliseconds.
    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// The seed of a randomized test: the environment variable `var` if set, else the clock. The
/// test prints it so that a failure can be replayed.
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// A throwaway PostgreSQL server on a free loopback port (`scripts/pg-tmp.sh`), the oracle
/// for differential tests; stopped when dropped.
pub struct Postgres {
    pub port: u16,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        // PostgreSQL runs as the postgres OS user when the tests run as root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let data = dir.path().join("pg");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Command::new(Self::script())
            .args(["start", data.to_str().unwrap(), &port.to_string()])
            .status()
            .unwrap();
        assert!(
            started.success(),
            "PostgreSQL did not start (the test command installs the postgresql package)"
        );
        Postgres {
            port,
            data,
            _dir: dir,
        }
    }

    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-tmp.sh")
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(SocketAddr::from(([127, 0, 0, 1], self.port))).await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .args(["stop", self.data.to_str().unwrap()])
            .status();
    }
}
