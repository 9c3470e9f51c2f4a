//! The binary's allocator: mimalloc, with a bounded cache of large freed blocks in front of it.
//!
//! Why: the binary has mimalloc give freed memory back to the system at once (`main.rs`: a
//! day's buffers would otherwise stay resident, and an idle thread keeps its pages), so each
//! day's large buffers — the raw events, the string columns, the Parquet pages — were faulted
//! in afresh: over the bench's 90 agent days, 950 k page faults and 2.8 s of system time in a
//! 5.9 s transform. Days are alike: the blocks one day frees are the sizes the next day asks
//! for. While a [`Keeping`] lives (a run transforming days already landed), this cache keeps
//! freed blocks over 64 KiB, by size class, up to [`DEFAULT_BUDGET`] bytes in all, and hands
//! them out again; a block the cache has no room for goes back to mimalloc (and so to the
//! system). What the process holds beyond mimalloc's own is at most the budget; when the last
//! `Keeping` is dropped the cache is emptied and keeps nothing until the next.
//!
//! A block is allocated at its class's size (at most a quarter above the request, four classes
//! per doubling); pages of it never written are never faulted in. `realloc` within one class
//! keeps the block (a growing `Vec` copies once per class, not per doubling of mimalloc's).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks larger than this are cached; smaller ones live in mimalloc's pages, which it reuses.
const MIN_CACHED: usize = 64 * 1024;
const CLASSES_PER_DOUBLING: usize = 4;
/// Classes from just above 2^16 (= `MIN_CACHED`) to 2^26 (64 MiB); larger blocks pass through.
const FIRST_EXPONENT: u32 = 16;
const LAST_EXPONENT: u32 = 26;
const CLASSES: usize = (LAST_EXPONENT - FIRST_EXPONENT) as usize * CLASSES_PER_DOUBLING;
/// Blocks kept per class.
const SLOTS: usize = 16;
/// Every cached block is allocated with this alignment, so any request up to it can take one.
const ALIGN: usize = 64;

/// The most freed memory the cache keeps while [`Keeping`], unless `GLADLY_WFM_BLOCK_CACHE_MIB`
/// says otherwise (the bench's agent transform: 16 MiB saved 57 % of the faults that 64 MiB
/// saves, 32 MiB 80 %, 128 MiB nothing more).
pub const DEFAULT_BUDGET: usize = 64 << 20;
static KEEPING_BUDGET: AtomicUsize = AtomicUsize::new(DEFAULT_BUDGET);
/// The budget in force: none unless a [`Keeping`] is alive.
static BUDGET: AtomicUsize = AtomicUsize::new(0);

/// Sets the budget the next [`Keeping`] puts in force (0: the cache stays off).
pub fn set_keeping_budget(bytes: usize) {
    KEEPING_BUDGET.store(bytes, Ordering::Relaxed);
}

/// The cache is on while one of these lives: a run that transforms days already landed, one
/// after the other, with nothing else in the process. Elsewhere a kept block is memory on top
/// of other stages' (extraction's answers, the load's plans): on a fresh 1-day run with all
/// stages, 64 MiB kept raised the peak from 82–88 to 120–125 MiB, and such a run has no next
/// day to reuse them. Dropping it gives everything back.
/// Overlapping ones are counted: the cache goes off when the last is dropped.
pub struct Keeping {
    reused_before: usize,
}

static KEEPERS: AtomicUsize = AtomicUsize::new(0);
/// Blocks handed out again, ever (a line in the run's debug log; a test reads it).
static REUSED: AtomicUsize = AtomicUsize::new(0);

impl Keeping {
    pub fn start() -> Keeping {
        KEEPERS.fetch_add(1, Ordering::SeqCst);
        BUDGET.store(KEEPING_BUDGET.load(Ordering::Relaxed), Ordering::SeqCst);
        Keeping {
            reused_before: REUSED.load(Ordering::Relaxed),
        }
    }

    /// Blocks handed out again since this started.
    pub fn reused(&self) -> usize {
        REUSED.load(Ordering::Relaxed) - self.reused_before
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        if KEEPERS.fetch_sub(1, Ordering::SeqCst) == 1 {
            BUDGET.store(0, Ordering::SeqCst);
            release();
        }
    }
}

/// The class of a request and the size its blocks are allocated with; `None`: not cached.
fn class_of(size: usize, align: usize) -> Option<(usize, usize)> {
    if size <= MIN_CACHED || align > ALIGN {
        return None;
    }
    let s = size - 1;
    let exponent = usize::BITS - 1 - s.leading_zeros(); // 2^exponent <= s < 2^(exponent+1)
    if exponent >= LAST_EXPONENT {
        return None;
    }
    let quarter = (s >> (exponent - 2)) & 3;
    let class = (exponent - FIRST_EXPONENT) as usize * CLASSES_PER_DOUBLING + quarter;
    Some((class, (5 + quarter) << (exponent - 2)))
}

struct Bins {
    /// Per class, the blocks kept (the last kept is the first taken again).
    blocks: [[usize; SLOTS]; CLASSES],
    counts: [u8; CLASSES],
    bytes: usize,
}

// A lock, not per-thread caches: a day's blocks are freed on the thread that wrote them and
// wanted on the next day's, and large blocks come and go a few thousand times a day.
static BINS: Mutex<Bins> = Mutex::new(Bins {
    blocks: [[0; SLOTS]; CLASSES],
    counts: [0; CLASSES],
    bytes: 0,
});

fn bins() -> std::sync::MutexGuard<'static, Bins> {
    // Nothing under the lock can panic; a poisoned lock still holds consistent bins.
    BINS.lock().unwrap_or_else(|e| e.into_inner())
}

fn take(class: usize, class_size: usize) -> Option<*mut u8> {
    // Off (the bins are empty or being emptied): no lock for every large allocation.
    if BUDGET.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let mut b = bins();
    let n = b.counts[class] as usize;
    if n == 0 {
        return None;
    }
    b.counts[class] -= 1;
    b.bytes -= class_size;
    REUSED.fetch_add(1, Ordering::Relaxed);
    Some(b.blocks[class][n - 1] as *mut u8)
}

/// Keeps a freed block if the budget allows; `false`: the caller frees it.
fn keep(ptr: *mut u8, class: usize, class_size: usize) -> bool {
    if BUDGET.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let mut b = bins();
    let n = b.counts[class] as usize;
    // Read under the lock: a `release` that ran before sees the budget at 0 first, so no block
    // is kept after the cache was emptied for good.
    if n == SLOTS || b.bytes + class_size > BUDGET.load(Ordering::SeqCst) {
        return false;
    }
    b.blocks[class][n] = ptr as usize;
    b.counts[class] += 1;
    b.bytes += class_size;
    true
}

/// Gives every cached block back to mimalloc (and so to the system).
fn release() {
    // Taken out under the lock, freed after it: other threads' allocations need not wait for
    // the system calls that give the memory back.
    let (blocks, counts) = {
        let mut b = bins();
        let out = (b.blocks, b.counts);
        b.counts = [0; CLASSES];
        b.bytes = 0;
        out
    };
    for (class, blocks) in blocks.iter().enumerate() {
        for &ptr in &blocks[..counts[class] as usize] {
            // SAFETY: each cached pointer came from mimalloc and was owned by the cache alone.
            unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) };
        }
    }
}

/// Bytes the cache holds now.
#[cfg(test)]
fn cached_bytes() -> usize {
    bins().bytes
}

/// mimalloc with a bounded cache of large freed blocks (see the module's comment).
pub struct CachingMiMalloc;

// SAFETY: every block handed out is a live mimalloc allocation of at least the requested size
// and alignment (a class's blocks are its class size, aligned to `ALIGN` >= the request's);
// a block is either in use, or in the cache, or freed — `take` removes it from the cache before
// it is handed out, and `dealloc` computes the same class from the same layout as `alloc`.
unsafe impl GlobalAlloc for CachingMiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            Some((class, size)) => match take(class, size) {
                Some(p) => p,
                None => unsafe { libmimalloc_sys::mi_malloc_aligned(size, ALIGN) as *mut u8 },
            },
            None => unsafe {
                libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            Some((class, size)) => match take(class, size) {
                Some(p) => {
                    unsafe { std::ptr::write_bytes(p, 0, layout.size()) };
                    p
                }
                // Fresh memory from the system is zero already: mimalloc knows when it is.
                None => unsafe { libmimalloc_sys::mi_zalloc_aligned(size, ALIGN) as *mut u8 },
            },
            None => unsafe {
                libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some((class, size)) = class_of(layout.size(), layout.align()) {
            if keep(ptr, class, size) {
                return;
            }
        }
        unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = class_of(layout.size(), layout.align());
        let new = class_of(new_size, layout.align());
        match (old, new) {
            (None, None) => unsafe {
                libmimalloc_sys::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align())
                    as *mut u8
            },
            // The block is its class's size: the new size fits where it is.
            (Some((a, _)), Some((b, _))) if a == b => ptr,
            _ => {
                // SAFETY: the caller guarantees new_size is non-zero and, rounded up to the
                // alignment, does not overflow isize.
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let p = unsafe { self.alloc(new_layout) };
                if !p.is_null() {
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_hold_their_requests_with_at_most_a_quarter_to_spare() {
        assert_eq!(class_of(MIN_CACHED, 8), None);
        assert_eq!(class_of(MIN_CACHED + 1, 128), None, "alignment above ALIGN");
        assert_eq!(
            class_of(1 << LAST_EXPONENT, 8).map(|c| c.0),
            Some(CLASSES - 1)
        );
        assert_eq!(class_of((1 << LAST_EXPONENT) + 1, 8), None);
        let mut last: Option<(usize, usize)> = None;
        for size in (MIN_CACHED + 1..=1 << LAST_EXPONENT).step_by(4093) {
            let (class, class_size) = class_of(size, 8).unwrap();
            assert!(
                class_size >= size && class_size - size <= size / 4,
                "{size}: {class_size}"
            );
            if let Some((c, cs)) = last {
                assert!(
                    class > c || (class == c && class_size == cs),
                    "{size}: not monotonic"
                );
            }
            // Every size of a class gets the same block size.
            assert_eq!(class_of(class_size, 8), Some((class, class_size)));
            last = Some((class, class_size));
        }
    }

    /// The one test that touches the process-wide cache (the test binary's allocator is the
    /// system's: only these calls go through it).
    #[test]
    fn freed_blocks_come_back_while_keeping_within_the_budget() {
        let a = CachingMiMalloc;
        let layout = Layout::from_size_align(100_000, 8).unwrap();
        unsafe {
            // Off unless keeping: the block goes back.
            let p = a.alloc(layout);
            a.dealloc(p, layout);
            assert_eq!(cached_bytes(), 0);
            let keeping = Keeping::start();
            let p = a.alloc(layout);
            p.write_bytes(7, layout.size());
            a.dealloc(p, layout);
            assert_eq!(cached_bytes(), class_of(100_000, 8).unwrap().1);
            // The same class (a different size in it) gets the same block back; zeroed if asked.
            assert_eq!(
                class_of(110_000, 16).unwrap(),
                class_of(100_000, 8).unwrap()
            );
            let q = a.alloc_zeroed(Layout::from_size_align(110_000, 16).unwrap());
            assert_eq!(q, p);
            assert_eq!(keeping.reused(), 1);
            assert!(std::slice::from_raw_parts(q, 110_000)
                .iter()
                .all(|&b| b == 0));
            assert_eq!(cached_bytes(), 0);
            // Growing within the class keeps the block; past it, the contents move.
            q.write_bytes(9, 110_000);
            let q = a.realloc(q, Layout::from_size_align(110_000, 16).unwrap(), 114_000);
            assert_eq!(q, p);
            let r = a.realloc(q, Layout::from_size_align(114_000, 16).unwrap(), 1 << 20);
            assert_ne!(r, p);
            assert!(std::slice::from_raw_parts(r, 110_000)
                .iter()
                .all(|&b| b == 9));
            assert_eq!(
                cached_bytes(),
                class_of(100_000, 8).unwrap().1,
                "the old block"
            );
            // Beyond the budget a block goes back to mimalloc.
            let overlapping = Keeping::start();
            BUDGET.store(class_of(1 << 20, 8).unwrap().1 - 1, Ordering::Relaxed);
            a.dealloc(r, Layout::from_size_align(1 << 20, 16).unwrap());
            assert_eq!(cached_bytes(), class_of(100_000, 8).unwrap().1);
            // Two guards: the cache stays on until the last goes.
            drop(keeping);
            assert_eq!(cached_bytes(), class_of(100_000, 8).unwrap().1);
            drop(overlapping);
            assert_eq!(cached_bytes(), 0);
            let p = a.alloc(layout);
            a.dealloc(p, layout);
            assert_eq!(cached_bytes(), 0, "off again");
        }
    }
}
