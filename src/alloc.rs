//! The allocator's one tuning: memory a compile frees goes back to the kernel at once, while
//! the serving threads keep jemalloc's defaults.
//!
//! geogate runs on jemalloc (`main.rs`). By default jemalloc keeps freed pages for about ten
//! seconds before it returns them (`dirty_decay_ms` = 10000), so that a program allocating
//! the same sizes again finds them ready. A compile does the opposite: it builds large
//! arrays, frees them, and builds the next; kept for ten seconds, every freed array still
//! counts as anonymous memory, and a sidecar's peak during a compile is about 1.4x what it
//! needs (measured with `benches/memory.sh`: 33 MiB instead of 23 for the shipped database,
//! 42 instead of 23 for DB-IP City).
//!
//! [`promptly_released`] runs a compile with its thread bound to one arena of its own whose
//! decay is zero: everything the compile allocates (its working arrays and the new snapshot's
//! table) comes from that arena, and its pages go back as soon as they are freed, whichever
//! thread frees them. The serving threads' arenas are untouched, so requests served during a
//! reload pay nothing for it. Where jemalloc is not the allocator (the library's own tests)
//! the controls only touch jemalloc's unused arenas.

use std::sync::OnceLock;

/// Runs `f` on the compile arena (created on first use).
pub fn promptly_released<T>(f: impl FnOnce() -> T) -> T {
    static ARENA: OnceLock<Option<u32>> = OnceLock::new();
    let arena = *ARENA.get_or_init(create_arena);
    let previous = arena.and_then(bind_thread);
    let out = f();
    if let Some(p) = previous {
        bind_thread(p);
    }
    out
}

/// A new arena that returns freed pages at once; `None` if jemalloc refuses.
#[allow(unsafe_code)]
fn create_arena() -> Option<u32> {
    // SAFETY: every name is a NUL-terminated jemalloc control name of the documented type:
    // `arenas.create` reads an `unsigned` (`u32`), the decay times are `ssize_t` (`isize`).
    // None of them touches memory the program owns.
    unsafe {
        let arena = tikv_jemalloc_ctl::raw::read::<u32>(b"arenas.create\0").ok()?;
        for knob in ["dirty_decay_ms", "muzzy_decay_ms"] {
            let name = format!("arena.{arena}.{knob}\0");
            tikv_jemalloc_ctl::raw::write(name.as_bytes(), 0isize).ok()?;
        }
        Some(arena)
    }
}

/// Binds the calling thread to `arena`; returns the arena it was bound to before.
#[allow(unsafe_code)]
fn bind_thread(arena: u32) -> Option<u32> {
    // SAFETY: `thread.arena` is an `unsigned` (`u32`) jemalloc control; writing a valid arena
    // index only changes where this thread's later allocations come from.
    unsafe {
        let before = tikv_jemalloc_ctl::raw::read::<u32>(b"thread.arena\0").ok();
        tikv_jemalloc_ctl::raw::write(b"thread.arena\0", arena).ok()?;
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn current() -> Option<u32> {
        // SAFETY: as in `bind_thread`.
        unsafe { tikv_jemalloc_ctl::raw::read::<u32>(b"thread.arena\0").ok() }
    }

    #[test]
    fn the_work_runs_on_its_own_arena_and_the_thread_goes_back() {
        let before = current();
        let inside = promptly_released(current);
        assert!(inside.is_some() && inside != before, "{inside:?} vs {before:?}");
        assert_eq!(current(), before);
        // The same arena every time.
        assert_eq!(promptly_released(current), inside);
    }
}
