//! Telling a forked child from its parent without a `getpid` system call per call.
//!
//! glibc no longer caches the pid, so `std::process::id()` is a system call, and the core would ask
//! for it on every Python call and for every id it draws. Instead, a `pthread_atfork` child handler
//! bumps a generation counter: every `fork()` (Python's `os.fork`, multiprocessing, or C code
//! calling `fork` directly) runs it in the child, so "same generation" means "same process" at the
//! cost of an atomic load. See docs/design/fork-safety.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
static HANDLER: Once = Once::new();

extern "C" fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Changes in a forked child (and never otherwise).
pub fn generation() -> u64 {
    HANDLER.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic (async-signal-safe).
        let status = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // Registration fails only for lack of memory (ENOMEM).
        debug_assert_eq!(status, 0);
    });
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_sees_a_new_generation() {
        let before = generation();
        // SAFETY: the child only reads an atomic and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if generation() == before + 1 { 0 } else { 1 };
            unsafe { libc::_exit(code) };
        }
        assert!(pid > 0);
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(generation(), before);
    }
}
