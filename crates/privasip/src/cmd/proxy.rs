//! `privasip proxy`: the SIP proxy and registrar.

use std::path::PathBuf;

use anyhow::Result;

/// Run a SIP proxy and registrar.
///
/// The proxy is a registrar and location service for its own domains and
/// forwards other requests by Request-URI: to the address in the URI when
/// it is an IP address, to the static route for its domain otherwise (no
/// DNS lookups in this version). It keeps transaction state (RFC 3261
/// §16), Record-Routes when asked, forks to every registered contact, and
/// speaks UDP and TCP.
///
/// It is not an open relay (doc/relay.md): it forwards for its
/// authenticated users, into its own domains, along its own signed
/// Record-Route, to the domains in [routes] and [tor.routes], and for the
/// sources [relay] trusted names; anyone else gets 403 Relay Forbidden.
/// Loopback, private and link-local addresses are dialled only where
/// [relay] allow_networks names them, and a proxy with an onion service
/// dials nothing outside Tor but that LAN. Each source may send 500
/// requests a second and open 20 PrivaSIP tokens a second ([limits]);
/// each Tor circuit is a source, all of Tor's strangers together get ten
/// times that, and peer proxies that share a key with us ([peers],
/// privasip keygen --scheme peer) get a budget of their own. SECURITY.md
/// lists every limit.
///
/// On Tor links it hides its side's topology ([proxy] topology_hiding):
/// Vias and Record-Routes sealed into its own, Contacts replaced by
/// per-call handles at its onion, its users' domain in From replaced by
/// anonymous.invalid (doc/privasip.md).
///
/// The configuration is a TOML file; examples/ has commented examples
/// (examples/proxy-sipp.toml relays for SIPp on 127.0.0.1:5060).
///
/// Logs go to stderr; RUST_LOG=debug shows more. No log line carries a
/// user ID, display name or peer address.
///
/// Example:
///   privasip proxy --config examples/proxy-sipp.toml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The proxy's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    if args.check {
        privasip_node::proxy::load(&args.config)?;
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    privasip_node::proxy::run(&args.config)
}
