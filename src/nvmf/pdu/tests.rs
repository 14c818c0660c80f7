use proptest::prelude::*;

use super::negotiate::{accept_ic_req, accept_ic_resp, ControllerParams};
use super::*;
use crate::nvmf::command::{CommandBuf, ReadWrite, Sgl};
use crate::nvmf::completion::Completion;
use crate::nvmf::status::Status;

fn neg(hdgst: bool, ddgst: bool, hpda: u8, cpda: u8) -> Negotiated {
    Negotiated {
        hdgst,
        ddgst,
        hpda,
        cpda,
        maxh2cdata: 65536,
        maxr2t: 0,
    }
}

fn target(n: Negotiated) -> PduReader {
    let mut r = PduReader::new(Role::Controller, 1 << 20);
    r.set_negotiated(n);
    r
}

fn host(n: Negotiated) -> PduReader {
    let mut r = PduReader::new(Role::Host, 1 << 20);
    r.set_negotiated(n);
    r
}

fn one(r: &PduReader, buf: &[u8]) -> Pdu<'static> {
    let leaked: &'static [u8] = Box::leak(buf.to_vec().into_boxed_slice());
    match r.poll(leaked) {
        Ok(Poll::Pdu(p)) => {
            assert_eq!(p.len, buf.len());
            p
        }
        other => panic!("expected a PDU, got {other:?}"),
    }
}

fn sqe() -> CommandBuf {
    let rw = ReadWrite {
        slba: 8,
        nlb0: 0,
        fua: false,
        lr: false,
        prinfo: 0,
        dtype: 0,
    };
    CommandBuf::write(
        0x42,
        1,
        &rw,
        &Sgl::InCapsule {
            offset: 0,
            length: 512,
        },
    )
}

#[test]
fn ic_pdus_match_nvme_tcp_h_layout() {
    let mut out = Vec::new();
    writer::ic_req(
        &mut out,
        &IcReq {
            pfv: 0,
            hpda: 3,
            hdgst: true,
            ddgst: false,
            maxr2t: 7,
        },
    );
    assert_eq!(out.len(), 128);
    // struct nvme_tcp_icreq_pdu: hdr, pfv 8, hpda 10, digest 11, maxr2t 12
    assert_eq!(&out[..8], &[0x00, 0, 128, 0, 128, 0, 0, 0]);
    assert_eq!(&out[8..16], &[0, 0, 3, 1, 7, 0, 0, 0]);
    assert!(out[16..].iter().all(|&b| b == 0));
    let r = PduReader::new(Role::Controller, 8192);
    let p = one(&r, &out);
    assert_eq!(
        p.header,
        PduHeader::IcReq(IcReq {
            pfv: 0,
            hpda: 3,
            hdgst: true,
            ddgst: false,
            maxr2t: 7
        })
    );

    out.clear();
    let resp = IcResp {
        pfv: 0,
        cpda: 0,
        hdgst: true,
        ddgst: true,
        maxh2cdata: 131072,
    };
    writer::ic_resp(&mut out, &resp);
    // struct nvme_tcp_icresp_pdu: pfv 8, cpda 10, digest 11, maxdata 12
    assert_eq!(&out[..8], &[0x01, 0, 128, 0, 128, 0, 0, 0]);
    assert_eq!(&out[8..16], &[0, 0, 0, 3, 0, 0, 2, 0]);
    let r = PduReader::new(Role::Host, 8192);
    assert_eq!(one(&r, &out).header, PduHeader::IcResp(resp));
}

#[test]
fn capsule_and_data_pdus_match_nvme_tcp_h_layout() {
    let w = PduWriter::new(Role::Host, &neg(true, true, 0, 0));
    let mut out = Vec::new();
    let data = [0xABu8; 512];
    w.capsule_cmd(&mut out, sqe().raw(), &data);
    // hdr(8) + sqe(64) = hlen 72, hdgst 4, pdo 76, data 512, ddgst 4
    assert_eq!(&out[..4], &[0x04, flags::HDGSTF | flags::DDGSTF, 72, 76]);
    assert_eq!(
        u32::from_le_bytes(out[4..8].try_into().unwrap()),
        76 + 512 + 4
    );
    assert_eq!(&out[8..72], sqe().raw());
    assert_eq!(
        u32::from_le_bytes(out[72..76].try_into().unwrap()),
        crate::checksum::crc32c(&out[..72])
    );
    assert_eq!(&out[76..588], &data);
    assert_eq!(
        u32::from_le_bytes(out[588..592].try_into().unwrap()),
        crate::checksum::crc32c(&data)
    );

    // struct nvme_tcp_data_pdu: command_id 8, ttag 10, data_offset 12, data_length 16
    out.clear();
    let w = PduWriter::new(Role::Host, &neg(false, false, 0, 0));
    let d = DataHeader {
        cccid: 0x1234,
        ttag: 0x5678,
        offset: 4096,
        length: 0,
        last: true,
        success: false,
    };
    w.h2c_data(&mut out, &d, &[1, 2, 3, 4]);
    assert_eq!(
        &out[..24],
        &[
            0x06,
            flags::LAST_PDU,
            24,
            24,
            28,
            0,
            0,
            0,
            0x34,
            0x12,
            0x78,
            0x56,
            0,
            0x10,
            0,
            0,
            4,
            0,
            0,
            0,
            0,
            0,
            0,
            0
        ]
    );
    // struct nvme_tcp_r2t_pdu: same offsets
    out.clear();
    w.r2t(
        &mut out,
        &R2t {
            cccid: 1,
            ttag: 2,
            offset: 3,
            length: 4,
        },
    );
    assert_eq!(
        &out,
        &[0x09, 0, 24, 0, 24, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
    );
    // struct nvme_tcp_rsp_pdu: cqe at 8
    out.clear();
    let cqe = Completion::error(9, Status::LBA_OUT_OF_RANGE);
    w.capsule_resp(&mut out, &cqe);
    assert_eq!(&out[..8], &[0x05, 0, 24, 0, 24, 0, 0, 0]);
    assert_eq!(&out[8..], &cqe.encode());
    // struct nvme_tcp_term_pdu: fes 8, fei 10 (4 bytes), hlen 24, error data after
    out.clear();
    writer::term_req(
        &mut out,
        Role::Controller,
        Fes::InvalidHeaderField,
        3,
        &[0xEE; 200],
    );
    assert_eq!(out.len(), 24 + 128);
    assert_eq!(&out[..12], &[0x03, 0, 24, 0, 152, 0, 0, 0, 1, 0, 3, 0]);
}

#[test]
fn every_pdu_round_trips_with_every_digest_and_alignment() {
    for (hd, dd, pda) in [
        (false, false, 0),
        (true, false, 0),
        (false, true, 0),
        (true, true, 0),
        (true, true, 31),
        (false, false, 3),
    ] {
        let n = neg(hd, dd, pda, pda);
        let hw = PduWriter::new(Role::Host, &n);
        let cw = PduWriter::new(Role::Controller, &n);
        let (t, h) = (target(n), host(n));
        let mut out = Vec::new();

        let data: Vec<u8> = (0..777u32).map(|i| i as u8).collect();
        hw.capsule_cmd(&mut out, sqe().raw(), &data);
        let p = one(&t, &out);
        match p.header {
            PduHeader::CapsuleCmd(c) => assert_eq!(c.raw(), sqe().raw()),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.data, &data[..]);
        if pda > 0 {
            assert_eq!(out[3] as usize % Negotiated::pda_bytes(pda), 0);
        }

        out.clear();
        hw.capsule_cmd(&mut out, sqe().raw(), &[]);
        let p = one(&t, &out);
        assert!(p.data.is_empty());

        out.clear();
        let d = DataHeader {
            cccid: 7,
            ttag: 9,
            offset: 512,
            length: 0,
            last: true,
            success: false,
        };
        hw.h2c_data(&mut out, &d, &data);
        let p = one(&t, &out);
        assert_eq!(
            p.header,
            PduHeader::H2CData(DataHeader { length: 777, ..d })
        );
        assert_eq!(p.data, &data[..]);

        out.clear();
        let d = DataHeader {
            cccid: 7,
            ttag: 0,
            offset: 0,
            length: 0,
            last: true,
            success: true,
        };
        cw.c2h_data(&mut out, &d, &data);
        let p = one(&h, &out);
        assert_eq!(
            p.header,
            PduHeader::C2HData(DataHeader { length: 777, ..d })
        );
        assert_eq!(p.data, &data[..]);

        out.clear();
        let cqe = Completion {
            dw0: 1,
            dw1: 2,
            sqhd: 3,
            sqid: 4,
            cid: 5,
            status: Default::default(),
        };
        cw.capsule_resp(&mut out, &cqe);
        assert_eq!(one(&h, &out).header, PduHeader::CapsuleResp(cqe));

        out.clear();
        let r = R2t {
            cccid: 5,
            ttag: 6,
            offset: 8192,
            length: 65536,
        };
        cw.r2t(&mut out, &r);
        assert_eq!(one(&h, &out).header, PduHeader::R2T(r));

        out.clear();
        writer::term_req(&mut out, Role::Host, Fes::HeaderDigestError, 0, &[1, 2, 3]);
        let p = one(&t, &out);
        assert_eq!(p.header, PduHeader::H2CTermReq(TermReq { fes: 3, fei: 0 }));
        assert_eq!(p.data, &[1, 2, 3]);
    }
}

#[test]
fn header_first_reading_with_split_data_digest() {
    let n = neg(true, true, 0, 0);
    let t = target(n);
    let mut out = Vec::new();
    let data = vec![0x5Au8; 5000];
    let d = DataHeader {
        cccid: 1,
        ttag: 2,
        offset: 0,
        length: 0,
        last: true,
        success: false,
    };
    PduWriter::new(Role::Host, &n).h2c_data(&mut out, &d, &data);
    assert_eq!(t.poll_header(&out[..10]), Ok(HeaderPoll::NeedMore(18)));
    let HeaderPoll::Header { header, frame } = t.poll_header(&out[..28]).unwrap() else {
        panic!("header expected")
    };
    assert_eq!(frame.data, 28..5028);
    let mut dg = digest::DataDigest::new();
    for chunk in out[frame.data.clone()].chunks(1000) {
        dg.update(chunk);
    }
    let tail: [u8; 4] = out[5028..5032].try_into().unwrap();
    assert_eq!(frame.verify_data(&header, dg.finish(), tail), Ok(()));
    let e = frame
        .verify_data(&header, dg.finish() ^ 1, tail)
        .unwrap_err();
    assert!(matches!(
        e,
        PduError::DataDigest {
            cccid: Some(1),
            len: 5032,
            ..
        }
    ));
    assert_eq!(e.fatal(), None);
}

#[test]
fn need_more_counts_are_exact() {
    let n = neg(true, false, 0, 0);
    let t = target(n);
    let mut out = Vec::new();
    PduWriter::new(Role::Host, &n).capsule_cmd(&mut out, sqe().raw(), &[9; 100]);
    for k in 0..out.len() {
        let expected = if k < CH_LEN {
            CH_LEN - k
        } else {
            out.len() - k
        };
        assert_eq!(t.poll(&out[..k]), Ok(Poll::NeedMore(expected)), "at {k}");
    }
}

#[test]
fn digest_errors_are_detected() {
    let n = neg(true, true, 0, 0);
    let t = target(n);
    let mut out = Vec::new();
    PduWriter::new(Role::Host, &n).capsule_cmd(&mut out, sqe().raw(), &[1; 64]);
    let mut bad = out.clone();
    bad[20] ^= 1; // inside the SQE: header digest
    let e = t.poll(&bad).unwrap_err();
    assert!(matches!(e, PduError::HeaderDigest { .. }));
    assert_eq!(
        e.fatal(),
        Some(FatalError {
            fes: Fes::HeaderDigestError,
            fei: 0
        })
    );
    let mut bad = out.clone();
    bad[80] ^= 1; // inside the data
    let e = t.poll(&bad).unwrap_err();
    assert!(matches!(
        e,
        PduError::DataDigest {
            cccid: Some(0x42),
            ..
        }
    ));
    let mut bad = out.clone();
    bad[1] &= !flags::HDGSTF; // digest negotiated but flag missing
    assert_eq!(
        t.poll(&bad).unwrap_err().fatal(),
        Some(FatalError {
            fes: Fes::InvalidHeaderField,
            fei: 1
        })
    );
    let mut bad = out.clone();
    bad[1] &= !flags::DDGSTF;
    assert!(matches!(t.poll(&bad), Err(PduError::Flags { .. })));
}

#[test]
fn header_field_errors_name_the_field() {
    let n = neg(false, false, 0, 0);
    let t = target(n);
    let w = PduWriter::new(Role::Host, &n);
    let mut cmd = Vec::new();
    w.capsule_cmd(&mut cmd, sqe().raw(), &[1; 16]);
    let fatal = |buf: &[u8]| t.poll(buf).unwrap_err().fatal().unwrap();
    let ihf = |fei| FatalError {
        fes: Fes::InvalidHeaderField,
        fei,
    };

    let mut b = cmd.clone();
    b[0] = 0x08;
    assert_eq!(fatal(&b), ihf(0));
    b[0] = 0x05; // CapsuleResp sent to a controller
    assert_eq!(fatal(&b), ihf(0));
    let mut b = cmd.clone();
    b[2] = 73;
    assert_eq!(fatal(&b), ihf(2));
    let mut b = cmd.clone();
    b[3] = 70; // not 4-aligned... and inside the header
    assert_eq!(fatal(&b), ihf(3));
    b[3] = 0;
    assert_eq!(fatal(&b), ihf(3));
    let mut b = cmd.clone();
    b[4] = 60; // plen below hlen
    assert_eq!(fatal(&b), ihf(4));
    let mut b = Vec::new();
    w.h2c_data(
        &mut b,
        &DataHeader {
            length: 0,
            ..Default::default()
        },
        &[1; 8],
    );
    b[16] = 9; // DATAL disagrees with PLEN
    assert_eq!(fatal(&b), ihf(16));

    // a CapsuleResp must not carry data
    let h = host(n);
    let mut b = Vec::new();
    PduWriter::new(Role::Controller, &n).capsule_resp(&mut b, &Completion::success(1));
    b[4] = 28;
    b.extend_from_slice(&[0; 4]);
    assert_eq!(h.poll(&b).unwrap_err().fatal().unwrap(), ihf(4));
    // SUCCESS without LAST_PDU
    let mut b = Vec::new();
    PduWriter::new(Role::Controller, &n).c2h_data(
        &mut b,
        &DataHeader {
            success: true,
            last: true,
            ..Default::default()
        },
        &[1],
    );
    b[1] &= !flags::LAST_PDU;
    assert_eq!(h.poll(&b).unwrap_err().fatal().unwrap(), ihf(1));
}

#[test]
fn limits_are_enforced_from_the_common_header() {
    let n = neg(false, false, 0, 0);
    let mut t = target(n);
    t.set_max_data(4096);
    // only 8 bytes of a PDU claiming 1 MiB of data: rejected, not waited for
    let ch = CommonHeader {
        pdu_type: 4,
        flags: 0,
        hlen: 72,
        pdo: 72,
        plen: 72 + (1 << 20),
    };
    let e = t.poll(&ch.encode()).unwrap_err();
    assert_eq!(
        e.fatal(),
        Some(FatalError {
            fes: Fes::DataTransferLimitExceeded,
            fei: 0
        })
    );
    let ch = CommonHeader {
        pdu_type: 4,
        flags: 0,
        hlen: 72,
        pdo: 72,
        plen: u32::MAX,
    };
    assert!(t.poll(&ch.encode()).is_err());
    // H2CData above MAXH2CDATA
    let mut n2 = n;
    n2.maxh2cdata = 4096;
    let t2 = target(n2);
    let mut b = Vec::new();
    PduWriter::new(Role::Host, &n2).h2c_data(&mut b, &DataHeader::default(), &[0; 4100]);
    assert!(matches!(
        t2.poll(&b),
        Err(PduError::DataLimit {
            len: 4100,
            max: 4096,
            ..
        })
    ));
    // termination requests carry at most 128 bytes
    let ch = CommonHeader {
        pdu_type: 2,
        flags: 0,
        hlen: 24,
        pdo: 0,
        plen: 153,
    };
    assert!(matches!(t.poll(&ch.encode()), Err(PduError::Plen { .. })));
}

#[test]
fn sequence_is_enforced() {
    let mut r = PduReader::new(Role::Controller, 8192);
    let mut cmd = Vec::new();
    PduWriter::default().capsule_cmd(&mut cmd, sqe().raw(), &[]);
    let e = r.poll(&cmd).unwrap_err();
    assert_eq!(
        e.fatal(),
        Some(FatalError {
            fes: Fes::PduSequenceError,
            fei: 0
        })
    );
    // termination requests are accepted before initialization
    let mut term = Vec::new();
    writer::term_req(&mut term, Role::Host, Fes::PduSequenceError, 0, &[]);
    assert!(matches!(r.poll(&term), Ok(Poll::Pdu(_))));
    let mut ic = Vec::new();
    writer::ic_req(&mut ic, &IcReq::new(false, false));
    assert!(matches!(r.poll(&ic), Ok(Poll::Pdu(_))));
    r.set_negotiated(neg(false, false, 0, 0));
    assert!(matches!(
        r.poll(&ic),
        Err(PduError::Sequence(PduType::IcReq))
    ));
    assert!(matches!(r.poll(&cmd), Ok(Poll::Pdu(_))));
}

#[test]
fn negotiation_follows_the_spec_and_linux() {
    let ours = ControllerParams {
        hdgst: true,
        ddgst: false,
        cpda: 0,
        maxh2cdata: 131072,
    };
    let req = IcReq::new(true, true);
    let (resp, n) = accept_ic_req(&req, &ours).unwrap();
    assert_eq!(
        resp,
        IcResp {
            pfv: 0,
            cpda: 0,
            hdgst: true,
            ddgst: false,
            maxh2cdata: 131072
        }
    );
    assert!(n.hdgst && !n.ddgst);
    assert_eq!(accept_ic_resp(&req, &resp), Ok(n));

    let bad = IcReq { pfv: 1, ..req };
    let e = accept_ic_req(&bad, &ours).unwrap_err();
    assert_eq!(
        e.fatal(),
        Some(FatalError {
            fes: Fes::UnsupportedParameter,
            fei: 8
        })
    );
    let bad = IcReq { hpda: 32, ..req };
    assert_eq!(
        accept_ic_req(&bad, &ours).unwrap_err().fatal().unwrap().fei,
        10
    );
    let odd = ControllerParams {
        maxh2cdata: 1001,
        ..ours
    };
    assert_eq!(accept_ic_req(&req, &odd).unwrap().0.maxh2cdata, 4096);

    for bad in [
        IcResp { pfv: 1, ..resp },
        IcResp { cpda: 32, ..resp },
        IcResp {
            maxh2cdata: 4094,
            ..resp
        },
        IcResp {
            maxh2cdata: 2048,
            ..resp
        },
    ] {
        assert!(accept_ic_resp(&req, &bad).is_err(), "{bad:?}");
    }
    let plain = IcReq::new(false, false);
    assert!(
        accept_ic_resp(&plain, &resp).is_err(),
        "digest the host did not ask for"
    );
}

fn stream(n: &Negotiated) -> (Vec<u8>, usize) {
    let w = PduWriter::new(Role::Host, n);
    let mut out = Vec::new();
    w.capsule_cmd(&mut out, sqe().raw(), &[3; 300]);
    w.capsule_cmd(&mut out, sqe().raw(), &[]);
    w.h2c_data(
        &mut out,
        &DataHeader {
            cccid: 1,
            ttag: 1,
            offset: 0,
            length: 0,
            last: false,
            success: false,
        },
        &[4; 1000],
    );
    w.h2c_data(
        &mut out,
        &DataHeader {
            cccid: 1,
            ttag: 1,
            offset: 1000,
            length: 0,
            last: true,
            success: false,
        },
        &[5; 24],
    );
    writer::term_req(&mut out, Role::Host, Fes::PduSequenceError, 0, &[6; 30]);
    (out, 5)
}

proptest! {
    #[test]
    fn any_chunking_yields_the_same_pdus(cuts in proptest::collection::vec(1usize..400, 1..40), hd in any::<bool>(), dd in any::<bool>(), pda in 0u8..4) {
        let n = neg(hd, dd, pda, pda);
        let t = target(n);
        let (all, count) = stream(&n);
        // reference: whole buffer
        let mut reference = Vec::new();
        let mut at = 0;
        while at < all.len() {
            match t.poll(&all[at..]).unwrap() {
                Poll::Pdu(p) => { reference.push((p.header.cccid(), p.data.to_vec())); at += p.len; }
                Poll::NeedMore(_) => panic!("whole stream short"),
            }
        }
        prop_assert_eq!(reference.len(), count);
        // chunked: the bytes arrive in pieces; the caller keeps a buffer
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        let mut i = 0;
        while fed < all.len() {
            let step = cuts[i % cuts.len()].min(all.len() - fed);
            i += 1;
            buf.extend_from_slice(&all[fed..fed + step]);
            fed += step;
            loop {
                match t.poll(&buf).unwrap() {
                    Poll::Pdu(p) => {
                        got.push((p.header.cccid(), p.data.to_vec()));
                        let len = p.len;
                        buf.drain(..len);
                    }
                    Poll::NeedMore(k) => { prop_assert!(k > 0); break; }
                }
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, reference);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), hd in any::<bool>(), dd in any::<bool>()) {
        for role in [Role::Controller, Role::Host] {
            let mut r = PduReader::new(role, 4096);
            let _ = r.poll(&bytes);
            let _ = r.poll_header(&bytes);
            r.set_negotiated(neg(hd, dd, 0, 1));
            let _ = r.poll(&bytes);
            let _ = r.poll_header(&bytes);
        }
    }

    #[test]
    fn flipping_any_header_bit_is_caught_with_header_digests(bit in 0usize..(72 * 8)) {
        let n = neg(true, false, 0, 0);
        let t = target(n);
        let mut out = Vec::new();
        PduWriter::new(Role::Host, &n).capsule_cmd(&mut out, sqe().raw(), &[]);
        out[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(!matches!(t.poll(&out), Ok(Poll::Pdu(_))));
    }
}
