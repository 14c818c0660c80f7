//! The project's host library against the project's target over loopback:
//! discovery, connect with several I/O queues and digests on and off,
//! identify, verified write/read patterns across queues and queue depths,
//! transfers that need R2T, flush, write zeroes, deallocate, a view at an
//! earlier point next to the live namespace, the vendor read-at-point
//! command, and a refused host.

mod nvmf_common;
use nvmf_common::pattern;

use rewind::engine::{At, Volume};
use rewind::nvmf::host::{discover, ConnectOptions, Controller, HostError, IoQueue, Point};
use rewind::nvmf::status::Status;
use rewind::nvmf::target::namespace::{Namespace, NsKind};
use rewind::nvmf::target::server::Server;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const BS: usize = 4096;

fn start(allowed: Vec<String>) -> (Server, Arc<Volume>, String, SocketAddr) {
    let s = nvmf_common::serve_volume("hosttest", 32 << 20, allowed);
    (s.server, s.volume, s.nqn, s.addr)
}

fn opts(digests: bool, io_queues: u16) -> ConnectOptions {
    ConnectOptions {
        io_queues,
        queue_depth: 32,
        hdr_digest: digests,
        data_digest: digests,
        timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    }
}

#[test]
fn discover_connect_and_verify_patterns() {
    let (server, volume, nqn, addr) = start(Vec::new());
    let records = discover(addr, &opts(false, 0)).unwrap();
    assert!(records
        .iter()
        .any(|r| r.subnqn == nqn && r.trsvcid == addr.port().to_string()));

    for digests in [false, true] {
        let mut c = Controller::connect(addr, &nqn, &opts(digests, 3)).unwrap();
        assert_eq!(c.io_queue_count(), 3);
        let mut id = [0u8; 4096];
        let ctrl = c.identify_controller(&mut id).unwrap();
        assert_eq!(ctrl.subnqn, nqn);
        assert_eq!(c.active_namespaces().unwrap(), vec![1]);
        assert_eq!(c.lba_size(1).unwrap(), BS as u32);

        // Blocking I/O on queues 1 and 2: small (in-capsule) and large (R2T).
        for (i, blocks) in [1usize, 4, 16, 64, 256].into_iter().enumerate() {
            let data = pattern(i as u64 + u64::from(digests) * 100, blocks * BS);
            let lba = (i * 300) as u64;
            let qid = 1 + (i % 2) as u16;
            c.write(qid, 1, lba, blocks as u32, &data).unwrap();
            let mut back = vec![0u8; data.len()];
            c.read(3 - qid, 1, lba, blocks as u32, &mut back).unwrap();
            assert_eq!(back, data, "{blocks} blocks at {lba}");
        }
        c.flush(1, 1).unwrap();

        // Queue 3 detached: 32 writes in flight, then 32 reads, verified.
        let mut q: IoQueue<Vec<u8>> = c.detach_io_queue(3).unwrap();
        let base = 4000u64;
        for t in 0..32u64 {
            q.submit_write(1, base + t * 2, 2, pattern(1000 + t, 2 * BS), t)
                .map_err(|(e, _)| e)
                .unwrap();
        }
        let mut done = Vec::new();
        while done.len() < 32 {
            q.wait(&mut done, Duration::from_secs(10)).unwrap();
        }
        assert!(done.iter().all(|d| d.cqe.status.status.is_success()));
        done.clear();
        for t in 0..32u64 {
            q.submit_read(1, base + t * 2, 2, vec![0u8; 2 * BS], t)
                .map_err(|(e, _)| e)
                .unwrap();
        }
        while done.len() < 32 {
            q.wait(&mut done, Duration::from_secs(10)).unwrap();
        }
        for d in &done {
            assert!(d.cqe.status.status.is_success());
            let buf = d.buf.as_ref().expect("buffer back");
            assert_eq!(&buf[..2 * BS], &pattern(1000 + d.tag, 2 * BS)[..]);
        }
        q.close();

        // Zeroes and deallocate read back as zeroes.
        c.write_zeroes(1, 1, 0, 2).unwrap();
        c.dsm_deallocate(1, 1, &[(300, 4)]).unwrap();
        let mut back = vec![1u8; 4 * BS];
        c.read(2, 1, 300, 4, &mut back).unwrap();
        assert!(back.iter().all(|&b| b == 0));

        // Out of range: the NVMe status, the connection stays usable.
        let blocks = volume.geometry().volume_blocks;
        let mut one = vec![0u8; BS];
        match c.read(1, 1, blocks, 1, &mut one) {
            Err(HostError::Status { status, .. }) => assert_eq!(status, Status::LBA_OUT_OF_RANGE),
            other => panic!("expected LBA out of range, got {other:?}"),
        }
        c.read(1, 1, 0, 1, &mut one).unwrap();
        c.disconnect().unwrap();
    }
    server.stop().unwrap();
}

#[test]
fn view_and_read_at_point_through_the_host_library() {
    let (server, volume, nqn, addr) = start(Vec::new());
    let mut c = Controller::connect(addr, &nqn, &opts(false, 1)).unwrap();
    let old = pattern(1, 8 * BS);
    c.write(1, 1, 64, 8, &old).unwrap();
    let point = volume.mark("v1").unwrap();
    let new = pattern(2, 8 * BS);
    c.write(1, 1, 64, 8, &new).unwrap();

    let sub = server.target().subsystem(&nqn).unwrap();
    let resolved = volume.resolve(&At::Label("v1".into())).unwrap();
    sub.add_namespace(Namespace {
        nsid: 2,
        kind: NsKind::View {
            volume: Arc::clone(&volume),
            point: resolved,
        },
        block_size: BS as u32,
        blocks: volume.geometry().volume_blocks,
        uuid: [9; 16],
    })
    .unwrap();
    assert_eq!(c.active_namespaces().unwrap(), vec![1, 2]);
    assert!(c.identify_namespace(2).unwrap().is_write_protected());
    let mut back = vec![0u8; 8 * BS];
    c.read(1, 2, 64, 8, &mut back).unwrap();
    assert_eq!(back, old);
    c.read(1, 1, 64, 8, &mut back).unwrap();
    assert_eq!(back, new);
    match c.write(1, 2, 64, 8, &new) {
        Err(HostError::Status { status, .. }) => {
            assert_eq!(status, Status::NAMESPACE_WRITE_PROTECTED)
        }
        other => panic!("expected write protected, got {other:?}"),
    }
    for p in [Point::Seq(point.seq), Point::TimeNs(point.time_ns)] {
        let seq = c.read_at_point(1, 1, 64, 8, p, &mut back).unwrap();
        assert_eq!(seq, point.seq);
        assert_eq!(back, old);
    }
    c.disconnect().unwrap();
    server.stop().unwrap();
}

#[test]
fn a_host_not_on_the_list_is_refused() {
    let allowed = ConnectOptions::hostnqn_for(&[5; 16]);
    let (server, _volume, nqn, addr) = start(vec![allowed.clone()]);
    match Controller::connect(addr, &nqn, &opts(false, 1)) {
        Err(HostError::Status { status, .. }) => assert_eq!(status, Status::CONNECT_INVALID_HOST),
        other => panic!("expected invalid host, got {:?}", other.map(|_| ())),
    }
    let ok = ConnectOptions {
        hostnqn: allowed,
        hostid: [5; 16],
        ..opts(false, 1)
    };
    let c = Controller::connect(addr, &nqn, &ok).unwrap();
    c.disconnect().unwrap();
    server.stop().unwrap();
}

/// A connection that sends garbage gets a C2HTermReq and is closed; a host
/// connected through the library goes on as if nothing happened.
#[test]
fn malformed_pdus_end_only_their_own_connection() {
    use std::io::{Read, Write};
    let (server, _volume, nqn, addr) = start(Vec::new());
    let mut c = Controller::connect(addr, &nqn, &opts(true, 1)).unwrap();
    let data = pattern(77, 4 * BS);
    c.write(1, 1, 10, 4, &data).unwrap();
    for garbage in [
        vec![0xFFu8; 64],                              // unknown PDU type
        vec![0x00, 0, 64, 0, 128, 0, 0, 0],            // ICReq with a bad HLEN
        vec![0x04, 0, 72, 72, 0xFF, 0xFF, 0xFF, 0x7F], // a capsule claiming 2 GiB
    ] {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&garbage).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert_eq!(got.first(), Some(&0x03), "a C2HTermReq, then the close");
    }
    let mut back = vec![0u8; 4 * BS];
    c.read(1, 1, 10, 4, &mut back).unwrap();
    assert_eq!(back, data);
    c.disconnect().unwrap();
    server.stop().unwrap();
}
