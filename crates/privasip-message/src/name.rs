//! Header field names: the ones SIP elements act on get a variant, compact
//! forms (RFC 3261 §7.3.3 and later RFCs) fold into them, everything else is
//! [`HeaderName::Other`] and is forwarded untouched.

use std::fmt;

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
                let b = name.as_bytes();
                let Some(&first) = b.first() else {
                    return HeaderName::Other;
                };
                let c = first.to_ascii_lowercase();
                if b.len() == 1 {
                    $( $( if c == $compact { return HeaderName::$variant; } )? )*
                    return HeaderName::Other;
                }
                // At most two known names share a length and first letter.
                if b.len() < MAX_LEN {
                    for &(variant, canonical) in &BUCKETS[bucket(b.len(), c)] {
                        // Most peers write the canonical case: compare that first.
                        if canonical == name || canonical.eq_ignore_ascii_case(name) {
                            return variant;
                        }
                    }
                }
                HeaderName::Other
            }
        }

        /// Every known name with its canonical spelling.
        const ALL: &[(HeaderName, &str)] = &[ $( (HeaderName::$variant, $canonical), )* ];

        /// Longer than every known name.
        const MAX_LEN: usize = 32;

        fn bucket(len: usize, first_lower: u8) -> usize {
            len * 32 + usize::from(first_lower & 31)
        }

        /// Known names by length and first letter.
        static BUCKETS: std::sync::LazyLock<Vec<Vec<(HeaderName, &'static str)>>> =
            std::sync::LazyLock::new(|| {
                let mut buckets = vec![Vec::new(); MAX_LEN * 32];
                for &(v, name) in ALL {
                    let first = name.as_bytes()[0].to_ascii_lowercase();
                    buckets[bucket(name.len(), first)].push((v, name));
                }
                buckets
            });

        impl HeaderName {
        }
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
    }
}
