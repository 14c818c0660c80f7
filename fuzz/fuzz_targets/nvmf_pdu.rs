//! The NVMe/TCP codec (`rewind::nvmf`) on arbitrary bytes.
//!
//! The first 4 input bytes choose the reader's role (controller or host),
//! whether the connection is initialized, which digests are on, the PDU data
//! alignment, the per-PDU data limit, how the stream is cut into receive
//! chunks, and whether digests are recomputed ("resealed") so the fuzzer gets
//! past them to the checks behind. The rest is the byte stream.
//!
//! Properties:
//! - no decoder panics;
//! - the reader gives the same PDUs (and the same error) however the stream is
//!   chunked, and `poll_header` agrees with `poll`;
//! - every PDU it accepts, re-encoded by a `PduWriter` with the same
//!   parameters, reads back as the same header and data;
//! - ICReq/ICResp: whatever a controller accepts and answers, a host accepts;
//! - every SQE, Connect data, CQE, Identify and log page structure that
//!   decodes re-encodes to something that decodes to the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rewind::nvmf::command::{self, Command, ConnectData};
use rewind::nvmf::completion::Completion;
use rewind::nvmf::identify::{self, IdentifyController, IdentifyNamespace};
use rewind::nvmf::logpage::{self, DiscoveryEntry, ErrorInfoEntry, FirmwareSlotLog, SmartLog};
use rewind::nvmf::pdu::negotiate::{accept_ic_req, accept_ic_resp, ControllerParams};
use rewind::nvmf::pdu::{
    digest, writer, HeaderPoll, Negotiated, Pdu, PduError, PduHeader, PduReader, PduWriter, Poll,
    Role,
};
use rewind::nvmf::properties::{Cap, Cc, Csts, Vs};

/// One reader outcome, owned, for comparing runs.
#[derive(Debug, PartialEq)]
enum Outcome {
    Pdu {
        len: usize,
        header: String,
        data: Vec<u8>,
    },
    Error(PduError),
}

fn reader(role: Role, negotiated: Option<Negotiated>, max_data: u32) -> PduReader {
    let mut r = PduReader::new(role, max_data);
    if let Some(n) = negotiated {
        r.set_negotiated(n);
    }
    r
}

/// Recomputes the header and data digests of every PDU the reader can frame.
fn reseal(r: &PduReader, buf: &mut [u8]) {
    let mut at = 0;
    while at < buf.len() {
        let Ok(Some(f)) = r.frame(&buf[at..]) else {
            return;
        };
        if f.header_end > f.hlen && at + f.hlen + 4 <= buf.len() {
            let d = digest::header_digest(&buf[at..at + f.hlen]);
            buf[at + f.hlen..at + f.hlen + 4].copy_from_slice(&d.to_le_bytes());
        }
        if f.data_digest && at + f.data.end + 4 <= buf.len() {
            let d = digest::data_digest(&buf[at + f.data.start..at + f.data.end]);
            buf[at + f.data.end..at + f.data.end + 4].copy_from_slice(&d.to_le_bytes());
        }
        at += f.plen;
    }
}

/// Reads the whole buffer at once.
fn read_all(r: &PduReader, buf: &[u8]) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match r.poll(&buf[at..]) {
            Ok(Poll::Pdu(p)) => {
                assert!(p.len > 0 && p.len <= buf.len() - at);
                check_pdu(r, &buf[at..at + p.len], &p);
                out.push(outcome(&p));
                at += p.len;
            }
            Ok(Poll::NeedMore(n)) => {
                assert!(n > 0);
                break;
            }
            Err(e) => {
                let skip = match &e {
                    PduError::DataDigest { len, .. } => Some(*len),
                    _ => None,
                };
                assert_eq!(skip.is_some(), e.fatal().is_none());
                out.push(Outcome::Error(e));
                match skip {
                    Some(len) => at += len,
                    None => break,
                }
            }
        }
    }
    out
}

/// Reads the buffer as it arrives in chunks, keeping a receive buffer.
fn read_chunked(r: &PduReader, buf: &[u8], mut seed: u32) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    while fed < buf.len() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let step = (1 + (seed >> 16) as usize % 97).min(buf.len() - fed);
        pending.extend_from_slice(&buf[fed..fed + step]);
        fed += step;
        loop {
            match r.poll(&pending) {
                Ok(Poll::Pdu(p)) => {
                    let len = p.len;
                    out.push(outcome(&p));
                    pending.drain(..len);
                }
                Ok(Poll::NeedMore(_)) => break,
                Err(e) => {
                    if let PduError::DataDigest { len, .. } = e {
                        out.push(Outcome::Error(e));
                        pending.drain(..len);
                        continue;
                    }
                    out.push(Outcome::Error(e));
                    return out;
                }
            }
        }
    }
    out
}

fn outcome(p: &Pdu<'_>) -> Outcome {
    let header = match &p.header {
        PduHeader::CapsuleCmd(c) => format!("{:?} {:?}", p.header, c.raw()),
        h => format!("{h:?}"),
    };
    Outcome::Pdu {
        len: p.len,
        header,
        data: p.data.to_vec(),
    }
}

/// `poll_header` agrees with `poll`, and the PDU re-encodes to itself.
fn check_pdu(r: &PduReader, bytes: &[u8], p: &Pdu<'_>) {
    match r.poll_header(bytes) {
        Ok(HeaderPoll::Header { header, frame }) => {
            assert_eq!(header, p.header);
            assert_eq!(frame.plen, p.len);
            assert_eq!(&bytes[frame.data.clone()], p.data);
        }
        other => panic!("poll_header disagrees with poll: {other:?}"),
    }
    let sender = match r.role() {
        Role::Controller => Role::Host,
        Role::Host => Role::Controller,
    };
    let w = r
        .negotiated()
        .map(|n| PduWriter::new(sender, n))
        .unwrap_or_default();
    let mut out = Vec::new();
    match &p.header {
        PduHeader::IcReq(req) => {
            writer::ic_req(&mut out, req);
            if let Ok((resp, n)) = accept_ic_req(
                req,
                &ControllerParams {
                    hdgst: true,
                    ddgst: true,
                    cpda: 0,
                    maxh2cdata: 1 << 17,
                },
            ) {
                let host =
                    accept_ic_resp(req, &resp).expect("host rejects what the controller sent");
                assert_eq!(host, n);
            }
        }
        PduHeader::IcResp(resp) => {
            writer::ic_resp(&mut out, resp);
            let _ = accept_ic_resp(&rewind::nvmf::pdu::IcReq::new(true, true), resp);
        }
        PduHeader::H2CTermReq(t) | PduHeader::C2HTermReq(t) => {
            let fes = match t.fes {
                1 => rewind::nvmf::pdu::Fes::InvalidHeaderField,
                2 => rewind::nvmf::pdu::Fes::PduSequenceError,
                3 => rewind::nvmf::pdu::Fes::HeaderDigestError,
                4 => rewind::nvmf::pdu::Fes::DataTransferOutOfRange,
                5 => rewind::nvmf::pdu::Fes::DataTransferLimitExceeded,
                6 => rewind::nvmf::pdu::Fes::UnsupportedParameter,
                _ => return,
            };
            writer::term_req(&mut out, sender, fes, t.fei, p.data);
        }
        PduHeader::CapsuleCmd(c) => w.capsule_cmd(&mut out, c.raw(), p.data),
        PduHeader::CapsuleResp(c) => w.capsule_resp(&mut out, c),
        PduHeader::H2CData(d) => w.h2c_data(&mut out, d, p.data),
        PduHeader::C2HData(d) => w.c2h_data(&mut out, d, p.data),
        PduHeader::R2T(t) => w.r2t(&mut out, t),
    }
    match r.poll(&out) {
        Ok(Poll::Pdu(q)) => {
            assert_eq!(q.header, p.header);
            assert_eq!(q.data, p.data);
            assert_eq!(q.len, out.len());
        }
        other => panic!("re-encoded {:?} reads back as {other:?}", p.header),
    }
}

fn structures(bytes: &[u8], lpo: u64) {
    if let Ok(c) = Command::parse(bytes) {
        let _ = (
            c.read_write(),
            c.write_zeroes(),
            c.get_log_page(),
            c.identify(),
        );
        let _ = (
            c.set_features(),
            c.get_features(),
            c.abort(),
            c.fuse(),
            c.psdt(),
        );
        if let Ok(s) = c.sgl() {
            assert_eq!(command::Sgl::decode(&s.encode()), Ok(s));
        }
        if let Ok(f) = c.fabrics() {
            let _ = f;
        }
        if let Ok(r) = command::dsm_ranges(&c.dsm(), bytes) {
            let _ = r.count();
        }
        assert_eq!(c.to_buf().raw(), c.raw());
    }
    if let Ok(d) = ConnectData::decode(bytes) {
        let mut b = [0u8; command::CONNECT_DATA_LEN];
        d.encode(&mut b);
        assert_eq!(ConnectData::decode(&b), Ok(d));
    }
    if let Ok(c) = Completion::decode(bytes) {
        assert_eq!(&c.encode()[..], &bytes[..16]);
    }
    if let Ok(c) = IdentifyController::decode(bytes) {
        let mut b = [0u8; identify::IDENTIFY_LEN];
        c.encode(&mut b);
        assert_eq!(IdentifyController::decode(&b), Ok(c));
        let _ = (c.max_transfer_bytes(), c.in_capsule_data_bytes());
    }
    if let Ok(ns) = IdentifyNamespace::decode(bytes) {
        let _ = ns.lba_size();
        let mut b = [0u8; identify::IDENTIFY_LEN];
        ns.encode(&mut b);
        assert_eq!(IdentifyNamespace::decode(&b), Ok(ns));
    }
    let _ = identify::decode_ns_list(bytes).count();
    let descs: Vec<_> = identify::decode_ns_descriptors(bytes).collect();
    if let Ok(descs) = descs.into_iter().collect::<Result<Vec<_>, _>>() {
        let mut b = [0u8; identify::IDENTIFY_LEN];
        identify::encode_ns_descriptors(&descs, &mut b);
        let again: Vec<_> = identify::decode_ns_descriptors(&b).collect();
        assert_eq!(again, descs.into_iter().map(Ok).collect::<Vec<_>>());
    }
    if let Ok(s) = SmartLog::decode(bytes) {
        let mut b = [0u8; SmartLog::LEN];
        s.encode(&mut b);
        assert_eq!(SmartLog::decode(&b), Ok(s));
    }
    if let Ok(f) = FirmwareSlotLog::decode(bytes) {
        let mut b = [0u8; FirmwareSlotLog::LEN];
        f.encode(&mut b);
        assert_eq!(FirmwareSlotLog::decode(&b), Ok(f));
    }
    if let Ok(e) = ErrorInfoEntry::decode(bytes) {
        assert_eq!(ErrorInfoEntry::decode(&e.encode()), Ok(e));
    }
    if let Ok(entries) = logpage::decode_discovery_entries(bytes) {
        for e in entries.flatten() {
            let mut b = [0u8; 1024];
            e.encode(&mut b);
            assert_eq!(DiscoveryEntry::decode(&b), Ok(e));
        }
    }
    let _ = logpage::decode_changed_ns(bytes).count();
    let mut window = [0u8; 64];
    if let Ok(n) = logpage::copy_window(bytes, lpo, &mut window) {
        assert!(n <= 64);
    }
    let mut raw = [0u8; 8];
    let n = bytes.len().min(8);
    raw[..n].copy_from_slice(&bytes[..n]);
    let v = u64::from_le_bytes(raw);
    assert_eq!(Cap::from_raw(v).raw(), v);
    let _ = (
        Cc::from_raw(v as u32).enabled(),
        Csts::from_raw(v as u32).ready(),
        Vs::from_raw(v as u32).mjr(),
    );
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 {
        return;
    }
    let (cfg, rest) = input.split_at(4);
    let role = if cfg[0] & 1 == 0 {
        Role::Controller
    } else {
        Role::Host
    };
    let negotiated = (cfg[0] & 2 != 0).then(|| Negotiated {
        hdgst: cfg[0] & 4 != 0,
        ddgst: cfg[0] & 8 != 0,
        hpda: cfg[1] & 0x1F,
        cpda: (cfg[1] >> 5) & 0x3,
        maxh2cdata: 4096 << (cfg[3] & 3),
        maxr2t: 0,
    });
    let max_data = 1u32 << (cfg[3] >> 3).min(24);
    let r = reader(role, negotiated, max_data);
    let mut stream = rest.to_vec();
    if cfg[0] & 16 != 0 {
        reseal(&r, &mut stream);
    }
    let whole = read_all(&r, &stream);
    let chunked = read_chunked(&r, &stream, u32::from(cfg[2]));
    // The chunked run stops at the first fatal error, as does the whole run;
    // it may also stop short of a PDU the whole run only started.
    assert_eq!(chunked, whole);
    structures(rest, u64::from(cfg[2]) * 4);
});
