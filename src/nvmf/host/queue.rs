//! The sans-IO NVMe/TCP host queue pair: the protocol state of one
//! connection (one NVMe queue) with no socket, thread or clock. Commands go
//! in ([`QueuePair::submit`]), bytes for the socket come out
//! ([`QueuePair::tx_slices`] / [`QueuePair::write_to`]), bytes from the
//! socket go in ([`QueuePair::recv_buf`] + [`QueuePair::received`], or
//! [`QueuePair::read_from`]), completions come out
//! ([`QueuePair::pop_completion`]).
//!
//! It sends the ICReq and checks the ICResp; puts write data in the command
//! capsule up to the in-capsule limit, otherwise answers each R2T with
//! H2CData PDUs of at most MAXH2CDATA bytes covering exactly the R2T's
//! window; lands C2HData in the command's buffer (directly from the socket
//! for large transfers) and completes on a SUCCESS-flagged last PDU without
//! waiting for a response capsule; computes and checks header and data
//! digests when negotiated; completes commands in whatever order the target
//! answers them.
//!
//! Invariant: nothing the target sends can make it panic or touch memory
//! outside a command's registered buffer. Every PDU is checked against the
//! command it names (outstanding id, direction, in-order offsets within the
//! transfer); the first violation, C2HTermReq or close fails the queue for
//! good with a typed [`QueueError`] (queuing an H2CTermReq where the
//! transport calls for one). Steady-state submission and completion
//! allocate nothing: slots, the transmit queue, the receive buffer and the
//! completion queue are sized once.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

use super::buffers::DataBuffers;
use super::error::{HostError, ProtocolError, QueueError, SubmitError};
use super::slots::{Direction, Slots};
use super::tx::TxQueue;
use crate::nvmf::command::{flags as sqe_flags, CommandBuf, Sgl};
use crate::nvmf::completion::{Completion, StatusField};
use crate::nvmf::pdu::digest::{self, DataDigest};
use crate::nvmf::pdu::negotiate::accept_ic_resp;
use crate::nvmf::pdu::{
    writer, DataHeader, HeaderPoll, IcReq, IcResp, Negotiated, PduHeader, PduReader, PduType,
    PduWriter, Poll, R2t, Role, TermReq, DIGEST_LEN,
};
use crate::nvmf::status::Status;

/// Receive buffer size: many small PDUs per socket read.
const RX_CAP: usize = 64 * 1024;
/// Data left in a C2HData PDU from which the socket reads straight into
/// the command's buffer (when nothing else is buffered).
const DIRECT_MIN: usize = 8 * 1024;
/// Slices handed to one vectored write.
const IOV_BATCH: usize = 64;

/// What one queue is set up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Queue id: 0 admin, otherwise I/O.
    pub qid: u16,
    /// Commands in flight at most (1..=4096).
    pub depth: u16,
    /// Ask for (and insist on) header digests.
    pub hdr_digest: bool,
    /// Ask for (and insist on) data digests.
    pub data_digest: bool,
    /// Most write data carried in the command capsule (8192 on the admin
    /// queue, IOCCSZ * 16 - 64 on I/O queues, 0 to always wait for R2T).
    pub in_capsule_max: u32,
}

/// A finished command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCompletion {
    pub cid: u16,
    /// The slot the command used (its buffer's index).
    pub slot: u16,
    /// The caller's tag from [`QueuePair::submit`].
    pub tag: u64,
    pub opcode: u8,
    /// The response capsule's CQE, or one the host made up: success for a
    /// C2HData with the SUCCESS flag, transient transport error after a data
    /// digest mismatch, aborted by host from [`QueuePair::abort_all`].
    pub cqe: Completion,
    /// Data bytes moved: received for reads, requested by the target (or
    /// sent in-capsule) for writes.
    pub transferred: u32,
}

impl HostCompletion {
    pub fn status(&self) -> Status {
        self.cqe.status.status
    }
    pub fn is_success(&self) -> bool {
        self.status().is_success()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitIcResp,
    Ready,
    Failed(QueueError),
}

#[derive(Debug, Clone, Copy)]
enum Rx {
    /// Between PDUs, or in a header.
    Header,
    /// In the data of a C2HData PDU.
    Data {
        slot: u16,
        remaining: u32,
        last: bool,
        success: bool,
        has_digest: bool,
        digest: DataDigest,
    },
    /// In the data digest after C2HData.
    Digest {
        slot: u16,
        last: bool,
        success: bool,
        computed: u32,
        got: [u8; DIGEST_LEN],
        have: u8,
    },
}

/// A received non-data PDU, owned.
#[derive(Debug, Clone, Copy)]
enum Event {
    IcResp(IcResp),
    Term(TermReq),
    Resp(Completion),
    R2t(R2t),
    Other(PduType),
}

/// One connection's protocol state (see the module documentation).
#[derive(Debug)]
pub struct QueuePair {
    cfg: QueueConfig,
    state: State,
    ic_req: IcReq,
    negotiated: Option<Negotiated>,
    reader: PduReader,
    writer: PduWriter,
    slots: Slots,
    tx: TxQueue,
    rx: Vec<u8>,
    rx_start: usize,
    rx_end: usize,
    rx_state: Rx,
    /// The last `recv_buf` handed out a command buffer.
    direct: bool,
    done: VecDeque<HostCompletion>,
}

impl QueuePair {
    /// A queue pair for a fresh connection; its first output is the ICReq.
    pub fn new(cfg: QueueConfig) -> Self {
        let slots = Slots::new(usize::from(cfg.depth));
        let depth = slots.depth();
        let ic_req = IcReq::new(cfg.hdr_digest, cfg.data_digest);
        let mut tx = TxQueue::with_capacity(4096 + depth * 128, 4 * depth + 8);
        let start = tx.buf().len();
        writer::ic_req(tx.buf(), &ic_req);
        tx.commit(start);
        QueuePair {
            cfg,
            state: State::AwaitIcResp,
            ic_req,
            negotiated: None,
            reader: PduReader::new(Role::Host, u32::MAX),
            writer: PduWriter::default(),
            slots,
            tx,
            rx: vec![0; RX_CAP],
            rx_start: 0,
            rx_end: 0,
            rx_state: Rx::Header,
            direct: false,
            done: VecDeque::with_capacity(depth),
        }
    }

    pub fn qid(&self) -> u16 {
        self.cfg.qid
    }
    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }
    /// The ICResp arrived and was accepted.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }
    /// Why the queue failed, if it did.
    pub fn error(&self) -> Option<&QueueError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }
    /// Connection parameters, once the ICResp is in.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }
    /// Changes the in-capsule data limit for commands submitted from now on.
    pub fn set_in_capsule_max(&mut self, bytes: u32) {
        self.cfg.in_capsule_max = bytes;
    }
    /// Commands the queue can hold in flight.
    pub fn depth(&self) -> usize {
        self.slots.depth()
    }
    /// Commands in flight (submitted, not yet popped as completions).
    pub fn outstanding(&self) -> usize {
        self.slots.outstanding()
    }
    /// The slot the next [`QueuePair::submit`] uses: register the command's
    /// buffer there first.
    pub fn next_slot(&self) -> Option<usize> {
        self.slots.next_free()
    }

    // ---- submission -----------------------------------------------------

    /// Queues command `cmd` with `len` bytes of data in direction `dir`,
    /// whose buffer `bufs` holds at [`QueuePair::next_slot`]. The queue sets
    /// the command id, PSDT and the data SGL (in-capsule or transport);
    /// everything else is the caller's. Returns the command id.
    pub fn submit<D: DataBuffers + ?Sized>(
        &mut self,
        cmd: CommandBuf,
        dir: Direction,
        len: u32,
        tag: u64,
        bufs: &mut D,
    ) -> Result<u16, SubmitError> {
        match self.state {
            State::Ready => {}
            State::AwaitIcResp => return Err(SubmitError::NotReady),
            State::Failed(_) => return Err(SubmitError::Failed),
        }
        let i = self.slots.next_free().ok_or(SubmitError::QueueFull)?;
        let (dir, len) = match dir {
            Direction::None => (Direction::None, 0),
            _ if len == 0 => (Direction::None, 0),
            d => (d, len),
        };
        let have = match dir {
            Direction::None => 0,
            Direction::Out => bufs.outgoing(i).len(),
            Direction::In => bufs.incoming(i).len(),
        };
        if have < len as usize {
            return Err(SubmitError::ShortBuffer);
        }
        let in_capsule = dir == Direction::Out && len <= self.cfg.in_capsule_max;
        let i = self.slots.alloc().ok_or(SubmitError::QueueFull)?;
        let Some(slot) = self.slots.get_mut(i) else {
            return Err(SubmitError::QueueFull);
        };
        slot.tag = tag;
        slot.opcode = cmd.view().opcode();
        slot.dir = dir;
        slot.len = len;
        slot.in_capsule = in_capsule;
        slot.done_bytes = if in_capsule { len } else { 0 };
        slot.tx_refs = u32::from(in_capsule);
        let cid = slot.cid(i);
        let sgl = if in_capsule {
            Sgl::InCapsule {
                offset: 0,
                length: len,
            }
        } else {
            Sgl::Transport { length: len }
        };
        let fl = (cmd.view().flags() & !sqe_flags::PSDT_MASK) | sqe_flags::SGL_METABUF;
        let cmd = cmd.set_flags(fl).set_cid(cid).set_sgl(&sgl);
        let icd = if in_capsule { len as usize } else { 0 };
        let start = self.tx.buf().len();
        self.writer
            .capsule_cmd_header(self.tx.buf(), cmd.raw(), icd);
        self.tx.commit(start);
        if in_capsule {
            self.tx.push_data(i as u16, 0, len);
            if self.writer.data_digest() {
                let crc = digest::data_digest(bufs.outgoing(i).get(..icd).unwrap_or(&[]));
                let start = self.tx.buf().len();
                self.writer.finish_data(self.tx.buf(), crc);
                self.tx.commit(start);
            }
        }
        Ok(cid)
    }

    /// Completes every command in flight with "command aborted by host"
    /// and drops unsent output (after the connection is given up, to get
    /// the commands' buffers back).
    pub fn abort_all(&mut self) {
        let slots = &mut self.slots;
        self.tx.clear(|s| {
            if let Some(slot) = slots.get_mut(usize::from(s)) {
                slot.tx_refs = slot.tx_refs.saturating_sub(1);
            }
        });
        let active: Vec<usize> = self.slots.active().collect();
        for i in active {
            if let Some(s) = self.slots.get_mut(i) {
                s.tx_refs = 0;
                let cqe = Completion {
                    sqid: self.cfg.qid,
                    status: StatusField::dnr(Status::ABORTED_BY_HOST),
                    ..Completion::success(s.cid(i))
                };
                Self::finish(&mut self.slots, &mut self.done, i, cqe);
            }
        }
        self.rx_state = Rx::Header;
    }

    // ---- completions ----------------------------------------------------

    pub fn pop_completion(&mut self) -> Option<HostCompletion> {
        self.done.pop_front()
    }
    /// Moves every ready completion to `out`.
    pub fn drain_completions(&mut self, out: &mut Vec<HostCompletion>) {
        out.extend(self.done.drain(..));
    }
    pub fn completions_ready(&self) -> usize {
        self.done.len()
    }

    // ---- transmit -------------------------------------------------------

    /// Bytes waiting for the socket.
    pub fn tx_pending(&self) -> usize {
        self.tx.pending()
    }
    /// The bytes to send next, in order, as slices of the queue's own
    /// buffer and the commands' data buffers; returns how many of `out`
    /// were filled. Report what the socket took with
    /// [`QueuePair::tx_advance`].
    pub fn tx_slices<'a, D: DataBuffers + ?Sized>(
        &'a self,
        bufs: &'a D,
        out: &mut [IoSlice<'a>],
    ) -> usize {
        self.tx.slices(bufs, out)
    }
    /// `n` bytes of [`QueuePair::tx_slices`] were sent.
    pub fn tx_advance(&mut self, n: usize) {
        let slots = &mut self.slots;
        let done = &mut self.done;
        self.tx.advance(n, |s| Self::data_sent(slots, done, s));
    }
    /// Writes pending output to `w` until it is all sent or `w` would
    /// block; returns the bytes written.
    pub fn write_to<W: Write + ?Sized, D: DataBuffers + ?Sized>(
        &mut self,
        w: &mut W,
        bufs: &D,
    ) -> io::Result<usize> {
        let mut total = 0;
        while self.tx.pending() > 0 {
            let r = {
                let mut iov = [IoSlice::new(&[]); IOV_BATCH];
                let k = self.tx.slices(bufs, &mut iov);
                if k == 0 {
                    return Ok(total);
                }
                w.write_vectored(&iov[..k])
            };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.tx_advance(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
    /// Appends all pending output to `out` and consumes it.
    pub fn take_tx<D: DataBuffers + ?Sized>(&mut self, bufs: &D, out: &mut Vec<u8>) {
        let slots = &mut self.slots;
        let done = &mut self.done;
        self.tx
            .drain_to(bufs, out, |s| Self::data_sent(slots, done, s));
    }

    fn data_sent(slots: &mut Slots, done: &mut VecDeque<HostCompletion>, s: u16) {
        let i = usize::from(s);
        let Some(slot) = slots.get_mut(i) else { return };
        slot.tx_refs = slot.tx_refs.saturating_sub(1);
        if slot.tx_refs == 0 {
            if let Some(cqe) = slot.deferred.take() {
                Self::finish(slots, done, i, cqe);
            }
        }
    }

    // ---- receive --------------------------------------------------------

    /// Where the next bytes from the socket go: usually the queue's receive
    /// buffer, but the command's own buffer when a large C2HData payload is
    /// next. Follow with [`QueuePair::received`].
    pub fn recv_buf<'a, D: DataBuffers + ?Sized>(&'a mut self, bufs: &'a mut D) -> &'a mut [u8] {
        self.direct = false;
        if let Rx::Data {
            slot, remaining, ..
        } = self.rx_state
        {
            let remaining = remaining as usize;
            if self.rx_start == self.rx_end && remaining >= DIRECT_MIN {
                let pos = self
                    .slots
                    .get(usize::from(slot))
                    .map_or(0, |s| s.done_bytes as usize);
                if let Some(dst) = bufs
                    .incoming(usize::from(slot))
                    .get_mut(pos..pos + remaining)
                {
                    self.direct = true;
                    return dst;
                }
            }
        }
        if self.rx_start == self.rx_end {
            self.rx_start = 0;
            self.rx_end = 0;
        } else if self.rx_start > 0 && self.rx.len() - self.rx_end < RX_CAP / 4 {
            self.rx.copy_within(self.rx_start..self.rx_end, 0);
            self.rx_end -= self.rx_start;
            self.rx_start = 0;
        }
        let end = self.rx_end;
        self.rx.get_mut(end..).unwrap_or(&mut [])
    }

    /// `n` bytes arrived in the last [`QueuePair::recv_buf`]; processes
    /// every complete PDU.
    pub fn received<D: DataBuffers + ?Sized>(
        &mut self,
        n: usize,
        bufs: &mut D,
    ) -> Result<(), QueueError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        if std::mem::take(&mut self.direct) {
            if let Rx::Data {
                slot,
                ref mut remaining,
                ref mut digest,
                ..
            } = self.rx_state
            {
                let n = n.min(*remaining as usize);
                if let Some(s) = self.slots.get_mut(usize::from(slot)) {
                    let pos = s.done_bytes as usize;
                    digest.update(
                        bufs.incoming(usize::from(slot))
                            .get(pos..pos + n)
                            .unwrap_or(&[]),
                    );
                    s.done_bytes += n as u32;
                }
                *remaining -= n as u32;
            }
        } else {
            self.rx_end = (self.rx_end + n).min(self.rx.len());
        }
        self.process(bufs)
    }

    /// Reads once from `r` (into [`QueuePair::recv_buf`]) and processes
    /// what came; returns the bytes read. End of stream fails the queue
    /// with [`QueueError::Closed`].
    pub fn read_from<R: Read + ?Sized, D: DataBuffers + ?Sized>(
        &mut self,
        r: &mut R,
        bufs: &mut D,
    ) -> Result<usize, HostError> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone().into());
        }
        let n = {
            let b = self.recv_buf(bufs);
            if b.is_empty() {
                return Ok(0);
            }
            r.read(b)?
        };
        if n == 0 {
            return Err(self.peer_closed().into());
        }
        self.received(n, bufs)?;
        Ok(n)
    }

    /// The target closed the connection: fails the queue with
    /// [`QueueError::Closed`] (unless it already failed) and returns why it
    /// failed.
    pub fn peer_closed(&mut self) -> QueueError {
        self.direct = false;
        match &self.state {
            State::Failed(e) => e.clone(),
            _ => self.fail(QueueError::Closed),
        }
    }

    /// Processes `bytes` as if read from the socket (tests, transports that
    /// own their receive buffers).
    pub fn feed<D: DataBuffers + ?Sized>(
        &mut self,
        mut bytes: &[u8],
        bufs: &mut D,
    ) -> Result<(), QueueError> {
        while !bytes.is_empty() {
            let n = {
                let b = self.recv_buf(bufs);
                let n = b.len().min(bytes.len());
                if n == 0 {
                    return Err(
                        self.fail(ProtocolError::Fabrics("receive buffer full".into()).into())
                    );
                }
                b[..n].copy_from_slice(&bytes[..n]);
                n
            };
            self.received(n, bufs)?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn process<D: DataBuffers + ?Sized>(&mut self, bufs: &mut D) -> Result<(), QueueError> {
        loop {
            match self.rx_state {
                Rx::Data {
                    slot,
                    remaining: 0,
                    last,
                    success,
                    has_digest,
                    digest,
                } => {
                    if has_digest {
                        self.rx_state = Rx::Digest {
                            slot,
                            last,
                            success,
                            computed: digest.finish(),
                            got: [0; DIGEST_LEN],
                            have: 0,
                        };
                    } else {
                        self.end_data(usize::from(slot), last, success, true);
                    }
                }
                Rx::Data {
                    slot,
                    ref mut remaining,
                    ref mut digest,
                    ..
                } => {
                    let avail = self.rx_end - self.rx_start;
                    if avail == 0 {
                        return Ok(());
                    }
                    let n = avail.min(*remaining as usize);
                    let i = usize::from(slot);
                    let pos = self.slots.get(i).map_or(0, |s| s.done_bytes as usize);
                    let src = self.rx.get(self.rx_start..self.rx_start + n).unwrap_or(&[]);
                    let Some(dst) = bufs.incoming(i).get_mut(pos..pos + n) else {
                        let len = self.slots.get(i).map_or(0, |s| s.len);
                        return Err(self.fail(QueueError::Buffer { slot: i, len }));
                    };
                    dst.copy_from_slice(src);
                    digest.update(src);
                    *remaining -= n as u32;
                    self.rx_start += n;
                    if let Some(s) = self.slots.get_mut(i) {
                        s.done_bytes += n as u32;
                    }
                }
                Rx::Digest {
                    slot,
                    last,
                    success,
                    computed,
                    ref mut got,
                    ref mut have,
                } => {
                    while usize::from(*have) < DIGEST_LEN && self.rx_start < self.rx_end {
                        got[usize::from(*have)] = self.rx[self.rx_start];
                        *have += 1;
                        self.rx_start += 1;
                    }
                    if usize::from(*have) < DIGEST_LEN {
                        return Ok(());
                    }
                    let ok = u32::from_le_bytes(*got) == computed;
                    self.end_data(usize::from(slot), last, success, ok);
                }
                Rx::Header => {
                    let buf = self.rx.get(self.rx_start..self.rx_end).unwrap_or(&[]);
                    let event = match self.reader.poll_header(buf) {
                        Err(e) => return Err(self.fail(ProtocolError::Pdu(e).into())),
                        Ok(HeaderPoll::NeedMore(_)) => return Ok(()),
                        Ok(HeaderPoll::Header {
                            header: PduHeader::C2HData(d),
                            frame,
                        }) => {
                            let data_start = frame.data.start;
                            let has_digest = frame.data_digest;
                            self.begin_data(d, data_start, has_digest)?;
                            continue;
                        }
                        Ok(HeaderPoll::Header { .. }) => match self.reader.poll(buf) {
                            Err(e) => return Err(self.fail(ProtocolError::Pdu(e).into())),
                            Ok(Poll::NeedMore(_)) => return Ok(()),
                            Ok(Poll::Pdu(p)) => {
                                let ev = match p.header {
                                    PduHeader::IcResp(r) => Event::IcResp(r),
                                    PduHeader::C2HTermReq(t) => Event::Term(t),
                                    PduHeader::CapsuleResp(c) => Event::Resp(c),
                                    PduHeader::R2T(r) => Event::R2t(r),
                                    PduHeader::IcReq(_) => Event::Other(PduType::IcReq),
                                    PduHeader::H2CTermReq(_) => Event::Other(PduType::H2CTermReq),
                                    PduHeader::CapsuleCmd(_) => Event::Other(PduType::CapsuleCmd),
                                    PduHeader::H2CData(_) => Event::Other(PduType::H2CData),
                                    PduHeader::C2HData(_) => Event::Other(PduType::C2HData),
                                };
                                (ev, p.len)
                            }
                        },
                    };
                    let (ev, len) = event;
                    self.handle(ev, bufs)?;
                    self.rx_start += len;
                }
            }
        }
    }

    fn handle<D: DataBuffers + ?Sized>(&mut self, ev: Event, bufs: &D) -> Result<(), QueueError> {
        match ev {
            Event::IcResp(resp) => {
                let n = match accept_ic_resp(&self.ic_req, &resp) {
                    Ok(n) => n,
                    Err(e) => return Err(self.fail(ProtocolError::Pdu(e).into())),
                };
                if n.hdgst != self.ic_req.hdgst || n.ddgst != self.ic_req.ddgst {
                    return Err(self.fail(
                        ProtocolError::DigestMismatch {
                            hdgst: n.hdgst,
                            ddgst: n.ddgst,
                            want_hdgst: self.ic_req.hdgst,
                            want_ddgst: self.ic_req.ddgst,
                        }
                        .into(),
                    ));
                }
                self.reader.set_negotiated(n);
                self.writer = PduWriter::new(Role::Host, &n);
                self.negotiated = Some(n);
                self.state = State::Ready;
                Ok(())
            }
            Event::Term(t) => Err(self.fail(QueueError::Terminated {
                fes: t.fes,
                fei: t.fei,
            })),
            Event::Resp(cqe) => {
                let Some(i) = self.slots.lookup(cqe.cid) else {
                    return Err(self.fail(
                        ProtocolError::UnknownCid {
                            pdu_type: PduType::CapsuleResp,
                            cid: cqe.cid,
                        }
                        .into(),
                    ));
                };
                self.complete(i, cqe);
                Ok(())
            }
            Event::R2t(r) => self.handle_r2t(r, bufs),
            Event::Other(t) => {
                Err(self
                    .fail(ProtocolError::Pdu(crate::nvmf::pdu::PduError::WrongDirection(t)).into()))
            }
        }
    }

    fn handle_r2t<D: DataBuffers + ?Sized>(&mut self, r: R2t, bufs: &D) -> Result<(), QueueError> {
        let t = PduType::R2T;
        let Some(i) = self.slots.lookup(r.cccid) else {
            return Err(self.fail(
                ProtocolError::UnknownCid {
                    pdu_type: t,
                    cid: r.cccid,
                }
                .into(),
            ));
        };
        let Some(s) = self.slots.get(i).copied() else {
            return Err(self.fail(QueueError::Buffer { slot: i, len: 0 }));
        };
        let why = match s.dir {
            Direction::Out if s.in_capsule => Some("R2T for data sent in-capsule"),
            Direction::Out => None,
            _ => Some("R2T for a command without host data"),
        };
        if let Some(why) = why {
            return Err(self.fail(
                ProtocolError::Unexpected {
                    pdu_type: t,
                    cid: r.cccid,
                    why,
                }
                .into(),
            ));
        }
        let end = r.offset.checked_add(r.length).filter(|&e| e <= s.len);
        let end = match end {
            Some(e) if r.length > 0 && r.offset >= s.done_bytes => e,
            _ => {
                return Err(self.fail(
                    ProtocolError::DataRange {
                        pdu_type: t,
                        cid: r.cccid,
                        offset: r.offset,
                        length: r.length,
                        expected_offset: s.done_bytes,
                        limit: s.len,
                    }
                    .into(),
                ))
            }
        };
        let data = bufs.outgoing(i);
        if data.len() < end as usize {
            return Err(self.fail(QueueError::Buffer {
                slot: i,
                len: s.len,
            }));
        }
        let maxh2c = self.negotiated.map_or(4096, |n| n.maxh2cdata).max(4);
        let mut off = r.offset;
        let mut pdus = 0u32;
        while off < end {
            let len = (end - off).min(maxh2c);
            let d = DataHeader {
                cccid: r.cccid,
                ttag: r.ttag,
                offset: off,
                length: len,
                last: off + len == end,
                success: false,
            };
            let start = self.tx.buf().len();
            self.writer.h2c_data_header(self.tx.buf(), &d);
            self.tx.commit(start);
            self.tx.push_data(i as u16, off, len);
            if self.writer.data_digest() {
                let crc = digest::data_digest(
                    data.get(off as usize..(off + len) as usize).unwrap_or(&[]),
                );
                let start = self.tx.buf().len();
                self.writer.finish_data(self.tx.buf(), crc);
                self.tx.commit(start);
            }
            pdus += 1;
            off += len;
        }
        if let Some(s) = self.slots.get_mut(i) {
            s.done_bytes = end;
            s.tx_refs += pdus;
        }
        Ok(())
    }

    fn begin_data(
        &mut self,
        d: DataHeader,
        data_start: usize,
        has_digest: bool,
    ) -> Result<(), QueueError> {
        let t = PduType::C2HData;
        let Some(i) = self.slots.lookup(d.cccid) else {
            return Err(self.fail(
                ProtocolError::UnknownCid {
                    pdu_type: t,
                    cid: d.cccid,
                }
                .into(),
            ));
        };
        let Some(s) = self.slots.get(i).copied() else {
            return Err(self.fail(QueueError::Buffer { slot: i, len: 0 }));
        };
        let why = if s.dir != Direction::In {
            Some("C2HData for a command without controller data")
        } else if s.data_last {
            Some("C2HData after the last data PDU")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(self.fail(
                ProtocolError::Unexpected {
                    pdu_type: t,
                    cid: d.cccid,
                    why,
                }
                .into(),
            ));
        }
        let fits =
            d.offset == s.done_bytes && d.offset.checked_add(d.length).is_some_and(|e| e <= s.len);
        if !fits {
            return Err(self.fail(
                ProtocolError::DataRange {
                    pdu_type: t,
                    cid: d.cccid,
                    offset: d.offset,
                    length: d.length,
                    expected_offset: s.done_bytes,
                    limit: s.len,
                }
                .into(),
            ));
        }
        self.rx_start += data_start;
        self.rx_state = Rx::Data {
            slot: i as u16,
            remaining: d.length,
            last: d.last,
            success: d.success,
            has_digest,
            digest: DataDigest::new(),
        };
        Ok(())
    }

    /// The data (and digest) of a C2HData PDU is in.
    fn end_data(&mut self, i: usize, last: bool, success: bool, digest_ok: bool) {
        self.rx_state = Rx::Header;
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if !digest_ok {
            s.digest_error = true;
        }
        if last {
            s.data_last = true;
            if success {
                let cqe = Completion {
                    sqid: self.cfg.qid,
                    ..Completion::success(s.cid(i))
                };
                self.complete(i, cqe);
            }
        }
    }

    /// The command in slot `i` is answered with `cqe`.
    fn complete(&mut self, i: usize, mut cqe: Completion) {
        let Some(s) = self.slots.get_mut(i) else {
            return;
        };
        if s.digest_error && cqe.status.status.is_success() {
            cqe.status = StatusField::new(Status::TRANSIENT_TRANSPORT_ERROR);
        }
        if s.tx_refs > 0 {
            // Its data is still queued for the socket: the buffer stays
            // referenced until it is sent.
            s.deferred = Some(cqe);
            return;
        }
        Self::finish(&mut self.slots, &mut self.done, i, cqe);
    }

    fn finish(slots: &mut Slots, done: &mut VecDeque<HostCompletion>, i: usize, cqe: Completion) {
        let Some(s) = slots.get(i) else { return };
        done.push_back(HostCompletion {
            cid: s.cid(i),
            slot: i as u16,
            tag: s.tag,
            opcode: s.opcode,
            cqe,
            transferred: s.done_bytes,
        });
        slots.release(i);
    }

    /// Fails the queue with `e`: drops unsent output, queues an H2CTermReq
    /// when the error calls for one, and returns `e`.
    fn fail(&mut self, e: QueueError) -> QueueError {
        let slots = &mut self.slots;
        self.tx.clear(|s| {
            if let Some(slot) = slots.get_mut(usize::from(s)) {
                slot.tx_refs = slot.tx_refs.saturating_sub(1);
            }
        });
        if let QueueError::Protocol(p) = &e {
            if let Some(f) = p.fatal() {
                let end = self
                    .rx_end
                    .min(self.rx_start + crate::nvmf::pdu::TERM_REQ_MAX_DATA);
                let offending = self.rx.get(self.rx_start..end).unwrap_or(&[]);
                let start = self.tx.buf().len();
                writer::term_req(self.tx.buf(), Role::Host, f.fes, f.fei, offending);
                self.tx.commit(start);
            }
        }
        self.state = State::Failed(e.clone());
        e
    }
}
