//! Run-time CPU feature detection for the kernels (the crate-private `linalg` module).

/// Whether this x86-64 CPU has AVX2 and FMA (detected once by the standard library and
/// cached). The cells' entry points then run a copy compiled for them; otherwise the
/// baseline copy (SSE2, unfused multiply-adds). Set `TBPTT_NO_SIMD=1` to force the baseline.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn avx2_fma() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 no, 2 yes
    match STATE.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            let yes = std::env::var_os("TBPTT_NO_SIMD").is_none()
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

/// Names the kernel variant in use, for benchmarks and logs.
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma() {
        return "avx2+fma";
    }
    "baseline"
}
