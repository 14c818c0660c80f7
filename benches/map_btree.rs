//! Map B+-tree: point lookups, neighbour lookups, the append and truncate
//! patterns, and range scans, on `BTree<u128, u64>` with 1 M entries.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rewind::engine::map::arena::HeapChunks;
use rewind::engine::map::btree::BTree;
use std::collections::BTreeMap;
use std::sync::Arc;

const ENTRIES: u64 = 1 << 20;

fn key(i: u64) -> u128 {
    (7u128 << 96) | (u128::from(i) * 8)
}

fn filled() -> BTree<u128, u64> {
    filled_with(ENTRIES)
}

fn filled_with(entries: u64) -> BTree<u128, u64> {
    let mut tree = BTree::new(Arc::new(HeapChunks::new()));
    for i in 0..entries {
        tree.insert(key(i), i);
    }
    tree
}

/// Deterministic pseudo-random indices in `0..ENTRIES`.
fn indices(n: usize) -> Vec<u64> {
    indices_below(n, ENTRIES)
}

fn indices_below(n: usize, bound: u64) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let tree = filled();
    let model: BTreeMap<u128, u64> = (0..ENTRIES).map(|i| (key(i), i)).collect();
    let probes = indices(4096);
    let mut group = c.benchmark_group("map_btree/lookup_1M");
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("get", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| tree.get(&key(*i)).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("std_btreemap_get", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| model.get(&key(*i)).copied().unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("last_at_or_before", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| tree.last_at_or_before(&(key(*i) + 3)).map_or(0, |(_, v)| v))
                .sum::<u64>()
        })
    });
    group.finish();

    // In cache: 16 Ki entries (~400 KiB of nodes).
    let small = filled_with(1 << 14);
    let small_model: BTreeMap<u128, u64> = (0..1 << 14).map(|i| (key(i), i)).collect();
    let probes = indices_below(4096, 1 << 14);
    let mut group = c.benchmark_group("map_btree/lookup_16K");
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("get", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| small.get(&key(*i)).unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("std_btreemap_get", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| small_model.get(&key(*i)).copied().unwrap_or(0))
                .sum::<u64>()
        })
    });
    group.bench_function("last_at_or_before", |b| {
        b.iter(|| {
            probes
                .iter()
                .map(|i| {
                    small
                        .last_at_or_before(&(key(*i) + 3))
                        .map_or(0, |(_, v)| v)
                })
                .sum::<u64>()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("map_btree/scan_1M");
    group.throughput(Throughput::Elements(ENTRIES));
    group.bench_function("iter", |b| {
        b.iter(|| tree.iter().map(|(_, v)| v).sum::<u64>())
    });
    group.bench_function("iter_rev", |b| {
        b.iter(|| tree.iter().rev().map(|(_, v)| v).sum::<u64>())
    });
    group.finish();
}

fn patterns(c: &mut Criterion) {
    let mut group = c.benchmark_group("map_btree/pattern_1M");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ENTRIES));
    group.bench_function("append", |b| b.iter(|| black_box(filled())));
    group.bench_function("truncate", |b| {
        b.iter_batched(
            filled,
            |mut tree| {
                for i in 0..ENTRIES {
                    tree.remove(&key(i));
                }
                tree
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("random_insert", |b| {
        let order = indices(ENTRIES as usize);
        b.iter(|| {
            let mut tree = BTree::new(Arc::new(HeapChunks::new()));
            for i in &order {
                tree.insert(key(*i), *i);
            }
            tree
        })
    });
    group.finish();
}

criterion_group!(benches, lookups, patterns);
criterion_main!(benches);
