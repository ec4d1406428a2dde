//! Typed header values, parsed on demand from the raw text.

pub(crate) mod auth;
pub(crate) mod name_addr;
pub(crate) mod scalar;
pub(crate) mod via;
