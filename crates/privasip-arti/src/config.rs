//! arti's configuration, for the public network or a private one.

use arti_client::TorClientConfig;
use arti_client::config::TorClientConfigBuilder;
use arti_client::config::dir::FallbackDir;
use privasip_tor::TorError;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;

use crate::ArtiConfig;

fn bad(what: &str, e: impl std::fmt::Display) -> TorError {
    TorError::Backend(format!("arti configuration: {what}: {e}"))
}

pub(crate) fn build(cfg: &ArtiConfig) -> Result<TorClientConfig, TorError> {
    let mut b = TorClientConfigBuilder::from_directories(&cfg.state_dir, &cfg.cache_dir);
    if let Some(net) = &cfg.network {
        // A test network lives in temporary directories that arti's
        // permission checks would refuse.
        b.storage().permissions().dangerously_trust_everyone();
        let mut fallbacks = Vec::new();
        {
            let tor_net = b.tor_network();
            let auths = tor_net.authorities();
            for a in &net.authorities {
                let v3 =
                    RsaIdentity::from_hex(&a.v3ident).ok_or_else(|| bad("v3ident", &a.v3ident))?;
                auths.v3idents().push(v3);
                let rsa = RsaIdentity::from_hex(&a.fingerprint)
                    .ok_or_else(|| bad("fingerprint", &a.fingerprint))?;
                let ed =
                    ed25519_from_base64(&a.ed25519).ok_or_else(|| bad("ed25519", &a.ed25519))?;
                let mut fb = FallbackDir::builder();
                fb.rsa_identity(rsa).ed_identity(ed);
                fb.orports().push(a.or_addr);
                fallbacks.push(fb);
            }
            // Replace, never extend, the public fallbacks.
            tor_net.set_fallback_caches(fallbacks);
        }
        // Every relay is on 127.0.0.1: without this they would all count
        // as one family and no path could be built.
        b.path_rules()
            .ipv4_subnet_family_prefix(33)
            .ipv6_subnet_family_prefix(129);
        b.address_filter().allow_local_addrs(true);
        // C tor in a test network derives its onion period from the vote
        // interval; arti must use the same one to find descriptors.
        let minutes = i32::try_from(net.hsdir_interval_minutes()).unwrap_or(i32::MAX);
        b.override_net_params()
            .insert("hsdir_interval".to_owned(), minutes);
        // Circuit build timeouts are learned from the last 100 builds. On
        // loopback most take ~2 ms, so arti learned a timeout that the
        // builds delayed ~40 ms by tor's Nagle (BENCHMARKS.md) then missed:
        // after ~20 fresh onion connections (100 circuits) every onion
        // circuit pool refill failed. A fixed timeout, as C tor gets from
        // LearnCircuitBuildTimeout 0 in the test network's torrc.
        b.override_net_params().insert("cbtdisabled".to_owned(), 1);
        // Vanguards protect onion services from guard discovery on the
        // real network. In an 8-relay test network their restricted
        // layers leave too few paths: with them, a third of fresh onion
        // connections failed here. Off for private networks only.
        *b.vanguards() = toml::from_str::<arti_client::config::vanguards::VanguardConfigBuilder>(
            "mode = \"disabled\"",
        )
        .map_err(|e| bad("vanguards", e))?;
    }
    b.build().map_err(|e| bad("build", e))
}

/// An unpadded (or padded) standard base64 Ed25519 identity.
fn ed25519_from_base64(s: &str) -> Option<Ed25519Identity> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    Ed25519Identity::from_bytes(&bytes)
}
