//! The reference model and the harness that drives the engine and the model
//! side by side: writes by seq in the model, every listed point checked
//! byte-exact, crashes through the fault device followed by recovery.
#![allow(dead_code)]

use proptest::prelude::*;
use rewind::device::fault::{FaultConfig, FaultDevice};
use rewind::device::ram::RamDevice;
use rewind::device::{AlignedBuf, Device};
use rewind::engine::{
    At, EngineError, Event, FormatOptions, Geometry, Point, PointKind, PointPin, Retention,
    RingWriter, SyncPolicy, Volume, VolumeConfig,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

pub const BS: usize = 512;
pub const BLOCKS: u64 = 64;
pub const RINGS: u16 = 2;

pub fn geometry() -> Geometry {
    Geometry {
        block_size: BS as u32,
        volume_blocks: BLOCKS,
        rings: RINGS,
        ring_desc_blocks: 16,
        ring_data_blocks: 64,
        backward_desc_blocks: 16,
        backward_data_blocks: 128,
    }
}

pub fn config() -> VolumeConfig {
    VolumeConfig {
        sync: SyncPolicy {
            fill_percent: 75,
            interval: None,
            marker_interval: None,
        },
        stable_wait: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Block contents that identify the write (tag) and the block within it.
pub fn pattern(tag: u64, n: u64) -> Vec<u8> {
    let mut v = vec![(tag % 251) as u8 + 1; n as usize * BS];
    for b in 0..n as usize {
        v[b * BS..b * BS + 8].copy_from_slice(&tag.to_le_bytes());
        v[b * BS + 8..b * BS + 16].copy_from_slice(&(b as u64).to_le_bytes());
    }
    v
}

/// A request that failed after it was given a seq: it may or may not have
/// reached the media before the crash.
pub struct Uncertain {
    pub ring: u16,
    pub seq: u64,
    pub lba: u64,
    pub data: Vec<u8>,
}

/// Every durable write by seq; contents at a point replay them.
#[derive(Default)]
pub struct Model {
    pub writes: BTreeMap<u64, (u64, Vec<u8>)>,
}

impl Model {
    pub fn at(&self, seq: u64) -> Vec<u8> {
        let mut v = vec![0u8; BLOCKS as usize * BS];
        for (lba, d) in self.writes.range(..=seq).map(|(_, w)| w) {
            v[*lba as usize * BS..][..d.len()].copy_from_slice(d);
        }
        v
    }
}

#[derive(Clone, Debug)]
pub struct Io {
    pub ring: u16,
    pub lba: u64,
    pub n: u64,
    pub zero: bool,
}

#[derive(Clone, Debug)]
pub enum Op {
    Write(Io),
    /// Several requests in flight across rings, with a sync running meanwhile.
    Burst {
        ios: Vec<Io>,
        sync: bool,
    },
    Flush {
        ring: u16,
    },
    Mark,
    Sync,
    ReadPoint {
        pick: prop::sample::Index,
        lba: u64,
        n: u64,
    },
    ReadNow {
        lba: u64,
        n: u64,
    },
    KeepLast(Option<u64>),
    /// Pin a listed point; it must then survive syncs and voluntary retention.
    Pin {
        pick: prop::sample::Index,
    },
    /// Drop one of the pins held.
    Unpin {
        pick: prop::sample::Index,
    },
    /// Crash after `after` more device writes/flushes while a burst and a sync run.
    Crash {
        after: u64,
        seed: u64,
        ios: Vec<Io>,
        sync: bool,
    },
}

pub fn io() -> impl Strategy<Value = Io> {
    (0..RINGS, 0..BLOCKS, 1u64..=8, prop::bool::weighted(0.15)).prop_map(|(ring, lba, n, zero)| {
        Io {
            ring,
            lba,
            n: n.min(BLOCKS - lba),
            zero,
        }
    })
}

pub fn extent() -> impl Strategy<Value = (u64, u64)> {
    (0..BLOCKS, 1u64..=BLOCKS).prop_map(|(lba, n)| (lba, n.min(BLOCKS - lba)))
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => io().prop_map(Op::Write),
        3 => (prop::collection::vec(io(), 1..10), any::<bool>()).prop_map(|(ios, sync)| Op::Burst { ios, sync }),
        1 => (0..RINGS).prop_map(|ring| Op::Flush { ring }),
        1 => Just(Op::Mark),
        2 => Just(Op::Sync),
        3 => (any::<prop::sample::Index>(), extent()).prop_map(|(pick, (lba, n))| Op::ReadPoint { pick, lba, n }),
        1 => extent().prop_map(|(lba, n)| Op::ReadNow { lba, n }),
        1 => prop::option::of(1u64..6).prop_map(Op::KeepLast),
        1 => any::<prop::sample::Index>().prop_map(|pick| Op::Pin { pick }),
        1 => any::<prop::sample::Index>().prop_map(|pick| Op::Unpin { pick }),
        2 => (0u64..80, any::<u64>(), prop::collection::vec(io(), 1..10), any::<bool>()).prop_map(|(after, seed, ios, sync)| Op::Crash { after, seed, ios, sync }),
    ]
}

pub struct Harness {
    pub fault: Arc<FaultDevice>,
    pub volume: Option<Volume>,
    pub writers: Vec<RingWriter>,
    pub model: Model,
    events: Receiver<Event>,
    last_expired: u64,
    /// Pins held, each with the count of forced expiries when it was taken.
    pins: Vec<(PointPin, u64)>,
    /// Forced expiries seen (a full backward journal may expire pinned points).
    forced_expiries: u64,
    next_tag: u64,
    labels: u64,
    log: Vec<String>,
    /// What each crash decided (for failure messages).
    crash_notes: Vec<String>,
}

pub fn check(ok: bool, h: &Harness, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        let tail: Vec<_> = h.log.iter().rev().take(12).rev().cloned().collect();
        let notes = h.crash_notes.join("\n  ");
        Err(TestCaseError::fail(format!(
            "{}\nlast ops:\n  {}\ncrashes:\n  {}",
            what(),
            tail.join("\n  "),
            notes
        )))
    }
}

impl Harness {
    pub fn new(seed: u64) -> Self {
        let ram = RamDevice::new(4 << 20, BS as u32).unwrap();
        let fault = FaultDevice::new(
            ram,
            FaultConfig {
                seed,
                ..Default::default()
            },
        )
        .unwrap();
        let volume = Volume::format(
            fault.clone() as Arc<dyn Device>,
            &geometry(),
            &FormatOptions::default(),
            config(),
        )
        .unwrap();
        let events = volume.subscribe();
        let writers = (0..RINGS).map(|r| volume.writer(r).unwrap()).collect();
        Harness {
            fault,
            volume: Some(volume),
            writers,
            model: Model::default(),
            events,
            last_expired: 0,
            pins: Vec::new(),
            forced_expiries: 0,
            next_tag: 1,
            labels: 0,
            log: Vec::new(),
            crash_notes: Vec::new(),
        }
    }

    pub fn volume(&self) -> &Volume {
        self.volume.as_ref().expect("volume open")
    }

    pub fn data_for(&mut self, io: &Io) -> (u64, Vec<u8>) {
        let tag = self.next_tag;
        self.next_tag += 1;
        (
            tag,
            if io.zero {
                vec![0u8; io.n as usize * BS]
            } else {
                pattern(tag, io.n)
            },
        )
    }

    /// Submits `ios` in flight together (optionally with a sync on another
    /// thread) and polls until everything completed. Returns acknowledged
    /// writes and, for requests that failed after getting a seq, the uncertain ones.
    #[allow(clippy::type_complexity)]
    pub fn burst(
        &mut self,
        ios: &[Io],
        sync: bool,
        tolerate_failure: bool,
    ) -> Result<(Vec<(u64, u64, Vec<u8>)>, Vec<Uncertain>), TestCaseError> {
        let mut pending: HashMap<u64, (u16, u64, Vec<u8>)> = HashMap::new();
        for io in ios {
            let (tag, data) = self.data_for(io);
            let w = &mut self.writers[usize::from(io.ring)];
            let submitted = if io.zero {
                w.submit_zeroes(io.lba, io.n, tag)
            } else {
                w.submit_write(io.lba, AlignedBuf::from_slice(&data), tag)
                    .map_err(|(e, _)| e)
            };
            match submitted {
                Ok(()) => {
                    pending.insert(tag, (io.ring, io.lba, data));
                }
                Err(e) if tolerate_failure => {
                    let _ = e;
                }
                Err(e) => return Err(TestCaseError::fail(format!("submit failed: {e}"))),
            }
        }
        let mut acked = Vec::new();
        let mut uncertain = Vec::new();
        let mut failures = Vec::new();
        let volume = self.volume.as_ref().expect("open");
        let writers = &mut self.writers;
        std::thread::scope(|s| {
            let syncer = sync.then(|| s.spawn(|| volume.sync_now()));
            let mut out = Vec::new();
            let started = std::time::Instant::now();
            loop {
                for w in writers.iter_mut() {
                    w.poll(&mut out);
                }
                for c in out.drain(..) {
                    let Some((ring, lba, data)) = pending.remove(&c.tag) else {
                        continue;
                    };
                    match (c.result, c.seq) {
                        (Ok(seq), _) => acked.push((seq, lba, data)),
                        (Err(_), Some(seq)) => uncertain.push(Uncertain {
                            ring,
                            seq,
                            lba,
                            data,
                        }),
                        (Err(e), None) => failures.push(e),
                    }
                }
                let sync_done = syncer.as_ref().is_none_or(|h| h.is_finished());
                if pending.is_empty() && sync_done {
                    break;
                }
                if started.elapsed() > Duration::from_secs(20) {
                    if std::env::var_os("REWIND_HANG_DEBUG").is_some() {
                        eprintln!("HANG: burst did not finish, pid {}", std::process::id());
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    panic!("burst did not finish: {} pending", pending.len());
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            if let Some(h) = syncer {
                match h.join().expect("sync thread") {
                    Ok(_) => {}
                    Err(e) if tolerate_failure => {
                        let _ = e;
                    }
                    Err(e) => failures.push(e),
                }
            }
        });
        if !tolerate_failure && (!failures.is_empty() || !uncertain.is_empty()) {
            return Err(TestCaseError::fail(format!(
                "requests failed outside a crash: {failures:?}"
            )));
        }
        Ok((acked, uncertain))
    }

    pub fn drain_events(&mut self) -> Result<(), TestCaseError> {
        while let Ok(e) = self.events.try_recv() {
            match e {
                Event::Expired {
                    generation, forced, ..
                } => {
                    if forced {
                        self.forced_expiries += 1;
                    }
                    check(generation > self.last_expired, self, || {
                        format!(
                            "generation {generation} expired after {}: not oldest first",
                            self.last_expired
                        )
                    })?;
                    self.last_expired = generation;
                }
                Event::Failed { message } => {
                    return Err(TestCaseError::fail(format!(
                        "volume failed outside a crash: {message}"
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn read(&self, lba: u64, n: u64, at: &At) -> Result<(Point, Vec<u8>), TestCaseError> {
        self.volume()
            .read(lba, n, at)
            .map_err(|e| TestCaseError::fail(format!("read {lba}+{n} at {at:?}: {e}")))
    }

    pub fn compare(&self, what: &str, seq: u64, lba: u64, got: &[u8]) -> Result<(), TestCaseError> {
        let want = self.model.at(seq);
        let want = &want[lba as usize * BS..][..got.len()];
        if got != want {
            let block = got
                .chunks(BS)
                .zip(want.chunks(BS))
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            let tag = |b: &[u8]| u64::from_le_bytes(b[..8].try_into().unwrap());
            let (g, w) = (&got[block * BS..][..BS], &want[block * BS..][..BS]);
            return check(false, self, || {
                format!("{what}: block {} at seq {seq} holds write tag {} (first byte {}), model says tag {} (first byte {})", lba + block as u64, tag(g), g[8 + 8], tag(w), w[16])
            });
        }
        Ok(())
    }

    /// Every listed point reads back exactly; the list is ordered; Now is exact.
    pub fn check_all_points(&mut self) -> Result<(), TestCaseError> {
        let points = self.volume().points();
        check(points.windows(2).all(|w| w[0].seq < w[1].seq), self, || {
            format!(
                "points not strictly ordered: {:?}",
                points.iter().map(|p| p.seq).collect::<Vec<_>>()
            )
        })?;
        for p in &points {
            self.check_listed_point(p, 0, BLOCKS)?;
        }
        let (_, now) = self.read(0, BLOCKS, &At::Now)?;
        self.compare("now", u64::MAX, 0, &now)?;
        self.check_pins()
    }

    /// Every pinned point still reads back exactly at its own seq, unless a
    /// forced expiry (a full backward journal) happened since it was pinned.
    pub fn check_pins(&mut self) -> Result<(), TestCaseError> {
        self.drain_events()?;
        for i in 0..self.pins.len() {
            let (seq, forced_then) = (self.pins[i].0.seq(), self.pins[i].1);
            let served = match self.volume().read(0, BLOCKS, &At::Seq(seq)) {
                Ok((p, bytes)) if p.seq == seq => {
                    self.compare(&format!("pinned point {seq}"), seq, 0, &bytes)?;
                    continue;
                }
                Ok((p, _)) => format!("served by {}", p.seq),
                Err(e) => e.to_string(),
            };
            // A background sync announces a forced expiry only after the
            // generation left the map, so the read above can see it gone
            // before its event is sent. The worker serves a pin request only
            // between syncs: once this one is answered, that event is out.
            if let Ok(again) = self.volume().pin(seq) {
                return check(false, self, || {
                    format!(
                        "pinned point {seq} cannot be read ({served}) yet pins again at {}",
                        again.seq()
                    )
                });
            }
            self.drain_events()?;
            check(self.forced_expiries > forced_then, self, || {
                format!(
                    "pinned point {seq} is gone ({served}) without a forced expiry; pins {:?}; points {:?}",
                    self.volume().pinned(),
                    self.volume().points().iter().map(|p| p.seq).collect::<Vec<_>>()
                )
            })?;
        }
        Ok(())
    }

    /// Reads blocks `lba..lba + n` at listed point `p`: the bytes must be those
    /// of the point that served the read, and a different serving point (or an
    /// expiry error) is accepted only if `p` really left the list.
    pub fn check_listed_point(&mut self, p: &Point, lba: u64, n: u64) -> Result<(), TestCaseError> {
        let (served, bytes) = match self.volume().read(lba, n, &At::Seq(p.seq)) {
            Ok(r) => r,
            Err(EngineError::BeforeRetention { .. } | EngineError::Expired(_)) => {
                return self.check_vanished(p)
            }
            Err(e) => {
                return Err(TestCaseError::fail(format!(
                    "read at listed point {}: {e}",
                    p.seq
                )))
            }
        };
        self.compare(
            &format!("point {} ({:?}) served by {}", p.seq, p.kind, served.seq),
            served.seq,
            lba,
            &bytes,
        )?;
        if served.seq != p.seq {
            self.log
                .push(format!("read at {} served by {:?}", p.seq, served));
            self.check_vanished(p)?;
        }
        Ok(())
    }

    /// A listed point may vanish only because a sync coalesced it or
    /// retention expired it: it is then behind the mirror or the oldest point.
    pub fn check_vanished(&self, p: &Point) -> Result<(), TestCaseError> {
        let now = self.volume().points();
        let mirror = now
            .iter()
            .find(|x| matches!(x.kind, PointKind::Mirror { .. }))
            .map_or(0, |x| x.seq);
        check(
            !now.iter().any(|x| x.seq == p.seq) && p.seq < mirror,
            self,
            || {
                format!(
                "point {} ({:?}) was not served although still retained (mirror {mirror}); resolves now to {:?}; stable {}; stats {:?}; points {:?}",
                p.seq,
                p.kind,
                self.volume().resolve(&At::Seq(p.seq)),
                self.volume().stable_seq(),
                self.volume().stats(),
                now.iter().map(|x| (x.seq, format!("{:?}", x.kind))).collect::<Vec<_>>()
            )
            },
        )
    }

    pub fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.log.push(format!("{op:?}"));
        match op {
            Op::Write(io) => {
                let (_, data) = self.data_for(io);
                let w = &mut self.writers[usize::from(io.ring)];
                let r = if io.zero {
                    w.write_zeroes(io.lba, io.n)
                } else {
                    w.write(io.lba, &data)
                };
                let seq = r.map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
                self.model.writes.insert(seq, (io.lba, data));
            }
            Op::Burst { ios, sync } => {
                let (acked, _) = self.burst(ios, *sync, false)?;
                for (seq, lba, data) in acked {
                    self.model.writes.insert(seq, (lba, data));
                }
            }
            Op::Flush { ring } => {
                let seq = self.writers[usize::from(*ring)]
                    .flush()
                    .map_err(|e| TestCaseError::fail(format!("flush: {e}")))?;
                // The flush is a point at once (a background sync may coalesce it right after).
                let point = Point {
                    seq,
                    time_ns: 0,
                    kind: PointKind::Marker(rewind::engine::MarkerKind::Flush),
                    label: None,
                };
                self.check_listed_point(&point, 0, BLOCKS)?;
            }
            Op::Mark => {
                self.labels += 1;
                let label = format!("mark-{}", self.labels);
                let p = self
                    .volume()
                    .mark(&label)
                    .map_err(|e| TestCaseError::fail(format!("mark: {e}")))?;
                let r = self
                    .volume()
                    .resolve(&At::Label(label.clone()))
                    .map_err(|e| TestCaseError::fail(format!("resolve label: {e}")))?;
                check(r.seq == p.seq, self, || {
                    format!("label {label} resolved to {} not {}", r.seq, p.seq)
                })?;
            }
            Op::Sync => {
                self.volume()
                    .sync_now()
                    .map_err(|e| TestCaseError::fail(format!("sync: {e}")))?;
                self.check_all_points()?;
            }
            Op::Pin { pick } => {
                self.drain_events()?;
                let points = self.volume().points();
                let p = pick.get(&points).clone();
                match self.volume().pin(p.seq) {
                    Ok(pin) => self.pins.push((pin, self.forced_expiries)),
                    // A background sync may have coalesced it since the listing.
                    Err(EngineError::Expired(_)) => self.check_vanished(&p)?,
                    Err(e) => return Err(TestCaseError::fail(format!("pin {}: {e}", p.seq))),
                }
                self.check_pins()?;
            }
            Op::Unpin { pick } => {
                if !self.pins.is_empty() {
                    let i = pick.index(self.pins.len());
                    self.pins.swap_remove(i);
                }
            }
            Op::ReadPoint { pick, lba, n } => {
                let points = self.volume().points();
                let p = pick.get(&points).clone();
                self.check_listed_point(&p, *lba, *n)?;
            }
            Op::ReadNow { lba, n } => {
                let (_, bytes) = self.read(*lba, *n, &At::Now)?;
                self.compare("now", u64::MAX, *lba, &bytes)?;
            }
            Op::KeepLast(n) => {
                self.volume()
                    .set_retention(Retention {
                        keep_last: *n,
                        ..Default::default()
                    })
                    .map_err(|e| TestCaseError::fail(format!("retention: {e}")))?;
                if let Some(n) = n {
                    // A background sync may add a generation right after the policy
                    // ran; the next pass expires it. A few passes must get there.
                    let mut generations = self.volume().generations().len() as u64;
                    for _ in 0..5 {
                        if generations <= *n {
                            break;
                        }
                        self.volume()
                            .apply_retention()
                            .map_err(|e| TestCaseError::fail(format!("retention: {e}")))?;
                        generations = self.volume().generations().len() as u64;
                    }
                    // Pinned generations hold voluntary expiry back.
                    check(generations <= *n || !self.pins.is_empty(), self, || {
                        format!("{generations} generations retained with keep_last {n}")
                    })?;
                }
                self.check_pins()?;
            }
            Op::Crash {
                after,
                seed,
                ios,
                sync,
            } => self.crash(*after, *seed, ios, *sync)?,
        }
        Ok(())
    }

    /// Runs `op` accepting failures (the device may crash at any moment):
    /// acknowledged writes go into the model, writes that failed after taking
    /// a seq into `uncertain`.
    pub fn run_tolerant(
        &mut self,
        op: &Op,
        uncertain: &mut Vec<Uncertain>,
    ) -> Result<(), TestCaseError> {
        match op {
            Op::Write(io) => {
                return self.run_tolerant(
                    &Op::Burst {
                        ios: vec![io.clone()],
                        sync: false,
                    },
                    uncertain,
                )
            }
            Op::Burst { ios, sync } => {
                let (acked, unsure) = self.burst(ios, *sync, true)?;
                for (seq, lba, data) in acked {
                    self.model.writes.insert(seq, (lba, data));
                }
                uncertain.extend(unsure);
            }
            Op::Flush { ring } => {
                let _ = self.writers[usize::from(*ring)].flush();
            }
            Op::Mark => {
                self.labels += 1;
                let _ = self.volume().mark(&format!("mark-{}", self.labels));
            }
            Op::Sync => {
                let _ = self.volume().sync_now();
            }
            Op::KeepLast(n) => {
                let _ = self.volume().set_retention(Retention {
                    keep_last: *n,
                    ..Default::default()
                });
            }
            Op::ReadPoint { .. }
            | Op::ReadNow { .. }
            | Op::Crash { .. }
            | Op::Pin { .. }
            | Op::Unpin { .. } => {}
        }
        Ok(())
    }

    pub fn crash(
        &mut self,
        after: u64,
        seed: u64,
        ios: &[Io],
        sync: bool,
    ) -> Result<(), TestCaseError> {
        self.crash_during(
            after,
            seed,
            &[Op::Burst {
                ios: ios.to_vec(),
                sync,
            }],
        )
    }

    /// Runs `ops` with the device set to crash after `after` more writes or
    /// flushes (tolerating every failure that follows), then crashes, recovers
    /// on the crash image and checks everything.
    pub fn crash_during(&mut self, after: u64, seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
        self.drain_events()?;
        let before: Vec<Point> = self.volume().points();
        self.fault.crash_after(after);
        let mut uncertain = Vec::new();
        for op in ops {
            self.log.push(format!("(crash window) {op:?}"));
            self.run_tolerant(op, &mut uncertain)?;
        }
        self.fault.crash_now();
        // Stop everything that runs on the crashed device (pins live in memory
        // only: they end with the process, as the service's views do).
        self.pins.clear();
        self.writers.clear();
        if let Some(v) = self.volume.take() {
            let _ = v.close();
        }
        let image = self.fault.crash_image();
        self.fault = FaultDevice::new(
            image,
            FaultConfig {
                seed: seed ^ 0x5eed,
                ..Default::default()
            },
        )
        .unwrap();
        let (volume, report) = Volume::open(self.fault.clone() as Arc<dyn Device>, config())
            .map_err(|e| TestCaseError::fail(format!("reopen after crash: {e}")))?;
        check(
            report.lost_generations.is_empty() && !report.mirror_incomplete,
            self,
            || format!("a crash lost data: {report:?}"),
        )?;
        self.events = volume.subscribe();
        // Expiry is announced before its checkpoint: a generation announced just
        // before the crash may return and be announced again (at least once).
        self.last_expired = 0;
        self.writers = (0..RINGS).map(|r| volume.writer(r).unwrap()).collect();
        self.volume = Some(volume);
        // A request that failed after getting a seq survived iff recovery found
        // its ring's records up to that seq (each ring recovers a prefix).
        let after_points = self.volume().points();
        let listed: HashSet<u64> = after_points.iter().map(|p| p.seq).collect();
        let mirror = after_points
            .iter()
            .find(|p| matches!(p.kind, PointKind::Mirror { .. }))
            .map_or(0, |p| p.seq);
        let recovered_mirror = report.mirror_seq;
        let uncertain_seqs: Vec<u64> = uncertain.iter().map(|u| u.seq).collect();
        let note = format!(
            "crash: uncertain {:?}; report {report:?}",
            uncertain
                .iter()
                .map(|u| (
                    u.ring,
                    u.seq,
                    u.lba,
                    u.data.len() / BS,
                    u.seq <= report.newest_seq_per_ring[usize::from(u.ring)]
                ))
                .collect::<Vec<_>>()
        );
        self.crash_notes.push(note);
        for u in uncertain {
            check(u.seq > recovered_mirror, self, || {
                format!("unacknowledged seq {} is inside the recovered mirror (seq {recovered_mirror}); uncertain {uncertain_seqs:?}; report {report:?}", u.seq)
            })?;
            if u.seq <= report.newest_seq_per_ring[usize::from(u.ring)] {
                self.model.writes.insert(u.seq, (u.lba, u.data));
            }
        }
        // A point listed before the crash is still listed, unless a sync or
        // expiry legitimately moved past it before the crash hit.
        for p in &before {
            check(listed.contains(&p.seq) || p.seq < mirror, self, || {
                format!("point {} ({:?}) listed before the crash vanished (mirror now {mirror}): {report:?}", p.seq, p.kind)
            })?;
        }
        self.check_all_points()
    }
}
