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
