//! One run over real sockets on 127.0.0.1: the fake controller serves each
//! connection on its own thread (bounded: it stops after the expected
//! connections or a deadline, and every socket has a read timeout), the
//! blocking client connects with digests, identifies, writes and reads,
//! then drives a detached non-blocking I/O queue at depth 16, discovers,
//! and disconnects.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fake::{Shared, TargetConn};
use crate::nvmf::host::{discover, ConnectOptions, Controller, IoCompletion, IoData, IoQueue};

const NQN: &str = "nqn.2026-11.io.rewind:loop";

/// Serves up to `conns` connections, each until it closes or idles 10 s;
/// the acceptor gives up after 20 s.
fn serve(shared: Arc<Mutex<Shared>>, conns: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut workers = Vec::new();
        while workers.len() < conns && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let shared = shared.clone();
                    workers.push(std::thread::spawn(move || {
                        sock.set_nonblocking(false).unwrap();
                        sock.set_read_timeout(Some(Duration::from_secs(10)))
                            .unwrap();
                        sock.set_nodelay(true).unwrap();
                        let mut conn = TargetConn::new(shared);
                        let mut buf = vec![0u8; 256 * 1024];
                        loop {
                            let n = match sock.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let out = conn.on_bytes(&buf[..n]);
                            if sock.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
        for w in workers {
            let _ = w.join();
        }
    });
    (addr, handle)
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(0x9E37_79B9).wrapping_add(seed) as u8)
        .collect()
}

#[test]
fn loopback_connect_identify_io_and_async_queue() {
    let shared = Shared::new(NQN, 4096);
    // admin + 2 I/O queues, then discovery's admin queue.
    let (addr, server) = serve(shared.clone(), 4);
    let opts = ConnectOptions {
        io_queues: 2,
        queue_depth: 16,
        hdr_digest: true,
        data_digest: true,
        timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    };
    let mut c = Controller::connect(addr, NQN, &opts).unwrap();
    assert_eq!(c.io_queue_count(), 2);
    let ns = c.identify_namespace(1).unwrap();
    assert_eq!(ns.nsze, 4096);
    let data = pattern(64 * 1024, 1);
    c.write(1, 1, 0, 128, &data).unwrap();
    let mut back = vec![0u8; data.len()];
    c.read(1, 1, 0, 128, &mut back).unwrap();
    assert_eq!(back, data);

    // Queue 2 without blocking: 16 writes of 4 KiB in flight, then 16
    // reads, completions in any order, buffers returned with them.
    let mut q: IoQueue = c.detach_io_queue(2).unwrap();
    assert!(
        c.read(2, 1, 0, 8, &mut vec![0u8; 4096]).is_err(),
        "detached"
    );
    let mut done: Vec<IoCompletion<Vec<u8>>> = Vec::new();
    for i in 0..16u64 {
        let buf = pattern(4096, 100 + i);
        q.submit_write(1, 1024 + i * 8, 8, buf, i).unwrap();
    }
    assert!(matches!(
        q.submit_write(1, 0, 8, vec![0; 4096], 99),
        Err((crate::nvmf::host::SubmitError::QueueFull, IoData::Out(_)))
    ));
    while done.len() < 16 {
        assert!(q.wait(&mut done, Duration::from_secs(5)).unwrap() > 0);
    }
    assert!(done.iter().all(|d| d.is_success() && d.buf.is_some()));
    let mut bufs: Vec<Vec<u8>> = done.drain(..).filter_map(|d| d.buf).collect();
    for i in 0..16u64 {
        let mut buf = bufs.pop().unwrap();
        buf.fill(0);
        q.submit_read(1, 1024 + i * 8, 8, buf, i).unwrap();
    }
    while done.len() < 16 {
        assert!(q.wait(&mut done, Duration::from_secs(5)).unwrap() > 0);
    }
    for d in &done {
        assert!(d.is_success());
        assert_eq!(d.buf.as_deref(), Some(&pattern(4096, 100 + d.tag)[..]));
    }
    assert_eq!(q.outstanding(), 0);

    // 64 KiB writes need R2Ts (in-capsule limit 8 KiB): the H2CData goes
    // out from inside poll, right after the R2T is read.
    done.clear();
    for i in 0..8u64 {
        q.submit_write(1, 2048 + i * 128, 128, pattern(65536, 200 + i), i)
            .unwrap();
    }
    while done.len() < 8 {
        assert!(q.wait(&mut done, Duration::from_secs(5)).unwrap() > 0);
    }
    assert!(done
        .iter()
        .all(|d| d.is_success() && d.transferred == 65536));
    q.close();
    let mut back = vec![0u8; 65536];
    c.read(1, 1, 2048 + 3 * 128, 128, &mut back).unwrap();
    assert_eq!(back, pattern(65536, 203));

    // The blocking side sees what the async queue wrote.
    let mut back = vec![0u8; 4096];
    c.read(1, 1, 1024 + 5 * 8, 8, &mut back).unwrap();
    assert_eq!(back, pattern(4096, 105));

    let log = discover(addr, &opts).unwrap();
    assert_eq!(log.len(), 1);
    c.disconnect().unwrap();
    server.join().unwrap();
}
