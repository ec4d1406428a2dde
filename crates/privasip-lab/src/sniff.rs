//! A LAN observer for the demo: tcpdump on the loopback interface,
//! writing a pcap that `privasip audit` then reads.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running capture; stop it to flush the file.
pub struct Sniffer {
    child: Child,
}

impl Sniffer {
    /// Starts capturing what the pcap `filter` selects (e.g. `udp port
    /// 5060`) on `lo` into `file`, and returns once tcpdump listens. An error says why not (no tcpdump,
    /// no permission).
    pub fn start(file: &Path, filter: &str) -> Result<Sniffer, String> {
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-n", "--immediate-mode", "-U", "-w"])
            .arg(file)
            .args(filter.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "tcpdump is not installed (sudo apt-get install -y tcpdump)".to_owned()
                }
                _ => format!("cannot run tcpdump: {e}"),
            })?;
        let Some(stderr) = child.stderr.take() else {
            return Err("tcpdump's stderr".into());
        };
        // tcpdump says "tcpdump: listening on lo, ..." once packets will
        // be caught.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut said = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(Ok(()));
                    // Keep draining so tcpdump never blocks on stderr.
                    continue;
                }
                said.push(line);
            }
            let _ = tx.send(Err(said.join("; ")));
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Sniffer { child }),
            Ok(Err(said)) => {
                let _ = child.wait();
                Err(format!("tcpdump failed: {said}"))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("tcpdump did not start listening within 10 s".into())
            }
        }
    }

    /// Stops the capture (SIGINT, so tcpdump closes the file cleanly).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
