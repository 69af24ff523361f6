//! PostgreSQL restarted in the middle of a run: the services ride it out without a restart of
//! their own. The server is this test's own (`initdb` + `pg_ctl` on a free port, as the `postgres`
//! user when the test runs as root), so restarting it disturbs no other test.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use crate::binary::{start, terminate};
use crate::kafka::check_invariants;

/// A PostgreSQL server of the test's own; stopped and removed on drop.
struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// initdb and the server refuse to run as root: they then run as `postgres`.
    as_postgres: bool,
}

/// The newest installed PostgreSQL's programs (`PG_BIN` overrides).
fn postgres_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs in /usr/lib/postgresql (scripts/test.sh installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or_default()
    });
    versions.pop().expect("an installed PostgreSQL with pg_ctl")
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

impl PrivatePostgres {
    /// One of PostgreSQL's programs, to run as `postgres` when this process is root.
    fn command(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }

    /// Runs one of PostgreSQL's programs; it must succeed.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100",
            self.port,
            self.dir.display()
        )
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir =
            std::env::temp_dir().join(format!("ordership-pg-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("data directory");
        let as_postgres = is_root();
        if as_postgres {
            let status = std::process::Command::new("chown")
                .args(["postgres:postgres", &dir.display().to_string()])
                .status()
                .expect("chown runs");
            assert!(status.success());
        }
        let pg = Self {
            bin: postgres_bin(),
            dir,
            port,
            as_postgres,
        };
        let data = pg.dir.join("data").display().to_string();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let log = pg.dir.join("log").display().to_string();
        pg.run(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &pg.options(), "-w", "start"],
        );
        pg
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A fast restart: every connection is cut, the server comes back on the same port.
    fn restart(&self) {
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log,
                "-o",
                &self.options(),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = std::process::Command::new(if is_root() { "runuser" } else { "true" })
            .args(if is_root() {
                vec!["-u", "postgres", "--"]
            } else {
                vec![]
            })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_restart_mid_run_loses_nothing_and_needs_no_service_restart() {
    let pg = PrivatePostgres::start();
    let admin = PgPool::connect(&pg.url("postgres")).await.expect("admin");
    sqlx::query("CREATE DATABASE ordership")
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let url = pg.url("ordership");
    let process = start(&["all", "--database-url", &url, "--reply-timeout", "2s"]).await;

    let orders = 600;
    let load = crate::binary::load_through_a_fault(&process.addr, orders, "90s", "60s").output();
    let load = tokio::spawn(load);

    // Restart the server once a good part of the orders is in.
    let pool = PgPool::connect(&url).await.expect("pool");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.orders")
            .fetch_one(&pool)
            .await
            .unwrap_or_default();
        if placed >= 150 {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not get going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.close().await;
    let restarted = Instant::now();
    pg.restart();
    eprintln!("PostgreSQL restarted in {:?}", restarted.elapsed());

    let output = load.await.expect("load task").expect("load runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        output.status.success(),
        "every order settles: {report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("load across a PostgreSQL restart: {report}");
    let pool = PgPool::connect(&url).await.expect("pool");
    let placed: i64 = sqlx::query_scalar("SELECT count(*) FROM orders.orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        placed, orders as i64,
        "one order per key, none lost, none twice"
    );
    check_invariants(&pool).await;
    pool.close().await;
    terminate(process).await;
}
