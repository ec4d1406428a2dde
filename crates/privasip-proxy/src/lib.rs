#![doc = include_str!("../README.md")]

mod proxy;
mod response;

pub use proxy::{Next, Proxy, ProxyConfig, Resolver};
pub use response::response_for;
