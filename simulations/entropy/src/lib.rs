//! Seeded entropy for the simulator, so that a run with a given seed repeats.
//!
//! A simulated run is deterministic only if every random draw in it comes from its seed.
//! Most of the simulator's own draws do, but some are made deep inside its dependencies
//! from the operating system's entropy:
//! - std's `HashMap` keys, which decide iteration order inside libp2p;
//! - tokio's `select!` branch order;
//! - libp2p's `rand::rng()` (Kademlia's bucket-refresh targets, libp2p-stream's choice
//!   between two connections to one peer).
//!
//! All of them reach the kernel through the C function `getrandom(3)`, which they look up
//! with `dlsym`. This crate defines that symbol for the whole process:
//! - on a thread started by [`run_seeded`], bytes come from a generator seeded with the
//!   run's seed;
//! - on every other thread (a node's, the main thread of `p2psip node`), the call goes
//!   straight to the `getrandom(2)` system call, as glibc's own function does.
//!
//! So the only thread whose randomness is predictable is the simulator's, and only while
//! it runs a simulation. A node's keys, nonces and TLS secrets never come from here.

use std::cell::Cell;

thread_local! {
    /// The state of this thread's seeded generator; `None` (every thread but a simulator's)
    /// means the kernel's entropy.
    static SEEDED_STATE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// A simulator thread's stack: the simulator runs thousands of nodes' futures on it, and a
/// debug build's futures are large.
const SIMULATOR_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `f` on a new thread whose every `getrandom` call is answered from `seed`, and
/// returns its result. The thread is new so that nothing on it drew from the kernel
/// before: std draws a thread's `HashMap` keys once, at the thread's first `HashMap`.
///
/// Fails only when the thread cannot be started. A panic in `f` is passed on.
pub fn run_seeded<T, F>(seed: u64, f: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(format!("simulator-{seed}"))
            .stack_size(SIMULATOR_STACK_BYTES)
            .spawn_scoped(scope, move || {
                SEEDED_STATE.with(|state| state.set(Some(seed)));
                f()
            })?;
        match thread.join() {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether the calling thread's entropy is seeded (it runs inside [`run_seeded`]).
pub fn is_seeded() -> bool {
    SEEDED_STATE
        .try_with(|state| state.get().is_some())
        .unwrap_or(false)
}

/// SplitMix64: a full-period 64-bit generator, ample for a simulation's draws (these bytes
/// only ever seed simulated nodes' generators and hash tables).
fn next_seeded(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `out` from this thread's seeded generator; `false` (and `out` untouched) when the
/// thread is not seeded.
fn fill_seeded(out: &mut [u8]) -> bool {
    SEEDED_STATE
        .try_with(|cell| {
            let Some(mut state) = cell.get() else {
                return false;
            };
            for chunk in out.chunks_mut(8) {
                let bytes = next_seeded(&mut state).to_le_bytes();
                chunk.copy_from_slice(&bytes[..chunk.len()]);
            }
            cell.set(Some(state));
            true
        })
        // During the thread's teardown: the kernel's entropy.
        .unwrap_or(false)
}

/// `getrandom(3)`, as glibc declares it. Seeded on a simulator thread, the system call
/// everywhere else (same arguments, return value and `errno`).
///
/// # Safety
///
/// `buf` must be valid for writes of `buflen` bytes, as for glibc's `getrandom`.
#[no_mangle]
pub unsafe extern "C" fn getrandom(
    buf: *mut libc::c_void,
    buflen: libc::size_t,
    flags: libc::c_uint,
) -> libc::ssize_t {
    if buflen > 0 && !buf.is_null() {
        // SAFETY: the caller guarantees `buf` is valid for `buflen` bytes of writes, and
        // nothing else refers to that memory during this call.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
        if fill_seeded(out) {
            // At most isize::MAX bytes can be in one allocation, so this does not wrap.
            return buflen as libc::ssize_t;
        }
    }
    // SAFETY: the arguments are the caller's, passed on unchanged to the system call that
    // glibc's `getrandom` itself makes; the kernel checks the buffer.
    unsafe { libc::syscall(libc::SYS_getrandom, buf, buflen, flags) as libc::ssize_t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        // SAFETY: `out` is valid for `len` bytes.
        let written = unsafe { getrandom(out.as_mut_ptr().cast(), len, 0) };
        assert_eq!(written, len as libc::ssize_t);
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let first = run_seeded(7, || draw(37)).unwrap();
        let second = run_seeded(7, || draw(37)).unwrap();
        let other = run_seeded(8, || draw(37)).unwrap();
        assert_eq!(first, second);
        assert_ne!(first, other);
    }

    #[test]
    fn other_threads_get_the_kernels_entropy() {
        assert!(!is_seeded());
        // 32 random bytes from the kernel are equal by chance with probability 2^-256.
        assert_ne!(draw(32), draw(32));
        let (inside, outside) = run_seeded(1, || {
            let inside = is_seeded();
            let outside = std::thread::spawn(is_seeded).join().unwrap();
            (inside, outside)
        })
        .unwrap();
        assert!(inside);
        assert!(
            !outside,
            "a thread started by the simulator thread is not seeded"
        );
    }

    #[test]
    fn std_hash_maps_on_a_seeded_thread_repeat_their_order() {
        fn order() -> Vec<u32> {
            let map: std::collections::HashMap<u32, ()> = (0..64).map(|key| (key, ())).collect();
            map.keys().copied().collect()
        }
        let first = run_seeded(3, order).unwrap();
        let second = run_seeded(3, order).unwrap();
        assert_eq!(first, second);
    }

    #[test]
    fn a_zero_length_probe_touches_nothing() {
        // getrandom crates probe the function with a dangling pointer and length 0.
        for seed in [None, Some(5)] {
            let probe = || {
                // SAFETY: length 0: nothing is written.
                unsafe { getrandom(std::ptr::NonNull::dangling().as_ptr(), 0, 0) }
            };
            let written = match seed {
                None => probe(),
                Some(seed) => run_seeded(seed, probe).unwrap(),
            };
            assert_eq!(written, 0);
        }
    }
}
