//! Runtime choice of the instruction set the tuned kernels use.

use std::sync::OnceLock;

/// Environment variable that overrides the automatic choice: `generic` forces the portable
/// kernels; `avx2` or `neon` ask for that ISA (ignored if the CPU lacks it); unset, empty or
/// `auto` picks the best available.
pub const KERNELS_ENV: &str = "KESTREL_KERNELS";

/// A kernel implementation family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust kernels (auto-vectorised by the compiler).
    Generic,
    /// x86_64 AVX2 + FMA packed GEMM.
    Avx2Fma,
    /// Advanced SIMD (NEON) packed GEMM: on aarch64, where it is baseline, and on 32-bit ARM
    /// when the CPU reports it (the armv7 target's baseline has no NEON).
    Neon,
}

impl Isa {
    /// Every implementation, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx2Fma, Isa::Neon, Isa::Generic];

    /// Short lowercase name, as accepted by `KESTREL_KERNELS`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Generic => "generic",
            Isa::Avx2Fma => "avx2",
            Isa::Neon => "neon",
        }
    }

    /// Whether this build and this CPU can run the implementation.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Generic => true,
            Isa::Avx2Fma => avx2_fma_detected(),
            Isa::Neon => neon_detected(),
        }
    }

    /// The implementations this machine can run, best first (always ends with `Generic`).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best implementation this machine can run.
    pub fn best_available() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Generic)
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_detected() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_fma_detected() -> bool {
    false
}

// Advanced SIMD is part of the aarch64 baseline.
#[cfg(target_arch = "aarch64")]
fn neon_detected() -> bool {
    true
}

#[cfg(target_arch = "arm")]
fn neon_detected() -> bool {
    crate::armv7::neon_detected()
}

#[cfg(not(any(target_arch = "aarch64", target_arch = "arm")))]
fn neon_detected() -> bool {
    false
}

/// The implementation `selected_isa` picks for a given `KESTREL_KERNELS` value: a named,
/// available ISA if asked for, otherwise the best available one.
pub fn choose_isa(request: Option<&str>) -> Isa {
    let request = request.map(str::trim).unwrap_or("");
    if request.is_empty() || request.eq_ignore_ascii_case("auto") {
        return Isa::best_available();
    }
    match Isa::ALL
        .into_iter()
        .find(|i| i.name().eq_ignore_ascii_case(request))
    {
        Some(isa) if isa.is_available() => isa,
        Some(isa) => {
            let best = Isa::best_available();
            log::warn!("{KERNELS_ENV}={request}: {isa} is not available here, using {best}");
            best
        }
        None => {
            let best = Isa::best_available();
            log::warn!("{KERNELS_ENV}={request} is not a known kernel set, using {best}");
            best
        }
    }
}

/// The implementation the dispatched kernels use, chosen on first call from the CPU features
/// and `KESTREL_KERNELS`, then cached for the life of the process.
pub fn selected_isa() -> Isa {
    static SELECTED: OnceLock<Isa> = OnceLock::new();
    *SELECTED.get_or_init(|| {
        let request = std::env::var(KERNELS_ENV).ok();
        let isa = choose_isa(request.as_deref());
        log::debug!(
            "kestrel-kernels: using {isa} kernels (available: {:?}, {KERNELS_ENV}={:?})",
            Isa::available(),
            request
        );
        isa
    })
}
