#![doc = include_str!("../README.md")]

mod client;
mod key;
mod layer;
mod server;
mod timers;

pub use layer::{Circuit, ClientTx, Event, Received, ServerTx, Transactions, Transmit, TxError};
pub use timers::TimerConfig;
