//! The controller end of one connection, driven by hand with the codec:
//! tests script exactly which PDUs the "target" sends and inspect what the
//! host sent.

use crate::nvmf::command::CommandBuf;
use crate::nvmf::completion::Completion;
use crate::nvmf::pdu::negotiate::{accept_ic_req, ControllerParams};
use crate::nvmf::pdu::{
    writer, DataHeader, IcReq, Negotiated, PduHeader, PduReader, PduWriter, Poll, R2t, Role,
    TermReq,
};

/// A PDU the host sent, owned.
#[derive(Debug, Clone)]
pub enum FromHost {
    IcReq(IcReq),
    Cmd { sqe: CommandBuf, data: Vec<u8> },
    H2C { hdr: DataHeader, data: Vec<u8> },
    Term(#[allow(dead_code)] TermReq),
}

impl FromHost {
    pub fn cmd(self) -> (CommandBuf, Vec<u8>) {
        match self {
            FromHost::Cmd { sqe, data } => (sqe, data),
            other => panic!("expected a command capsule, got {other:?}"),
        }
    }
    pub fn h2c(self) -> (DataHeader, Vec<u8>) {
        match self {
            FromHost::H2C { hdr, data } => (hdr, data),
            other => panic!("expected H2CData, got {other:?}"),
        }
    }
}

/// The controller end of one connection, driven by the test.
#[derive(Debug)]
pub struct Peer {
    pub reader: PduReader,
    pub writer: PduWriter,
    inbuf: Vec<u8>,
    pub out: Vec<u8>,
}

impl Default for Peer {
    fn default() -> Self {
        Peer {
            reader: PduReader::new(Role::Controller, 1 << 22),
            writer: PduWriter::default(),
            inbuf: Vec::new(),
            out: Vec::new(),
        }
    }
}

impl Peer {
    pub fn push(&mut self, bytes: &[u8]) {
        self.inbuf.extend_from_slice(bytes);
    }
    /// The next complete PDU from the host.
    pub fn next(&mut self) -> Option<FromHost> {
        let (ev, len) = match self.reader.poll(&self.inbuf).expect("host PDU decodes") {
            Poll::NeedMore(_) => return None,
            Poll::Pdu(p) => {
                let ev = match p.header {
                    PduHeader::IcReq(r) => FromHost::IcReq(r),
                    PduHeader::CapsuleCmd(c) => FromHost::Cmd {
                        sqe: c.to_buf(),
                        data: p.data.to_vec(),
                    },
                    PduHeader::H2CData(d) => FromHost::H2C {
                        hdr: d,
                        data: p.data.to_vec(),
                    },
                    PduHeader::H2CTermReq(t) => FromHost::Term(t),
                    other => panic!("host sent {other:?}"),
                };
                (ev, p.len)
            }
        };
        self.inbuf.drain(..len);
        Some(ev)
    }
    /// Answers an ICReq with `params`; returns what was negotiated.
    pub fn accept(&mut self, req: &IcReq, params: &ControllerParams) -> Negotiated {
        let (resp, n) = accept_ic_req(req, params).expect("ICReq acceptable");
        writer::ic_resp(&mut self.out, &resp);
        self.reader.set_negotiated(n);
        self.writer = PduWriter::new(Role::Controller, &n);
        n
    }
    pub fn resp(&mut self, cqe: &Completion) {
        self.writer.capsule_resp(&mut self.out, cqe);
    }
    pub fn ok(&mut self, cid: u16) {
        self.resp(&Completion::success(cid));
    }
    pub fn c2h(&mut self, cid: u16, offset: u32, data: &[u8], last: bool, success: bool) {
        let d = DataHeader {
            cccid: cid,
            ttag: 0,
            offset,
            length: 0,
            last,
            success,
        };
        self.writer.c2h_data(&mut self.out, &d, data);
    }
    pub fn r2t(&mut self, cid: u16, ttag: u16, offset: u32, length: u32) {
        self.writer.r2t(
            &mut self.out,
            &R2t {
                cccid: cid,
                ttag,
                offset,
                length,
            },
        );
    }
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

pub fn params(maxh2cdata: u32) -> ControllerParams {
    ControllerParams {
        hdgst: true,
        ddgst: true,
        cpda: 0,
        maxh2cdata,
    }
}
