//! Prints the measured single-core fp32 FMA peak of each available kernel ISA.
//!
//! `cargo run --release -p kestrel-kernels --example peak`

use std::time::Duration;

use kestrel_kernels::{fma_peak_gmacs, selected_isa, Isa};

fn main() {
    println!("selected kernels: {}", selected_isa().name());
    for isa in Isa::available() {
        if let Some(gmacs) = fma_peak_gmacs(isa, Duration::from_secs(2)) {
            println!(
                "{:>8}: single-core fp32 FMA peak {gmacs:.1} GMAC/s ({:.1} GFLOP/s)",
                isa.name(),
                2.0 * gmacs
            );
        }
    }
}
