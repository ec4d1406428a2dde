//! `privasip bench`: measurements that need the whole system.

use std::path::PathBuf;

use super::LatencyArg;
use anyhow::{Context, Result, bail};

/// Measure privasip on a private Tor network.
///
/// `paper`: the paper's experiment, reproduced (see its --help).
///
/// `tor`: the time to open a stream and complete one SIP transaction
/// (OPTIONS -> 200) through Tor, for every combination of backend (arti,
/// C tor), destination (an onion service, or a server reached through an
/// exit) and circuit (fresh: a new circuit per stream, as a new circuit per
/// call; reused: streams share one circuit), against direct TCP on
/// loopback. Needs a running `privasip testnet`.
///
/// Example:
///   privasip testnet up --dir /tmp/net
///   privasip bench tor --testnet /tmp/net --samples 30
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The paper's experiment (§5.2): sequential calls Alice -> Bob over
    /// Tor, INVITE->180 at Alice, plain SIP and PrivaSIP-2 interleaved, a
    /// new circuit per call; frequency tables, histograms (SVG, PNG), raw
    /// data (CSV, JSON) and summary.json into --out.
    Paper {
        /// Calls per scenario.
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// PrivaSIP scheme: hpke (default), ecies or rsa (the paper's).
        #[arg(long, default_value = "hpke", value_parser = ["hpke", "ecies", "rsa"])]
        scheme: String,
        /// Also run both scenarios over one shared circuit (A-B).
        #[arg(long)]
        reuse: bool,
        /// Where the results go.
        #[arg(long, value_name = "DIR", default_value = "runs/paper")]
        out: PathBuf,
        /// First port of the private network's range.
        #[arg(long, default_value_t = 18500, value_name = "BASE")]
        base_port: u16,
        /// Start the network with quick ACKs on the loopback routes (see
        /// `privasip testnet up --quickack`; root only).
        #[arg(long)]
        quickack: bool,
        /// The latency the network's links pay: none, or live (the live
        /// Tor network's, per link; see `privasip testnet up --help`).
        #[arg(long, value_enum, default_value_t = LatencyArg::None)]
        latency: LatencyArg,
        /// The seed the links' delays are drawn from.
        #[arg(long, default_value_t = 1, value_name = "N")]
        seed: u64,
    },
    /// Stream set-up plus one SIP transaction through Tor, every way.
    Tor {
        /// The `privasip testnet` directory.
        #[arg(long, value_name = "DIR")]
        testnet: PathBuf,
        /// Measurements per combination (after one warm-up).
        #[arg(long, default_value_t = 20)]
        samples: usize,
        /// Also write the table (Markdown) to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// The latency the network is expected to have (none or live): the
        /// profile belongs to the network, set by `testnet up --latency`;
        /// this only refuses to measure a network that has another one.
        #[arg(long, value_enum)]
        latency: Option<LatencyArg>,
    },
}

pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.what {
        What::Paper {
            calls,
            scheme,
            reuse,
            out,
            base_port,
            quickack,
            latency,
            seed,
        } => privasip_lab::paper::run(&privasip_lab::paper::PaperArgs {
            calls: *calls,
            scheme: scheme.clone(),
            reuse: *reuse,
            out: out.clone(),
            base_port: *base_port,
            quickack: *quickack,
            latency: (*latency).into(),
            seed: *seed,
        }),
        What::Tor {
            testnet,
            samples,
            out,
            latency,
        } => {
            if *samples == 0 {
                bail!("--samples must be at least 1");
            }
            if let Some(want) = latency {
                let want: privasip_testnet::Profile = (*want).into();
                let net = privasip_testnet::Testnet::load(testnet)?;
                if net.latency != want {
                    bail!(
                        "the network in {} runs with --latency {}, not {}: the latency belongs \
                         to the network; start one with `privasip testnet up --dir DIR --latency {}`",
                        testnet.display(),
                        net.latency.name(),
                        want.name(),
                        want.name()
                    );
                }
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let table = rt.block_on(privasip_lab::tor_bench::run(testnet, *samples))?;
            println!("{table}");
            if let Some(path) = out {
                std::fs::write(path, &table)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(())
        }
    }
}
