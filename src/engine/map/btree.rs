//! The multi-way tree under every map: a B+-tree whose nodes live in a
//! [`NodeArena`] (so a hugepage pool can back them) and are named by
//! [`NodeId`]s, with no `unsafe` in this file.
//!
//! Values live in leaves; leaves are linked both ways so ranges walk the leaf
//! chain; inner nodes hold separator keys and child ids. Invariants kept after
//! every `insert` and `remove` (and checked by [`BTree::check_invariants`]):
//! keys strictly increase within a node and along the leaf chain; every key
//! under child `i` of an inner node lies in `[keys[i-1], keys[i])`; all leaves
//! are at the same depth; every node but the root is at least half full.
//!
//! Overflow first shifts entries into a sibling with room (B*-style) and only
//! then splits; an insert at the very end of a full node fills the left
//! sibling completely, so the append pattern (increasing keys) leaves nodes
//! ~97% full instead of the 50% that plain splits give (random inserts: ~82%).
//! Underflow (the truncate pattern: removing the smallest keys) redistributes
//! evenly with the fuller sibling or merges with it, so rebalancing stays
//! amortised O(1) node moves per remove.
//!
//! Reads take `&self` and never mutate, so any number of threads may read a
//! tree that the single writer is not mutating at that moment.

#![forbid(unsafe_code)]

use super::arena::{ChunkSource, NodeArena, NodeId};
use std::fmt;
use std::iter::FusedIterator;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

/// Entries per leaf.
///
/// 32 keeps a leaf for `K = u128, V = u64` at 784 bytes (12.25 cache lines:
/// a 16-byte header, 512 bytes of keys, 256 of values), the in-node search
/// (`rank`) at 32 branch-free compares, and the memmove of an insert or
/// remove inside a leaf at most 31 entries (~750 bytes). Larger leaves save
/// little memory (the header already amortises to 0.5 byte per entry) and
/// make every search, shift and rebalance costlier; smaller ones add height
/// (one more dependent cache miss per lookup) and inner nodes.
pub const LEAF_CAP: usize = 32;

/// Least entries in a leaf that is not the root.
pub const LEAF_MIN: usize = LEAF_CAP / 2;

/// Children per inner node (it holds `INNER_CAP - 1` separator keys).
///
/// 32 gives the same search cost as a leaf, a 640-byte inner node for `u128`
/// keys that fits the leaf-sized arena slot, and a height of 4 for ~1 million
/// entries (5 for ~32 million) when nodes are full. Inner nodes are ~1/30 of
/// all nodes, so their slack in a leaf-sized slot costs under 1% of memory.
pub const INNER_CAP: usize = 32;

/// Least children of an inner node that is not the root.
pub const INNER_MIN: usize = INNER_CAP / 2;

/// Deepest tree supported: with a fan-out of at least 16 a tree of height 12
/// would need more nodes than a `NodeId` can name.
pub const MAX_HEIGHT: usize = 12;

/// Marks the leaf variant. Its unused byte values give `Node` a niche, so the
/// enum needs no separate tag: `Node<u128, u64>` is 784 bytes, not 800.
#[derive(Clone, Copy)]
#[repr(u8)]
enum LeafMark {
    Leaf = 0,
}

/// `repr(C)` with the small fields first: the length and the enum tag (the
/// mark) share the first cache line with the first keys, so visiting a node
/// does not touch an extra line just to learn its kind and length.
#[repr(C)]
struct Leaf<K, V> {
    len: u16,
    _mark: LeafMark,
    prev: NodeId,
    next: NodeId,
    keys: [K; LEAF_CAP],
    vals: [V; LEAF_CAP],
}

#[repr(C)]
struct Inner<K> {
    /// Number of children; `len - 1` keys are in use.
    len: u16,
    /// `keys[i]` separates `children[i]` (keys below it) from `children[i + 1]`.
    keys: [K; INNER_CAP - 1],
    children: [NodeId; INNER_CAP],
}

enum Node<K, V> {
    Leaf(Leaf<K, V>),
    Inner(Inner<K>),
}

impl<K: Copy + Ord, V: Copy> Leaf<K, V> {
    fn with_entries(keys: &[K], vals: &[V], prev: NodeId, next: NodeId) -> Self {
        assert!(
            !keys.is_empty(),
            "a new leaf starts with at least one entry"
        );
        let mut leaf = Leaf {
            len: 0,
            _mark: LeafMark::Leaf,
            prev,
            next,
            keys: [keys[0]; LEAF_CAP],
            vals: [vals[0]; LEAF_CAP],
        };
        leaf.set_entries(keys, vals);
        leaf
    }

    #[inline]
    fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    fn keys(&self) -> &[K] {
        &self.keys[..self.len()]
    }

    #[inline]
    fn vals(&self) -> &[V] {
        &self.vals[..self.len()]
    }

    /// `Ok(index)` of `key`, or `Err(index)` where it would be inserted.
    #[inline]
    fn find(&self, key: &K) -> Result<usize, usize> {
        let i = rank(self.keys(), |k| k < key);
        if self.keys().get(i) == Some(key) {
            Ok(i)
        } else {
            Err(i)
        }
    }

    #[inline]
    fn entry(&self, i: usize) -> (K, V) {
        (self.keys()[i], self.vals()[i])
    }

    fn insert_at(&mut self, i: usize, key: K, value: V) {
        let n = self.len();
        assert!(n < LEAF_CAP && i <= n, "leaf insert at {i} of {n}");
        self.keys.copy_within(i..n, i + 1);
        self.vals.copy_within(i..n, i + 1);
        self.keys[i] = key;
        self.vals[i] = value;
        self.len += 1;
    }

    fn remove_at(&mut self, i: usize) -> V {
        let n = self.len();
        assert!(i < n, "leaf remove at {i} of {n}");
        let value = self.vals[i];
        self.keys.copy_within(i + 1..n, i);
        self.vals.copy_within(i + 1..n, i);
        self.len -= 1;
        value
    }

    /// Drops the entries for which `drop` is true, keeping the others in
    /// order; returns the first dropped entry, if any, and how many went.
    fn retain(&mut self, mut drop: impl FnMut(&K, &V) -> bool) -> (Option<(K, V)>, usize) {
        let n = self.len();
        let mut kept = 0;
        let mut first = None;
        for i in 0..n {
            let (k, v) = (self.keys[i], self.vals[i]);
            if drop(&k, &v) {
                first = first.or(Some((k, v)));
            } else {
                self.keys[kept] = k;
                self.vals[kept] = v;
                kept += 1;
            }
        }
        self.len = kept as u16;
        (first, n - kept)
    }

    fn set_entries(&mut self, keys: &[K], vals: &[V]) {
        let n = keys.len();
        assert!(n == vals.len() && n <= LEAF_CAP, "leaf of {n} entries");
        self.keys[..n].copy_from_slice(keys);
        self.vals[..n].copy_from_slice(vals);
        self.len = n as u16;
    }
}

impl<K: Copy + Ord> Inner<K> {
    fn with_contents(keys: &[K], children: &[NodeId]) -> Self {
        assert!(
            !keys.is_empty(),
            "a new inner node starts with at least two children"
        );
        let mut inner = Inner {
            len: 0,
            keys: [keys[0]; INNER_CAP - 1],
            children: [NodeId::NONE; INNER_CAP],
        };
        inner.set_contents(keys, children);
        inner
    }

    /// Number of children.
    #[inline]
    fn len(&self) -> usize {
        usize::from(self.len)
    }

    #[inline]
    fn keys(&self) -> &[K] {
        &self.keys[..self.len() - 1]
    }

    #[inline]
    fn children(&self) -> &[NodeId] {
        &self.children[..self.len()]
    }

    /// Slot of the child whose key range holds `key`.
    #[inline]
    fn child_slot(&self, key: &K) -> usize {
        rank(self.keys(), |sep| sep <= key)
    }

    /// Puts `child` right after `children[slot]`, separated from it by `key`.
    fn insert_after(&mut self, slot: usize, key: K, child: NodeId) {
        let n = self.len();
        assert!(
            n < INNER_CAP && slot < n,
            "inner insert after {slot} of {n}"
        );
        self.keys.copy_within(slot..n - 1, slot + 1);
        self.children.copy_within(slot + 1..n, slot + 2);
        self.keys[slot] = key;
        self.children[slot + 1] = child;
        self.len += 1;
    }

    /// Removes `children[slot + 1]` and the key `keys[slot]` in front of it.
    fn remove_after(&mut self, slot: usize) {
        let n = self.len();
        assert!(slot + 1 < n, "inner remove after {slot} of {n}");
        self.keys.copy_within(slot + 1..n - 1, slot);
        self.children.copy_within(slot + 2..n, slot + 1);
        self.len -= 1;
    }

    fn set_contents(&mut self, keys: &[K], children: &[NodeId]) {
        let n = children.len();
        assert!(
            (1..=INNER_CAP).contains(&n) && keys.len() + 1 == n,
            "inner node of {n} children and {} keys",
            keys.len()
        );
        self.keys[..n - 1].copy_from_slice(keys);
        self.children[..n].copy_from_slice(children);
        self.len = n as u16;
    }
}

/// How many of the sorted `keys` satisfy `below` (true for a prefix, false
/// for the rest): the search inside every node.
///
/// A branch-free count over the whole node rather than a binary search: the
/// loads are independent, so the node's cache lines are fetched in parallel
/// instead of one dependent miss per probe, and there are no mispredicted
/// branches. For `u128` keys and 32-entry nodes it measured ~35% faster than
/// `partition_point` with the tree in cache and ~15-20% faster out of cache
/// (`benches/map_btree.rs`).
///
/// The two ends are tried first: past the last key is the append pattern,
/// before the first is the truncate pattern, and both branches are rarely
/// taken (so well predicted) for other keys.
#[inline]
fn rank<K>(keys: &[K], below: impl Fn(&K) -> bool) -> usize {
    match (keys.first(), keys.last()) {
        (Some(first), _) if !below(first) => 0,
        (_, Some(last)) if below(last) => keys.len(),
        _ => keys.iter().map(|k| usize::from(below(k))).sum(),
    }
}

/// Entries of up to two leaves (plus one), gathered to be redistributed.
struct LeafScratch<K, V> {
    keys: [K; 2 * LEAF_CAP],
    vals: [V; 2 * LEAF_CAP],
    len: usize,
}

impl<K: Copy, V: Copy> LeafScratch<K, V> {
    fn new(filler: (K, V)) -> Self {
        LeafScratch {
            keys: [filler.0; 2 * LEAF_CAP],
            vals: [filler.1; 2 * LEAF_CAP],
            len: 0,
        }
    }

    fn extend(&mut self, keys: &[K], vals: &[V]) {
        let (start, end) = (self.len, self.len + keys.len());
        self.keys[start..end].copy_from_slice(keys);
        self.vals[start..end].copy_from_slice(vals);
        self.len = end;
    }

    fn push(&mut self, key: K, value: V) {
        self.keys[self.len] = key;
        self.vals[self.len] = value;
        self.len += 1;
    }

    fn keys(&self, range: std::ops::Range<usize>) -> &[K] {
        &self.keys[range]
    }

    fn vals(&self, range: std::ops::Range<usize>) -> &[V] {
        &self.vals[range]
    }
}

/// Children and separators of up to two inner nodes (plus one child), in
/// order: `children[0] keys[0] children[1] ... keys[n-2] children[n-1]`.
struct InnerScratch<K> {
    keys: [K; 2 * INNER_CAP],
    children: [NodeId; 2 * INNER_CAP],
    nkeys: usize,
    nchildren: usize,
}

impl<K: Copy> InnerScratch<K> {
    fn new(filler: K) -> Self {
        InnerScratch {
            keys: [filler; 2 * INNER_CAP],
            children: [NodeId::NONE; 2 * INNER_CAP],
            nkeys: 0,
            nchildren: 0,
        }
    }

    fn push_keys(&mut self, keys: &[K]) {
        self.keys[self.nkeys..self.nkeys + keys.len()].copy_from_slice(keys);
        self.nkeys += keys.len();
    }

    fn push_children(&mut self, children: &[NodeId]) {
        self.children[self.nchildren..self.nchildren + children.len()].copy_from_slice(children);
        self.nchildren += children.len();
    }

    /// Appends a whole node: its keys and children.
    fn push_node(&mut self, node: &Inner<K>)
    where
        K: Ord,
    {
        self.push_keys(node.keys());
        self.push_children(node.children());
    }

    /// Appends a full node with `(key, child)` inserted after `children[slot]`.
    fn push_node_with(&mut self, node: &Inner<K>, slot: usize, key: K, child: NodeId)
    where
        K: Ord,
    {
        self.push_keys(&node.keys()[..slot]);
        self.push_keys(&[key]);
        self.push_keys(&node.keys()[slot..]);
        self.push_children(&node.children()[..=slot]);
        self.push_children(&[child]);
        self.push_children(&node.children()[slot + 1..]);
    }
}

/// The inner nodes visited on the way down, with the child slot taken in each.
struct Path {
    nodes: [NodeId; MAX_HEIGHT],
    slots: [usize; MAX_HEIGHT],
    depth: usize,
}

impl Path {
    fn new() -> Self {
        Path {
            nodes: [NodeId::NONE; MAX_HEIGHT],
            slots: [0; MAX_HEIGHT],
            depth: 0,
        }
    }

    fn push(&mut self, node: NodeId, slot: usize) {
        assert!(
            self.depth < MAX_HEIGHT,
            "B+-tree deeper than MAX_HEIGHT ({MAX_HEIGHT})"
        );
        self.nodes[self.depth] = node;
        self.slots[self.depth] = slot;
        self.depth += 1;
    }

    fn pop(&mut self) -> Option<(NodeId, usize)> {
        self.depth = self.depth.checked_sub(1)?;
        Some((self.nodes[self.depth], self.slots[self.depth]))
    }

    fn last(&self) -> Option<(NodeId, usize)> {
        let top = self.depth.checked_sub(1)?;
        Some((self.nodes[top], self.slots[top]))
    }
}

/// An ordered map from `K` to `V`: a B+-tree with nodes in a [`NodeArena`].
pub struct BTree<K, V> {
    arena: NodeArena<Node<K, V>>,
    root: NodeId,
    /// Leftmost and rightmost leaves (ends of the leaf chain).
    first: NodeId,
    last: NodeId,
    len: usize,
    /// Levels, leaves included: 0 when empty, 1 when the root is a leaf.
    height: usize,
}

impl<K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> BTree<K, V> {
    /// An empty tree whose nodes will come from `source`; no memory is taken
    /// until the first insert.
    pub fn new(source: Arc<dyn ChunkSource>) -> Self {
        BTree {
            arena: NodeArena::new(source),
            root: NodeId::NONE,
            first: NodeId::NONE,
            last: NodeId::NONE,
            len: 0,
            height: 0,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Levels, leaves included (0 when empty).
    pub fn height(&self) -> usize {
        self.height
    }

    /// Bytes of node memory reserved from the chunk source.
    pub fn memory_bytes(&self) -> usize {
        self.arena.bytes_reserved()
    }

    /// Nodes (leaves and inner nodes) in use.
    pub fn node_count(&self) -> usize {
        self.arena.live_nodes()
    }

    /// Bytes of arena memory one node occupies.
    pub fn node_bytes(&self) -> usize {
        self.arena.slot_bytes()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        if self.root.is_none() {
            return None;
        }
        let (_, leaf) = self.descend(key);
        let i = leaf.find(key).ok()?;
        Some(leaf.vals[i])
    }

    /// True when `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Option<(K, V)> {
        if self.first.is_none() {
            return None;
        }
        Some(self.leaf(self.first).entry(0))
    }

    /// The entry with the greatest key.
    pub fn last(&self) -> Option<(K, V)> {
        if self.last.is_none() {
            return None;
        }
        let leaf = self.leaf(self.last);
        Some(leaf.entry(leaf.len() - 1))
    }

    /// The entry with the greatest key `<= key`.
    pub fn last_at_or_before(&self, key: &K) -> Option<(K, V)> {
        let (id, i) = self.upper_position(Bound::Included(key))?;
        Some(self.leaf(id).entry(i))
    }

    /// The entry with the least key `>= key`.
    pub fn first_at_or_after(&self, key: &K) -> Option<(K, V)> {
        let (id, i) = self.lower_position(Bound::Included(key))?;
        Some(self.leaf(id).entry(i))
    }

    /// Entries with keys in `range`, in key order (reversible with `.rev()`).
    /// An empty or inverted range yields nothing.
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> Range<'_, K, V> {
        let (Some(front), Some(back)) = (
            self.lower_position(range.start_bound()),
            self.upper_position(range.end_bound()),
        ) else {
            return Range::empty(self);
        };
        if self.leaf(front.0).keys()[front.1] > self.leaf(back.0).keys()[back.1] {
            return Range::empty(self);
        }
        Range::new(self, front, back)
    }

    /// All entries in key order.
    pub fn iter(&self) -> Range<'_, K, V> {
        self.range(..)
    }

    /// Stores `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        if self.root.is_none() {
            let leaf = Leaf::with_entries(&[key], &[value], NodeId::NONE, NodeId::NONE);
            let id = self.arena.alloc(Node::Leaf(leaf));
            (self.root, self.first, self.last) = (id, id, id);
            self.height = 1;
            self.len = 1;
            return None;
        }
        let mut path = Path::new();
        let leaf_id = self.descend_recording(&key, &mut path);
        let leaf = self.leaf_mut(leaf_id);
        match leaf.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut leaf.vals[i], value)),
            Err(i) => {
                if leaf.len() < LEAF_CAP {
                    leaf.insert_at(i, key, value);
                } else {
                    self.insert_into_full_leaf(&mut path, leaf_id, i, key, value);
                }
                self.len += 1;
                None
            }
        }
    }

    /// Removes `key`; returns the value it had.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        if self.root.is_none() {
            return None;
        }
        let mut path = Path::new();
        let leaf_id = self.descend_recording(key, &mut path);
        let leaf = self.leaf_mut(leaf_id);
        let i = leaf.find(key).ok()?;
        let value = leaf.remove_at(i);
        self.len -= 1;
        self.after_leaf_shrank(&mut path, leaf_id, (*key, value));
        Some(value)
    }

    /// Removes, from the one leaf a search for `at` reaches, every entry for
    /// which `drop` is true (then rebalances that leaf once, as a remove
    /// would). Returns how many went and the first key of the next leaf in
    /// the chain as it was before (`None` at the last leaf): calling this
    /// again from there walks the whole tree, one bounded step at a time,
    /// in increasing key order.
    pub fn sweep_leaf(&mut self, at: &K, drop: impl FnMut(&K, &V) -> bool) -> (usize, Option<K>) {
        if self.root.is_none() {
            return (0, None);
        }
        let mut path = Path::new();
        let leaf_id = self.descend_recording(at, &mut path);
        let next_id = self.leaf(leaf_id).next;
        let next = (!next_id.is_none()).then(|| self.leaf(next_id).keys[0]);
        let leaf = self.leaf_mut(leaf_id);
        let (first_dropped, removed) = leaf.retain(drop);
        let Some(filler) = first_dropped else {
            return (0, next);
        };
        self.len -= removed;
        self.after_leaf_shrank(&mut path, leaf_id, filler);
        (removed, next)
    }

    /// Removes every entry and gives all node memory back to the source.
    pub fn clear(&mut self) {
        self.arena.clear();
        (self.root, self.first, self.last) = (NodeId::NONE, NodeId::NONE, NodeId::NONE);
        self.len = 0;
        self.height = 0;
    }

    /// Panics, naming the node and keys involved, unless every structural
    /// invariant holds: key order within and across nodes, separators bound
    /// their subtrees, all leaves at one depth, fill factors, leaf chain equal
    /// to the in-order leaf sequence in both directions, `len` and node count.
    /// Costs O(n); for tests and debugging.
    pub fn check_invariants(&self) {
        if self.root.is_none() {
            assert_eq!(self.len, 0, "empty tree has len {}", self.len);
            assert_eq!(self.height, 0, "empty tree has height {}", self.height);
            assert!(
                self.first.is_none() && self.last.is_none(),
                "empty tree has leaf chain ends {:?}..{:?}",
                self.first,
                self.last
            );
            assert_eq!(self.arena.live_nodes(), 0, "empty tree holds live nodes");
            return;
        }
        assert!(
            (1..=MAX_HEIGHT).contains(&self.height),
            "height {} out of range",
            self.height
        );
        // Depth-first, children pushed right to left so leaves come out in order.
        let mut stack: Vec<(NodeId, usize, Option<K>, Option<K>)> =
            vec![(self.root, 1, None, None)];
        let mut leaves = Vec::new();
        let mut nodes = 0;
        let mut entries = 0;
        while let Some((id, depth, lo, hi)) = stack.pop() {
            nodes += 1;
            let is_root = id == self.root;
            let (len, cap, kind) = match self.arena.get(id) {
                Node::Leaf(leaf) => (leaf.len(), LEAF_CAP, "leaf"),
                Node::Inner(inner) => (inner.len(), INNER_CAP, "inner node"),
            };
            assert!(
                (1..=cap).contains(&len),
                "{kind} {id:?}: length {len} outside 1..={cap}"
            );
            let keys = match self.arena.get(id) {
                Node::Leaf(leaf) => leaf.keys(),
                Node::Inner(inner) => inner.keys(),
            };
            for pair in keys.windows(2) {
                assert!(
                    pair[0] < pair[1],
                    "{kind} {id:?}: keys out of order: {:?} then {:?}",
                    pair[0],
                    pair[1]
                );
            }
            if let (Some(lo), Some(first)) = (lo, keys.first()) {
                assert!(
                    lo <= *first,
                    "{kind} {id:?}: key {first:?} below its separator {lo:?}"
                );
            }
            if let (Some(hi), Some(last)) = (hi, keys.last()) {
                assert!(
                    *last < hi,
                    "{kind} {id:?}: key {last:?} not below its separator {hi:?}"
                );
            }
            match self.arena.get(id) {
                Node::Leaf(leaf) => {
                    assert_eq!(
                        depth, self.height,
                        "leaf {id:?} at depth {depth} in a tree of height {}",
                        self.height
                    );
                    let min = if is_root { 1 } else { LEAF_MIN };
                    assert!(
                        (min..=LEAF_CAP).contains(&leaf.len()),
                        "leaf {id:?} holds {} entries (allowed {min}..={LEAF_CAP})",
                        leaf.len()
                    );
                    entries += leaf.len();
                    leaves.push(id);
                }
                Node::Inner(inner) => {
                    assert!(
                        depth < self.height,
                        "inner node {id:?} at depth {depth}, height {}",
                        self.height
                    );
                    let min = if is_root { 2 } else { INNER_MIN };
                    assert!(
                        (min..=INNER_CAP).contains(&inner.len()),
                        "inner node {id:?} has {} children (allowed {min}..={INNER_CAP})",
                        inner.len()
                    );
                    let keys = inner.keys();
                    for slot in (0..inner.len()).rev() {
                        let child_lo = if slot == 0 { lo } else { Some(keys[slot - 1]) };
                        let child_hi = if slot + 1 == inner.len() {
                            hi
                        } else {
                            Some(keys[slot])
                        };
                        stack.push((inner.children[slot], depth + 1, child_lo, child_hi));
                    }
                }
            }
        }
        assert_eq!(
            entries, self.len,
            "leaves hold {entries} entries but len is {}",
            self.len
        );
        assert_eq!(
            nodes,
            self.arena.live_nodes(),
            "{nodes} nodes reachable but {} live in the arena",
            self.arena.live_nodes()
        );
        assert_eq!(
            self.first, leaves[0],
            "first leaf is {:?}, in-order first leaf is {:?}",
            self.first, leaves[0]
        );
        assert_eq!(
            self.last,
            leaves[leaves.len() - 1],
            "last leaf is {:?}, in-order last leaf is {:?}",
            self.last,
            leaves[leaves.len() - 1]
        );
        let mut prev = NodeId::NONE;
        for (i, id) in leaves.iter().enumerate() {
            let leaf = self.leaf(*id);
            assert_eq!(
                leaf.prev, prev,
                "leaf {id:?} (#{i} in order) links back to {:?}, expected {prev:?}",
                leaf.prev
            );
            let expected_next = leaves.get(i + 1).copied().unwrap_or(NodeId::NONE);
            assert_eq!(
                leaf.next, expected_next,
                "leaf {id:?} (#{i} in order) links forward to {:?}, expected {expected_next:?}",
                leaf.next
            );
            if let Some(next) = leaves.get(i + 1) {
                let (a, b) = (leaf.keys()[leaf.len() - 1], self.leaf(*next).keys()[0]);
                assert!(
                    a < b,
                    "leaf chain out of order: {id:?} ends at {a:?}, {next:?} starts at {b:?}"
                );
            }
            prev = *id;
        }
    }

    // ---- reads ----------------------------------------------------------

    #[inline]
    fn leaf(&self, id: NodeId) -> &Leaf<K, V> {
        match self.arena.get(id) {
            Node::Leaf(leaf) => leaf,
            Node::Inner(_) => wrong_kind(id, "leaf"),
        }
    }

    #[inline]
    fn leaf_mut(&mut self, id: NodeId) -> &mut Leaf<K, V> {
        match self.arena.get_mut(id) {
            Node::Leaf(leaf) => leaf,
            Node::Inner(_) => wrong_kind(id, "leaf"),
        }
    }

    #[inline]
    fn inner(&self, id: NodeId) -> &Inner<K> {
        match self.arena.get(id) {
            Node::Inner(inner) => inner,
            Node::Leaf(_) => wrong_kind(id, "inner node"),
        }
    }

    #[inline]
    fn inner_mut(&mut self, id: NodeId) -> &mut Inner<K> {
        match self.arena.get_mut(id) {
            Node::Inner(inner) => inner,
            Node::Leaf(_) => wrong_kind(id, "inner node"),
        }
    }

    /// The leaf whose key range holds `key` (tree not empty).
    #[inline]
    fn descend(&self, key: &K) -> (NodeId, &Leaf<K, V>) {
        let mut id = self.root;
        for _ in 0..MAX_HEIGHT {
            match self.arena.get(id) {
                Node::Leaf(leaf) => return (id, leaf),
                Node::Inner(inner) => id = inner.children[inner.child_slot(key)],
            }
        }
        panic!("B+-tree deeper than MAX_HEIGHT ({MAX_HEIGHT})");
    }

    /// As `descend`, recording the inner nodes passed and the slots taken.
    fn descend_recording(&self, key: &K, path: &mut Path) -> NodeId {
        let mut id = self.root;
        loop {
            match self.arena.get(id) {
                Node::Leaf(_) => return id,
                Node::Inner(inner) => {
                    let slot = inner.child_slot(key);
                    path.push(id, slot);
                    id = inner.children[slot];
                }
            }
        }
    }

    /// Position of the first entry after `bound` (at or after an included
    /// key, after an excluded one, the very first when unbounded).
    fn lower_position(&self, bound: Bound<&K>) -> Option<(NodeId, usize)> {
        let (id, leaf, i) = match bound {
            Bound::Unbounded => return (!self.first.is_none()).then_some((self.first, 0)),
            Bound::Included(key) => {
                let (id, leaf) = self.descend_if_any(key)?;
                (id, leaf, rank(leaf.keys(), |k| k < key))
            }
            Bound::Excluded(key) => {
                let (id, leaf) = self.descend_if_any(key)?;
                (id, leaf, rank(leaf.keys(), |k| k <= key))
            }
        };
        if i < leaf.len() {
            Some((id, i))
        } else {
            // Every key in later leaves is at or above a separator above `key`.
            (!leaf.next.is_none()).then_some((leaf.next, 0))
        }
    }

    /// Position of the last entry before `bound` (at or before an included
    /// key, before an excluded one, the very last when unbounded).
    fn upper_position(&self, bound: Bound<&K>) -> Option<(NodeId, usize)> {
        let (leaf, i) = match bound {
            Bound::Unbounded => {
                return (!self.last.is_none()).then(|| (self.last, self.leaf(self.last).len() - 1));
            }
            Bound::Included(key) => {
                let (id, leaf) = self.descend_if_any(key)?;
                let i = rank(leaf.keys(), |k| k <= key);
                if i > 0 {
                    return Some((id, i - 1));
                }
                (leaf, i)
            }
            Bound::Excluded(key) => {
                let (id, leaf) = self.descend_if_any(key)?;
                let i = rank(leaf.keys(), |k| k < key);
                if i > 0 {
                    return Some((id, i - 1));
                }
                (leaf, i)
            }
        };
        debug_assert_eq!(i, 0);
        // Every key in earlier leaves is below a separator at or below `key`.
        (!leaf.prev.is_none()).then(|| (leaf.prev, self.leaf(leaf.prev).len() - 1))
    }

    fn descend_if_any(&self, key: &K) -> Option<(NodeId, &Leaf<K, V>)> {
        (!self.root.is_none()).then(|| self.descend(key))
    }

    // ---- insert ---------------------------------------------------------

    /// Inserts into full leaf `leaf_id` at `pos`: shift entries into a sibling
    /// with room, else split and hand the new leaf to the parent.
    fn insert_into_full_leaf(
        &mut self,
        path: &mut Path,
        leaf_id: NodeId,
        pos: usize,
        key: K,
        value: V,
    ) {
        let mut s = LeafScratch::new((key, value));
        let gather_with_new = |s: &mut LeafScratch<K, V>, leaf: &Leaf<K, V>| {
            s.extend(&leaf.keys()[..pos], &leaf.vals()[..pos]);
            s.push(key, value);
            s.extend(&leaf.keys()[pos..], &leaf.vals()[pos..]);
        };
        if let Some((parent_id, slot)) = path.last() {
            let parent = self.inner(parent_id);
            let left_id = if slot > 0 {
                parent.children[slot - 1]
            } else {
                NodeId::NONE
            };
            let right_id = parent
                .children()
                .get(slot + 1)
                .copied()
                .unwrap_or(NodeId::NONE);
            if !left_id.is_none() && self.leaf(left_id).len() < LEAF_CAP {
                let left = self.leaf(left_id);
                s.extend(left.keys(), left.vals());
                gather_with_new(&mut s, self.leaf(leaf_id));
                // Appending at the end of a full leaf: fill the left sibling, the
                // next appends come here again.
                let left_len = if pos == LEAF_CAP { LEAF_CAP } else { s.len / 2 };
                let sep = self.write_leaf_pair(&s, left_id, leaf_id, left_len);
                self.inner_mut(parent_id).keys[slot - 1] = sep;
                return;
            }
            if !right_id.is_none() && self.leaf(right_id).len() < LEAF_CAP {
                gather_with_new(&mut s, self.leaf(leaf_id));
                let right = self.leaf(right_id);
                s.extend(right.keys(), right.vals());
                let sep = self.write_leaf_pair(&s, leaf_id, right_id, s.len / 2);
                self.inner_mut(parent_id).keys[slot] = sep;
                return;
            }
        }
        gather_with_new(&mut s, self.leaf(leaf_id));
        let left_len = s.len / 2;
        let old_next = self.leaf(leaf_id).next;
        let new_leaf = Leaf::with_entries(
            s.keys(left_len..s.len),
            s.vals(left_len..s.len),
            leaf_id,
            old_next,
        );
        let new_id = self.arena.alloc(Node::Leaf(new_leaf));
        if old_next.is_none() {
            self.last = new_id;
        } else {
            self.leaf_mut(old_next).prev = new_id;
        }
        let leaf = self.leaf_mut(leaf_id);
        leaf.set_entries(s.keys(0..left_len), s.vals(0..left_len));
        leaf.next = new_id;
        self.insert_into_parent(path, s.keys[left_len], new_id);
    }

    /// Writes `s[..left_len]` into `left_id` and the rest into `right_id`;
    /// returns the separator between them.
    fn write_leaf_pair(
        &mut self,
        s: &LeafScratch<K, V>,
        left_id: NodeId,
        right_id: NodeId,
        left_len: usize,
    ) -> K {
        assert!(
            (LEAF_MIN..=LEAF_CAP).contains(&left_len)
                && (LEAF_MIN..=LEAF_CAP).contains(&(s.len - left_len)),
            "leaf redistribution of {} entries as {left_len} + {}",
            s.len,
            s.len - left_len
        );
        self.leaf_mut(left_id)
            .set_entries(s.keys(0..left_len), s.vals(0..left_len));
        self.leaf_mut(right_id)
            .set_entries(s.keys(left_len..s.len), s.vals(left_len..s.len));
        s.keys[left_len]
    }

    /// Writes the first `left_children` children of `s` into `left_id`, the
    /// rest into `right_id`; returns the separator that goes up between them.
    fn write_inner_pair(
        &mut self,
        s: &InnerScratch<K>,
        left_id: NodeId,
        right_id: NodeId,
        left_children: usize,
    ) -> K {
        let right_children = s.nchildren - left_children;
        assert!(
            (INNER_MIN..=INNER_CAP).contains(&left_children)
                && (INNER_MIN..=INNER_CAP).contains(&right_children),
            "inner redistribution of {} children as {left_children} + {right_children}",
            s.nchildren
        );
        assert_eq!(s.nkeys + 1, s.nchildren, "inner scratch out of step");
        self.inner_mut(left_id)
            .set_contents(&s.keys[..left_children - 1], &s.children[..left_children]);
        self.inner_mut(right_id).set_contents(
            &s.keys[left_children..s.nkeys],
            &s.children[left_children..s.nchildren],
        );
        s.keys[left_children - 1]
    }

    /// Puts `(sep, child)` into the parent recorded at the top of `path`,
    /// right after the child taken there; full parents shift into a sibling
    /// or split, up to a new root.
    fn insert_into_parent(&mut self, path: &mut Path, mut sep: K, mut child: NodeId) {
        loop {
            let Some((node_id, slot)) = path.pop() else {
                let root = Inner::with_contents(&[sep], &[self.root, child]);
                self.root = self.arena.alloc(Node::Inner(root));
                self.height += 1;
                assert!(
                    self.height <= MAX_HEIGHT,
                    "B+-tree grew past MAX_HEIGHT ({MAX_HEIGHT})"
                );
                return;
            };
            let node = self.inner_mut(node_id);
            if node.len() < INNER_CAP {
                node.insert_after(slot, sep, child);
                return;
            }
            let at_end = slot + 1 == INNER_CAP;
            let mut s = InnerScratch::new(sep);
            if let Some((parent_id, pslot)) = path.last() {
                let parent = self.inner(parent_id);
                let left_id = if pslot > 0 {
                    parent.children[pslot - 1]
                } else {
                    NodeId::NONE
                };
                let right_id = parent
                    .children()
                    .get(pslot + 1)
                    .copied()
                    .unwrap_or(NodeId::NONE);
                if !left_id.is_none() && self.inner(left_id).len() < INNER_CAP {
                    s.push_node(self.inner(left_id));
                    s.push_keys(&[parent.keys[pslot - 1]]);
                    s.push_node_with(self.inner(node_id), slot, sep, child);
                    let left_children = if at_end { INNER_CAP } else { s.nchildren / 2 };
                    let up = self.write_inner_pair(&s, left_id, node_id, left_children);
                    self.inner_mut(parent_id).keys[pslot - 1] = up;
                    return;
                }
                if !right_id.is_none() && self.inner(right_id).len() < INNER_CAP {
                    s.push_node_with(self.inner(node_id), slot, sep, child);
                    s.push_keys(&[parent.keys[pslot]]);
                    s.push_node(self.inner(right_id));
                    let up = self.write_inner_pair(&s, node_id, right_id, s.nchildren / 2);
                    self.inner_mut(parent_id).keys[pslot] = up;
                    return;
                }
            }
            s.push_node_with(self.inner(node_id), slot, sep, child);
            let left_children = s.nchildren / 2;
            let right = Inner::with_contents(
                &s.keys[left_children..s.nkeys],
                &s.children[left_children..s.nchildren],
            );
            self.inner_mut(node_id)
                .set_contents(&s.keys[..left_children - 1], &s.children[..left_children]);
            sep = s.keys[left_children - 1];
            child = self.arena.alloc(Node::Inner(right));
        }
    }

    // ---- remove ---------------------------------------------------------

    /// Picks the sibling to rebalance child `slot` of `parent` with: the one
    /// with more entries (`len_of` counts them). Returns
    /// `(left, right, separator slot, sibling length)`.
    fn pick_sibling(
        &self,
        parent_id: NodeId,
        slot: usize,
        len_of: impl Fn(&Self, NodeId) -> usize,
    ) -> (NodeId, NodeId, usize, usize) {
        let parent = self.inner(parent_id);
        let node = parent.children[slot];
        let left = (slot > 0).then(|| parent.children[slot - 1]);
        let right = parent.children().get(slot + 1).copied();
        let left_len = left.map_or(0, |id| len_of(self, id));
        let right_len = right.map_or(0, |id| len_of(self, id));
        match (left, right) {
            (Some(left), _) if left_len >= right_len => (left, node, slot - 1, left_len),
            (_, Some(right)) => (node, right, slot, right_len),
            _ => panic!("inner node {parent_id:?} has a single child"),
        }
    }

    /// Entries left leaf `leaf_id` (reached along `path`; `filler` is any
    /// entry, for scratch space): free it if it is the root and empty,
    /// rebalance it if it is not the root and fell below `LEAF_MIN`.
    fn after_leaf_shrank(&mut self, path: &mut Path, leaf_id: NodeId, filler: (K, V)) {
        let remaining = self.leaf(leaf_id).len();
        if path.depth == 0 {
            if remaining == 0 {
                self.arena.free(leaf_id);
                (self.root, self.first, self.last) = (NodeId::NONE, NodeId::NONE, NodeId::NONE);
                self.height = 0;
            }
        } else if remaining < LEAF_MIN {
            self.rebalance_leaf(path, leaf_id, filler);
        }
    }

    /// Leaf `leaf_id` fell below `LEAF_MIN` (by one remove, or by any number
    /// in a sweep): share entries evenly with the fuller sibling when the two
    /// hold enough for two leaves of at least `LEAF_MIN`, else merge them
    /// (the merged leaf holds at least the sibling's `LEAF_MIN`) and fix the
    /// parent.
    fn rebalance_leaf(&mut self, path: &mut Path, leaf_id: NodeId, filler: (K, V)) {
        let (parent_id, slot) = path.pop().expect("a non-root leaf has a parent");
        debug_assert_eq!(self.inner(parent_id).children[slot], leaf_id);
        let (left_id, right_id, sep_slot, sibling_len) =
            self.pick_sibling(parent_id, slot, |t, id| t.leaf(id).len());
        let mut s = LeafScratch::new(filler);
        let (left, right) = (self.leaf(left_id), self.leaf(right_id));
        s.extend(left.keys(), left.vals());
        s.extend(right.keys(), right.vals());
        debug_assert!(
            sibling_len >= LEAF_MIN,
            "a non-root sibling is at least half full"
        );
        if s.len >= 2 * LEAF_MIN {
            let sep = self.write_leaf_pair(&s, left_id, right_id, s.len / 2);
            self.inner_mut(parent_id).keys[sep_slot] = sep;
            return;
        }
        assert!(s.len <= LEAF_CAP, "leaf merge of {} entries", s.len);
        let right_next = self.leaf(right_id).next;
        let left = self.leaf_mut(left_id);
        left.set_entries(s.keys(0..s.len), s.vals(0..s.len));
        left.next = right_next;
        if right_next.is_none() {
            self.last = left_id;
        } else {
            self.leaf_mut(right_next).prev = left_id;
        }
        self.arena.free(right_id);
        self.inner_mut(parent_id).remove_after(sep_slot);
        self.after_child_removed(path, parent_id);
    }

    /// Inner node `node_id` lost a child: collapse the root if it has one
    /// child left; else, if it fell below `INNER_MIN`, take children from the
    /// fuller sibling or merge with it, up the path as far as needed.
    fn after_child_removed(&mut self, path: &mut Path, mut node_id: NodeId) {
        loop {
            let children = self.inner(node_id).len();
            let Some((parent_id, slot)) = path.pop() else {
                debug_assert_eq!(node_id, self.root);
                if children == 1 {
                    self.root = self.inner(node_id).children[0];
                    self.arena.free(node_id);
                    self.height -= 1;
                }
                return;
            };
            if children >= INNER_MIN {
                return;
            }
            let (left_id, right_id, sep_slot, sibling_len) =
                self.pick_sibling(parent_id, slot, |t, id| t.inner(id).len());
            let parent = self.inner(parent_id);
            let mut s = InnerScratch::new(parent.keys[sep_slot]);
            s.push_node(self.inner(left_id));
            s.push_keys(&[parent.keys[sep_slot]]);
            s.push_node(self.inner(right_id));
            if sibling_len > INNER_MIN {
                let up = self.write_inner_pair(&s, left_id, right_id, s.nchildren / 2);
                self.inner_mut(parent_id).keys[sep_slot] = up;
                return;
            }
            assert!(
                s.nchildren <= INNER_CAP,
                "inner merge of {} children",
                s.nchildren
            );
            self.inner_mut(left_id)
                .set_contents(&s.keys[..s.nkeys], &s.children[..s.nchildren]);
            self.arena.free(right_id);
            self.inner_mut(parent_id).remove_after(sep_slot);
            node_id = parent_id;
        }
    }
}

#[cold]
#[inline(never)]
fn wrong_kind(id: NodeId, expected: &str) -> ! {
    panic!("B+-tree node {id:?} is not a {expected}: the tree is corrupt")
}

impl<K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> fmt::Debug for BTree<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BTree")
            .field("len", &self.len)
            .field("height", &self.height)
            .field("nodes", &self.arena.live_nodes())
            .field("memory_bytes", &self.memory_bytes())
            .field("first", &self.first())
            .field("last", &self.last())
            .finish()
    }
}

/// Entries of a [`BTree`] in key order, walking the leaf chain from both ends.
pub struct Range<'a, K, V> {
    tree: &'a BTree<K, V>,
    /// Next entry from the front and from the back; `None` once they have
    /// met. The front never passes the back.
    ends: Option<(Cursor<'a, K, V>, Cursor<'a, K, V>)>,
}

/// A position in the leaf chain, holding on to its leaf.
struct Cursor<'a, K, V> {
    id: NodeId,
    leaf: &'a Leaf<K, V>,
    index: usize,
}

impl<'a, K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> Range<'a, K, V> {
    fn new(tree: &'a BTree<K, V>, front: (NodeId, usize), back: (NodeId, usize)) -> Self {
        let cursor = |(id, index): (NodeId, usize)| Cursor {
            id,
            leaf: tree.leaf(id),
            index,
        };
        Range {
            tree,
            ends: Some((cursor(front), cursor(back))),
        }
    }

    fn empty(tree: &'a BTree<K, V>) -> Self {
        Range { tree, ends: None }
    }
}

impl<K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> Iterator for Range<'_, K, V> {
    type Item = (K, V);

    #[inline]
    fn next(&mut self) -> Option<(K, V)> {
        let (front, back) = self.ends.as_mut()?;
        let item = front.leaf.entry(front.index);
        if front.id == back.id && front.index == back.index {
            self.ends = None;
        } else if front.index + 1 < front.leaf.len() {
            front.index += 1;
        } else {
            front.id = front.leaf.next;
            front.leaf = self.tree.leaf(front.id);
            front.index = 0;
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.ends {
            None => (0, Some(0)),
            Some(_) => (1, Some(self.tree.len)),
        }
    }
}

impl<K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> DoubleEndedIterator for Range<'_, K, V> {
    #[inline]
    fn next_back(&mut self) -> Option<(K, V)> {
        let (front, back) = self.ends.as_mut()?;
        let item = back.leaf.entry(back.index);
        if front.id == back.id && front.index == back.index {
            self.ends = None;
        } else if back.index > 0 {
            back.index -= 1;
        } else {
            back.id = back.leaf.prev;
            back.leaf = self.tree.leaf(back.id);
            back.index = back.leaf.len() - 1;
        }
        Some(item)
    }
}

impl<K: Copy + Ord + fmt::Debug, V: Copy + fmt::Debug> FusedIterator for Range<'_, K, V> {}

impl<K, V> fmt::Debug for Range<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |c: &Cursor<'_, K, V>| (c.id, c.index);
        f.debug_struct("Range")
            .field("front", &self.ends.as_ref().map(|(front, _)| at(front)))
            .field("back", &self.ends.as_ref().map(|(_, back)| at(back)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::map::arena::HeapChunks;

    fn tree() -> BTree<u128, u64> {
        BTree::new(Arc::new(HeapChunks::with_chunk_bytes(64 << 10)))
    }

    fn tree_with(keys: impl IntoIterator<Item = u128>) -> BTree<u128, u64> {
        let mut t = tree();
        for k in keys {
            assert_eq!(t.insert(k, k as u64 * 10), None);
        }
        t.check_invariants();
        t
    }

    fn keys_of(t: &BTree<u128, u64>) -> Vec<u128> {
        t.iter().map(|(k, _)| k).collect()
    }

    /// Leaf lengths in chain order.
    fn leaf_lens(t: &BTree<u128, u64>) -> Vec<usize> {
        let mut lens = Vec::new();
        let mut id = t.first;
        while !id.is_none() {
            lens.push(t.leaf(id).len());
            id = t.leaf(id).next;
        }
        lens
    }

    #[test]
    fn node_sizes_for_the_main_instantiation() {
        assert_eq!(std::mem::size_of::<Leaf<u128, u64>>(), 784);
        assert_eq!(std::mem::size_of::<Inner<u128>>(), 640);
        assert_eq!(
            std::mem::size_of::<Node<u128, u64>>(),
            784,
            "the leaf mark's niche should hold the enum tag"
        );
        let t = tree_with([1]);
        assert_eq!(t.node_bytes(), 784);
    }

    #[test]
    #[should_panic(expected = "below its separator 1000")]
    fn check_invariants_catches_a_wrong_separator() {
        let mut t = tree_with(0..100);
        let root = t.root;
        let last_key = t.inner(root).len() - 2;
        t.inner_mut(root).keys[last_key] = 1000;
        t.check_invariants();
    }

    #[test]
    #[should_panic(expected = "keys out of order")]
    fn check_invariants_catches_unordered_keys() {
        let mut t = tree_with(0..100);
        let first = t.first;
        t.leaf_mut(first).keys.swap(3, 4);
        t.check_invariants();
    }

    #[test]
    #[should_panic(expected = "links forward to")]
    fn check_invariants_catches_a_broken_leaf_chain() {
        let mut t = tree_with(0..100);
        let first = t.first;
        t.leaf_mut(first).next = NodeId::NONE;
        t.check_invariants();
    }

    #[test]
    #[should_panic(expected = "holds 3 entries (allowed 16..=32)")]
    fn check_invariants_catches_an_underfull_leaf() {
        let mut t = tree_with(0..100);
        let first = t.first;
        let removed = t.leaf(first).len() - 3;
        t.leaf_mut(first).len = 3;
        t.len -= removed;
        t.check_invariants();
    }

    #[test]
    #[should_panic(expected = "entries but len is")]
    fn check_invariants_catches_a_wrong_len() {
        let mut t = tree_with(0..100);
        t.len += 1;
        t.check_invariants();
    }

    #[test]
    fn empty_tree() {
        let mut t = tree();
        t.check_invariants();
        assert!(t.is_empty());
        assert_eq!((t.len(), t.height(), t.memory_bytes()), (0, 0, 0));
        assert_eq!(t.get(&5), None);
        assert_eq!(t.remove(&5), None);
        assert_eq!(t.last_at_or_before(&5), None);
        assert_eq!(t.first_at_or_after(&5), None);
        assert_eq!((t.first(), t.last()), (None, None));
        assert_eq!(t.iter().count(), 0);
        assert_eq!(t.range(3..9).rev().count(), 0);
        t.check_invariants();
    }

    #[test]
    fn insert_replaces_and_returns_old_value() {
        let mut t = tree_with(0..100);
        assert_eq!(t.insert(42, 7), Some(420));
        assert_eq!(t.insert(42, 8), Some(7));
        assert_eq!(t.get(&42), Some(8));
        assert_eq!(t.len(), 100);
        t.check_invariants();
    }

    #[test]
    fn root_leaf_splits_at_capacity() {
        let mut t = tree_with(0..LEAF_CAP as u128);
        assert_eq!((t.height(), t.node_count()), (1, 1));
        t.insert(LEAF_CAP as u128, 0);
        t.check_invariants();
        assert_eq!((t.height(), t.node_count()), (2, 3));
        assert_eq!(leaf_lens(&t), vec![LEAF_MIN, LEAF_CAP + 1 - LEAF_MIN]);
        // Same for a new smallest key.
        let mut t = tree_with(1..=LEAF_CAP as u128);
        t.insert(0, 0);
        t.check_invariants();
        assert_eq!(leaf_lens(&t), vec![LEAF_MIN, LEAF_CAP + 1 - LEAF_MIN]);
    }

    #[test]
    fn full_leaf_shifts_into_sibling_before_splitting() {
        // Two leaves 16 + 17, then fill the right one and append: the left
        // sibling absorbs entries instead of a third leaf appearing.
        let mut t = tree_with(0..=LEAF_CAP as u128);
        for k in LEAF_CAP as u128 + 1..LEAF_CAP as u128 + 16 {
            t.insert(k, 0);
        }
        assert_eq!(leaf_lens(&t), vec![LEAF_MIN, LEAF_CAP]);
        t.insert(1000, 0);
        t.check_invariants();
        assert_eq!(
            leaf_lens(&t),
            vec![LEAF_CAP, LEAF_MIN + 1],
            "append fills the left sibling"
        );
        assert_eq!(t.last(), Some((1000, 0)));
    }

    #[test]
    fn middle_insert_into_full_leaf_redistributes_evenly() {
        // Leaves [16, 32]: a middle insert into the right leaf moves into the left one.
        let mut t = tree_with((0..=LEAF_CAP as u128 + 15).map(|k| k * 2));
        assert_eq!(leaf_lens(&t), vec![LEAF_MIN, LEAF_CAP]);
        t.insert(2 * 40 + 1, 0);
        t.check_invariants();
        assert_eq!(leaf_lens(&t), vec![24, 25]);
        // Leaves [32, x]: a middle insert into the full left leaf moves right.
        let mut t = tree_with((0..=LEAF_CAP as u128 + 15).map(|k| k * 2));
        t.insert(1000, 0); // append: [32, 17]
        assert_eq!(leaf_lens(&t), vec![LEAF_CAP, LEAF_MIN + 1]);
        t.insert(3, 0);
        t.check_invariants();
        assert_eq!(leaf_lens(&t), vec![25, 25]);
        assert_eq!(t.get(&3), Some(0));
    }

    #[test]
    fn leaf_underflow_borrows_then_merges_and_root_collapses() {
        let mut t = tree_with(0..=LEAF_CAP as u128); // [16, 17]
        assert_eq!(t.remove(&0), Some(0));
        t.check_invariants();
        assert_eq!(
            leaf_lens(&t),
            vec![16, 16],
            "borrowed from the right sibling"
        );
        assert_eq!(t.remove(&1), Some(10));
        t.check_invariants();
        assert_eq!(
            leaf_lens(&t),
            vec![31],
            "merged; the root collapsed to a leaf"
        );
        assert_eq!((t.height(), t.node_count()), (1, 1));
        for k in 2..=LEAF_CAP as u128 {
            assert_eq!(t.remove(&k), Some(k as u64 * 10));
            t.check_invariants();
        }
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 0);
    }

    #[test]
    fn underflow_in_last_leaf_borrows_from_left_sibling() {
        let mut t = tree_with(0..48);
        t.insert(48, 480);
        assert_eq!(leaf_lens(&t), vec![LEAF_CAP, LEAF_MIN + 1]);
        t.remove(&48);
        t.remove(&47);
        t.check_invariants();
        assert_eq!(leaf_lens(&t), vec![23, 24]);
        assert_eq!(keys_of(&t), (0..47).collect::<Vec<_>>());
    }

    #[test]
    fn growth_to_height_three_and_back_to_empty() {
        let n = (LEAF_CAP * INNER_CAP * 3) as u128;
        let mut t = tree_with(0..n);
        assert_eq!(t.height(), 3);
        let memory = t.memory_bytes();
        // Remove in an order that hits the middle, both ends and every level.
        let mut order: Vec<u128> = (0..n).collect();
        order.sort_by_key(|k| (k * 7919) % n);
        for (i, k) in order.iter().enumerate() {
            assert_eq!(t.remove(k), Some(*k as u64 * 10));
            if i % 97 == 0 {
                t.check_invariants();
            }
        }
        t.check_invariants();
        assert!(t.is_empty());
        assert_eq!(
            t.memory_bytes(),
            memory,
            "chunks stay with the tree until clear or drop"
        );
        for k in 0..n {
            t.insert(k, 1);
        }
        assert_eq!(t.memory_bytes(), memory, "freed nodes are reused");
        t.check_invariants();
    }

    #[test]
    fn inner_nodes_split_borrow_and_merge() {
        // Descending inserts exercise the left-side split path at every level.
        let n = (LEAF_CAP * INNER_CAP * 2) as u128;
        let mut t = tree_with((0..n).rev());
        assert_eq!(t.height(), 3);
        // Remove from the back until height drops, checking at every step.
        while t.height() == 3 {
            let (k, _) = t.last().unwrap();
            t.remove(&k);
            t.check_invariants();
        }
        assert_eq!(t.height(), 2);
        assert_eq!(keys_of(&t), (0..t.len() as u128).collect::<Vec<_>>());
    }

    #[test]
    fn neighbour_lookups_across_leaf_boundaries() {
        let t = tree_with((0..2000).map(|k| k * 2 + 10));
        for q in 0..4100u128 {
            let below = (q >= 10).then(|| {
                let k = if q % 2 == 0 { q } else { q - 1 }.min(2 * 1999 + 10);
                (k, k as u64 * 10)
            });
            assert_eq!(t.last_at_or_before(&q), below, "last_at_or_before({q})");
            let above = (q <= 2 * 1999 + 10).then(|| {
                let k = if q < 10 {
                    10
                } else if q % 2 == 0 {
                    q
                } else {
                    q + 1
                };
                (k, k as u64 * 10)
            });
            assert_eq!(t.first_at_or_after(&q), above, "first_at_or_after({q})");
        }
    }

    #[test]
    fn ranges_all_bound_kinds_both_directions() {
        use std::ops::Bound::*;
        let t = tree_with((0..500).map(|k| k * 3));
        let model: Vec<u128> = (0..500).map(|k| k * 3).collect();
        let bounds = |v: u128| [Included(v), Excluded(v), Unbounded];
        for lo in [0u128, 1, 3, 95, 96, 97, 1497, 1500] {
            for hi in [0u128, 2, 3, 95, 96, 700, 1497, 1498, 2000] {
                for b0 in bounds(lo) {
                    for b1 in bounds(hi) {
                        let expect: Vec<u128> = model
                            .iter()
                            .copied()
                            .filter(|k| (b0, b1).contains(k))
                            .collect();
                        let got: Vec<u128> = t.range((b0, b1)).map(|(k, _)| k).collect();
                        assert_eq!(got, expect, "range {b0:?}..{b1:?}");
                        let mut rev: Vec<u128> = t.range((b0, b1)).rev().map(|(k, _)| k).collect();
                        rev.reverse();
                        assert_eq!(rev, expect, "rev range {b0:?}..{b1:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn range_ends_meet_in_the_middle() {
        let t = tree_with(0..300);
        let mut r = t.range(10..=200);
        let mut seen = Vec::new();
        loop {
            match (r.next(), r.next_back()) {
                (Some(a), Some(b)) => seen.extend([a.0, b.0]),
                (Some(a), None) => seen.push(a.0),
                (None, _) => break,
            }
        }
        assert_eq!(r.next(), None);
        assert_eq!(r.next_back(), None);
        seen.sort();
        assert_eq!(seen, (10..=200).collect::<Vec<_>>());
    }

    #[test]
    fn clear_releases_memory() {
        let source = Arc::new(HeapChunks::with_chunk_bytes(64 << 10));
        let mut t: BTree<u128, u64> = BTree::new(source.clone());
        for k in 0..10_000 {
            t.insert(k, 0);
        }
        assert!(t.memory_bytes() > 0);
        assert_eq!(source.outstanding_bytes(), t.memory_bytes());
        t.clear();
        t.check_invariants();
        assert_eq!(
            (t.len(), t.memory_bytes(), source.outstanding_bytes()),
            (0, 0, 0)
        );
        t.insert(1, 1);
        assert_eq!(t.get(&1), Some(1));
        drop(t);
        assert_eq!(source.outstanding_bytes(), 0, "drop gives the chunks back");
    }

    #[test]
    fn debug_is_a_summary() {
        let t = tree_with(0..1000);
        let s = format!("{t:?}");
        assert!(s.contains("len: 1000") && s.contains("height: 2"), "{s}");
        assert!(s.len() < 300, "{s}");
    }

    #[test]
    fn tree_is_send_and_sync_and_readable_from_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<BTree<u128, u64>>();
        let t = tree_with((0..20_000).map(|k| k * 2));
        std::thread::scope(|scope| {
            for thread in 0..2u128 {
                let t = &t;
                scope.spawn(move || {
                    for k in (thread..40_000).step_by(7) {
                        let expect = (k % 2 == 0).then_some(k as u64 * 10);
                        assert_eq!(t.get(&k), expect);
                    }
                });
            }
        });
    }
}
