//! `privasip keygen`: a domain's identity key pair.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use privasip_identity::{PrivateKey, SchemeId};
use rand_core::OsRng;

use privasip_node::keyfile;

/// Make a key pair for a domain's proxy.
///
/// Writes DIR/<scheme>.key, the private key (mode 0600; only this domain's
/// proxy reads it), and DIR/<scheme>.pub, the public key that user agents
/// encrypt IDs to: publish it to everyone who may call into the domain.
/// Prints the key id that tokens for this key carry.
///
/// AES needs no key file: its keys come from each user's password.
///
/// `--scheme peer` makes DIR/peer.key instead: 32 random bytes that two
/// proxies (or a federation of them) share, so that each can tell the
/// other's requests from a stranger's over Tor (the [peers] section of a
/// proxy configuration). Copy it to the peer over a private channel.
///
/// Examples:
///   privasip keygen --scheme hpke --out /etc/privasip/keys
///   privasip keygen --scheme rsa --bits 3072 --out keys/
///   privasip keygen --scheme peer --out keys/
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// Scheme: hpke (the default, RFC 9180), ecies (P-256) or rsa; or
    /// peer, a key shared with peer proxies.
    #[arg(long, default_value = "hpke", value_parser = ["hpke", "ecies", "rsa", "peer"])]
    scheme: String,

    /// RSA modulus size (rsa only).
    #[arg(
        long,
        default_value = "3072",
        value_parser = PossibleValuesParser::new(["2048", "3072"])
            .map(|s| if s == "2048" { 2048_usize } else { 3072 }),
    )]
    bits: usize,

    /// Directory to write the key files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// Replace existing key files.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    if args.scheme == "peer" {
        return peer_key(args);
    }
    let scheme = SchemeId::from_name(&args.scheme).context("unknown scheme")?;
    if scheme == SchemeId::Rsa {
        eprintln!("generating an RSA-{} key (a few seconds)...", args.bits);
    }
    let key = PrivateKey::generate(scheme, args.bits, &mut OsRng)?;
    let public = key.public();
    let key_path = args.out.join(format!("{scheme}.key"));
    let pub_path = args.out.join(format!("{scheme}.pub"));
    keyfile::write(&key_path, &key.to_text(), 0o600, args.force)?;
    keyfile::write(&pub_path, &public.to_text(), 0o644, args.force)?;
    println!("{scheme} key {}", public.key_id());
    println!("  private: {} (mode 0600, keep secret)", key_path.display());
    println!("  public:  {} (publish)", pub_path.display());
    Ok(())
}

/// DIR/peer.key: 32 random bytes, in base64url.
fn peer_key(args: &Args) -> Result<()> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut OsRng, key.as_mut());
    let text = zeroize::Zeroizing::new(privasip_proxy::PeerKey::encode(&key));
    let path = args.out.join("peer.key");
    keyfile::write(&path, &format!("{}\n", text.as_str()), 0o600, args.force)?;
    println!("peer key: {} (mode 0600)", path.display());
    println!("  give the same file to the peer proxies, over a private channel,");
    println!("  and name it in each one's [peers] section");
    Ok(())
}
