//! `privasip user`: the proxy's accounts.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use privasip_digest::{Algorithm, Ha1};
use privasip_store::UserRow;

use privasip_node::proxy::load;
use privasip_node::store as proxy_store;

/// Manage the users a proxy authenticates (Digest).
///
/// Users live in the proxy's store (the [store] of its configuration:
/// a SQLite file, or a PostgreSQL database shared by several proxies);
/// only HA1 values are kept, never passwords. A proxy on SQLite reads
/// users at start-up: restart it after changes. Proxies sharing a
/// PostgreSQL store apply them at once.
///
/// Examples:
///   echo 'secret' | privasip user add --config proxy.toml alice
///   privasip user list --config proxy.toml
///   privasip user del --config proxy.toml alice
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, clap::Subcommand)]
enum Op {
    /// Add a user, or set a user's password; the password is read from
    /// the first line of standard input.
    Add(UserArgs),
    /// Remove a user.
    Del(UserArgs),
    /// List the users, one "user@domain" per line.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
struct UserArgs {
    /// The proxy's configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The domain (realm); may be left out if the proxy serves one.
    #[arg(long)]
    domain: Option<String>,
    /// The user name (the user part of the address of record).
    user: String,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The proxy's configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

fn domain(cfg: &privasip_node::proxy::Config, given: Option<&String>) -> Result<String> {
    match given {
        Some(d) if cfg.proxy.domains.iter().any(|x| x.eq_ignore_ascii_case(d)) => {
            Ok(d.to_ascii_lowercase())
        }
        Some(d) => bail!(
            "{d} is not one of this proxy's domains ({})",
            cfg.proxy.domains.join(", ")
        ),
        None => match cfg.proxy.domains.as_slice() {
            [one] => Ok(one.to_ascii_lowercase()),
            _ => bail!("this proxy serves several domains: say which with --domain"),
        },
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.op {
        Op::Add(a) => {
            let cfg = load(&a.config)?;
            let realm = domain(&cfg, a.domain.as_ref())?;
            if a.user.is_empty() || a.user.contains(['@', ':', ' ']) {
                bail!("{:?} is not a user name (no '@', ':' or spaces)", a.user);
            }
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("no password on standard input");
            }
            let mut store = proxy_store::open(&a.config, &cfg, &proxy_store::instance_name())?;
            store.put_user(&UserRow {
                realm: realm.clone(),
                user: a.user.clone().into(),
                ha1_md5: Ha1::from_password(Algorithm::Md5, &a.user, &realm, password)
                    .expose_hex()
                    .into(),
                ha1_sha256: Ha1::from_password(Algorithm::Sha256, &a.user, &realm, password)
                    .expose_hex()
                    .into(),
                aes_next: 0,
            })?;
            println!("{}@{realm}: saved", a.user);
        }
        Op::Del(a) => {
            let cfg = load(&a.config)?;
            let realm = domain(&cfg, a.domain.as_ref())?;
            let mut store = proxy_store::open(&a.config, &cfg, &proxy_store::instance_name())?;
            if !store.delete_user(&realm, &a.user)? {
                bail!("no user {}@{realm}", a.user);
            }
            println!("{}@{realm}: removed", a.user);
        }
        Op::List(a) => {
            let cfg = load(&a.config)?;
            let mut store = proxy_store::open(&a.config, &cfg, &proxy_store::instance_name())?;
            for u in store.users()? {
                println!("{}@{}", u.user.expose(), u.realm);
            }
        }
    }
    Ok(())
}
