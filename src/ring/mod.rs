//! The in-memory ring of recent samples: one fixed-capacity ring per policy, one writer (the poll
//! cycle) and any number of concurrent readers (HTTP, enrichment, dashboard).
//!
//! May use: `domain`, crossbeam-utils, arc-swap.
//!
//! ```
//! use dictmon::domain::{BucketConfig, PolicyName, PspCategory, Sample};
//! use dictmon::ring::RingSetWriter;
//!
//! let (mut writer, rings) = RingSetWriter::new(288); // the poll cycle keeps `writer`
//! let policy = PolicyName::new("ENTRIES_WRITE").unwrap();
//! let bucket = BucketConfig { capacity: 36_000, refill_tokens: 1_200, refill_period_secs: 60 };
//! for (k, tokens) in [36_000, 30_000, 24_000].into_iter().enumerate() {
//!     let at = chrono::DateTime::from_timestamp(1_800_000_000 + 300 * k as i64, 0).unwrap();
//!     writer.push(&policy, &Sample { at, available_tokens: tokens, bucket, category: PspCategory::A });
//! }
//! // Any number of readers, on any thread, never blocking the writer:
//! let window = rings.get(&policy).unwrap().window(2);
//! let tokens: Vec<_> = window.iter().map(|s| s.available_tokens).collect();
//! assert_eq!(tokens, [30_000, 24_000]); // oldest first
//! ```
//!
//! # Shape
//!
//! A ring is an array of slots and a `head` counting every push ever made. Push number `i` goes
//! to slot `i mod capacity`. Each slot carries a sequence word (a per-slot *seqlock*): the writer
//! stores `2i + 1` before writing the sample's words and `2i + 2` after, then publishes
//! `head = i + 1`. A reader wanting push `i` reads the sequence, the words, then the sequence
//! again (after an acquire fence); it accepts the words only if both reads gave exactly `2i + 2`.
//! Anything else means the writer has since reused the slot for a newer push.
//!
//! Readers walk from the newest push back to the oldest wanted and stop at the first slot the
//! writer has reused meanwhile, so a window is always a contiguous run of pushes ending at the
//! newest one read; it can be shorter than asked only if the writer lapped the reader during the
//! read (with a 5-minute poll, never).
//!
//! # Invariants
//!
//! - **Lock-free**: the writer never waits (wait-free push); a reader retries only when the writer
//!   made progress. Nothing here takes a lock.
//! - **No torn sample**: every sample returned was written whole by one push.
//! - **Contiguous windows**: samples are returned oldest first, with consecutive push numbers.
//! - **One writer**, enforced by the types: [`RingWriter`] and [`RingSetWriter`] are not `Clone`
//!   and push through `&mut self`.
//!
//! All shared words are atomics (no `unsafe`); the memory orderings follow the classic seqlock
//! with fences (H.-J. Boehm, *Can seqlocks get along with programming language memory models?*,
//! 2012). The orderings are checked by a loom model test in this module.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use chrono::DateTime;
use crossbeam_utils::CachePadded;

use crate::domain::{BucketConfig, PolicyName, PspCategory, Sample};

/// Default ring capacity: 24 h of samples at the default 5-minute poll.
pub const DEFAULT_CAPACITY: usize = 288;

/// Words of one encoded sample.
const WORDS: usize = 6;

/// The atomic 64-bit cell a ring is built from: std's `AtomicU64` in the product, loom's in
/// the model test.
pub trait AtomicWord: Send + Sync + 'static {
    /// A cell holding `v`.
    fn new(v: u64) -> Self;
    /// Atomic load.
    fn load(&self, order: Ordering) -> u64;
    /// Atomic store.
    fn store(&self, v: u64, order: Ordering);
    /// A memory fence of the same family as the cell.
    fn fence(order: Ordering);
    /// Called before a reader retries: a spin-loop hint.
    fn spin();
}

impl AtomicWord for AtomicU64 {
    fn new(v: u64) -> Self {
        AtomicU64::new(v)
    }
    fn load(&self, order: Ordering) -> u64 {
        AtomicU64::load(self, order)
    }
    fn store(&self, v: u64, order: Ordering) {
        AtomicU64::store(self, v, order);
    }
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order);
    }
    fn spin() {
        std::hint::spin_loop();
    }
}

struct Slot<W> {
    seq: W,
    words: [W; WORDS],
}

/// The read side of one policy's ring. Shared freely (`Arc`).
pub struct Ring<W: AtomicWord = AtomicU64> {
    head: CachePadded<W>,
    slots: Box<[Slot<W>]>,
}

/// The only handle that pushes into a [`Ring`].
pub struct RingWriter<W: AtomicWord = AtomicU64> {
    ring: Arc<Ring<W>>,
}

/// A new ring of `capacity` samples (at least 1): its writer and a reader handle.
pub fn ring(capacity: usize) -> (RingWriter, Arc<Ring>) {
    RingWriter::with_capacity(capacity)
}

impl<W: AtomicWord> RingWriter<W> {
    /// A new ring of `capacity` samples (at least 1) over any [`AtomicWord`]: its writer and a
    /// reader handle.
    pub fn with_capacity(capacity: usize) -> (Self, Arc<Ring<W>>) {
        let slots = (0..capacity.max(1))
            .map(|_| Slot {
                seq: W::new(0),
                words: std::array::from_fn(|_| W::new(0)),
            })
            .collect();
        let ring = Arc::new(Ring {
            head: CachePadded::new(W::new(0)),
            slots,
        });
        (Self { ring: ring.clone() }, ring)
    }

    /// Appends a sample, overwriting the oldest once the ring is full. Never blocks.
    pub fn push(&mut self, sample: &Sample) {
        let ring = &*self.ring;
        // Only this writer stores `head`, so a relaxed load reads our own last store.
        let i = ring.head.load(Ordering::Relaxed);
        let slot = ring.slot(i);
        slot.seq.store(2 * i + 1, Ordering::Relaxed);
        W::fence(Ordering::Release);
        for (cell, word) in slot.words.iter().zip(encode(sample)) {
            cell.store(word, Ordering::Relaxed);
        }
        slot.seq.store(2 * i + 2, Ordering::Release);
        ring.head.store(i + 1, Ordering::Release);
    }

    /// The read side of this ring.
    pub fn reader(&self) -> Arc<Ring<W>> {
        self.ring.clone()
    }
}

impl<W: AtomicWord> Ring<W> {
    /// How many samples the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many pushes were ever made.
    pub fn pushes(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// The latest sample, if any.
    pub fn latest(&self) -> Option<Sample> {
        let mut one = Vec::with_capacity(1);
        self.read_latest_into(1, &mut one);
        one.pop()
    }

    /// Up to `n` most recent samples, oldest first.
    pub fn window(&self, n: usize) -> Vec<Sample> {
        let mut out = Vec::with_capacity(n.min(self.capacity()));
        self.read_latest_into(n, &mut out);
        out
    }

    /// Fills `out` (cleared first) with up to `n` most recent samples, oldest first, and returns
    /// the push number of the first one. Reuses `out`'s allocation.
    pub fn read_latest_into(&self, n: usize, out: &mut Vec<Sample>) -> u64 {
        let n = n.min(self.capacity()) as u64;
        loop {
            out.clear();
            let head = self.head.load(Ordering::Acquire);
            let oldest_wanted = head.saturating_sub(n);
            let mut first = head;
            while first > oldest_wanted {
                match self.read_slot(first - 1) {
                    Some(sample) => out.push(sample),
                    None => break, // the writer reused this slot: older ones are gone too
                }
                first -= 1;
            }
            // Empty although something was wanted: the writer lapped even the newest slot
            // while we read it. It made progress, so retrying is lock-free.
            if out.is_empty() && oldest_wanted < head {
                W::spin();
                continue;
            }
            out.reverse();
            return first;
        }
    }

    fn slot(&self, i: u64) -> &Slot<W> {
        // `len` fits in u64 and the remainder is below `len`, so this index is in bounds.
        let len = self.slots.len() as u64;
        &self.slots[(i % len) as usize]
    }

    /// Push `i` if its slot still holds it, whole.
    fn read_slot(&self, i: u64) -> Option<Sample> {
        let slot = self.slot(i);
        let expected = 2 * i + 2;
        if slot.seq.load(Ordering::Acquire) != expected {
            return None;
        }
        let mut words = [0_u64; WORDS];
        for (word, cell) in words.iter_mut().zip(&slot.words) {
            *word = cell.load(Ordering::Relaxed);
        }
        W::fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != expected {
            return None;
        }
        decode(words)
    }
}

/// Word layout of a sample in a slot (memory only, never on disk): response time seconds,
/// nanoseconds | category code point << 32, available tokens, capacity, refill tokens, refill
/// period. Lossless for every `Sample`.
fn encode(s: &Sample) -> [u64; WORDS] {
    [
        s.at.timestamp().cast_unsigned(),
        u64::from(s.at.timestamp_subsec_nanos())
            | (u64::from(u32::from(s.category.as_char())) << 32),
        s.available_tokens.cast_unsigned(),
        s.bucket.capacity.cast_unsigned(),
        s.bucket.refill_tokens.cast_unsigned(),
        s.bucket.refill_period_secs.cast_unsigned(),
    ]
}

fn decode(w: [u64; WORDS]) -> Option<Sample> {
    let [
        secs,
        nanos_cat,
        available,
        capacity,
        refill_tokens,
        refill_period,
    ] = w;
    Some(Sample {
        at: DateTime::from_timestamp(secs.cast_signed(), nanos_cat as u32)?,
        available_tokens: available.cast_signed(),
        bucket: BucketConfig {
            capacity: capacity.cast_signed(),
            refill_tokens: refill_tokens.cast_signed(),
            refill_period_secs: refill_period.cast_signed(),
        },
        category: PspCategory::from_char(char::from_u32((nanos_cat >> 32) as u32)?),
    })
}

type RingMap = HashMap<PolicyName, Arc<Ring>>;

/// The read side of every policy's ring. Cheap to clone; readers never block the writer, even
/// while it adds a policy (the map is replaced copy-on-write).
#[derive(Clone)]
pub struct RingSet {
    rings: Arc<ArcSwap<RingMap>>,
}

/// The one writer of a [`RingSet`].
pub struct RingSetWriter {
    writers: HashMap<PolicyName, RingWriter>,
    published: Arc<ArcSwap<RingMap>>,
    capacity: usize,
}

impl RingSetWriter {
    /// An empty set whose rings hold `capacity` samples each, and its reader.
    pub fn new(capacity: usize) -> (Self, RingSet) {
        let published = Arc::new(ArcSwap::from_pointee(RingMap::new()));
        let writer = Self {
            writers: HashMap::new(),
            published: published.clone(),
            capacity,
        };
        (writer, RingSet { rings: published })
    }

    /// Appends a sample to the policy's ring, creating the ring on first sight.
    pub fn push(&mut self, policy: &PolicyName, sample: &Sample) {
        if let Some(w) = self.writers.get_mut(policy) {
            w.push(sample);
            return;
        }
        let (mut w, reader) = ring(self.capacity);
        w.push(sample);
        self.writers.insert(policy.clone(), w);
        let mut map = RingMap::clone(&self.published.load());
        map.insert(policy.clone(), reader);
        self.published.store(Arc::new(map));
    }
}

impl RingSet {
    /// The ring of one policy, if it was ever pushed to.
    pub fn get(&self, policy: &PolicyName) -> Option<Arc<Ring>> {
        self.rings.load().get(policy).cloned()
    }

    /// Every policy with its ring, sorted by name.
    pub fn all(&self) -> Vec<(PolicyName, Arc<Ring>)> {
        let mut all: Vec<_> = self
            .rings
            .load()
            .iter()
            .map(|(name, ring)| (name.clone(), ring.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample(i: u64) -> Sample {
        let n = i.cast_signed();
        Sample {
            at: DateTime::from_timestamp(1_800_000_000 + n, (i % 1000) as u32).expect("in range"),
            available_tokens: n - 5,
            bucket: BucketConfig {
                capacity: n * 3 + 1,
                refill_tokens: n + 7,
                refill_period_secs: 60,
            },
            category: PspCategory::KNOWN[(i % 8) as usize],
        }
    }

    #[test]
    fn encoding_round_trips_every_field() {
        let mut s = sample(42);
        s.category = PspCategory::Unknown('ç');
        s.available_tokens = i64::MIN;
        assert_eq!(decode(encode(&s)), Some(s));
    }

    #[test]
    fn window_is_oldest_first_and_bounded_by_capacity() {
        let (mut w, r) = ring(4);
        assert_eq!(r.window(3), vec![]);
        assert_eq!(r.latest(), None);
        for i in 0..6 {
            w.push(&sample(i));
        }
        assert_eq!(r.pushes(), 6);
        assert_eq!(r.window(10), (2..6).map(sample).collect::<Vec<_>>());
        assert_eq!(r.window(2), vec![sample(4), sample(5)]);
        assert_eq!(r.latest(), Some(sample(5)));
        let mut out = Vec::new();
        assert_eq!(r.read_latest_into(3, &mut out), 3);
    }

    #[test]
    fn ring_set_creates_a_ring_per_policy() {
        let (mut w, set) = RingSetWriter::new(8);
        let a = PolicyName::new("ENTRIES_WRITE").expect("valid");
        let b = PolicyName::new("CLAIMS_READ").expect("valid");
        let before = set.clone();
        w.push(&a, &sample(1));
        w.push(&b, &sample(2));
        w.push(&a, &sample(3));
        let names: Vec<_> = before.all().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec![b.clone(), a.clone()]);
        assert_eq!(
            set.get(&a).map(|r| r.window(8)),
            Some(vec![sample(1), sample(3)])
        );
        assert_eq!(set.get(&b).and_then(|r| r.latest()), Some(sample(2)));
    }
}

/// Loom model of the seqlock: explores every interleaving (and every value a relaxed load may
/// return) of one writer and one reader on a tiny ring.
#[cfg(test)]
mod loom_model {
    use std::sync::atomic::Ordering;

    use super::tests::sample;
    use super::{AtomicWord, RingWriter};

    struct LoomWord(loom::sync::atomic::AtomicU64);

    impl AtomicWord for LoomWord {
        fn new(v: u64) -> Self {
            Self(loom::sync::atomic::AtomicU64::new(v))
        }
        fn load(&self, order: Ordering) -> u64 {
            self.0.load(order)
        }
        fn store(&self, v: u64, order: Ordering) {
            self.0.store(v, order);
        }
        fn fence(order: Ordering) {
            loom::sync::atomic::fence(order);
        }
        fn spin() {
            loom::hint::spin_loop();
        }
    }

    #[test]
    fn reader_sees_only_whole_contiguous_pushes() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let (mut writer, reader) = RingWriter::<LoomWord>::with_capacity(2);
            writer.push(&sample(0));
            let t = loom::thread::spawn(move || {
                writer.push(&sample(1));
                writer.push(&sample(2));
            });
            let mut out = Vec::new();
            let first = reader.read_latest_into(2, &mut out);
            assert!(!out.is_empty());
            for (k, s) in out.iter().enumerate() {
                assert_eq!(*s, sample(first + k as u64), "torn or out-of-order sample");
            }
            t.join().expect("writer thread");
            assert_eq!(reader.window(2), vec![sample(1), sample(2)]);
        });
    }
}
