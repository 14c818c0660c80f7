//! The sans-IO queue pair against scripted targets: hand-built PDUs from
//! the codec, byte-exact checks of what the host sends.

use proptest::prelude::*;

use super::peer::{params, FromHost, Peer};
use crate::nvmf::command::{
    fctype, CommandBuf, Connect, ConnectData, ReadWrite, Sgl, CONNECT_DATA_LEN, FABRICS_OPCODE,
};
use crate::nvmf::completion::{Completion, StatusField};
use crate::nvmf::host::buffers::{Data, NoData, Single, SlotBuffers};
use crate::nvmf::host::error::{ProtocolError, QueueError, SubmitError};
use crate::nvmf::host::queue::{QueueConfig, QueuePair};
use crate::nvmf::host::slots::Direction;
use crate::nvmf::pdu::{writer, Fes, IcResp, PduError, PduType, TermReq};
use crate::nvmf::status::Status;

fn cfg(depth: u16, digests: bool, icd: u32) -> QueueConfig {
    QueueConfig {
        qid: 1,
        depth,
        hdr_digest: digests,
        data_digest: digests,
        in_capsule_max: icd,
    }
}

/// A queue pair past ICReq/ICResp, and its scripted peer.
fn ready(c: QueueConfig, maxh2cdata: u32) -> (QueuePair, Peer) {
    let mut qp = QueuePair::new(c);
    let mut peer = Peer::default();
    let mut out = Vec::new();
    qp.take_tx(&NoData, &mut out);
    peer.push(&out);
    let Some(FromHost::IcReq(req)) = peer.next() else {
        panic!("first PDU is the ICReq")
    };
    peer.accept(&req, &params(maxh2cdata));
    assert!(!qp.is_ready());
    qp.feed(&peer.take(), &mut NoData).unwrap();
    assert!(qp.is_ready());
    (qp, peer)
}

fn to_peer(qp: &mut QueuePair, bufs: &SlotBuffers<Vec<u8>>, peer: &mut Peer) {
    let mut out = Vec::new();
    qp.take_tx(bufs, &mut out);
    peer.push(&out);
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn read_cmd(slba: u64) -> CommandBuf {
    let rw = ReadWrite {
        slba,
        nlb0: 0,
        fua: false,
        lr: false,
        prinfo: 0,
        dtype: 0,
    };
    CommandBuf::read(0, 1, &rw, &Sgl::Transport { length: 0 })
}

fn write_cmd() -> CommandBuf {
    let rw = ReadWrite {
        slba: 0,
        nlb0: 0,
        fua: false,
        lr: false,
        prinfo: 0,
        dtype: 0,
    };
    CommandBuf::write(0, 1, &rw, &Sgl::Transport { length: 0 })
}

/// Submits with a fresh buffer registered at the next slot.
fn submit(
    qp: &mut QueuePair,
    bufs: &mut SlotBuffers<Vec<u8>>,
    cmd: CommandBuf,
    dir: Direction,
    buf: Vec<u8>,
    tag: u64,
) -> u16 {
    let slot = qp.next_slot().unwrap();
    let len = buf.len() as u32;
    bufs.put(slot, Some(buf));
    qp.submit(cmd, dir, len, tag, bufs).unwrap()
}

#[test]
fn icreq_bytes_are_exact_and_icresp_is_checked() {
    let mut qp = QueuePair::new(cfg(4, true, 0));
    let mut out = Vec::new();
    qp.take_tx(&NoData, &mut out);
    let mut want = vec![0u8; 128];
    want[2] = 128; // HLEN
    want[4] = 128; // PLEN
    want[11] = 0x03; // HDGST_ENABLE | DDGST_ENABLE
    assert_eq!(out, want, "ICReq: type 0, PFV 0, HPDA 0, MAXR2T 0");
    // Commands wait for the ICResp.
    assert_eq!(
        qp.submit(read_cmd(0), Direction::None, 0, 0, &mut NoData),
        Err(SubmitError::NotReady)
    );

    // A target that grants only the header digest is refused.
    let mut resp = Vec::new();
    writer::ic_resp(
        &mut resp,
        &IcResp {
            pfv: 0,
            cpda: 0,
            hdgst: true,
            ddgst: false,
            maxh2cdata: 8192,
        },
    );
    let err = qp.feed(&resp, &mut NoData).unwrap_err();
    assert!(matches!(
        err,
        QueueError::Protocol(ProtocolError::DigestMismatch { ddgst: false, .. })
    ));
    // An H2CTermReq went out.
    out.clear();
    qp.take_tx(&NoData, &mut out);
    assert_eq!(out[0], PduType::H2CTermReq as u8);
    assert_eq!(
        u16::from_le_bytes([out[8], out[9]]),
        Fes::UnsupportedParameter as u16
    );
    assert_eq!(
        qp.submit(read_cmd(0), Direction::None, 0, 0, &mut NoData),
        Err(SubmitError::Failed)
    );

    // MAXH2CDATA below 4096 is refused.
    let mut qp = QueuePair::new(cfg(4, false, 0));
    qp.take_tx(&NoData, &mut Vec::new());
    resp.clear();
    writer::ic_resp(
        &mut resp,
        &IcResp {
            pfv: 0,
            cpda: 0,
            hdgst: false,
            ddgst: false,
            maxh2cdata: 1024,
        },
    );
    assert!(matches!(
        qp.feed(&resp, &mut NoData),
        Err(QueueError::Protocol(ProtocolError::Pdu(
            PduError::Unsupported { .. }
        )))
    ));
}

#[test]
fn connect_goes_in_capsule_with_the_connect_data() {
    let (mut qp, mut peer) = ready(
        QueueConfig {
            qid: 0,
            depth: 31,
            hdr_digest: false,
            data_digest: false,
            in_capsule_max: 8192,
        },
        8192,
    );
    let mut data = [0u8; CONNECT_DATA_LEN];
    ConnectData {
        hostid: [7; 16],
        cntlid: 0xFFFF,
        subnqn: "nqn.2026-11.io.rewind:vol0",
        hostnqn: "nqn.2014-08.org.nvmexpress:uuid:x",
    }
    .encode(&mut data);
    let cmd = CommandBuf::connect(
        0,
        &Connect {
            recfmt: 0,
            qid: 0,
            sqsize: 31,
            cattr: 0,
            kato: 30_000,
        },
        &Sgl::Transport { length: 0 },
    );
    let slot = qp.next_slot().unwrap();
    let mut bufs = Single::new(slot, Data::Out(&data));
    let cid = qp
        .submit(cmd, Direction::Out, CONNECT_DATA_LEN as u32, 0, &mut bufs)
        .unwrap();
    let mut out = Vec::new();
    qp.take_tx(&bufs, &mut out);
    // Common header: CapsuleCmd, no digests, HLEN 72, PDO 72, PLEN 72 + 1024.
    assert_eq!(&out[..8], &[4, 0, 72, 72, 0x48, 0x04, 0, 0]);
    assert_eq!(out.len(), 72 + 1024);
    let sqe = &out[8..72];
    assert_eq!(sqe[0], FABRICS_OPCODE);
    assert_eq!(sqe[1], 0x40, "PSDT 01b");
    assert_eq!(u16::from_le_bytes([sqe[2], sqe[3]]), cid);
    assert_eq!(sqe[4], fctype::CONNECT);
    assert_eq!(sqe[24 + 15], 0x01, "in-capsule data block, offset subtype");
    assert_eq!(&sqe[24 + 8..24 + 12], &1024u32.to_le_bytes());
    assert_eq!(&sqe[44..46], &31u16.to_le_bytes());
    assert_eq!(&sqe[48..52], &30_000u32.to_le_bytes());
    peer.push(&out);
    let (sqe, data_in) = peer.next().unwrap().cmd();
    let cd = ConnectData::decode(&data_in).unwrap();
    assert_eq!(cd.subnqn, "nqn.2026-11.io.rewind:vol0");
    assert_eq!(cd.hostid, [7; 16]);
    peer.resp(&Completion {
        dw0: 0x21,
        ..Completion::success(sqe.view().cid())
    });
    qp.feed(&peer.take(), &mut bufs).unwrap();
    let c = qp.pop_completion().unwrap();
    assert_eq!((c.cid, c.cqe.dw0, c.transferred), (cid, 0x21, 1024));
    assert_eq!(qp.outstanding(), 0);
}

#[test]
fn in_capsule_write_with_digests() {
    let (mut qp, mut peer) = ready(cfg(4, true, 8192), 8192);
    let mut bufs = SlotBuffers::new(4);
    let data = pattern(4096, 1);
    let cid = submit(
        &mut qp,
        &mut bufs,
        write_cmd(),
        Direction::Out,
        data.clone(),
        9,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    // The peer's reader verified header and data digests.
    let (sqe, got) = peer.next().unwrap().cmd();
    assert_eq!(got, data);
    assert_eq!(
        sqe.view().sgl(),
        Ok(Sgl::InCapsule {
            offset: 0,
            length: 4096
        })
    );
    peer.ok(cid);
    qp.feed(&peer.take(), &mut bufs).unwrap();
    let c = qp.pop_completion().unwrap();
    assert!(c.is_success());
    assert_eq!((c.tag, c.transferred), (9, 4096));
}

#[test]
fn r2t_write_is_split_at_maxh2cdata_and_follows_each_r2t() {
    for digests in [false, true] {
        let (mut qp, mut peer) = ready(cfg(4, digests, 1024), 8192);
        let mut bufs = SlotBuffers::new(4);
        let data = pattern(40_000, 2);
        let cid = submit(
            &mut qp,
            &mut bufs,
            write_cmd(),
            Direction::Out,
            data.clone(),
            0,
        );
        to_peer(&mut qp, &bufs, &mut peer);
        let (sqe, icd) = peer.next().unwrap().cmd();
        assert!(icd.is_empty());
        assert_eq!(sqe.view().sgl(), Ok(Sgl::Transport { length: 40_000 }));
        let mut got = vec![0u8; 40_000];
        for (ttag, off, len) in [(5u16, 0u32, 20_000u32), (6, 20_000, 20_000)] {
            peer.r2t(cid, ttag, off, len);
            qp.feed(&peer.take(), &mut bufs).unwrap();
            to_peer(&mut qp, &bufs, &mut peer);
            let mut seen = 0;
            let mut sizes = Vec::new();
            while let Some(ev) = peer.next() {
                let (h, d) = ev.h2c();
                assert_eq!((h.cccid, h.ttag), (cid, ttag));
                assert_eq!(h.offset, off + seen);
                seen += h.length;
                assert_eq!(h.last, seen == len);
                got[h.offset as usize..][..d.len()].copy_from_slice(&d);
                sizes.push(h.length);
            }
            assert_eq!(sizes, vec![8192, 8192, 3616]);
        }
        assert_eq!(got, data);
        peer.ok(cid);
        qp.feed(&peer.take(), &mut bufs).unwrap();
        assert_eq!(qp.pop_completion().unwrap().transferred, 40_000);
    }
}

#[test]
fn h2c_data_is_padded_to_the_controllers_alignment() {
    let mut qp = QueuePair::new(cfg(4, true, 0));
    let mut peer = Peer::default();
    let mut out = Vec::new();
    qp.take_tx(&NoData, &mut out);
    peer.push(&out);
    let Some(FromHost::IcReq(req)) = peer.next() else {
        panic!("ICReq")
    };
    // CPDA 7: H2C data starts on a 32-byte boundary.
    let n = peer.accept(
        &req,
        &crate::nvmf::pdu::negotiate::ControllerParams {
            cpda: 7,
            ..params(8192)
        },
    );
    assert_eq!(n.cpda, 7);
    qp.feed(&peer.take(), &mut NoData).unwrap();
    let mut bufs = SlotBuffers::new(4);
    let data = pattern(5000, 8);
    let cid = submit(
        &mut qp,
        &mut bufs,
        write_cmd(),
        Direction::Out,
        data.clone(),
        0,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    peer.next().unwrap().cmd();
    peer.r2t(cid, 1, 0, 5000);
    qp.feed(&peer.take(), &mut bufs).unwrap();
    let mut wire = Vec::new();
    qp.take_tx(&bufs, &mut wire);
    assert_eq!(wire[3], 32, "PDO: header 24 + digest 4, rounded up to 32");
    peer.push(&wire);
    let (h, got) = peer.next().unwrap().h2c();
    assert_eq!((h.offset, h.length, h.last), (0, 5000, true));
    assert_eq!(got, data);
}

#[test]
fn completion_waits_until_the_data_left_the_queue() {
    let (mut qp, mut peer) = ready(cfg(4, false, 0), 8192);
    let mut bufs = SlotBuffers::new(4);
    let cid = submit(
        &mut qp,
        &mut bufs,
        write_cmd(),
        Direction::Out,
        pattern(4096, 3),
        0,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    peer.next().unwrap();
    peer.r2t(cid, 1, 0, 4096);
    // A (misbehaving) early response arrives with the R2T.
    peer.ok(cid);
    qp.feed(&peer.take(), &mut bufs).unwrap();
    assert!(qp.tx_pending() > 0);
    assert!(qp.pop_completion().is_none(), "buffer still referenced");
    // Half the H2CData goes out: still referenced.
    qp.tx_advance(100);
    assert!(qp.pop_completion().is_none());
    let mut rest = Vec::new();
    qp.take_tx(&bufs, &mut rest);
    assert_eq!(qp.pop_completion().unwrap().cid, cid);
}

#[test]
fn multi_pdu_read_with_and_without_success_flag() {
    for digests in [false, true] {
        for success in [false, true] {
            let (mut qp, mut peer) = ready(cfg(4, digests, 0), 8192);
            let mut bufs = SlotBuffers::new(4);
            let cid = submit(
                &mut qp,
                &mut bufs,
                read_cmd(0),
                Direction::In,
                vec![0; 10_000],
                4,
            );
            to_peer(&mut qp, &bufs, &mut peer);
            let (sqe, _) = peer.next().unwrap().cmd();
            assert_eq!(sqe.view().sgl(), Ok(Sgl::Transport { length: 10_000 }));
            let data = pattern(10_000, 4);
            peer.c2h(cid, 0, &data[..4096], false, false);
            peer.c2h(cid, 4096, &data[4096..8192], false, false);
            peer.c2h(cid, 8192, &data[8192..], true, success);
            // One byte at a time: framing survives any split.
            for b in peer.take() {
                qp.feed(&[b], &mut bufs).unwrap();
            }
            if !success {
                assert!(
                    qp.pop_completion().is_none(),
                    "waits for the response capsule"
                );
                peer.ok(cid);
                qp.feed(&peer.take(), &mut bufs).unwrap();
            }
            let c = qp.pop_completion().unwrap();
            assert!(c.is_success());
            assert_eq!((c.tag, c.transferred), (4, 10_000));
            assert_eq!(bufs.take(usize::from(c.slot)).unwrap(), data);
        }
    }
}

#[test]
fn large_read_lands_directly_in_the_callers_buffer() {
    let (mut qp, mut peer) = ready(cfg(4, true, 0), 8192);
    let mut bufs = SlotBuffers::new(4);
    let len = 256 * 1024;
    let cid = submit(
        &mut qp,
        &mut bufs,
        read_cmd(0),
        Direction::In,
        vec![0; len],
        0,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    peer.next().unwrap();
    let data = pattern(len, 5);
    peer.c2h(cid, 0, &data, true, true);
    let wire = peer.take();
    // Header first, then the socket would read into the command buffer.
    let header = 24 + 4;
    qp.feed(&wire[..header], &mut bufs).unwrap();
    let direct = qp.recv_buf(&mut bufs).len();
    assert_eq!(direct, len, "recv_buf is the rest of the command's buffer");
    qp.feed(&wire[header..], &mut bufs).unwrap();
    let c = qp.pop_completion().unwrap();
    assert!(c.is_success());
    assert_eq!(bufs.take(usize::from(c.slot)).unwrap(), data);
}

#[test]
fn bad_data_digest_fails_the_command_not_the_queue() {
    let (mut qp, mut peer) = ready(cfg(4, true, 0), 8192);
    let mut bufs = SlotBuffers::new(4);
    let cid = submit(
        &mut qp,
        &mut bufs,
        read_cmd(0),
        Direction::In,
        vec![0; 512],
        0,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    peer.next().unwrap();
    peer.c2h(cid, 0, &pattern(512, 6), true, true);
    let mut wire = peer.take();
    wire[28 + 100] ^= 0xFF; // a data byte (after header 24 + digest 4)
    qp.feed(&wire, &mut bufs).unwrap();
    let c = qp.pop_completion().unwrap();
    assert_eq!(c.status(), Status::TRANSIENT_TRANSPORT_ERROR);
    // The queue goes on.
    let cid = submit(&mut qp, &mut bufs, read_cmd(0), Direction::None, vec![], 0);
    to_peer(&mut qp, &bufs, &mut peer);
    peer.next().unwrap();
    peer.ok(cid);
    qp.feed(&peer.take(), &mut bufs).unwrap();
    assert!(qp.pop_completion().unwrap().is_success());

    // A bad header digest is fatal.
    let cid = submit(&mut qp, &mut bufs, read_cmd(0), Direction::None, vec![], 0);
    peer.ok(cid);
    let mut wire = peer.take();
    wire[10] ^= 1;
    let err = qp.feed(&wire, &mut bufs).unwrap_err();
    assert!(matches!(
        err,
        QueueError::Protocol(ProtocolError::Pdu(PduError::HeaderDigest { .. }))
    ));
}

#[test]
fn completions_come_back_in_the_targets_order() {
    let (mut qp, mut peer) = ready(cfg(8, false, 4096), 8192);
    let mut bufs = SlotBuffers::new(8);
    let mut cids = Vec::new();
    for tag in 0..8u64 {
        let cid = if tag % 2 == 0 {
            submit(
                &mut qp,
                &mut bufs,
                read_cmd(tag),
                Direction::In,
                vec![0; 512],
                tag,
            )
        } else {
            submit(
                &mut qp,
                &mut bufs,
                write_cmd(),
                Direction::Out,
                pattern(512, tag as u8),
                tag,
            )
        };
        cids.push(cid);
    }
    assert_eq!(
        qp.submit(read_cmd(0), Direction::None, 0, 0, &mut bufs),
        Err(SubmitError::QueueFull)
    );
    to_peer(&mut qp, &bufs, &mut peer);
    let mut n = 0;
    while peer.next().is_some() {
        n += 1;
    }
    assert_eq!(n, 8);
    for (tag, &cid) in cids.iter().enumerate().rev() {
        if tag % 2 == 0 {
            peer.c2h(cid, 0, &pattern(512, 0x40 | tag as u8), true, false);
        }
        peer.ok(cid);
    }
    qp.feed(&peer.take(), &mut bufs).unwrap();
    let mut order = Vec::new();
    while let Some(c) = qp.pop_completion() {
        assert!(c.is_success());
        if c.tag % 2 == 0 {
            assert_eq!(
                bufs.take(usize::from(c.slot)).unwrap(),
                pattern(512, 0x40 | c.tag as u8)
            );
        }
        order.push(c.tag);
    }
    assert_eq!(order, vec![7, 6, 5, 4, 3, 2, 1, 0]);
    // Completed ids are stale now.
    peer.ok(cids[0]);
    assert!(matches!(
        qp.feed(&peer.take(), &mut bufs),
        Err(QueueError::Protocol(ProtocolError::UnknownCid { .. }))
    ));
}

#[test]
fn c2h_term_req_fails_the_queue() {
    let (mut qp, mut peer) = ready(cfg(4, true, 0), 8192);
    writer::term_req(
        &mut peer.out,
        crate::nvmf::pdu::Role::Controller,
        Fes::PduSequenceError,
        0,
        &[1, 2, 3],
    );
    let err = qp.feed(&peer.take(), &mut NoData).unwrap_err();
    assert_eq!(
        err,
        QueueError::Terminated {
            fes: Fes::PduSequenceError as u16,
            fei: 0
        }
    );
    assert_eq!(qp.error(), Some(&err));
    assert!(qp.feed(&[0], &mut NoData).is_err());
    let _ = TermReq { fes: 0, fei: 0 };
}

#[test]
fn target_protocol_violations_are_typed_and_answered() {
    // (setup, violation) pairs: each must fail the queue with the error
    // and queue an H2CTermReq.
    type Case = fn(&mut Peer, u16, u16);
    let cases: [(&str, Case); 6] = [
        ("data beyond the buffer", |p, r, _| {
            p.c2h(r, 0, &[0; 1024], true, true)
        }),
        ("data out of order", |p, r, _| {
            p.c2h(r, 4, &[0; 8], true, true)
        }),
        ("R2T for a read", |p, r, _| p.r2t(r, 1, 0, 512)),
        ("R2T past the write", |p, _, w| p.r2t(w, 1, 256, 512)),
        ("C2HData for a write", |p, _, w| {
            p.c2h(w, 0, &[0; 8], true, true)
        }),
        ("response for an unknown id", |p, _, _| p.ok(0x0FFF)),
    ];
    for (what, inject) in cases {
        let (mut qp, mut peer) = ready(cfg(4, false, 0), 8192);
        let mut bufs = SlotBuffers::new(4);
        let r = submit(
            &mut qp,
            &mut bufs,
            read_cmd(0),
            Direction::In,
            vec![0; 512],
            0,
        );
        let w = submit(
            &mut qp,
            &mut bufs,
            write_cmd(),
            Direction::Out,
            vec![0; 512],
            0,
        );
        to_peer(&mut qp, &bufs, &mut peer);
        inject(&mut peer, r, w);
        let err = qp.feed(&peer.take(), &mut bufs).unwrap_err();
        assert!(matches!(err, QueueError::Protocol(_)), "{what}: {err}");
        let mut out = Vec::new();
        qp.take_tx(&bufs, &mut out);
        assert_eq!(out.first(), Some(&(PduType::H2CTermReq as u8)), "{what}");
        // The buffers come back.
        qp.abort_all();
        let mut n = 0;
        while let Some(c) = qp.pop_completion() {
            assert_eq!(c.status(), Status::ABORTED_BY_HOST);
            n += 1;
        }
        assert_eq!(n, 2, "{what}");
    }

    // An R2T for data that went in-capsule.
    let (mut qp, mut peer) = ready(cfg(4, false, 4096), 8192);
    let mut bufs = SlotBuffers::new(4);
    let w = submit(
        &mut qp,
        &mut bufs,
        write_cmd(),
        Direction::Out,
        vec![0; 512],
        0,
    );
    to_peer(&mut qp, &bufs, &mut peer);
    peer.r2t(w, 1, 0, 512);
    assert!(matches!(
        qp.feed(&peer.take(), &mut bufs),
        Err(QueueError::Protocol(ProtocolError::Unexpected { .. }))
    ));

    // Garbage framing.
    let (mut qp, _) = ready(cfg(4, false, 0), 8192);
    let err = qp.feed(&[0xEE; 64], &mut NoData).unwrap_err();
    assert_eq!(
        err,
        QueueError::Protocol(ProtocolError::Pdu(PduError::UnknownType(0xEE)))
    );
}

#[test]
fn error_status_is_delivered_as_is() {
    let (mut qp, mut peer) = ready(cfg(4, false, 0), 8192);
    let mut bufs = SlotBuffers::new(4);
    let cid = submit(
        &mut qp,
        &mut bufs,
        read_cmd(0),
        Direction::In,
        vec![0; 512],
        0,
    );
    peer.resp(&Completion {
        status: StatusField::dnr(Status::LBA_OUT_OF_RANGE),
        ..Completion::success(cid)
    });
    qp.feed(&peer.take(), &mut bufs).unwrap();
    let c = qp.pop_completion().unwrap();
    assert_eq!(c.status(), Status::LBA_OUT_OF_RANGE);
    assert!(c.cqe.status.dnr);
    assert_eq!(c.transferred, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Whatever a target sends, in whatever pieces, the host never panics,
    /// and once it reports an error it keeps reporting it.
    #[test]
    fn arbitrary_target_bytes_never_panic(
        digests in any::<bool>(),
        junk in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(1usize..64, 1..20),
        valid_prefix in any::<bool>(),
    ) {
        let (mut qp, mut peer) = ready(cfg(4, digests, 0), 8192);
        let mut bufs = SlotBuffers::new(4);
        let r = submit(&mut qp, &mut bufs, read_cmd(0), Direction::In, vec![0; 4096], 0);
        let _w = submit(&mut qp, &mut bufs, write_cmd(), Direction::Out, vec![0; 4096], 0);
        let mut wire = Vec::new();
        if valid_prefix {
            peer.c2h(r, 0, &[1; 100], false, false);
            wire = peer.take();
            // Keep some of a valid PDU, then junk.
            wire.truncate(wire.len() / 2);
        }
        wire.extend_from_slice(&junk);
        let mut rest = &wire[..];
        let mut failed = false;
        for c in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*c).min(rest.len());
            let r = qp.feed(&rest[..n], &mut bufs);
            if failed {
                prop_assert!(r.is_err());
            }
            failed |= r.is_err();
            rest = &rest[n..];
            let mut out = Vec::new();
            qp.take_tx(&bufs, &mut out);
        }
        qp.abort_all();
    }
}
