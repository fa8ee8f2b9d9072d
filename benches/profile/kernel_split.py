#!/usr/bin/env python3
"""Split `perf script -F ip,sym,dso` call chains (cpu-clock samples of one process) by where the
CPU went, for benches/profile/kernel_split.sh.

usage: kernel_split.py --rate R --seconds S --hz F [--achieved NAME=R ...] NAME=FILE[,FILE...] ...

Each sample is one block of lines, leaf first, blocks separated by a blank line. A sample is:

  user                      the leaf is outside the kernel
  syscall entry and exit    in the kernel's system call entry or return path, not inside any one
                            call's own function (__x64_sys_*), and not scheduling
  <name>                    inside system call <name>: the first frame past the entry code is its
                            handler (__x64_sys_<name>, or do_<name> where the wrapper was folded in)
  <name> / <part>           a write (sendto, writev, ...) split three ways: waking the reading
                            process (try_to_wake_up and the wake-up callbacks), the loopback
                            receive of the segment for that reader (net_rx_action, tcp_v4_rcv), and
                            the rest (sending)
  scheduling at return      in the work done on the way back to user space (schedule(), signals,
                            task work) rather than in any call
  interrupts, softirqs      an interrupt or softirq that did not arrive inside a system call
  page faults               a fault taken in user space
  other kernel              anything else in the kernel

Samples become microseconds per request as samples / F (the cpu-clock period) / (R * S): the rate
times the sampled seconds, where R is the rate the target achieved (--achieved, the load
generator's figure over the same rounds) or else the asked --rate. The last line adds up what batching the calls through io_uring
could remove at most: the entry and exit path and epoll_wait as a whole (io_uring's own wait
would still sleep and wake, so this bound is generous).
"""

import argparse
import re
import sys
from collections import Counter

PREFIX = re.compile(r"^(?:__x64_sys_|__ia32_sys_|__se_sys_|__do_sys_|__sys_|ksys_|do_)")
ENTRY = ("entry_SYSCALL_64", "do_syscall_64", "syscall_exit_to_user_mode", "syscall_return_via_sysret",
         "entry_SYSRETQ", "x64_sys_call", "exit_to_user_mode", "syscall_trace_enter")
SCHED = ("schedule", "__schedule")
RETURN_WORK = ("exit_to_user_mode_loop", "irqentry_exit_to_user_mode", "arch_do_signal_or_restart",
               "task_work_run", "resume_user_mode_work", "__rseq_handle_notify_resume",
               "blkcg_maybe_throttle_current")
WRITES = ("sendto", "sendmsg", "write", "writev")
WAKE = ("try_to_wake_up", "__wake_up", "sock_def_readable", "ep_poll_callback")
DELIVER = ("net_rx_action", "__netif_receive_skb", "process_backlog", "tcp_v4_rcv", "tcp_v6_rcv")
IRQ = ("asm_sysvec_", "asm_common_interrupt", "__do_softirq", "handle_softirqs", "irq_exit",
       "sysvec_", "asm_spurious_interrupt", "do_softirq")
FAULT = ("asm_exc_page_fault", "exc_page_fault")
KERNEL_DSO = "[kernel.kallsyms]"


def parse_blocks(path):
    """Yield each sample as a list of (symbol, dso), leaf first."""
    frames = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                if frames:
                    yield frames
                frames = []
                continue
            # "ffffffff81234567 tcp_sendmsg+0x2a ([kernel.kallsyms])"
            parts = line.split(None, 1)
            rest = parts[1] if len(parts) > 1 else ""
            dso = rest[rest.rfind("(") + 1:-1] if rest.endswith(")") else ""
            sym = rest[: rest.rfind("(")].strip() if "(" in rest else rest
            sym = sym.split("+0x", 1)[0]
            frames.append((sym, dso))
    if frames:
        yield frames


def syscall_name(handler):
    """__x64_sys_sendto, __do_sys_writev, do_writev, ksys_write -> sendto, writev, writev, write"""
    return PREFIX.sub("", handler)


def classify(frames):
    """(row, part): part names a write's share ("sending", ...) and is None for the rest."""
    row = row_of(frames)
    return row, (part_of(frames) if row in WRITES else None)


def row_of(frames):
    if frames[0][1] != KERNEL_DSO:
        return "user"
    kernel = [s for s, d in frames if d == KERNEL_DSO]
    # From the root towards the leaf: past the entry code, the first frame is the call's handler
    # (its __x64_sys_* wrapper, or the function that wrapper was folded into).
    handler = next((s for s in reversed(kernel) if not s.startswith(ENTRY)), None)
    if any(s.startswith(ENTRY) for s in kernel):
        if handler is None:
            return "syscall entry and exit"
        if handler in SCHED or handler.startswith(RETURN_WORK):
            return "scheduling at return"
        if handler.startswith(IRQ):  # an interrupt taken in the entry code itself
            return "interrupts, softirqs"
        return syscall_name(handler)
    if any(s.startswith(FAULT) for s in kernel):
        return "page faults"
    if any(s.startswith(IRQ) for s in kernel):
        return "interrupts, softirqs"
    return "other kernel"


def part_of(frames):
    """The part of a write a sample is in: a write on loopback also runs the reader's side (the
    segment is received and the reader woken inside the call, on this CPU, before it returns)."""
    kernel = [s for s, d in frames if d == KERNEL_DSO]
    if any(s.startswith(WAKE) for s in kernel):
        return "waking the reader"
    if any(s.startswith(DELIVER) for s in kernel):
        return "receiving for the reader"
    return "sending"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--hz", type=float, required=True)
    ap.add_argument("--achieved", action="append", default=[], metavar="NAME=R",
                    help="the rate NAME actually served (default: --rate)")
    ap.add_argument("targets", nargs="+", metavar="NAME=FILE[,FILE...]")
    a = ap.parse_args()
    achieved = {}
    for spec in a.achieved:
        name, _, rate = spec.partition("=")
        try:
            achieved[name] = float(rate)
        except ValueError:
            ap.error(f"--achieved wants NAME=R, got {spec!r}")

    counts = {}
    for spec in a.targets:
        name, _, files = spec.partition("=")
        if not name or not files:
            ap.error(f"expected NAME=FILE[,FILE...], got {spec!r}")
        c = Counter()
        for path in files.split(","):
            for frames in parse_blocks(path):
                c[classify(frames)] += 1
        if not c:
            sys.exit(f"kernel_split.py: no samples for {name} in {files}")
        counts[name] = c

    names = list(counts)
    # µs of CPU per request that one sample stands for, per target
    per_req = {n: 1e6 / a.hz / (achieved.get(n, a.rate) * a.seconds) for n in names}
    fixed = ["user", "syscall entry and exit", "scheduling at return"]
    tail = ["interrupts, softirqs", "page faults", "other kernel"]
    by_call = {n: Counter() for n in names}  # rows, the parts of a write added up
    for n in names:
        for (row_name, _), v in counts[n].items():
            by_call[n][row_name] += v
    calls = {k for b in by_call.values() for k in b} - set(fixed) - set(tail)
    order = sorted(calls, key=lambda k: (-sum(b[k] for b in by_call.values()), k))
    parts = ("sending", "receiving for the reader", "waking the reader")

    def row(label, values):
        cells = "".join(f"{v * per_req[n]:>12.2f} ({100 * v / sum(counts[n].values()):4.1f}%)"
                        for n, v in zip(names, values))
        print(f"{label:<32}{cells}")

    print(f"{'µs per request (share)':<32}" + "".join(f"{n:>21}" for n in names))
    for k in fixed:
        row(k, [by_call[n][k] for n in names])
    for k in order:
        row(f"  {k}()", [by_call[n][k] for n in names])
        if k in WRITES:
            for part in parts:
                row(f"    {part}", [counts[n][(k, part)] for n in names])
    for k in tail:
        row(k, [by_call[n][k] for n in names])
    row("all", [sum(counts[n].values()) for n in names])
    row("kernel", [sum(counts[n].values()) - by_call[n]["user"] for n in names])
    row("io_uring could remove, max",
        [by_call[n]["syscall entry and exit"] + by_call[n]["epoll_wait"] + by_call[n]["epoll_pwait"] for n in names])
    print(f"samples: {', '.join(f'{n} {sum(counts[n].values())}' for n in names)}; "
          f"1 sample = 1/{a.hz:g} s of CPU; requests = "
          f"{', '.join(f'{n} {achieved.get(n, a.rate):g}' for n in names)} req/s x {a.seconds:g} s sampled")


if __name__ == "__main__":
    main()
