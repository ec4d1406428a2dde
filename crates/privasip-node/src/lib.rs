#![doc = include_str!("../README.md")]

pub mod keyfile;
pub mod proxy;
pub mod store;
pub mod tor;
pub mod ua;

use std::path::{Path, PathBuf};

/// `p` as written in a configuration file: relative paths are relative
/// to the file's directory.
pub fn config_relative(config: &Path, p: &Path) -> PathBuf {
    match config.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_owned(),
    }
}

/// Our own progress at info; arti's crates only when something is wrong
/// (in a small test network arti warns about path choices it copes with).
pub const DEFAULT_LOG: &str = "info,tor_netdir=error,tor_dirmgr=warn,tor_guardmgr=warn,\
    tor_hsservice=warn,tor_memquota=warn,tor_circmgr=warn,tor_chanmgr=warn,arti_client=warn";

/// Logs to stderr at [`DEFAULT_LOG`] unless RUST_LOG says otherwise.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// The example configurations under `examples/` whose names start with
/// `prefix`, for the tests that prove each one valid.
#[cfg(test)]
fn examples(prefix: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".toml")
        })
        .collect();
    found.sort();
    found
}
