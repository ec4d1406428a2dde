//! Who the proxy relays for, and where it may send (doc/relay.md).
//!
//! A proxy that forwards anything to anywhere is an open relay, and one
//! behind an onion service that dials an address it was given unmasks
//! itself: whoever watches that address learns the proxy's real IP. The
//! rules here are decided on what the driver says a peer is ([`Origin`]),
//! never by sending anything, so every rule is a unit test.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network in CIDR notation (`127.0.0.0/8`, `fd00::/8`); a bare
/// address is a network of one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// A network that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP network (write ADDRESS/PREFIX, e.g. 127.0.0.0/8 or fd00::/8)")]
pub struct BadNetwork(String);

impl FromStr for Network {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Network, BadNetwork> {
        let bad = || BadNetwork(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Network {
    /// Whether the whole network lies inside one internal range (see
    /// [`is_internal`]).
    pub fn is_internal(&self) -> bool {
        INTERNAL
            .iter()
            .any(|block| block.prefix <= self.prefix && block.contains(self.addr))
    }

    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) counts as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.prefix),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a.get(..full) != b.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    matches!((a.get(full), b.get(full)), (Some(x), Some(y)) if x & mask == y & mask)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The internal ranges: [`is_internal`] asks whether an address is in
/// one, [`Network::is_internal`] whether a whole network is.
const INTERNAL: [Network; 16] = [
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
        prefix: 8,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)),
        prefix: 8,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)),
        prefix: 10,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
        prefix: 8,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
        prefix: 16,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)),
        prefix: 12,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)),
        prefix: 16,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)),
        prefix: 4,
    },
    Network {
        addr: IpAddr::V4(Ipv4Addr::new(240, 0, 0, 0)),
        prefix: 4,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
        prefix: 128,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 128,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 7,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 10,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 10,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 8,
    },
    Network {
        addr: IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0x7f00, 0, 0)),
        prefix: 104,
    },
];

/// Whether `ip` is an address inside some site rather than on the
/// internet: loopback, unspecified, "this network", private (RFC 1918),
/// shared (RFC 6598), link-local, unique local (RFC 4193), multicast,
/// broadcast and reserved ranges. A proxy dials these only where its
/// configuration names them.
pub fn is_internal(ip: IpAddr) -> bool {
    // NAT64 (RFC 6052): the IPv4 address it embeds decides.
    if let IpAddr::V6(a) = ip
        && let Some(v4) = nat64_v4(a)
    {
        return is_internal(IpAddr::V4(v4));
    }
    INTERNAL.iter().any(|block| block.contains(ip))
}

fn nat64_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let o = a.octets();
        Ipv4Addr::new(o[12], o[13], o[14], o[15])
    })
}

/// What the core knows of a peer: where a message came from, or where a
/// resolved hop leads. The driver says (see `Proxy::set_origin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// An IP address (UDP, TCP).
    Ip(IpAddr),
    /// Through Tor: an onion route or a stream; `circuit` names the
    /// incoming circuit when the backend tells it.
    Tor {
        /// The circuit, when known.
        circuit: Option<u64>,
    },
    /// The driver does not say (the in-memory tests, whose peers are
    /// names). Never trusted; not an address, so never refused as one.
    Unknown,
}

/// Why a hop is not dialled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Refusal {
    /// A proxy behind an onion service dials nothing outside Tor.
    OutsideTor,
    /// A loopback, private, link-local... address the configuration does
    /// not name.
    Internal,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::OutsideTor => "a proxy behind an onion service dials nothing outside Tor",
            Refusal::Internal => "an internal address the configuration does not allow",
        })
    }
}

/// The relay policy (doc/relay.md). The default is the strictest: no
/// trusted peers, no internal network dialled, no explicit routes.
#[derive(Clone, Debug, Default)]
pub struct RelayPolicy {
    /// Sources relayed for as if they were authenticated users (a load
    /// generator, a peer proxy on a private link). Empty by default.
    pub trusted: Vec<Network>,
    /// Internal networks that may be dialled: a LAN proxy names its LAN
    /// (users' contacts, a next hop on loopback).
    pub allow_networks: Vec<Network>,
    /// Domains with an explicit route (`[routes]`, `[tor.routes]`):
    /// requests for them are relayed for anyone, and their route is the
    /// operator's word, so its address is dialled even if internal.
    pub routed_domains: Vec<String>,
    /// Dial no IP address outside `allow_networks` (explicit routes
    /// included): set for a proxy that serves an onion service. Its users
    /// are reached over their registration flow, their own onion, or its
    /// LAN where the configuration names one (a LAN knows the proxy's
    /// address anyway; the internet must not learn it).
    pub onion_only: bool,
}

impl RelayPolicy {
    /// Whether requests from `from` are relayed without authentication.
    pub fn is_trusted(&self, from: Origin) -> bool {
        match from {
            Origin::Ip(ip) => self.trusted.iter().any(|n| n.contains(ip)),
            Origin::Tor { .. } | Origin::Unknown => false,
        }
    }

    /// Whether `domain` has an explicit route.
    pub fn is_routed(&self, domain: &str) -> bool {
        self.routed_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// Whether a hop that resolved to `to` may be dialled. `explicit`: the
    /// hop is a configured route (its address is the operator's word).
    pub fn may_dial(&self, to: Origin, explicit: bool) -> Result<(), Refusal> {
        let Origin::Ip(ip) = to else {
            return Ok(());
        };
        let named = self.allow_networks.iter().any(|n| n.contains(ip));
        if self.onion_only {
            return if named {
                Ok(())
            } else {
                Err(Refusal::OutsideTor)
            };
        }
        if named || explicit || !is_internal(ip) {
            Ok(())
        } else {
            Err(Refusal::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn net(s: &str) -> Network {
        s.parse().expect("a network")
    }

    #[test]
    fn networks_parse_and_contain() {
        assert!(net("127.0.0.0/8").contains(ip("127.9.9.9")));
        assert!(!net("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(net("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!net("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(net("172.16.0.0/12").contains(ip("172.31.255.255")));
        assert!(!net("172.16.0.0/12").contains(ip("172.32.0.0")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!net("0.0.0.0/0").contains(ip("2001:db8::1")));
        // A mapped address is the IPv4 address it maps.
        assert!(net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")));
        for bad in [
            "",
            "/8",
            "127.0.0.0/33",
            "::/129",
            "127.0.0.0/-1",
            "127.0.0.0/ 8",
            "localhost",
            "127.0.0.0/8/8",
            "\u{e9}/8",
            "1.2.3.4/0008",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip(a)), "{a} is internal");
        }
        for a in [
            "203.0.113.7",
            "192.0.2.1",
            "8.8.8.8",
            "2001:db8::1",
            "64:ff9b::808:808",
        ] {
            assert!(!is_internal(ip(a)), "{a} is not internal");
        }
    }

    #[test]
    fn internal_addresses_only_where_allowed() {
        let strict = RelayPolicy::default();
        let lan = RelayPolicy {
            allow_networks: vec![net("127.0.0.0/8")],
            ..RelayPolicy::default()
        };
        let lo = Origin::Ip(ip("127.0.0.1"));
        let mapped = Origin::Ip(ip("::ffff:127.0.0.1"));
        let private = Origin::Ip(ip("192.168.0.10"));
        let public = Origin::Ip(ip("203.0.113.7"));
        assert_eq!(strict.may_dial(lo, false), Err(Refusal::Internal));
        assert_eq!(strict.may_dial(mapped, false), Err(Refusal::Internal));
        assert_eq!(strict.may_dial(private, false), Err(Refusal::Internal));
        assert_eq!(strict.may_dial(public, false), Ok(()));
        assert_eq!(lan.may_dial(lo, false), Ok(()));
        assert_eq!(lan.may_dial(mapped, false), Ok(()));
        assert_eq!(lan.may_dial(private, false), Err(Refusal::Internal));
        // An explicit route is the operator's word.
        assert_eq!(strict.may_dial(private, true), Ok(()));
        // Tor is always fine.
        assert_eq!(
            strict.may_dial(Origin::Tor { circuit: None }, false),
            Ok(())
        );
    }

    #[test]
    fn onion_only_dials_nothing_outside_tor_but_its_lan() {
        let b = RelayPolicy {
            onion_only: true,
            routed_domains: vec!["a.example".into()],
            ..RelayPolicy::default()
        };
        let a_with_lan = RelayPolicy {
            onion_only: true,
            allow_networks: vec![net("192.168.7.0/24")],
            ..RelayPolicy::default()
        };
        for a in ["127.0.0.1", "203.0.113.7", "::1", "192.168.7.9"] {
            for explicit in [false, true] {
                assert_eq!(
                    b.may_dial(Origin::Ip(ip(a)), explicit),
                    Err(Refusal::OutsideTor),
                    "{a}"
                );
            }
        }
        assert_eq!(b.may_dial(Origin::Tor { circuit: Some(7) }, false), Ok(()));
        assert_eq!(
            a_with_lan.may_dial(Origin::Ip(ip("192.168.7.9")), false),
            Ok(())
        );
        for a in ["192.168.8.1", "203.0.113.7"] {
            assert_eq!(
                a_with_lan.may_dial(Origin::Ip(ip(a)), true),
                Err(Refusal::OutsideTor),
                "{a}"
            );
        }
    }

    #[test]
    fn internal_networks() {
        for n in [
            "127.0.0.0/8",
            "10.0.0.0/8",
            "192.168.1.0/24",
            "fd00::/8",
            "::1",
            "100.64.0.0/10",
        ] {
            assert!(net(n).is_internal(), "{n}");
        }
        for n in [
            "0.0.0.0/0",
            "::/0",
            "192.0.0.0/2",
            "203.0.113.0/24",
            "96.0.0.0/3",
        ] {
            assert!(!net(n).is_internal(), "{n}");
        }
    }

    #[test]
    fn trust_is_by_network_and_never_for_tor() {
        let p = RelayPolicy {
            trusted: vec![net("127.0.0.1")],
            ..RelayPolicy::default()
        };
        assert!(p.is_trusted(Origin::Ip(ip("127.0.0.1"))));
        assert!(!p.is_trusted(Origin::Ip(ip("127.0.0.2"))));
        assert!(!p.is_trusted(Origin::Tor { circuit: None }));
        assert!(!p.is_trusted(Origin::Unknown));
        assert!(!RelayPolicy::default().is_trusted(Origin::Ip(ip("127.0.0.1"))));
    }
}
