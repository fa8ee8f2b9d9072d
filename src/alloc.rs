//! The allocator's one tuning: memory a compile frees goes back to the kernel at once.
//!
//! geogate runs on jemalloc (`main.rs`). By default jemalloc keeps freed pages for about ten
//! seconds before it returns them (`dirty_decay_ms` = 10000), so that a program allocating
//! the same sizes again finds them ready. A compile does the opposite: it builds large
//! arrays, frees them, and builds the next; kept for ten seconds, every freed array still
//! counts as anonymous memory, and a sidecar's peak during a compile is about 1.4x what it
//! needs (measured with `benches/memory.sh`: 33 MiB instead of 23 for the shipped database,
//! 42 instead of 23 for DB-IP City). [`promptly_released`] sets the decay to zero for the
//! duration of a compile, which returns each array's pages as it is freed, and restores the
//! previous value after. Requests served meanwhile keep their thread caches and slabs; only
//! whole free extents are returned sooner.
//!
//! Compiles run one at a time (the reload lock, or one-off commands), so the value restored
//! is never another compile's zero. Where jemalloc is not the allocator (the library's own
//! tests) the controls only touch jemalloc's unused arenas.

/// How many arenas exist.
const NARENAS: &[u8] = b"arenas.narenas\0";
/// The value new arenas start with.
const NEW_ARENAS: &[u8] = b"arenas.dirty_decay_ms\0";

/// Runs `f` with freed memory returned to the kernel at once.
pub fn promptly_released<T>(f: impl FnOnce() -> T) -> T {
    let previous = set_decay(0);
    let out = f();
    if let Some(ms) = previous {
        set_decay(ms);
    }
    out
}

/// Sets the dirty-page decay of every arena; returns the value new arenas had before.
#[allow(unsafe_code)]
fn set_decay(ms: isize) -> Option<isize> {
    // SAFETY: every name is a NUL-terminated jemalloc control name; the decay times are
    // `ssize_t`, which `isize` matches on every platform Rust supports, and `arenas.narenas`
    // is `unsigned` (`u32`). Reading and writing them has no other effect on memory.
    unsafe {
        let before = tikv_jemalloc_ctl::raw::read::<isize>(NEW_ARENAS).ok();
        let _ = tikv_jemalloc_ctl::raw::write(NEW_ARENAS, ms);
        // `arena.<MALLCTL_ARENAS_ALL>` does not take a decay time: each arena in turn.
        let n = tikv_jemalloc_ctl::raw::read::<u32>(NARENAS).unwrap_or(0);
        for i in 0..n {
            let name = format!("arena.{i}.dirty_decay_ms\0");
            let _ = tikv_jemalloc_ctl::raw::write(name.as_bytes(), ms);
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decay_is_restored_after_the_work() {
        let before = set_decay(10_000);
        let inside = promptly_released(|| set_decay_probe());
        assert_eq!(inside, Some(0));
        assert_eq!(set_decay_probe(), Some(10_000));
        if let Some(b) = before {
            set_decay(b);
        }
    }

    fn set_decay_probe() -> Option<isize> {
        #[allow(unsafe_code)]
        // SAFETY: as in `set_decay`.
        unsafe {
            tikv_jemalloc_ctl::raw::read::<isize>(NEW_ARENAS).ok()
        }
    }
}
