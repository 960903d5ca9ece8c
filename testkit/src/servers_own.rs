//! Servers a test owns and may restart: a broker (tansu), a Redis, and the restartable
//! PostgreSQL cluster the test command provisions. Outage tests stop and start these; the
//! shared servers other tests use are never touched.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, in_ci, scratch_dir};

/// A server process this test started, restartable with the same storage.
pub struct OwnServer {
    command: Vec<String>,
    child: Option<Child>,
    pub port: u16,
    /// Its storage (removed on drop).
    pub dir: PathBuf,
    log: PathBuf,
}

impl OwnServer {
    fn start(what: &str, command: Vec<String>, port: u16, dir: PathBuf) -> Option<Self> {
        let log = dir.join("server.log");
        let mut server = Self { command, child: None, port, dir, log };
        if let Err(e) = server.spawn() {
            if in_ci() {
                panic!("{what} is required in CI: {e}");
            }
            eprintln!("skipping: cannot start {what}: {e}");
            return None;
        }
        Some(server)
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(std::io::Error::other(format!("{} did not listen on {}", self.command[0], self.port)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the server at once (SIGKILL): connections drop, nothing is flushed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().expect("the server starts again");
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what its server said.
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- last lines of {} ---\n{}", self.command[0], lines[lines.len().saturating_sub(60)..].join("\n"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Kafka-protocol broker of this test's own (tansu, `SHOP_TANSU_BIN`), with durable SQLite
/// storage, so a restart keeps its topics and messages.
pub fn own_broker() -> Option<OwnServer> {
    let bin = std::env::var("SHOP_TANSU_BIN").unwrap_or_else(|_| "tansu".to_owned());
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let command = vec![
        bin,
        "broker".into(),
        "--listener-url".into(),
        url.clone(),
        "--advertised-listener-url".into(),
        url,
        "--storage-engine".into(),
        "sqlite://tansu.db".into(),
    ];
    OwnServer::start("a broker of the test's own (SHOP_TANSU_BIN)", command, port, scratch_dir())
}

/// A Redis of this test's own that keeps nothing on disk: a restart comes back empty.
pub fn own_redis() -> Option<OwnServer> {
    let port = free_port();
    let command = ["redis-server", "--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"]
        .map(str::to_owned)
        .to_vec();
    OwnServer::start("redis-server", command, port, scratch_dir())
}

/// The PostgreSQL cluster that outage tests may stop and start (`SHOP_TEST_PG_OUTAGE_URL`,
/// `SHOP_TEST_PG_OUTAGE_CLUSTER` = `<version> <name>` for `pg_ctlcluster`; the test command
/// provisions it). `None` outside CI when it is not configured.
pub struct RestartablePostgres {
    pub admin_url: String,
    cluster: Vec<String>,
}

impl RestartablePostgres {
    pub fn configured() -> Option<Self> {
        match (std::env::var("SHOP_TEST_PG_OUTAGE_URL"), std::env::var("SHOP_TEST_PG_OUTAGE_CLUSTER")) {
            (Ok(admin_url), Ok(cluster)) => Some(Self { admin_url, cluster: cluster.split_whitespace().map(str::to_owned).collect() }),
            _ if in_ci() => {
                panic!("SHOP_TEST_PG_OUTAGE_URL and SHOP_TEST_PG_OUTAGE_CLUSTER are required in CI (the test command sets them)")
            }
            _ => {
                eprintln!("skipping: no restartable PostgreSQL cluster (SHOP_TEST_PG_OUTAGE_URL, SHOP_TEST_PG_OUTAGE_CLUSTER)");
                None
            }
        }
    }

    fn ctl(&self, action: &str) {
        let status = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", "--mode", "fast"])
            .args(&self.cluster)
            .arg(action)
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "pg_ctlcluster {} {action}", self.cluster.join(" "));
    }

    /// Stops the server (fast: connections are ended).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&self) {
        let status = Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .args(&self.cluster)
            .arg("start")
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "pg_ctlcluster {} start", self.cluster.join(" "));
    }
}
