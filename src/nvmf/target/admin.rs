//! Admin commands and fabrics property access: Identify, Get Log Page,
//! Get/Set Features, Keep Alive, Abort and Property Get/Set, answered from
//! the controller's state and its subsystem's namespace table.
//!
//! Everything here completes at once; the admin queue holds Asynchronous
//! Event Requests itself (see [`super::queue`]). A discovery controller
//! accepts only what the specification allows it (Identify, Get Log Page,
//! Keep Alive, Get/Set Features, AER).
//!
//! Invariant: every reply's data is exactly what the host asked for (the
//! NUMD window of a log page, a whole 4096-byte Identify structure), zero
//! filled where the structure has nothing.

use super::controller::Controller;
use super::subsystem::SubsystemKind;
use super::Target;
use crate::nvmf::command::{admin, cns, feature, Command, Fabrics, PropertySize};
use crate::nvmf::completion::Completion;
use crate::nvmf::identify::{
    self, encode_ns_descriptors, encode_ns_list, IdentifyController, IdentifyNamespace,
    NsIdDescriptor, IDENTIFY_LEN,
};
use crate::nvmf::logpage::{self, discovery, lid, DiscoveryEntry};
use crate::nvmf::properties::{offset, Cap, Cc, Vs};
use crate::nvmf::status::Status;
use std::sync::Arc;

/// Outstanding Asynchronous Event Requests a controller accepts (AERL + 1).
pub const AER_LIMIT: usize = 4;

/// Async event: notice (type 2), namespace attribute changed (info 0), log 04h.
pub const AEN_NS_CHANGED: u32 = 0x02 | (lid::CHANGED_NS_LIST as u32) << 16;

/// Keep-alive granularity advertised (KAS), in 100 ms units.
const KAS_100MS: u16 = 10;

/// The result of one admin command: its completion and any data for the host.
#[derive(Debug)]
pub struct AdminReply {
    pub cqe: Completion,
    pub data: Vec<u8>,
}

fn ok(cid: u16) -> AdminReply {
    AdminReply {
        cqe: Completion::success(cid),
        data: Vec::new(),
    }
}

fn err(cid: u16, status: Status) -> AdminReply {
    AdminReply {
        cqe: Completion::error(cid, status),
        data: Vec::new(),
    }
}

fn with_dw0(cid: u16, dw0: u32) -> AdminReply {
    let mut r = ok(cid);
    r.cqe.dw0 = dw0;
    r
}

/// The CAP property this target reports.
pub fn cap(target: &Target) -> Cap {
    // TO in 500 ms units: we are ready at once, 1 is the smallest honest value.
    Cap::fabrics(target.limits.queue_entries - 1, 1)
}

/// MDTS for `bytes` (a power of two in 4 KiB units).
fn mdts(bytes: u32) -> u8 {
    (bytes / 4096).max(1).trailing_zeros() as u8
}

/// Answers Property Get/Set (fabrics, admin queue only).
pub fn property(target: &Target, ctrl: &Controller, cid: u16, f: &Fabrics) -> AdminReply {
    match *f {
        Fabrics::PropertyGet { size, offset: off } => {
            let value: u64 = match (off, size) {
                (offset::CAP, PropertySize::Eight) => cap(target).raw(),
                (offset::VS, PropertySize::Four) => u64::from(Vs::V1_3.raw()),
                (offset::CC, PropertySize::Four) => u64::from(ctrl.cc().raw()),
                (offset::CSTS, PropertySize::Four) => u64::from(ctrl.csts().raw()),
                _ => return err(cid, Status::INVALID_FIELD),
            };
            let mut r = ok(cid);
            r.cqe.dw0 = value as u32;
            r.cqe.dw1 = (value >> 32) as u32;
            r
        }
        Fabrics::PropertySet {
            size,
            offset: off,
            value,
        } => {
            if off != offset::CC || size != PropertySize::Four {
                return err(cid, Status::INVALID_FIELD);
            }
            let cc = Cc::from_raw(value as u32);
            if cc.enabled()
                && (cc.iosqes() != Cc::IOSQES_64
                    || cc.iocqes() != Cc::IOCQES_16
                    // CSS: 0 NVM, 6 all supported I/O sets, 7 admin only.
                    || !matches!(cc.css(), 0 | 6 | 7))
            {
                return err(cid, Status::INVALID_FIELD);
            }
            ctrl.set_cc(cc);
            ok(cid)
        }
        _ => err(cid, Status::INVALID_OPCODE),
    }
}

/// Answers one admin command (not AER, which the queue holds).
pub fn execute(target: &Target, ctrl: &Arc<Controller>, cmd: &Command<'_>) -> AdminReply {
    let cid = cmd.cid();
    let discovery = ctrl.subsystem.kind == SubsystemKind::Discovery;
    match cmd.opcode() {
        admin::IDENTIFY => identify(target, ctrl, cmd),
        admin::GET_LOG_PAGE => get_log_page(target, ctrl, cmd),
        admin::SET_FEATURES => set_features(target, ctrl, cmd),
        admin::GET_FEATURES => get_features(ctrl, cmd),
        admin::KEEP_ALIVE => {
            ctrl.keep_alive();
            ok(cid)
        }
        // We complete every command promptly and never abort one: DW0 bit 0
        // set says "not aborted".
        admin::ABORT if !discovery => with_dw0(cid, 1),
        _ => err(cid, Status::INVALID_OPCODE),
    }
}

fn identify(target: &Target, ctrl: &Arc<Controller>, cmd: &Command<'_>) -> AdminReply {
    let cid = cmd.cid();
    let id = cmd.identify();
    let discovery = ctrl.subsystem.kind == SubsystemKind::Discovery;
    let mut data = vec![0u8; IDENTIFY_LEN];
    let out: &mut [u8; IDENTIFY_LEN] = match data.as_mut_slice().try_into() {
        Ok(o) => o,
        Err(_) => return err(cid, Status::INTERNAL),
    };
    match id.cns {
        cns::CONTROLLER => {
            let table = ctrl.subsystem.namespaces.load();
            let limits = &target.limits;
            let c = IdentifyController {
                sn: &ctrl.subsystem.serial,
                mn: &limits.model,
                fr: &limits.firmware,
                mdts: mdts(limits.max_transfer_bytes),
                cntlid: ctrl.cntlid,
                ver: Vs::V1_3.raw(),
                oaes: if discovery {
                    0
                } else {
                    identify::oaes::NS_ATTRIBUTE_NOTICES
                },
                cntrltype: if discovery {
                    identify::cntrltype::DISCOVERY
                } else {
                    identify::cntrltype::IO
                },
                acl: 3,
                aerl: (AER_LIMIT - 1) as u8,
                lpa: identify::lpa::EXTENDED_DATA,
                elpe: 0,
                kas: KAS_100MS,
                sqes: 0x66,
                cqes: 0x44,
                maxcmd: limits.queue_entries,
                nn: if discovery {
                    0
                } else {
                    table.max_nsid().max(1024)
                },
                oncs: if discovery {
                    0
                } else {
                    identify::oncs::WRITE_ZEROES | identify::oncs::DSM
                },
                vwc: if discovery { 0 } else { 1 },
                sgls: identify::sgls::SUPPORTED | identify::sgls::OFFSET,
                subnqn: &ctrl.subsystem.nqn,
                ioccsz: (64 + limits.in_capsule_bytes) / 16,
                iorcsz: 1,
                icdoff: 0,
                fcatt: 0,
                msdbd: 1,
                ..Default::default()
            };
            c.encode(out);
        }
        cns::NAMESPACE if !discovery => {
            let table = ctrl.subsystem.namespaces.load();
            match table.get(cmd.nsid()) {
                Some(ns) => {
                    let mut n = IdentifyNamespace::new(ns.blocks, ns.lbads());
                    n.nguid = ns.uuid;
                    n.dlfeat = 0x01; // deallocated blocks read as zeroes
                    if ns.read_only() {
                        n = n.read_only();
                    }
                    n.encode(out);
                }
                // An inactive NSID below NN returns zeroes; beyond, an error.
                None if cmd.nsid() != 0 && cmd.nsid() != u32::MAX => {}
                None => return err(cid, Status::INVALID_NAMESPACE),
            }
        }
        cns::ACTIVE_NS_LIST if !discovery => {
            let table = ctrl.subsystem.namespaces.load();
            let above = cmd.nsid();
            if above >= 0xFFFF_FFFE {
                return err(cid, Status::INVALID_NAMESPACE);
            }
            encode_ns_list(table.iter().map(|n| n.nsid), above, out);
        }
        cns::NS_ID_DESCRIPTORS if !discovery => {
            let table = ctrl.subsystem.namespaces.load();
            let Some(ns) = table.get(cmd.nsid()) else {
                return err(cid, Status::INVALID_NAMESPACE);
            };
            encode_ns_descriptors(
                &[
                    NsIdDescriptor::Nguid(ns.uuid),
                    NsIdDescriptor::Uuid(ns.uuid),
                    NsIdDescriptor::Csi(0),
                ],
                out,
            );
        }
        _ => return err(cid, Status::INVALID_FIELD),
    }
    AdminReply {
        cqe: Completion::success(cid),
        data,
    }
}

fn get_log_page(target: &Target, ctrl: &Arc<Controller>, cmd: &Command<'_>) -> AdminReply {
    let cid = cmd.cid();
    let g = cmd.get_log_page();
    let len = g.len_bytes();
    if len > u64::from(target.limits.max_transfer_bytes) {
        return err(cid, Status::INVALID_FIELD);
    }
    let discovery = ctrl.subsystem.kind == SubsystemKind::Discovery;
    let mut page = Vec::new();
    match g.lid {
        lid::DISCOVERY if discovery => discovery_log(target, ctrl, &mut page),
        lid::ERROR_INFO => logpage::encode_error_log(&[], 0, &mut page),
        lid::SMART if !discovery => {
            let mut b = [0u8; logpage::SmartLog::LEN];
            logpage::SmartLog {
                temperature: 300,
                avail_spare: 100,
                spare_thresh: 10,
                ..Default::default()
            }
            .encode(&mut b);
            page.extend_from_slice(&b);
        }
        lid::FIRMWARE_SLOT if !discovery => {
            let mut b = [0u8; logpage::FirmwareSlotLog::LEN];
            logpage::FirmwareSlotLog::single(&target.limits.firmware).encode(&mut b);
            page.extend_from_slice(&b);
        }
        lid::CHANGED_NS_LIST if !discovery => {
            let ids = ctrl.changed_namespaces(g.rae);
            let mut b = [0u8; logpage::CHANGED_NS_LEN];
            logpage::encode_changed_ns(&ids, &mut b);
            page.extend_from_slice(&b);
        }
        _ => return err(cid, Status::INVALID_LOG_PAGE),
    }
    let mut data = vec![0u8; len as usize];
    match logpage::copy_window(&page, g.lpo, &mut data) {
        Ok(_) => AdminReply {
            cqe: Completion::success(cid),
            data,
        },
        Err(e) => err(cid, e.status()),
    }
}

fn discovery_log(target: &Target, ctrl: &Controller, out: &mut Vec<u8>) {
    let mut records: Vec<(String, String, String, u8)> = Vec::new();
    let subsystems = target.subsystems();
    for addr in target.listeners() {
        let ip = addr.ip().to_string();
        let port = addr.port().to_string();
        for s in &subsystems {
            if s.allows(&ctrl.hostnqn) {
                records.push((
                    s.nqn.clone(),
                    ip.clone(),
                    port.clone(),
                    discovery::SUBTYPE_NVME,
                ));
            }
        }
        records.push((
            discovery::DISCOVERY_NQN.to_string(),
            ip.clone(),
            port.clone(),
            discovery::SUBTYPE_CURRENT_DISCOVERY,
        ));
    }
    let entries: Vec<DiscoveryEntry<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, (nqn, ip, port, subtype))| DiscoveryEntry {
            trtype: discovery::TRTYPE_TCP,
            adrfam: if ip.contains(':') {
                discovery::ADRFAM_IPV6
            } else {
                discovery::ADRFAM_IPV4
            },
            subtype: *subtype,
            treq: discovery::TREQ_NOT_REQUIRED,
            portid: (i / (subsystems.len() + 1)) as u16 + 1,
            cntlid: discovery::CNTLID_DYNAMIC,
            asqsz: target.limits.queue_entries,
            eflags: 0,
            trsvcid: port,
            subnqn: nqn,
            traddr: ip,
            tcp_sectype: discovery::TCP_SECTYPE_NONE,
        })
        .collect();
    logpage::encode_discovery_log(target.discovery_generation(), &entries, out);
}

fn set_features(target: &Target, ctrl: &Arc<Controller>, cmd: &Command<'_>) -> AdminReply {
    let cid = cmd.cid();
    let f = cmd.set_features();
    if f.sv {
        return err(cid, Status::FEATURE_NOT_SAVEABLE);
    }
    match f.fid {
        feature::NUMBER_OF_QUEUES => {
            let nsqr = f.value & 0xFFFF;
            let ncqr = f.value >> 16;
            if nsqr == 0xFFFF || ncqr == 0xFFFF {
                return err(cid, Status::INVALID_FIELD);
            }
            let granted = (nsqr.min(ncqr) + 1).min(u32::from(target.limits.max_io_queues));
            ctrl.set_io_queues(granted);
            with_dw0(cid, (granted - 1) | (granted - 1) << 16)
        }
        feature::KEEP_ALIVE_TIMER => {
            ctrl.set_kato_ms(f.value);
            ok(cid)
        }
        feature::ASYNC_EVENT_CONFIG => {
            ctrl.set_aec(f.value);
            ok(cid)
        }
        feature::VOLATILE_WRITE_CACHE => {
            ctrl.set_vwc(f.value & 1 != 0);
            ok(cid)
        }
        feature::ARBITRATION
        | feature::POWER_MANAGEMENT
        | feature::TEMPERATURE_THRESHOLD
        | feature::ERROR_RECOVERY
        | feature::INTERRUPT_COALESCING
        | feature::WRITE_ATOMICITY => ok(cid),
        _ => err(cid, Status::INVALID_FIELD),
    }
}

fn get_features(ctrl: &Arc<Controller>, cmd: &Command<'_>) -> AdminReply {
    let cid = cmd.cid();
    let f = cmd.get_features();
    // SEL 3: capabilities — nothing is saveable or namespace specific, all changeable.
    if f.sel == 3 {
        return with_dw0(cid, 0b100);
    }
    let value = match f.fid {
        feature::NUMBER_OF_QUEUES => {
            let n = ctrl.io_queues().max(1) - 1;
            n | n << 16
        }
        feature::KEEP_ALIVE_TIMER => ctrl.kato_ms(),
        feature::ASYNC_EVENT_CONFIG => ctrl.aec(),
        feature::VOLATILE_WRITE_CACHE => u32::from(ctrl.vwc()),
        feature::ARBITRATION
        | feature::POWER_MANAGEMENT
        | feature::ERROR_RECOVERY
        | feature::INTERRUPT_COALESCING
        | feature::WRITE_ATOMICITY => 0,
        feature::TEMPERATURE_THRESHOLD => 0x0157, // 343 K, over-temperature threshold
        _ => return err(cid, Status::INVALID_FIELD),
    };
    with_dw0(cid, value)
}
