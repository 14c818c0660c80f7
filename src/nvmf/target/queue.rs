//! One NVMe/TCP connection's protocol state: connection initialization,
//! Connect, then the admin or I/O queue it became — bytes in, bytes out,
//! requests to the reactor's [`ReactorIo`], completions back.
//!
//! No sockets here: [`QueuePair::on_input`] takes received bytes and returns
//! how many it consumed; what to send accumulates in [`QueuePair::output`].
//! A protocol error ends the connection with a C2HTermReq carrying the
//! fatal error status; a bad command only fails that command.
//!
//! Invariants: a command slot (its index is the R2T transfer tag and the
//! engine request tag) is busy from the command's capsule until its response
//! is queued; a write is submitted only when all its data arrived; the
//! response to a read follows its C2HData (or rides on it, with the SUCCESS
//! flag, when the host disabled SQ flow control).

use super::admin::{self, AEN_NS_CHANGED, AER_LIMIT};
use super::controller::Controller;
use super::io::{IoDone, ReactorIo};
use super::metrics::IoOp;
use super::namespace::{Namespace, NsKind, NsTable};
use super::subsystem::SubsystemKind;
use super::{Target, OPC_READ_AT_POINT};
use crate::device::{AlignedBuf, IoKind};
use crate::engine::{At, ReadAt};
use crate::nvmf::command::{
    admin as admin_op, connect_invalid_in_command, connect_invalid_in_data, dsm_ranges,
    io as io_op, Command, CommandError, Connect, ConnectData, Fabrics, Sgl, FABRICS_OPCODE,
};
use crate::nvmf::completion::{Completion, StatusField};
use crate::nvmf::pdu::negotiate::{accept_ic_req, ControllerParams};
use crate::nvmf::pdu::{
    writer, DataHeader, Fes, HeaderPoll, Pdu, PduError, PduHeader, PduReader, PduWriter, Poll, R2t,
    Role,
};
use crate::nvmf::status::Status;
use std::sync::Arc;
use std::time::Instant;

/// Where the connection is in its life.
#[derive(Debug)]
enum Phase {
    /// Waiting for the host's ICReq.
    Init,
    /// Initialized; the first command must be a Connect.
    Connect,
    Admin(Arc<Controller>),
    Io(Arc<Controller>),
}

/// What an in-flight I/O command does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Op {
    #[default]
    None,
    Read,
    ReadAt,
    Write,
    Other,
}

/// One in-flight I/O command.
#[derive(Debug, Default)]
struct Slot {
    busy: bool,
    cid: u16,
    op: Op,
    ns: Option<Arc<Namespace>>,
    lba: u64,
    buf: Option<AlignedBuf>,
    /// Write data expected and received so far (R2T transfers).
    total: u32,
    received: u32,
    /// Engine requests still to complete.
    pending: u32,
    /// First failure among its requests.
    status: Status,
    /// The point a read-at-point resolved to.
    seq: u64,
    /// When the command's capsule arrived (host-visible latency).
    started: Option<Instant>,
    /// Bytes a write carries (for the I/O counters).
    bytes: u32,
}

/// See the module documentation.
#[derive(Debug)]
pub struct QueuePair {
    target: Arc<Target>,
    reader: PduReader,
    writer: PduWriter,
    phase: Phase,
    /// Registration with the reactor's I/O (I/O queues only).
    io_queue: Option<u32>,
    qid: u16,
    sq_entries: u16,
    sqhd: u16,
    sqflow_disabled: bool,
    slots: Vec<Slot>,
    free: Vec<u16>,
    ns: Arc<NsTable>,
    aers: Vec<u16>,
    out: Vec<u8>,
    done: Vec<IoDone>,
    closing: bool,
    /// When the connection was accepted (bounds ICReq + Connect).
    created: Instant,
    /// The clock read once per `on_input` / `on_tick` call, for the I/O
    /// counters' latencies (one read per round, not per command).
    round_clock: Option<Instant>,
}

/// How a command was answered synchronously.
type Answer = Result<(), (Status, u32)>;

impl QueuePair {
    pub fn new(target: Arc<Target>) -> QueuePair {
        let max_data = target
            .limits
            .in_capsule_bytes
            .max(target.limits.admin_in_capsule_bytes)
            .max(target.limits.max_h2c_data);
        QueuePair {
            target,
            reader: PduReader::new(Role::Controller, max_data),
            writer: PduWriter::default(),
            phase: Phase::Init,
            io_queue: None,
            qid: 0,
            sq_entries: 0,
            sqhd: 0,
            sqflow_disabled: false,
            slots: Vec::new(),
            free: Vec::new(),
            ns: Arc::new(NsTable::default()),
            aers: Vec::new(),
            out: Vec::with_capacity(64 << 10),
            done: Vec::with_capacity(64),
            closing: false,
            created: Instant::now(),
            round_clock: None,
        }
    }

    /// Bytes to send; the caller drains what it sent.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// The connection should close once `output` is sent.
    pub fn closing(&self) -> bool {
        self.closing
    }

    /// Commands in flight on this queue.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.busy).count()
    }

    /// The queue's controller ID and queue ID, once connected.
    pub fn identity(&self) -> Option<(u16, u16)> {
        match &self.phase {
            Phase::Admin(c) | Phase::Io(c) => Some((c.cntlid, self.qid)),
            _ => None,
        }
    }

    /// Ends the queue: forgets its registration; an admin queue takes its
    /// controller (and so every I/O queue of it) down.
    pub fn shutdown(&mut self, io: &mut ReactorIo) {
        if let Some(q) = self.io_queue.take() {
            io.close_queue(q);
        }
        for s in &mut self.slots {
            if let Some(b) = s.buf.take() {
                io.recycle(b);
            }
        }
        if let Phase::Admin(c) = &self.phase {
            self.target.registry.remove(c.cntlid);
        }
        self.closing = true;
    }

    /// Consumes whole PDUs from the start of `input`; returns the bytes used.
    pub fn on_input(&mut self, input: &[u8], io: &mut ReactorIo) -> usize {
        self.round_clock = None;
        let mut used = 0;
        while !self.closing {
            let rest = input.get(used..).unwrap_or(&[]);
            match self.reader.poll(rest) {
                Ok(Poll::NeedMore(_)) => break,
                Ok(Poll::Pdu(pdu)) => {
                    used += pdu.len;
                    self.on_pdu(pdu, io);
                }
                Err(PduError::DataDigest { len, .. }) => {
                    self.on_data_digest_error(rest, io);
                    used += len;
                }
                Err(e) => {
                    self.fatal(&e, rest);
                    break;
                }
            }
        }
        used
    }

    /// Delivers finished I/O and controller events (keep-alive expiry,
    /// namespace notices). Returns whether anything happened.
    pub fn on_tick(&mut self, io: &mut ReactorIo) -> bool {
        self.round_clock = None;
        let mut work = false;
        if let Some(q) = self.io_queue {
            io.take_done(q, &mut self.done);
            let mut done = std::mem::take(&mut self.done);
            work |= !done.is_empty();
            for d in done.drain(..) {
                self.on_done(d, io);
            }
            self.done = done;
        }
        match &self.phase {
            Phase::Admin(c) => {
                let c = Arc::clone(c);
                if c.is_dead() {
                    // Torn down from outside (a deleted volume's hosts are
                    // disconnected): the association ends with its admin queue.
                    self.closing = true;
                    return true;
                }
                if c.keep_alive_expired() {
                    tracing::warn!(
                        cntlid = c.cntlid,
                        host = %c.hostnqn,
                        "keep-alive timeout: controller torn down"
                    );
                    c.kill();
                    self.closing = true;
                    return true;
                }
                if !self.aers.is_empty() && c.take_notice() {
                    let cid = self.aers.remove(0);
                    let mut cqe = Completion::success(cid);
                    cqe.dw0 = AEN_NS_CHANGED;
                    self.respond(cqe);
                    work = true;
                }
            }
            Phase::Io(c) if c.is_dead() => {
                self.closing = true;
                work = true;
            }
            Phase::Init | Phase::Connect
                if self.created.elapsed() > self.target.limits.establish_timeout =>
            {
                tracing::info!(
                    timeout = ?self.target.limits.establish_timeout,
                    initialized = matches!(self.phase, Phase::Connect),
                    "connection not established in time: closed"
                );
                self.closing = true;
                work = true;
            }
            _ => {}
        }
        work
    }

    fn fatal(&mut self, e: &PduError, rest: &[u8]) {
        tracing::info!(error = %e, "NVMe/TCP protocol error: connection terminated");
        if let Some(f) = e.fatal() {
            let header_len = rest.len().min(crate::nvmf::pdu::TERM_REQ_MAX_DATA);
            let offending = rest.get(..header_len).unwrap_or(&[]);
            writer::term_req(&mut self.out, Role::Controller, f.fes, f.fei, offending);
        }
        self.closing = true;
    }

    fn terminate(&mut self, fes: Fes, fei: u32) {
        tracing::info!(?fes, fei, "NVMe/TCP protocol error: connection terminated");
        writer::term_req(&mut self.out, Role::Controller, fes, fei, &[]);
        self.closing = true;
    }

    fn on_pdu(&mut self, pdu: Pdu<'_>, io: &mut ReactorIo) {
        match pdu.header {
            PduHeader::IcReq(req) => {
                let params = ControllerParams {
                    hdgst: true,
                    ddgst: true,
                    cpda: 0,
                    maxh2cdata: self.target.limits.max_h2c_data,
                };
                match accept_ic_req(&req, &params) {
                    Ok((resp, negotiated)) => {
                        writer::ic_resp(&mut self.out, &resp);
                        self.reader.set_negotiated(negotiated);
                        self.writer = PduWriter::new(Role::Controller, &negotiated);
                        self.phase = Phase::Connect;
                    }
                    Err(e) => self.fatal(&e, &[]),
                }
            }
            PduHeader::H2CTermReq(t) => {
                tracing::info!(fes = t.fes, fei = t.fei, "host terminated the connection");
                self.closing = true;
            }
            PduHeader::CapsuleCmd(cmd) => self.on_command(&cmd, pdu.data, io),
            PduHeader::H2CData(d) => self.on_h2c_data(&d, pdu.data, false, io),
            // The reader accepts only PDUs a controller receives.
            _ => self.terminate(Fes::InvalidHeaderField, 0),
        }
    }

    /// A PDU whose data digest is wrong: its command fails with a transient
    /// transport error (the host may retry it).
    fn on_data_digest_error(&mut self, rest: &[u8], io: &mut ReactorIo) {
        match self.reader.poll_header(rest) {
            Ok(HeaderPoll::Header {
                header: PduHeader::CapsuleCmd(cmd),
                ..
            }) => {
                self.advance_sqhd();
                self.respond(Completion::error(
                    cmd.cid(),
                    Status::TRANSIENT_TRANSPORT_ERROR,
                ));
            }
            Ok(HeaderPoll::Header {
                header: PduHeader::H2CData(d),
                ..
            }) => self.on_h2c_data(&d, &[], true, io),
            _ => self.terminate(Fes::InvalidHeaderField, 0),
        }
    }

    fn advance_sqhd(&mut self) {
        if self.sq_entries > 0 {
            self.sqhd = (self.sqhd + 1) % self.sq_entries;
        }
    }

    /// Queues a response capsule.
    fn respond(&mut self, mut cqe: Completion) {
        cqe.sqid = self.qid;
        cqe.sqhd = if self.sqflow_disabled {
            0xFFFF
        } else {
            self.sqhd
        };
        self.writer.capsule_resp(&mut self.out, &cqe);
    }

    /// Queues `data` for the host, then the response (or only the data,
    /// flagged SUCCESS, when that is allowed).
    fn respond_with_data(&mut self, cqe: Completion, data: &[u8]) {
        if data.is_empty() {
            self.respond(cqe);
            return;
        }
        let success =
            self.sqflow_disabled && cqe.status.status.is_success() && cqe.dw0 == 0 && cqe.dw1 == 0;
        let d = DataHeader {
            cccid: cqe.cid,
            ttag: 0,
            offset: 0,
            length: data.len() as u32,
            last: true,
            success,
        };
        self.writer.c2h_data(&mut self.out, &d, data);
        if !success {
            self.respond(cqe);
        }
    }

    fn fail(&mut self, cid: u16, status: Status, dw0: u32) {
        let mut cqe = Completion::error(cid, status);
        // Momentary conditions invite a retry; everything else is final.
        if matches!(
            status,
            Status::NAMESPACE_NOT_READY | Status::TRANSIENT_TRANSPORT_ERROR
        ) {
            cqe.status = StatusField::new(status);
        }
        cqe.dw0 = dw0;
        self.respond(cqe);
    }

    fn on_command(&mut self, cmd: &Command<'_>, data: &[u8], io: &mut ReactorIo) {
        self.advance_sqhd();
        let cid = cmd.cid();
        match &self.phase {
            Phase::Init => self.terminate(Fes::PduSequenceError, 0),
            Phase::Connect => {
                if let Err((status, dw0)) = self.connect(cmd, data, io) {
                    self.fail(cid, status, dw0);
                }
            }
            Phase::Admin(c) => {
                let c = Arc::clone(c);
                self.on_admin(&c, cmd);
            }
            Phase::Io(_) => {
                if cmd.opcode() == FABRICS_OPCODE {
                    match cmd.fabrics() {
                        Ok(Fabrics::Disconnect { .. }) => {
                            self.respond(Completion::success(cid));
                            self.closing = true;
                        }
                        Ok(_) => self.fail(cid, Status::INVALID_OPCODE, 0),
                        Err(e) => self.fail(cid, e.status(), e.result()),
                    }
                    return;
                }
                if let Err((status, dw0)) = self.on_io(cmd, data, io) {
                    self.fail(cid, status, dw0);
                }
            }
        }
    }

    fn connect(&mut self, cmd: &Command<'_>, data: &[u8], io: &mut ReactorIo) -> Answer {
        let fabrics = if cmd.opcode() == FABRICS_OPCODE {
            cmd.fabrics().map_err(|e| (e.status(), e.result()))?
        } else {
            return Err((Status::COMMAND_SEQUENCE_ERROR, 0));
        };
        let Fabrics::Connect(c) = fabrics else {
            return Err((Status::COMMAND_SEQUENCE_ERROR, 0));
        };
        if c.recfmt != 0 {
            return Err((
                Status::CONNECT_INCOMPATIBLE_FORMAT,
                connect_invalid_in_command(Connect::RECFMT_OFFSET),
            ));
        }
        let data = in_capsule(cmd, data)?;
        let cd = ConnectData::decode(data).map_err(|e: CommandError| (e.status(), e.result()))?;
        let target = Arc::clone(&self.target);
        let Some(subsystem) = target.subsystem(cd.subnqn) else {
            return Err((
                Status::CONNECT_INVALID_PARAMETERS,
                connect_invalid_in_data(ConnectData::SUBNQN_OFFSET),
            ));
        };
        if !subsystem.allows(cd.hostnqn) {
            tracing::warn!(host = cd.hostnqn, subsystem = %subsystem.nqn, "host not allowed");
            return Err((Status::CONNECT_INVALID_HOST, 0));
        }
        let entries = u32::from(c.sqsize) + 1;
        if c.sqsize == 0 || entries > u32::from(target.limits.queue_entries) {
            return Err((
                Status::CONNECT_INVALID_PARAMETERS,
                connect_invalid_in_command(Connect::SQSIZE_OFFSET),
            ));
        }
        let ctrl = if c.qid == 0 {
            let ctrl = target
                .registry
                .create(
                    &subsystem,
                    cd.hostnqn,
                    cd.hostid,
                    c.kato,
                    target.limits.max_io_queues,
                )
                .map_err(|_| (Status::CONNECT_CONTROLLER_BUSY, 0))?;
            tracing::info!(
                cntlid = ctrl.cntlid,
                host = cd.hostnqn,
                subsystem = cd.subnqn,
                "controller created"
            );
            self.phase = Phase::Admin(Arc::clone(&ctrl));
            ctrl
        } else {
            let ctrl = target
                .registry
                .find(cd.cntlid, cd.subnqn, cd.hostnqn)
                .map_err(|_| {
                    (
                        Status::CONNECT_INVALID_PARAMETERS,
                        connect_invalid_in_data(ConnectData::CNTLID_OFFSET),
                    )
                })?;
            if ctrl.subsystem.kind == SubsystemKind::Discovery
                || u32::from(c.qid) > ctrl.io_queues()
            {
                return Err((
                    Status::CONNECT_INVALID_PARAMETERS,
                    connect_invalid_in_command(Connect::QID_OFFSET),
                ));
            }
            self.ns = ctrl.subsystem.namespaces.load();
            self.slots = (0..entries).map(|_| Slot::default()).collect();
            self.free = (0..entries as u16).rev().collect();
            self.io_queue = Some(io.open_queue());
            self.phase = Phase::Io(Arc::clone(&ctrl));
            ctrl
        };
        self.qid = c.qid;
        self.sq_entries = entries as u16;
        self.sqflow_disabled = c.sq_flow_control_disabled();
        let mut cqe = Completion::success(cmd.cid());
        cqe.dw0 = u32::from(ctrl.cntlid);
        self.respond(cqe);
        Ok(())
    }

    fn on_admin(&mut self, ctrl: &Arc<Controller>, cmd: &Command<'_>) {
        let cid = cmd.cid();
        if cmd.opcode() == FABRICS_OPCODE {
            let reply = match cmd.fabrics() {
                Ok(f @ (Fabrics::PropertyGet { .. } | Fabrics::PropertySet { .. })) => {
                    admin::property(&self.target, ctrl, cid, &f)
                }
                Ok(Fabrics::Disconnect { .. }) => {
                    self.respond(Completion::success(cid));
                    self.closing = true;
                    return;
                }
                Ok(Fabrics::Connect(_)) => {
                    return self.fail(cid, Status::COMMAND_SEQUENCE_ERROR, 0);
                }
                Err(e) => return self.fail(cid, e.status(), e.result()),
            };
            self.respond(reply.cqe);
            return;
        }
        if !ctrl.ready() {
            return self.fail(cid, Status::COMMAND_SEQUENCE_ERROR, 0);
        }
        if cmd.opcode() == admin_op::ASYNC_EVENT_REQUEST {
            if self.aers.len() >= AER_LIMIT {
                return self.fail(cid, Status::AER_LIMIT_EXCEEDED, 0);
            }
            self.aers.push(cid);
            return;
        }
        let reply = admin::execute(&self.target, ctrl, cmd);
        self.respond_with_data(reply.cqe, &reply.data);
    }

    fn alloc_slot(
        &mut self,
        cid: u16,
        op: Op,
        ns: &Arc<Namespace>,
        lba: u64,
    ) -> Result<usize, (Status, u32)> {
        let Some(i) = self.free.pop() else {
            // More commands than the queue size the host connected with.
            return Err((Status::COMMAND_SEQUENCE_ERROR, 0));
        };
        let started = self.clock();
        let s = &mut self.slots[usize::from(i)];
        debug_assert!(!s.busy, "free slot {i} is busy");
        *s = Slot {
            busy: true,
            cid,
            op,
            ns: Some(Arc::clone(ns)),
            lba,
            status: Status::SUCCESS,
            started: Some(started),
            ..Slot::default()
        };
        Ok(usize::from(i))
    }

    fn free_slot(&mut self, i: usize, io: &mut ReactorIo) {
        let s = &mut self.slots[i];
        if let Some(b) = s.buf.take() {
            io.recycle(b);
        }
        s.busy = false;
        s.ns = None;
        self.free.push(i as u16);
    }

    fn on_io(&mut self, cmd: &Command<'_>, data: &[u8], io: &mut ReactorIo) -> Answer {
        let Phase::Io(ctrl) = &self.phase else {
            return Err((Status::COMMAND_SEQUENCE_ERROR, 0));
        };
        ctrl.subsystem.namespaces.refresh(&mut self.ns);
        let cid = cmd.cid();
        let opcode = cmd.opcode();
        if opcode == io_op::FLUSH && cmd.nsid() == u32::MAX {
            return self.flush_all(cid, io);
        }
        let Some(ns) = self.ns.get(cmd.nsid()).cloned() else {
            return Err((Status::INVALID_NAMESPACE, 0));
        };
        let bs = u64::from(ns.block_size);
        match opcode {
            io_op::READ | io_op::WRITE | OPC_READ_AT_POINT => {
                let rw = cmd.read_write();
                let n = u64::from(rw.blocks());
                let len = n * bs;
                if len > u64::from(self.target.limits.max_transfer_bytes) {
                    return Err((Status::INVALID_FIELD, 0));
                }
                check_range(&ns, rw.slba, n)?;
                let sgl = cmd.sgl().map_err(|e| (e.status(), 0))?;
                if u64::from(sgl.length()) != len {
                    return Err((Status::DATA_SGL_LENGTH_INVALID, 0));
                }
                match opcode {
                    io_op::WRITE => self.write(cid, &ns, rw.slba, len as u32, sgl, data, io),
                    io_op::READ => {
                        let at = match &ns.kind {
                            NsKind::View { point, .. } => ReadAt::Seq(point.seq),
                            _ => ReadAt::Now,
                        };
                        self.read(cid, &ns, rw.slba, len as u32, sgl, Op::Read, at, 0, io)
                    }
                    _ => {
                        let Some(volume) = ns.volume().cloned() else {
                            return Err((Status::INVALID_OPCODE, 0));
                        };
                        let value = u64::from(cmd.cdw14()) | u64::from(cmd.cdw15()) << 32;
                        let at = if cmd.cdw13() & 1 == 1 {
                            At::Seq(value)
                        } else {
                            At::Time(value)
                        };
                        let point = io.resolve(&volume, &at).map_err(|s| (s, 0))?;
                        // A view cannot read past its own point.
                        if let NsKind::View { point: p, .. } = &ns.kind {
                            if point.seq > p.seq {
                                return Err((Status::INVALID_FIELD, 0));
                            }
                        }
                        let seq = point.seq;
                        self.read(
                            cid,
                            &ns,
                            rw.slba,
                            len as u32,
                            sgl,
                            Op::ReadAt,
                            ReadAt::Seq(seq),
                            seq,
                            io,
                        )
                    }
                }
            }
            io_op::FLUSH => match &ns.kind {
                NsKind::View { .. } => {
                    self.respond(Completion::success(cid));
                    Ok(())
                }
                NsKind::Live(v) => {
                    let v = Arc::clone(v);
                    let i = self.alloc_slot(cid, Op::Other, &ns, 0)?;
                    self.slots[i].pending = 1;
                    io.flush(&v, self.queue(), i as u32)
                        .map_err(|(s, _)| self.unwind(i, s, io))
                }
                NsKind::Raw(d) => {
                    let d = Arc::clone(d);
                    let i = self.alloc_slot(cid, Op::Other, &ns, 0)?;
                    self.slots[i].pending = 1;
                    io.raw(&d, IoKind::Flush, 0, None, self.queue(), i as u32)
                        .map_err(|(s, _)| self.unwind(i, s, io))
                }
            },
            io_op::WRITE_ZEROES => {
                if ns.read_only() {
                    return Err((Status::NAMESPACE_WRITE_PROTECTED, 0));
                }
                let wz = cmd.write_zeroes();
                let n = u64::from(wz.blocks());
                check_range(&ns, wz.slba, n)?;
                self.zeroes(cid, &ns, &[(wz.slba, n)], io)
            }
            io_op::DATASET_MANAGEMENT => {
                let dsm = cmd.dsm();
                let sgl = cmd.sgl().map_err(|e| (e.status(), 0))?;
                if !matches!(sgl, Sgl::InCapsule { .. }) {
                    // Linux sends the (at most 4 KiB of) ranges in the capsule.
                    return Err((Status::INVALID_FIELD, 0));
                }
                let ranges = in_capsule(cmd, data)?;
                if !dsm.ad {
                    self.respond(Completion::success(cid));
                    return Ok(());
                }
                if ns.read_only() {
                    return Err((Status::NAMESPACE_WRITE_PROTECTED, 0));
                }
                let mut extents = Vec::with_capacity(dsm.ranges());
                for r in dsm_ranges(&dsm, ranges).map_err(|e| (e.status(), 0))? {
                    if r.nlb == 0 {
                        continue;
                    }
                    check_range(&ns, r.slba, u64::from(r.nlb))?;
                    extents.push((r.slba, u64::from(r.nlb)));
                }
                self.zeroes(cid, &ns, &extents, io)
            }
            _ => Err((Status::INVALID_OPCODE, 0)),
        }
    }

    fn queue(&self) -> u32 {
        self.io_queue.unwrap_or(u32::MAX)
    }

    /// Undoes a slot whose first request was refused; returns the failure.
    fn unwind(&mut self, i: usize, status: Status, io: &mut ReactorIo) -> (Status, u32) {
        self.free_slot(i, io);
        (status, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        cid: u16,
        ns: &Arc<Namespace>,
        lba: u64,
        len: u32,
        sgl: Sgl,
        data: &[u8],
        io: &mut ReactorIo,
    ) -> Answer {
        if ns.read_only() {
            return Err((Status::NAMESPACE_WRITE_PROTECTED, 0));
        }
        match sgl {
            Sgl::InCapsule { offset, length } => {
                if offset != 0 {
                    return Err((Status::SGL_OFFSET_INVALID, 0));
                }
                let Some(bytes) = data
                    .get(..length as usize)
                    .filter(|_| data.len() == length as usize)
                else {
                    return Err((Status::DATA_SGL_LENGTH_INVALID, 0));
                };
                let i = self.alloc_slot(cid, Op::Write, ns, lba)?;
                self.slots[i].bytes = len;
                let mut buf = io.buffer(len as usize);
                buf.copy_from_slice(bytes);
                self.submit_write(i, buf, io);
                Ok(())
            }
            Sgl::Transport { .. } => {
                if !data.is_empty() {
                    return Err((Status::DATA_SGL_LENGTH_INVALID, 0));
                }
                let i = self.alloc_slot(cid, Op::Write, ns, lba)?;
                let s = &mut self.slots[i];
                s.buf = Some(io.buffer(len as usize));
                s.total = len;
                s.bytes = len;
                let r = R2t {
                    cccid: cid,
                    ttag: i as u16,
                    offset: 0,
                    length: len,
                };
                self.writer.r2t(&mut self.out, &r);
                Ok(())
            }
        }
    }

    fn submit_write(&mut self, i: usize, buf: AlignedBuf, io: &mut ReactorIo) {
        let q = self.queue();
        let s = &mut self.slots[i];
        s.pending = 1;
        let Some(ns) = s.ns.clone() else {
            return self.finish(i, Status::INTERNAL, io);
        };
        let lba = s.lba;
        let r = match &ns.kind {
            NsKind::Live(v) => io.write(v, lba, buf, q, i as u32),
            NsKind::Raw(d) => io.raw(
                d,
                IoKind::Write,
                lba * u64::from(ns.block_size),
                Some(buf),
                q,
                i as u32,
            ),
            NsKind::View { .. } => Err((Status::NAMESPACE_WRITE_PROTECTED, Some(buf))),
        };
        if let Err((status, buf)) = r {
            if let Some(b) = buf {
                io.recycle(b);
            }
            self.finish(i, status, io);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        cid: u16,
        ns: &Arc<Namespace>,
        lba: u64,
        len: u32,
        sgl: Sgl,
        op: Op,
        at: ReadAt,
        seq: u64,
        io: &mut ReactorIo,
    ) -> Answer {
        if !matches!(sgl, Sgl::Transport { .. }) {
            return Err((Status::SGL_DESCRIPTOR_TYPE_INVALID, 0));
        }
        let i = self.alloc_slot(cid, op, ns, lba)?;
        self.slots[i].pending = 1;
        self.slots[i].seq = seq;
        let buf = io.buffer(len as usize);
        let q = self.queue();
        let r = match &ns.kind {
            NsKind::Live(v) | NsKind::View { volume: v, .. } => {
                io.read(v, lba, at, buf, q, i as u32)
            }
            NsKind::Raw(d) => io.raw(
                d,
                IoKind::Read,
                lba * u64::from(ns.block_size),
                Some(buf),
                q,
                i as u32,
            ),
        };
        if let Err((status, buf)) = r {
            if let Some(b) = buf {
                io.recycle(b);
            }
            return Err(self.unwind(i, status, io));
        }
        Ok(())
    }

    fn zeroes(
        &mut self,
        cid: u16,
        ns: &Arc<Namespace>,
        extents: &[(u64, u64)],
        io: &mut ReactorIo,
    ) -> Answer {
        if extents.is_empty() {
            self.respond(Completion::success(cid));
            return Ok(());
        }
        // The engine takes at most `max_zeroes_blocks` per record (so one
        // record's undo data always fits a sync step): split larger ranges.
        let chunk = match ns.volume() {
            Some(v) => v.geometry().max_zeroes_blocks(),
            None => u64::from(self.target.limits.max_transfer_bytes / ns.block_size),
        }
        .max(1);
        let pieces: Vec<(u64, u64)> = extents
            .iter()
            .flat_map(|&(lba, n)| {
                (0..n.div_ceil(chunk)).map(move |k| (lba + k * chunk, (n - k * chunk).min(chunk)))
            })
            .collect();
        let i = self.alloc_slot(cid, Op::Other, ns, 0)?;
        let q = self.queue();
        let mut submitted = 0u32;
        let mut failure = None;
        for &(lba, n) in &pieces {
            let r = match &ns.kind {
                NsKind::Live(v) => io.write_zeroes(v, lba, n, q, i as u32),
                NsKind::Raw(d) => {
                    let len = n * u64::from(ns.block_size);
                    if len > u64::from(self.target.limits.max_transfer_bytes) {
                        Err((Status::INVALID_FIELD, None))
                    } else {
                        let mut buf = io.buffer(len as usize);
                        buf.fill(0);
                        io.raw(
                            d,
                            IoKind::Write,
                            lba * u64::from(ns.block_size),
                            Some(buf),
                            q,
                            i as u32,
                        )
                    }
                }
                NsKind::View { .. } => Err((Status::NAMESPACE_WRITE_PROTECTED, None)),
            };
            match r {
                Ok(()) => submitted += 1,
                Err((s, buf)) => {
                    if let Some(b) = buf {
                        io.recycle(b);
                    }
                    failure = Some(s);
                    break;
                }
            }
        }
        let s = &mut self.slots[i];
        s.pending = submitted;
        if let Some(status) = failure {
            s.status = status;
        }
        if submitted == 0 {
            let status = failure.unwrap_or(Status::INTERNAL);
            return Err(self.unwind(i, status, io));
        }
        Ok(())
    }

    fn flush_all(&mut self, cid: u16, io: &mut ReactorIo) -> Answer {
        // Flush every namespace that takes writes; one request per volume/device.
        let targets: Vec<Arc<Namespace>> =
            self.ns.iter().filter(|n| !n.read_only()).cloned().collect();
        let Some(first) = targets.first().cloned() else {
            self.respond(Completion::success(cid));
            return Ok(());
        };
        let i = self.alloc_slot(cid, Op::Other, &first, 0)?;
        let q = self.queue();
        let mut submitted = 0;
        for ns in &targets {
            let r = match &ns.kind {
                NsKind::Live(v) => io.flush(v, q, i as u32),
                NsKind::Raw(d) => io.raw(d, IoKind::Flush, 0, None, q, i as u32),
                NsKind::View { .. } => continue,
            };
            match r {
                Ok(()) => submitted += 1,
                Err((s, _)) => self.slots[i].status = s,
            }
        }
        self.slots[i].pending = submitted;
        if submitted == 0 {
            let status = self.slots[i].status;
            return Err(self.unwind(i, status, io));
        }
        Ok(())
    }

    fn on_h2c_data(&mut self, d: &DataHeader, data: &[u8], digest_error: bool, io: &mut ReactorIo) {
        let i = usize::from(d.ttag);
        let ok = matches!(self.phase, Phase::Io(_))
            && self
                .slots
                .get(i)
                .is_some_and(|s| s.busy && s.op == Op::Write && s.cid == d.cccid && s.total > 0);
        if !ok {
            return self.terminate(Fes::InvalidHeaderField, DataHeader::TTAG_OFFSET);
        }
        let s = &mut self.slots[i];
        if d.offset != s.received {
            return self.terminate(Fes::DataTransferOutOfRange, DataHeader::DATAO_OFFSET);
        }
        let end = u64::from(d.offset) + u64::from(d.length);
        if end > u64::from(s.total) || d.length > self.target.limits.max_h2c_data {
            return self.terminate(Fes::DataTransferOutOfRange, DataHeader::DATAL_OFFSET);
        }
        if digest_error {
            s.status = Status::TRANSIENT_TRANSPORT_ERROR;
        } else if let Some(buf) = s.buf.as_mut() {
            let dst = buf.get_mut(d.offset as usize..end as usize);
            match dst {
                Some(dst) if dst.len() == data.len() => dst.copy_from_slice(data),
                _ => return self.terminate(Fes::DataTransferOutOfRange, DataHeader::DATAL_OFFSET),
            }
        }
        s.received = end as u32;
        if s.received == s.total {
            if s.status != Status::SUCCESS {
                let status = s.status;
                return self.finish(i, status, io);
            }
            if let Some(buf) = s.buf.take() {
                self.submit_write(i, buf, io);
            }
        }
    }

    fn on_done(&mut self, d: IoDone, io: &mut ReactorIo) {
        let i = d.tag as usize;
        let Some(s) = self.slots.get_mut(i).filter(|s| s.busy) else {
            if let Some(b) = d.buf {
                io.recycle(b);
            }
            return;
        };
        if let Err(status) = d.result {
            if s.status == Status::SUCCESS {
                s.status = status;
            }
        }
        if let Some(b) = d.buf {
            match s.op {
                Op::Read | Op::ReadAt => s.buf = Some(b),
                _ => io.recycle(b),
            }
        }
        s.pending = s.pending.saturating_sub(1);
        if s.pending == 0 {
            let status = s.status;
            self.finish(i, status, io);
        }
    }

    /// Completes slot `i` with `status` (sending read data on success).
    /// This round's clock reading (taken at the first use in the round).
    fn clock(&mut self) -> Instant {
        *self.round_clock.get_or_insert_with(Instant::now)
    }

    fn finish(&mut self, i: usize, status: Status, io: &mut ReactorIo) {
        let now = self.clock();
        let s = &mut self.slots[i];
        let cid = s.cid;
        if let (Phase::Io(ctrl), Some(started)) = (&self.phase, s.started) {
            let counted = match s.op {
                Op::Read | Op::ReadAt => Some((IoOp::Read, s.buf.as_ref().map_or(0, |b| b.len()))),
                Op::Write => Some((IoOp::Write, s.bytes as usize)),
                Op::None | Op::Other => None,
            };
            if let Some((op, bytes)) = counted {
                ctrl.subsystem.metrics.record(
                    io.reactor(),
                    op,
                    bytes as u64,
                    now.saturating_duration_since(started),
                    status == Status::SUCCESS,
                );
            }
        }
        if status != Status::SUCCESS {
            self.fail(cid, status, 0);
        } else {
            let mut cqe = Completion::success(cid);
            if s.op == Op::ReadAt {
                cqe.dw0 = s.seq as u32;
                cqe.dw1 = (s.seq >> 32) as u32;
            }
            match s.buf.take() {
                Some(buf) if matches!(s.op, Op::Read | Op::ReadAt) => {
                    self.respond_with_data(cqe, &buf);
                    io.recycle(buf);
                }
                other => {
                    if let Some(b) = other {
                        io.recycle(b);
                    }
                    self.respond(cqe);
                }
            }
        }
        self.free_slot(i, io);
    }
}

/// The command's in-capsule data, as its SGL describes it.
fn in_capsule<'a>(cmd: &Command<'_>, data: &'a [u8]) -> Result<&'a [u8], (Status, u32)> {
    match cmd.sgl().map_err(|e| (e.status(), 0))? {
        Sgl::InCapsule { offset: 0, length } if data.len() == length as usize => Ok(data),
        Sgl::InCapsule { offset: 0, .. } => Err((Status::DATA_SGL_LENGTH_INVALID, 0)),
        Sgl::InCapsule { .. } => Err((Status::SGL_OFFSET_INVALID, 0)),
        Sgl::Transport { .. } => Err((Status::DATA_SGL_LENGTH_INVALID, 0)),
    }
}

fn check_range(ns: &Namespace, lba: u64, n: u64) -> Answer {
    if n == 0 || lba.checked_add(n).is_none_or(|end| end > ns.blocks) {
        return Err((Status::LBA_OUT_OF_RANGE, 0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvmf::target::Limits;
    use std::time::Duration;

    fn queue(timeout: Duration) -> QueuePair {
        let limits = Limits {
            establish_timeout: timeout,
            ..Limits::default()
        };
        QueuePair::new(Arc::new(Target::new(limits, Vec::new(), Vec::new())))
    }

    #[test]
    fn a_connection_that_never_initializes_is_closed_after_the_timeout() {
        let mut io = ReactorIo::new(0);
        let mut qp = queue(Duration::from_millis(20));
        qp.on_tick(&mut io);
        assert!(!qp.closing(), "open while within the timeout");
        std::thread::sleep(Duration::from_millis(30));
        assert!(qp.on_tick(&mut io), "closing is work for the poller");
        assert!(qp.closing());
        assert!(qp.output().is_empty(), "no PDU for a host that never spoke");
    }

    #[test]
    fn the_timeout_does_not_touch_a_connection_within_it() {
        let mut io = ReactorIo::new(0);
        let mut qp = queue(Duration::from_secs(3600));
        for _ in 0..3 {
            qp.on_tick(&mut io);
        }
        assert!(!qp.closing());
    }
}
