//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod bench;
pub(crate) mod demo;
pub(crate) mod identity;
pub(crate) mod keygen;
pub(crate) mod parse;
pub(crate) mod proxy;
pub(crate) mod testnet;
pub(crate) mod ua;
pub(crate) mod user;

/// `--latency`: the latency a private Tor network's links pay.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum LatencyArg {
    /// Loopback's microseconds.
    None,
    /// The live Tor network's, per link (doc/latency.md).
    Live,
}

impl From<LatencyArg> for privasip_testnet::Profile {
    fn from(a: LatencyArg) -> Self {
        match a {
            LatencyArg::None => privasip_testnet::Profile::None,
            LatencyArg::Live => privasip_testnet::Profile::Live,
        }
    }
}
