//! Where each I/O goes and what it carries: a hand-written wyrand PRNG, the
//! per-queue offset stream ([`Offsets`]: random and I/O-size aligned, or
//! sequential with wraparound), the read/write choice, and the data pattern
//! of `--verify`.
//!
//! Invariant: every offset an [`Offsets`] yields is the first block of an
//! I/O that lies wholly inside the configured range; the same seed gives
//! the same sequence; nothing here allocates.

/// wyrand (Wang Yi's 64-bit generator): one multiply-xor per draw, passes
/// BigCrush, more than fast enough to stay off a load generator's profile.
#[derive(Debug, Clone)]
pub struct WyRand(u64);

impl WyRand {
    pub fn new(seed: u64) -> Self {
        WyRand(seed)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }
    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below
    /// `n / 2^64`, nothing a benchmark can see). `n` must be positive.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The I/Os of one queue: which block each one starts at.
#[derive(Debug, Clone)]
pub struct Offsets {
    /// First block of the range.
    base_lba: u64,
    /// Blocks per I/O.
    blocks_per_io: u64,
    /// I/O-sized units in the range.
    units: u64,
    /// Next unit (sequential).
    next: u64,
    random: bool,
}

impl Offsets {
    /// The I/Os of queue `index` of `count` over `units` I/O-sized units
    /// from block `base_lba`. Sequential streams of different queues start
    /// `units / count` apart so they do not all touch the same blocks.
    pub fn new(
        base_lba: u64,
        blocks_per_io: u64,
        units: u64,
        random: bool,
        index: usize,
        count: usize,
    ) -> Self {
        let units = units.max(1);
        let start = (u128::from(units) * index as u128 / count.max(1) as u128) as u64;
        Offsets {
            base_lba,
            blocks_per_io,
            units,
            next: start,
            random,
        }
    }

    /// First block of the next I/O.
    #[inline]
    pub fn next_lba(&mut self, rng: &mut WyRand) -> u64 {
        let unit = if self.random {
            rng.below(self.units)
        } else {
            let u = self.next;
            self.next += 1;
            if self.next == self.units {
                self.next = 0;
            }
            u
        };
        self.base_lba + unit * self.blocks_per_io
    }
}

/// Whether the next I/O is a read, for a mix of `read_percent` reads.
#[inline]
pub fn next_is_read(rng: &mut WyRand, read_percent: u8) -> bool {
    match read_percent {
        0 => false,
        100.. => true,
        p => rng.below(100) < u64::from(p),
    }
}

/// The pattern `--verify` writes at `lba`: a wyrand stream seeded by the run
/// seed and the block address, so a block read back from the wrong place
/// does not match.
pub fn fill_pattern(buf: &mut [u8], seed: u64, lba: u64) {
    let mut rng = pattern_rng(seed, lba);
    for chunk in buf.chunks_mut(8) {
        let w = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// Whether `buf` holds exactly [`fill_pattern`]`(seed, lba)`.
pub fn check_pattern(buf: &[u8], seed: u64, lba: u64) -> bool {
    let mut rng = pattern_rng(seed, lba);
    buf.chunks(8).all(|chunk| {
        let w = rng.next_u64().to_le_bytes();
        chunk == &w[..chunk.len()]
    })
}

fn pattern_rng(seed: u64, lba: u64) -> WyRand {
    WyRand::new(seed ^ lba.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wyrand_is_deterministic_and_spread() {
        let mut a = WyRand::new(7);
        let mut b = WyRand::new(7);
        let mut hits = [0u32; 10];
        for _ in 0..100_000 {
            let x = a.below(10);
            assert_eq!(x, b.below(10));
            hits[x as usize] += 1;
        }
        assert!(
            hits.iter().all(|&h| (9_000..11_000).contains(&h)),
            "{hits:?}"
        );
    }

    #[test]
    fn random_offsets_stay_aligned_and_in_range() {
        let mut rng = WyRand::new(1);
        let mut o = Offsets::new(1000, 8, 50, true, 0, 1);
        let mut seen = [false; 50];
        for _ in 0..10_000 {
            let lba = o.next_lba(&mut rng);
            assert!((1000..1000 + 50 * 8).contains(&lba));
            assert_eq!((lba - 1000) % 8, 0);
            seen[((lba - 1000) / 8) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn sequential_offsets_wrap_and_start_apart() {
        let mut rng = WyRand::new(1);
        let mut q0 = Offsets::new(0, 2, 4, false, 0, 2);
        let mut q1 = Offsets::new(0, 2, 4, false, 1, 2);
        let a: Vec<u64> = (0..6).map(|_| q0.next_lba(&mut rng)).collect();
        let b: Vec<u64> = (0..6).map(|_| q1.next_lba(&mut rng)).collect();
        assert_eq!(a, [0, 2, 4, 6, 0, 2]);
        assert_eq!(b, [4, 6, 0, 2, 4, 6]);
    }

    #[test]
    fn read_mix_follows_the_percentage() {
        let mut rng = WyRand::new(3);
        let reads = (0..100_000).filter(|_| next_is_read(&mut rng, 70)).count();
        assert!((69_000..71_000).contains(&reads), "{reads}");
        assert!(!(0..100).any(|_| next_is_read(&mut rng, 0)));
        assert!((0..100).all(|_| next_is_read(&mut rng, 100)));
    }

    #[test]
    fn pattern_checks_itself_and_not_its_neighbour() {
        let mut buf = vec![0u8; 4100];
        fill_pattern(&mut buf, 42, 9);
        assert!(check_pattern(&buf, 42, 9));
        assert!(!check_pattern(&buf, 42, 10));
        assert!(!check_pattern(&buf, 43, 9));
        buf[4099] ^= 1;
        assert!(!check_pattern(&buf, 42, 9));
    }
}
