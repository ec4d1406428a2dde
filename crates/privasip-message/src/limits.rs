//! Bounds on what the parser accepts, so that no input costs unbounded
//! memory or time.

/// Parser limits. The defaults suit a proxy; every field can be raised or
/// lowered in configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, head and body, in bytes (default 64 KiB, the largest
    /// UDP datagram).
    pub max_message_size: usize,
    /// Most header fields (default 256).
    pub max_headers: usize,
    /// Longest line, start line or header line, in bytes (default 8 KiB).
    pub max_line_length: usize,
    /// Most Via values (default 64; loops are caught long before),
    /// checked by [`crate::Message::validate`].
    pub max_vias: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 256,
            max_line_length: 8 * 1024,
            max_vias: 64,
        }
    }
}
