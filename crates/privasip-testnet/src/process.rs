//! Tor processes by pid file: which are alive, and stopping them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::TestnetError;

/// One node's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// The node's name.
    pub name: String,
    /// Its pid, if its pid file names a live process of this network.
    pub pid: Option<u32>,
}

pub(crate) fn nodes_dir(dir: &Path) -> PathBuf {
    dir.join("nodes")
}

/// The live tor process of a node, if any: a process whose command line
/// names the node's torrc. The pid file is tried first; `/proc` is scanned
/// when it is missing, so a tor that hung before writing it is still found
/// (and stopped by `down`), and a reused pid is never taken for ours.
pub(crate) fn live_pid(node_dir: &Path) -> Option<u32> {
    let torrc = node_dir.join("torrc");
    let runs_torrc = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            cmdline
                .split(|&b| b == 0)
                .any(|arg| arg == torrc.as_os_str().as_encoded_bytes())
        })
    };
    let from_file = std::fs::read_to_string(node_dir.join("tor.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .filter(|&pid| runs_torrc(pid));
    from_file.or_else(|| {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .find(|&pid| runs_torrc(pid))
    })
}

/// Every node under `DIR/nodes` and whether it runs.
pub fn status(dir: &Path) -> Result<Vec<NodeState>, TestnetError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(nodes_dir(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        out.push(NodeState {
            name: e.file_name().to_string_lossy().into_owned(),
            pid: live_pid(&e.path()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Kills node `name` of the network in `dir` with SIGKILL, as a machine
/// dying would (no goodbye to its circuits' other ends), and waits until
/// it is gone. False if it was not running. For fault tests; see
/// [`crate::restart`].
pub fn kill(dir: &Path, name: &str) -> Result<bool, TestnetError> {
    if !status(dir)?.iter().any(|n| n.name == name) {
        return Err(TestnetError::Step(format!(
            "no node {name:?} in this network"
        )));
    }
    let node = nodes_dir(dir).join(name);
    let Some(pid) = live_pid(&node) else {
        return Ok(false);
    };
    signal(pid, "-KILL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while live_pid(&node).is_some() {
        if Instant::now() > deadline {
            return Err(TestnetError::Timeout(format!("for {name} to die")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Stops every tor process of the network in `dir` (SIGTERM, then SIGKILL
/// after 5 s) and returns how many were running.
pub fn down(dir: &Path) -> Result<usize, TestnetError> {
    let running: Vec<(String, u32, PathBuf)> = status(dir)?
        .into_iter()
        .filter_map(|n| {
            let path = nodes_dir(dir).join(&n.name);
            n.pid.map(|p| (n.name, p, path))
        })
        .collect();
    for (_, pid, _) in &running {
        signal(*pid, "-TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && running.iter().any(|(_, _, d)| live_pid(d).is_some()) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (name, _, d) in &running {
        if let Some(pid) = live_pid(d) {
            tracing::warn!(node = %name, "tor did not stop on SIGTERM; killing it");
            signal(pid, "-KILL");
        }
    }
    let forwarder = forwarder_pid(dir);
    if let Some(pid) = forwarder {
        signal(pid, "-KILL");
    }
    let _ = std::fs::remove_file(dir.join(crate::forward::PID_FILE));
    let _ = std::fs::remove_file(dir.join(crate::STATE_FILE));
    crate::quickack::restore(dir);
    Ok(running.len() + usize::from(forwarder.is_some()))
}

/// The latency forwarder's pid, if it runs: a live process whose command
/// line is `... testnet forward --dir DIR` for this directory.
pub fn forwarder_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(crate::forward::PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let dir = std::path::absolute(dir).ok()?;
    let ours = args
        .windows(2)
        .any(|w| w == [b"testnet".as_slice(), b"forward"])
        && args.contains(&dir.as_os_str().as_encoded_bytes());
    ours.then_some(pid)
}
