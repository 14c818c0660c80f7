//! A served volume for the NVMe/TCP tests: a RAM-backed engine volume
//! exported as subsystem `nqn.2026-11.io.rewind:<name>` (namespace 1, live)
//! by a target on two reactors listening on a free loopback port, its data
//! buffers carved from a hugepage pool; and the data pattern the tests write.
//! (Each test crate uses a part of it.)

#![allow(dead_code)]

use rewind::device::ram::RamDevice;
use rewind::device::Device;
use rewind::engine::geometry::Layout;
use rewind::engine::{FormatOptions, Geometry, Volume};
use rewind::nvmf::target::namespace::{Namespace, NsKind};
use rewind::nvmf::target::server::Server;
use rewind::nvmf::target::subsystem::{volume_nqn, Subsystem, SubsystemKind};
use rewind::nvmf::target::{Limits, Target};
use rewind::runtime::{HugepagePool, HugepageUse, ReactorConfig};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Served {
    pub server: Server,
    pub volume: Arc<Volume>,
    pub nqn: String,
    pub addr: SocketAddr,
}

/// Volume `name` of `bytes` with 4096-byte blocks; `allowed` host NQNs (empty: any).
pub fn serve_volume(name: &str, bytes: u64, allowed: Vec<String>) -> Served {
    let bs = 4096u32;
    let geometry = Geometry::for_volume(bs, bytes, 2).unwrap();
    let layout = Layout::new(&geometry).unwrap();
    let device: Arc<dyn Device> = RamDevice::new(layout.end, bs).unwrap();
    let volume = Arc::new(
        Volume::format(
            device,
            &geometry,
            &FormatOptions::default(),
            rewind::service::volumes::volume_config(),
        )
        .unwrap(),
    );
    let nqn = volume_nqn(name);
    let sub = Subsystem::new(nqn.clone(), SubsystemKind::Nvm, "RWTEST".into(), allowed);
    sub.namespaces
        .add(Namespace {
            nsid: 1,
            kind: NsKind::Live(Arc::clone(&volume)),
            block_size: bs,
            blocks: geometry.volume_blocks,
            uuid: volume.uuid(),
        })
        .unwrap();
    let target = Target::new(Limits::default(), vec![sub], Vec::new());
    // Data buffers from a hugepage pool (ordinary pages when none are reserved).
    let pool = Arc::new(HugepagePool::new(64, HugepageUse::Prefer));
    let server = Server::start_with(
        target,
        &ReactorConfig::on_cores(vec![0, 1]),
        &["127.0.0.1:0".parse().unwrap()],
        Some(pool),
    )
    .unwrap();
    let addr = server.local_addrs()[0];
    Served {
        server,
        volume,
        nqn,
        addr,
    }
}

/// `len` pseudo-random bytes determined by `seed` (xorshift).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
