//! A minimal authoritative DNS server over UDP, enough for hickory-resolver to look up the SRV
//! and A records of a test zone. It answers from a fixed table; unknown names get NXDOMAIN.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

/// One record of the zone.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// `name A address`.
    A(Ipv4Addr),
    /// `name SRV priority weight port target`.
    Srv { port: u16, target: String },
}

/// Starts the server; returns its address. It runs until the test's runtime ends.
pub(crate) async fn serve(zone: Vec<(&str, Record)>) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let mut table: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for (name, record) in zone {
        table.entry(name.trim_end_matches('.').to_ascii_lowercase()).or_default().push(record);
    }
    let table = Arc::new(table);
    tokio::spawn(async move {
        let mut buffer = [0u8; 1500];
        loop {
            let Ok((length, peer)) = socket.recv_from(&mut buffer).await else { return };
            if let Some(answer) = answer(&buffer[..length], &table) {
                let _ = socket.send_to(&answer, peer).await;
            }
        }
    });
    address
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

fn answer(query: &[u8], table: &BTreeMap<String, Vec<Record>>) -> Option<Vec<u8>> {
    let (name, question_end) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([*query.get(question_end)?, *query.get(question_end + 1)?]);
    let question = query.get(12..question_end + 4)?;
    let records = table.get(&name.to_ascii_lowercase());
    let answers: Vec<Vec<u8>> = records
        .into_iter()
        .flatten()
        .filter_map(|record| match (record, qtype) {
            (Record::A(address), TYPE_A) => Some(resource(TYPE_A, &address.octets())),
            (Record::Srv { port, target }, TYPE_SRV) => {
                let mut data = vec![0, 10, 0, 5];
                data.extend(port.to_be_bytes());
                data.extend(encode_name(target));
                Some(resource(TYPE_SRV, &data))
            }
            _ => None,
        })
        .collect();
    let rcode: u8 = if records.is_none() { 3 } else { 0 };
    let mut response = Vec::with_capacity(512);
    response.extend(&query[..2]);
    response.extend([0x84 | (query[2] & 0x01), 0x80 | rcode]);
    response.extend(1u16.to_be_bytes());
    response.extend((answers.len() as u16).to_be_bytes());
    response.extend([0, 0, 0, 0]);
    response.extend(question);
    for answer in answers {
        response.extend(answer);
    }
    Some(response)
}

/// An answer record for the question's name (compressed as a pointer to offset 12).
fn resource(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut record = vec![0xC0, 12];
    record.extend(kind.to_be_bytes());
    record.extend(1u16.to_be_bytes());
    record.extend(60u32.to_be_bytes());
    record.extend((data.len() as u16).to_be_bytes());
    record.extend(data);
    record
}

fn encode_name(name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for label in name.trim_end_matches('.').split('.').filter(|label| !label.is_empty()) {
        bytes.push(label.len() as u8);
        bytes.extend(label.as_bytes());
    }
    bytes.push(0);
    bytes
}

fn read_name(packet: &[u8], mut offset: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let length = *packet.get(offset)? as usize;
        offset += 1;
        if length == 0 {
            return Some((labels.join("."), offset));
        }
        labels.push(String::from_utf8_lossy(packet.get(offset..offset + length)?).into_owned());
        offset += length;
    }
}
