//! Pacing for background work: a long computation on a thread that shares the host's cores with
//! the serving threads works in short steps and rests in between, so its CPU reaches the
//! requests as many small delays that few of them meet, not as one burst that every request
//! of a millisecond or two waits out.
//!
//! Why the steps are short: on a two-core sidecar a reload's compile (some 80 ms of CPU on
//! the shipped database) lengthened the requests it overlapped whatever its scheduling
//! priority, and the reload-phase p99 of `benches/reload_soak.sh` was 1.27-1.29x the steady
//! one. Rests of 300 µs after each 100 µs brought it to 1.11-1.13x; 1.5 ms after each 500 µs
//! only to 1.23x, since a burst as long as a request still lands on whole requests
//! (docs/performance.md, "A reload paced in 100 µs steps").
//!
//! The loops of a compile (the search-tree walk, the file hash, the layer comparison, the table
//! patch) call [`tick`]. It costs a thread-local counter increment until `CHECK_EVERY` units
//! have passed; then, only on a thread that [`paced`] enabled, a clock read and perhaps a
//! sleep. Threads that never enable it (start-up, `geogate check`, tests) run flat out.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a paced thread works and then rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Work between two rests.
    pub work: Duration,
    /// Sleep after each `work`.
    pub rest: Duration,
}

/// Units of work between two clock reads: some 10-30 µs of tree walk.
const CHECK_EVERY: u32 = 1024;

#[derive(Clone, Copy)]
struct State {
    pace: Pace,
    /// When the current step of work began.
    since: Instant,
    /// Time slept so far under this pace.
    rested: Duration,
}

thread_local! {
    static UNITS: Cell<u32> = const { Cell::new(0) };
    static STATE: Cell<Option<State>> = const { Cell::new(None) };
}

/// Runs `work` with the calling thread paced by `pace` (`None`, or a zero rest: not paced) and
/// answers its result with the time it rested. The thread's previous pace is restored
/// afterwards, also when `work` panics.
pub fn paced<T>(pace: Option<Pace>, work: impl FnOnce() -> T) -> (T, Duration) {
    struct Restore(Option<State>);
    impl Drop for Restore {
        fn drop(&mut self) {
            STATE.with(|s| s.set(self.0));
        }
    }
    let state =
        pace.filter(|p| !p.rest.is_zero()).map(|pace| State { pace, since: Instant::now(), rested: Duration::ZERO });
    let restore = Restore(STATE.with(|s| s.replace(state)));
    let out = work();
    let rested = STATE.with(Cell::get).map_or(Duration::ZERO, |s| s.rested);
    drop(restore);
    (out, rested)
}

/// One unit of work done (a tree node, a range compared, ...).
#[inline]
pub fn tick() {
    ticks(1);
}

/// `n` units of work done at once (a block of a file hashed: one unit per KiB).
#[inline]
pub fn ticks(n: u32) {
    UNITS.with(|u| {
        let now = u.get().saturating_add(n);
        if now >= CHECK_EVERY {
            u.set(0);
            rest_if_due();
        } else {
            u.set(now);
        }
    });
}

#[cold]
fn rest_if_due() {
    STATE.with(|s| {
        let Some(state) = s.get() else { return };
        if state.since.elapsed() >= state.pace.work {
            let slept = Instant::now();
            std::thread::sleep(state.pace.rest);
            let now = Instant::now();
            s.set(Some(State { since: now, rested: state.rested + (now - slept), ..state }));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks for `busy` of wall time.
    fn work_for(busy: Duration) {
        let start = Instant::now();
        while start.elapsed() < busy {
            tick();
        }
    }

    const PACE: Pace = Pace { work: Duration::from_micros(100), rest: Duration::from_micros(50) };

    #[test]
    fn a_paced_thread_rests_after_each_step_of_work() {
        let ((), rested) = paced(Some(PACE), || work_for(Duration::from_millis(3)));
        // 3 ms of wall time holds at least a few 100 µs steps, each followed by a 50 µs sleep.
        assert!(rested >= PACE.rest * 2, "rested only {rested:?}");
    }

    #[test]
    fn an_unpaced_thread_or_a_zero_rest_never_rests() {
        let ((), rested) = paced(None, || work_for(Duration::from_millis(2)));
        assert_eq!(rested, Duration::ZERO);
        let ((), rested) = paced(Some(Pace { rest: Duration::ZERO, ..PACE }), || work_for(Duration::from_millis(2)));
        assert_eq!(rested, Duration::ZERO);
        // Outside `paced` nothing rests either: no state is left behind.
        assert!(STATE.with(Cell::get).is_none());
    }

    #[test]
    fn the_previous_pace_comes_back_after_the_work_even_when_it_panics() {
        let outer = Pace { work: Duration::from_millis(5), rest: Duration::from_micros(10) };
        let ((), _) = paced(Some(outer), || {
            let inner = std::panic::catch_unwind(|| paced(Some(PACE), || panic!("compile failed")));
            assert!(inner.is_err());
            assert_eq!(STATE.with(Cell::get).map(|s| s.pace), Some(outer));
        });
        assert!(STATE.with(Cell::get).is_none());
    }
}
