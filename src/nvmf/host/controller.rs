//! The blocking NVMe-oF controller client: the fabrics connect sequence
//! (ICReq/ICResp, admin Connect, CAP, CC.EN, CSTS.RDY, Identify Controller,
//! Number of Queues, I/O queue Connects with the controller id), admin and
//! NVM commands one at a time per queue, keep alive, and the orderly
//! shutdown (CC.SHN, CSTS.SHST).
//!
//! Invariant: every call either completes its command or returns a typed
//! error within the configured timeout; commands never exceed the limits
//! the controller reported (MDTS, queue depth, in-capsule size), and a
//! command's data length always matches the blocks it names.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::buffers::Data;
use super::conn::{Conn, Transport};
use super::error::{HostError, ProtocolError};
use super::options::{ConnectOptions, ControllerLimits};
use super::queue::{HostCompletion, QueueConfig};
use super::slots::MAX_SLOTS;
use crate::nvmf::command::{
    cns, feature, CommandBuf, Connect, ConnectData, Dsm, DsmRange, GetLogPage, Identify,
    PropertySize, ReadWrite, SetFeatures, Sgl, WriteZeroes, CONNECT_DATA_LEN, NQN_MAX_LEN,
};
use crate::nvmf::completion::Completion;
use crate::nvmf::identify::{
    self, cntrltype, IdentifyController, IdentifyNamespace, NsIdDescriptor, IDENTIFY_LEN,
    NS_LIST_MAX,
};
use crate::nvmf::logpage::{self, discovery};
use crate::nvmf::properties::{offset, Cap, Cc, Csts, Vs};

/// Admin queue entries (Linux's NVME_AQ_DEPTH); Connect carries SQSIZE 31.
const ADMIN_ENTRIES: u16 = 32;
/// In-capsule data on the admin queue (fixed by the fabrics spec: 8 KiB).
const ADMIN_IN_CAPSULE: u32 = 8192;
/// Connect response DW0 AUTHREQ bits (ATR, ASCR): in-band authentication.
const CONNECT_AUTHREQ: u32 = (1 << 17) | (1 << 18);
/// Vendor-specific I/O command of the rewind target: read at a point in
/// time (see [`Point`]).
pub const OPC_READ_AT_POINT: u8 = 0x82;

/// Which point a read-at-point names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The newest retained point at or before this wall-clock time, in ns
    /// since the Unix epoch (CDW13 bit 0 clear).
    TimeNs(u64),
    /// The point with this sequence number or the newest before it (CDW13
    /// bit 0 set).
    Seq(u64),
}

/// One Discovery log page entry, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryRecord {
    pub trtype: u8,
    pub adrfam: u8,
    pub subtype: u8,
    pub treq: u8,
    pub portid: u16,
    pub cntlid: u16,
    pub asqsz: u16,
    pub trsvcid: String,
    pub subnqn: String,
    pub traddr: String,
}

/// A connected controller (see the module documentation).
#[derive(Debug)]
pub struct Controller<T: Transport = TcpStream> {
    subnqn: String,
    opts: ConnectOptions,
    admin: Conn<T>,
    /// I/O queue `qid` is `io[qid - 1]`; `None` once detached.
    io: Vec<Option<Conn<T>>>,
    cap: Cap,
    vs: Vs,
    limits: ControllerLimits,
    /// Logical block size by namespace, learned from Identify Namespace.
    lba_sizes: Vec<(u32, u32)>,
    last_keep_alive: Instant,
}

fn invalid(msg: impl Into<String>) -> HostError {
    HostError::Invalid(msg.into())
}

fn kato_ms(kato: Duration) -> u32 {
    u32::try_from(kato.as_millis()).unwrap_or(u32::MAX)
}

impl Controller<TcpStream> {
    /// Connects to subsystem `subnqn` at `addr` over TCP.
    pub fn connect(
        addr: impl ToSocketAddrs,
        subnqn: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, HostError> {
        let addr = resolve(addr)?;
        let timeout = opts.timeout;
        Controller::connect_with(move |_qid| tcp_connect(&addr, timeout), subnqn, opts)
    }

    /// Takes I/O queue `qid` out of the controller as a non-blocking
    /// [`super::IoQueue`] for many commands in flight (the blocking calls
    /// then refuse `qid`).
    pub fn detach_io_queue<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        qid: u16,
    ) -> Result<super::IoQueue<B>, HostError> {
        let slot = usize::from(qid)
            .checked_sub(1)
            .and_then(|i| self.io.get_mut(i))
            .ok_or_else(|| invalid(format!("no I/O queue {qid}")))?;
        let conn = slot
            .take()
            .ok_or_else(|| invalid(format!("I/O queue {qid} is already detached")))?;
        super::IoQueue::from_conn(conn)
    }
}

/// Reads the Discovery log page of the discovery controller at `addr`.
pub fn discover(
    addr: impl ToSocketAddrs,
    opts: &ConnectOptions,
) -> Result<Vec<DiscoveryRecord>, HostError> {
    let opts = ConnectOptions {
        io_queues: 0,
        kato: Duration::ZERO,
        ..opts.clone()
    };
    let mut c = Controller::connect(addr, discovery::DISCOVERY_NQN, &opts)?;
    let log = c.discovery_log();
    let _ = c.disconnect();
    log
}

fn resolve(addr: impl ToSocketAddrs) -> Result<SocketAddr, HostError> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid("address resolves to nothing"))
}

fn tcp_connect(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(addr, timeout)?;
    s.set_nodelay(true)?;
    Ok(s)
}

impl<T: Transport> Controller<T> {
    /// Connects over streams `connector(qid)` opens (one per queue).
    pub fn connect_with(
        mut connector: impl FnMut(u16) -> io::Result<T>,
        subnqn: &str,
        opts: &ConnectOptions,
    ) -> Result<Self, HostError> {
        if subnqn.len() > NQN_MAX_LEN || opts.hostnqn.len() > NQN_MAX_LEN {
            return Err(invalid("NQN longer than 223 bytes"));
        }
        let is_discovery = subnqn == discovery::DISCOVERY_NQN;
        let queue = |qid, depth, in_capsule_max| QueueConfig {
            qid,
            depth,
            hdr_digest: opts.hdr_digest,
            data_digest: opts.data_digest,
            in_capsule_max,
        };
        let mut admin = Conn::open(
            connector(0)?,
            queue(0, ADMIN_ENTRIES - 1, ADMIN_IN_CAPSULE),
            opts.timeout,
        )?;
        let cntlid = connect_queue(
            &mut admin,
            0,
            ADMIN_ENTRIES - 1,
            kato_ms(opts.kato),
            discovery::CNTLID_DYNAMIC,
            subnqn,
            opts,
        )?;
        let cap = Cap::from_raw(property_get(&mut admin, offset::CAP, PropertySize::Eight)?);
        let vs = Vs::from_raw(property_get(&mut admin, offset::VS, PropertySize::Four)? as u32);
        // CC.CSS as Linux picks it: command-set-identifier based if offered,
        // else NVM, else admin only (discovery controllers).
        let css = if cap.css() & (1 << 6) != 0 {
            6
        } else if cap.css() & Cap::CSS_NVM != 0 {
            0
        } else {
            7
        };
        let cc = Cc::default()
            .with_css(css)
            .with_mps(cap.mpsmin())
            .with_iosqes(Cc::IOSQES_64)
            .with_iocqes(Cc::IOCQES_16)
            .with_en(1);
        property_set(&mut admin, offset::CC, u64::from(cc.raw()))?;
        let ready_timeout = Duration::from_millis(500 * (u64::from(cap.to()) + 1));
        wait_csts(&mut admin, ready_timeout, "CSTS.RDY", |c| c.ready())?;

        let mut idbuf = [0u8; IDENTIFY_LEN];
        let id = identify_controller(&mut admin, &mut idbuf)?;
        if id.cntlid != cntlid {
            return Err(ProtocolError::Fabrics(format!(
                "Identify Controller reports controller id {:#x}, Connect returned {cntlid:#x}",
                id.cntlid
            ))
            .into());
        }
        let is_discovery = is_discovery || id.cntrltype == cntrltype::DISCOVERY;
        if !is_discovery && id.sgls & 0x3 == 0 {
            return Err(ProtocolError::Fabrics(
                "controller does not support SGLs, which NVMe/TCP requires".into(),
            )
            .into());
        }
        let page = 4096u64 << cap.mpsmin();
        let max_transfer = match id.mdts {
            0 => None,
            m => Some(
                page.checked_shl(u32::from(m))
                    .map_or(u32::MAX, |b| u32::try_from(b).unwrap_or(u32::MAX)),
            ),
        };
        let io_in_capsule = if id.icdoff != 0 {
            0
        } else {
            u32::try_from(id.in_capsule_data_bytes()).unwrap_or(u32::MAX)
        };
        let mut io_depth = opts.queue_depth.min(cap.mqes());
        if id.maxcmd != 0 {
            io_depth = io_depth.min(id.maxcmd);
        }
        let io_depth = io_depth.clamp(1, (MAX_SLOTS - 1) as u16);
        let mut limits = ControllerLimits {
            cntlid,
            cntrltype: id.cntrltype,
            max_transfer,
            io_in_capsule,
            io_depth,
            nn: id.nn,
            oncs: id.oncs,
            vwc: id.vwc & 1 != 0,
            kas: id.kas,
            sgls: id.sgls,
        };

        let mut io = Vec::new();
        if opts.io_queues > 0 && !is_discovery {
            let n = u32::from(opts.io_queues);
            let cmd = CommandBuf::set_features(
                0,
                0,
                &SetFeatures {
                    fid: feature::NUMBER_OF_QUEUES,
                    sv: false,
                    value: (n - 1) | ((n - 1) << 16),
                },
            );
            let c = admin.execute_ok(cmd, Data::None, "Set Features (Number of Queues)")?;
            let nsqa = (c.cqe.dw0 & 0xFFFF) + 1;
            let ncqa = (c.cqe.dw0 >> 16) + 1;
            let granted = n.min(nsqa).min(ncqa) as u16;
            for qid in 1..=granted {
                let mut conn = Conn::open(
                    connector(qid)?,
                    queue(qid, io_depth, io_in_capsule),
                    opts.timeout,
                )?;
                connect_queue(&mut conn, qid, io_depth, 0, cntlid, subnqn, opts)?;
                io.push(Some(conn));
            }
        } else {
            limits.io_depth = 0;
        }
        Ok(Controller {
            subnqn: subnqn.to_string(),
            opts: opts.clone(),
            admin,
            io,
            cap,
            vs,
            limits,
            lba_sizes: Vec::new(),
            last_keep_alive: Instant::now(),
        })
    }

    pub fn subnqn(&self) -> &str {
        &self.subnqn
    }
    pub fn options(&self) -> &ConnectOptions {
        &self.opts
    }
    pub fn cap(&self) -> Cap {
        self.cap
    }
    pub fn version(&self) -> Vs {
        self.vs
    }
    pub fn limits(&self) -> &ControllerLimits {
        &self.limits
    }
    pub fn cntlid(&self) -> u16 {
        self.limits.cntlid
    }
    /// I/O queues connected (qids `1..=io_queue_count()`).
    pub fn io_queue_count(&self) -> u16 {
        self.io.len() as u16
    }

    // ---- admin ----------------------------------------------------------

    /// Sends a Keep Alive now.
    pub fn keep_alive(&mut self) -> Result<(), HostError> {
        self.admin
            .execute_ok(CommandBuf::keep_alive(0), Data::None, "Keep Alive")?;
        self.last_keep_alive = Instant::now();
        Ok(())
    }

    /// Sends a Keep Alive if half the keep alive timeout has passed since
    /// the last one. Every call does this; idle callers call it themselves.
    pub fn tick(&mut self) -> Result<(), HostError> {
        let kato = self.opts.kato;
        if !kato.is_zero() && self.last_keep_alive.elapsed() >= kato / 2 {
            self.keep_alive()?;
        }
        Ok(())
    }

    /// Identify Controller into `buf`.
    pub fn identify_controller<'b>(
        &mut self,
        buf: &'b mut [u8; IDENTIFY_LEN],
    ) -> Result<IdentifyController<'b>, HostError> {
        self.tick()?;
        identify_controller(&mut self.admin, buf)
    }

    /// Identify Namespace (and remembers its block size).
    pub fn identify_namespace(&mut self, nsid: u32) -> Result<IdentifyNamespace, HostError> {
        self.tick()?;
        let mut buf = [0u8; IDENTIFY_LEN];
        self.identify(cns::NAMESPACE, nsid, &mut buf)?;
        let ns = IdentifyNamespace::decode(&buf).map_err(ProtocolError::from)?;
        if let Some(size) = ns.lba_size().and_then(|s| u32::try_from(s).ok()) {
            match self.lba_sizes.iter_mut().find(|(n, _)| *n == nsid) {
                Some(e) => e.1 = size,
                None => self.lba_sizes.push((nsid, size)),
            }
        }
        Ok(ns)
    }

    /// The active namespace ids, ascending.
    pub fn active_namespaces(&mut self) -> Result<Vec<u32>, HostError> {
        self.tick()?;
        let mut out = Vec::new();
        let mut after = 0u32;
        loop {
            let mut buf = [0u8; IDENTIFY_LEN];
            self.identify(cns::ACTIVE_NS_LIST, after, &mut buf)?;
            let before = out.len();
            out.extend(identify::decode_ns_list(&buf).filter(|&id| id > after));
            let got = out.len() - before;
            match out.last() {
                Some(&last) if got == NS_LIST_MAX && last < u32::MAX - 1 => after = last,
                _ => return Ok(out),
            }
        }
    }

    /// The namespace identification descriptors of `nsid` (unknown types
    /// skipped).
    pub fn namespace_descriptors(&mut self, nsid: u32) -> Result<Vec<NsIdDescriptor>, HostError> {
        self.tick()?;
        let mut buf = [0u8; IDENTIFY_LEN];
        self.identify(cns::NS_ID_DESCRIPTORS, nsid, &mut buf)?;
        identify::decode_ns_descriptors(&buf)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ProtocolError::from(e).into())
    }

    fn identify(
        &mut self,
        cns: u8,
        nsid: u32,
        buf: &mut [u8; IDENTIFY_LEN],
    ) -> Result<(), HostError> {
        let cmd = CommandBuf::identify(
            0,
            nsid,
            &Identify {
                cns,
                cntid: 0,
                csi: 0,
            },
        );
        self.admin.execute_ok(cmd, Data::In(buf), "Identify")?;
        Ok(())
    }

    /// Get Log Page `lid` from byte `lpo` into `buf` (a multiple of 4
    /// bytes), in commands no larger than MDTS.
    pub fn get_log_page(
        &mut self,
        lid: u8,
        nsid: u32,
        lsp: u8,
        lpo: u64,
        buf: &mut [u8],
    ) -> Result<(), HostError> {
        self.tick()?;
        if buf.is_empty() || !buf.len().is_multiple_of(4) || !lpo.is_multiple_of(4) {
            return Err(invalid(
                "log page length and offset must be non-zero multiples of 4",
            ));
        }
        let max = self.limits.max_transfer.unwrap_or(1 << 20).max(4096) as usize;
        let mut off = 0usize;
        for chunk in buf.chunks_mut(max) {
            let glp = GetLogPage {
                lid,
                lsp,
                rae: false,
                numd: (chunk.len() / 4 - 1) as u32,
                lsi: 0,
                lpo: lpo + off as u64,
                csi: 0,
            };
            off += chunk.len();
            self.admin.execute_ok(
                CommandBuf::get_log_page(0, nsid, &glp),
                Data::In(chunk),
                "Get Log Page",
            )?;
        }
        Ok(())
    }

    /// The Discovery log page (of a discovery controller), read whole and
    /// re-read while its generation counter changes underneath.
    pub fn discovery_log(&mut self) -> Result<Vec<DiscoveryRecord>, HostError> {
        for _ in 0..4 {
            let mut head = vec![0u8; discovery::RECORD_LEN];
            self.get_log_page(logpage::lid::DISCOVERY, 0, 0, 0, &mut head)?;
            let h = logpage::DiscoveryLogHeader::decode(&head).map_err(ProtocolError::from)?;
            let records = usize::try_from(h.numrec.min(1024)).unwrap_or(1024);
            let mut page = vec![0u8; discovery::RECORD_LEN * (records + 1)];
            self.get_log_page(logpage::lid::DISCOVERY, 0, 0, 0, &mut page)?;
            let again = logpage::DiscoveryLogHeader::decode(&page).map_err(ProtocolError::from)?;
            if again.genctr != h.genctr {
                continue;
            }
            let entries = logpage::decode_discovery_entries(&page).map_err(ProtocolError::from)?;
            return entries
                .map(|e| {
                    let e = e.map_err(ProtocolError::from)?;
                    Ok(DiscoveryRecord {
                        trtype: e.trtype,
                        adrfam: e.adrfam,
                        subtype: e.subtype,
                        treq: e.treq,
                        portid: e.portid,
                        cntlid: e.cntlid,
                        asqsz: e.asqsz,
                        trsvcid: e.trsvcid.to_string(),
                        subnqn: e.subnqn.to_string(),
                        traddr: e.traddr.to_string(),
                    })
                })
                .collect();
        }
        Err(ProtocolError::Fabrics("discovery log keeps changing".into()).into())
    }

    /// Any command on queue `qid` (0 = admin) with its data; the queue
    /// fills in the command id and data pointer. A non-success status is
    /// [`HostError::Status`], which carries the completion.
    pub fn passthru(
        &mut self,
        qid: u16,
        cmd: CommandBuf,
        data: Data<'_>,
    ) -> Result<Completion, HostError> {
        self.tick()?;
        let conn = self.queue(qid)?;
        Ok(conn.execute_ok(cmd, data, "passthru command")?.cqe)
    }

    // ---- I/O --------------------------------------------------------------

    fn queue(&mut self, qid: u16) -> Result<&mut Conn<T>, HostError> {
        if qid == 0 {
            return Ok(&mut self.admin);
        }
        usize::from(qid)
            .checked_sub(1)
            .and_then(|i| self.io.get_mut(i))
            .and_then(Option::as_mut)
            .ok_or_else(|| invalid(format!("no I/O queue {qid} (or it is detached)")))
    }

    fn io_queue(&mut self, qid: u16) -> Result<&mut Conn<T>, HostError> {
        if qid == 0 {
            return Err(invalid("NVM commands go to an I/O queue, not qid 0"));
        }
        self.queue(qid)
    }

    /// Block size of `nsid` (asks Identify Namespace the first time).
    pub fn lba_size(&mut self, nsid: u32) -> Result<u32, HostError> {
        if let Some(&(_, s)) = self.lba_sizes.iter().find(|(n, _)| *n == nsid) {
            return Ok(s);
        }
        self.identify_namespace(nsid)?;
        self.lba_sizes
            .iter()
            .find(|(n, _)| *n == nsid)
            .map(|&(_, s)| s)
            .ok_or_else(|| {
                ProtocolError::Fabrics(format!("namespace {nsid} has no valid block size")).into()
            })
    }

    /// Checks a transfer of `nblocks` blocks against `len` bytes of buffer
    /// and MDTS; returns the 0-based block count.
    fn blocks(&mut self, nsid: u32, nblocks: u32, len: usize) -> Result<u16, HostError> {
        if nblocks == 0 || nblocks > 1 << 16 {
            return Err(invalid(format!(
                "{nblocks} blocks: one command moves 1..=65536"
            )));
        }
        let lba = self.lba_size(nsid)?;
        let want = u64::from(nblocks) * u64::from(lba);
        if want != len as u64 {
            return Err(invalid(format!(
                "{nblocks} blocks of {lba} bytes need a {want}-byte buffer, got {len}"
            )));
        }
        if let Some(max) = self.limits.max_transfer {
            if want > u64::from(max) {
                return Err(invalid(format!(
                    "{want} bytes exceed the controller's MDTS of {max}"
                )));
            }
        }
        Ok((nblocks - 1) as u16)
    }

    fn rw(slba: u64, nlb0: u16) -> ReadWrite {
        ReadWrite {
            slba,
            nlb0,
            fua: false,
            lr: false,
            prinfo: 0,
            dtype: 0,
        }
    }

    fn run_io(
        &mut self,
        qid: u16,
        cmd: CommandBuf,
        data: Data<'_>,
        what: &'static str,
    ) -> Result<HostCompletion, HostError> {
        self.tick()?;
        let want = data.len();
        let c = self.io_queue(qid)?.execute_ok(cmd, data, what)?;
        if c.transferred as usize != want {
            return Err(ProtocolError::Fabrics(format!(
                "{what} completed after {} of {want} data bytes",
                c.transferred
            ))
            .into());
        }
        Ok(c)
    }

    /// Reads `nblocks` blocks from `slba` into `buf` (exactly that size).
    pub fn read(
        &mut self,
        qid: u16,
        nsid: u32,
        slba: u64,
        nblocks: u32,
        buf: &mut [u8],
    ) -> Result<(), HostError> {
        let nlb0 = self.blocks(nsid, nblocks, buf.len())?;
        let cmd = CommandBuf::read(
            0,
            nsid,
            &Self::rw(slba, nlb0),
            &Sgl::Transport { length: 0 },
        );
        self.run_io(qid, cmd, Data::In(buf), "Read")?;
        Ok(())
    }

    /// Writes `buf` (exactly `nblocks` blocks) at `slba`.
    pub fn write(
        &mut self,
        qid: u16,
        nsid: u32,
        slba: u64,
        nblocks: u32,
        buf: &[u8],
    ) -> Result<(), HostError> {
        let nlb0 = self.blocks(nsid, nblocks, buf.len())?;
        let cmd = CommandBuf::write(
            0,
            nsid,
            &Self::rw(slba, nlb0),
            &Sgl::Transport { length: 0 },
        );
        self.run_io(qid, cmd, Data::Out(buf), "Write")?;
        Ok(())
    }

    pub fn flush(&mut self, qid: u16, nsid: u32) -> Result<(), HostError> {
        self.run_io(qid, CommandBuf::flush(0, nsid), Data::None, "Flush")?;
        Ok(())
    }

    /// Write Zeroes over `nblocks` blocks from `slba`.
    pub fn write_zeroes(
        &mut self,
        qid: u16,
        nsid: u32,
        slba: u64,
        nblocks: u32,
    ) -> Result<(), HostError> {
        if nblocks == 0 || nblocks > 1 << 16 {
            return Err(invalid(format!(
                "{nblocks} blocks: one command covers 1..=65536"
            )));
        }
        let wz = WriteZeroes {
            slba,
            nlb0: (nblocks - 1) as u16,
            deac: false,
            fua: false,
            lr: false,
        };
        self.run_io(
            qid,
            CommandBuf::write_zeroes(0, nsid, &wz),
            Data::None,
            "Write Zeroes",
        )?;
        Ok(())
    }

    /// Dataset Management with the deallocate attribute over `ranges`
    /// (start LBA, block count), 1..=256 of them.
    pub fn dsm_deallocate(
        &mut self,
        qid: u16,
        nsid: u32,
        ranges: &[(u64, u32)],
    ) -> Result<(), HostError> {
        if ranges.is_empty() || ranges.len() > 256 {
            return Err(invalid("dataset management takes 1..=256 ranges"));
        }
        let mut data = [0u8; 256 * DsmRange::LEN];
        for (i, &(slba, nlb)) in ranges.iter().enumerate() {
            let r = DsmRange {
                cattr: 0,
                nlb,
                slba,
            }
            .encode();
            if let Some(d) = data.get_mut(i * DsmRange::LEN..(i + 1) * DsmRange::LEN) {
                d.copy_from_slice(&r);
            }
        }
        let dsm = Dsm {
            nr0: (ranges.len() - 1) as u8,
            idr: false,
            idw: false,
            ad: true,
        };
        let len = ranges.len() * DsmRange::LEN;
        let cmd = CommandBuf::dsm(0, nsid, &dsm, &Sgl::Transport { length: 0 });
        self.run_io(qid, cmd, Data::Out(&data[..len]), "Dataset Management")?;
        Ok(())
    }

    /// The rewind target's vendor read-at-point command
    /// ([`OPC_READ_AT_POINT`]): reads `nblocks` from `slba` as the volume
    /// was at `point`; returns the sequence number of the point that served
    /// it (completion DW1:DW0).
    pub fn read_at_point(
        &mut self,
        qid: u16,
        nsid: u32,
        slba: u64,
        nblocks: u32,
        point: Point,
        buf: &mut [u8],
    ) -> Result<u64, HostError> {
        let nlb0 = self.blocks(nsid, nblocks, buf.len())?;
        let (sel, value) = match point {
            Point::TimeNs(t) => (0, t),
            Point::Seq(s) => (1, s),
        };
        let cmd = CommandBuf::new(OPC_READ_AT_POINT, 0)
            .set_nsid(nsid)
            .set_cdw(10, slba as u32)
            .set_cdw(11, (slba >> 32) as u32)
            .set_cdw(12, u32::from(nlb0))
            .set_cdw(13, sel)
            .set_cdw(14, value as u32)
            .set_cdw(15, (value >> 32) as u32);
        let c = self.run_io(qid, cmd, Data::In(buf), "Read At Point")?;
        Ok(c.cqe.result64())
    }

    // ---- teardown ---------------------------------------------------------

    /// Orderly shutdown: CC.SHN = normal, wait for CSTS.SHST = complete,
    /// then close every connection. The connections close even when the
    /// shutdown fails.
    pub fn disconnect(mut self) -> Result<(), HostError> {
        let r = self.shutdown();
        self.close_all();
        r
    }

    fn shutdown(&mut self) -> Result<(), HostError> {
        let cc =
            Cc::from_raw(property_get(&mut self.admin, offset::CC, PropertySize::Four)? as u32);
        property_set(
            &mut self.admin,
            offset::CC,
            u64::from(cc.with_shn(Cc::SHN_NORMAL).raw()),
        )?;
        let t = self.opts.timeout;
        wait_csts(&mut self.admin, t, "CSTS.SHST", |c| {
            c.shst() == Csts::SHST_COMPLETE
        })?;
        Ok(())
    }

    fn close_all(&mut self) {
        for c in self.io.iter_mut().flatten() {
            c.close();
        }
        self.admin.close();
    }
}

/// Connect on `conn` (queue `qid`, SQSIZE `sqsize`); returns the
/// controller id.
fn connect_queue<T: Transport>(
    conn: &mut Conn<T>,
    qid: u16,
    sqsize: u16,
    kato_ms: u32,
    cntlid: u16,
    subnqn: &str,
    opts: &ConnectOptions,
) -> Result<u16, HostError> {
    let mut data = [0u8; CONNECT_DATA_LEN];
    ConnectData {
        hostid: opts.hostid,
        cntlid,
        subnqn,
        hostnqn: &opts.hostnqn,
    }
    .encode(&mut data);
    let cmd = CommandBuf::connect(
        0,
        &Connect {
            recfmt: 0,
            qid,
            sqsize,
            cattr: 0,
            kato: kato_ms,
        },
        &Sgl::Transport { length: 0 },
    );
    let c = conn.execute_ok(cmd, Data::Out(&data), "Connect")?;
    if c.cqe.dw0 & CONNECT_AUTHREQ != 0 {
        return Err(ProtocolError::Fabrics(
            "target requires in-band authentication, which this host does not do".into(),
        )
        .into());
    }
    Ok(c.cqe.dw0 as u16)
}

fn property_get<T: Transport>(
    admin: &mut Conn<T>,
    offset: u32,
    size: PropertySize,
) -> Result<u64, HostError> {
    let c = admin.execute_ok(
        CommandBuf::property_get(0, size, offset),
        Data::None,
        "Property Get",
    )?;
    Ok(match size {
        PropertySize::Four => u64::from(c.cqe.dw0),
        PropertySize::Eight => c.cqe.result64(),
    })
}

fn property_set<T: Transport>(
    admin: &mut Conn<T>,
    offset: u32,
    value: u64,
) -> Result<(), HostError> {
    admin.execute_ok(
        CommandBuf::property_set(0, PropertySize::Four, offset, value),
        Data::None,
        "Property Set",
    )?;
    Ok(())
}

/// Polls CSTS until `done` (or CFS, or `timeout`).
fn wait_csts<T: Transport>(
    admin: &mut Conn<T>,
    timeout: Duration,
    what: &'static str,
    done: impl Fn(Csts) -> bool,
) -> Result<(), HostError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        let csts = Csts::from_raw(property_get(admin, offset::CSTS, PropertySize::Four)? as u32);
        if csts.cfs() != 0 {
            return Err(ProtocolError::Fabrics("controller fatal status (CSTS.CFS)".into()).into());
        }
        if done(csts) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HostError::Timeout {
                what,
                after: timeout,
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn identify_controller<'b, T: Transport>(
    admin: &mut Conn<T>,
    buf: &'b mut [u8; IDENTIFY_LEN],
) -> Result<IdentifyController<'b>, HostError> {
    let cmd = CommandBuf::identify(
        0,
        0,
        &Identify {
            cns: cns::CONTROLLER,
            cntid: 0,
            csi: 0,
        },
    );
    admin.execute_ok(cmd, Data::In(&mut buf[..]), "Identify Controller")?;
    IdentifyController::decode(&buf[..]).map_err(|e| ProtocolError::from(e).into())
}
