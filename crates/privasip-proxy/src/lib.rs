#![doc = include_str!("../README.md")]

mod auth;
mod proxy;
mod response;
mod timer_c;

pub use auth::{Credentials, FAILURE_WINDOW, MAX_FAILURES};
pub use proxy::{Next, Proxy, ProxyConfig, Resolver, StoreEvent};
pub use response::response_for;
pub use timer_c::DEFAULT_TIMER_C;
