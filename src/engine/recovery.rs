//! Opening a volume: validate the superblock and checkpoint, scan the backward
//! journal for committed generations and every forward ring for durable
//! records, and finish a sync that a crash interrupted.
//!
//! Invariant 6 (DESIGN.md): after a crash at any instant no acknowledged write
//! is lost (each ring is scanned from its checkpointed tail to the first block
//! that does not check out; acknowledged records are never behind such a
//! block), and every point listed before the crash is either still exact or
//! reported lost (generations the checkpoint promises but the scan cannot
//! find, and every older one, are dropped and reported).

use crate::device::blocking::BlockingQueue;
use crate::device::{AlignedBuf, Device};
use crate::engine::backward::index::{Generation, MirrorPoint};
use crate::engine::backward::space::BackwardSpace;
use crate::engine::circular::Circular;
use crate::engine::config::{self, ProgressHook};
use crate::engine::error::{EngineError, Result};
use crate::engine::events::RecoveryReport;
use crate::engine::forward::index::IndexedRecord;
use crate::engine::geometry::{Layout, SLOT_BYTES};
use crate::engine::mirror::{self, CheckpointWriter};
use crate::engine::ondisk::checkpoint::{Checkpoint, RingTails};
use crate::engine::ondisk::forward_block::{
    self, BlockIdentity, BlockRejection, ForwardRecord, RecordBody,
};
use crate::engine::ondisk::generation::{self, HeadBlock};
use crate::engine::ondisk::superblock::Superblock;

/// How far past the end of a ring a block written before the crash can sit:
/// a ring has at most `MAX_BATCHES` batches (one block each) in flight.
const IN_FLIGHT_BLOCKS: u64 = crate::engine::forward::writer::MAX_BATCHES as u64 + 1;

/// Seqs and logical positions a sane volume never reaches (2^62 writes at a
/// billion per second is 146 years); anything above is damage, and keeping
/// well below u64::MAX keeps all position arithmetic free of overflow.
const SANE: u64 = 1 << 62;

/// One forward ring as found on disk.
#[derive(Debug, Default)]
pub(crate) struct RingScan {
    /// Records newer than the mirror, in seq order.
    pub records: Vec<IndexedRecord>,
    pub desc_head: u64,
    pub data_head: u64,
    pub last_time_ns: u64,
}

/// Everything `open` needs to build the volume's state.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub superblock: Superblock,
    pub layout: Layout,
    pub checkpoint: Checkpoint,
    pub checkpoints: CheckpointWriter,
    pub generations: Vec<Generation>,
    pub space: BackwardSpace,
    pub rings: Vec<RingScan>,
    pub mirror: MirrorPoint,
    pub next_seq: u64,
    pub report: RecoveryReport,
    /// Set when the volume must not take writes (damage recovery could not repair).
    pub failure: Option<String>,
}

fn read_slot(q: &mut BlockingQueue, offset: u64) -> Result<AlignedBuf> {
    let mut buf = AlignedBuf::zeroed(SLOT_BYTES as usize);
    q.read(offset, &mut buf)?;
    Ok(buf)
}

/// Reads and validates the superblock and the layout it implies.
pub(crate) fn read_superblock(
    device: &dyn Device,
    q: &mut BlockingQueue,
) -> Result<(Superblock, Layout)> {
    let info = device.info();
    if info.size_bytes < 4 * SLOT_BYTES {
        return Err(EngineError::DeviceTooSmall {
            needed: 4 * SLOT_BYTES,
            available: info.size_bytes,
        });
    }
    let a = read_slot(q, 0)?;
    let b = read_slot(q, SLOT_BYTES)?;
    let sb = Superblock::choose(&a, &b)?;
    let layout = Layout::new(&sb.geometry)?;
    layout.check_device(&info)?;
    Ok((sb, layout))
}

/// Refuses a checkpoint whose numbers cannot come from a sane volume.
fn check_checkpoint(ck: &Checkpoint, layout: &Layout) -> Result<()> {
    let bad = |what: &str| Err(EngineError::corrupt("checkpoint", what.to_string()));
    if ck.rings.len() != layout.rings.len() {
        return bad(&format!(
            "{} rings recorded, the geometry has {}",
            ck.rings.len(),
            layout.rings.len()
        ));
    }
    let numbers = [
        ck.mim_seq,
        ck.seq_floor,
        ck.backward_desc_tail,
        ck.backward_data_tail,
        ck.oldest_generation,
        ck.next_generation,
    ];
    if numbers.iter().any(|&n| n > SANE) || ck.rings.iter().any(|t| t.desc > SANE || t.data > SANE)
    {
        return bad("positions or seqs beyond any sane volume");
    }
    if ck.oldest_generation > ck.next_generation || ck.seq_floor <= ck.mim_seq {
        return bad("generation range or seq floor inconsistent");
    }
    // Every retained generation holds at least one backward descriptor block,
    // so a checkpoint never promises more of them than the area holds.
    let retained = ck.next_generation - ck.oldest_generation;
    if retained > layout.geometry.backward_desc_blocks {
        return bad(&format!(
            "generations {}..{} do not fit a backward journal of {} descriptor blocks",
            ck.oldest_generation, ck.next_generation, layout.geometry.backward_desc_blocks
        ));
    }
    Ok(())
}

/// Scans the backward journal from the checkpointed tail.
fn scan_backward(
    q: &mut BlockingQueue,
    layout: &Layout,
    uuid: &[u8; 16],
    ck: &Checkpoint,
    report: &mut RecoveryReport,
    progress: Option<&ProgressHook>,
) -> Result<(Vec<Generation>, BackwardSpace)> {
    let g = &layout.geometry;
    let bs = g.bs() as usize;
    let cap = g.backward_desc_blocks;
    let data_cap = g.backward_data_blocks;
    let tail = ck.backward_desc_tail;
    let mut pos = tail;
    let mut end = tail;
    let mut expected = ck.oldest_generation;
    let mut gens: Vec<Generation> = Vec::new();
    let mut block = AlignedBuf::zeroed(bs);
    let step = |pos: u64| {
        config::report(
            progress,
            "scanning the backward journal",
            (pos - tail) * bs as u64,
            cap * bs as u64,
        )
    };
    while pos - tail < cap {
        step(pos);
        q.read(layout.backward_desc_byte(pos), &mut block)?;
        let blocks = match generation::peek(&block, pos, uuid, cap) {
            HeadBlock::End => break,
            HeadBlock::Wrap => {
                // The rest of the lap is skipped; a skip past the area's
                // window (e.g. a second WRAP in a row) is not ours.
                match pos
                    .checked_add(cap - pos % cap)
                    .filter(|next| next - ck.backward_desc_tail <= cap)
                {
                    Some(next) => pos = next,
                    None => break,
                }
                continue;
            }
            HeadBlock::Record { blocks } => blocks,
        };
        if pos % cap + blocks > cap || pos + blocks - tail > cap {
            break;
        }
        let mut whole = AlignedBuf::zeroed(blocks as usize * bs);
        q.read(layout.backward_desc_byte(pos), &mut whole)?;
        let Ok(record) = generation::decode(&whole, pos, uuid, bs) else {
            break;
        };
        let chained = gens.last().is_none_or(|prev| {
            record.point_seq == prev.record.target_seq && record.data_start >= prev.record.data_end
        });
        let sane = record.target_seq <= SANE
            && record.point_seq < record.target_seq
            && record.data_end <= SANE
            && record.data_start >= ck.backward_data_tail
            && record.data_end - ck.backward_data_tail <= data_cap;
        if record.id != expected || !chained || !sane {
            break;
        }
        let extents_ok = record.extents.iter().all(|x| {
            let n = u64::from(x.nblocks);
            x.lba.checked_add(n).is_some_and(|e| e <= g.volume_blocks)
                && x.data_pos >= record.data_start
                && x.data_pos
                    .checked_add(n)
                    .is_some_and(|e| e <= record.data_end)
                && x.data_pos % data_cap + n <= data_cap
        }) && record.extents.windows(2).all(|w| {
            // A sync saves each changed block once, in lba order.
            w[0].lba + u64::from(w[0].nblocks) <= w[1].lba
        });
        if !extents_ok {
            break;
        }
        gens.push(Generation {
            record,
            desc_pos: pos,
            desc_blocks: blocks,
        });
        expected += 1;
        pos += blocks;
        end = pos;
    }
    let data_head = gens
        .last()
        .map_or(ck.backward_data_tail, |g| g.record.data_end);
    let mut space = BackwardSpace {
        desc: Circular::new(cap, end, tail),
        data: Circular::new(data_cap, data_head, ck.backward_data_tail),
    };
    if expected < ck.next_generation {
        // Generations the checkpoint promises are missing: the undo chain is
        // broken, so no point older than the mirror can be rebuilt.
        report.lost_generations = (ck.oldest_generation..ck.next_generation).collect();
        tracing::error!(
            missing_from = expected,
            promised_until = ck.next_generation,
            "backward journal damaged: every snapshot before the mirror is lost"
        );
        gens.clear();
        space = BackwardSpace {
            desc: Circular::new(cap, end, end),
            data: Circular::new(data_cap, data_head, data_head),
        };
    }
    Ok((gens, space))
}

/// What the ring scans add up across rings.
#[derive(Debug)]
struct Tally<'a> {
    report: &'a mut RecoveryReport,
    /// Highest seq seen anywhere on disk (never handed out again).
    max_seq: u64,
}

/// True when a record's extent and (for a write newer than the mirror, at
/// `mim_seq`) its data position are in bounds. A record the mirror already
/// holds may share its descriptor block with newer ones when a sync step
/// ended inside a batch; its data lies behind the data tail, free for reuse.
fn record_in_bounds(
    r: &ForwardRecord,
    layout: &Layout,
    ring: usize,
    data_tail: u64,
    mim_seq: u64,
) -> bool {
    let rl = layout.rings[ring];
    let extent_ok = r.extent().is_none_or(|(lba, n)| {
        lba.checked_add(u64::from(n))
            .is_some_and(|e| e <= layout.geometry.volume_blocks)
    });
    let data_ok = match r.body {
        RecordBody::Write {
            data_pos, nblocks, ..
        } => {
            let n = u64::from(nblocks);
            let placed = rl.data_blocks > 0
                && data_pos <= SANE
                && data_pos % rl.data_blocks + n <= rl.data_blocks;
            if r.seq <= mim_seq {
                // Behind the tail, within the lap before it.
                placed && data_pos + n <= data_tail && data_tail - data_pos <= rl.data_blocks
            } else {
                placed && data_pos >= data_tail && data_pos + n - data_tail <= rl.data_blocks
            }
        }
        _ => true,
    };
    r.seq <= SANE && extent_ok && data_ok
}

/// Scans forward ring `ring` from its checkpointed tails.
#[allow(clippy::too_many_arguments)]
fn scan_ring(
    q: &mut BlockingQueue,
    layout: &Layout,
    uuid: &[u8; 16],
    ring: usize,
    tails: RingTails,
    mim_seq: u64,
    tally: &mut Tally<'_>,
    progress: Option<&ProgressHook>,
) -> Result<RingScan> {
    let rl = layout.rings[ring];
    let bs = layout.geometry.bs() as usize;
    let mut scan = RingScan {
        desc_head: tails.desc,
        data_head: tails.data,
        ..Default::default()
    };
    let mut block = AlignedBuf::zeroed(bs);
    let mut last_seq = 0u64;
    let mut pos = tails.desc;
    let id = |pos| BlockIdentity {
        ring: ring as u16,
        pos,
        uuid,
    };
    let what = format!("scanning forward ring {ring}");
    let total = rl.desc_blocks * bs as u64;
    while pos - tails.desc < rl.desc_blocks {
        config::report(progress, &what, (pos - tails.desc) * bs as u64, total);
        q.read(layout.ring_desc_byte(ring, pos), &mut block)?;
        let records = match forward_block::decode(&block, id(pos)) {
            Ok(r) => r,
            Err(BlockRejection::NotHere) => break,
            Err(BlockRejection::Damaged(why)) => {
                tracing::warn!(ring, pos, %why, "forward ring ends at a damaged block");
                tally.report.torn_rings.push(ring as u16);
                break;
            }
        };
        if records[0].seq <= last_seq {
            break; // an older lap's block that happens to validate: not a continuation
        }
        if !records
            .iter()
            .all(|r| record_in_bounds(r, layout, ring, tails.data, mim_seq))
        {
            tracing::warn!(
                ring,
                pos,
                "forward ring ends at a block with out-of-range records"
            );
            tally.report.torn_rings.push(ring as u16);
            break;
        }
        let newest_in_block = records.last().map_or(0, |r| r.seq);
        if pos == tails.desc && newest_in_block <= mim_seq {
            // The checkpointed tail is always a block with a record newer than
            // the mirror (or the head). A block there holding only older records
            // is stale: written by an earlier run and never made durable then.
            break;
        }
        // Every write newer than the mirror must have its data intact.
        let mut intact = true;
        let mut data_end = scan.data_head;
        for r in &records {
            if let RecordBody::Write {
                data_pos,
                nblocks,
                data_crc,
                ..
            } = r.body
            {
                let n = u64::from(nblocks);
                data_end = data_end.max(data_pos + n);
                if r.seq <= mim_seq {
                    continue; // already in the mirror; its space may be reused
                }
                let mut data = AlignedBuf::zeroed(n as usize * bs);
                q.read(layout.ring_data_byte(ring, data_pos), &mut data)?;
                if crate::checksum::crc32c(&data) != data_crc {
                    intact = false;
                    break;
                }
            }
        }
        if !intact {
            // Its seqs were handed out once: never hand them out again.
            tally.max_seq = tally.max_seq.max(newest_in_block);
            tracing::warn!(ring, pos, "forward ring ends at a batch whose data is torn");
            tally.report.torn_rings.push(ring as u16);
            break;
        }
        last_seq = newest_in_block;
        tally.max_seq = tally.max_seq.max(last_seq);
        scan.data_head = data_end;
        for r in records {
            scan.last_time_ns = scan.last_time_ns.max(r.time_ns);
            if r.seq > mim_seq {
                scan.records.push(IndexedRecord {
                    record: r,
                    desc_pos: pos,
                });
            }
        }
        pos += 1;
    }
    scan.desc_head = pos;
    tracing::debug!(
        ring,
        ?tails,
        mim_seq,
        stopped_at = pos,
        records = scan.records.len(),
        newest = scan.records.last().map(|r| r.record.seq),
        "forward ring scanned"
    );
    // Anything valid beyond the end is dropped: count it and never reuse its seqs.
    for ahead in pos..pos + IN_FLIGHT_BLOCKS {
        if ahead - tails.desc >= rl.desc_blocks {
            break;
        }
        q.read(layout.ring_desc_byte(ring, ahead), &mut block)?;
        if let Ok(records) = forward_block::decode(&block, id(ahead)) {
            let newest = records.last().map_or(0, |r| r.seq);
            if newest > last_seq && newest <= SANE {
                tally.report.dropped_records += records.len() as u64;
                tally.max_seq = tally.max_seq.max(newest);
            }
        }
    }
    tally.report.forward_records += scan.records.len() as u64;
    Ok(scan)
}

/// Makes the end of a ring permanent: zeroes the blocks from its head across
/// the window where batches in flight at the crash may sit, so a block written
/// before the crash can never be taken for a continuation after a later one.
fn erase_beyond(
    q: &mut BlockingQueue,
    layout: &Layout,
    ring: usize,
    head: u64,
    tail: u64,
) -> Result<()> {
    let rl = layout.rings[ring];
    let end = (head + IN_FLIGHT_BLOCKS).min(tail + rl.desc_blocks);
    let bs = layout.geometry.bs();
    let zero = AlignedBuf::zeroed(bs as usize);
    let writes: Vec<(u64, &[u8])> = (head..end)
        .map(|pos| (layout.ring_desc_byte(ring, pos), &zero[..]))
        .collect();
    q.write_many(&writes)?;
    Ok(())
}

/// The mirror point a forward record stands for.
fn mirror_point(end: &ForwardRecord, previous: &MirrorPoint) -> MirrorPoint {
    let (marker, label) = match &end.body {
        RecordBody::Marker { kind, label } => (Some(*kind), label.as_deref().map(str::to_string)),
        _ => (None, None),
    };
    MirrorPoint {
        seq: end.seq,
        time_ns: end.time_ns.max(previous.time_ns),
        marker,
        label,
    }
}

/// Reads everything back and completes an interrupted sync.
pub(crate) fn recover(
    device: &dyn Device,
    q: &mut BlockingQueue,
    progress: Option<&ProgressHook>,
) -> Result<Recovered> {
    let (superblock, layout) = read_superblock(device, q)?;
    let uuid = superblock.uuid;
    let a = read_slot(q, layout.checkpoint[0])?;
    let b = read_slot(q, layout.checkpoint[1])?;
    let mut ck = Checkpoint::choose(&a, &b, &uuid)?;
    check_checkpoint(&ck, &layout)?;
    let mut report = RecoveryReport::default();
    let (generations, space) = scan_backward(q, &layout, &uuid, &ck, &mut report, progress)?;
    let backward_bytes = layout.geometry.backward_desc_blocks * layout.geometry.bs();
    config::report(
        progress,
        "scanning the backward journal",
        backward_bytes,
        backward_bytes,
    );
    report.generations = generations.len() as u64;
    let mut rings = Vec::with_capacity(layout.rings.len());
    let mut tally = Tally {
        report: &mut report,
        max_seq: ck.mim_seq,
    };
    for (ring, tails) in ck.rings.clone().into_iter().enumerate() {
        rings.push(scan_ring(
            q, &layout, &uuid, ring, tails, ck.mim_seq, &mut tally, progress,
        )?);
        let ring_bytes = layout.rings[ring].desc_blocks * layout.geometry.bs();
        config::report(
            progress,
            &format!("scanning forward ring {ring}"),
            ring_bytes,
            ring_bytes,
        );
    }
    let max_seq = tally.max_seq;
    for (ring, scan) in rings.iter().enumerate() {
        erase_beyond(q, &layout, ring, scan.desc_head, ck.rings[ring].desc)?;
    }
    q.flush()?;
    // Seqs are unique across rings; duplicates mean damage (or a forged image).
    let mut merged: Vec<(u16, &IndexedRecord)> = rings
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.records.iter().map(move |x| (i as u16, x)))
        .collect();
    merged.sort_by_key(|(_, r)| r.record.seq);
    if let Some(w) = merged
        .windows(2)
        .find(|w| w[0].1.record.seq == w[1].1.record.seq)
    {
        return Err(EngineError::corrupt(
            "forward journal",
            format!(
                "seq {} appears in rings {} and {}",
                w[0].1.record.seq, w[0].0, w[1].0
            ),
        ));
    }
    let mut mirror = MirrorPoint {
        seq: ck.mim_seq,
        time_ns: ck.mim_time_ns,
        marker: ck.mim_marker,
        label: ck.mim_label.clone(),
    };
    let mut checkpoints = CheckpointWriter {
        generation: ck.generation,
    };
    let mut failure = None;
    // Which sync to finish: the one a committed generation started past the
    // checkpoint; or, when the generation chain is broken (device damage) and a
    // sync may have been rewriting the mirror, everything recovered — the live
    // volume stays exact and the points before it are reported lost.
    let redo: Option<(u64, Option<u64>)> = match generations.last() {
        Some(last) if last.record.target_seq > ck.mim_seq => {
            Some((last.record.target_seq, Some(last.record.change_records)))
        }
        _ if !report.lost_generations.is_empty() => {
            merged.last().map(|(_, r)| (r.record.seq, None))
        }
        _ => None,
    };
    if let Some((target, expected_changes)) = redo {
        let upto: Vec<(u16, &IndexedRecord)> = merged
            .iter()
            .copied()
            .filter(|(_, r)| r.record.seq <= target)
            .collect();
        let (net, count) = mirror::net_change(upto.iter().map(|(ring, r)| (*ring, &r.record)));
        let end = upto
            .last()
            .filter(|(_, r)| r.record.seq == target)
            .map(|(_, r)| r.record.clone());
        match end {
            Some(end) if expected_changes.is_none_or(|c| c == count) => {
                mirror::apply(q, &layout, &net, &mut mirror::Scratch::default())?;
                let tails: Vec<RingTails> = rings
                    .iter()
                    .zip(&ck.rings)
                    .map(|(r, cur)| mirror::tails_after(r.records.iter(), *cur, target))
                    .collect();
                mirror = mirror_point(&end, &mirror);
                ck.mim_seq = mirror.seq;
                ck.mim_time_ns = mirror.time_ns;
                ck.mim_marker = mirror.marker;
                ck.mim_label = mirror.label.clone();
                ck.rings = tails;
                if let Some(last) = generations.last() {
                    ck.next_generation = ck.next_generation.max(last.record.id + 1);
                }
                if expected_changes.is_none() {
                    ck.backward_desc_tail = space.desc.tail;
                    ck.backward_data_tail = space.data.tail;
                    report.mirror_rebuilt_to = Some(target);
                } else {
                    report.completed_sync_to = Some(target);
                }
                ck.seq_floor = ck.seq_floor.max(max_seq + 1);
                checkpoints.write(q, &layout, &mut ck)?;
                drop(merged);
                for r in &mut rings {
                    r.records.retain(|x| x.record.seq > target);
                }
            }
            _ => {
                report.mirror_incomplete = true;
                failure = Some(format!("recovery cannot complete the sync to seq {target}: forward records are missing (device damage); the live volume may be inconsistent"));
            }
        }
    }
    report.mirror_seq = mirror.seq;
    report.newest_seq_per_ring = rings
        .iter()
        .map(|r| r.records.last().map_or(0, |x| x.record.seq))
        .collect();
    // The mirror's seq is at most `max_seq`.
    let next_seq = ck.seq_floor.max(max_seq + 1).max(mirror.seq + 1);
    Ok(Recovered {
        superblock,
        layout,
        checkpoint: ck,
        checkpoints,
        generations,
        space,
        rings,
        mirror,
        next_seq,
        report,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::ram::RamDevice;
    use crate::engine::{At, FormatOptions, Geometry, SyncPolicy, Volume, VolumeConfig};
    use std::sync::Arc;

    const BS: usize = 512;
    const SLOT: usize = SLOT_BYTES as usize;

    fn config() -> VolumeConfig {
        VolumeConfig {
            sync: SyncPolicy {
                fill_percent: 100,
                interval: None,
                marker_interval: None,
            },
            ..Default::default()
        }
    }

    /// A closed volume holding one synced write (so one generation) and one
    /// newer write still in ring 0.
    fn image() -> (Arc<RamDevice>, Layout) {
        let geometry = Geometry {
            block_size: BS as u32,
            volume_blocks: 64,
            rings: 1,
            ring_desc_blocks: 16,
            ring_data_blocks: 64,
            backward_desc_blocks: 16,
            backward_data_blocks: 128,
        };
        let layout = Layout::new(&geometry).unwrap();
        let ram = RamDevice::new(layout.end, BS as u32).unwrap();
        let device: Arc<dyn Device> = ram.clone();
        let volume =
            Volume::format(device, &geometry, &FormatOptions::default(), config()).unwrap();
        let mut w = volume.writer(0).unwrap();
        w.write(1, &[1u8; BS]).unwrap();
        volume.sync_now().unwrap();
        w.write(2, &[2u8; BS]).unwrap();
        drop(w);
        volume.close().unwrap();
        (ram, layout)
    }

    fn open(ram: &RamDevice) -> Result<(Volume, RecoveryReport)> {
        Volume::open(ram.snapshot(), config())
    }

    fn uuid(ram: &RamDevice) -> [u8; 16] {
        Superblock::decode(&ram.read_bytes(0, SLOT)).unwrap().uuid
    }

    /// Replaces both checkpoint copies with the newest one, edited.
    fn edit_checkpoint(ram: &RamDevice, layout: &Layout, edit: impl FnOnce(&mut Checkpoint)) {
        let a = ram.read_bytes(layout.checkpoint[0], SLOT);
        let b = ram.read_bytes(layout.checkpoint[1], SLOT);
        let mut ck = Checkpoint::choose(&a, &b, &uuid(ram)).unwrap();
        edit(&mut ck);
        let mut slot = vec![0u8; SLOT];
        ck.encode(&mut slot);
        ram.write_bytes(layout.checkpoint[0], &slot);
        ram.write_bytes(layout.checkpoint[1], &slot);
    }

    /// Rewrites the generation record at backward descriptor position `pos`, edited.
    fn edit_generation(
        ram: &RamDevice,
        layout: &Layout,
        pos: u64,
        edit: impl FnOnce(&mut generation::GenerationRecord),
    ) {
        let uuid = uuid(ram);
        let at = layout.backward_desc_byte(pos);
        let HeadBlock::Record { blocks } =
            generation::peek(&ram.read_bytes(at, BS), pos, &uuid, 16)
        else {
            panic!("no generation record at {pos}");
        };
        let whole = ram.read_bytes(at, blocks as usize * BS);
        let mut record = generation::decode(&whole, pos, &uuid, BS).unwrap();
        edit(&mut record);
        let mut out = vec![0u8; whole.len()];
        record.encode(&mut out, pos, &uuid, BS);
        ram.write_bytes(at, &out);
    }

    /// The newest forward block of `ring` that decodes, and its position.
    fn newest_forward_block(
        ram: &RamDevice,
        layout: &Layout,
        ring: usize,
    ) -> (u64, Vec<forward_block::ForwardRecord>) {
        let uuid = uuid(ram);
        (0..layout.rings[ring].desc_blocks)
            .filter_map(|pos| {
                let block = ram.read_bytes(layout.ring_desc_byte(ring, pos), BS);
                let id = BlockIdentity {
                    ring: ring as u16,
                    pos,
                    uuid: &uuid,
                };
                forward_block::decode(&block, id).ok().map(|r| (pos, r))
            })
            .max_by_key(|(_, r)| r[0].seq)
            .expect("ring holds a block")
    }

    /// Rewrites the forward block at `pos` of `ring` with `records`.
    fn write_forward_block(
        ram: &RamDevice,
        layout: &Layout,
        ring: usize,
        pos: u64,
        records: &[forward_block::ForwardRecord],
    ) {
        let uuid = uuid(ram);
        let id = BlockIdentity {
            ring: ring as u16,
            pos,
            uuid: &uuid,
        };
        let mut block = vec![0u8; BS];
        forward_block::encode(&mut block, id, records);
        ram.write_bytes(layout.ring_desc_byte(ring, pos), &block);
    }

    fn corrupt_checkpoint(r: Result<(Volume, RecoveryReport)>) -> bool {
        matches!(
            r,
            Err(EngineError::Corrupt {
                region: "checkpoint",
                ..
            })
        )
    }

    #[test]
    fn the_test_image_opens_and_reads() {
        let (ram, _) = image();
        let (volume, report) = open(&ram).unwrap();
        assert_eq!(report.generations, 1);
        assert_eq!(report.forward_records, 1);
        let (_, data) = volume.read(1, 2, &At::Now).unwrap();
        assert_eq!(data, [[1u8; BS], [2u8; BS]].concat());
        volume.close().unwrap();
    }

    /// Fuzz finding (open_image): a crc-valid checkpoint with a huge
    /// `next_generation` made recovery list every id up to it as lost, one
    /// allocation of 2^57 ids, when the backward journal turned out shorter.
    #[test]
    fn checkpoint_promising_more_generations_than_fit_is_corrupt() {
        let (ram, layout) = image();
        let cap = layout.geometry.backward_desc_blocks;
        let cases: [fn(&mut Checkpoint, u64); 3] = [
            |ck, _| ck.next_generation = 0x0400_0000_0000_0002,
            |ck, cap| ck.next_generation = ck.oldest_generation + cap + 1,
            |ck, _| ck.oldest_generation = ck.next_generation + 1,
        ];
        for edit in cases {
            let damaged = ram.snapshot();
            edit_checkpoint(&damaged, &layout, |ck| edit(ck, cap));
            assert!(corrupt_checkpoint(open(&damaged)));
        }
        // As many as fit is fine (the missing ones are reported lost).
        let damaged = ram.snapshot();
        edit_checkpoint(&damaged, &layout, |ck| {
            ck.next_generation = ck.oldest_generation + cap
        });
        let (volume, report) = open(&damaged).unwrap();
        assert_eq!(report.lost_generations.len() as u64, cap);
        volume.close().unwrap();
    }

    /// Fuzz finding (open_image): a generation whose point time is older than
    /// its predecessor's asserted in the backward index. Two rings can stamp
    /// neighbouring seqs out of clock order, so this is not even damage: the
    /// volume opens and resolves times.
    #[test]
    fn generation_time_older_than_its_predecessor_opens() {
        let (ram, layout) = image();
        let (volume, _) = Volume::open(ram.clone(), config()).unwrap();
        let mut w = volume.writer(0).unwrap();
        w.write(3, &[3u8; BS]).unwrap();
        volume.sync_now().unwrap();
        drop(w);
        volume.close().unwrap();
        let uuid = uuid(&ram);
        let second = (1..layout.geometry.backward_desc_blocks)
            .find(|&pos| {
                let block = ram.read_bytes(layout.backward_desc_byte(pos), BS);
                matches!(
                    generation::peek(&block, pos, &uuid, 16),
                    HeadBlock::Record { .. }
                )
            })
            .expect("a second generation");
        edit_generation(&ram, &layout, second, |r| r.point_time_ns = 1);
        let (volume, report) = open(&ram).unwrap();
        assert_eq!(report.generations, 2);
        // The only point stamped at or before t=1 is the second generation's:
        // the mirror after the first sync (block 1 written, block 2 not yet).
        let (point, data) = volume.read(1, 2, &At::Time(1)).unwrap();
        assert_eq!(point.time_ns, 1);
        assert_eq!(data, [[1u8; BS], [0u8; BS]].concat());
        volume.resolve(&At::Time(u64::MAX)).unwrap();
        volume.close().unwrap();
    }

    /// Fuzz finding (open_image): a crc-valid generation whose undo extents
    /// overlap (the same block saved twice) asserted in the versioned map.
    /// The record is not trusted and the generation is reported lost.
    #[test]
    fn overlapping_undo_extents_end_the_backward_scan() {
        let (ram, layout) = image();
        edit_generation(&ram, &layout, 0, |r| {
            let twin = r.extents[0];
            r.extents.push(twin);
        });
        let (volume, report) = open(&ram).unwrap();
        assert_eq!(report.generations, 0);
        assert_eq!(report.lost_generations, vec![1]);
        volume.close().unwrap();
    }

    /// Fuzz finding (open_image): an undo extent whose `data_pos + nblocks`
    /// overflows (in a crc-valid generation record) panicked the backward
    /// scan; the record is not trusted and the generation is reported lost.
    #[test]
    fn undo_extent_past_u64_max_ends_the_backward_scan() {
        let (ram, layout) = image();
        edit_generation(&ram, &layout, 0, |r| r.extents[0].data_pos = u64::MAX);
        let (volume, report) = open(&ram).unwrap();
        assert_eq!(report.generations, 0);
        assert_eq!(report.lost_generations, vec![1]);
        volume.close().unwrap();
    }

    /// Fuzz finding (open_image): a crc-valid forward record with seq
    /// u64::MAX overflowed `max_seq + 1` when recovery computed the next seq
    /// to hand out. Such a record is not trusted: the ring ends before it
    /// (reported torn), and a checkpoint holding such a seq is refused.
    #[test]
    fn seq_u64_max_on_disk_is_not_trusted() {
        let (ram, layout) = image();
        let damaged = ram.snapshot();
        let (pos, mut records) = newest_forward_block(&damaged, &layout, 0);
        records.last_mut().unwrap().seq = u64::MAX;
        write_forward_block(&damaged, &layout, 0, pos, &records);
        let (volume, report) = open(&damaged).unwrap();
        assert_eq!(report.forward_records, 0);
        assert_eq!(report.torn_rings, vec![0]);
        assert!(volume.points().iter().all(|p| p.seq < u64::MAX));
        volume.close().unwrap();
        let damaged = ram.snapshot();
        edit_checkpoint(&damaged, &layout, |ck| ck.mim_seq = u64::MAX);
        assert!(corrupt_checkpoint(open(&damaged)));
    }

    /// Found while fuzzing (a reproducer, not yet the fuzzer): WRAP blocks
    /// at the checkpointed tail and again at the next lap's start made the
    /// scan skip more than the whole area, and `Circular::new` asserted
    /// (tail 5, head 32, capacity 16), in release builds too.
    #[test]
    fn wrap_after_wrap_ends_the_backward_scan() {
        let (ram, layout) = image();
        let cap = layout.geometry.backward_desc_blocks;
        edit_checkpoint(&ram, &layout, |ck| {
            ck.backward_desc_tail = 5;
            ck.oldest_generation = ck.next_generation;
        });
        let uuid = uuid(&ram);
        for pos in [5, cap] {
            let mut wrap = vec![0u8; BS];
            generation::encode_wrap(&mut wrap, pos, &uuid);
            ram.write_bytes(layout.backward_desc_byte(pos), &wrap);
        }
        let (volume, report) = open(&ram).unwrap();
        assert_eq!(report.generations, 0);
        assert!(report.lost_generations.is_empty());
        volume.close().unwrap();
    }

    /// Found while fuzzing (a reproducer, not yet the fuzzer): a checkpoint
    /// whose ring tail was u64::MAX - 10 overflowed the ring scan's
    /// look-ahead bound `pos + LOOKAHEAD_BLOCKS` (positions near u64::MAX
    /// overflow the scans in several places).
    #[test]
    fn checkpoint_position_near_u64_max_is_corrupt() {
        let (ram, layout) = image();
        let edits: [fn(&mut Checkpoint); 4] = [
            |ck| ck.rings[0].desc = u64::MAX - 10,
            |ck| ck.rings[1].data = u64::MAX,
            |ck| ck.backward_desc_tail = u64::MAX - 1,
            |ck| ck.backward_data_tail = SANE + 1,
        ];
        for edit in edits {
            let damaged = ram.snapshot();
            edit_checkpoint(&damaged, &layout, edit);
            assert!(corrupt_checkpoint(open(&damaged)));
        }
    }

    /// Found while fuzzing (reproducers, not yet the fuzzer): forward records
    /// whose `data_pos` (in a crc-valid block) is near u64::MAX overflowed
    /// `data_pos + nblocks` in the ring scan, for a record newer than the
    /// mirror (the `fits` check) and for one already in it (the data head);
    /// and an older record whose data lay past the ring's window moved the
    /// data head past it, so claiming the ring's writer asserted in
    /// `Circular::new`. Such a block now ends the ring as torn.
    #[test]
    fn forward_data_position_outside_the_ring_ends_the_scan() {
        let (ram, layout) = image();
        // Newer than the mirror: the newest block of ring 0.
        let damaged = ram.snapshot();
        let (pos, mut records) = newest_forward_block(&damaged, &layout, 0);
        let RecordBody::Write { data_pos, .. } = &mut records[0].body else {
            panic!("the newest block holds a write");
        };
        *data_pos = u64::MAX;
        write_forward_block(&damaged, &layout, 0, pos, &records);
        let (volume, report) = open(&damaged).unwrap();
        assert_eq!(report.torn_rings, vec![0]);
        drop(volume.writer(0).unwrap());
        volume.close().unwrap();
        // Already in the mirror: the block before it, scanned from tail 0.
        for bad in [u64::MAX, 1000] {
            let damaged = ram.snapshot();
            edit_checkpoint(&damaged, &layout, |ck| ck.rings[0].desc = 0);
            let uuid = uuid(&damaged);
            let id = BlockIdentity {
                ring: 0,
                pos: 0,
                uuid: &uuid,
            };
            let block = damaged.read_bytes(layout.ring_desc_byte(0, 0), BS);
            let mut records = forward_block::decode(&block, id).unwrap();
            let RecordBody::Write { data_pos, .. } = &mut records[0].body else {
                panic!("the first block holds a write");
            };
            *data_pos = bad;
            write_forward_block(&damaged, &layout, 0, 0, &records);
            let (volume, report) = open(&damaged).unwrap();
            assert_eq!(report.torn_rings, vec![0], "data_pos {bad}");
            drop(volume.writer(0).unwrap());
            volume.close().unwrap();
        }
    }
}
