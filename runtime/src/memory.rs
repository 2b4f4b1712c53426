//! Giving freed memory back to the system, for the long-running daemons.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena, and tokio's
//! blocking threads come and go: under `benches/soak.sh` paasd's resident memory grew
//! about 18 MiB an hour while heaptrack showed a live heap that never passed 4.2 MiB.
//! `malloc_trim` hands the free pages of every arena back.

#![allow(unsafe_code)]

/// Returns the allocator's free pages to the system (glibc's `malloc_trim(0)`: every
/// arena, not just the top of the main heap). Takes well under a millisecond for a
/// daemon's heap; call it now and then, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only reorganises the allocator's own
    // free lists under its locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
