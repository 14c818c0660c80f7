//! Reactors as a black box: they start pinned and named, exchange messages
//! across cores, serve a non-blocking TCP echo over loopback in both idle
//! modes (connections spread over the reactors and stay there), park when
//! idle in adaptive mode and never in busy mode, and stop cleanly (every
//! thread joined, every poller dropped, a panic reported). Every test bounds
//! its own run time.

use rewind::runtime::cores::{available_cores, current_thread_affinity};
use rewind::runtime::{
    Acceptor, CoreListError, IdleMode, Interest, Message, Poller, Progress, ReactorConfig,
    ReactorCtx, ReactorGroup, RuntimeError, SendError,
};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Up to two cores this process may use (the machine has two).
fn cores() -> Vec<usize> {
    let mut cores = available_cores().expect("affinity");
    cores.truncate(2);
    cores
}

fn config(idle: IdleMode) -> ReactorConfig {
    ReactorConfig {
        idle,
        ..ReactorConfig::on_cores(cores())
    }
}

fn no_init(_: &mut ReactorCtx) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

/// Runs `task` on reactor `reactor` and returns its result.
fn ask<T: Send + 'static>(
    group: &ReactorGroup,
    reactor: usize,
    task: impl FnOnce(&mut ReactorCtx) -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    group
        .send(
            reactor,
            Message::run(move |ctx| {
                let _ = tx.send(task(ctx));
            }),
        )
        .expect("mailbox has room");
    rx.recv_timeout(REPLY_TIMEOUT).expect("reactor replied")
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn reactors_start_pinned_and_named() {
    let cores = cores();
    let group = ReactorGroup::start(&config(IdleMode::default()), no_init).expect("start");
    assert_eq!(group.reactors(), cores.len());
    for (reactor, &core) in cores.iter().enumerate() {
        let (affinity, name, index, seen_core) = ask(&group, reactor, |ctx| {
            (
                current_thread_affinity().expect("affinity"),
                std::thread::current().name().map(str::to_string),
                ctx.index(),
                ctx.core(),
            )
        });
        assert_eq!(affinity, vec![core], "reactor {reactor} pinned to its core");
        assert_eq!(name.as_deref(), Some(format!("reactor-{core}").as_str()));
        assert_eq!((index, seen_core), (reactor, core));
    }
    group.stop().expect("stop");
}

/// One hop of a message bounced between reactors: runs on one, sends itself
/// to the next until `left` reaches zero, then reports which cores it ran on.
fn bounce(ctx: &mut ReactorCtx, left: u32, mut path: Vec<usize>, done: mpsc::Sender<Vec<usize>>) {
    path.push(ctx.core());
    if left == 0 {
        let _ = done.send(path);
        return;
    }
    let next = (ctx.index() + 1) % ctx.reactors();
    let sent = ctx.send(
        next,
        Message::run(move |ctx| bounce(ctx, left - 1, path, done)),
    );
    assert!(sent.is_ok(), "one message in flight never fills a mailbox");
}

#[test]
fn messages_cross_cores() {
    let cores = cores();
    let group = ReactorGroup::start(&config(IdleMode::default()), no_init).expect("start");
    let (done, path) = mpsc::channel();
    const HOPS: u32 = 2000;
    group
        .send(
            0,
            Message::run(move |ctx| bounce(ctx, HOPS, Vec::new(), done)),
        )
        .expect("send");
    let path = path.recv_timeout(REPLY_TIMEOUT).expect("bounce finished");
    assert_eq!(path.len(), HOPS as usize + 1);
    for (hop, core) in path.iter().enumerate() {
        assert_eq!(
            *core,
            cores[hop % cores.len()],
            "hop {hop} ran on the wrong core"
        );
    }
    let messages: u64 = group.stats().iter().map(|s| s.messages).sum();
    assert!(messages > u64::from(HOPS), "{messages} messages counted");
    group.stop().expect("stop");
}

#[test]
fn full_mailbox_hands_the_message_back() {
    // One reactor, a tiny mailbox, and a first task that keeps the reactor
    // busy until the test has filled the mailbox behind it.
    let config = ReactorConfig {
        mailbox_capacity: 2,
        ..ReactorConfig::on_cores(vec![cores()[0]])
    };
    let group = ReactorGroup::start(&config, no_init).expect("start");
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    group
        .send(
            0,
            Message::run(move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv_timeout(REPLY_TIMEOUT);
            }),
        )
        .expect("send");
    started_rx
        .recv_timeout(REPLY_TIMEOUT)
        .expect("task started");
    group.send(0, Message::run(|_| {})).expect("room for 1");
    group.send(0, Message::run(|_| {})).expect("room for 2");
    assert!(matches!(
        group.send(0, Message::run(|_| {})),
        Err(SendError::Full(Message::Run(_)))
    ));
    release_tx.send(()).expect("release");
    group.stop().expect("stop");
}

/// Echoes whatever arrives on a non-blocking connection.
struct EchoConnection {
    stream: TcpStream,
    buf: Box<[u8; 16384]>,
    /// Received bytes not yet written back: `buf[sent..filled]`.
    filled: usize,
    sent: usize,
    want_write: bool,
}

impl EchoConnection {
    fn adopt(stream: TcpStream, ctx: &mut ReactorCtx) -> io::Result<Box<dyn Poller>> {
        stream.set_nonblocking(true)?;
        ctx.watch(stream.as_raw_fd(), Interest::READABLE)?;
        Ok(Box::new(EchoConnection {
            stream,
            buf: Box::new([0; 16384]),
            filled: 0,
            sent: 0,
            want_write: false,
        }))
    }
}

impl Poller for EchoConnection {
    fn poll(&mut self, ctx: &mut ReactorCtx) -> Progress {
        let mut progress = Progress::Idle;
        loop {
            if self.sent < self.filled {
                match self.stream.write(&self.buf[self.sent..self.filled]) {
                    Ok(n) => {
                        self.sent += n;
                        progress = Progress::Busy;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Progress::Done,
                }
                continue;
            }
            self.filled = 0;
            self.sent = 0;
            match self.stream.read(&mut self.buf[..]) {
                Ok(0) => return Progress::Done,
                Ok(n) => {
                    self.filled = n;
                    progress = Progress::Busy;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Progress::Done,
            }
        }
        // Ask to be woken for writability only while output is pending.
        let want_write = self.sent < self.filled;
        if want_write != self.want_write {
            let interest = if want_write {
                Interest::READ_WRITE
            } else {
                Interest::READABLE
            };
            if ctx.rewatch(self.stream.as_raw_fd(), interest).is_err() {
                return Progress::Done;
            }
            self.want_write = want_write;
        }
        progress
    }
}

fn echo_over_loopback(idle: IdleMode) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let listener = std::sync::Mutex::new(Some(listener));
    let group = ReactorGroup::start(&config(idle), move |ctx| {
        if ctx.index() == 0 {
            let listener = listener
                .lock()
                .map_err(|_| "poisoned")?
                .take()
                .ok_or("listener taken twice")?;
            ctx.add_poller(Box::new(Acceptor::new(listener)?));
        }
        ctx.set_connection_handler(Box::new(EchoConnection::adopt));
        Ok(())
    })
    .expect("start");
    let reactors = group.reactors();

    const CLIENTS: usize = 4;
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let c = TcpStream::connect(address).expect("connect");
            c.set_read_timeout(Some(REPLY_TIMEOUT)).expect("timeout");
            c.set_write_timeout(Some(REPLY_TIMEOUT)).expect("timeout");
            c.set_nodelay(true).expect("nodelay");
            c
        })
        .collect();
    // Connections are spread over the reactors: least-loaded placement.
    loop {
        let placed: Vec<usize> = group.stats().iter().map(|s| s.connections).collect();
        if placed.iter().sum::<usize>() == CLIENTS {
            let (min, max) = (placed.iter().min(), placed.iter().max());
            assert!(
                max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                "connections not spread: {placed:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "connections never placed: {placed:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rounds = 0u64;
    for round in 0..150u64 {
        for (c, client) in clients.iter_mut().enumerate() {
            let len = 1 + ((round * 7919 + c as u64 * 104_729) % 12_000) as usize;
            let message: Vec<u8> = (0..len)
                .map(|i| (i as u64 ^ round ^ c as u64) as u8)
                .collect();
            client.write_all(&message).expect("send");
            let mut echoed = vec![0u8; len];
            client.read_exact(&mut echoed).expect("echo");
            assert_eq!(echoed, message, "client {c} round {round}");
        }
        rounds += 1;
        assert!(Instant::now() < deadline, "echo too slow");
    }
    assert_eq!(rounds, 150);
    let stats = group.stats();
    if reactors > 1 {
        assert!(
            stats.iter().all(|s| s.connections > 0),
            "every reactor served connections: {stats:?}"
        );
    }
    drop(clients);
    // Closed connections finish their pollers and leave the gauges.
    while group.stats().iter().map(|s| s.connections).sum::<usize>() > 0 {
        assert!(Instant::now() < deadline, "connections never closed");
        std::thread::sleep(Duration::from_millis(1));
    }
    group.stop().expect("stop");
}

#[test]
fn tcp_echo_adaptive() {
    echo_over_loopback(IdleMode::default());
}

#[test]
fn tcp_echo_busy() {
    echo_over_loopback(IdleMode::Busy);
}

/// CPU time a reactor used over `idle_for` with nothing to do, the wall time
/// between the two samples, and how many times it parked and looped meanwhile.
fn idle_cpu(group: &ReactorGroup, idle_for: Duration) -> (Duration, Duration, u64, u64) {
    std::thread::sleep(Duration::from_millis(20));
    let before = group.stats()[0].clone();
    let (cpu_start, wall_start) = (ask(group, 0, |_| thread_cpu_time()), Instant::now());
    std::thread::sleep(idle_for);
    let cpu_end = ask(group, 0, |_| thread_cpu_time());
    let wall = wall_start.elapsed();
    let after = group.stats()[0].clone();
    (
        cpu_end - cpu_start,
        wall,
        after.parks - before.parks,
        after.rounds - before.rounds,
    )
}

#[test]
fn adaptive_parks_when_idle_and_busy_never_does() {
    let core = vec![cores()[0]];
    let adaptive = ReactorGroup::start(&ReactorConfig::on_cores(core.clone()), no_init)
        .expect("start adaptive");
    let (cpu, wall, parks, _) = idle_cpu(&adaptive, Duration::from_millis(300));
    adaptive.stop().expect("stop");
    eprintln!("adaptive idle: cpu {cpu:?} over {wall:?}, {parks} parks");
    assert!(
        cpu * 4 < wall,
        "an idle adaptive reactor used {cpu:?} of CPU over {wall:?}"
    );
    assert!(parks >= 30, "only {parks} parks in {wall:?}");

    let busy = ReactorGroup::start(
        &ReactorConfig {
            idle: IdleMode::Busy,
            ..ReactorConfig::on_cores(core)
        },
        no_init,
    )
    .expect("start busy");
    let (cpu, wall, parks, rounds) = idle_cpu(&busy, Duration::from_millis(300));
    busy.stop().expect("stop");
    eprintln!("busy idle: cpu {cpu:?} over {wall:?}, {rounds} rounds");
    assert_eq!(parks, 0, "a busy reactor never parks");
    // Loose: even with a small share of a shared core, a spinning loop runs
    // far more rounds than a parking one could (one per millisecond).
    assert!(rounds > 10_000, "only {rounds} rounds in {wall:?}");
}

/// Holds a token so the test can see when the reactor dropped it.
struct Holder(#[allow(dead_code)] Arc<()>);

impl Poller for Holder {
    fn poll(&mut self, _: &mut ReactorCtx) -> Progress {
        Progress::Idle
    }
}

struct Panicker;

impl Poller for Panicker {
    fn poll(&mut self, _: &mut ReactorCtx) -> Progress {
        panic!("poller panics on purpose");
    }
}

#[test]
fn stop_joins_every_thread_and_drops_every_poller() {
    let token = Arc::new(());
    let inside = Arc::clone(&token);
    let group = ReactorGroup::start(&config(IdleMode::default()), move |ctx| {
        ctx.add_poller(Box::new(Holder(Arc::clone(&inside))));
        Ok(())
    })
    .expect("start");
    let reactors = group.reactors();
    // One per poller, one in the init closure (the reactors keep it), ours.
    assert_eq!(Arc::strong_count(&token), reactors + 2);
    let peers = Arc::clone(group.peers());
    group.stop().expect("stop");
    assert_eq!(
        Arc::strong_count(&token),
        1,
        "every poller and the init closure dropped"
    );
    for reactor in 0..reactors {
        assert!(
            matches!(
                peers.send(reactor, Message::Stop),
                Err(SendError::Closed(_))
            ),
            "a stopped reactor refuses messages"
        );
    }
    let stream_back = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        peers.place_connection(stream)
    };
    assert!(matches!(
        stream_back,
        Err(SendError::Closed(Message::Connection(_)))
    ));
}

#[test]
fn a_panicking_reactor_is_reported() {
    let group = ReactorGroup::start(&config(IdleMode::default()), no_init).expect("start");
    group
        .send(0, Message::run(|ctx| ctx.add_poller(Box::new(Panicker))))
        .expect("send");
    let core = cores()[0];
    let peers = Arc::clone(group.peers());
    let deadline = Instant::now() + REPLY_TIMEOUT;
    while !matches!(
        peers.send(0, Message::run(|_| {})),
        Err(SendError::Closed(_))
    ) {
        assert!(Instant::now() < deadline, "reactor 0 never stopped");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(matches!(
        group.stop(),
        Err(RuntimeError::Panicked { reactor: 0, core: c }) if c == core
    ));
}

#[test]
fn bad_configurations_and_failed_init_are_typed_errors() {
    let core = cores()[0];
    let err = |config: ReactorConfig| ReactorGroup::start(&config, no_init).unwrap_err();
    assert!(matches!(
        err(ReactorConfig::on_cores(vec![])),
        RuntimeError::Cores(CoreListError::Empty)
    ));
    assert!(matches!(
        err(ReactorConfig::on_cores(vec![core, core])),
        RuntimeError::Cores(CoreListError::Duplicate { .. })
    ));
    assert!(matches!(
        err(ReactorConfig::on_cores(vec![1023])),
        RuntimeError::Cores(CoreListError::Unavailable { core: 1023, .. })
    ));
    assert!(matches!(
        err(ReactorConfig {
            mailbox_capacity: 0,
            ..ReactorConfig::on_cores(vec![core])
        }),
        RuntimeError::InvalidConfig(_)
    ));
    let failed = ReactorGroup::start(&config(IdleMode::default()), |ctx| {
        if ctx.index() == 0 {
            return Err("no namespace".into());
        }
        Ok(())
    })
    .unwrap_err();
    assert!(
        matches!(&failed, RuntimeError::Init { reactor: 0, message, .. } if message == "no namespace"),
        "{failed:?}"
    );
}
