//! The NVMe/TCP target over loopback, driven PDU by PDU with the wire codec
//! (independently of the host library): connection initialization with and
//! without digests, Connect, properties, Identify, features, reads and writes
//! in-capsule and through R2T, flush, write zeroes, deallocate, views at an
//! earlier point with their changed-namespace notice, the vendor
//! read-at-point command, refused hosts, and a malformed PDU that ends only
//! its own connection.

mod nvmf_common;

use rewind::engine::{At, Volume};
use rewind::nvmf::command::{
    cns, feature, CommandBuf, Connect, ConnectData, Dsm, DsmRange, GetLogPage, Identify,
    PropertySize, ReadWrite, SetFeatures, Sgl, WriteZeroes,
};
use rewind::nvmf::completion::Completion;
use rewind::nvmf::identify::{IdentifyController, IdentifyNamespace};
use rewind::nvmf::logpage::{self, lid};
use rewind::nvmf::pdu::negotiate::{accept_ic_resp, IcReq};
use rewind::nvmf::pdu::{writer, DataHeader, PduHeader, PduReader, PduWriter, Poll, R2t, Role};
use rewind::nvmf::properties::{offset, Cap, Cc, Csts};
use rewind::nvmf::status::Status;
use rewind::nvmf::target::namespace::{Namespace, NsKind};
use rewind::nvmf::target::server::Server;
use rewind::nvmf::target::OPC_READ_AT_POINT;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const BS: usize = 4096;
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:test-host";

/// What the target sent, owned.
#[derive(Debug)]
enum Got {
    Resp(Completion),
    Data(DataHeader, Vec<u8>),
    R2t(R2t),
    Term,
}

/// A minimal host: one TCP connection, PDUs built with the codec.
struct Wire {
    s: TcpStream,
    reader: PduReader,
    writer: PduWriter,
    rx: Vec<u8>,
    next_cid: u16,
}

impl Wire {
    fn open(addr: SocketAddr, digests: bool) -> Wire {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        let mut w = Wire {
            s,
            reader: PduReader::new(Role::Host, 4 << 20),
            writer: PduWriter::default(),
            rx: Vec::new(),
            next_cid: 1,
        };
        let req = IcReq {
            pfv: 0,
            hpda: 0,
            hdgst: digests,
            ddgst: digests,
            maxr2t: 0,
        };
        let mut out = Vec::new();
        writer::ic_req(&mut out, &req);
        w.s.write_all(&out).unwrap();
        let resp = match w.recv_raw(|p| match p.header {
            PduHeader::IcResp(r) => Some(r),
            _ => None,
        }) {
            Some(r) => r,
            None => panic!("no ICResp"),
        };
        assert_eq!(
            (resp.hdgst, resp.ddgst),
            (digests, digests),
            "digests granted"
        );
        let n = accept_ic_resp(&req, &resp).unwrap();
        w.reader.set_negotiated(n);
        w.writer = PduWriter::new(Role::Host, &n);
        w
    }

    fn recv_raw<T>(&mut self, f: impl Fn(&rewind::nvmf::pdu::Pdu<'_>) -> Option<T>) -> Option<T> {
        loop {
            match self.reader.poll(&self.rx).unwrap() {
                Poll::Pdu(p) => {
                    let len = p.len;
                    let r = f(&p);
                    self.rx.drain(..len);
                    return r;
                }
                Poll::NeedMore(_) => {
                    let mut buf = [0u8; 65536];
                    let n = self.s.read(&mut buf).unwrap();
                    if n == 0 {
                        return None;
                    }
                    self.rx.extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    fn recv(&mut self) -> Got {
        self.recv_raw(|p| {
            Some(match p.header {
                PduHeader::CapsuleResp(c) => Got::Resp(c),
                PduHeader::C2HData(d) => Got::Data(d, p.data.to_vec()),
                PduHeader::R2T(r) => Got::R2t(r),
                PduHeader::C2HTermReq(_) => Got::Term,
                other => panic!("unexpected PDU {other:?}"),
            })
        })
        .unwrap_or(Got::Term)
    }

    fn cid(&mut self) -> u16 {
        self.next_cid = self.next_cid.wrapping_add(1);
        self.next_cid
    }

    fn send(&mut self, sqe: &CommandBuf, data: &[u8]) {
        let mut out = Vec::new();
        self.writer.capsule_cmd(&mut out, sqe.raw(), data);
        self.s.write_all(&out).unwrap();
    }

    /// Sends a command; returns its completion and any C2H data; answers R2Ts with `h2c`.
    fn exec(&mut self, sqe: &CommandBuf, data: &[u8], h2c: &[u8]) -> (Completion, Vec<u8>) {
        self.send(sqe, data);
        let mut got = Vec::new();
        loop {
            match self.recv() {
                Got::Resp(c) => return (c, got),
                Got::Data(d, bytes) => {
                    assert_eq!(d.offset as usize, got.len());
                    got.extend_from_slice(&bytes);
                    if d.success {
                        let mut c = Completion::success(d.cccid);
                        c.sqhd = 0xFFFF;
                        return (c, got);
                    }
                }
                Got::R2t(r) => {
                    let part = &h2c[r.offset as usize..(r.offset + r.length) as usize];
                    let mut out = Vec::new();
                    // Two PDUs when possible, to exercise offsets.
                    let half = (part.len() / 2).max(1).min(part.len());
                    for (i, chunk) in [&part[..half], &part[half..]].iter().enumerate() {
                        if chunk.is_empty() {
                            continue;
                        }
                        let d = DataHeader {
                            cccid: r.cccid,
                            ttag: r.ttag,
                            offset: r.offset + if i == 0 { 0 } else { half as u32 },
                            length: chunk.len() as u32,
                            last: i == 1 || half == part.len(),
                            success: false,
                        };
                        self.writer.h2c_data(&mut out, &d, chunk);
                    }
                    self.s.write_all(&out).unwrap();
                }
                Got::Term => panic!("target terminated the connection"),
            }
        }
    }

    fn connect(&mut self, qid: u16, cntlid: u16, subnqn: &str, host: &str) -> Completion {
        let mut data = [0u8; 1024];
        ConnectData {
            hostid: [7; 16],
            cntlid,
            subnqn,
            hostnqn: host,
        }
        .encode(&mut data);
        let c = Connect {
            recfmt: 0,
            qid,
            sqsize: 31,
            cattr: 0,
            kato: if qid == 0 { 5000 } else { 0 },
        };
        let cid = self.cid();
        let sgl = Sgl::InCapsule {
            offset: 0,
            length: 1024,
        };
        self.exec(&CommandBuf::connect(cid, &c, &sgl), &data, &[]).0
    }

    fn ok(&mut self, sqe: &CommandBuf, data: &[u8], h2c: &[u8]) -> Vec<u8> {
        let (c, d) = self.exec(sqe, data, h2c);
        assert!(
            c.status.status.is_success(),
            "{:?}: {}",
            sqe,
            c.status.status.name()
        );
        d
    }
}

fn status(c: &Completion) -> Status {
    c.status.status
}

/// Admin queue through enable, identify and queue count.
fn admin(addr: SocketAddr, nqn: &str, digests: bool) -> (Wire, u16) {
    let mut a = Wire::open(addr, digests);
    let c = a.connect(0, 0xFFFF, nqn, HOST);
    assert!(
        status(&c).is_success(),
        "admin connect: {}",
        status(&c).name()
    );
    let cntlid = c.dw0 as u16;
    let cid = a.cid();
    let (cap, _) = a.exec(
        &CommandBuf::property_get(cid, PropertySize::Eight, offset::CAP),
        &[],
        &[],
    );
    assert_eq!(Cap::from_raw(cap.result64()).mqes(), 127);
    let cc = Cc::default()
        .with_en(1)
        .with_iosqes(Cc::IOSQES_64)
        .with_iocqes(Cc::IOCQES_16);
    let cid = a.cid();
    a.ok(
        &CommandBuf::property_set(cid, PropertySize::Four, offset::CC, u64::from(cc.raw())),
        &[],
        &[],
    );
    let cid = a.cid();
    let (csts, _) = a.exec(
        &CommandBuf::property_get(cid, PropertySize::Four, offset::CSTS),
        &[],
        &[],
    );
    assert!(Csts::from_raw(csts.dw0).ready());
    (a, cntlid)
}

fn io_queue(addr: SocketAddr, nqn: &str, cntlid: u16, qid: u16, digests: bool) -> Wire {
    let mut q = Wire::open(addr, digests);
    let c = q.connect(qid, cntlid, nqn, HOST);
    assert!(status(&c).is_success(), "io connect: {}", status(&c).name());
    q
}

fn rw(slba: u64, blocks: usize) -> ReadWrite {
    ReadWrite {
        slba,
        nlb0: (blocks - 1) as u16,
        fua: false,
        lr: false,
        prinfo: 0,
        dtype: 0,
    }
}

fn write(q: &mut Wire, nsid: u32, slba: u64, data: &[u8]) -> Completion {
    let cid = q.cid();
    let blocks = data.len() / BS;
    if data.len() <= 16384 {
        let sgl = Sgl::InCapsule {
            offset: 0,
            length: data.len() as u32,
        };
        q.exec(
            &CommandBuf::write(cid, nsid, &rw(slba, blocks), &sgl),
            data,
            &[],
        )
        .0
    } else {
        let sgl = Sgl::Transport {
            length: data.len() as u32,
        };
        q.exec(
            &CommandBuf::write(cid, nsid, &rw(slba, blocks), &sgl),
            &[],
            data,
        )
        .0
    }
}

fn read(q: &mut Wire, nsid: u32, slba: u64, blocks: usize) -> (Completion, Vec<u8>) {
    let cid = q.cid();
    let sgl = Sgl::Transport {
        length: (blocks * BS) as u32,
    };
    q.exec(
        &CommandBuf::read(cid, nsid, &rw(slba, blocks), &sgl),
        &[],
        &[],
    )
}

fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * BS)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

struct Fixture {
    server: Server,
    volume: Arc<Volume>,
    nqn: String,
}

fn start(allowed: Vec<String>) -> Fixture {
    let s = nvmf_common::serve_volume("vol0", 16 << 20, allowed);
    assert_eq!(s.server.local_addrs()[0], s.addr);
    Fixture {
        server: s.server,
        volume: s.volume,
        nqn: s.nqn,
    }
}

#[test]
fn connect_identify_write_read_flush_zeroes() {
    for digests in [false, true] {
        let f = start(Vec::new());
        let addr = f.server.local_addrs()[0];
        let (mut a, cntlid) = admin(addr, &f.nqn, digests);

        let cid = a.cid();
        let id = a.ok(
            &CommandBuf::identify(
                cid,
                0,
                &Identify {
                    cns: cns::CONTROLLER,
                    cntid: 0,
                    csi: 0,
                },
            ),
            &[],
            &[],
        );
        let ctrl = IdentifyController::decode(&id).unwrap();
        assert_eq!(ctrl.cntlid, cntlid);
        assert_eq!(ctrl.subnqn, f.nqn);
        assert_eq!(ctrl.icdoff, 0);
        assert_eq!(ctrl.ioccsz, (64 + 16384) / 16);
        assert_ne!(ctrl.sgls & 3, 0);
        assert_ne!(ctrl.kas, 0);

        let cid = a.cid();
        let sf = SetFeatures {
            fid: feature::NUMBER_OF_QUEUES,
            sv: false,
            value: 3 | 3 << 16,
        };
        let (c, _) = a.exec(&CommandBuf::set_features(cid, 0, &sf), &[], &[]);
        assert_eq!(c.dw0, 3 | 3 << 16);

        let cid = a.cid();
        let ns = a.ok(
            &CommandBuf::identify(
                cid,
                1,
                &Identify {
                    cns: cns::NAMESPACE,
                    cntid: 0,
                    csi: 0,
                },
            ),
            &[],
            &[],
        );
        let ns = IdentifyNamespace::decode(&ns).unwrap();
        assert_eq!(ns.nsze, f.volume.geometry().volume_blocks);
        assert_eq!(ns.lba_size(), Some(BS as u64));

        // Two I/O queues (they land on both reactors).
        let mut q1 = io_queue(addr, &f.nqn, cntlid, 1, digests);
        let mut q2 = io_queue(addr, &f.nqn, cntlid, 2, digests);

        let small = pattern(1, 2);
        assert!(status(&write(&mut q1, 1, 10, &small)).is_success());
        let big = pattern(2, 32); // 128 KiB: R2T, two H2CData PDUs
        assert!(status(&write(&mut q2, 1, 100, &big)).is_success());
        assert_eq!(read(&mut q2, 1, 10, 2).1, small);
        assert_eq!(read(&mut q1, 1, 100, 32).1, big);

        let cid = q1.cid();
        q1.ok(&CommandBuf::flush(cid, 1), &[], &[]);

        let cid = q1.cid();
        let wz = WriteZeroes {
            slba: 100,
            nlb0: 3,
            deac: false,
            fua: false,
            lr: false,
        };
        q1.ok(&CommandBuf::write_zeroes(cid, 1, &wz), &[], &[]);
        let mut expect = big.clone();
        expect[..4 * BS].fill(0);
        assert_eq!(read(&mut q1, 1, 100, 32).1, expect);

        // Deallocate reads back as zeroes too.
        let range = DsmRange {
            cattr: 0,
            nlb: 2,
            slba: 110,
        };
        let cid = q1.cid();
        let dsm = Dsm {
            nr0: 0,
            idr: false,
            idw: false,
            ad: true,
        };
        let sgl = Sgl::InCapsule {
            offset: 0,
            length: 16,
        };
        q1.ok(&CommandBuf::dsm(cid, 1, &dsm, &sgl), &range.encode(), &[]);
        expect[10 * BS..12 * BS].fill(0);
        assert_eq!(read(&mut q2, 1, 100, 32).1, expect);

        // Bad requests: their own status, the queue goes on.
        let blocks = f.volume.geometry().volume_blocks;
        assert_eq!(
            status(&read(&mut q1, 1, blocks - 1, 2).0),
            Status::LBA_OUT_OF_RANGE
        );
        assert_eq!(status(&read(&mut q1, 9, 0, 1).0), Status::INVALID_NAMESPACE);
        let cid = q1.cid();
        let (c, _) = q1.exec(&CommandBuf::new(0x7E, cid).set_nsid(1), &[], &[]);
        assert_eq!(status(&c), Status::INVALID_OPCODE);
        assert_eq!(read(&mut q1, 1, 10, 2).1, small);

        drop((q1, q2, a));
        f.server.stop().unwrap();
    }
}

#[test]
fn views_notices_and_read_at_point() {
    let f = start(Vec::new());
    let addr = f.server.local_addrs()[0];
    let (mut a, cntlid) = admin(addr, &f.nqn, false);
    let cid = a.cid();
    let sf = SetFeatures {
        fid: feature::NUMBER_OF_QUEUES,
        sv: false,
        value: 0,
    };
    a.ok(&CommandBuf::set_features(cid, 0, &sf), &[], &[]);
    let cid = a.cid();
    let sf = SetFeatures {
        fid: feature::ASYNC_EVENT_CONFIG,
        sv: false,
        value: 1 << 8,
    };
    a.ok(&CommandBuf::set_features(cid, 0, &sf), &[], &[]);
    let aer_cid = a.cid();
    a.send(&CommandBuf::async_event_request(aer_cid), &[]);

    let mut q = io_queue(addr, &f.nqn, cntlid, 1, false);
    let old = pattern(5, 4);
    assert!(status(&write(&mut q, 1, 0, &old)).is_success());
    let point = f.volume.mark("before").unwrap();
    let new = pattern(9, 4);
    assert!(status(&write(&mut q, 1, 0, &new)).is_success());

    // A view at the bookmark, added while the host is connected.
    let sub = f.server.target().subsystem(&f.nqn).unwrap();
    let resolved = f.volume.resolve(&At::Label("before".into())).unwrap();
    assert_eq!(resolved.seq, point.seq);
    sub.add_namespace(Namespace {
        nsid: 2,
        kind: NsKind::View {
            volume: Arc::clone(&f.volume),
            point: resolved,
        },
        block_size: BS as u32,
        blocks: f.volume.geometry().volume_blocks,
        uuid: [2; 16],
    })
    .unwrap();
    match a.recv() {
        Got::Resp(c) => {
            assert_eq!(c.cid, aer_cid);
            assert_eq!(c.dw0 & 0x7, 2, "notice");
            assert_eq!((c.dw0 >> 16) & 0xFF, u32::from(lid::CHANGED_NS_LIST));
        }
        other => panic!("expected the AER completion, got {other:?}"),
    }
    let cid = a.cid();
    let glp = GetLogPage {
        lid: lid::CHANGED_NS_LIST,
        lsp: 0,
        rae: false,
        numd: 1023,
        lsi: 0,
        lpo: 0,
        csi: 0,
    };
    let log = a.ok(&CommandBuf::get_log_page(cid, 0, &glp), &[], &[]);
    assert_eq!(
        logpage::decode_changed_ns(&log).collect::<Vec<_>>(),
        vec![2]
    );

    let cid = a.cid();
    let ns2 = a.ok(
        &CommandBuf::identify(
            cid,
            2,
            &Identify {
                cns: cns::NAMESPACE,
                cntid: 0,
                csi: 0,
            },
        ),
        &[],
        &[],
    );
    assert!(IdentifyNamespace::decode(&ns2)
        .unwrap()
        .is_write_protected());

    assert_eq!(read(&mut q, 2, 0, 4).1, old, "the view reads the old data");
    assert_eq!(read(&mut q, 1, 0, 4).1, new, "the live namespace the new");
    assert_eq!(
        status(&write(&mut q, 2, 0, &new)),
        Status::NAMESPACE_WRITE_PROTECTED
    );

    // The vendor read-at-point command, by seq and by time.
    for (by_seq, value) in [(1u32, point.seq), (0, point.time_ns)] {
        let cid = q.cid();
        let sqe = CommandBuf::new(OPC_READ_AT_POINT, cid)
            .set_nsid(1)
            .set_sgl(&Sgl::Transport {
                length: (4 * BS) as u32,
            })
            .set_cdw(10, 0)
            .set_cdw(11, 0)
            .set_cdw(12, 3)
            .set_cdw(13, by_seq)
            .set_cdw(14, value as u32)
            .set_cdw(15, (value >> 32) as u32);
        let (c, data) = q.exec(&sqe, &[], &[]);
        assert!(status(&c).is_success(), "{}", status(&c).name());
        assert_eq!(c.result64(), point.seq);
        assert_eq!(data, old);
    }

    sub.remove_namespace(2).unwrap();
    assert_eq!(status(&read(&mut q, 2, 0, 1).0), Status::INVALID_NAMESPACE);
    drop((q, a));
    f.server.stop().unwrap();
}

#[test]
fn refused_host_and_malformed_pdu_harm_no_one_else() {
    let f = start(vec![HOST.to_string()]);
    let addr = f.server.local_addrs()[0];

    let mut other = Wire::open(addr, false);
    let c = other.connect(
        0,
        0xFFFF,
        &f.nqn,
        "nqn.2014-08.org.nvmexpress:uuid:intruder",
    );
    assert_eq!(status(&c), Status::CONNECT_INVALID_HOST);
    let c = other.connect(0, 0xFFFF, "nqn.2026-11.io.rewind:nope", HOST);
    assert_eq!(status(&c), Status::CONNECT_INVALID_PARAMETERS);

    let (_a, cntlid) = admin(addr, &f.nqn, false);
    let mut good = io_queue(addr, &f.nqn, cntlid, 1, false);
    let data = pattern(3, 1);
    assert!(status(&write(&mut good, 1, 5, &data)).is_success());

    // Garbage after a valid connection: a C2HTermReq, then the connection closes.
    let mut bad = Wire::open(addr, false);
    bad.s.write_all(&[0x42, 0, 8, 0, 8, 0, 0, 0]).unwrap();
    assert!(matches!(bad.recv(), Got::Term));
    // A huge PLEN is refused from the first 8 bytes.
    let mut bad2 = Wire::open(addr, false);
    bad2.s
        .write_all(&[0x04, 0, 72, 72, 0xFF, 0xFF, 0xFF, 0x7F])
        .unwrap();
    assert!(matches!(bad2.recv(), Got::Term));
    // A host vanishing in the middle of an R2T transfer.
    {
        let (_b, cntlid2) = admin(addr, &f.nqn, false);
        let mut vanish = io_queue(addr, &f.nqn, cntlid2, 1, false);
        let cid = vanish.cid();
        let sgl = Sgl::Transport {
            length: (8 * BS) as u32,
        };
        vanish.send(&CommandBuf::write(cid, 1, &rw(0, 8), &sgl), &[]);
        assert!(matches!(vanish.recv(), Got::R2t(_)));
    }

    // The good connection is unharmed.
    assert_eq!(read(&mut good, 1, 5, 1).1, data);
    f.server.stop().unwrap();
}

/// Write Zeroes of the whole volume (what mkfs does) on a volume whose
/// backward journal is smaller than the volume: the target splits it into
/// records the sync can take, the sync completes, the data reads as zeroes.
#[test]
fn whole_volume_write_zeroes_then_sync() {
    let f = start(Vec::new());
    let addr = f.server.local_addrs()[0];
    let (_a, cntlid) = admin(addr, &f.nqn, false);
    let mut q = io_queue(addr, &f.nqn, cntlid, 1, false);
    let g = f.volume.geometry().clone();
    assert!(g.backward_data_blocks < g.volume_blocks * 2);
    assert!(status(&write(&mut q, 1, 7, &pattern(4, 1))).is_success());
    let mut lba = 0;
    while lba < g.volume_blocks {
        let n = (g.volume_blocks - lba).min(65536);
        let cid = q.cid();
        let wz = WriteZeroes {
            slba: lba,
            nlb0: (n - 1) as u16,
            deac: false,
            fua: false,
            lr: false,
        };
        q.ok(&CommandBuf::write_zeroes(cid, 1, &wz), &[], &[]);
        lba += n;
    }
    f.volume.sync_now().unwrap();
    assert_eq!(read(&mut q, 1, 7, 1).1, vec![0u8; BS]);
    assert_eq!(read(&mut q, 1, g.volume_blocks - 1, 1).1, vec![0u8; BS]);
    f.server.stop().unwrap();
}
