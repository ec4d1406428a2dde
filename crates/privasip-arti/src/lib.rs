#![doc = include_str!("../README.md")]

mod config;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arti_client::{DataStream, IsolationToken, StreamPrefs, TorClient};
use futures::StreamExt as _;
use privasip_tor::{
    BoxFuture, Isolation, OnionService, OnionSpec, PrivateNetwork, TorBackend, TorError, TorStream,
};
use tokio::sync::mpsc;
use tor_rtcompat::PreferredRuntime;

/// How long a new onion service may take to become reachable.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(120);

/// Where arti keeps its state and which network it joins.
#[derive(Clone, Debug)]
pub struct ArtiConfig {
    /// Persistent state: guards, and the keystore with onion service keys.
    pub state_dir: PathBuf,
    /// Directory cache (consensus, descriptors).
    pub cache_dir: PathBuf,
    /// A private network to join instead of the public Tor network.
    pub network: Option<PrivateNetwork>,
}

/// The embedded arti client.
pub struct Arti {
    client: Arc<TorClient<PreferredRuntime>>,
    shared: IsolationToken,
    groups: Mutex<HashMap<u64, IsolationToken>>,
}

impl Arti {
    /// Starts arti and waits until it has bootstrapped (a usable
    /// directory). Must run inside a multi-threaded tokio runtime.
    pub async fn start(cfg: ArtiConfig) -> Result<Arti, TorError> {
        // rustls needs a process-wide crypto provider before arti makes its
        // runtime; a second install (another Arti) is harmless.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tor_cfg = config::build(&cfg)?;
        let client = TorClient::with_runtime(
            PreferredRuntime::current()
                .map_err(|e| TorError::Backend(format!("no tokio runtime for arti: {e}")))?,
        )
        .config(tor_cfg)
        .create_bootstrapped()
        .await
        .map_err(|e| TorError::Backend(format!("arti could not bootstrap: {e}")))?;
        Ok(Arti {
            client,
            shared: IsolationToken::new(),
            groups: Mutex::new(HashMap::new()),
        })
    }

    fn prefs(&self, isolation: Isolation) -> StreamPrefs {
        let mut prefs = StreamPrefs::new();
        match isolation {
            Isolation::Fresh => {
                prefs.new_isolation_group();
            }
            Isolation::Shared => {
                prefs.set_isolation(self.shared);
            }
            Isolation::Group(g) => {
                let token = *self
                    .groups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(g)
                    .or_insert_with(IsolationToken::new);
                prefs.set_isolation(token);
            }
        }
        prefs
    }

    /// Opens a stream and returns arti's own type, for callers that want
    /// to know its circuit ([`circuit_id`]).
    pub async fn connect_stream(
        &self,
        host: &str,
        port: u16,
        isolation: Isolation,
    ) -> Result<DataStream, TorError> {
        self.client
            .connect_with_prefs((host, port), &self.prefs(isolation))
            .await
            .map_err(|e| TorError::Connect(Box::new(e)))
    }

    async fn host(&self, spec: OnionSpec) -> Result<OnionService, TorError> {
        use arti_client::config::onion_service::OnionServiceConfigBuilder;
        let nickname = spec
            .nickname
            .parse::<tor_hsservice::HsNickname>()
            .map_err(|e| TorError::Onion(format!("nickname {:?}: {e}", spec.nickname)))?;
        let mut b = OnionServiceConfigBuilder::default();
        b.nickname(nickname);
        let svc_cfg = b.build().map_err(|e| TorError::Onion(e.to_string()))?;
        let (svc, requests) = self
            .client
            .launch_onion_service(svc_cfg)
            .map_err(|e| TorError::Onion(e.to_string()))?
            .ok_or_else(|| TorError::Onion("the onion service is disabled".into()))?;
        let address = {
            use safelog::DisplayRedacted as _;
            svc.onion_address()
                .ok_or_else(|| TorError::Onion("no onion address (keystore?)".into()))?
                .display_unredacted()
                .to_string()
        };
        let (tx, incoming) = mpsc::channel::<TorStream>(64);
        let port = spec.port;
        tokio::spawn(async move {
            // The service lives while this task holds it.
            let _svc = svc;
            let mut requests = requests;
            let room = Arc::new(tokio::sync::Semaphore::new(privasip_tor::MAX_CIRCUITS));
            let mut circuits: u64 = 0;
            loop {
                // Room first: past MAX_CIRCUITS, introductions wait in
                // arti's bounded queue rather than cost us a rendezvous.
                let permit = tokio::select! {
                    () = tx.closed() => break,
                    p = room.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let rend = tokio::select! {
                    () = tx.closed() => break,
                    r = requests.next() => match r {
                        Some(r) => r,
                        None => break,
                    },
                };
                circuits += 1;
                let circuit = circuits;
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_circuit(rend, circuit, port, tx).await;
                });
            }
        });
        // arti's status() does not always say when the descriptor is out
        // (seen here: published, yet never "fully reachable"); a real
        // connection to ourselves does.
        let probe = async {
            loop {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(20),
                    self.connect_stream(&address, port, Isolation::Fresh),
                )
                .await;
                if let Ok(Ok(_)) = attempt {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, probe)
            .await
            .map_err(|_| TorError::Timeout("reaching our own onion service"))?;
        Ok(OnionService {
            address: privasip_tor::Sensitive::new(address),
            port,
            incoming,
        })
    }
}

/// One incoming circuit: its streams to `port`, each marked with the
/// circuit's number, at most [`privasip_tor::MAX_STREAMS_PER_CIRCUIT`]
/// open at once (the rest are refused).
async fn serve_circuit(
    rend: tor_hsservice::RendRequest,
    circuit: u64,
    port: u16,
    tx: mpsc::Sender<TorStream>,
) {
    let mut streams = match rend.accept().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("a rendezvous failed: {e}");
            return;
        }
    };
    let open = Arc::new(std::sync::atomic::AtomicU16::new(0));
    while let Some(req) = streams.next().await {
        let wanted = matches!(
            req.request(),
            tor_proto::stream::IncomingStreamRequest::Begin(b) if b.port() == port
        );
        let full = open.load(std::sync::atomic::Ordering::Relaxed)
            >= privasip_tor::MAX_STREAMS_PER_CIRCUIT;
        if !wanted || full {
            let _ = req.reject(tor_cell::relaycell::msg::End::new_misc()).await;
            continue;
        }
        match req
            .accept(tor_cell::relaycell::msg::Connected::new_empty())
            .await
        {
            Ok(s) => {
                let (r, w) = s.split();
                let r = Counted::new(r, open.clone());
                if tx
                    .send(TorStream::new(r, w).on_circuit(circuit))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => tracing::debug!("accepting an onion stream failed: {e}"),
        }
    }
}

/// A reader that counts itself among its circuit's open streams until
/// it is dropped.
struct Counted<R> {
    inner: R,
    open: Arc<std::sync::atomic::AtomicU16>,
}

impl<R> Counted<R> {
    fn new(inner: R, open: Arc<std::sync::atomic::AtomicU16>) -> Self {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted { inner, open }
    }
}

impl<R> Drop for Counted<R> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// A per-process identifier of the circuit a stream rides (two streams
/// with different ids use different circuits).
pub fn circuit_id(s: &DataStream) -> Option<String> {
    use tor_proto::client::stream::ClientStreamCtrl as _;
    let tunnel = s.client_stream_ctrl()?.tunnel()?;
    Some(tunnel.unique_id().to_string())
}

impl TorBackend for Arti {
    fn name(&self) -> &'static str {
        "arti"
    }

    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<TorStream, TorError>> {
        Box::pin(async move {
            let s = self.connect_stream(host, port, isolation).await?;
            let (r, w) = s.split();
            Ok(TorStream::new(r, w))
        })
    }

    fn host_onion(&self, spec: OnionSpec) -> BoxFuture<'_, Result<OnionService, TorError>> {
        Box::pin(self.host(spec))
    }
}
