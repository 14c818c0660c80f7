//! The blocking client against the in-memory fake controller: the whole
//! connect sequence in order, identify, reads and writes on every data path,
//! the other NVM commands, discovery, keep alive, timeouts, shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake::{MemStream, Shared};
use crate::nvmf::command::{admin, fctype, io as nvm, CommandBuf, FABRICS_OPCODE};
use crate::nvmf::host::{ConnectOptions, Controller, Data, HostError};
use crate::nvmf::identify::IDENTIFY_LEN;
use crate::nvmf::logpage::discovery;
use crate::nvmf::properties::Cc;
use crate::nvmf::status::Status;

const NQN: &str = "nqn.2026-11.io.rewind:vol0";

fn opts(digests: bool) -> ConnectOptions {
    ConnectOptions {
        io_queues: 2,
        queue_depth: 16,
        hdr_digest: digests,
        data_digest: digests,
        timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    }
}

fn connect(shared: &Arc<Mutex<Shared>>, o: &ConnectOptions) -> Controller<MemStream> {
    let s = shared.clone();
    Controller::connect_with(move |_qid| Ok(MemStream::new(s.clone())), NQN, o).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

#[test]
fn connect_sequence_is_the_fabrics_one_in_order() {
    let shared = Shared::new(NQN, 2048);
    let c = connect(&shared, &opts(false));
    let s = shared.lock().unwrap();
    let f = |t| (FABRICS_OPCODE, t);
    let seen: Vec<(u16, (u8, u8))> = s.log.iter().map(|&(q, o, t)| (q, (o, t))).collect();
    assert_eq!(
        seen,
        vec![
            (0, f(fctype::CONNECT)),
            (0, f(fctype::PROPERTY_GET)), // CAP
            (0, f(fctype::PROPERTY_GET)), // VS
            (0, f(fctype::PROPERTY_SET)), // CC.EN
            (0, f(fctype::PROPERTY_GET)), // CSTS
            (0, (admin::IDENTIFY, 0xFF)),
            (0, (admin::SET_FEATURES, 0xFF)),
            (1, f(fctype::CONNECT)),
            (2, f(fctype::CONNECT)),
        ]
    );
    // CC as Linux writes it: NVM command set, 4 KiB pages, 64/16-byte entries.
    assert!(s.cc.enabled());
    assert_eq!(
        (s.cc.css(), s.cc.mps(), s.cc.iosqes(), s.cc.iocqes()),
        (0, 0, 6, 4)
    );
    assert_eq!(s.cc.shn(), Cc::SHN_NONE);
    drop(s);
    let l = *c.limits();
    assert_eq!(c.cntlid(), 0x21);
    assert_eq!(l.io_in_capsule, 8192);
    assert_eq!(l.max_transfer, Some(128 * 1024));
    assert_eq!(l.io_depth, 16);
    assert_eq!(c.io_queue_count(), 2);
}

#[test]
fn identify_and_data_round_trips_on_every_path() {
    for digests in [false, true] {
        for success in [true, false] {
            let shared = Shared::new(NQN, 2048);
            shared.lock().unwrap().c2h_success = success;
            let mut c = connect(&shared, &opts(digests));
            let mut idbuf = [0u8; IDENTIFY_LEN];
            let id = c.identify_controller(&mut idbuf).unwrap();
            assert_eq!((id.subnqn, id.cntlid, id.nn), (NQN, 0x21, 1));
            let ns = c.identify_namespace(1).unwrap();
            assert_eq!((ns.nsze, ns.lba_size()), (2048, Some(512)));
            assert_eq!(c.active_namespaces().unwrap(), vec![1]);
            // 4 KiB in-capsule, 128 KiB through several R2Ts of 32 KiB
            // split into 16 KiB H2CData, read back in 8 KiB C2HData.
            for (qid, slba, blocks) in [(1u16, 10u64, 8u32), (2, 100, 256), (1, 0, 1)] {
                let data = pattern(blocks as usize * 512, slba as u8);
                c.write(qid, 1, slba, blocks, &data).unwrap();
                let mut back = vec![0u8; data.len()];
                c.read(qid, 1, slba, blocks, &mut back).unwrap();
                assert_eq!(back, data, "qid {qid} slba {slba} digests {digests}");
            }
            c.disconnect().unwrap();
            assert_eq!(shared.lock().unwrap().cc.shn(), Cc::SHN_NORMAL);
        }
    }
}

#[test]
fn flush_write_zeroes_deallocate_and_passthru() {
    let shared = Shared::new(NQN, 2048);
    let mut c = connect(&shared, &opts(false));
    let data = pattern(64 * 512, 9);
    c.write(1, 1, 0, 64, &data).unwrap();
    c.flush(1, 1).unwrap();
    c.write_zeroes(1, 1, 8, 8).unwrap();
    c.dsm_deallocate(1, 1, &[(32, 4), (40, 2)]).unwrap();
    let mut back = vec![0u8; data.len()];
    c.read(2, 1, 0, 64, &mut back).unwrap();
    let mut want = data.clone();
    for (s, n) in [(8, 8), (32, 4), (40, 2)] {
        want[s * 512..(s + n) * 512].fill(0);
    }
    assert_eq!(back, want);
    // The read-at-point command reaches the target as opcode 0x82 with the
    // Read layout in CDW10-12.
    let mut buf = vec![0u8; 512];
    c.read_at_point(1, 1, 0, 1, crate::nvmf::host::Point::Seq(3), &mut buf)
        .unwrap();
    assert_eq!(buf, want[..512]);
    assert!(shared.lock().unwrap().log.contains(&(1, 0x82, 0xFF)));
    // An opcode the target does not know: the status, named.
    let e = c
        .passthru(1, CommandBuf::new(0x7C, 0).set_nsid(1), Data::None)
        .unwrap_err();
    assert_eq!(e.status(), Some(Status::INVALID_OPCODE));
    assert!(e.to_string().contains("invalid command opcode"), "{e}");
    assert!(!e.is_fatal());
    // Still usable.
    c.flush(1, 1).unwrap();
    c.disconnect().unwrap();
}

#[test]
fn bad_arguments_are_refused_before_the_wire() {
    let shared = Shared::new(NQN, 2048);
    let mut c = connect(&shared, &opts(false));
    let before = shared.lock().unwrap().log.len();
    let mut small = vec![0u8; 100];
    for r in [
        c.read(1, 1, 0, 1, &mut small),
        c.read(1, 1, 0, 512, &mut vec![0u8; 512 * 512]), // beyond MDTS
        c.read(9, 1, 0, 1, &mut vec![0u8; 512]),
        c.read(0, 1, 0, 1, &mut vec![0u8; 512]),
        c.write(1, 1, 0, 0, &[]),
    ] {
        assert!(matches!(r, Err(HostError::Invalid(_))), "{r:?}");
    }
    // Only the Identify Namespace for the block size reached the target.
    let log = &shared.lock().unwrap().log;
    assert_eq!(log.len(), before + 1);
    assert_eq!(log[before], (0, admin::IDENTIFY, 0xFF));
}

#[test]
fn discovery_log_is_read_whole() {
    let shared = Shared::new(NQN, 8);
    let s = shared.clone();
    let o = ConnectOptions {
        io_queues: 4,
        kato: Duration::ZERO,
        ..opts(false)
    };
    let mut c = Controller::connect_with(
        move |_| Ok(MemStream::new(s.clone())),
        discovery::DISCOVERY_NQN,
        &o,
    )
    .unwrap();
    assert_eq!(
        c.io_queue_count(),
        0,
        "no I/O queues on a discovery controller"
    );
    let log = c.discovery_log().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].subnqn, NQN);
    assert_eq!(
        (log[0].traddr.as_str(), log[0].trsvcid.as_str()),
        ("127.0.0.1", "4420")
    );
    assert_eq!(log[0].trtype, discovery::TRTYPE_TCP);
    let gets = shared
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|e| e.1 == admin::GET_LOG_PAGE)
        .count();
    assert_eq!(gets, 2, "header, then the whole page");
}

#[test]
fn keep_alive_goes_out_when_half_the_timeout_passed() {
    let shared = Shared::new(NQN, 64);
    let o = ConnectOptions {
        kato: Duration::from_millis(20),
        ..opts(false)
    };
    let mut c = connect(&shared, &o);
    let kas = |s: &Arc<Mutex<Shared>>| {
        s.lock()
            .unwrap()
            .log
            .iter()
            .filter(|e| e.1 == admin::KEEP_ALIVE)
            .count()
    };
    c.flush(1, 1).unwrap();
    assert_eq!(kas(&shared), 0);
    std::thread::sleep(Duration::from_millis(15));
    c.flush(1, 1).unwrap();
    assert_eq!(kas(&shared), 1);
    c.keep_alive().unwrap();
    assert_eq!(kas(&shared), 2);
}

#[test]
fn a_silent_target_times_out_and_the_queue_is_given_up() {
    let shared = Shared::new(NQN, 64);
    let mut c = connect(&shared, &opts(false));
    shared.lock().unwrap().silent = true;
    let e = c.flush(1, 1).unwrap_err();
    assert!(matches!(e, HostError::Timeout { .. }), "{e}");
    assert!(e.is_fatal());
    shared.lock().unwrap().silent = false;
    assert!(matches!(c.flush(1, 1), Err(HostError::Broken { qid: 1 })));
    // The other queue is fine.
    c.flush(2, 1).unwrap();
    let _ = nvm::FLUSH;
}
