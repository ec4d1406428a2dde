//! `privasip bench tor`: what a Tor stream costs to open and to carry one
//! SIP transaction, every way (C tor and arti, onion and exit, a fresh
//! circuit per call or a shared one), against direct TCP on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_tor::{CTor, Isolation, OnionSpec, TorBackend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Hosts the bench's onion service on `backend`, answering every stream
/// with [`serve`]; its address.
async fn serve_onion(backend: &dyn TorBackend) -> Result<String> {
    let mut svc = backend
        .host_onion(OnionSpec {
            nickname: "bench".into(),
            port: 5060,
            pow: true,
        })
        .await?;
    let address = svc.address.clone();
    tokio::spawn(async move {
        while let Some(s) = svc.incoming.recv().await {
            tokio::spawn(serve(s));
        }
    });
    Ok(address.into_inner())
}

/// Answers every SIP request on a stream with a bare 200 OK.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = s.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut resp = String::from("SIP/2.0 200 OK\r\n");
            for l in head.lines().skip(1) {
                let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                if matches!(name.as_str(), "via" | "from" | "to" | "call-id" | "cseq") {
                    resp.push_str(l);
                    resp.push_str("\r\n");
                }
            }
            resp.push_str("Content-Length: 0\r\n\r\n");
            if s.write_all(resp.as_bytes()).await.is_err() || s.flush().await.is_err() {
                return;
            }
        }
    }
}

/// One OPTIONS transaction on an open stream.
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, n: usize) -> Result<()> {
    let req = format!(
        "OPTIONS sip:bench@bench.invalid SIP/2.0\r\n\
         Via: SIP/2.0/TCP bench.invalid;branch=z9hG4bKbench{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:bench@bench.invalid>;tag=b{n}\r\n\
         To: <sip:bench@bench.invalid>\r\nCall-ID: bench-{n}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    s.flush().await?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let k = s.read(&mut chunk).await?;
        if k == 0 {
            bail!("the stream closed before the response");
        }
        got.extend_from_slice(&chunk[..k]);
    }
    if !got.starts_with(b"SIP/2.0 200") {
        bail!("unexpected response");
    }
    Ok(())
}

struct Row {
    name: String,
    /// Stream set-up plus the transaction.
    ms: Vec<f64>,
    /// Stream set-up alone.
    connect_ms: Vec<f64>,
    failed: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure<F, Fut, S>(name: &str, samples: usize, mut connect: F) -> Row
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<S>>,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ms = Vec::with_capacity(samples);
    let mut connect_ms = Vec::with_capacity(samples);
    let mut failed = 0;
    for i in 0..=samples {
        let t0 = Instant::now();
        let mut connected = t0;
        let r = tokio::time::timeout(Duration::from_secs(30), async {
            let mut s = connect().await?;
            connected = Instant::now();
            transaction(&mut s, i).await
        })
        .await;
        let dt = t0.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(Ok(())) if i > 0 => {
                ms.push(dt);
                connect_ms.push(connected.duration_since(t0).as_secs_f64() * 1000.0);
            }
            Ok(Ok(())) => {}
            _ if i > 0 => failed += 1,
            _ => {}
        }
    }
    eprintln!("bench tor: {name}: {} ok, {failed} failed", ms.len());
    ms.sort_by(f64::total_cmp);
    connect_ms.sort_by(f64::total_cmp);
    Row {
        name: name.to_owned(),
        ms,
        connect_ms,
        failed,
    }
}

/// Measures every combination `samples` times on the testnet in `dir`;
/// the table, in Markdown.
pub async fn run(dir: &std::path::Path, samples: usize) -> Result<String> {
    let net = privasip_testnet::Testnet::load(dir)?;
    let work = scratch_dir(dir)?;
    // The SIP server: on 127.0.0.2, not the relays' own address.
    let server = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .context("cannot bind 127.0.0.2")?;
    let server_addr: SocketAddr = server.local_addr()?;
    tokio::spawn(async move {
        // Exit relays write to it: a SIP server behind Tor reads the way
        // privasip's own onion targets do.
        while let Ok((s, _)) = server.accept().await {
            tokio::spawn(serve(privasip_tor::TorStream::from_tcp(s)));
        }
    });

    eprintln!("bench tor: starting onion services (C tor on client b, arti) and arti clients");
    let ctor_b = CTor::new(net.ctor("b", work.join("ctor-b")).context("client b")?);
    let ctor_a: Arc<CTor> = Arc::new(CTor::new(
        net.ctor("a", work.join("ctor-a")).context("client a")?,
    ));
    let onion_c = serve_onion(&ctor_b).await?;
    let arti_cfg = |name: &str| privasip_arti::ArtiConfig {
        state_dir: work.join(name).join("state"),
        cache_dir: work.join(name).join("cache"),
        network: Some(net.network.clone()),
    };
    let arti_b = privasip_arti::Arti::start(arti_cfg("arti-b")).await?;
    let onion_a = serve_onion(&arti_b).await?;
    let arti_a = Arc::new(privasip_arti::Arti::start(arti_cfg("arti-a")).await?);
    // A fresh onion service needs a moment before every HSDir has it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = Vec::new();
    rows.push(
        measure("direct TCP (no Tor)", samples, || async {
            let s = tokio::net::TcpStream::connect(server_addr).await?;
            s.set_nodelay(true)?;
            Ok(s)
        })
        .await,
    );
    let exit_host = server_addr.ip().to_string();
    let exit_port = server_addr.port();
    let backends: [(&str, Arc<dyn TorBackend>, &str); 2] = [
        ("C tor", ctor_a.clone(), onion_c.as_str()),
        ("arti", arti_a.clone(), onion_a.as_str()),
    ];
    for (bname, backend, onion) in backends {
        for (dest, host, port) in [
            ("exit", exit_host.as_str(), exit_port),
            ("onion", onion, 5060u16),
        ] {
            for (circ, iso) in [("reused", Isolation::Shared), ("fresh", Isolation::Fresh)] {
                let name = format!("{bname}, {dest}, {circ} circuit");
                let b = backend.clone();
                rows.push(
                    measure(&name, samples, || {
                        let b = b.clone();
                        let host = host.to_owned();
                        async move { Ok(b.connect(&host, port, iso).await?) }
                    })
                    .await,
                );
            }
        }
    }
    let mut t = format!(
        "Stream set-up + one SIP transaction (OPTIONS -> 200), {samples} samples each after one warm-up; \
         private Tor network on loopback, scheduler {}, latency {}{}; times in ms.\n\n\
         | path | median | p95 | min | max | of which stream set-up (median) | failed |\n|---|---:|---:|---:|---:|---:|---:|\n",
        net.scheduler.name(),
        net.latency.name(),
        match privasip_testnet::Plan::load(dir)? {
            Some(p) => format!(
                " ({:.1} ms one way per link on average, seed {})",
                p.mean_link_ms, p.seed
            ),
            None => String::new(),
        }
    );
    for r in &rows {
        t.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.name,
            percentile(&r.ms, 0.5),
            percentile(&r.ms, 0.95),
            r.ms.first().copied().unwrap_or(f64::NAN),
            r.ms.last().copied().unwrap_or(f64::NAN),
            percentile(&r.connect_ms, 0.5),
            r.failed
        ));
    }
    Ok(t)
}

/// A scratch directory for keys and arti state, inside the testnet's.
fn scratch_dir(dir: &std::path::Path) -> Result<PathBuf> {
    let p = dir.join("bench-tor");
    if p.exists() {
        std::fs::remove_dir_all(&p).context("cannot clear the bench directory")?;
    }
    std::fs::create_dir_all(&p).context("cannot create the bench directory")?;
    Ok(std::path::absolute(&p)?)
}
