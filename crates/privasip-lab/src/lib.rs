#![doc = include_str!("../README.md")]
// The lab reports to the person running it.
#![allow(clippy::print_stdout)]

pub mod demo;
pub mod paper;
pub mod plot;
pub mod progress;
pub mod sniff;
pub mod stage;
#[cfg(feature = "arti")]
pub mod tor_bench;
