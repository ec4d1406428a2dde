#![doc = include_str!("../README.md")]

use std::fmt;

/// A value kept out of `Debug` (logs, panics, error messages): it shows
/// `[redacted]`. It has no `Display`, so `to_string()` or `{}` cannot
/// quietly turn it into the word `[redacted]` where the value was meant
/// (a store row, a header). [`Sensitive::expose`] reads it
/// where it is meant to be used (on the wire, in the store, on screen
/// for the user it belongs to).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The value itself.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value itself, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl From<&str> for Sensitive<String> {
    fn from(value: &str) -> Self {
        Sensitive(value.to_owned())
    }
}

/// Comparing tells nothing to a log; it saves `expose()` in tests and
/// lookups.
impl PartialEq<&str> for Sensitive<String> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Sensitive;

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Event {
        call: u64,
        caller: Sensitive<String>,
    }

    #[test]
    fn debug_and_display_never_show_the_value() {
        let e = Event {
            call: 7,
            caller: Sensitive::new("sip:alice@a.example".into()),
        };
        let shown = format!("{e:?} {:?} {:#?}", e.caller, e);
        assert!(!shown.contains("alice"), "{shown}");
        assert!(shown.contains("call: 7"), "{shown}");
        assert_eq!(e.caller.expose(), "sip:alice@a.example");
    }
}
