//! Just enough packet decoding to find a transport payload: the link
//! layers a capture of SIP on Linux comes in, IPv4/IPv6, UDP/TCP.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pcap_file::DataLink;

/// The transport a payload travelled on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// One side of a packet: address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The IP address.
    pub ip: IpAddr,
    /// The UDP or TCP port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// A decoded UDP or TCP packet.
#[derive(Debug)]
pub struct Segment<'a> {
    /// UDP or TCP.
    pub transport: Transport,
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// The UDP payload or TCP segment data.
    pub payload: &'a [u8],
}

/// What a packet was, when it was not a UDP or TCP segment we can read.
#[derive(Debug, PartialEq, Eq)]
pub enum Skipped {
    /// A link layer this decoder does not know.
    LinkType,
    /// Not IPv4 or IPv6 (ARP, ...).
    NotIp,
    /// IP, but neither UDP nor TCP, or a fragment after the first.
    NotUdpTcp,
    /// Shorter than its headers say.
    Truncated,
}

/// Decodes one captured frame of link type `link`.
pub fn decode(link: DataLink, frame: &[u8]) -> Result<Segment<'_>, Skipped> {
    let (ethertype, ip) = match link {
        DataLink::ETHERNET => {
            let ethertype = be16(frame, 12)?;
            // One 802.1Q tag at most.
            if ethertype == 0x8100 {
                (be16(frame, 16)?, frame.get(18..).ok_or(Skipped::Truncated)?)
            } else {
                (ethertype, frame.get(14..).ok_or(Skipped::Truncated)?)
            }
        }
        // BSD loopback: a 4-byte address family in host order.
        DataLink::NULL | DataLink::LOOP => {
            let ip = frame.get(4..).ok_or(Skipped::Truncated)?;
            (ethertype_of_version(ip)?, ip)
        }
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => (ethertype_of_version(frame)?, frame),
        DataLink::LINUX_SLL => (be16(frame, 14)?, frame.get(16..).ok_or(Skipped::Truncated)?),
        DataLink::LINUX_SLL2 => (be16(frame, 0)?, frame.get(20..).ok_or(Skipped::Truncated)?),
        _ => return Err(Skipped::LinkType),
    };
    match ethertype {
        0x0800 => ipv4(ip),
        0x86dd => ipv6(ip),
        _ => Err(Skipped::NotIp),
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, Skipped> {
    match b.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(Skipped::Truncated),
    }
}

fn ethertype_of_version(ip: &[u8]) -> Result<u16, Skipped> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => Ok(0x0800),
        Some(6) => Ok(0x86dd),
        Some(_) => Err(Skipped::NotIp),
        None => Err(Skipped::Truncated),
    }
}

fn ipv4(ip: &[u8]) -> Result<Segment<'_>, Skipped> {
    let header_len = usize::from(ip.first().ok_or(Skipped::Truncated)? & 0x0f) * 4;
    // 0 when the NIC segments (TSO): the capture holds the whole packet.
    let total = match usize::from(be16(ip, 2)?) {
        0 => ip.len(),
        n => n,
    };
    if header_len < 20 || total < header_len || ip.len() < header_len {
        return Err(Skipped::Truncated);
    }
    // Only the first fragment carries the transport header.
    if be16(ip, 6)? & 0x1fff != 0 {
        return Err(Skipped::NotUdpTcp);
    }
    let addr = |at: usize| -> Result<IpAddr, Skipped> {
        let b: [u8; 4] = ip
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or(Skipped::Truncated)?;
        Ok(IpAddr::V4(Ipv4Addr::from(b)))
    };
    // A capture may hold less than the packet (snaplen), or padding.
    let end = total.min(ip.len());
    transport(ip[9], addr(12)?, addr(16)?, &ip[header_len..end])
}

fn ipv6(ip: &[u8]) -> Result<Segment<'_>, Skipped> {
    if ip.len() < 40 {
        return Err(Skipped::Truncated);
    }
    let addr = |at: usize| -> Result<IpAddr, Skipped> {
        let b: [u8; 16] = ip
            .get(at..at + 16)
            .and_then(|s| s.try_into().ok())
            .ok_or(Skipped::Truncated)?;
        Ok(IpAddr::V6(Ipv6Addr::from(b)))
    };
    let end = (40 + usize::from(be16(ip, 4)?)).min(ip.len());
    // Extension headers are not followed: SIP over them is rare enough.
    transport(ip[6], addr(8)?, addr(24)?, &ip[40..end])
}

fn transport<'a>(
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    data: &'a [u8],
) -> Result<Segment<'a>, Skipped> {
    let (transport, header_len) = match proto {
        17 => (Transport::Udp, 8),
        6 => {
            let offset = data.get(12).ok_or(Skipped::Truncated)? >> 4;
            if offset < 5 {
                return Err(Skipped::Truncated);
            }
            (Transport::Tcp, usize::from(offset) * 4)
        }
        _ => return Err(Skipped::NotUdpTcp),
    };
    let payload = data.get(header_len..).ok_or(Skipped::Truncated)?;
    Ok(Segment {
        transport,
        src: Endpoint {
            ip: src,
            port: be16(data, 0)?,
        },
        dst: Endpoint {
            ip: dst,
            port: be16(data, 2)?,
        },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::frame;

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        frame(17, payload)
    }

    #[test]
    fn decodes_udp_over_ipv4_over_ethernet() {
        let frame = udp_frame(b"OPTIONS sip:x SIP/2.0\r\n");
        let s = decode(DataLink::ETHERNET, &frame).expect("decodes");
        assert_eq!(s.transport, Transport::Udp);
        assert_eq!(s.src.to_string(), "127.0.0.1:5060");
        assert_eq!(s.dst.to_string(), "127.0.0.2:5061");
        assert_eq!(s.payload, b"OPTIONS sip:x SIP/2.0\r\n");
    }

    #[test]
    fn short_and_foreign_frames_are_skipped_not_panicked_on() {
        let frame = udp_frame(b"x");
        for n in 0..frame.len() {
            let _ = decode(DataLink::ETHERNET, &frame[..n]);
            let _ = decode(DataLink::LINUX_SLL2, &frame[..n]);
            let _ = decode(DataLink::NULL, &frame[..n]);
        }
        assert_eq!(
            decode(DataLink::IEEE802_11, &frame).err(),
            Some(Skipped::LinkType)
        );
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(decode(DataLink::ETHERNET, &arp).err(), Some(Skipped::NotIp));
    }
}
