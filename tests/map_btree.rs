//! The map B+-tree against `std::collections::BTreeMap` (random operation
//! sequences, invariants checked after every operation) and at scale in the
//! access patterns the engine leans on: append (increasing keys) and truncate
//! (removing the smallest keys).

use proptest::prelude::*;
use rewind::engine::map::arena::HeapChunks;
use rewind::engine::map::btree::{BTree, LEAF_CAP};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

fn new_tree(chunk_bytes: usize) -> BTree<u128, u64> {
    BTree::new(Arc::new(HeapChunks::with_chunk_bytes(chunk_bytes)))
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u128, u64),
    Remove(u128),
    Get(u128),
    LastAtOrBefore(u128),
    FirstAtOrAfter(u128),
    Range(Bound<u128>, Bound<u128>, bool),
    /// `count` inserts at `start, start + step, ...` (increasing, like appends).
    InsertRun(u128, u16, u8),
    /// `count` removes at `start, start + step, ...` (like a truncate).
    RemoveRun(u128, u16, u8),
    /// One `sweep_leaf` at this key, dropping keys `k` with `k % m == 0`.
    SweepLeaf(u128, u8),
    /// `sweep_leaf` from the smallest key along `next` to the end, dropping
    /// keys `k` with `k % m == 0`.
    SweepAll(u8),
}

fn swept(k: &u128, m: u8) -> bool {
    k.is_multiple_of(u128::from(m))
}

fn bound(keys: u128) -> impl Strategy<Value = Bound<u128>> {
    prop_oneof![
        (0..keys).prop_map(Bound::Included),
        (0..keys).prop_map(Bound::Excluded),
        Just(Bound::Unbounded),
    ]
}

fn op(keys: u128, max_run: u16) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0..keys, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        20 => (0..keys).prop_map(Op::Remove),
        8 => (0..keys).prop_map(Op::Get),
        8 => (0..keys + 2).prop_map(Op::LastAtOrBefore),
        8 => (0..keys + 2).prop_map(Op::FirstAtOrAfter),
        6 => (bound(keys + 2), bound(keys + 2), any::<bool>()).prop_map(|(a, b, rev)| Op::Range(a, b, rev)),
        3 => (0..keys, 1..=max_run, 1..4u8).prop_map(|(s, n, step)| Op::InsertRun(s, n, step)),
        3 => (0..keys, 1..=max_run, 1..4u8).prop_map(|(s, n, step)| Op::RemoveRun(s, n, step)),
        4 => (0..keys + 2, 1..4u8).prop_map(|(k, m)| Op::SweepLeaf(k, m)),
        1 => (1..4u8).prop_map(Op::SweepAll),
    ]
}

/// True when `BTreeMap::range` would panic on these bounds.
fn inverted(a: Bound<u128>, b: Bound<u128>) -> bool {
    use Bound::*;
    match (a, b) {
        (Included(x) | Excluded(x), Included(y) | Excluded(y)) if x > y => true,
        (Excluded(x), Excluded(y)) => x == y,
        _ => false,
    }
}

fn run(ops: &[Op], chunk_bytes: usize) {
    let mut tree = new_tree(chunk_bytes);
    let mut model = BTreeMap::new();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Insert(k, v) => {
                assert_eq!(tree.insert(k, v), model.insert(k, v), "step {step}: {op:?}")
            }
            Op::Remove(k) => assert_eq!(tree.remove(&k), model.remove(&k), "step {step}: {op:?}"),
            Op::Get(k) => assert_eq!(tree.get(&k), model.get(&k).copied(), "step {step}: {op:?}"),
            Op::LastAtOrBefore(k) => {
                let expect = model.range(..=k).next_back().map(|(k, v)| (*k, *v));
                assert_eq!(tree.last_at_or_before(&k), expect, "step {step}: {op:?}");
            }
            Op::FirstAtOrAfter(k) => {
                let expect = model.range(k..).next().map(|(k, v)| (*k, *v));
                assert_eq!(tree.first_at_or_after(&k), expect, "step {step}: {op:?}");
            }
            Op::Range(a, b, rev) => {
                let mut expect: Vec<(u128, u64)> = if inverted(a, b) {
                    Vec::new()
                } else {
                    model.range((a, b)).map(|(k, v)| (*k, *v)).collect()
                };
                let got: Vec<(u128, u64)> = if rev {
                    expect.reverse();
                    tree.range((a, b)).rev().collect()
                } else {
                    tree.range((a, b)).collect()
                };
                assert_eq!(got, expect, "step {step}: {op:?}");
            }
            Op::InsertRun(start, count, step_by) => {
                for k in (start..).step_by(step_by.into()).take(count.into()) {
                    assert_eq!(
                        tree.insert(k, k as u64),
                        model.insert(k, k as u64),
                        "step {step}: {op:?} at {k}"
                    );
                }
            }
            Op::RemoveRun(start, count, step_by) => {
                for k in (start..).step_by(step_by.into()).take(count.into()) {
                    assert_eq!(
                        tree.remove(&k),
                        model.remove(&k),
                        "step {step}: {op:?} at {k}"
                    );
                }
            }
            Op::SweepLeaf(at, m) => {
                let (removed, next) = tree.sweep_leaf(&at, |k, _| swept(k, m));
                let gone: Vec<u128> = model
                    .keys()
                    .copied()
                    .filter(|k| !tree.contains_key(k))
                    .collect();
                assert_eq!(removed, gone.len(), "step {step}: {op:?}");
                assert!(
                    gone.iter().all(|k| swept(k, m)),
                    "step {step}: {op:?} dropped a kept key"
                );
                if let Some(next) = next {
                    assert!(
                        next > at && model.contains_key(&next),
                        "step {step}: {op:?} next {next}"
                    );
                    assert!(
                        gone.iter().all(|k| *k < next),
                        "step {step}: {op:?} swept past next"
                    );
                }
                if let (Some(lo), Some(hi)) = (gone.first(), gone.last()) {
                    assert!(
                        model
                            .range(lo..=hi)
                            .all(|(k, _)| !swept(k, m) || !tree.contains_key(k)),
                        "step {step}: {op:?} left a droppable key inside the swept leaf"
                    );
                }
                for k in gone {
                    model.remove(&k);
                }
            }
            Op::SweepAll(m) => {
                let mut at = tree.first().map(|(k, _)| k);
                let mut steps = 0;
                while let Some(k) = at {
                    let (_, next) = tree.sweep_leaf(&k, |k, _| swept(k, m));
                    assert!(
                        next.is_none_or(|n| n > k),
                        "step {step}: the walk goes forward"
                    );
                    at = next;
                    steps += 1;
                    assert!(steps <= model.len() + 1, "step {step}: the walk ends");
                }
                model.retain(|k, _| !swept(k, m));
            }
        }
        tree.check_invariants();
        assert_eq!(tree.len(), model.len(), "step {step}: {op:?}");
    }
    assert!(
        tree.iter().eq(model.iter().map(|(k, v)| (*k, *v))),
        "final contents differ"
    );
    assert!(
        tree.iter()
            .rev()
            .eq(model.iter().rev().map(|(k, v)| (*k, *v))),
        "final contents differ backwards"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Small key space: many replaces, hits and misses; trees of height 1 to 2.
    #[test]
    fn matches_btreemap_small_keys(ops in proptest::collection::vec(op(300, 40), 1..300)) {
        run(&ops, 4096);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 800, ..ProptestConfig::default() })]

    /// Larger key space with runs: trees of height 3, splits, borrows and
    /// merges of inner nodes.
    #[test]
    fn matches_btreemap_large_keys(ops in proptest::collection::vec(op(6000, 1500), 1..120)) {
        run(&ops, 64 << 10);
    }
}

const SCALE: u64 = 200_000;

/// Keys shaped like the engine's: a high part and a block address.
fn key(i: u64) -> u128 {
    (7u128 << 96) | (u128::from(i) * 8)
}

fn assert_packed(tree: &BTree<u128, u64>, what: &str) {
    let leaves_needed = tree.len().div_ceil(LEAF_CAP);
    assert!(
        tree.node_count() * 100 <= leaves_needed * 106,
        "{what}: {} nodes for {} entries ({leaves_needed} full leaves would do)",
        tree.node_count(),
        tree.len()
    );
}

#[test]
fn append_increasing_keys_at_scale() {
    let mut tree = new_tree(2 << 20);
    for i in 0..SCALE {
        assert_eq!(tree.insert(key(i), i), None);
    }
    tree.check_invariants();
    assert_eq!(tree.len(), SCALE as usize);
    assert_packed(&tree, "append");
    assert!(tree.height() <= 4, "height {}", tree.height());
    for i in (0..SCALE).step_by(997) {
        assert_eq!(tree.get(&key(i)), Some(i));
        assert_eq!(tree.get(&(key(i) + 1)), None);
        assert_eq!(tree.last_at_or_before(&(key(i) + 3)), Some((key(i), i)));
    }
    assert!(tree.iter().map(|(_, v)| v).eq(0..SCALE));
    assert!(tree.iter().rev().map(|(_, v)| v).eq((0..SCALE).rev()));
}

#[test]
fn remove_smallest_keys_at_scale() {
    let mut tree = new_tree(2 << 20);
    for i in 0..SCALE {
        tree.insert(key(i), i);
    }
    let memory = tree.memory_bytes();
    for i in 0..SCALE {
        assert_eq!(tree.first(), Some((key(i), i)));
        assert_eq!(tree.remove(&key(i)), Some(i));
        if i % 50_000 == 0 {
            tree.check_invariants();
        }
    }
    tree.check_invariants();
    assert!(tree.is_empty());
    assert_eq!(tree.memory_bytes(), memory);
}

#[test]
fn truncate_half_then_append_more() {
    let mut tree = new_tree(2 << 20);
    for i in 0..SCALE {
        tree.insert(key(i), i);
    }
    for i in 0..SCALE / 2 {
        tree.remove(&key(i));
    }
    tree.check_invariants();
    assert_eq!(tree.first(), Some((key(SCALE / 2), SCALE / 2)));
    let memory = tree.memory_bytes();
    for i in SCALE..SCALE + SCALE / 2 {
        tree.insert(key(i), i);
    }
    tree.check_invariants();
    assert_eq!(
        tree.memory_bytes(),
        memory,
        "nodes freed by the truncate are reused by the appends"
    );
    assert!(tree
        .range(..)
        .map(|(_, v)| v)
        .eq(SCALE / 2..SCALE + SCALE / 2));
}

#[test]
fn sliding_window_append_and_truncate() {
    // A journal-like map: append at the head, expire at the tail.
    let window = 50_000;
    let mut tree = new_tree(2 << 20);
    let mut steady_memory = 0;
    for i in 0..4 * SCALE {
        tree.insert(key(i), i);
        if i >= window {
            assert_eq!(tree.remove(&key(i - window)), Some(i - window));
        }
        if i == 2 * window {
            steady_memory = tree.memory_bytes();
        }
        if i % 100_000 == 0 {
            tree.check_invariants();
        }
    }
    tree.check_invariants();
    assert_eq!(tree.len(), window as usize);
    assert!(
        tree.memory_bytes() <= steady_memory,
        "memory grew from {steady_memory} to {}",
        tree.memory_bytes()
    );
    assert_packed(&tree, "sliding window");
}

#[test]
fn prepend_decreasing_keys_and_remove_largest_at_scale() {
    let mut tree = new_tree(2 << 20);
    for i in (0..SCALE).rev() {
        tree.insert(key(i), i);
    }
    tree.check_invariants();
    assert!(tree.iter().map(|(_, v)| v).eq(0..SCALE));
    for i in (SCALE / 4..SCALE).rev() {
        assert_eq!(tree.last(), Some((key(i), i)));
        assert_eq!(tree.remove(&key(i)), Some(i));
    }
    tree.check_invariants();
    assert_eq!(tree.len(), (SCALE / 4) as usize);
}

#[test]
fn random_order_at_scale() {
    // xorshift permutation-ish order; deterministic.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tree = new_tree(2 << 20);
    let mut model = BTreeMap::new();
    for _ in 0..SCALE {
        let k = next() % (2 * SCALE);
        assert_eq!(tree.insert(key(k), k), model.insert(key(k), k));
    }
    tree.check_invariants();
    let fill = tree.len() as f64 / (tree.node_count() * LEAF_CAP) as f64;
    assert!(fill > 0.7, "random inserts fill leaves to {fill:.2}");
    for _ in 0..SCALE {
        let k = next() % (2 * SCALE);
        assert_eq!(tree.remove(&key(k)), model.remove(&key(k)));
    }
    tree.check_invariants();
    assert!(tree.iter().eq(model.iter().map(|(k, v)| (*k, *v))));
}
