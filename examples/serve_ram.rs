//! Serves one RAM-backed, journaled volume over NVMe/TCP for a while, for
//! trying `rewind perf` against the project's target without a device:
//!
//!     cargo run --release --example serve_ram -- [PORT] [MIB] [CORES] [SECONDS] [busy|adaptive]
//!
//! Defaults: port 4420, 1024 MiB, core 0, 60 s, busy. Prints the NQN
//! (`nqn.2026-11.io.rewind:ram0`) and stops by itself after SECONDS.

use rewind::device::ram::RamDevice;
use rewind::device::Device;
use rewind::engine::geometry::Layout;
use rewind::engine::{FormatOptions, Geometry, Volume};
use rewind::nvmf::target::namespace::{Namespace, NsKind};
use rewind::nvmf::target::server::Server;
use rewind::nvmf::target::subsystem::{volume_nqn, Subsystem, SubsystemKind};
use rewind::nvmf::target::{Limits, Target};
use rewind::runtime::{IdleMode, ReactorConfig};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let port: u16 = arg(0, "4420").parse()?;
    let mib: u64 = arg(1, "1024").parse()?;
    let cores = rewind::runtime::resolve_cores(&arg(2, "0"))?;
    let seconds: u64 = arg(3, "60").parse()?;
    let idle = match arg(4, "busy").as_str() {
        "busy" => IdleMode::Busy,
        "adaptive" => IdleMode::default(),
        other => return Err(format!("idle mode {other:?}: busy or adaptive").into()),
    };

    let bs = 4096u32;
    let rings = u16::try_from(cores.len())?;
    let geometry = Geometry::for_volume(bs, mib << 20, rings)?;
    let layout = Layout::new(&geometry)?;
    let device: Arc<dyn Device> = RamDevice::new(layout.end, bs)?;
    let volume = Arc::new(Volume::format(
        device,
        &geometry,
        &FormatOptions::default(),
        rewind::service::volumes::volume_config(),
    )?);
    let nqn = volume_nqn("ram0");
    let sub = Subsystem::new(nqn.clone(), SubsystemKind::Nvm, "RWRAM0".into(), Vec::new());
    sub.namespaces.add(Namespace {
        nsid: 1,
        kind: NsKind::Live(Arc::clone(&volume)),
        block_size: bs,
        blocks: geometry.volume_blocks,
        uuid: volume.uuid(),
    })?;
    let target = Target::new(Limits::default(), vec![sub], Vec::new());
    let reactors = ReactorConfig {
        idle,
        ..ReactorConfig::on_cores(cores)
    };
    let server = Server::start(target, &reactors, &[format!("127.0.0.1:{port}").parse()?])?;
    println!(
        "serving {nqn} ({mib} MiB RAM, journaled) on {} for {seconds} s",
        server.local_addrs()[0]
    );
    std::thread::sleep(Duration::from_secs(seconds));
    server.stop()?;
    Ok(())
}
