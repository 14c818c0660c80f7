//! The target's queue-pair state machine fed arbitrary bytes from a host.
//!
//! One target is built per process: subsystem `nqn.2026-11.io.rewind:fuzz`
//! with a live engine volume (namespace 1), a view of it (2) and a raw RAM
//! device (3), and one enabled controller. Each input picks a starting state
//! (fresh connection, after ICReq, admin queue connected, I/O queue
//! connected, each with or without digests) and then delivers its bytes in
//! chunks of input-chosen sizes, driving the reactor I/O between chunks.
//!
//! Properties: nothing panics; the queue never consumes more than it was
//! given; every byte the target sends parses as a well-formed PDU stream for
//! a host (ICResp first, then capsule responses, data, R2Ts or a final
//! termination request).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rewind::device::ram::RamDevice;
use rewind::device::Device;
use rewind::engine::geometry::Layout;
use rewind::engine::{At, FormatOptions, Geometry, Volume, VolumeConfig};
use rewind::nvmf::command::{CommandBuf, Connect, ConnectData, Sgl};
use rewind::nvmf::pdu::negotiate::{accept_ic_resp, IcReq};
use rewind::nvmf::pdu::{writer, PduHeader, PduReader, PduWriter, Poll, Role};
use rewind::nvmf::target::controller::Controller;
use rewind::nvmf::target::io::ReactorIo;
use rewind::nvmf::target::namespace::{Namespace, NsKind};
use rewind::nvmf::target::queue::QueuePair;
use rewind::nvmf::target::subsystem::{volume_nqn, Subsystem, SubsystemKind};
use rewind::nvmf::target::{Limits, Target};
use rewind::nvmf::properties::Cc;
use std::sync::{Arc, OnceLock};

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:fuzz";

struct World {
    target: Arc<Target>,
    controller: Arc<Controller>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let geometry = Geometry {
            block_size: 512,
            volume_blocks: 256,
            rings: 1,
            ring_desc_blocks: 64,
            ring_data_blocks: 256,
            backward_desc_blocks: 32,
            backward_data_blocks: 512,
        };
        let layout = Layout::new(&geometry).expect("geometry");
        let ram = RamDevice::new(layout.end, 512).expect("ram");
        let device: Arc<dyn Device> = ram;
        let volume = Arc::new(
            Volume::format(device, &geometry, &FormatOptions::default(), VolumeConfig::default())
                .expect("format"),
        );
        let point = volume.resolve(&At::Now).expect("point");
        let raw: Arc<dyn Device> = RamDevice::new(256 * 512, 512).expect("raw");
        let nqn = volume_nqn("fuzz");
        let sub = Subsystem::new(nqn, SubsystemKind::Nvm, "FUZZ".into(), vec![HOST.into()]);
        let ns = |nsid, kind| Namespace {
            nsid,
            kind,
            block_size: 512,
            blocks: 256,
            uuid: [nsid as u8; 16],
        };
        sub.namespaces.add(ns(1, NsKind::Live(Arc::clone(&volume)))).expect("ns 1");
        sub.namespaces
            .add(ns(2, NsKind::View { volume, point }))
            .expect("ns 2");
        sub.namespaces.add(ns(3, NsKind::Raw(raw))).expect("ns 3");
        let limits = Limits {
            max_h2c_data: 8192,
            in_capsule_bytes: 4096,
            max_transfer_bytes: 16384,
            ..Limits::default()
        };
        let target = Arc::new(Target::new(limits, vec![sub], vec!["127.0.0.1:4420".parse().expect("addr")]));
        let sub = target.subsystem(&volume_nqn("fuzz")).expect("subsystem");
        let controller = target
            .registry
            .create(&sub, HOST, [1; 16], 0, 4)
            .expect("controller");
        controller.set_cc(Cc::default().with_en(1).with_iosqes(6).with_iocqes(4));
        World { target, controller }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    start: u8,
    digests: bool,
    chunks: Vec<u16>,
    bytes: Vec<u8>,
}

/// Bytes that bring a fresh connection to the chosen state.
fn prefix(start: u8, digests: bool, cntlid: u16) -> Vec<u8> {
    let mut out = Vec::new();
    if start % 4 == 0 {
        return out;
    }
    let req = IcReq { pfv: 0, hpda: 0, hdgst: digests, ddgst: digests, maxr2t: 0 };
    writer::ic_req(&mut out, &req);
    if start % 4 == 1 {
        return out;
    }
    let n = rewind::nvmf::pdu::negotiate::Negotiated {
        hdgst: digests,
        ddgst: digests,
        hpda: 0,
        cpda: 0,
        maxh2cdata: 8192,
        maxr2t: 0,
    };
    let w = PduWriter::new(Role::Host, &n);
    let qid = if start % 4 == 2 { 0 } else { 1 };
    let mut data = [0u8; 1024];
    ConnectData {
        hostid: [1; 16],
        cntlid: if qid == 0 { 0xFFFF } else { cntlid },
        subnqn: &volume_nqn("fuzz"),
        hostnqn: HOST,
    }
    .encode(&mut data);
    let c = Connect { recfmt: 0, qid, sqsize: 15, cattr: start & 4, kato: 0 };
    let sqe = CommandBuf::connect(1, &c, &Sgl::InCapsule { offset: 0, length: 1024 });
    w.capsule_cmd(&mut out, sqe.raw(), &data);
    out
}

/// Checks that `sent` is a well-formed stream of controller PDUs.
fn check_output(sent: &[u8], initialized_by_us: bool) {
    let mut reader = PduReader::new(Role::Host, 1 << 20);
    let mut at = 0;
    let mut first = true;
    while at < sent.len() {
        match reader.poll(&sent[at..]) {
            Ok(Poll::Pdu(p)) => {
                if let PduHeader::IcResp(resp) = p.header {
                    assert!(first, "ICResp after other PDUs");
                    let req = IcReq { pfv: 0, hpda: 0, hdgst: resp.hdgst, ddgst: resp.ddgst, maxr2t: 0 };
                    let n = accept_ic_resp(&req, &resp).expect("ICResp the host accepts");
                    reader.set_negotiated(n);
                } else if matches!(p.header, PduHeader::C2HTermReq(_)) {
                    assert_eq!(at + p.len, sent.len(), "bytes after a termination request");
                } else {
                    assert!(!first || !initialized_by_us, "a PDU before the ICResp");
                }
                first = false;
                at += p.len;
            }
            Ok(Poll::NeedMore(_)) => panic!("truncated PDU in the target's output"),
            Err(e) => panic!("the target sent a malformed PDU: {e}"),
        }
    }
}

fuzz_target!(|input: Input| {
    let w = world();
    let mut qp = QueuePair::new(Arc::clone(&w.target));
    let mut io = ReactorIo::new(0);
    let mut stream = prefix(input.start, input.digests, w.controller.cntlid);
    stream.extend_from_slice(&input.bytes);
    let mut rx: Vec<u8> = Vec::new();
    let mut sent: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut chunks = input.chunks.iter().cycle();
    let mut rounds = 0;
    while (at < stream.len() || qp.in_flight() > 0) && !qp.closing() && rounds < 10_000 {
        rounds += 1;
        let n = chunks.next().map_or(stream.len(), |&c| usize::from(c).max(1));
        let end = (at + n).min(stream.len());
        rx.extend_from_slice(&stream[at..end]);
        at = end;
        let used = qp.on_input(&rx, &mut io);
        assert!(used <= rx.len());
        rx.drain(..used);
        io.pump();
        qp.on_tick(&mut io);
        sent.append(qp.output());
        if at >= stream.len() && rx.len() > 1 << 20 {
            break;
        }
    }
    // Let what is in flight finish.
    for _ in 0..1000 {
        if qp.in_flight() == 0 {
            break;
        }
        io.pump();
        qp.on_tick(&mut io);
        sent.append(qp.output());
    }
    qp.shutdown(&mut io);
    sent.append(qp.output());
    check_output(&sent, input.start % 4 != 0);
});
