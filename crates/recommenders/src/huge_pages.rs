//! Buffers for the tables an SpMM gathers rows from at random.
//!
//! A propagation step gathers one d-float row per non-zero from a table of tens of megabytes:
//! with 4 KiB pages nearly every gather also misses the TLB. Linux backs a range with 2 MiB
//! pages when asked (`MADV_HUGEPAGE`; most distributions set transparent huge pages to
//! `madvise`), which at the paper's Amazon size takes about a quarter off an SpMM
//! (`benches/lightgcn_amz.rs`). A hint only: contents and results are the same either way, and
//! where it is refused or unavailable the buffer is an ordinary one.

/// `n` zeros, in memory the kernel is asked to back with huge pages.
pub fn zeroed(n: usize) -> Vec<f32> {
    let mut v = vec![0f32; n];
    advise(&mut v);
    v
}

/// A copy of `x` in such memory.
pub fn copy_of(x: &[f32]) -> Vec<f32> {
    let mut v = zeroed(x.len());
    v.copy_from_slice(x);
    v
}

/// Below this the TLB holds the whole table anyway.
const WORTH_IT: usize = 4 << 20;

#[cfg(target_os = "linux")]
fn advise(v: &mut [f32]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(v);
    if bytes < WORTH_IT {
        return;
    }
    let start = v.as_mut_ptr() as usize;
    let lo = start.div_ceil(PAGE) * PAGE;
    let hi = (start + bytes) / PAGE * PAGE;
    if hi > lo {
        // SAFETY: [lo, hi) lies inside `v`'s allocation, which outlives the call, and
        // MADV_HUGEPAGE changes how pages are backed, never their contents. A failure (an old
        // kernel, huge pages disabled) leaves an ordinary mapping, which is fine.
        unsafe {
            libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_: &mut [f32]) {}

#[cfg(test)]
mod tests {
    #[test]
    fn buffers_hold_what_they_are_given() {
        let x: Vec<f32> = (0..(2 << 20)).map(|i| i as f32).collect();
        assert_eq!(super::copy_of(&x), x);
        assert!(super::zeroed(3 << 20).iter().all(|&v| v == 0.0));
        assert!(super::zeroed(0).is_empty());
    }
}
