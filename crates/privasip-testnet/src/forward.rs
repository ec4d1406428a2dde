//! The latency forwarder: listens on every relay's advertised OR port and
//! carries each connection to the relay's real one, holding every chunk,
//! both ways, for the link's one-way delay (and a little jitter that
//! never reorders bytes). It runs as a process of its own for as long as
//! the network does (`privasip testnet up` starts it, `down` stops it).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::TestnetError;
use crate::latency::{OTHER_CLIENT, Plan, unit};

/// The forwarder's pid file in the network's directory.
pub(crate) const PID_FILE: &str = "forwarder.pid";

/// Chunks in flight per direction of one connection: with reads of up to
/// 16 KiB, at most 4 MiB held; a full queue stops reading (TCP pushes
/// back on the sender).
const IN_FLIGHT: usize = 256;
const CHUNK: usize = 16 * 1024;

/// Connections carried at once, over every relay: a private network of a
/// dozen nodes holds a few dozen; more is a runaway client, refused
/// (closed at once) rather than given memory.
const MAX_CONNECTIONS: usize = 4096;

/// Runs the forwarder of the network in `dir` until the process is
/// stopped. Errors only if it cannot start (no plan, a port taken).
pub async fn run(dir: &Path) -> Result<(), TestnetError> {
    let plan = Plan::load(dir)?
        .ok_or_else(|| TestnetError::Step(format!("{} has no latency plan", dir.display())))?;
    let plan = Arc::new(plan);
    let connections = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut listeners = Vec::new();
    for (name, ports) in &plan.relays {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, ports.advertised))
            .await
            .map_err(|e| {
                TestnetError::Step(format!(
                    "the forwarder cannot listen on {} for {name}: {e}",
                    ports.advertised
                ))
            })?;
        listeners.push((name.clone(), ports.real, listener));
    }
    std::fs::write(dir.join(PID_FILE), format!("{}\n", std::process::id()))?;
    tracing::info!(relays = listeners.len(), "forwarding with delays");
    let mut tasks = tokio::task::JoinSet::new();
    let dir: Arc<PathBuf> = Arc::new(std::path::absolute(dir)?);
    for (name, real, listener) in listeners {
        tasks.spawn(serve(
            listener,
            name,
            real,
            Shared {
                dir: dir.clone(),
                plan: plan.clone(),
                connections: connections.clone(),
                slots: slots.clone(),
            },
        ));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// What every relay's listener shares.
struct Shared {
    dir: Arc<PathBuf>,
    plan: Arc<Plan>,
    connections: Arc<AtomicU64>,
    slots: Arc<tokio::sync::Semaphore>,
}

async fn serve(listener: TcpListener, relay: String, real: u16, sh: Shared) {
    let listen = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let (inbound, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, most likely: pause, not spin.
                tracing::warn!("accepting for {relay}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = sh.slots.clone().try_acquire_owned() else {
            tracing::warn!("{MAX_CONNECTIONS} connections already; refusing one for {relay}");
            continue;
        };
        let dialler = dialler(&sh.dir, &sh.plan, from, listen);
        let Some(one_way) = sh.plan.delay_ms(&dialler, &relay) else {
            tracing::warn!("no link from {dialler} to {relay}; refusing");
            continue;
        };
        let n = sh.connections.fetch_add(1, Ordering::Relaxed);
        let jitter = sh.plan.model.jitter_mean_ms;
        let seed = sh.plan.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        tracing::info!(%dialler, %relay, one_way, from = from.port(), "link");
        tokio::spawn(async move {
            let _slot = slot;
            let to = SocketAddr::from((Ipv4Addr::LOCALHOST, real));
            let Ok(outbound) = TcpStream::connect(to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let delay = Delay {
                one_way: Duration::from_secs_f64(one_way / 1000.0),
                jitter_mean_ms: jitter,
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::join!(
                pump(ri, wo, delay, ChaCha20Rng::seed_from_u64(seed)),
                pump(ro, wi, delay, ChaCha20Rng::seed_from_u64(!seed)),
            );
        });
    }
}

/// The node whose tor process holds the other end of a connection from
/// `from` to our port `listen` ([`OTHER_CLIENT`] for any other process):
/// the socket's inode from /proc/net/tcp, then the node whose pid holds
/// it. tor binds no source address for loopback destinations, so the
/// address cannot tell; the kernel can.
fn dialler(dir: &Path, plan: &Plan, from: SocketAddr, listen: u16) -> String {
    let inode = std::fs::read_to_string("/proc/net/tcp")
        .ok()
        .and_then(|tcp| {
            let local = format!("0100007F:{:04X}", from.port());
            let remote = format!("0100007F:{listen:04X}");
            tcp.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&local.as_str()) && f.get(2) == Some(&remote.as_str()))
                    .then(|| f.get(9).map(|s| format!("socket:[{s}]")))
                    .flatten()
            })
        });
    let Some(inode) = inode else {
        return OTHER_CLIENT.to_owned();
    };
    plan.diallers
        .iter()
        .find(|node| {
            crate::process::live_pid(&crate::process::nodes_dir(dir).join(node)).is_some_and(
                |pid| {
                    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                        fds.filter_map(Result::ok).any(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|l| l.as_os_str() == inode.as_str())
                        })
                    })
                },
            )
        })
        .cloned()
        .unwrap_or_else(|| OTHER_CLIENT.to_owned())
}

#[derive(Clone, Copy)]
struct Delay {
    one_way: Duration,
    jitter_mean_ms: f64,
}

/// Carries one direction: each chunk leaves `one_way` plus jitter after
/// it arrived, never before the chunk ahead of it.
async fn pump(mut rd: OwnedReadHalf, mut wr: OwnedWriteHalf, delay: Delay, mut rng: ChaCha20Rng) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // tor leaves Nagle on: its next write waits for our ACK of
            // this one, which Linux would otherwise delay by up to 40 ms.
            quickack(&rd);
            let jitter = -delay.jitter_mean_ms * unit(&mut rng).ln();
            let due = Instant::now() + delay.one_way + Duration::from_secs_f64(jitter / 1000.0);
            let Some(chunk) = buf.get(..n) else { break };
            if tx.send((due, chunk.to_vec())).await.is_err() {
                break;
            }
        }
    };
    let write = async move {
        let mut last = Instant::now();
        while let Some((due, chunk)) = rx.recv().await {
            let due = due.max(last);
            tokio::time::sleep_until(due).await;
            last = due;
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    tokio::join!(read, write);
}

#[cfg(target_os = "linux")]
fn quickack(half: &OwnedReadHalf) {
    let _ = socket2::SockRef::from(half.as_ref()).set_tcp_quickack(true);
}

#[cfg(not(target_os = "linux"))]
fn quickack(_: &OwnedReadHalf) {}
