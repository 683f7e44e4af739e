//! Packed int8 GEMM driver shared by the int8 micro-kernels.
//!
//! C = A * B for prepacked weights A ([m, k]: MR-row panels over the whole depth) and
//! activations B ([k, n] u8/i8, any row stride) packed here into NR-column slivers, in panels
//! of columns sized so a packed panel stays in L2. Each finished MR x NR tile of raw i32 sums
//! goes straight to the caller's epilogue, so there is no i32 C matrix and no K blocking: the
//! whole depth is one pass, the tile leaves the registers once.
//!
//! Both operands are packed in groups of `KU` consecutive depth steps (the kernel's unit of
//! depth per instruction: 1 for widening multiply-accumulate by lane, 2 for `vpmaddwd`,
//! 4 for `sdot`): A panel element (row r, depth g * KU + u) at `g * MR * KU + r * KU + u`,
//! B sliver element (depth g * KU + u, column j) at `g * NR * KU + j * KU + u`. Depth is
//! zero-padded to a multiple of KU in A (so B's padding never matters), rows and columns past
//! the edge are zero and their results discarded.

/// Largest MR * NR of any int8 micro-kernel.
pub(crate) const MAX_TILE: usize = 128;

/// Bytes of packed B per column panel: fits Zen's 512 KiB and Cortex-A72's 1 MiB L2 with the
/// A stream beside it.
const B_PANEL_BYTES: usize = 192 * 1024;

/// An activation element type; kernels see it as the biased u8 `x + OFFSET`.
pub(crate) trait Activation: Copy + Send + Sync + 'static {
    fn biased(self) -> u8;
    fn from_biased(u: u8) -> Self;
}

impl Activation for u8 {
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

/// A packed operand element type.
pub(crate) trait PackElem: Copy + Default + Send + Sync + 'static {
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
pub(crate) trait I8MicroKernel {
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

    /// c[i * NR + j] = sum over `groups` packed depth groups of a(i, p) * b(p, j), wrapping.
    /// Panics if a slice is too short.
    fn tile(&self, groups: usize, a: &[Self::Elem], b: &[Self::Elem], c: &mut [i32]);
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

/// Packs columns `c0..c0 + cols` (cols <= NR) of B ([k, *], row stride `ldb`) into one sliver.
fn pack_b_sliver<K: I8MicroKernel, T: Activation>(
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

/// The tile sink: `(row0, col0, rows, cols, tile)` with the raw sums of C rows
/// `row0..row0 + rows`, columns `col0..col0 + cols` at `tile[r * NR + c]`.
pub(crate) type TileSink<'a> = &'a mut dyn FnMut(usize, usize, usize, usize, &[i32]);

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
    let (mr, nr) = (K::MR, K::NR);
    assert!(mr * nr <= MAX_TILE);
    if m == 0 || n == 0 {
        return;
    }
    let kp = k.next_multiple_of(K::KU);
    assert_eq!(
        a.len(),
        packed_a_len::<K>(m, k),
        "int8 gemm: packed a length"
    );
    if k > 0 {
        assert!(
            n <= ldb && b.len() >= (k - 1) * ldb + n,
            "int8 gemm: b length"
        );
    }
    let groups = kp / K::KU;
    let a_panel = (mr * kp).max(1);
    let sliver = nr * kp;
    let elem = std::mem::size_of::<K::Elem>();
    let nc = (B_PANEL_BYTES / (sliver * elem).max(1)).max(1) * nr;
    let nc = nc.min(n.next_multiple_of(nr));
    let mut bpack = vec![K::Elem::default(); nc * kp];
    let mut tile = [0i32; MAX_TILE];
    let tile = &mut tile[..mr * nr];

    for jc in (0..n).step_by(nc) {
        let ncols = nc.min(n - jc);
        let slivers = ncols.div_ceil(nr);
        let bpanel = &mut bpack[..slivers * sliver];
        if sliver > 0 {
            for (s, dst) in bpanel.chunks_exact_mut(sliver).enumerate() {
                let c0 = jc + s * nr;
                pack_b_sliver::<K, T>(dst, b, ldb, k, c0, nr.min(jc + ncols - c0));
            }
        }
        for i in 0..m.div_ceil(mr) {
            let ap = if kp == 0 {
                &a[..0]
            } else {
                &a[i * a_panel..][..a_panel]
            };
            let row0 = i * mr;
            let rows = mr.min(m - row0);
            for s in 0..slivers {
                let bp = &bpanel[s * sliver..][..sliver];
                let col0 = jc + s * nr;
                kern.tile(groups, ap, bp, tile);
                sink(row0, col0, rows, nr.min(jc + ncols - col0), tile);
            }
        }
    }
}
