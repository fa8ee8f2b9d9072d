//! How a reload's compile yields the CPU to the threads that serve requests.
//!
//! A compile is a few hundred milliseconds of CPU on a full-size database. On a busy sidecar
//! that time competes with the serving threads, and whatever a request waits for the compile
//! shows up in the tail latency. Two knobs, both per thread (Linux schedules threads):
//!
//! - **nice +[`RELOAD_NICE`]**: when a core is contended, the scheduler runs a serving thread
//!   about nine times as often as the compile; on an idle core the compile runs at full speed.
//! - **a short time slice ([`RELOAD_SLICE`])**: since Linux 6.12 the fair scheduler (EEVDF)
//!   takes a per-thread slice from `sched_setattr`'s `sched_runtime`. The default is a few
//!   milliseconds, so a request arriving while the compile holds a core could wait that long;
//!   with 100 µs the compile gives the core back within a tenth of a millisecond. Older
//!   kernels ignore the field for fair threads, and then only the nice value acts.
//!
//! Failure (a seccomp profile that forbids the calls) only costs the priority: it is logged
//! at debug level and the compile runs as any other thread.
//!
//! Neither knob stops a compile from lengthening the requests it overlaps on a two-core host
//! (a busy loop under `SCHED_IDLE` still did); what does is spreading its CPU thinly over time,
//! which [`crate::pace`] does under `reload.compile_cpu_share`.

use std::time::Duration;

/// How much lower than the serving threads a reload's compile runs (Linux nice increment).
/// Measured with `benches/reload_soak.sh` (docs/performance.md): +5 left reload p99 at 1.6x
/// steady, +10 brought it to 1.35x, and a reload still took under a second end to end.
pub const RELOAD_NICE: i32 = 10;

/// The scheduler time slice a reload's compile asks for: the kernel's smallest (100 µs).
pub const RELOAD_SLICE: Duration = Duration::from_micros(100);

/// Lowers the calling thread's priority for a compile: nice +[`RELOAD_NICE`] and a
/// [`RELOAD_SLICE`] time slice where the kernel supports one.
///
/// `SCHED_IDLE` was tried instead (2026-12-02, `benches/reload_soak.sh --duration 120` with the
/// city and flat databases alternating): reload p99 went from 1.68x steady to 2.30x and the
/// median reload from 418 to 741 ms. A compile starved that hard still holds allocator and
/// page-table locks the serving threads then wait for; nice +10 shares the core instead.
pub fn lower_for_compile() {
    imp::lower(RELOAD_NICE, RELOAD_SLICE);
}

/// What the calling thread's scheduling now is: `(nice, slice)`, the slice `None` where the
/// kernel reports no custom slice.
#[cfg(test)]
fn current() -> (i32, Option<Duration>) {
    imp::current()
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod imp {
    use std::time::Duration;

    /// The kernel's `struct sched_attr` (include/uapi/linux/sched/types.h), first version.
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        sched_policy: u32,
        sched_flags: u64,
        sched_nice: i32,
        sched_priority: u32,
        sched_runtime: u64,
        sched_deadline: u64,
        sched_period: u64,
    }

    /// `SCHED_OTHER` (`SCHED_NORMAL`), the fair class.
    const SCHED_OTHER: u32 = 0;

    pub fn lower(increment: i32, slice: Duration) {
        let tid = rustix::thread::gettid();
        let nice = (rustix::process::getpriority_process(Some(tid)).unwrap_or(0) + increment).min(19);
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            sched_policy: SCHED_OTHER,
            sched_nice: nice,
            sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
            ..SchedAttr::default()
        };
        // SAFETY: `sched_setattr(0, attr, 0)` changes the calling thread's own scheduling;
        // `attr` is a valid, initialised `sched_attr` of the size it declares and outlives
        // the call, which only reads it.
        let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if rc == 0 {
            return;
        }
        let error = std::io::Error::last_os_error();
        tracing::debug!(%error, "sched_setattr refused; lowering the reload thread's nice value only");
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::debug!(error = %e, "cannot lower the reload thread's priority");
        }
    }

    #[cfg(test)]
    pub fn current() -> (i32, Option<Duration>) {
        let mut attr = SchedAttr::default();
        // SAFETY: `sched_getattr(0, attr, size, 0)` writes at most `size` bytes into `attr`,
        // which is that large and lives across the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                std::mem::size_of::<SchedAttr>() as u32,
                0,
            )
        };
        if rc != 0 {
            let tid = rustix::thread::gettid();
            return (rustix::process::getpriority_process(Some(tid)).unwrap_or(0), None);
        }
        // Kernels without custom slices report 0; those with them report the slice in force.
        (attr.sched_nice, (attr.sched_runtime > 0).then(|| Duration::from_nanos(attr.sched_runtime)))
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::time::Duration;

    pub fn lower(_increment: i32, _slice: Duration) {}

    #[cfg(test)]
    pub fn current() -> (i32, Option<Duration>) {
        (0, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_compile_thread_runs_niced_with_a_short_slice() {
        let (before_nice, before_slice) = current();
        let (nice, slice) = std::thread::spawn(|| {
            lower_for_compile();
            current()
        })
        .join()
        .unwrap();
        assert_eq!(nice, (before_nice + RELOAD_NICE).min(19));
        // The slice is only reported by kernels that have custom slices (6.12+); where the
        // default is reported, it must have been replaced.
        if let (Some(before), Some(after)) = (before_slice, slice) {
            assert_ne!(before, after, "slice unchanged");
            assert_eq!(after, RELOAD_SLICE);
        }
        // The caller's thread is untouched.
        assert_eq!(current().0, before_nice);
    }
}
