#![doc = include_str!("../README.md")]

mod auth;
mod proxy;
mod response;

pub use auth::{Credentials, FAILURE_WINDOW, MAX_FAILURES};
pub use proxy::{Next, Proxy, ProxyConfig, Resolver, StoreEvent};
pub use response::response_for;
