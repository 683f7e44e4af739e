//! Kernel-set selection: `KESTREL_KERNELS` and the explicit-implementation API.
//!
//! This binary sets `KESTREL_KERNELS=generic` before anything reads the cached selection, so
//! it holds a single test to keep other threads from racing on the environment.

use kestrel_kernels::{choose_isa, gemm_f32, generic, selected_isa, Isa, KERNELS_ENV};

#[test]
fn env_generic_forces_the_generic_kernels() {
    std::env::set_var(KERNELS_ENV, "generic");
    assert_eq!(selected_isa(), Isa::Generic);
    assert_eq!(selected_isa().name(), "generic");

    // The dispatched gemm gives bit-for-bit what the generic kernel gives.
    let (m, n, k) = (9, 37, 300);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104_729) % 97) as f32 / 48.0 - 1.0)
        .collect();
    let mut dispatched = vec![0.5f32; m * n];
    let mut portable = dispatched.clone();
    gemm_f32(m, n, k, &a, false, &b, false, 1.0, &mut dispatched);
    generic::gemm_f32(m, n, k, &a, false, &b, false, 1.0, &mut portable);
    assert_eq!(dispatched, portable);

    // The request parser behind the cache.
    let best = Isa::best_available();
    assert_eq!(choose_isa(Some("generic")), Isa::Generic);
    assert_eq!(choose_isa(Some(" GENERIC ")), Isa::Generic);
    assert_eq!(choose_isa(None), best);
    assert_eq!(choose_isa(Some("")), best);
    assert_eq!(choose_isa(Some("auto")), best);
    assert_eq!(choose_isa(Some("no-such-isa")), best);
    for isa in Isa::ALL {
        let want = if isa.is_available() { isa } else { best };
        assert_eq!(choose_isa(Some(isa.name())), want, "{isa}");
    }
}
