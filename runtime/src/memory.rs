//! Giving freed memory back to the system, for the long-running daemons.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena, and tokio's
//! blocking threads come and go: under `benches/soak.sh` paasd's resident memory grew
//! about 18 MiB an hour while heaptrack showed a live heap that never passed 4.2 MiB.
//! `malloc_trim` hands the free pages of every arena back, and capping the number of
//! arenas lowers how much free memory builds up between two trims: each arena keeps
//! its own free lists, so a dozen arenas hold a dozen sets of free pages that later
//! allocations touch again. Blocks of 128 KiB and more are mapped apart, so a big
//! transient leaves nothing resident behind it (`benches/soak.sh` prints the live heap
//! beside the resident memory).

#![allow(unsafe_code)]

/// The size from which the daemons map blocks apart ([`map_large_blocks_apart`]):
/// glibc's own starting threshold, kept from rising.
const LARGE_BLOCK: u32 = 128 << 10;

/// Sets glibc's allocator up for a long-running daemon: at most `arenas` arenas
/// ([`limit_arenas`]) and blocks of 128 KiB and more mapped apart
/// ([`map_large_blocks_apart`]). Call it first thing in `main`, before other threads
/// start, and call [`release_free_memory_and_report`] now and then.
pub fn settle_for_daemon(arenas: u32) {
    limit_arenas(arenas);
    map_large_blocks_apart(LARGE_BLOCK);
}

/// Returns the allocator's free pages to the system (glibc's `malloc_trim(0)`: every
/// arena, not just the top of the main heap). Takes well under a millisecond for a
/// daemon's heap; call it now and then, not per request.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only reorganises the allocator's own
    // free lists under its locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`release_free_memory`], then, where `PAASD_LOG` (or `PAAS_ROUTER_LOG`) has
/// `paas_memory=debug`, a log line with what the allocator holds after it
/// (`benches/soak.sh` reads them). The figures lock every arena, so they are read only
/// then.
pub fn release_free_memory_and_report() {
    release_free_memory();
    if !tracing::enabled!(target: "paas_memory", tracing::Level::DEBUG) {
        return;
    }
    if let Some(heap) = heap_use() {
        tracing::debug!(
            target: "paas_memory",
            resident_kib = resident_bytes().unwrap_or(0) / 1024,
            in_use_kib = heap.in_use / 1024,
            free_kib = heap.free / 1024,
            mapped_kib = heap.mapped / 1024,
            "allocator after trimming"
        );
    }
}

/// Caps glibc's allocator at `arenas` arenas (`mallopt(M_ARENA_MAX)`). glibc makes up
/// to eight per core as threads contend; a daemon whose hot paths are async tasks on a
/// few worker threads gains little from more and keeps their free pages resident.
fn limit_arenas(arenas: u32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Serves every allocation of `bytes` or more with a mapping of its own, returned to the
/// system when it is freed (`mallopt(M_MMAP_THRESHOLD)`), and gives back the top of a
/// heap once `bytes` of it are free (`M_TRIM_THRESHOLD`). glibc's defaults start there
/// but rise to the largest block freed so far (up to 32 MiB): after one big transient
/// (a droplet's gzip state, a long log response), blocks that size come from the arenas
/// and their pages stay resident until the next trim. Setting both turns that off.
fn map_large_blocks_apart(bytes: u32) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and only sets allocator parameters.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
            libc::mallopt(libc::M_TRIM_THRESHOLD, bytes);
        }
    }
}

/// What the allocator holds, summed over its arenas (glibc's `mallinfo2`).
#[derive(Debug, Clone, Copy)]
struct HeapUse {
    /// Bytes handed out and not yet freed: the program's live heap.
    in_use: u64,
    /// Bytes freed but kept by the allocator (resident or not).
    free: u64,
    /// Bytes of large allocations mapped on their own.
    mapped: u64,
}

/// The allocator's figures now, or `None` where the allocator is not glibc's. Walks
/// every arena under its lock: call it now and then, not per request.
fn heap_use() -> Option<HeapUse> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes nothing and returns a plain struct by value.
        let info = unsafe { libc::mallinfo2() };
        Some(HeapUse {
            in_use: info.uordblks as u64,
            free: info.fordblks as u64,
            mapped: info.hblkhd as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// This process's resident memory, in bytes (`/proc/self/statm`).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(
        pages
            * nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
                .ok()??
                .unsigned_abs(),
    )
}
