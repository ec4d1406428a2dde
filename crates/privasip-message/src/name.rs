//! Header field names: the ones SIP elements act on get a variant, compact
//! forms (RFC 3261 §7.3.3 and later RFCs) fold into them, everything else is
//! [`HeaderName::Other`] and is forwarded untouched.

use std::fmt;

/// A header name of 2 to 24 bytes folded to lower case and packed into
/// words, zero-padded. Folding sets bit 5 of every byte: for token bytes
/// that maps only letters onto each other (`_` becomes DEL, which no token
/// holds), so two tokens fold alike exactly when they are equal ignoring
/// ASCII case.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Folded {
    words: [u64; 3],
    len: usize,
}

/// Slots in the lookup table: a power of two, at least four times the
/// number of known names.
const TABLE_SLOTS: usize = 256;

impl Folded {
    /// Folds a name of at most 24 bytes, one byte at a time.
    fn of(b: &[u8]) -> Folded {
        let mut words = [0u64; 3];
        for (i, &c) in b.iter().take(24).enumerate() {
            words[i / 8] |= u64::from(c | 0x20) << (8 * (i % 8));
        }
        Folded {
            words,
            len: b.len(),
        }
    }

    /// Folds the first `len` (at most 24) bytes of `window` a word at a
    /// time; `None` if the window is shorter than 24 bytes.
    fn from_window(window: &[u8], len: usize) -> Option<Folded> {
        let chunk = window.get(..24)?;
        let mut words = [0u64; 3];
        for (k, word) in words.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&chunk[8 * k..8 * k + 8]);
            let n = len.saturating_sub(8 * k).min(8);
            let mask = if n == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            };
            *word = (u64::from_le_bytes(bytes) | 0x2020_2020_2020_2020) & mask;
        }
        Some(Folded { words, len })
    }

    fn slot(&self) -> usize {
        let h = (self.words[0] ^ self.words[1].rotate_left(17) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 56) as usize % TABLE_SLOTS
    }
}

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident => $canonical:literal $(, $compact:literal)?; )*) => {
        /// A header field name, compared case-insensitively.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any header this crate has no variant for.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling, e.g. `Call-ID`; `None` for [`HeaderName::Other`].
            pub fn canonical(self) -> Option<&'static str> {
                match self {
                    $( HeaderName::$variant => Some($canonical), )*
                    HeaderName::Other => None,
                }
            }

            /// Looks a name up, ignoring case and accepting compact forms.
            pub fn lookup(name: &str) -> HeaderName {
                // Every known name is a token; `lookup_in` relies on it.
                if crate::scan::is_token_str(name) {
                    HeaderName::lookup_in(name.as_bytes(), name.len())
                } else {
                    HeaderName::Other
                }
            }

            /// Looks up the token (already checked to be one) of `len` bytes
            /// at the start of `window`;
            /// the bytes after it, when there are enough, let the name be
            /// read a word at a time.
            pub(crate) fn lookup_in(window: &[u8], len: usize) -> HeaderName {
                if len == 1 {
                    let c = window.first().map_or(0, u8::to_ascii_lowercase);
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                let key = match window.get(..len) {
                    Some(name) if len <= 24 => Folded::from_window(window, len).unwrap_or_else(|| Folded::of(name)),
                    _ => return HeaderName::Other,
                };
                let table = &*TABLE;
                let mut slot = key.slot();
                // Open addressing; the table is at most a quarter full.
                loop {
                    match &table[slot] {
                        None => return HeaderName::Other,
                        Some((variant, known)) if *known == key => return *variant,
                        Some(_) => slot = (slot + 1) % TABLE_SLOTS,
                    }
                }
            }
        }

        /// Every known name with its canonical spelling.
        const ALL: &[(HeaderName, &str)] = &[ $( (HeaderName::$variant, $canonical), )* ];

        /// Known names by their folded form.
        static TABLE: std::sync::LazyLock<Vec<Option<(HeaderName, Folded)>>> =
            std::sync::LazyLock::new(|| {
                let mut table = vec![None; TABLE_SLOTS];
                for &(variant, name) in ALL {
                    let key = Folded::of(name.as_bytes());
                    let mut slot = key.slot();
                    while table[slot].is_some() {
                        slot = (slot + 1) % TABLE_SLOTS;
                    }
                    table[slot] = Some((variant, key));
                }
                table
            });

    };
}

header_names! {
    /// RFC 3261 §20.42
    Via => "Via", b'v';
    /// RFC 3261 §20.20
    From => "From", b'f';
    /// RFC 3261 §20.39
    To => "To", b't';
    /// RFC 3261 §20.8
    CallId => "Call-ID", b'i';
    /// RFC 3261 §20.16
    CSeq => "CSeq";
    /// RFC 3261 §20.22
    MaxForwards => "Max-Forwards";
    /// RFC 3261 §20.10
    Contact => "Contact", b'm';
    /// RFC 3261 §20.34
    Route => "Route";
    /// RFC 3261 §20.30
    RecordRoute => "Record-Route";
    /// RFC 3261 §20.14
    ContentLength => "Content-Length", b'l';
    /// RFC 3261 §20.15
    ContentType => "Content-Type", b'c';
    /// RFC 3261 §20.12
    ContentEncoding => "Content-Encoding", b'e';
    /// RFC 3261 §20.19
    Expires => "Expires";
    /// RFC 3261 §20.23
    MinExpires => "Min-Expires";
    /// RFC 3261 §20.32
    Require => "Require";
    /// RFC 3261 §20.29
    ProxyRequire => "Proxy-Require";
    /// RFC 3261 §20.37
    Supported => "Supported", b'k';
    /// RFC 3261 §20.40
    Unsupported => "Unsupported";
    /// RFC 3261 §20.5
    Allow => "Allow";
    /// RFC 3261 §20.1
    Accept => "Accept";
    /// RFC 3261 §20.7
    Authorization => "Authorization";
    /// RFC 3261 §20.28
    ProxyAuthorization => "Proxy-Authorization";
    /// RFC 3261 §20.44
    WwwAuthenticate => "WWW-Authenticate";
    /// RFC 3261 §20.27
    ProxyAuthenticate => "Proxy-Authenticate";
    /// RFC 3261 §20.6
    AuthenticationInfo => "Authentication-Info";
    /// RFC 3323 §4.2
    Privacy => "Privacy";
    /// RFC 3325 §9.1
    PAssertedIdentity => "P-Asserted-Identity";
    /// RFC 3325 §9.2
    PPreferredIdentity => "P-Preferred-Identity";
    /// RFC 3261 §20.41
    UserAgent => "User-Agent";
    /// RFC 3261 §20.35
    Server => "Server";
    /// RFC 3261 §20.25
    Organization => "Organization";
    /// RFC 3261 §20.36
    Subject => "Subject", b's';
    /// RFC 3261 §20.17
    Date => "Date";
    /// RFC 3261 §20.9
    CallInfo => "Call-Info";
    /// RFC 3261 §20.31
    ReplyTo => "Reply-To";
    /// RFC 3261 §20.21
    InReplyTo => "In-Reply-To";
    /// RFC 3261 §20.43
    Warning => "Warning";
    /// RFC 3261 §20.33
    RetryAfter => "Retry-After";
    /// RFC 3261 §20.38
    Timestamp => "Timestamp";
    /// RFC 3261 §20.4
    AlertInfo => "Alert-Info";
    /// RFC 3261 §20.18
    ErrorInfo => "Error-Info";
    /// RFC 3261 §20.26
    Priority => "Priority";
    /// RFC 6665 §8.2.1
    Event => "Event", b'o';
    /// RFC 6665 §8.2.2
    AllowEvents => "Allow-Events", b'u';
    /// RFC 3515 §2.1
    ReferTo => "Refer-To", b'r';
    /// RFC 3892 §3
    ReferredBy => "Referred-By", b'b';
    /// RFC 4028 §4
    SessionExpires => "Session-Expires", b'x';
    /// RFC 3841 §9.2
    AcceptContact => "Accept-Contact", b'a';
    /// RFC 3841 §9.2
    RejectContact => "Reject-Contact", b'j';
    /// RFC 3841 §9.1
    RequestDisposition => "Request-Disposition", b'd';
    /// RFC 8224 §4
    Identity => "Identity", b'y';
    /// RFC 4474 §9 (obsolete)
    IdentityInfo => "Identity-Info", b'n';
}

impl HeaderName {
    /// True for headers that may appear at most once (RFC 3261 §7.3.1 and
    /// table 2/3): a second one makes the message ambiguous.
    pub fn is_single_valued(self) -> bool {
        matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Expires
                | HeaderName::MinExpires
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical().unwrap_or("extension"))
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName;

    #[test]
    fn lookup() {
        assert_eq!(HeaderName::lookup("via"), HeaderName::Via);
        assert_eq!(HeaderName::lookup("V"), HeaderName::Via);
        assert_eq!(HeaderName::lookup("cAlL-iD"), HeaderName::CallId);
        assert_eq!(HeaderName::lookup("C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::lookup("q"), HeaderName::Other);
        assert_eq!(HeaderName::lookup("Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::lookup("Max_Forwards"), HeaderName::Other);
        assert_eq!(HeaderName::lookup("X-Unknown-Header"), HeaderName::Other);
        // Read a word at a time from a longer buffer, and byte by byte.
        let line = b"cOnTaCt: <sip:a@b>;expires=3600";
        assert_eq!(HeaderName::lookup_in(line, 7), HeaderName::Contact);
        assert_eq!(HeaderName::lookup_in(line, 6), HeaderName::Other);
        assert_eq!(
            HeaderName::lookup_in(b"CSeq: 1 INVITE", 4),
            HeaderName::CSeq
        );
    }

    #[test]
    fn every_known_name_in_any_case() {
        for &(variant, name) in super::ALL {
            assert_eq!(HeaderName::lookup(name), variant, "{name}");
            assert_eq!(
                HeaderName::lookup(&name.to_ascii_uppercase()),
                variant,
                "{name}"
            );
            assert_eq!(
                HeaderName::lookup(&name.to_ascii_lowercase()),
                variant,
                "{name}"
            );
        }
    }
}
