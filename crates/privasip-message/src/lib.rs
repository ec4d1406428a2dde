#![doc = include_str!("../README.md")]

mod edit;
mod error;
mod header;
mod limits;
mod message;
mod method;
mod name;
mod params;
mod print;
mod scan;
mod stream;
mod uri;

pub use error::{HasSipStatus, ParseError, Rejection};
pub use header::auth::AuthValue;
pub use header::name_addr::{ContactValue, NameAddr};
pub use header::scalar::{CSeq, MediaType, parse_delta_seconds};
pub use header::via::{BRANCH_COOKIE, Via};
pub use limits::Limits;
pub use message::{Header, Message};
pub use method::Method;
pub use name::HeaderName;
pub use params::{ParamIter, Params};
pub use privasip_sensitive::Sensitive;
pub use stream::{Frame, StreamDecoder};
pub use uri::{SipUri, Uri, UriError};
