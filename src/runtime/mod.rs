//! The runtime the appliance's data path runs on, built the way SPDK
//! applications are: one polled reactor thread per listed core, pinned and
//! sharing nothing on the I/O path; bounded lock-free mailboxes between
//! cores; I/O buffers and map nodes in hugepage memory.
//!
//! - [`cores`]: `--cores` lists and masks, thread pinning.
//! - [`reactor`]: the per-core poll loop, the [`Poller`] trait, idle back-off.
//! - [`group`]: starting, addressing and stopping a group of reactors;
//!   spreading connections over them.
//! - [`mailbox`]: the bounded lock-free queue + doorbell into one reactor.
//! - [`acceptor`]: a poller handing accepted connections to reactors.
//! - [`epoll`]: epoll and eventfd, used only to park an idle reactor.
//! - [`hugepage`]: 2 MiB chunks (hugetlb or fallback), the engine's
//!   [`ChunkSource`](crate::engine::map::arena::ChunkSource), `setup-hugepages`.
//! - [`buffers`]: per-reactor pools of aligned I/O buffers carved from chunks.
//!
//! Invariant kept across the module: nothing a reactor does per I/O takes a
//! lock or blocks; cross-core work moves only through mailboxes (checked by
//! `tests/runtime_rings.rs` with [`crate::lock_audit`]).

pub mod acceptor;
pub mod buffers;
pub mod cores;
pub mod epoll;
pub mod group;
pub mod hugepage;
pub mod mailbox;
pub mod reactor;

pub use acceptor::Acceptor;
pub use buffers::{BufferPoolError, BufferPoolStats, IoBuf, IoBufferPool};
pub use cores::{parse_core_list, pin_current_thread, resolve_cores, CoreListError};
pub use epoll::Interest;
pub use group::{Peers, ReactorGroup, ReactorStatsSnapshot, RuntimeError};
pub use hugepage::{
    setup_hugepages, HugepageError, HugepagePool, HugepageReport, HugepageStats, HugepageUse,
};
pub use mailbox::SendError;
pub use reactor::{
    ConnectionHandler, IdleMode, Message, Poller, Progress, ReactorConfig, ReactorCtx, Task,
};
