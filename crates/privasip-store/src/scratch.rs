//! A throwaway PostgreSQL server in a directory of its own, from Debian's
//! `postgresql` package: for tests and benchmarks of the shared store.
//! It listens on a Unix socket in that directory only (no TCP) and
//! trusts local connections; dropping it stops the server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running scratch server.
pub struct ScratchPostgres {
    child: Child,
    dir: PathBuf,
    port: u16,
}

/// PostgreSQL's programs: the newest `/usr/lib/postgresql/N/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| no_postgres())?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(no_postgres)
}

fn no_postgres() -> String {
    "PostgreSQL is not installed: `apt-get install postgresql` (scripts/test.sh does it)".into()
}

/// Whether we run as root (`/proc/self` belongs to our effective user).
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// PostgreSQL refuses to run as root: then run it as the `postgres` user
/// the Debian package creates.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl ScratchPostgres {
    /// Creates a cluster in `dir` (which must not exist yet) and starts
    /// it on `port` (the socket's name; nothing listens on TCP).
    pub fn start(dir: &Path, port: u16) -> Result<ScratchPostgres, String> {
        let bin = bin_dir()?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = dir.join("data");
        let root = is_root();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "cannot give {} to the postgres user",
                    dir.display()
                ));
            }
        }
        let out = as_server_user(&bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "privasip",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let child = launch(&bin, dir, port)?;
        let mut me = ScratchPostgres {
            child,
            dir: dir.to_owned(),
            port,
        };
        me.wait_ready()?;
        Ok(me)
    }

    /// Stops the server (fast shutdown: every connection is cut) and
    /// starts it again on the same data, as a database restart does.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.child = launch(&bin_dir()?, &self.dir, self.port)?;
        self.wait_ready()
    }

    /// Waits until the server accepts connections.
    fn wait_ready(&mut self) -> Result<(), String> {
        let (dir, port) = (self.dir.clone(), self.port);
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                return Err(format!("postgres exited ({status}):\n{log}"));
            }
            if Instant::now() > deadline {
                return Err("postgres did not start within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The socket appears a moment before connections are accepted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while postgres::Client::connect(&self.url(), postgres::NoTls).is_err() {
            if Instant::now() > deadline {
                self.stop();
                return Err("postgres accepts no connection".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The connection URL (`[store] url`).
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=privasip dbname=postgres",
            self.dir.display(),
            self.port
        )
    }

    /// Fast shutdown (SIGINT: no waiting for clients), sent to the
    /// postmaster itself (as root our child is `runuser`, which does not
    /// pass signals on), and waits until it has exited.
    fn stop(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::trim).map(str::to_owned));
        let target = pid.unwrap_or_else(|| self.child.id().to_string());
        let _ = Command::new("kill").args(["-INT", &target]).status();
        let gone = || !Path::new(&format!("/proc/{target}")).exists();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !gone() {
            let _ = self.child.try_wait();
            std::thread::sleep(Duration::from_millis(20));
        }
        if !gone() {
            let _ = Command::new("kill").args(["-KILL", &target]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `postgres` on the cluster in `dir`, its log appended to
/// `dir/postgres.log`.
fn launch(bin: &Path, dir: &Path, port: u16) -> Result<Child, String> {
    let log_path = dir.join("postgres.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("postgres.log: {e}"))?;
    if is_root() {
        let _ = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&log_path)
            .status();
    }
    as_server_user(&bin.join("postgres"))
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("postgres: {e}"))
}

impl Drop for ScratchPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}
