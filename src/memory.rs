//! The process's memory: how much of it is resident, and when the
//! allocator hands what is freed back to the system. The binary's allocator
//! is mimalloc (`main.rs`); where another one serves (the tests), the
//! policy set here configures an allocator nobody uses, which is harmless.

/// Resident memory of this process now, in bytes (`VmRSS` of
/// `/proc/self/status`; `None` where there is none). A cheap sample, read a
/// few hundred times a run at most.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// mimalloc's option `mi_option_purge_delay` (`mimalloc.h`, v3): how many
/// milliseconds freed memory is kept before it is handed back.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purge delay while memory is handed back: none, so that what one phase
/// frees is gone before the next one allocates its own. (10 and 50 ms let
/// a buffer freed and allocated again within a phase be reused, FOCUS of
/// 10 x W-hourly took 0.2-0.3 s less, but the run peaked at 988-1,053 MiB
/// instead of 943-956.)
const HAND_BACK_AFTER_MS: std::ffi::c_long = 0;

/// Until the guard returned is dropped, memory freed is handed back to the
/// system at once, if more than `above` bytes are resident (`None`: it is
/// not).
///
/// mimalloc keeps freed memory for a second (its purge delay) before it
/// hands it back, so that buffers freed and allocated again over and over
/// (parsing usage, rendering statements) cost no page faults. Between the
/// two that reuse is small, and in a large month the month step, rating,
/// the tables and FOCUS each free hundreds of MB that would otherwise stay
/// resident while the next one allocates its own: at 10 x W-hourly the
/// outputs peaked at 1.4 GiB instead of 1 GiB. In a small month nothing
/// changes.
pub fn hand_back_freed_memory_above(above: u64) -> Option<HandBack> {
    if resident_bytes().is_none_or(|r| r <= above) {
        return None;
    }
    // SAFETY: reads one of mimalloc's options, a plain integer.
    let delay = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
    set_purge_delay(HAND_BACK_AFTER_MS);
    Some(HandBack { delay })
}

/// Memory freed is handed back at once while this lives; dropping it puts
/// back the purge delay there was.
#[derive(Debug)]
#[must_use = "freed memory is kept again as soon as this is dropped"]
pub struct HandBack {
    delay: std::ffi::c_long,
}

impl HandBack {
    /// From now on, freed memory is kept `ms` milliseconds before it is
    /// handed back (until the guard is dropped): for work that frees and
    /// allocates small buffers over and over, which a delay of 0 would hand
    /// back and fault in again each time.
    pub fn keep_for(&self, ms: u32) {
        set_purge_delay(std::ffi::c_long::from(ms));
    }
}

impl Drop for HandBack {
    fn drop(&mut self) {
        set_purge_delay(self.delay);
    }
}

/// Sets mimalloc's purge delay, in milliseconds.
fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: sets one of mimalloc's options, a plain integer it reads
    // whenever it decides to purge; any thread may set it any time.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, ms) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn handing_back_is_asked_only_above_the_threshold_and_undone_by_the_guard() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::PURGE_DELAY) };
        let before = get();
        assert!(super::hand_back_freed_memory_above(u64::MAX).is_none(), "never above 2^64 bytes");
        assert_eq!(get(), before);
        let guard = super::hand_back_freed_memory_above(0).expect("some memory is resident");
        assert_eq!(get(), super::HAND_BACK_AFTER_MS);
        guard.keep_for(100);
        assert_eq!(get(), 100);
        drop(guard);
        assert_eq!(get(), before);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn resident_memory_grows_with_a_touched_allocation() {
        let before = super::resident_bytes().expect("VmRSS on Linux");
        let held = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = super::resident_bytes().expect("VmRSS on Linux");
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        drop(held);
    }
}
