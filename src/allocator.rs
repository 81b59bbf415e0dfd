//! The global allocator: mimalloc, asked for plain blocks whenever the layout allows it.
//!
//! Trials allocate many small, short-lived objects, which mimalloc serves several times faster than
//! the system allocator. The `mimalloc` crate's adapter sends every request through mimalloc's
//! aligned entry points; those fall back to over-allocation for sizes that are not powers of two
//! whenever the size class has no free block at hand. Every mimalloc block is aligned to at least a
//! machine word, so layouts that need no more than that take the plain entry points, and only the
//! rare stricter layouts the aligned ones (`cargo bench --bench pipeline`). Nothing else: the binary
//! talks to servers on threads of tokio and reqwest, so every block is mimalloc's own, freed on any
//! thread.
//!
//! mimalloc is built without its requests for transparent huge pages (the crate's `no_thp`
//! feature): where the kernel grants them on request, a trial's heap grew in 2 MiB pages, each
//! zeroed whole on first touch, which cost a large trial kernel time and resident memory for no
//! gain (`receipt-sim run scale --set workload.receipts=1000000`).
//!
//! Used by the binary and by the pipeline benchmark, so that the figures are the binary's. Depends
//! on `libmimalloc-sys` only.

use libmimalloc_sys as mi;
use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment of every block mimalloc hands out.
const BLOCK_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc through its plain entry points for word-aligned layouts.
pub struct Allocator;

// SAFETY: every method forwards to mimalloc, which returns null or a block of at least the size
// asked for; plain blocks are word-aligned, and stricter alignments go to the aligned calls.
// `mi_free` and `mi_realloc` accept blocks from either kind of call.
unsafe impl GlobalAlloc for Allocator {
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

#[cfg(test)]
mod tests {
    #[test]
    fn blocks_have_the_alignment_asked_for() {
        // Imports inside the test: the pipeline benchmark includes this file and drops its tests.
        use super::Allocator;
        use std::alloc::{GlobalAlloc, Layout};
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 24, 40, 100, 1000, 5000, 100_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout is non-zero-sized; the block is written within its size,
                // grown, checked and freed once.
                unsafe {
                    let block = Allocator.alloc(layout);
                    assert!(!block.is_null());
                    assert_eq!(block as usize % align, 0, "size {size}, align {align}");
                    block.write_bytes(0xa5, size);
                    let grown = Allocator.realloc(block, layout, size * 2);
                    assert_eq!(
                        grown as usize % align,
                        0,
                        "grown, size {size}, align {align}"
                    );
                    assert_eq!(*grown.add(size - 1), 0xa5, "realloc keeps the contents");
                    Allocator.dealloc(grown, Layout::from_size_align(size * 2, align).unwrap());
                    let zeroed = Allocator.alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0);
                    assert!((0..size).all(|i| *zeroed.add(i) == 0));
                    Allocator.dealloc(zeroed, layout);
                }
            }
        }
    }
}
