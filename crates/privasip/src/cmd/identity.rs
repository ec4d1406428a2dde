//! `privasip identity`: make and open PrivaSIP tokens by hand, for
//! operators checking keys and for scripts.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use privasip_identity::{AesDirectory, AesSender, Encryptor, Keyring, RealId, SchemeId, Token};
use rand_core::OsRng;

use privasip_node::keyfile;

/// Encrypt a user ID into a PrivaSIP token, or decrypt one.
///
/// A token stands where the real ID would in a SIP message (From, To, the
/// Request-URI, the Digest username). Only the holder of the private key
/// (or, for AES, of the user's shared secret) can read it.
///
/// Examples:
///   privasip identity encrypt --key keys/hpke.pub --context CALL-ID alice
///   privasip identity decrypt --key keys/hpke.key --context CALL-ID ps1h.…
///   privasip identity encrypt --scheme aes --key alice.secret alice
///   privasip identity decrypt --key alice.secret --user alice ps1a.…
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(Debug, clap::Subcommand)]
enum Op {
    Encrypt(EncryptArgs),
    Decrypt(DecryptArgs),
}

/// Print a token for ID.
///
/// Exit status: 0 with the token on stdout; 1 with the reason on stderr.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct EncryptArgs {
    /// Scheme; for hpke, ecies and rsa it is read from the key file.
    #[arg(long, value_parser = ["hpke", "ecies", "rsa", "aes"])]
    scheme: Option<String>,

    /// The recipient proxy's public key file (DIR/<scheme>.pub from
    /// `privasip keygen`); for aes, a file (mode 0600) holding the secret
    /// shared with the home proxy: the user's SHA-256 HA1 in hex.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,

    /// What the token is bound to: the dialog's Call-ID. It decrypts only
    /// with the same context.
    #[arg(long, default_value = "", value_name = "CALL-ID")]
    context: String,

    /// aes: the user's counter for this token (each value is used once).
    #[arg(long, default_value_t = 0)]
    counter: u64,

    /// The real user ID (the user part of a SIP URI).
    id: String,
}

/// Print the real ID inside TOKEN.
///
/// Exit status: 0 with the ID on stdout; 1 with the reason on stderr for a
/// forged, altered, truncated, misbound or wrong-key token.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
struct DecryptArgs {
    /// The proxy's private key file (DIR/<scheme>.key, mode 0600); for an
    /// aes token, the user's secret file as for `encrypt`.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,

    /// The context the token was bound to (the dialog's Call-ID).
    #[arg(long, default_value = "", value_name = "CALL-ID")]
    context: String,

    /// aes: whose secret --key holds (an AES token names no user).
    #[arg(long)]
    user: Option<String>,

    /// aes: the lowest counter to accept; 1024 counters from it are tried
    /// by index.
    #[arg(long, default_value_t = 0)]
    counter_from: u64,

    /// The token (ps1….….…).
    token: String,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    match &args.op {
        Op::Encrypt(a) => encrypt(a),
        Op::Decrypt(a) => decrypt(a),
    }
}

/// The AES shared secret: the file's text, trimmed.
fn aes_secret(path: &std::path::Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = keyfile::read_secret(path)?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(zeroize::Zeroizing::new(secret.as_bytes().to_vec()))
}

fn encrypt(a: &EncryptArgs) -> Result<()> {
    let id = RealId::new(a.id.as_str())?;
    let mut enc: Box<dyn Encryptor> = if a.scheme.as_deref() == Some("aes") {
        Box::new(AesSender::new(&aes_secret(&a.key)?, a.counter))
    } else {
        let public = keyfile::read_public(&a.key)?;
        if let Some(s) = &a.scheme
            && *s != public.scheme().name()
        {
            bail!(
                "--scheme {s}, but {} is a {} key",
                a.key.display(),
                public.scheme()
            );
        }
        public.encryptor()
    };
    let token = enc.seal(&id, a.context.as_bytes(), &mut OsRng)?;
    println!("{token}");
    Ok(())
}

fn decrypt(a: &DecryptArgs) -> Result<()> {
    let token = Token::parse(&a.token).context("cannot read the token")?;
    let id = if token.scheme == SchemeId::Aes {
        let user = a
            .user
            .as_deref()
            .context("an aes token names no user: give --user")?;
        let mut dir = AesDirectory::new(1024);
        dir.add_user(RealId::new(user)?, &aes_secret(&a.key)?, a.counter_from);
        dir.open(&token, a.context.as_bytes())
            .context("the token does not open with this user's secret")?
            .id
    } else {
        let key = keyfile::read_private(&a.key)?;
        let key_scheme = key.public().scheme();
        if token.scheme != key_scheme {
            bail!(
                "this is an {} token, and {} is an {key_scheme} key: it is for another scheme",
                token.scheme,
                a.key.display()
            );
        }
        let mut ring = Keyring::new(1, std::time::Duration::ZERO);
        ring.add_key(key.into_decryptor());
        ring.open(&a.token, a.context.as_bytes(), std::time::Instant::now())
            .with_context(|| format!("the token does not open with {}", a.key.display()))?
            .id
    };
    // Printing the real ID is this command's purpose.
    println!("{}", id.expose());
    Ok(())
}
