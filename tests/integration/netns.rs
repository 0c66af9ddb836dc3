//! Three hosts (issue 13): three nodes in three network namespaces made by the test, each with
//! its own private address on a bridge (veth pairs), listening on those addresses with
//! passwords, client TLS, the cluster secret and peer TLS on; clients (psql, `sslmode=verify-full`) in a
//! fourth namespace. Writes go to every node, follower reads see them, and a true network
//! partition (packets to and from the leader dropped inside the namespaces) isolates the
//! leader while it keeps running: it stops serving linearizable reads and writes, the majority
//! elects a new leader and goes on, and after the partition heals the old leader rejoins and
//! every node has the same state. The addresses exist only inside the test's namespaces.
//!
//! It needs root (or CAP_NET_ADMIN) and iproute2; where namespaces cannot be made it says so
//! and skips.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{binary, eventually, NodeProcess};

/// The superuser's password of the test's nodes.
const PASSWORD: &str = "three hosts";

/// The cluster secret of the test's nodes.
const SECRET: &str = "c0ffee00c0ffee00c0ffee00c0ffee00-netns";

/// The private network of the test's namespaces; node N is `.N`, the clients' host `.100`.
const NET: &str = "10.213.0";

/// Runs `ip` with `args`; the output, whatever happened.
fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) not found: run scripts/test.sh, which installs it")
}

/// Runs `ip` with `args` and panics if it fails.
fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(out.status.success(), "ip {}: {out:?}", args.join(" "));
}

/// The test's namespaces: a hub holding the bridge, one per node, one for the clients. Deleted
/// (with their links) when dropped.
struct Network {
    prefix: String,
}

impl Network {
    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn node(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    fn clients(&self) -> String {
        format!("{}-c", self.prefix)
    }

    /// Makes the namespaces, or says why it cannot.
    fn make() -> Result<Network, String> {
        let net = Network {
            prefix: format!("skt{}", std::process::id()),
        };
        let out = ip(&["netns", "add", &net.hub()]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        let hub = net.hub();
        ip_ok(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip_ok(&["-n", &hub, "link", "set", "br0", "up"]);
        let hosts: Vec<(String, u32)> = (1..=3)
            .map(|id| (net.node(id), id as u32))
            .chain([(net.clients(), 100)])
            .collect();
        for (i, (ns, host)) in hosts.iter().enumerate() {
            ip_ok(&["netns", "add", ns]);
            let port = format!("p{i}");
            // The veth pair is made in the hub; one end moves into the host's namespace.
            ip_ok(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                ns,
            ]);
            ip_ok(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip_ok(&["-n", &hub, "link", "set", &port, "up"]);
            ip_ok(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{NET}.{host}/24"),
                "dev",
                "eth0",
            ]);
            ip_ok(&["-n", ns, "link", "set", "eth0", "up"]);
            ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Ok(net)
    }

    /// Drops every packet between node `id` and the other nodes, both ways, inside their
    /// namespaces (the clients' host still reaches it).
    fn isolate(&self, id: u64, on: bool) {
        let verb = if on { "add" } else { "del" };
        for other in (1..=3).filter(|o| *o != id) {
            for (ns, to) in [(self.node(id), other), (self.node(other), id)] {
                ip_ok(&[
                    "-n",
                    &ns,
                    "route",
                    verb,
                    "blackhole",
                    &format!("{NET}.{to}/32"),
                ]);
            }
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in [
            self.clients(),
            self.node(1),
            self.node(2),
            self.node(3),
            self.hub(),
        ] {
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// psql in the clients' namespace against node `id`, verifying its certificate and host name,
/// with `sql` (ON_ERROR_STOP); gives up after `within`.
fn psql(net: &Network, ca: &Path, id: u64, sql: &str, within: Duration) -> Output {
    let conninfo = format!(
        "host={NET}.{id} port=5433 user=postgres dbname=postgres sslmode=verify-full \
         sslrootcert={} connect_timeout=5",
        ca.display()
    );
    Command::new("timeout")
        .arg(within.as_secs().to_string())
        .args(["ip", "netns", "exec", &net.clients()])
        .args([
            "psql",
            "-X",
            "-q",
            "-w",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            &conninfo,
        ])
        .args(["-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// The trimmed output of a query that must succeed.
fn query(net: &Network, ca: &Path, id: u64, sql: &str) -> Result<String, String> {
    let out = psql(net, ca, id, sql, Duration::from_secs(20));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Waits until `sql` on node `id` prints `want`.
async fn wait_for(net: &Network, ca: &Path, id: u64, sql: &str, want: &str) {
    eventually(
        &format!("node {id}: {sql} = {want}"),
        Duration::from_secs(30),
        || async {
            match query(net, ca, id, sql) {
                Ok(got) if got == want => Ok(()),
                other => Err(other),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_with_tls_passwords_and_a_partitioned_leader() {
    let net = match Network::make() {
        Ok(n) => n,
        Err(why) => {
            eprintln!("SKIPPED: network namespaces cannot be made here ({why}); run as root");
            return;
        }
    };
    let files = tempfile::tempdir().unwrap();
    crate::tls::ca_and_server(files.path(), &format!("IP:{NET}.1,IP:{NET}.2,IP:{NET}.3"));
    let file = |name: &str| files.path().join(name).to_str().unwrap().to_string();
    std::fs::write(file("password"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(file("secret"), format!("{SECRET}\n")).unwrap();
    let ca = files.path().join("ca.pem");
    let members = format!("1={NET}.1:7433,2={NET}.2:7433,3={NET}.3:7433");
    let data: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = |id: u64| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.node(id)])
            .arg(binary().get_program());
        let (pg, raft) = (format!("{NET}.{id}:5433"), format!("{NET}.{id}:7433"));
        let (password, secret, cert, key, ca_file) = (
            file("password"),
            file("secret"),
            file("server.pem"),
            file("server.key"),
            file("ca.pem"),
        );
        let flags = [
            "--node-id",
            &id.to_string(),
            "--pg-addr",
            &pg,
            "--raft-addr",
            &raft,
            "--initial-cluster",
            &members,
            "--superuser-password-file",
            &password,
            "--peer-secret-file",
            &secret,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-required",
            "--peer-tls-ca",
            &ca_file,
            "--peer-tls-cert",
            &cert,
            "--peer-tls-key",
            &key,
        ]
        .map(str::to_string);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        NodeProcess::start_with(cmd, data[id as usize - 1].path(), &flags)
    };
    let mut nodes: Vec<Option<NodeProcess>> = (1..=3).map(|id| Some(start(id))).collect();

    // A cluster of three voters, reached only through the namespaces' addresses.
    wait_for(
        &net,
        &ca,
        1,
        "SELECT count(*) FROM sqlkeeper.nodes WHERE voter",
        "3",
    )
    .await;
    // Not from this host: the addresses exist only in the test's namespaces.
    let here = Command::new("psql")
        .args(["-X", "-w", "-At", "-h", &format!("{NET}.1"), "-p", "5433"])
        .args(["-c", "SELECT 1"])
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .unwrap();
    assert!(!here.status.success(), "{here:?}");

    // Writes on every node (the followers forward them), read back on every node.
    query(
        &net,
        &ca,
        1,
        "CREATE TABLE hosts (id int PRIMARY KEY, via int)",
    )
    .unwrap();
    for id in 1..=3u64 {
        query(
            &net,
            &ca,
            id,
            &format!("INSERT INTO hosts VALUES ({id}, {id})"),
        )
        .unwrap();
    }
    for id in 1..=3 {
        wait_for(&net, &ca, id, "SELECT count(*) FROM hosts", "3").await;
    }
    let leader: u64 = query(&net, &ca, 1, "SELECT leader_id FROM sqlkeeper.status")
        .unwrap()
        .parse()
        .unwrap();

    // The partition: the leader keeps running, cut off from both followers.
    net.isolate(leader, true);
    let write = psql(
        &net,
        &ca,
        leader,
        "INSERT INTO hosts VALUES (100, 0)",
        Duration::from_secs(40),
    );
    // Exit code 1 with an ERROR: the server refused it (a timeout of ours would be 124).
    assert!(
        write.status.code() == Some(1) && write.stderr.starts_with(b"ERROR:"),
        "the isolated leader did not refuse the write: {write:?}"
    );
    eprintln!(
        "isolated leader, write: {}",
        String::from_utf8_lossy(&write.stderr).trim()
    );
    let read = psql(
        &net,
        &ca,
        leader,
        "SET sqlkeeper.read_consistency = linearizable; SELECT count(*) FROM hosts",
        Duration::from_secs(40),
    );
    assert!(
        read.status.code() == Some(1) && read.stderr.starts_with(b"ERROR:"),
        "the isolated leader did not refuse a linearizable read: {read:?}"
    );
    eprintln!(
        "isolated leader, linearizable read: {}",
        String::from_utf8_lossy(&read.stderr).trim()
    );
    // The majority elects a leader of its own and takes writes.
    let majority: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = eventually(
        "a leader on the majority side",
        Duration::from_secs(30),
        || async {
            match query(
                &net,
                &ca,
                majority[0],
                "SELECT leader_id FROM sqlkeeper.status",
            ) {
                Ok(l) if l.parse::<u64>().is_ok_and(|l| majority.contains(&l)) => Ok(l),
                other => Err(other),
            }
        },
    )
    .await;
    for id in &majority {
        query(
            &net,
            &ca,
            *id,
            &format!("INSERT INTO hosts VALUES ({}, {id})", 10 + id),
        )
        .unwrap();
    }

    // Healed: the old leader rejoins as a follower, without the write it never acknowledged.
    net.isolate(leader, false);
    for id in 1..=3 {
        wait_for(
            &net,
            &ca,
            id,
            "SET sqlkeeper.read_consistency = linearizable; SELECT count(*), count(*) FILTER (WHERE id = 100) FROM hosts",
            "5|0",
        )
        .await;
        wait_for(
            &net,
            &ca,
            id,
            "SELECT leader_id FROM sqlkeeper.status",
            &new_leader,
        )
        .await;
    }
    let hashes: Vec<String> = (1..=3)
        .map(|id| {
            query(
                &net,
                &ca,
                id,
                "SET sqlkeeper.read_consistency = linearizable; SELECT sqlkeeper.state_hash()",
            )
            .unwrap()
        })
        .collect();
    assert!(
        hashes.iter().all(|h| h == &hashes[0] && !h.is_empty()),
        "{hashes:?}"
    );
    for n in nodes.iter_mut() {
        if let Some(mut p) = n.take() {
            p.kill9();
        }
    }
}
