//! A process-wide memory barrier: Linux `membarrier(2)` with
//! `MEMBARRIER_CMD_PRIVATE_EXPEDITED`.
//!
//! It lets the in-flight tracker's readers announce themselves with plain
//! stores and a compiler fence, the writer paying the hardware barrier for
//! them ("asymmetric fences", as in liburcu's `memb` flavour and the Linux
//! kernel's SRCU-fast; `crate::sync::inflight`, I7 and I8). Its cost grows
//! with the threads of the process that are running (an IPI per CPU
//! running one).
//!
//! # Protocol
//!
//! The code cites these invariants as `(B1)` to `(B3)`.
//!
//! 1. **B1 (the guarantee).** When [`process_wide`] returns `true`, every
//!    thread of this process that was running during the call has executed
//!    a full memory barrier at some point between the call's start and its
//!    return (threads that were not running get one from the context
//!    switch). A store a thread made before its barrier point is therefore
//!    visible to what the caller does after the return, and a load the
//!    thread makes after that point sees what the caller stored before the
//!    call.
//! 2. **B2 (registration).** The expedited command needs a one-time
//!    registration per process; if the kernel (or a seccomp filter) refuses
//!    it, [`available`] is `false` for good and callers keep every reader on
//!    the fenced path (`inflight`, I10).
//! 3. **B3 (refusal at call time).** The expedited command can still fail
//!    (it allocates a CPU mask); then the global one is tried, which gives
//!    B1 more slowly. If both fail, [`process_wide`] returns `false` having
//!    guaranteed nothing, and the caller must not rely on B1 (`inflight`
//!    then flags every region for good, I10). Not Linux, or under loom:
//!    never available.

/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED` (linux/membarrier.h).
#[cfg(all(target_os = "linux", not(loom)))]
const PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED`.
#[cfg(all(target_os = "linux", not(loom)))]
const REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
/// `MEMBARRIER_CMD_GLOBAL` (Linux 4.3's `MEMBARRIER_CMD_SHARED`): the same
/// guarantee for every thread of the system, after an RCU grace period
/// (milliseconds), with no registration and no allocation.
#[cfg(all(target_os = "linux", not(loom)))]
const GLOBAL: libc::c_long = 1;

/// Whether [`process_wide`] works here (registers on first call).
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn available() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // (B2) Once per process; a refusal is final.
    *REGISTERED.get_or_init(|| {
        // SAFETY: membarrier(2) takes (cmd, flags, cpu_id) integers and
        // touches no memory of ours; an unsupported command returns -1.
        unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 }
    })
}

/// Issues the process-wide barrier. Returns `false` (having done nothing)
/// if it is not [`available`], or if the kernel refuses it now: the
/// expedited command can fail (it allocates a CPU mask), and then the
/// global one is tried, which gives the same guarantee more slowly.
#[cfg(all(target_os = "linux", not(loom)))]
pub(crate) fn process_wide() -> bool {
    // SAFETY: as in `available`: integer arguments only, no memory passed.
    let issue = |cmd: libc::c_long| unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) == 0 };
    // (B1) `true` only if one command succeeded; (B3) the global one if the
    // expedited one is refused; (B2) nothing without registration.
    available() && (issue(PRIVATE_EXPEDITED) || issue(GLOBAL))
}

/// Not Linux, or under loom: never available (readers stay fenced, B2).
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn available() -> bool {
    false
}

/// Not Linux, or under loom: does nothing (B3).
#[cfg(not(all(target_os = "linux", not(loom))))]
pub(crate) fn process_wide() -> bool {
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn registers_and_issues_on_linux() {
        // On the Linux machines this project runs on, expedited membarrier
        // is supported (kernel >= 4.14); if this fails, readers silently
        // stay on the fenced path, which this test makes visible.
        if cfg!(target_os = "linux") {
            assert!(super::available(), "membarrier(PRIVATE_EXPEDITED) unavailable: readers will always fence");
            assert!(super::process_wide());
            // The fallback `process_wide` tries when the expedited command
            // is refused works here too.
            // SAFETY: integer arguments only, as in `available`.
            assert_eq!(unsafe { libc::syscall(libc::SYS_membarrier, super::GLOBAL, 0, 0) }, 0);
        }
    }
}
