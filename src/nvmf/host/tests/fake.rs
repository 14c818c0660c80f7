//! A tiny RAM-backed NVMe/TCP controller built from the codec: it answers
//! everything the host library sends (connect sequence, identify, log
//! pages, read/write with C2HData and R2T) and records the commands it saw.
//! It runs in memory ([`MemStream`], every write answered at once) or on a
//! socket (the loopback test).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::peer::{params, FromHost, Peer};
use crate::nvmf::command::{
    admin, cns, dsm_ranges, feature, io as nvm, CommandBuf, ConnectData, Fabrics, Sgl,
    FABRICS_OPCODE,
};
use crate::nvmf::completion::Completion;
use crate::nvmf::host::conn::Transport;
use crate::nvmf::identify::{
    cntrltype, encode_ns_list, oncs, sgls, IdentifyController, IdentifyNamespace, IDENTIFY_LEN,
};
use crate::nvmf::logpage::{copy_window, discovery, encode_discovery_log, DiscoveryEntry};
use crate::nvmf::pdu::DataHeader;
use crate::nvmf::properties::{offset, Cap, Cc, Csts, Vs};
use crate::nvmf::status::Status;

/// State every connection of the fake controller shares.
#[derive(Debug)]
pub struct Shared {
    pub subnqn: String,
    pub cntlid: u16,
    pub cc: Cc,
    pub block_shift: u8,
    pub ram: Vec<u8>,
    /// In-capsule data accepted on I/O queues.
    pub icd: u32,
    pub maxh2cdata: u32,
    /// C2HData PDU size for reads.
    pub c2h_chunk: usize,
    /// Send reads with the SUCCESS flag (no response capsule).
    pub c2h_success: bool,
    /// Size of each R2T for writes beyond the in-capsule size.
    pub r2t_chunk: u32,
    /// Every command seen: (qid, opcode, fabrics type or 0xFF).
    pub log: Vec<(u16, u8, u8)>,
    pub granted_queues: u16,
    /// Answer nothing (to test timeouts).
    pub silent: bool,
}

impl Shared {
    pub fn new(subnqn: &str, blocks: usize) -> Arc<Mutex<Shared>> {
        Arc::new(Mutex::new(Shared {
            subnqn: subnqn.to_string(),
            cntlid: 0x21,
            cc: Cc::default(),
            block_shift: 9,
            ram: vec![0; blocks << 9],
            icd: 8192,
            maxh2cdata: 16384,
            c2h_chunk: 8192,
            c2h_success: true,
            r2t_chunk: 32768,
            log: Vec::new(),
            granted_queues: 4,
            silent: false,
        }))
    }
}

#[derive(Debug)]
struct PendingWrite {
    cid: u16,
    start: usize,
    buf: Vec<u8>,
    requested: u32,
    received: u32,
    ttag: u16,
}

/// One connection of the fake controller.
#[derive(Debug)]
pub struct TargetConn {
    pub peer: Peer,
    shared: Arc<Mutex<Shared>>,
    qid: Option<u16>,
    discovery: bool,
    /// Writes waiting for H2CData, by command id.
    pending: Vec<PendingWrite>,
}

impl TargetConn {
    pub fn new(shared: Arc<Mutex<Shared>>) -> Self {
        TargetConn {
            peer: Peer::default(),
            shared,
            qid: None,
            discovery: false,
            pending: Vec::new(),
        }
    }

    /// Takes bytes from the host; returns the answer bytes.
    pub fn on_bytes(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.peer.push(bytes);
        while let Some(ev) = self.peer.next() {
            match ev {
                FromHost::IcReq(r) => {
                    let maxh2c = self.shared.lock().unwrap().maxh2cdata;
                    self.peer.accept(&r, &params(maxh2c));
                }
                FromHost::Cmd { sqe, data } => self.command(sqe, data),
                FromHost::H2C { hdr, data } => self.h2c(hdr, &data),
                FromHost::Term(_) => {}
            }
        }
        self.peer.take()
    }

    fn h2c(&mut self, hdr: DataHeader, data: &[u8]) {
        let Some(at) = self.pending.iter().position(|p| p.cid == hdr.cccid) else {
            panic!("H2CData without a write")
        };
        let p = &mut self.pending[at];
        assert_eq!(hdr.ttag, p.ttag);
        assert_eq!(hdr.offset, p.received, "H2CData in order");
        let off = hdr.offset as usize;
        p.buf[off..off + data.len()].copy_from_slice(data);
        p.received += data.len() as u32;
        assert!(p.received <= p.requested);
        assert_eq!(hdr.last, p.received == p.requested, "LAST_PDU ends the R2T");
        if p.received < p.requested {
            return;
        }
        if (p.received as usize) < p.buf.len() {
            let chunk = self.shared.lock().unwrap().r2t_chunk;
            let len = chunk.min(p.buf.len() as u32 - p.received);
            p.requested += len;
            p.ttag += 1;
            let (cid, ttag, off) = (p.cid, p.ttag, p.received);
            self.peer.r2t(cid, ttag, off, len);
            return;
        }
        let p = self.pending.swap_remove(at);
        let mut s = self.shared.lock().unwrap();
        s.ram[p.start..p.start + p.buf.len()].copy_from_slice(&p.buf);
        drop(s);
        self.peer.ok(p.cid);
    }

    fn command(&mut self, sqe: CommandBuf, data: Vec<u8>) {
        let c = sqe.view();
        let cid = c.cid();
        let qid = self.qid.unwrap_or(0);
        let opcode = c.opcode();
        let fc = if opcode == FABRICS_OPCODE {
            c.fctype()
        } else {
            0xFF
        };
        let mut s = self.shared.lock().unwrap();
        s.log.push((qid, opcode, fc));
        if s.silent {
            return;
        }
        let sgl = c.sgl().expect("host SGL decodes");
        assert_eq!(c.psdt(), 1, "PSDT 01b on every command");
        if let Sgl::InCapsule { offset, length } = sgl {
            assert_eq!(offset, 0);
            assert_eq!(length as usize, data.len());
        } else {
            assert!(data.is_empty());
        }
        let lba = 1usize << s.block_shift;
        if opcode == FABRICS_OPCODE {
            match c.fabrics().expect("fabrics command decodes") {
                Fabrics::Connect(cn) => {
                    let cd = ConnectData::decode(&data).expect("connect data in capsule");
                    self.discovery = cd.subnqn == discovery::DISCOVERY_NQN;
                    if !self.discovery {
                        assert_eq!(cd.subnqn, s.subnqn);
                    }
                    if let Some(last) = s.log.last_mut() {
                        last.0 = cn.qid;
                    }
                    if cn.qid == 0 {
                        assert_eq!(cd.cntlid, 0xFFFF);
                        assert_eq!(cn.sqsize, 31);
                    } else {
                        assert_eq!(cd.cntlid, s.cntlid);
                        assert_eq!(cn.kato, 0);
                    }
                    self.qid = Some(cn.qid);
                    let cqe = Completion {
                        dw0: u32::from(s.cntlid),
                        ..Completion::success(cid)
                    };
                    drop(s);
                    self.peer.resp(&cqe);
                }
                Fabrics::PropertyGet { offset: off, .. } => {
                    let v: u64 = match off {
                        offset::CAP => Cap::fabrics(127, 1).raw(),
                        offset::VS => u64::from(Vs::V1_4.raw()),
                        offset::CC => u64::from(s.cc.raw()),
                        offset::CSTS => {
                            let mut cs = Csts::default().with_rdy(s.cc.en());
                            if s.cc.shn() != 0 {
                                cs = cs.with_shst(Csts::SHST_COMPLETE);
                            }
                            u64::from(cs.raw())
                        }
                        _ => 0,
                    };
                    drop(s);
                    self.peer.resp(&Completion {
                        dw0: v as u32,
                        dw1: (v >> 32) as u32,
                        ..Completion::success(cid)
                    });
                }
                Fabrics::PropertySet {
                    offset: off, value, ..
                } => {
                    if off == offset::CC {
                        s.cc = Cc::from_raw(value as u32);
                    }
                    drop(s);
                    self.peer.ok(cid);
                }
                Fabrics::Disconnect { .. } => {
                    drop(s);
                    self.peer.ok(cid);
                }
            }
            return;
        }
        if qid == 0 {
            match opcode {
                admin::IDENTIFY => {
                    let id = c.identify();
                    let mut page = [0u8; IDENTIFY_LEN];
                    match id.cns {
                        cns::CONTROLLER => {
                            let disc = self.discovery;
                            let subnqn = if disc {
                                discovery::DISCOVERY_NQN.to_string()
                            } else {
                                s.subnqn.clone()
                            };
                            IdentifyController {
                                cntlid: s.cntlid,
                                mdts: 5,
                                ver: Vs::V1_4.raw(),
                                cntrltype: if disc {
                                    cntrltype::DISCOVERY
                                } else {
                                    cntrltype::IO
                                },
                                kas: 10,
                                sqes: 0x66,
                                cqes: 0x44,
                                maxcmd: 128,
                                nn: 1,
                                oncs: oncs::WRITE_ZEROES | oncs::DSM,
                                sgls: sgls::SUPPORTED | sgls::OFFSET,
                                subnqn: &subnqn,
                                ioccsz: (64 + s.icd) / 16,
                                iorcsz: 1,
                                ..Default::default()
                            }
                            .encode(&mut page);
                        }
                        cns::NAMESPACE => {
                            let blocks = (s.ram.len() / lba) as u64;
                            IdentifyNamespace::new(blocks, s.block_shift).encode(&mut page);
                        }
                        cns::ACTIVE_NS_LIST => encode_ns_list([1], c.nsid(), &mut page),
                        _ => {
                            drop(s);
                            return self
                                .peer
                                .resp(&Completion::error(cid, Status::INVALID_FIELD));
                        }
                    }
                    drop(s);
                    self.send_data(cid, &page);
                }
                admin::SET_FEATURES => {
                    let f = c.set_features();
                    assert_eq!(f.fid, feature::NUMBER_OF_QUEUES);
                    let g = u32::from(s.granted_queues - 1);
                    drop(s);
                    self.peer.resp(&Completion {
                        dw0: g | (g << 16),
                        ..Completion::success(cid)
                    });
                }
                admin::KEEP_ALIVE => {
                    drop(s);
                    self.peer.ok(cid);
                }
                admin::GET_LOG_PAGE => {
                    let g = c.get_log_page();
                    let mut log = Vec::new();
                    encode_discovery_log(
                        7,
                        &[DiscoveryEntry {
                            trtype: discovery::TRTYPE_TCP,
                            adrfam: discovery::ADRFAM_IPV4,
                            subtype: discovery::SUBTYPE_NVME,
                            portid: 1,
                            cntlid: 0xFFFF,
                            asqsz: 32,
                            trsvcid: "4420",
                            subnqn: "nqn.2026-11.io.rewind:vol0",
                            traddr: "127.0.0.1",
                            ..Default::default()
                        }],
                        &mut log,
                    );
                    let mut out = vec![0u8; g.len_bytes() as usize];
                    copy_window(&log, g.lpo, &mut out).unwrap();
                    drop(s);
                    self.send_data(cid, &out);
                }
                _ => {
                    drop(s);
                    self.peer
                        .resp(&Completion::error(cid, Status::INVALID_OPCODE));
                }
            }
            return;
        }
        let rw = c.read_write();
        let start = rw.slba as usize * lba;
        let len = rw.blocks() as usize * lba;
        match opcode {
            nvm::READ | 0x82 => {
                let data = s.ram[start..start + len].to_vec();
                drop(s);
                self.send_data(cid, &data);
            }
            nvm::WRITE => {
                if !data.is_empty() {
                    s.ram[start..start + len].copy_from_slice(&data);
                    drop(s);
                    self.peer.ok(cid);
                } else {
                    let first = s.r2t_chunk.min(len as u32);
                    drop(s);
                    self.pending.push(PendingWrite {
                        cid,
                        start,
                        buf: vec![0; len],
                        requested: first,
                        received: 0,
                        ttag: 1,
                    });
                    self.peer.r2t(cid, 1, 0, first);
                }
            }
            nvm::WRITE_ZEROES => {
                let wz = c.write_zeroes();
                let (a, n) = (wz.slba as usize * lba, wz.blocks() as usize * lba);
                s.ram[a..a + n].fill(0);
                drop(s);
                self.peer.ok(cid);
            }
            nvm::DATASET_MANAGEMENT => {
                for r in dsm_ranges(&c.dsm(), &data).unwrap() {
                    let (a, n) = (r.slba as usize * lba, r.nlb as usize * lba);
                    s.ram[a..a + n].fill(0);
                }
                drop(s);
                self.peer.ok(cid);
            }
            nvm::FLUSH => {
                drop(s);
                self.peer.ok(cid);
            }
            _ => {
                drop(s);
                self.peer
                    .resp(&Completion::error(cid, Status::INVALID_OPCODE));
            }
        }
    }

    /// Sends `data` as C2HData PDUs (and a response unless SUCCESS).
    fn send_data(&mut self, cid: u16, data: &[u8]) {
        let (chunk, success) = {
            let s = self.shared.lock().unwrap();
            (s.c2h_chunk.max(1), s.c2h_success)
        };
        let mut off = 0;
        for piece in data.chunks(chunk) {
            let last = off + piece.len() == data.len();
            self.peer.c2h(cid, off as u32, piece, last, last && success);
            off += piece.len();
        }
        if !success {
            self.peer.ok(cid);
        }
    }
}

/// An in-memory stream to a [`TargetConn`]: every write is answered at
/// once; a read with nothing to give times out.
#[derive(Debug)]
pub struct MemStream {
    pub conn: TargetConn,
    to_host: VecDeque<u8>,
    /// Host bytes are handed over in pieces of at most this size.
    pub write_max: usize,
}

impl MemStream {
    pub fn new(shared: Arc<Mutex<Shared>>) -> Self {
        MemStream {
            conn: TargetConn::new(shared),
            to_host: VecDeque::new(),
            write_max: usize::MAX,
        }
    }
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.to_host.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.to_host.len());
        for (d, s) in buf.iter_mut().zip(self.to_host.drain(..n)) {
            *d = s;
        }
        Ok(n)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.write_max);
        let out = self.conn.on_bytes(&buf[..n]);
        self.to_host.extend(out);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemStream {
    fn set_io_timeout(&mut self, _timeout: Duration) -> io::Result<()> {
        Ok(())
    }
    fn close(&mut self) {}
}
