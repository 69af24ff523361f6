//! A real Kafka-protocol broker of a test's own: Tansu (crates.io, Apache-2.0), storing topics,
//! committed offsets and producer state in SQLite, so that a broker killed with SIGKILL comes back
//! with its data. `scripts/test.sh` installs it (`cargo install tansu`); the binary is found in
//! `TANSU`, else in `~/.cargo/bin`, else on the `PATH`. Without it these tests fail.
//!
//! Tansu creates no topic on first use: ordership creates its topics through the admin API.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// What ordership's clients are told on a Tansu broker (the setting is passed through like any
/// deployment's): Tansu answers a fetch only after its whole wait and looks at its storage for
/// each one, so the services' 10 ms wait would keep it busy polling; 50 ms costs a little
/// latency and leaves the machine's two cores to the services.
pub(crate) const CLIENT_CONFIG: &str = "fetch.wait.max.ms=50";

/// The Tansu binary: `TANSU`, else where scripts/test.sh installs it, else `~/.cargo/bin`, else
/// the `PATH`.
pub(crate) fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let installed = home.iter().flat_map(|home| {
        [
            home.join(".cargo/ordership-tools/tansu-0.6.0/tansu"),
            home.join(".cargo/bin/tansu"),
        ]
    });
    if let Some(path) = installed.into_iter().find(|path| path.exists()) {
        return path;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tansu"))
            .find(|path| path.exists())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "these tests need the Tansu broker: `cargo install tansu --version 0.6.0 --locked --debug \
             --no-default-features --features dynostore,libsql` (scripts/test.sh does), or set TANSU"
        )
    })
}

/// A running Tansu broker on a port and a data directory of its own.
pub(crate) struct Tansu {
    child: Option<Child>,
    pub(crate) addr: String,
    dir: PathBuf,
}

impl Tansu {
    /// Starts a broker with an empty data directory on a free port.
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("ordership-tansu-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("a data directory");
        let mut broker = Self {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            dir,
        };
        broker.restart().await;
        broker
    }

    /// Starts the broker again on the same port and data (after [`Self::kill`]).
    pub(crate) async fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is still running");
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // Relative to the working directory: the data directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            // Its log (warnings up) goes to ORDERSHIP_TEST_LOG_DIR, when that is set.
            .env("RUST_LOG", "warn")
            .stdout(self.log())
            .stderr(self.log())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(&self.addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "Tansu did not listen on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> Stdio {
        crate::binary::log_file(&format!("tansu-{}", self.addr.replace(':', "-")))
            .map_or_else(Stdio::null, Stdio::from)
    }

    /// Kills the broker with SIGKILL: no shutdown, its data as the last write left it.
    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("killed");
        }
    }

    /// Kills the broker and removes its data, unless logs are kept (`ORDERSHIP_TEST_LOG_DIR`):
    /// then its data stays for a look at what it held.
    pub(crate) async fn stop(mut self) {
        self.kill().await;
        if std::env::var_os("ORDERSHIP_TEST_LOG_DIR").is_some() {
            eprintln!("Tansu's data kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
