//! The global allocator: mimalloc, asked for plain blocks whenever the layout allows it, and a
//! trial arena for the short trials of a hunt.
//!
//! Trials allocate many small, short-lived objects, which mimalloc serves several times faster than
//! the system allocator. The `mimalloc` crate's adapter sends every request through mimalloc's
//! aligned entry points; those fall back to over-allocation for sizes that are not powers of two
//! whenever the size class has no free block at hand. Every mimalloc block is aligned to at least a
//! machine word, so layouts that need no more than that take the plain entry points, and only the
//! rare stricter layouts the aligned ones (`cargo bench --bench pipeline`).
//!
//! A hunt runs tens of thousands of trials of a few receipts, each of which allocates a few hundred
//! blocks and frees them all when it ends. While a thread runs a trial in its `TrialArena`, its
//! allocations are carved from one region in order (a bump of a pointer), frees cost a count, and
//! the whole region is reused by the next trial, where it is still in the cache: about a tenth more
//! explored trials per second than mimalloc alone (`receipt-sim hunt hunt`). The arena's invariant
//! is that nothing it served outlives the trial: every block it hands out is counted, every block
//! freed is uncounted, and a trial that ends with blocks still counted aborts the process rather
//! than let a reused region overwrite them. A trial's result leaves the arena as a copy made with
//! the arena paused. A request that does not fit the region goes to mimalloc. A trial of a hundred
//! receipts allocates several times what it holds at once, room a bump never reuses within the
//! trial, so hunts of long trials leave them to mimalloc (`hunt_command`).
//!
//! Used by the binary and by the pipeline benchmark, so that the figures are the binary's. Depends
//! on `libmimalloc-sys` only.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::ffi::c_void;

/// The alignment of every block mimalloc hands out.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc alone; `Allocator` puts the trial arena in front of it.
pub struct Mimalloc;

// SAFETY: every method forwards to mimalloc, which returns null or a block of at least the size
// asked for; plain blocks are word-aligned, and stricter alignments go to the aligned calls.
// `mi_free` and `mi_realloc` accept blocks from either kind of call.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarding; see above.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarding; see above.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`; the alignment stays the same.
        unsafe {
            if layout.align() <= BLOCK_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// The thread's current trial arena: the region `[base, end)` while a trial runs in one, empty
/// otherwise. Plain cells with a constant initialiser and no destructor, so the allocator can read
/// them at any time, thread exit included.
struct Region {
    /// The region's first byte (null when no trial runs); carved blocks are derived from it.
    base: Cell<*mut u8>,
    /// The address one past the region's last byte (0 when no trial runs).
    end: Cell<usize>,
    /// Where the next block is carved.
    next: Cell<usize>,
    /// Whether new blocks come from the region (false while a trial's result is copied out).
    bumping: Cell<bool>,
    /// Blocks carved and not yet freed.
    live: Cell<usize>,
}

thread_local! {
    static REGION: Region = const {
        Region {
            base: Cell::new(std::ptr::null_mut()),
            end: Cell::new(0),
            next: Cell::new(0),
            bumping: Cell::new(false),
            live: Cell::new(0),
        }
    };
}

impl Region {
    #[inline]
    fn start(&self) -> usize {
        self.base.get() as usize
    }

    #[inline]
    fn contains(&self, ptr: *mut u8) -> bool {
        (ptr as usize).wrapping_sub(self.start()) < self.end.get() - self.start()
    }

    /// A block carved from the region, or null when the region is not bumping or has no room.
    #[inline]
    fn carve(&self, layout: Layout) -> *mut u8 {
        if !self.bumping.get() {
            return std::ptr::null_mut();
        }
        let start = (self.next.get() + layout.align() - 1) & !(layout.align() - 1);
        match start.checked_add(layout.size()) {
            Some(end) if end <= self.end.get() => {
                self.next.set(end);
                self.live.set(self.live.get() + 1);
                self.base.get().wrapping_add(start - self.start())
            }
            _ => std::ptr::null_mut(),
        }
    }

    /// Whether a block of the region can take `new_size` bytes where it is: the last block carved
    /// grows or shrinks in place, and any block shrinks (keeping its room until freed).
    #[inline]
    fn resize_in_place(&self, ptr: *mut u8, size: usize, new_size: usize) -> bool {
        let resized_end = ptr as usize + new_size;
        if ptr as usize + size == self.next.get() && resized_end <= self.end.get() {
            self.next.set(resized_end);
            return true;
        }
        new_size <= size
    }

    /// Uncounts a block of the region; the last block carved gives its room back.
    #[inline]
    fn free(&self, ptr: *mut u8, size: usize) {
        debug_assert!(self.live.get() > 0);
        self.live.set(self.live.get() - 1);
        if ptr as usize + size == self.next.get() {
            self.next.set(ptr as usize);
        }
    }
}

/// The binary's global allocator: the thread's trial arena while it runs a trial, else mimalloc.
pub struct Allocator;

// SAFETY: a block is carved from the region only while a `TrialArena` owns the region, below its
// end and aligned as asked; the region is never handed out twice while a carved block is live
// (`TrialArena::run` aborts otherwise). Every other request goes to `Mimalloc`. A pointer inside
// the region is one the region carved, since mimalloc handed the whole region to the arena.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let block = REGION.with(|region| region.carve(layout));
        if !block.is_null() {
            return block;
        }
        // SAFETY: forwarding.
        unsafe { Mimalloc.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let block = REGION.with(|region| region.carve(layout));
        if !block.is_null() {
            // SAFETY: the block was just carved with this size; the region is reused, so dirty.
            unsafe { block.write_bytes(0, layout.size()) };
            return block;
        }
        // SAFETY: forwarding.
        unsafe { Mimalloc.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let carved = REGION.with(|region| {
            let carved = region.contains(ptr);
            if carved {
                region.free(ptr, layout.size());
            }
            carved
        });
        if !carved {
            // SAFETY: not the region's, so mimalloc's.
            unsafe { Mimalloc.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let resized = REGION.with(|region| {
            region
                .contains(ptr)
                .then(|| region.resize_in_place(ptr, layout.size(), new_size))
        });
        match resized {
            // SAFETY: mimalloc's block stays with mimalloc.
            None => unsafe { Mimalloc.realloc(ptr, layout, new_size) },
            Some(true) => ptr,
            // SAFETY: the new layout is valid (`realloc`'s contract); the old block is read within
            // its size, then freed once.
            Some(false) => unsafe {
                let moved = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, layout.size());
                    self.dealloc(ptr, layout);
                }
                moved
            },
        }
    }
}

/// A region that one thread's trials allocate from in turn (see the module comment). Only
/// effective when `Allocator` is the global allocator; elsewhere trials simply use that one.
pub struct TrialArena {
    start: *mut u8,
    len: usize,
}

/// The region of a hunt's worker: a trial of a few receipts touches about 100 KiB of it.
pub const TRIAL_ARENA_BYTES: usize = 8 << 20;

impl TrialArena {
    pub fn new(len: usize) -> TrialArena {
        assert!(len > 0);
        // SAFETY: a non-zero size; the block is freed once, in `drop`.
        let start = unsafe { mi::mi_malloc_aligned(len, 64) }.cast::<u8>();
        assert!(
            !start.is_null(),
            "no memory for a trial arena of {len} bytes"
        );
        TrialArena { start, len }
    }

    /// Runs `trial` with its allocations in the region, then `keep` on its result with the region
    /// paused (what `keep` returns lives on), then drops the result and checks that every block
    /// the region served was freed.
    pub fn run<T, R>(&mut self, trial: impl FnOnce() -> T, keep: impl FnOnce(&T) -> R) -> R {
        REGION.with(|region| {
            assert_eq!(region.end.get(), 0, "trial arenas do not nest");
            region.base.set(self.start);
            region.end.set(self.start as usize + self.len);
            region.next.set(self.start as usize);
            region.live.set(0);
            region.bumping.set(true);
        });
        // A panicking trial's blocks may travel with the panic: abort rather than reuse them.
        let guard = AbortOnUnwind;
        let value = trial();
        REGION.with(|region| region.bumping.set(false));
        let kept = keep(&value);
        drop(value);
        std::mem::forget(guard);
        REGION.with(|region| {
            let live = region.live.get();
            if live != 0 {
                eprintln!("internal error: {live} blocks of a trial outlived its arena");
                std::process::abort();
            }
            region.base.set(std::ptr::null_mut());
            region.end.set(0);
            region.next.set(0);
        });
        kept
    }

    /// Whether `ptr` lies in this arena's region.
    #[cfg(test)]
    #[allow(
        dead_code,
        reason = "the pipeline benchmark includes this file and drops its tests"
    )]
    pub fn contains(&self, ptr: *const u8) -> bool {
        (ptr as usize).wrapping_sub(self.start as usize) < self.len
    }
}

impl Drop for TrialArena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once; no trial runs in it (`run` borrows mutably).
        unsafe { mi::mi_free(self.start.cast::<c_void>()) }
    }
}

struct AbortOnUnwind;

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        eprintln!("internal error: a trial panicked inside its arena");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_have_the_alignment_asked_for() {
        // Imports inside the test: the pipeline benchmark includes this file and drops its tests.
        use super::Mimalloc;
        use std::alloc::{GlobalAlloc, Layout};
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 24, 40, 100, 1000, 5000, 100_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout is non-zero-sized; the block is written within its size,
                // grown, checked and freed once.
                unsafe {
                    let block = Mimalloc.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xa5, size);
                    let grown = Mimalloc.realloc(block, layout, size * 2);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown, size {size}, align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xa5, "realloc keeps the contents");
                    Mimalloc.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                    let zeroed = Mimalloc.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    Mimalloc.dealloc(zeroed, layout);
                }
            }
        }
    }

    // The trial arena: only in effect with `Allocator` as the global allocator, which the binary's
    // tests have (`main.rs`).

    #[test]
    fn a_trial_allocates_in_its_arena_and_its_result_leaves_as_a_copy() {
        use super::TrialArena;
        let mut arena = TrialArena::new(1 << 20);
        let (first, kept) = arena.run(
            || {
                let values: Vec<u64> = (0..100).collect();
                let address = values.as_ptr() as usize;
                (values, address)
            },
            |(values, address)| (*address, values.clone()),
        );
        assert!(arena.contains(first as *const u8));
        assert!(!arena.contains(kept.as_ptr().cast()));
        assert!(kept.iter().copied().eq(0..100));
        // The next trial starts again at the beginning of the region.
        let second = arena.run(|| Box::new(7u64), |boxed| &**boxed as *const u64 as usize);
        assert_eq!(second, first);
    }

    #[test]
    fn arena_blocks_are_aligned_and_zeroed_as_asked() {
        use super::TrialArena;
        use std::alloc::{Layout, alloc, alloc_zeroed, dealloc};
        let mut arena = TrialArena::new(1 << 20);
        // Leave the region dirty.
        arena.run(|| vec![0xa5u8; 64 << 10], |_| ());
        let blocks = arena.run(
            || {
                let mut blocks = Vec::new();
                for align in [1, 2, 8, 16, 64, 4096] {
                    let layout = Layout::from_size_align(3 * align + 5, align).unwrap();
                    // SAFETY: a non-zero size; read within it, freed once with its layout.
                    unsafe {
                        let block = alloc_zeroed(layout);
                        let zero = (0..layout.size()).all(|i| *block.add(i) == 0);
                        let plain = alloc(layout);
                        blocks.push((block as usize, plain as usize, align, zero));
                        dealloc(plain, layout);
                        dealloc(block, layout);
                    }
                }
                blocks
            },
            Clone::clone,
        );
        for (zeroed, plain, align, zero) in blocks {
            assert!(arena.contains(zeroed as *const u8) && arena.contains(plain as *const u8));
            assert_eq!(zeroed % align, 0, "align {align}");
            assert_eq!(plain % align, 0, "align {align}");
            assert!(zero, "a zeroed block of align {align} has a dirty byte");
        }
    }

    #[test]
    fn arena_blocks_grow_in_place_at_the_end_and_move_with_their_contents_elsewhere() {
        use super::TrialArena;
        let mut arena = TrialArena::new(1 << 20);
        let (grew_in_place, moved, contents_kept) = arena.run(
            || {
                let mut values: Vec<u32> = Vec::with_capacity(4);
                values.extend(0..4);
                let first = values.as_ptr();
                values.reserve_exact(1000);
                let grew_in_place = values.as_ptr() == first;
                let blocker = Box::new(1u8);
                let before = values.as_ptr();
                values.extend(4..5000);
                let moved = values.as_ptr() != before;
                drop(blocker);
                (grew_in_place, moved, values.iter().copied().eq(0..5000))
            },
            |result| *result,
        );
        assert!(grew_in_place, "the last block grows where it is");
        assert!(moved, "a block with another after it moves");
        assert!(contents_kept);
    }

    #[test]
    fn a_request_the_arena_cannot_hold_goes_to_mimalloc() {
        use super::TrialArena;
        let mut arena = TrialArena::new(4096);
        let (small, large, sum) = arena.run(
            || {
                let small = Box::new(1u64);
                let large = vec![2u64; 10_000];
                let addresses = (&*small as *const u64 as usize, large.as_ptr() as usize);
                (addresses, *small + large.iter().sum::<u64>())
            },
            |((small, large), sum)| (*small, *large, *sum),
        );
        assert!(arena.contains(small as *const u8));
        assert!(!arena.contains(large as *const u8));
        assert_eq!(sum, 20_001);
    }

    /// Run by `a_block_outliving_its_trial_aborts` in a child process.
    #[test]
    #[ignore = "aborts on purpose; run by a_block_outliving_its_trial_aborts"]
    fn escaping_block() {
        use super::TrialArena;
        let mut arena = TrialArena::new(1 << 20);
        arena.run(|| std::mem::forget(vec![1u8; 100]), |_| ());
    }

    #[test]
    fn a_block_outliving_its_trial_aborts() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "allocator::tests::escaping_block", "--ignored"])
            .args(["--test-threads", "1", "--nocapture"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the child ran to completion");
        assert!(
            stderr.contains("1 blocks of a trial outlived its arena"),
            "stderr: {stderr}"
        );
    }
}
