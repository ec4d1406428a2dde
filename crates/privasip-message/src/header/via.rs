//! Via (RFC 3261 §20.42, §18.2.1).

use crate::params::Params;
use crate::scan::{Cursor, is_host};
use crate::uri::{is_hostname, is_ipv6_address, is_ipv6_reference, parse_port};

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP` in every message we accept.
    pub protocol: &'a str,
    /// `2.0`.
    pub version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`... as written.
    pub transport: &'a str,
    /// The host of `sent-by`.
    pub host: &'a str,
    /// The port of `sent-by`, if written.
    pub port: Option<u16>,
    /// `branch`, `received`, `rport`, `maddr`, `ttl` and extensions.
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie, so it alone
    /// identifies the transaction (§17.2.3).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    /// The `received` parameter (§18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// The `rport` parameter (RFC 3581): `Some(None)` when requested but
    /// not yet filled in.
    pub fn rport(&self) -> Option<Option<&'a str>> {
        self.params.get("rport")
    }

    /// Parses one value from `c`.
    pub(crate) fn parse(c: &mut Cursor<'a>) -> Result<Via<'a>, &'static str> {
        c.skip_lws();
        let protocol = c.token().ok_or("missing protocol name")?;
        if !c.eat_sep(b'/') {
            return Err("missing / after protocol name");
        }
        let version = c.token().ok_or("missing protocol version")?;
        if !c.eat_sep(b'/') {
            return Err("missing / after protocol version");
        }
        let transport = c.token().ok_or("missing transport")?;
        if !c.skip_lws() {
            return Err("missing white space before sent-by");
        }
        let host = if c.peek() == Some(b'[') {
            let start = c.pos();
            c.take_while(|b| b != b']');
            if !c.eat(b']') {
                return Err("unclosed IPv6 reference");
            }
            let h = c.slice(start, c.pos());
            if !is_ipv6_reference(h) {
                return Err("bad IPv6 reference");
            }
            h
        } else {
            let h = c.take_while(is_host);
            if !is_hostname(h) {
                return Err("bad sent-by host");
            }
            h
        };
        let port = if c.eat_sep(b':') {
            let p = c.take_while(|b| b.is_ascii_digit());
            Some(parse_port(p).ok_or("bad sent-by port")?)
        } else {
            None
        };
        let params = Params::parse_header(c)?;
        check_params(&params)?;
        Ok(Via {
            protocol,
            version,
            transport,
            host,
            port,
            params,
        })
    }
}

/// The parameters whose values routing reads, against their grammar
/// (RFC 3261 §20.42, §25.1; RFC 3581): what a proxy may one day send to
/// is never free text.
fn check_params(params: &Params<'_>) -> Result<(), &'static str> {
    for (name, value) in params.iter() {
        let ok = if name.eq_ignore_ascii_case("received") {
            // RFC 3261 writes IPv6 bare; RFC 5118 §4.5 meets it bracketed.
            value.is_some_and(|v| {
                (v.is_ascii() && v.parse::<std::net::Ipv4Addr>().is_ok())
                    || is_ipv6_address(v)
                    || is_ipv6_reference(v)
            })
        } else if name.eq_ignore_ascii_case("rport") {
            value.is_none_or(|v| parse_port(v).is_some())
        } else if name.eq_ignore_ascii_case("maddr") {
            value.is_some_and(|v| is_hostname(v) || is_ipv6_reference(v))
        } else if name.eq_ignore_ascii_case("ttl") {
            value.is_some_and(|v| v.len() <= 3 && v.parse::<u8>().is_ok())
        } else {
            true
        };
        if !ok {
            return Err("bad received, rport, maddr or ttl in Via");
        }
    }
    Ok(())
}

/// Parses every value of one Via header line, calling `each` for each.
pub(crate) fn parse_list<'a>(
    value: &'a str,
    mut each: impl FnMut(Via<'a>),
) -> Result<(), &'static str> {
    let mut c = Cursor::new(value);
    loop {
        each(Via::parse(&mut c)?);
        c.skip_lws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err("unexpected text after a Via value");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vias(s: &str) -> Result<Vec<Via<'_>>, &'static str> {
        let mut v = Vec::new();
        parse_list(s, |x| v.push(x)).map(|()| v)
    }

    #[test]
    fn folded_and_spaced() {
        let v = vias("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").expect("valid");
        assert_eq!(v[0].transport, "UDP");
        assert_eq!(v[0].branch(), Some("390skdjuw"));
        let v = vias("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239").expect("valid");
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].host, "192.168.255.111");
        assert!(v[1].has_rfc3261_branch());
    }

    #[test]
    fn addresses() {
        let v = vias("SIP/2.0/UDP [2001:db8::9:1]:5070;received=[2001:db8::9:255];rport=5070")
            .expect("valid");
        assert_eq!(v[0].host, "[2001:db8::9:1]");
        assert_eq!(v[0].port, Some(5070));
        assert_eq!(v[0].received(), Some("[2001:db8::9:255]"));
        assert_eq!(v[0].rport(), Some(Some("5070")));
    }

    #[test]
    fn rejects() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0 host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host junk",
            // A hostile Via once panicked the proxy with this host.
            "SIP/2.0/UDP [\u{e9}abcd]",
            "SIP/2.0/UDP [abcd]",
            "SIP/2.0/UDP []",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP h;received=h\u{e9}",
            "SIP/2.0/UDP h;received=example.com",
            "SIP/2.0/UDP h;received",
            "SIP/2.0/UDP h;rport=70000",
            "SIP/2.0/UDP h;rport=x",
            "SIP/2.0/UDP h;maddr=[zz]",
            "SIP/2.0/UDP h;maddr=a..b",
            "SIP/2.0/UDP h;ttl=256",
        ] {
            assert!(vias(bad).is_err(), "{bad}");
        }
        assert!(!vias("SIP/2.0/UDP h;branch=z9hG4bK").expect("valid")[0].has_rfc3261_branch());
        for good in [
            "SIP/2.0/UDP [::1];received=::1;rport",
            "SIP/2.0/UDP h;received=192.0.2.1;rport=0;maddr=239.255.255.1;ttl=255",
            "SIP/2.0/UDP h;maddr=[2001:db8::1];ttl=0",
        ] {
            assert!(vias(good).is_ok(), "{good}");
        }
    }
}
