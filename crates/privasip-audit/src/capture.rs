//! Frames out of a pcap or pcapng file, with their link type.

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::AuditError;

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Calls `each(number, link, frame)` for every frame, numbered from 1.
pub(crate) fn frames(
    source: &str,
    bytes: &[u8],
    mut each: impl FnMut(u64, DataLink, &[u8]),
) -> Result<(), AuditError> {
    let damaged = |e: pcap_file::PcapError| AuditError::Capture(source.to_owned(), e.to_string());
    let mut number = 0u64;
    if bytes.starts_with(&PCAPNG_MAGIC) {
        let mut r = PcapNgReader::new(bytes).map_err(damaged)?;
        // Interfaces are declared per section, in order; packets name them
        // by index.
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            let block = block.map_err(damaged)?;
            let (interface, data) = match &block {
                Block::SectionHeader(_) => {
                    links.clear();
                    continue;
                }
                Block::InterfaceDescription(i) => {
                    links.push(i.linktype);
                    continue;
                }
                Block::EnhancedPacket(p) => (p.interface_id as usize, p.data.as_ref()),
                Block::SimplePacket(p) => (0, p.data.as_ref()),
                _ => continue,
            };
            number += 1;
            let link = *links.get(interface).ok_or_else(|| {
                AuditError::Capture(
                    source.to_owned(),
                    format!("packet {number} names an undeclared interface"),
                )
            })?;
            each(number, link, data);
        }
        return Ok(());
    }
    let mut r = PcapReader::new(bytes).map_err(|_| AuditError::NotACapture(source.to_owned()))?;
    let link = r.header().datalink;
    // Raw records: the validated ones refuse `orig_len > snaplen`, which
    // every `tcpdump -s N` capture of a longer packet has.
    while let Some(packet) = r.next_raw_packet() {
        let packet = packet.map_err(damaged)?;
        number += 1;
        each(number, link, &packet.data);
    }
    Ok(())
}
