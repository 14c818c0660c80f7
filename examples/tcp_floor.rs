//! The floor under every NVMe/TCP number on this machine: a bare loopback
//! TCP ping-pong (request of `--request` bytes one way, `--reply` bytes
//! back), the server pinned to one core and the client to another, both
//! busy-polling non-blocking sockets (or blocking reads with `--blocking`).
//! Prints round trips per second and latency percentiles.
//!
//! `cargo run --release --example tcp_floor -- --request 4096 --reply 16 --seconds 5`

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(core: usize) {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Reads exactly `buf.len()` bytes, spinning on WouldBlock unless blocking.
fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match s.read(&mut buf[at..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_full(s: &mut TcpStream, buf: &[u8]) -> std::io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        match s.write(&buf[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let request = arg("--request", 4096) as usize;
    let reply = arg("--reply", 16) as usize;
    let seconds = arg("--seconds", 5);
    let blocking = std::env::args().any(|a| a == "--blocking");
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        pin(0);
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(!blocking)?;
        let mut req = vec![0u8; request];
        let rep = vec![1u8; reply];
        loop {
            if read_full(&mut s, &mut req).is_err() {
                return Ok(());
            }
            write_full(&mut s, &rep)?;
        }
    });
    pin(1);
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    c.set_nonblocking(!blocking)?;
    let req = vec![2u8; request];
    let mut rep = vec![0u8; reply];
    let mut lat: Vec<u32> = Vec::with_capacity(4 << 20);
    let warm = Instant::now() + Duration::from_secs(1);
    let end = warm + Duration::from_secs(seconds);
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        write_full(&mut c, &req)?;
        read_full(&mut c, &mut rep)?;
        if t >= warm {
            lat.push(t.elapsed().as_nanos() as u32);
        }
    }
    drop(c);
    let _ = server.join();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let mean = lat.iter().map(|&x| f64::from(x)).sum::<f64>() / lat.len() as f64 / 1000.0;
    println!(
        "tcp floor ({} mode): {} B request, {} B reply: {:.0} round trips/s, mean {:.1} us, p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us",
        if blocking { "blocking" } else { "busy-poll" },
        request,
        reply,
        lat.len() as f64 / seconds as f64,
        mean,
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    Ok(())
}
