//! The device contract as one test routine every backend's tests run.
//!
//! It owns the checks that hold for any [`Device`]: round trips with many
//! requests in flight, errors (never panics) for bad requests, the depth bound,
//! flush, the blocking helpers and disjoint concurrent queues. Invariant: it
//! needs a fresh, zero-filled device of at least 4 MiB and leaves it with test
//! data written.

use super::blocking::BlockingQueue;
use super::{AlignedBuf, Device, DeviceError, DeviceQueue, IoCompletion, IoKind, IoRequest};
use std::collections::BTreeMap;

/// Runs every check against `device`.
pub(crate) fn check(device: &dyn Device) {
    let info = device.info();
    assert!(
        info.size_bytes >= 4 << 20,
        "conformance needs at least 4 MiB"
    );
    assert!(info.block_size == 512 || info.block_size == 4096);
    idle_queue_returns_nothing(device);
    round_trips_with_many_in_flight(device);
    bad_requests_complete_with_errors(device);
    queue_depth_is_respected(device);
    blocking_round_trips(device);
    disjoint_concurrent_queues(device);
}

/// Bytes that differ with `seed` and position, so misplaced data shows.
pub(crate) fn pattern(seed: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len);
    for (i, byte) in buf.iter_mut().enumerate() {
        let x = (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64 / 8))
            .wrapping_mul(0xff51_afd7_ed55_8ccd);
        *byte = (x >> (8 * (i % 8))) as u8;
    }
    buf
}

/// Waits until nothing is in flight, returning completions by tag (each tag once).
pub(crate) fn drain(queue: &mut dyn DeviceQueue) -> BTreeMap<u64, Result<(), DeviceError>> {
    let mut results = BTreeMap::new();
    let mut out: Vec<IoCompletion> = Vec::new();
    while queue.in_flight() > 0 {
        out.clear();
        let added = queue.wait(&mut out);
        assert_eq!(added, out.len());
        assert!(added > 0, "wait returned nothing with requests in flight");
        for completion in out.drain(..) {
            assert!(
                results.insert(completion.tag, completion.result).is_none(),
                "tag completed twice"
            );
        }
    }
    results
}

fn idle_queue_returns_nothing(device: &dyn Device) {
    let mut queue = device.queue(4).expect("queue");
    let mut out = Vec::new();
    assert_eq!(queue.poll(&mut out), 0);
    assert_eq!(
        queue.wait(&mut out),
        0,
        "wait with nothing in flight returns at once"
    );
    assert_eq!(queue.in_flight(), 0);
    assert!(out.is_empty());
    assert!(matches!(device.queue(0), Err(DeviceError::Invalid(_))));
}

/// Submits `requests` keeping up to the queue's depth in flight; returns results by tag.
fn run_raw(
    queue: &mut dyn DeviceQueue,
    requests: &[IoRequest],
) -> BTreeMap<u64, Result<(), DeviceError>> {
    let mut results = BTreeMap::new();
    let mut out = Vec::new();
    let mut next = 0;
    while next < requests.len() || queue.in_flight() > 0 {
        while next < requests.len() {
            // SAFETY: the buffers outlive this function's caller's use: callers
            // keep them alive until `run_raw` returns, and it returns only when
            // nothing is in flight.
            match unsafe { queue.submit(requests[next]) } {
                Ok(()) => next += 1,
                Err(_full) => break,
            }
        }
        out.clear();
        queue.wait(&mut out);
        for completion in out.drain(..) {
            assert!(
                results.insert(completion.tag, completion.result).is_none(),
                "tag completed twice"
            );
        }
    }
    assert_eq!(results.len(), requests.len());
    results
}

fn round_trips_with_many_in_flight(device: &dyn Device) {
    let info = device.info();
    let block = u64::from(info.block_size);
    // Extents of varied offsets and lengths with gaps between them, plus the
    // device's last block.
    let mut extents = Vec::new();
    let mut cursor = 0;
    for i in 0..32u64 {
        cursor += (i % 3) * block;
        let len = (1 + (i * 5) % 7) * block;
        extents.push((cursor, len));
        cursor += len;
    }
    extents.push((info.size_bytes - block, block));
    let mut written: Vec<AlignedBuf> = extents
        .iter()
        .enumerate()
        .map(|(i, &(_, len))| pattern(i as u64 + 1, len as usize))
        .collect();
    let writes: Vec<IoRequest> = extents
        .iter()
        .zip(written.iter_mut())
        .enumerate()
        .map(|(i, (&(offset, len), buf))| IoRequest {
            kind: IoKind::Write,
            offset,
            ptr: buf.as_mut_ptr(),
            len: len as u32,
            tag: 1000 + i as u64,
        })
        .collect();
    let mut queue = device.queue(8).expect("queue");
    for (tag, result) in run_raw(queue.as_mut(), &writes) {
        assert_eq!(result, Ok(()), "write {tag}");
    }
    for (tag, result) in run_raw(queue.as_mut(), &[IoRequest::flush(7)]) {
        assert_eq!(result, Ok(()), "flush {tag}");
    }

    let mut read_back: Vec<AlignedBuf> = extents
        .iter()
        .map(|&(_, len)| AlignedBuf::zeroed(len as usize))
        .collect();
    let reads: Vec<IoRequest> = extents
        .iter()
        .zip(read_back.iter_mut())
        .enumerate()
        .map(|(i, (&(offset, len), buf))| IoRequest {
            kind: IoKind::Read,
            offset,
            ptr: buf.as_mut_ptr(),
            len: len as u32,
            tag: i as u64,
        })
        .collect();
    for (tag, result) in run_raw(queue.as_mut(), &reads) {
        assert_eq!(result, Ok(()), "read {tag}");
    }
    for (i, (got, want)) in read_back.iter().zip(written.iter()).enumerate() {
        assert!(
            got[..] == want[..],
            "extent {i} at {} reads back different bytes",
            extents[i].0
        );
    }
    // The gaps were never written and read as zeros.
    let mut gaps = BlockingQueue::new(device, 4).expect("queue");
    let mut gap = AlignedBuf::zeroed(block as usize);
    for pair in extents[..32].windows(2) {
        let end = pair[0].0 + pair[0].1;
        if end < pair[1].0 {
            gaps.read(end, &mut gap).expect("gap read");
            assert!(gap.iter().all(|&b| b == 0), "gap at {end}");
        }
    }
}

/// The error a bad request must complete with.
#[derive(Debug)]
enum Expect {
    Misaligned,
    OutOfRange,
}

fn bad_requests_complete_with_errors(device: &dyn Device) {
    let info = device.info();
    let block = info.block_size;
    let size = info.size_bytes;
    let mut buf = AlignedBuf::zeroed(3 * block as usize);
    let good = buf.as_mut_ptr();
    let odd = good.wrapping_add(8);
    let overflow_offset = u64::MAX - u64::from(block) + 1;
    let mut cases = Vec::new();
    for kind in [IoKind::Read, IoKind::Write] {
        let r = |offset: u64, ptr: *mut u8, len: u32| IoRequest {
            kind,
            offset,
            ptr,
            len,
            tag: 0,
        };
        cases.extend([
            (r(1, good, block), Expect::Misaligned),
            (r(0, good, block + 1), Expect::Misaligned),
            (r(0, good, 0), Expect::Misaligned),
            (r(0, odd, block), Expect::Misaligned),
            (r(size, good, block), Expect::OutOfRange),
            (
                r(size - u64::from(block), good, 2 * block),
                Expect::OutOfRange,
            ),
            (r(overflow_offset, good, 2 * block), Expect::OutOfRange),
        ]);
    }
    let mut queue = device.queue(cases.len() as u32).expect("queue");
    for (tag, (request, _)) in cases.iter().enumerate() {
        let request = IoRequest {
            tag: tag as u64,
            ..*request
        };
        // SAFETY: `buf` outlives the drain below; the requests are refused anyway.
        unsafe { queue.submit(request) }.expect("depth covers every case");
    }
    assert_eq!(queue.in_flight(), cases.len());
    let results = drain(queue.as_mut());
    for (tag, (request, expected)) in cases.iter().enumerate() {
        match &results[&(tag as u64)] {
            Err(error) => assert!(
                matches!(
                    (expected, error),
                    (Expect::Misaligned, DeviceError::Misaligned { .. })
                        | (Expect::OutOfRange, DeviceError::OutOfRange { .. })
                ),
                "case {tag} {request:?}: expected {expected:?}, got {error:?}"
            ),
            Ok(()) => panic!("case {tag} {request:?} succeeded"),
        }
    }
}

fn queue_depth_is_respected(device: &dyn Device) {
    let mut queue = device.queue(4).expect("queue");
    for tag in 0..4 {
        // SAFETY: flushes carry no buffer.
        unsafe { queue.submit(IoRequest::flush(tag)) }.expect("within depth");
        assert_eq!(queue.in_flight(), tag as usize + 1);
    }
    // SAFETY: as above.
    assert_eq!(
        unsafe { queue.submit(IoRequest::flush(99)) },
        Err(super::QueueFull)
    );
    assert_eq!(queue.in_flight(), 4);
    let results = drain(queue.as_mut());
    assert_eq!(
        results.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(results.values().all(Result::is_ok));
    assert_eq!(queue.in_flight(), 0);
    // SAFETY: as above.
    unsafe { queue.submit(IoRequest::flush(5)) }.expect("room again");
    assert_eq!(drain(queue.as_mut()).len(), 1);
}

fn blocking_round_trips(device: &dyn Device) {
    let block = device.info().block_size as usize;
    let base = 2 << 20;
    let mut queue = BlockingQueue::new(device, 3).expect("queue");
    let one = pattern(77, 5 * block);
    queue.write(base, &one).expect("write");
    queue.flush().expect("flush");
    let mut back = AlignedBuf::zeroed(5 * block);
    queue.read(base, &mut back).expect("read");
    assert!(back[..] == one[..]);

    let bufs: Vec<AlignedBuf> = (0..10)
        .map(|i| pattern(200 + i, block * (1 + i as usize % 3)))
        .collect();
    let writes: Vec<(u64, &[u8])> = bufs
        .iter()
        .enumerate()
        .map(|(i, b)| (base + (8 + 4 * i as u64) * block as u64, &b[..]))
        .collect();
    queue.write_many(&writes).expect("write_many");
    let mut outs: Vec<AlignedBuf> = bufs.iter().map(|b| AlignedBuf::zeroed(b.len())).collect();
    let mut reads: Vec<(u64, &mut [u8])> = writes
        .iter()
        .zip(outs.iter_mut())
        .map(|(&(offset, _), out)| (offset, &mut out[..]))
        .collect();
    queue.read_many(&mut reads).expect("read_many");
    for (i, (out, buf)) in outs.iter().zip(bufs.iter()).enumerate() {
        assert!(out[..] == buf[..], "batched extent {i}");
    }
    let mut misaligned = AlignedBuf::zeroed(2 * block);
    let error = queue
        .read(base, &mut misaligned[1..1 + block])
        .expect_err("misaligned pointer");
    assert!(matches!(error, DeviceError::Misaligned { .. }), "{error:?}");
}

fn disjoint_concurrent_queues(device: &dyn Device) {
    let block = device.info().block_size as usize;
    let base: u64 = 3 << 20;
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            scope.spawn(move || {
                let mut queue = BlockingQueue::new(device, 4).expect("queue");
                let bufs: Vec<AlignedBuf> =
                    (0..16).map(|i| pattern(thread * 100 + i, block)).collect();
                // Interleaved blocks: thread 0 takes even ones, thread 1 odd ones.
                let offsets: Vec<u64> = (0..16)
                    .map(|i| base + (2 * i + thread) * block as u64)
                    .collect();
                for _round in 0..4 {
                    let writes: Vec<(u64, &[u8])> = offsets
                        .iter()
                        .zip(&bufs)
                        .map(|(&o, b)| (o, &b[..]))
                        .collect();
                    queue.write_many(&writes).expect("concurrent writes");
                    let mut outs: Vec<AlignedBuf> =
                        (0..16).map(|_| AlignedBuf::zeroed(block)).collect();
                    let mut reads: Vec<(u64, &mut [u8])> = offsets
                        .iter()
                        .zip(outs.iter_mut())
                        .map(|(&o, b)| (o, &mut b[..]))
                        .collect();
                    queue.read_many(&mut reads).expect("concurrent reads");
                    for (out, buf) in outs.iter().zip(&bufs) {
                        assert!(out[..] == buf[..], "thread {thread} lost its bytes");
                    }
                }
            });
        }
    });
}
