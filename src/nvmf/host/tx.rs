//! The transmit queue of one connection: PDU headers (and digests, padding)
//! encoded into one reusable byte buffer, interleaved with references to
//! command data that stays in the caller's buffers until the socket takes
//! it, so a write's payload is never copied on the host side.
//!
//! Invariant: the segments, read in order from the head offset, are exactly
//! the bytes still to send; [`TxQueue::advance`] consumes them front first
//! and reports every data segment it finished, so the queue pair knows when
//! a command's buffer is no longer referenced. The byte buffer is cleared
//! whenever the queue drains and compacted when its sent prefix dominates,
//! so its size stays bounded by what is in flight.

use std::collections::VecDeque;
use std::io::IoSlice;

use super::buffers::DataBuffers;

/// Bytes of sent prefix past which the header buffer is compacted.
const COMPACT_AT: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg {
    /// `bytes[start..end]`.
    Own { start: usize, end: usize },
    /// `data(slot)[start..end]`.
    Data { slot: u16, start: u32, end: u32 },
}

impl Seg {
    fn len(&self) -> usize {
        match *self {
            Seg::Own { start, end } => end - start,
            Seg::Data { start, end, .. } => (end - start) as usize,
        }
    }
}

/// Pending output of a connection.
#[derive(Debug)]
pub struct TxQueue {
    bytes: Vec<u8>,
    segs: VecDeque<Seg>,
    /// Bytes of `segs[0]` already sent.
    head_off: usize,
    /// Bytes not yet sent.
    pending: usize,
}

impl TxQueue {
    pub fn with_capacity(bytes: usize, segs: usize) -> Self {
        TxQueue {
            bytes: Vec::with_capacity(bytes),
            segs: VecDeque::with_capacity(segs),
            head_off: 0,
            pending: 0,
        }
    }

    /// Bytes waiting to be sent.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// The header buffer to encode into; call [`TxQueue::commit`] with the
    /// length it had before.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// Queues what was appended to the header buffer since it was `start`
    /// bytes long.
    pub fn commit(&mut self, start: usize) {
        let end = self.bytes.len();
        if end <= start {
            return;
        }
        self.pending += end - start;
        if let Some(Seg::Own { end: last_end, .. }) = self.segs.back_mut() {
            if *last_end == start {
                *last_end = end;
                return;
            }
        }
        self.segs.push_back(Seg::Own { start, end });
    }

    /// Queues `len` bytes of the data of `slot`, from `offset`.
    pub fn push_data(&mut self, slot: u16, offset: u32, len: u32) {
        if len == 0 {
            return;
        }
        self.pending += len as usize;
        self.segs.push_back(Seg::Data {
            slot,
            start: offset,
            end: offset + len,
        });
    }

    /// Fills `out` with the pending bytes in order, up to its length;
    /// returns how many slices it filled. A data segment whose buffer is
    /// too short ends the list early (the caller's bug, reported by the
    /// queue pair when it queued the segment).
    pub fn slices<'a, D: DataBuffers + ?Sized>(
        &'a self,
        data: &'a D,
        out: &mut [IoSlice<'a>],
    ) -> usize {
        let mut n = 0;
        for (i, seg) in self.segs.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let skip = if i == 0 { self.head_off } else { 0 };
            let s: &'a [u8] = match *seg {
                Seg::Own { start, end } => self.bytes.get(start + skip..end).unwrap_or(&[]),
                Seg::Data { slot, start, end } => {
                    match data
                        .outgoing(usize::from(slot))
                        .get(start as usize + skip..end as usize)
                    {
                        Some(s) => s,
                        None => break,
                    }
                }
            };
            if let Some(o) = out.get_mut(n) {
                *o = IoSlice::new(s);
                n += 1;
            }
        }
        n
    }

    /// Consumes `n` sent bytes; calls `done(slot)` for every data segment
    /// fully sent.
    pub fn advance(&mut self, mut n: usize, mut done: impl FnMut(u16)) {
        n = n.min(self.pending);
        self.pending -= n;
        while n > 0 {
            let Some(seg) = self.segs.front() else { break };
            let left = seg.len() - self.head_off;
            if n < left {
                self.head_off += n;
                break;
            }
            n -= left;
            self.head_off = 0;
            if let Some(Seg::Data { slot, .. }) = self.segs.pop_front() {
                done(slot);
            }
        }
        self.maybe_compact();
    }

    /// Drops everything queued; calls `done(slot)` for every data segment.
    pub fn clear(&mut self, mut done: impl FnMut(u16)) {
        for seg in self.segs.drain(..) {
            if let Seg::Data { slot, .. } = seg {
                done(slot);
            }
        }
        self.bytes.clear();
        self.head_off = 0;
        self.pending = 0;
    }

    /// Copies every pending byte to `out` and consumes it (for tests and
    /// simple transports); calls `done(slot)` as [`TxQueue::advance`] does.
    pub fn drain_to<D: DataBuffers + ?Sized>(
        &mut self,
        data: &D,
        out: &mut Vec<u8>,
        mut done: impl FnMut(u16),
    ) {
        loop {
            let taken = {
                let mut iov = [IoSlice::new(&[]); 64];
                let n = self.slices(data, &mut iov);
                let mut t = 0;
                for s in iov.iter().take(n) {
                    out.extend_from_slice(s);
                    t += s.len();
                }
                t
            };
            if taken == 0 {
                break;
            }
            self.advance(taken, &mut done);
        }
    }

    fn maybe_compact(&mut self) {
        if self.segs.is_empty() {
            self.bytes.clear();
            self.head_off = 0;
            return;
        }
        // First byte of the header buffer still referenced.
        let first = self.segs.iter().enumerate().find_map(|(i, s)| match *s {
            Seg::Own { start, .. } => Some(start + if i == 0 { self.head_off } else { 0 }),
            Seg::Data { .. } => None,
        });
        let first = first.unwrap_or(self.bytes.len());
        if first < COMPACT_AT || first < self.bytes.len() / 2 {
            return;
        }
        self.bytes.drain(..first);
        for (i, s) in self.segs.iter_mut().enumerate() {
            if let Seg::Own { start, end } = s {
                if i == 0 {
                    // The sent part of the head segment is gone too.
                    *start = *start + self.head_off - first;
                } else {
                    *start -= first;
                }
                *end -= first;
            }
        }
        if matches!(self.segs.front(), Some(Seg::Own { .. })) {
            self.head_off = 0;
        }
    }
}
