//! Process CPU time, for figures such as "ingest costs 1.2x decoding".

use std::time::Duration;

/// User plus system CPU time consumed so far by this process, all threads.
pub fn process_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass it.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
