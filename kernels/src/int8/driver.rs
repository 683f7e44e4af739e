//! Packed int8 GEMM driver shared by the int8 micro-kernels.
//!
//! C = A * B for prepacked weights A ([m, k]: MR-row panels over the whole depth) and
//! activations B ([k, n] u8/i8, any row stride) packed by [`pack_b`] into NR-column slivers.
//! A convolution packs each block of activation columns once, then any number of threads run
//! [`gemm_packed`] on disjoint row (output channel) ranges against the same packed block.
//! Each finished MR x NR tile of raw i32 sums goes straight to the caller's epilogue, so there
//! is no i32 C matrix and no K blocking: the whole depth is one pass (the A panel stays in L1
//! while slivers stream from an L2-sized panel), and the tile leaves the registers once.
//!
//! Both operands are packed in groups of `KU` consecutive depth steps (the kernel's unit of
//! depth per instruction: 1 for widening multiply-accumulate by lane, 2 for `vpmaddwd`,
//! 4 for `sdot`): A panel element (row r, depth g * KU + u) at `g * MR * KU + r * KU + u`,
//! B sliver element (depth g * KU + u, column j) at `g * NR * KU + j * KU + u`. Depth is
//! zero-padded to a multiple of KU in A (so B's padding never matters), rows and columns past
//! the edge are zero and their results discarded.

use std::ops::Range;

use rayon::prelude::*;

use crate::quant::{FixedPoint, Requantizer};

/// Bytes of packed B per column panel: fits Zen's 512 KiB and Cortex-A72's 1 MiB L2 with the
/// A stream beside it.
const B_PANEL_BYTES: usize = 192 * 1024;

/// An activation element type; kernels see it as the biased u8 `x + OFFSET`.
pub(crate) trait Activation: Scratch {
    /// `biased(x)` is the byte of `x` xor this (one-byte types only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    const BIAS_XOR: u8;
    fn biased(self) -> u8;
    fn from_biased(u: u8) -> Self;
}

impl Activation for u8 {
    const BIAS_XOR: u8 = 0;
    #[inline(always)]
    fn biased(self) -> u8 {
        self
    }
    #[inline(always)]
    fn from_biased(u: u8) -> Self {
        u
    }
}

impl Activation for i8 {
    const BIAS_XOR: u8 = 0x80;
    #[inline(always)]
    fn biased(self) -> u8 {
        // x + 128 for every i8: flip the sign bit.
        (self as u8) ^ 0x80
    }
    #[inline(always)]
    fn from_biased(u: u8) -> Self {
        (u ^ 0x80) as i8
    }
}

/// Plain integer element types that can live in a reusable per-thread scratch buffer.
pub(crate) trait Scratch: Copy + Default + Send + Sync + 'static {
    /// Runs `f` on a buffer of `len` elements of unspecified content (the caller overwrites
    /// what it reads), reusing this thread's buffer of the type so that repeated convolutions
    /// neither allocate nor clear their packing buffers.
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

macro_rules! scratch_for {
    ($t:ty, $slot:ident) => {
        thread_local! {
            static $slot: std::cell::Cell<Vec<$t>> = const { std::cell::Cell::new(Vec::new()) };
        }
        impl Scratch for $t {
            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                // Taking the buffer out (rather than borrowing it) keeps a nested use of the
                // same type correct: the inner one just gets a fresh buffer.
                let mut buf = $slot.take();
                if buf.len() < len {
                    buf.resize(len, <$t>::default());
                }
                let result = f(&mut buf[..len]);
                $slot.set(buf);
                result
            }
        }
    };
}

scratch_for!(u8, SCRATCH_U8);
scratch_for!(i8, SCRATCH_I8);
scratch_for!(i16, SCRATCH_I16);

/// A packed operand element type.
pub(crate) trait PackElem: Scratch {
    fn wrap(v: Vec<Self>) -> super::PackedData;
    fn unwrap(d: &super::PackedData) -> &[Self];
}

impl PackElem for i16 {
    fn wrap(v: Vec<Self>) -> super::PackedData {
        super::PackedData::I16(v)
    }
    fn unwrap(d: &super::PackedData) -> &[Self] {
        match d {
            super::PackedData::I16(v) => v,
            super::PackedData::I8(_) => panic!("int8: weights packed for another kernel"),
        }
    }
}

impl PackElem for i8 {
    fn wrap(v: Vec<Self>) -> super::PackedData {
        super::PackedData::I8(v)
    }
    fn unwrap(d: &super::PackedData) -> &[Self] {
        match d {
            super::PackedData::I8(v) => v,
            super::PackedData::I16(_) => panic!("int8: weights packed for another kernel"),
        }
    }
}

/// A register-tiled int8 micro-kernel and the operand format it reads.
///
/// Implementations are tokens that can only be built when the CPU supports the
/// instructions, which is what makes the safe `tile` method sound.
pub(crate) trait I8MicroKernel: Sync {
    /// Element type of both packed operands.
    type Elem: PackElem;
    /// Rows (output channels) of the tile.
    const MR: usize;
    /// Columns (output pixels) of the tile.
    const NR: usize;
    /// Depth steps per packed group.
    const KU: usize;
    /// Packed activations hold `biased_x - ACT_OFFSET`, so the raw sums miss
    /// `ACT_OFFSET * weight_sum`, which the epilogue adds back.
    const ACT_OFFSET: i32;

    fn pack_act(x: u8) -> Self::Elem;
    fn pack_weight(w: i8) -> Self::Elem;

    /// c[i * ldc + j] = sum over `groups` packed depth groups of a(i, p) * b(p, j), wrapping,
    /// for every row i < MR and at least the columns j < `cols` (<= NR) that matter: a kernel
    /// may leave the rest of the NR columns unwritten. Panics if a slice is too short.
    fn tile(
        &self,
        groups: usize,
        a: &[Self::Elem],
        b: &[Self::Elem],
        c: &mut [i32],
        ldc: usize,
        cols: usize,
    );

    /// Packs columns `c0..c0 + cols` (cols <= NR) of B ([k, *], row stride `ldb`) into one
    /// sliver of `NR * k.next_multiple_of(KU)` elements.
    fn pack_b_sliver<T: Activation>(
        &self,
        dst: &mut [Self::Elem],
        b: &[T],
        ldb: usize,
        k: usize,
        c0: usize,
        cols: usize,
    ) {
        pack_b_sliver_scalar::<Self, T>(dst, b, ldb, k, c0, cols);
    }

    /// `dst[i] = clamp(requantize(acc[i] + offset) + addend_i, lo, hi)` with `addend_i` =
    /// `residual[i]` when given, else `zero_point`; see [`requantize_scalar`], which every
    /// override must match bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn requantize<T: QuantByte>(
        &self,
        rq: &ChannelRequant,
        acc: &[i32],
        offset: i32,
        residual: Option<&[T]>,
        zero_point: i32,
        lo: i32,
        hi: i32,
        dst: &mut [T],
    ) {
        requantize_scalar(rq, acc, offset, residual, zero_point, lo, hi, dst);
    }
}

/// A u8 or i8 output element.
pub(crate) trait QuantByte: Copy + Send + Sync + 'static {
    /// Whether the byte is read as signed.
    const SIGNED: bool;
    fn to_i32(self) -> i32;
    /// The low byte of `v` (callers pass values already in range).
    fn from_i32(v: i32) -> Self;
}

impl QuantByte for u8 {
    const SIGNED: bool = false;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as u8
    }
}

impl QuantByte for i8 {
    const SIGNED: bool = true;
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self as i32
    }
    #[inline(always)]
    fn from_i32(v: i32) -> Self {
        v as i8
    }
}

/// One output channel's requantization: the exact scalar form, and the clamped fixed-point
/// form vector kernels use when the scale allows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelRequant {
    pub(crate) scalar: Requantizer,
    /// Read by the vector epilogues (AVX2, NEON); armv7 runs only the scalar form.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(crate) fixed: Option<FixedPoint>,
}

impl ChannelRequant {
    pub(crate) fn new(scale: f32) -> Self {
        let scalar = Requantizer::new(scale);
        ChannelRequant {
            scalar,
            fixed: scalar.fixed_point(),
        }
    }
}

/// The reference epilogue every [`I8MicroKernel::requantize`] reproduces.
#[allow(clippy::too_many_arguments)]
pub(crate) fn requantize_scalar<T: QuantByte>(
    rq: &ChannelRequant,
    acc: &[i32],
    offset: i32,
    residual: Option<&[T]>,
    zero_point: i32,
    lo: i32,
    hi: i32,
    dst: &mut [T],
) {
    let rq = rq.scalar;
    match residual {
        Some(res) => {
            for ((d, &a), &r) in dst.iter_mut().zip(acc).zip(res) {
                *d = T::from_i32(rq.apply_saturating(a.wrapping_add(offset), r.to_i32(), lo, hi));
            }
        }
        None => {
            for (d, &a) in dst.iter_mut().zip(acc) {
                *d = T::from_i32(rq.apply_saturating(a.wrapping_add(offset), zero_point, lo, hi));
            }
        }
    }
}

/// Packed length of an [m, k] A for kernel `K`.
pub(crate) fn packed_a_len<K: I8MicroKernel>(m: usize, k: usize) -> usize {
    m.div_ceil(K::MR) * K::MR * k.next_multiple_of(K::KU)
}

/// Packs row-major `w` ([m, k]) into `K`'s A panels (see the module docs).
pub(crate) fn pack_a<K: I8MicroKernel>(dst: &mut [K::Elem], w: &[i8], m: usize, k: usize) {
    let (mr, ku) = (K::MR, K::KU);
    let kp = k.next_multiple_of(ku);
    assert_eq!(dst.len(), packed_a_len::<K>(m, k));
    assert_eq!(w.len(), m * k);
    if kp == 0 {
        return;
    }
    for (panel, out) in dst.chunks_exact_mut(mr * kp).enumerate() {
        for (g, step) in out.chunks_exact_mut(mr * ku).enumerate() {
            for (r, unit) in step.chunks_exact_mut(ku).enumerate() {
                let row = panel * mr + r;
                for (u, d) in unit.iter_mut().enumerate() {
                    let p = g * ku + u;
                    *d = if row < m && p < k {
                        K::pack_weight(w[row * k + p])
                    } else {
                        K::Elem::default()
                    };
                }
            }
        }
    }
}

/// Scalar [`I8MicroKernel::pack_b_sliver`]: any kernel, any column count.
pub(crate) fn pack_b_sliver_scalar<K: I8MicroKernel + ?Sized, T: Activation>(
    dst: &mut [K::Elem],
    b: &[T],
    ldb: usize,
    k: usize,
    c0: usize,
    cols: usize,
) {
    let (nr, ku) = (K::NR, K::KU);
    for (g, step) in dst.chunks_exact_mut(nr * ku).enumerate() {
        for u in 0..ku {
            let p = g * ku + u;
            if p >= k {
                for j in 0..nr {
                    step[j * ku + u] = K::Elem::default();
                }
                continue;
            }
            let row = &b[p * ldb + c0..][..cols];
            for (j, &x) in row.iter().enumerate() {
                step[j * ku + u] = K::pack_act(x.biased());
            }
            for j in cols..nr {
                step[j * ku + u] = K::Elem::default();
            }
        }
    }
}

/// Packed length of the B slivers of `n` columns at depth `k`.
pub(crate) fn packed_b_len<K: I8MicroKernel>(k: usize, n: usize) -> usize {
    n.div_ceil(K::NR) * K::NR * k.next_multiple_of(K::KU)
}

/// Fewest slivers a packing task takes when packing is split across threads.
const MIN_SLIVERS_PER_TASK: usize = 8;

/// Packs columns `0..n` of B ([k, *], row stride `ldb`) into `dst` (`packed_b_len(k, n)`
/// elements), splitting the slivers across the current pool's threads.
pub(crate) fn pack_b<K: I8MicroKernel, T: Activation>(
    kern: &K,
    dst: &mut [K::Elem],
    b: &[T],
    ldb: usize,
    k: usize,
    n: usize,
) {
    let nr = K::NR;
    let sliver = nr * k.next_multiple_of(K::KU);
    assert_eq!(
        dst.len(),
        packed_b_len::<K>(k, n),
        "int8 gemm: packed b length"
    );
    if sliver == 0 || n == 0 {
        return;
    }
    assert!(
        n <= ldb && b.len() >= (k - 1) * ldb + n,
        "int8 gemm: b length"
    );
    let pack_one = |(s, d): (usize, &mut [K::Elem])| {
        let c0 = s * nr;
        kern.pack_b_sliver(d, b, ldb, k, c0, nr.min(n - c0));
    };
    let slivers = n.div_ceil(nr);
    if crate::parallel::current_threads() > 1 && slivers >= 2 * MIN_SLIVERS_PER_TASK {
        dst.par_chunks_mut(sliver)
            .enumerate()
            .with_min_len(MIN_SLIVERS_PER_TASK)
            .for_each(pack_one);
    } else {
        dst.chunks_exact_mut(sliver).enumerate().for_each(pack_one);
    }
}

/// Most slivers in one strip: keeps the strip of sums (6 x 256 i32 for AVX2) in L1 for the
/// epilogue while still amortising its per-row set-up.
const MAX_STRIP_SLIVERS: usize = 16;

/// The sink of finished sums: `(row0, col0, rows, cols, sums, ld)` with the raw sums of C rows
/// `row0..row0 + rows`, columns `col0..col0 + cols` at `sums[r * ld + c]`.
pub(crate) type TileSink<'a> = &'a mut dyn FnMut(usize, usize, usize, usize, &[i32], usize);

/// Raw C rows `rows` = A * B over the whole depth, handing the sums to `sink` a strip at a
/// time: the tiles of one row panel across one L2 panel of B are written side by side into a
/// strip, so the epilogue runs on long rows (its per-row set-up is paid once per strip, not
/// once per tile). `a` holds all the row panels packed by [`pack_a`]; `bpack` is `n` columns
/// packed by [`pack_b`].
pub(crate) fn gemm_packed<K: I8MicroKernel>(
    kern: &K,
    a: &[K::Elem],
    rows: Range<usize>,
    k: usize,
    bpack: &[K::Elem],
    n: usize,
    sink: TileSink<'_>,
) {
    let (mr, nr) = (K::MR, K::NR);
    if rows.is_empty() || n == 0 {
        return;
    }
    let kp = k.next_multiple_of(K::KU);
    let groups = kp / K::KU;
    let a_panel = mr * kp;
    let sliver = nr * kp;
    assert!(
        a.len() >= rows.end.div_ceil(mr) * a_panel,
        "int8 gemm: packed a length"
    );
    assert_eq!(
        bpack.len(),
        packed_b_len::<K>(k, n),
        "int8 gemm: packed b length"
    );
    let elem = std::mem::size_of::<K::Elem>();
    let slivers = n.div_ceil(nr);
    let per_panel =
        (B_PANEL_BYTES / (sliver * elem).max(1)).clamp(1, MAX_STRIP_SLIVERS.min(slivers));
    let ldc = per_panel * nr;
    let mut strip = vec![0i32; mr * ldc];

    for s0 in (0..slivers).step_by(per_panel) {
        let s1 = (s0 + per_panel).min(slivers);
        let col0 = s0 * nr;
        let cols = (s1 * nr).min(n) - col0;
        for panel in rows.start / mr..rows.end.div_ceil(mr) {
            let ap = &a[panel * a_panel..][..a_panel];
            for s in s0..s1 {
                let c = &mut strip[(s - s0) * nr..];
                let live = nr.min(n - s * nr);
                kern.tile(groups, ap, &bpack[s * sliver..][..sliver], c, ldc, live);
            }
            let first = (panel * mr).max(rows.start);
            let last = (panel * mr + mr).min(rows.end);
            let skip = (first - panel * mr) * ldc;
            sink(first, col0, last - first, cols, &strip[skip..], ldc);
        }
    }
}

/// Raw C = A * B over the whole depth, handing every tile to `sink`. `a` is `m` rows packed by
/// [`pack_a`]; B is [k, n] with row stride `ldb`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<K: I8MicroKernel, T: Activation>(
    kern: &K,
    m: usize,
    k: usize,
    a: &[K::Elem],
    n: usize,
    b: &[T],
    ldb: usize,
    sink: TileSink<'_>,
) {
    assert_eq!(
        a.len(),
        packed_a_len::<K>(m, k),
        "int8 gemm: packed a length"
    );
    if m == 0 || n == 0 {
        return;
    }
    let mut bpack = vec![K::Elem::default(); packed_b_len::<K>(k, n)];
    pack_b(kern, &mut bpack, b, ldb, k, n);
    gemm_packed(kern, a, 0..m, k, &bpack, n, sink);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks `kern.requantize` against [`requantize_scalar`] over random scales (every f32
    /// exponent from subnormal to huge), accumulators over the whole i32 range (and near the
    /// clamp limits), offsets that wrap, both output types, zero points and residuals.
    pub(crate) fn requantize_matches_scalar<K: I8MicroKernel>(kern: &K) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..6000 {
            let scale = match round % 6 {
                0 => f32::from_bits(next() as u32 & 0x7fff_ffff),
                1 => f32::from_bits((next() as u32 % 0x0a00_0000) + 0x3000_0000),
                // [0.25, 1) and [2^-21, 2^-19): the edges of the kernels' fast paths.
                2 => f32::from_bits((next() as u32 % 0x0100_0000) + 0x3e80_0000),
                3 => f32::from_bits((next() as u32 % 0x0100_0000) + 0x3500_0000),
                _ => (next() % 100_000) as f32 * 1e-7,
            };
            if !scale.is_finite() {
                continue;
            }
            let rq = ChannelRequant::new(scale);
            let n = (next() % 40) as usize;
            let limit = rq.fixed.map_or(1 << 20, |f| f.acc_limit as i64);
            let acc: Vec<i32> = (0..n)
                .map(|_| match next() % 4 {
                    0 => next() as i32,
                    1 => (next() as i32) >> (next() % 31),
                    _ => {
                        (limit + (next() % 5) as i64 - 2).clamp(0, i32::MAX as i64) as i32
                            * if next() % 2 == 0 { 1 } else { -1 }
                    }
                })
                .collect();
            let offset = match next() % 3 {
                0 => 0,
                1 => next() as i32,
                _ => (next() % 2001) as i32 - 1000,
            };
            let relu = next() % 2 == 0;
            let with_residual = next() % 2 == 0;
            // u8 output
            let zp = (next() % 256) as i32;
            let res: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let res = with_residual.then_some(&res[..]);
            let lo = if relu { zp } else { 0 };
            let (mut got, mut want) = (vec![0u8; n], vec![0u8; n]);
            kern.requantize(&rq, &acc, offset, res, zp, lo, 255, &mut got);
            requantize_scalar(&rq, &acc, offset, res, zp, lo, 255, &mut want);
            assert_eq!(got, want, "u8 scale {scale:e} offset {offset} acc {acc:?}");
            // i8 output
            let zp = (next() % 256) as i32 - 128;
            let res: Vec<i8> = (0..n).map(|_| next() as i8).collect();
            let res = with_residual.then_some(&res[..]);
            let lo = if relu { zp } else { -128 };
            let (mut got, mut want) = (vec![0i8; n], vec![0i8; n]);
            kern.requantize(&rq, &acc, offset, res, zp, lo, 127, &mut got);
            requantize_scalar(&rq, &acc, offset, res, zp, lo, 127, &mut want);
            assert_eq!(got, want, "i8 scale {scale:e} offset {offset} acc {acc:?}");
        }
    }

    #[test]
    fn portable_requantize_matches_scalar() {
        requantize_matches_scalar(&super::super::portable::Portable);
    }
}
