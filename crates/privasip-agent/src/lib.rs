#![doc = include_str!("../README.md")]

mod agent;
mod counter;
mod wire;

pub use agent::{Agent, CallRecord, ProxyAt, Setup, TorAccess};
pub use counter::CounterFile;
