//! Process CPU time and memory, for figures such as "ingest costs 1.2x
//! decoding".

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
