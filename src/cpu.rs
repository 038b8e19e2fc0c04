//! Process CPU time and memory, for figures such as "ingest costs 1.2x
//! decoding", and how the process keeps memory.

use std::time::Duration;

fn usage() -> Option<libc::rusage> {
    // SAFETY: getrusage only writes into the zeroed struct we pass it.
    #[allow(unsafe_code)]
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }
}

/// Most memory this process has held resident, in bytes (mapped index pages
/// it touched included).
pub fn peak_resident_bytes() -> u64 {
    usage().map_or(0, |u| u.ru_maxrss as u64 * 1024)
}

/// User plus system CPU time consumed so far by this process, all threads.
pub fn process_time() -> Duration {
    let Some(usage) = usage() else {
        return Duration::ZERO;
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Lets the allocator keep the memory a request freed for the next one.
/// glibc otherwise maps each block over 128 KiB (a clip's samples, its
/// spectra, a query's votes) afresh, faults its pages in and unmaps it on
/// free, and returns freed memory above 128 KiB at the heap's top: a
/// twentieth of the server's CPU at 150 identify requests a second. Blocks
/// up to 32 MiB now come from the heap, and up to 256 MiB of it stays.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called at
    // start-up, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
