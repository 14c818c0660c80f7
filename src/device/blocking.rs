//! Synchronous device access for tools, recovery and tests: one queue driven to
//! completion inside each call.
//!
//! Invariant: every call returns only after every request it submitted has
//! completed (also when it unwinds), so the borrowed slices it hands to the
//! queue outlive the requests; that is what makes these safe functions. Up to
//! `depth` requests are in flight at once; the first error in request order is
//! returned after all of them complete.

use super::{Device, DeviceError, DeviceInfo, DeviceQueue, IoCompletion, IoKind, IoRequest};

/// A device queue used synchronously.
pub struct BlockingQueue {
    queue: Box<dyn DeviceQueue>,
    info: DeviceInfo,
    completions: Vec<IoCompletion>,
}

impl std::fmt::Debug for BlockingQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockingQueue({:?})", self.info)
    }
}

impl BlockingQueue {
    /// A blocking queue on `device` keeping up to `depth` requests in flight.
    pub fn new(device: &dyn Device, depth: u32) -> Result<Self, DeviceError> {
        let queue = device.queue(depth)?;
        Ok(BlockingQueue {
            queue,
            info: device.info(),
            completions: Vec::with_capacity(depth as usize),
        })
    }

    /// The device's size and alignment.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// Reads device bytes at `offset` into `buf` (aligned as the device requires).
    pub fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.read_many(&mut [(offset, buf)])
    }

    /// Writes `buf` to the device at `offset` (aligned as the device requires).
    pub fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.write_many(&[(offset, buf)])
    }

    /// Whether [`BlockingQueue::copy_many`] copies inside the device.
    pub fn copies_within(&self) -> bool {
        self.queue.copies_within()
    }

    /// Copies each `(src, dst, len)` within the device (see
    /// [`DeviceQueue::copy_within`]); only on a queue that
    /// [`copies_within`](BlockingQueue::copies_within).
    pub fn copy_many(&mut self, copies: &[(u64, u64, u32)]) -> Result<(), DeviceError> {
        assert_eq!(
            self.queue.in_flight(),
            0,
            "a blocking queue is idle between calls"
        );
        for &(src, dst, len) in copies {
            self.queue.copy_within(src, dst, len)?;
        }
        Ok(())
    }

    /// Makes every write completed so far durable.
    pub fn flush(&mut self) -> Result<(), DeviceError> {
        // SAFETY: a flush carries no buffer.
        unsafe { self.run(&mut [IoRequest::flush(0)]) }
    }

    /// Performs all `reads` with up to `depth` in flight.
    pub fn read_many(&mut self, reads: &mut [(u64, &mut [u8])]) -> Result<(), DeviceError> {
        let mut requests = Vec::with_capacity(reads.len());
        for (offset, buf) in reads.iter_mut() {
            requests.push(request(IoKind::Read, *offset, buf.as_mut_ptr(), buf.len())?);
        }
        // SAFETY: every pointer comes from a slice in `reads`, exclusively
        // borrowed for this call, which `run` outlasts none of.
        unsafe { self.run(&mut requests) }
    }

    /// Performs all `writes` with up to `depth` in flight.
    pub fn write_many(&mut self, writes: &[(u64, &[u8])]) -> Result<(), DeviceError> {
        let mut requests = Vec::with_capacity(writes.len());
        for (offset, buf) in writes {
            // A queue only reads through the pointer of a write request.
            let ptr = buf.as_ptr().cast_mut();
            requests.push(request(IoKind::Write, *offset, ptr, buf.len())?);
        }
        // SAFETY: every pointer comes from a slice in `writes`, borrowed for
        // this call, and write requests only read through it.
        unsafe { self.run(&mut requests) }
    }

    /// Submits `requests` (tags are overwritten with their index), keeps the
    /// queue full, and returns after all completed.
    ///
    /// # Safety
    /// Each request's buffer is valid as [`DeviceQueue::submit`] requires for the
    /// duration of this call.
    unsafe fn run(&mut self, requests: &mut [IoRequest]) -> Result<(), DeviceError> {
        let mut first_error: Option<(u64, DeviceError)> = None;
        let completions = &mut self.completions;
        let queue = DrainOnDrop(self.queue.as_mut());
        assert_eq!(
            queue.0.in_flight(),
            0,
            "a blocking queue starts every call idle"
        );
        let mut next = 0;
        while next < requests.len() || queue.0.in_flight() > 0 {
            while next < requests.len() {
                let mut request = requests[next];
                request.tag = next as u64;
                // SAFETY: forwarded from this function's contract; `queue`
                // waits for the completion before the call returns.
                match unsafe { queue.0.submit(request) } {
                    Ok(()) => next += 1,
                    Err(_full) => {
                        assert!(
                            queue.0.in_flight() > 0,
                            "a queue with depth >= 1 refused an idle submit"
                        );
                        break;
                    }
                }
            }
            completions.clear();
            queue.0.wait(completions);
            for completion in completions.drain(..) {
                if let Err(error) = completion.result {
                    if first_error
                        .as_ref()
                        .is_none_or(|(tag, _)| completion.tag < *tag)
                    {
                        first_error = Some((completion.tag, error));
                    }
                }
            }
        }
        match first_error {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }
}

/// Builds a read or write request, refusing buffers longer than a request can carry.
fn request(kind: IoKind, offset: u64, ptr: *mut u8, len: usize) -> Result<IoRequest, DeviceError> {
    let len = u32::try_from(len).map_err(|_| {
        DeviceError::Invalid(format!(
            "{len}-byte buffer at offset {offset} exceeds one request (4 GiB)"
        ))
    })?;
    Ok(IoRequest {
        kind,
        offset,
        ptr,
        len,
        tag: 0,
    })
}

/// Waits out every in-flight request when dropped, so an unwinding caller
/// cannot free a buffer the device still uses.
struct DrainOnDrop<'q>(&'q mut dyn DeviceQueue);

impl Drop for DrainOnDrop<'_> {
    fn drop(&mut self) {
        let mut scratch = Vec::new();
        while self.0.in_flight() > 0 {
            scratch.clear();
            self.0.wait(&mut scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::ram::RamDevice;
    use crate::device::AlignedBuf;

    #[test]
    fn many_requests_through_a_shallow_queue() {
        let device = RamDevice::new(1 << 20, 512).expect("ram device");
        let mut queue = BlockingQueue::new(&*device, 2).expect("queue");
        let bufs: Vec<AlignedBuf> = (0..9u8)
            .map(|i| AlignedBuf::from_slice(&[i + 1; 1024]))
            .collect();
        let writes: Vec<(u64, &[u8])> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u64 * 4096, &b[..]))
            .collect();
        queue.write_many(&writes).expect("write_many");
        queue.flush().expect("flush");
        let mut outs: Vec<AlignedBuf> = (0..9).map(|_| AlignedBuf::zeroed(1024)).collect();
        let mut reads: Vec<(u64, &mut [u8])> = outs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| (i as u64 * 4096, &mut b[..]))
            .collect();
        queue.read_many(&mut reads).expect("read_many");
        for (i, out) in outs.iter().enumerate() {
            assert!(out.iter().all(|&b| b == i as u8 + 1), "buffer {i}");
        }
    }

    #[test]
    fn first_error_in_request_order_after_all_complete() {
        let device = RamDevice::new(1 << 20, 512).expect("ram device");
        let mut queue = BlockingQueue::new(&*device, 3).expect("queue");
        let good = AlignedBuf::from_slice(&[9u8; 512]);
        let writes: [(u64, &[u8]); 5] = [
            (0, &good),
            (1 << 20, &good),
            (512, &good),
            (7, &good),
            (1024, &good),
        ];
        let error = queue
            .write_many(&writes)
            .expect_err("bad requests in the batch");
        assert!(matches!(error, DeviceError::OutOfRange { offset, .. } if offset == 1 << 20));
        drop(queue);
        assert_eq!(
            device.read_bytes(0, 1536),
            vec![9u8; 1536],
            "good writes still ran"
        );
    }

    #[test]
    fn buffers_beyond_one_request_are_refused() {
        // Checked on the request builder, without allocating 4 GiB.
        let huge = request(IoKind::Read, 0, std::ptr::null_mut(), u32::MAX as usize + 1);
        assert!(matches!(huge, Err(DeviceError::Invalid(_))));
    }
}
