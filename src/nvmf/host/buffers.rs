//! Where the data of in-flight commands lives. The queue-pair core owns no
//! data buffers: it asks a [`DataBuffers`] for the buffer of a command slot
//! when it sends write data or lands read data, so data moves straight
//! between the socket and the caller's memory (a user slice, a pooled
//! `Vec`, later hugepage memory).
//!
//! Invariant: for a slot with a command in flight, `outgoing(slot)` (write)
//! or `incoming(slot)` (read) is the buffer that was registered for it
//! before submission, at least as long as the transfer; the core checks the
//! length and fails the queue rather than read or write out of bounds.

/// Command data by slot (see the module documentation).
pub trait DataBuffers {
    /// The data the command in `slot` sends to the controller.
    fn outgoing(&self, slot: usize) -> &[u8];
    /// The buffer the command in `slot` receives controller data into.
    fn incoming(&mut self, slot: usize) -> &mut [u8];
}

/// No command carries data.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoData;

impl DataBuffers for NoData {
    fn outgoing(&self, _slot: usize) -> &[u8] {
        &[]
    }
    fn incoming(&mut self, _slot: usize) -> &mut [u8] {
        &mut []
    }
}

/// The data of one command, borrowed from the caller.
#[derive(Debug, Default)]
pub enum Data<'a> {
    #[default]
    None,
    /// Host to controller (a write, Connect data, DSM ranges).
    Out(&'a [u8]),
    /// Controller to host (a read, Identify, a log page).
    In(&'a mut [u8]),
}

impl Data<'_> {
    /// Transfer length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Data::None => 0,
            Data::Out(b) => b.len(),
            Data::In(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One command's data, serving exactly one slot (blocking execution, one
/// command at a time per queue).
#[derive(Debug)]
pub struct Single<'a> {
    slot: usize,
    data: Data<'a>,
}

impl<'a> Single<'a> {
    pub fn new(slot: usize, data: Data<'a>) -> Self {
        Single { slot, data }
    }
}

impl DataBuffers for Single<'_> {
    fn outgoing(&self, slot: usize) -> &[u8] {
        match &self.data {
            Data::Out(b) if slot == self.slot => b,
            _ => &[],
        }
    }
    fn incoming(&mut self, slot: usize) -> &mut [u8] {
        match &mut self.data {
            Data::In(b) if slot == self.slot => b,
            _ => &mut [],
        }
    }
}

/// Owned buffers per slot, for queues with many commands in flight.
#[derive(Debug)]
pub struct SlotBuffers<B> {
    slots: Vec<Option<B>>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> SlotBuffers<B> {
    pub fn new(slots: usize) -> Self {
        SlotBuffers {
            slots: (0..slots).map(|_| None).collect(),
        }
    }
    /// Registers `buf` for `slot`, returning what was there.
    pub fn put(&mut self, slot: usize, buf: Option<B>) -> Option<B> {
        match self.slots.get_mut(slot) {
            Some(s) => std::mem::replace(s, buf),
            None => buf,
        }
    }
    /// Takes the buffer of `slot` back.
    pub fn take(&mut self, slot: usize) -> Option<B> {
        self.slots.get_mut(slot).and_then(Option::take)
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> DataBuffers for SlotBuffers<B> {
    fn outgoing(&self, slot: usize) -> &[u8] {
        match self.slots.get(slot) {
            Some(Some(b)) => b.as_ref(),
            _ => &[],
        }
    }
    fn incoming(&mut self, slot: usize) -> &mut [u8] {
        match self.slots.get_mut(slot) {
            Some(Some(b)) => b.as_mut(),
            _ => &mut [],
        }
    }
}
