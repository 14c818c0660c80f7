//! Moving the mirror forward, step by step, for the sync worker and for
//! recovery alike: the net change of a run of forward records, saving the
//! mirror's current contents of those ranges (undo data), writing the net
//! change into the mirror, the ring tails that become free, and checkpoints.
//!
//! Invariants: each step ends with a device flush, so the caller can order
//! steps per invariants 3 and 4 (undo data durable before the mirror is
//! touched; checkpoint durable before forward space is reused). All I/O goes in
//! bounded chunks (at most [`CHUNK_BYTES`] of buffers at a time).

use crate::device::blocking::BlockingQueue;
use crate::device::AlignedBuf;
use crate::engine::error::Result;
use crate::engine::forward::index::IndexedRecord;
use crate::engine::geometry::{Layout, SLOT_BYTES};
use crate::engine::map::net_change::{ChangeSource, NetChange};
use crate::engine::ondisk::checkpoint::{Checkpoint, RingTails};
use crate::engine::ondisk::forward_block::{ForwardRecord, RecordBody};

/// Bytes of buffers one chunk of mirror I/O may use.
pub const CHUNK_BYTES: u64 = 8 << 20;

/// Largest run of blocks one undo extent or mirror write covers.
pub fn max_run_blocks(layout: &Layout) -> u64 {
    (crate::engine::geometry::MAX_WRITE_BYTES / layout.geometry.bs()).max(1)
}

/// Where the new contents of a write or write-zeroes record come from.
pub fn change_source(ring: u16, r: &ForwardRecord) -> ChangeSource {
    match r.body {
        RecordBody::Write { data_pos, .. } => ChangeSource::Forward {
            ring,
            pos: data_pos,
        },
        _ => ChangeSource::Zero,
    }
}

/// The net change of `records` (any order of rings, ascending seq) and how many
/// write and write-zeroes records it came from.
pub fn net_change<'a>(records: impl Iterator<Item = (u16, &'a ForwardRecord)>) -> (NetChange, u64) {
    let mut net = NetChange::new();
    let mut count = 0u64;
    let mut last_seq = 0u64;
    for (ring, r) in records {
        assert!(
            r.seq > last_seq,
            "net change needs ascending seqs ({} after {last_seq})",
            r.seq
        );
        last_seq = r.seq;
        if let Some((lba, n)) = r.extent() {
            net.overwrite(lba, u64::from(n), change_source(ring, r));
            count += 1;
        }
    }
    (net, count)
}

/// Groups `items` (each `blocks` long) into chunks of at most `CHUNK_BYTES`.
fn chunks<T: Copy>(items: &[T], blocks: impl Fn(&T) -> u64, bs: u64) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut bytes = 0u64;
    for it in items {
        let b = blocks(it) * bs;
        if out.is_empty() || bytes + b > CHUNK_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += b;
        if let Some(last) = out.last_mut() {
            last.push(*it);
        }
    }
    out
}

/// One device transfer to or from `buf[at..at + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Transfer {
    device: u64,
    at: usize,
    len: usize,
}

/// Joins consecutive transfers whose device bytes and buffer bytes are both
/// contiguous into one request (never across a ring's lap or a region edge,
/// whose device offsets are not contiguous).
fn join(transfers: impl Iterator<Item = Transfer>) -> Vec<Transfer> {
    let mut out: Vec<Transfer> = Vec::new();
    for t in transfers {
        match out.last_mut() {
            Some(last)
                if last.device + last.len as u64 == t.device && last.at + last.len == t.at =>
            {
                last.len += t.len
            }
            _ => out.push(t),
        }
    }
    out
}

/// Device-to-device copies `(src, dst, len)`, consecutive ones joined where
/// both sides are contiguous, each at most [`CHUNK_BYTES`] long.
fn join_copies(copies: impl Iterator<Item = (u64, u64, u64)>) -> Vec<(u64, u64, u32)> {
    let mut out: Vec<(u64, u64, u32)> = Vec::new();
    for (src, dst, len) in copies {
        assert!(len <= CHUNK_BYTES, "one change piece is at most a chunk");
        match out.last_mut() {
            Some(last)
                if last.0 + u64::from(last.2) == src
                    && last.1 + u64::from(last.2) == dst
                    && u64::from(last.2) + len <= CHUNK_BYTES =>
            {
                last.2 += len as u32
            }
            _ => out.push((src, dst, len as u32)),
        }
    }
    out
}

/// Disjoint mutable slices of `buf` for transfers in increasing buffer order.
fn slices_mut<'a>(mut buf: &'a mut [u8], transfers: &[Transfer]) -> Vec<(u64, &'a mut [u8])> {
    let mut consumed = 0;
    let mut out = Vec::with_capacity(transfers.len());
    for t in transfers {
        assert!(t.at >= consumed, "transfers out of buffer order");
        let rest = std::mem::take(&mut buf);
        let (_, rest) = rest.split_at_mut(t.at - consumed);
        let (piece, rest) = rest.split_at_mut(t.len);
        out.push((t.device, piece));
        buf = rest;
        consumed = t.at + t.len;
    }
    out
}

/// The buffer the sync steps stage data in: allocated once, reused for every chunk.
#[derive(Debug)]
pub struct Scratch(AlignedBuf);

impl Default for Scratch {
    fn default() -> Self {
        Scratch(AlignedBuf::zeroed(CHUNK_BYTES as usize))
    }
}

/// Copies the mirror's contents of each run `(lba, nblocks)` to backward data
/// position `positions[i]`, then flushes.
pub fn copy_out(
    q: &mut BlockingQueue,
    layout: &Layout,
    runs: &[(u64, u64)],
    positions: &[u64],
    scratch: &mut Scratch,
) -> Result<()> {
    assert_eq!(runs.len(), positions.len());
    let bs = layout.geometry.bs();
    let items: Vec<(u64, u64, u64)> = runs
        .iter()
        .zip(positions)
        .map(|(&(lba, n), &pos)| (lba, n, pos))
        .collect();
    if q.copies_within() {
        let copies = items
            .iter()
            .map(|&(lba, n, pos)| (layout.mim_byte(lba), layout.backward_data_byte(pos), n * bs));
        q.copy_many(&join_copies(copies))?;
        q.flush()?;
        return Ok(());
    }
    for chunk in chunks(&items, |it| it.1, bs) {
        let mut at = 0usize;
        let placed: Vec<(u64, u64, usize, usize)> = chunk
            .iter()
            .map(|&(lba, n, pos)| {
                let len = (n * bs) as usize;
                at += len;
                (lba, pos, at - len, len)
            })
            .collect();
        let buf = &mut scratch.0[..at];
        let reads = join(placed.iter().map(|&(lba, _, at, len)| Transfer {
            device: layout.mim_byte(lba),
            at,
            len,
        }));
        q.read_many(&mut slices_mut(buf, &reads))?;
        let writes = join(placed.iter().map(|&(_, pos, at, len)| Transfer {
            device: layout.backward_data_byte(pos),
            at,
            len,
        }));
        let writes: Vec<(u64, &[u8])> = writes
            .iter()
            .map(|t| (t.device, &scratch.0[t.at..t.at + t.len]))
            .collect();
        q.write_many(&writes)?;
    }
    q.flush()?;
    Ok(())
}

/// Writes the net change into the mirror (reading forward data from the
/// rings), then flushes. Adjacent changes become one mirror write.
pub fn apply(
    q: &mut BlockingQueue,
    layout: &Layout,
    net: &NetChange,
    scratch: &mut Scratch,
) -> Result<()> {
    let bs = layout.geometry.bs();
    let max_run = max_run_blocks(layout);
    // Split long zero extents so every piece is one bounded request.
    let mut pieces: Vec<(u64, u64, ChangeSource)> = Vec::new();
    for c in net.changes() {
        let mut done = 0;
        while done < c.nblocks {
            let n = (c.nblocks - done).min(max_run);
            let src = match c.source {
                ChangeSource::Forward { ring, pos } => ChangeSource::Forward {
                    ring,
                    pos: pos + done,
                },
                ChangeSource::Zero => ChangeSource::Zero,
            };
            pieces.push((c.lba + done, n, src));
            done += n;
        }
    }
    if q.copies_within() {
        // Forward data goes device to device; only zeroes need the buffer.
        let copies = pieces.iter().filter_map(|&(lba, n, src)| match src {
            ChangeSource::Forward { ring, pos } => Some((
                layout.ring_data_byte(usize::from(ring), pos),
                layout.mim_byte(lba),
                n * bs,
            )),
            ChangeSource::Zero => None,
        });
        q.copy_many(&join_copies(copies))?;
        pieces.retain(|p| p.2 == ChangeSource::Zero);
    }
    for chunk in chunks(&pieces, |p| p.1, bs) {
        let mut at = 0usize;
        let placed: Vec<(u64, ChangeSource, usize, usize)> = chunk
            .iter()
            .map(|&(lba, n, src)| {
                let len = (n * bs) as usize;
                at += len;
                (lba, src, at - len, len)
            })
            .collect();
        for &(_, src, at, len) in &placed {
            if src == ChangeSource::Zero {
                scratch.0[at..at + len].fill(0);
            }
        }
        let reads = join(placed.iter().filter_map(|&(_, src, at, len)| match src {
            ChangeSource::Forward { ring, pos } => Some(Transfer {
                device: layout.ring_data_byte(usize::from(ring), pos),
                at,
                len,
            }),
            ChangeSource::Zero => None,
        }));
        q.read_many(&mut slices_mut(&mut scratch.0[..at], &reads))?;
        let writes = join(placed.iter().map(|&(lba, _, at, len)| Transfer {
            device: layout.mim_byte(lba),
            at,
            len,
        }));
        let writes: Vec<(u64, &[u8])> = writes
            .iter()
            .map(|t| (t.device, &scratch.0[t.at..t.at + t.len]))
            .collect();
        q.write_many(&writes)?;
    }
    q.flush()?;
    Ok(())
}

/// The tails of a ring once every record at or below `through` lives in the
/// mirror. `records` are the ring's live records in seq order.
pub fn tails_after<'a>(
    records: impl Iterator<Item = &'a IndexedRecord>,
    current: RingTails,
    through: u64,
) -> RingTails {
    let mut tails = current;
    let mut last_desc_done: Option<u64> = None;
    let mut first_desc_live: Option<u64> = None;
    for r in records {
        if r.record.seq <= through {
            last_desc_done = Some(r.desc_pos);
            if let RecordBody::Write {
                data_pos, nblocks, ..
            } = r.record.body
            {
                tails.data = tails.data.max(data_pos + u64::from(nblocks));
            }
        } else {
            first_desc_live = Some(r.desc_pos);
            break;
        }
    }
    // A block holding both done and live records stays until its live ones are done.
    let desc = match (first_desc_live, last_desc_done) {
        (Some(live), _) => live,
        (None, Some(done)) => done + 1,
        (None, None) => current.desc,
    };
    tails.desc = tails.desc.max(desc);
    tails
}

/// Writes checkpoints A/B: each write goes to the slot not holding the newest copy.
#[derive(Debug)]
pub struct CheckpointWriter {
    pub generation: u64,
}

impl CheckpointWriter {
    /// Stamps the next generation into `ck`, writes it and flushes.
    pub fn write(
        &mut self,
        q: &mut BlockingQueue,
        layout: &Layout,
        ck: &mut Checkpoint,
    ) -> Result<()> {
        self.generation += 1;
        ck.generation = self.generation;
        let mut buf = AlignedBuf::zeroed(SLOT_BYTES as usize);
        ck.encode(&mut buf);
        q.write(
            layout.checkpoint[Checkpoint::slot_for(self.generation)],
            &buf,
        )?;
        q.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, desc_pos: u64, data_pos: u64) -> IndexedRecord {
        IndexedRecord {
            record: ForwardRecord {
                seq,
                time_ns: 0,
                body: RecordBody::Write {
                    lba: 0,
                    nblocks: 2,
                    data_pos,
                    data_crc: 0,
                },
            },
            desc_pos,
        }
    }

    #[test]
    fn tails_keep_blocks_with_live_records() {
        let recs = [
            rec(1, 10, 100),
            rec(2, 10, 102),
            rec(3, 11, 104),
            rec(4, 11, 106),
        ];
        let cur = RingTails {
            desc: 10,
            data: 100,
        };
        assert_eq!(
            tails_after(recs.iter(), cur, 2),
            RingTails {
                desc: 11,
                data: 104
            }
        );
        assert_eq!(
            tails_after(recs.iter(), cur, 3),
            RingTails {
                desc: 11,
                data: 106
            },
            "block 11 still holds seq 4"
        );
        assert_eq!(
            tails_after(recs.iter(), cur, 4),
            RingTails {
                desc: 12,
                data: 108
            }
        );
        assert_eq!(tails_after(recs.iter(), cur, 0), cur);
    }

    #[test]
    fn transfers_join_only_when_both_sides_are_contiguous() {
        let t = |device, at, len| Transfer { device, at, len };
        let joined = join(
            [
                t(100, 0, 10),
                t(110, 10, 5),
                t(200, 15, 5),
                t(205, 30, 5),
                t(210, 35, 5),
            ]
            .into_iter(),
        );
        assert_eq!(joined, vec![t(100, 0, 15), t(200, 15, 5), t(205, 30, 10)]);
        let mut buf = vec![0u8; 40];
        let slices = slices_mut(&mut buf, &joined);
        assert_eq!(
            slices
                .iter()
                .map(|(d, s)| (*d, s.len()))
                .collect::<Vec<_>>(),
            vec![(100, 15), (200, 5), (205, 10)]
        );
    }

    #[test]
    fn copies_join_when_both_sides_are_contiguous_and_stay_bounded() {
        let joined = join_copies(
            [
                (0, 1000, 4096),
                (4096, 5096, 4096),
                (8192, 20_000, 4096),
                (12_288, 24_096, CHUNK_BYTES),
            ]
            .into_iter(),
        );
        assert_eq!(
            joined,
            vec![
                (0, 1000, 8192),
                (8192, 20_000, 4096),
                (12_288, 24_096, CHUNK_BYTES as u32)
            ],
            "the last one would make a copy longer than a chunk"
        );
    }

    #[test]
    fn chunking_bounds_bytes() {
        let items: Vec<u64> = vec![1000, 1000, 2048, 10];
        let c = chunks(&items, |n| *n, 4096);
        assert_eq!(c, vec![vec![1000, 1000], vec![2048], vec![10]]);
    }
}
