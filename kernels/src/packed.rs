//! Blocked, packed single-precision GEMM driver shared by the per-ISA micro-kernels.
//!
//! C += alpha * A * B is computed BLIS-style: B is packed into KC x NC panels of NR columns
//! and A into MC x KC panels of MR rows, both zero-padded to whole tiles, so the micro-kernel
//! always runs a full MR x NR register tile over contiguous, unit-stride data. Edge tiles go
//! through a small scratch tile; the padding lanes are computed and thrown away.

use std::cell::RefCell;

/// Read-only strided matrix view: element (r, c) is `data[r * rs + c * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    pub fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        MatRef { data, rs, cs }
    }

    /// The transpose, as a view of the same storage.
    fn t(self) -> Self {
        MatRef {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Panics unless every element of a `rows x cols` view is inside `data`.
    fn assert_fits(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len(),
                "packed gemm: {what} out of bounds"
            );
        }
    }
}

/// Largest MR * NR any micro-kernel uses (size of the edge scratch tile).
const MAX_TILE: usize = 128;

/// A register-tiled micro-kernel plus its cache blocking.
///
/// Implementations are zero-sized tokens that can only be built when the CPU supports the
/// instructions, which is what makes the safe `tile` method sound.
pub(crate) trait MicroKernel: Sync {
    /// Rows of the C tile.
    const MR: usize;
    /// Columns of the C tile.
    const NR: usize;
    /// Rows of A packed per block (a multiple of MR; the A block stays in L2).
    const MC: usize;
    /// Depth of one packed block (a KC x NR sliver of B stays in L1).
    const KC: usize;
    /// Columns of B packed per panel (a multiple of NR; the B panel stays in L3).
    const NC: usize;

    /// C[0..MR, 0..NR] += alpha * sum_p a[p * MR + i] * b[p * ldb + j], with C(i, j) at
    /// `c[i * ldc + j]`. `ldb` is NR for a packed B sliver, or the row stride of a B whose
    /// rows are read in place. Panics if the slices are too short.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        kc: usize,
        a: &[f32],
        b: &[f32],
        ldb: usize,
        alpha: f32,
        c: &mut [f32],
        ldc: usize,
    );

    /// Hints the cache to fetch `data`, which the next tiles will read. Does nothing unless
    /// the ISA overrides it.
    fn prefetch(&self, _data: &[f32]) {}

    /// y[j] += alpha * sum_p x[p] * b[j * ldb + p] for j in 0..y.len() (rows of b are dot
    /// products with x).
    fn gemv_dot(&self, x: &[f32], b: &[f32], ldb: usize, alpha: f32, y: &mut [f32]) {
        let k = x.len();
        for (j, yv) in y.iter_mut().enumerate() {
            let row = &b[j * ldb..j * ldb + k];
            *yv += alpha * crate::generic::dot_f32(x, row);
        }
    }

    /// y[j] += alpha * sum_p x[p] * b[p * ldb + j] for j in 0..y.len() (a sum of scaled rows).
    fn gemv_axpy(&self, x: &[f32], b: &[f32], ldb: usize, alpha: f32, y: &mut [f32]) {
        let n = y.len();
        let mut acc = vec![0.0f32; n];
        for (p, &xv) in x.iter().enumerate() {
            for (a, &bv) in acc.iter_mut().zip(&b[p * ldb..p * ldb + n]) {
                *a += xv * bv;
            }
        }
        for (yv, a) in y.iter_mut().zip(acc) {
            *yv += alpha * a;
        }
    }
}

/// C += alpha * A * B for an m x k A, k x n B and m x n C with C(i, j) at
/// `c[i * c_rs + j * c_cs]`.
///
/// Single-row and single-column products go to the matrix-vector kernels (packing would cost
/// as much as the arithmetic); otherwise the orientation (C or its transpose) that wastes
/// fewer padded lanes is packed and multiplied.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc<K: MicroKernel>(
    kern: &K,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    c_rs: usize,
    c_cs: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    a.assert_fits(m, k, "a");
    b.assert_fits(k, n, "b");
    MatRef::new(c, c_rs, c_cs).assert_fits(m, n, "c");

    // A single row of C is x^T B; a single column is (A x)^T = x^T A^T.
    if m == 1 && try_gemv(kern, k, n, alpha, a, b, c, c_cs) {
        return;
    }
    if n == 1 && try_gemv(kern, k, m, alpha, b.t(), a.t(), c, c_rs) {
        return;
    }

    let padded =
        |rows: usize, cols: usize| rows.div_ceil(K::MR) * K::MR * cols.div_ceil(K::NR) * K::NR;
    // C^T = B^T A^T; only worth its strided C updates if it saves a tenth of the work.
    if 10 * padded(n, m) < 9 * padded(m, n) {
        gemm_packed(kern, n, m, k, alpha, b.t(), a.t(), c, c_cs, c_rs);
    } else {
        gemm_packed(kern, m, n, k, alpha, a, b, c, c_rs, c_cs);
    }
}

/// y += alpha * x^T B for x (element p at `x.data[p * x.cs]`) and a k x n B, when x and one
/// of B's axes are contiguous. Returns false (doing nothing) otherwise.
#[allow(clippy::too_many_arguments)]
fn try_gemv<K: MicroKernel>(
    kern: &K,
    k: usize,
    n: usize,
    alpha: f32,
    x: MatRef<'_>,
    b: MatRef<'_>,
    y: &mut [f32],
    y_stride: usize,
) -> bool {
    if x.cs != 1 || (y_stride != 1 && n > 1) {
        return false;
    }
    let x = &x.data[..k];
    let y = &mut y[..n];
    if b.rs == 1 || k == 1 {
        // Column j of B is contiguous: one dot product per output.
        kern.gemv_dot(x, b.data, b.cs, alpha, y);
        true
    } else if b.cs == 1 || n == 1 {
        kern.gemv_axpy(x, b.data, b.rs, alpha, y);
        true
    } else {
        false
    }
}

thread_local! {
    /// Packing buffers for A and B, reused across calls on the same thread.
    static PACK_BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `len` floats of `buf`, starting at a 64-byte boundary so packed rows do not straddle
/// cache lines.
fn aligned_mut(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    const SLACK: usize = 16;
    if buf.len() < len + SLACK {
        buf.resize(len + SLACK, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(SLACK);
    &mut buf[off..off + len]
}

/// Splits `len` into the fewest blocks of at most `max`, of near-equal size rounded up to a
/// multiple of `mult`.
fn balanced_block(len: usize, max: usize, mult: usize) -> usize {
    let blocks = len.div_ceil(max);
    len.div_ceil(blocks).next_multiple_of(mult).min(max)
}

#[allow(clippy::too_many_arguments)]
fn gemm_packed<K: MicroKernel>(
    kern: &K,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    c: &mut [f32],
    c_rs: usize,
    c_cs: usize,
) {
    let (mr, nr) = (K::MR, K::NR);
    assert!(mr * nr <= MAX_TILE && K::MC % mr == 0 && K::NC % nr == 0);
    let kc_max = balanced_block(k, K::KC, 8);
    let mc_max = balanced_block(m, K::MC, mr);
    let nc_max = balanced_block(n, K::NC, nr);

    PACK_BUFFERS.with(|cell| {
        let mut owned = (Vec::new(), Vec::new());
        let mut guard = cell.try_borrow_mut();
        let (abuf, bbuf) = match guard.as_deref_mut() {
            Ok((abuf, bbuf)) => (abuf, bbuf),
            Err(_) => (&mut owned.0, &mut owned.1),
        };
        let apack = aligned_mut(abuf, mc_max.next_multiple_of(mr) * kc_max);
        let bpack = aligned_mut(bbuf, nc_max.next_multiple_of(nr) * kc_max);

        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                let bblock = &mut bpack[..nc.div_ceil(nr) * nr * kc];
                pack_block(bblock, nr, b.data, pc, kc, b.rs, jc, nc, b.cs);
                for ic in (0..m).step_by(mc_max) {
                    let mc = mc_max.min(m - ic);
                    let ablock = &mut apack[..mc.div_ceil(mr) * mr * kc];
                    pack_block(ablock, mr, a.data, pc, kc, a.cs, ic, mc, a.rs);
                    for (tj, bp) in bpack[..nc.div_ceil(nr) * nr * kc]
                        .chunks_exact(nr * kc)
                        .enumerate()
                    {
                        let j0 = jc + tj * nr;
                        let cols = nr.min(jc + nc - j0);
                        for (ti, ap) in apack[..mc.div_ceil(mr) * mr * kc]
                            .chunks_exact(mr * kc)
                            .enumerate()
                        {
                            let i0 = ic + ti * mr;
                            let rows = mr.min(ic + mc - i0);
                            let origin = i0 * c_rs + j0 * c_cs;
                            if rows == mr && cols == nr && c_cs == 1 {
                                let tile = &mut c[origin..origin + (mr - 1) * c_rs + nr];
                                kern.tile(kc, ap, bp, nr, alpha, tile, c_rs);
                            } else {
                                edge_tile(
                                    kern, kc, ap, bp, nr, alpha, c, origin, c_rs, c_cs, rows, cols,
                                );
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Weights packed once into panels of `width` output channels over the whole depth `k`:
/// channel `t * width + r` at depth `p` is `data[t * width * k + p * width + r]`, and lanes past
/// the last channel are zero. A depth block `p0..p0 + kc` of a panel is therefore one
/// contiguous run of `kc * width` floats, which is exactly a micro-kernel operand panel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WeightPanels<'a> {
    pub data: &'a [f32],
    pub width: usize,
    pub k: usize,
}

impl<'a> WeightPanels<'a> {
    /// Floats that `rows` channels of depth `k` take in panels of `width`.
    pub fn len(rows: usize, k: usize, width: usize) -> usize {
        rows.div_ceil(width) * width * k
    }

    /// Packs `rows` channels given row-major (`weights[c * k + p]`) into `dst`, which must
    /// hold [`WeightPanels::len`] floats.
    pub fn pack(dst: &mut [f32], weights: &[f32], rows: usize, k: usize, width: usize) {
        assert_eq!(dst.len(), Self::len(rows, k, width));
        assert_eq!(weights.len(), rows * k);
        if rows > 0 && k > 0 {
            pack_block(dst, width, weights, 0, k, 1, 0, rows, k);
        }
    }

    /// Depth block `p0..p0 + kc` of panel `t`.
    fn block(&self, t: usize, p0: usize, kc: usize) -> &'a [f32] {
        &self.data[t * self.width * self.k + p0 * self.width..][..kc * self.width]
    }
}

/// C[m x n] += W * X for the prepacked weight rows `first..first + m` (`first` a multiple of
/// the panel width), a strided k x n X and a row-major C with row stride `ldc`.
///
/// With `weights_left` the panels are the micro-kernel's A operand (width MR) and X is its B;
/// otherwise the product runs as C^T = X^T W^T, the panels being B (width NR) and the packed
/// X^T rows (output positions) A, which wastes fewer lanes when n is small. Every output is
/// the same sequence of fused multiply-adds either way (depth blocks from the same
/// [`balanced_block`] split, each summed from zero and then added to C), so the orientation
/// changes speed, never results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_prepacked<K: MicroKernel>(
    kern: &K,
    weights: WeightPanels<'_>,
    weights_left: bool,
    first: usize,
    m: usize,
    n: usize,
    x: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let k = weights.k;
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let width = if weights_left { K::MR } else { K::NR };
    assert_eq!(
        weights.width, width,
        "packed gemm: weights packed for another tile"
    );
    assert_eq!(first % width, 0, "packed gemm: rows start inside a panel");
    assert!(
        weights.data.len() >= WeightPanels::len(first + m, k, width),
        "packed gemm: weights out of bounds"
    );
    x.assert_fits(k, n, "x");
    MatRef::new(c, ldc, 1).assert_fits(m, n, "c");
    let weights = WeightPanels {
        data: &weights.data[first * k..],
        ..weights
    };
    if weights_left {
        gemm_weights_left(kern, weights, m, n, x, c, ldc);
    } else {
        gemm_weights_right(kern, weights, m, n, x, c, ldc);
    }
}

/// [`gemm_prepacked`] as C = W X: W panels are A, X is B. When X's rows are contiguous its
/// KC x NR slivers are read in place, each staying in L1 while the A panels of a block run
/// over it: packing them, whether a whole B block ahead (written out to L2 or L3 and read
/// back) or one sliver at a time, measured slower, most for the short depths of 1x1 layers.
/// A ragged last sliver, or an X with strided rows, is packed one sliver at a time.
fn gemm_weights_left<K: MicroKernel>(
    kern: &K,
    w: WeightPanels<'_>,
    m: usize,
    n: usize,
    x: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let (mr, nr, k) = (K::MR, K::NR, w.k);
    let kc_max = balanced_block(k, K::KC, 8);
    let mc_max = balanced_block(m, K::MC, mr);
    let nc_max = balanced_block(n, K::NC, nr);
    let in_place = x.cs == 1;

    PACK_BUFFERS.with(|cell| {
        let mut owned = Vec::new();
        let mut guard = cell.try_borrow_mut();
        let bbuf = match guard.as_deref_mut() {
            Ok((_, bbuf)) => bbuf,
            Err(_) => &mut owned,
        };
        let sliver = aligned_mut(bbuf, nr * kc_max);

        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                for ic in (0..m).step_by(mc_max) {
                    let mc = mc_max.min(m - ic);
                    for j0 in (jc..jc + nc).step_by(nr) {
                        let cols = nr.min(jc + nc - j0);
                        let (bp, ldb) = if in_place && cols == nr {
                            (&x.data[pc * x.rs + j0..], x.rs)
                        } else {
                            let bp = &mut sliver[..nr * kc];
                            pack_block(bp, nr, x.data, pc, kc, x.rs, j0, cols, x.cs);
                            (&*bp, nr)
                        };
                        for i0 in (ic..ic + mc).step_by(mr) {
                            let rows = mr.min(ic + mc - i0);
                            let ap = w.block(i0 / mr, pc, kc);
                            let origin = i0 * ldc + j0;
                            if rows == mr && cols == nr {
                                let tile = &mut c[origin..origin + (mr - 1) * ldc + nr];
                                kern.tile(kc, ap, bp, ldb, 1.0, tile, ldc);
                            } else {
                                edge_tile(
                                    kern, kc, ap, bp, ldb, 1.0, c, origin, ldc, 1, rows, cols,
                                );
                            }
                        }
                    }
                }
            }
        }
    });
}

thread_local! {
    /// The transposed output block of [`gemm_weights_right`], reused across calls.
    static TRANSPOSED_C: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// [`gemm_prepacked`] as C^T = X^T W^T: X^T (output positions by depth) is packed into A
/// panels of MR positions and the W panels are B.
///
/// The product accumulates in a row-major copy of C^T padded to whole tiles, so that every
/// tile is a full, unit-stride one: C is transposed in once and out once per call instead of
/// being gathered and scattered through every tile of every depth block. Each output still
/// receives the same additions in the same order.
fn gemm_weights_right<K: MicroKernel>(
    kern: &K,
    w: WeightPanels<'_>,
    m: usize,
    n: usize,
    x: MatRef<'_>,
    c: &mut [f32],
    ldc: usize,
) {
    let (mr, nr, k) = (K::MR, K::NR, w.k);
    let kc_max = balanced_block(k, K::KC, 8);
    // Rows of the computed product are output positions, columns are channels.
    let mc_max = balanced_block(n, K::MC, mr);
    let nc_max = balanced_block(m, K::NC, nr);
    let (n_pad, m_pad) = (n.next_multiple_of(mr), m.next_multiple_of(nr));

    TRANSPOSED_C.with(|ct_cell| {
        let mut owned_ct = Vec::new();
        let mut ct_guard = ct_cell.try_borrow_mut();
        let ct_buf = match ct_guard.as_deref_mut() {
            Ok(buf) => buf,
            Err(_) => &mut owned_ct,
        };
        let ct = aligned_mut(ct_buf, n_pad * m_pad);
        transpose_into(c, ldc, m, n, ct, m_pad);

        PACK_BUFFERS.with(|cell| {
            let mut owned = Vec::new();
            let mut guard = cell.try_borrow_mut();
            let abuf = match guard.as_deref_mut() {
                Ok((abuf, _)) => abuf,
                Err(_) => &mut owned,
            };
            let apack = aligned_mut(abuf, mc_max.next_multiple_of(mr) * kc_max);

            for jc in (0..m).step_by(nc_max) {
                let nc = nc_max.min(m - jc);
                for pc in (0..k).step_by(kc_max) {
                    let kc = kc_max.min(k - pc);
                    for ic in (0..n).step_by(mc_max) {
                        let mc = mc_max.min(n - ic);
                        let ablock = &mut apack[..mc.div_ceil(mr) * mr * kc];
                        // Lines are output positions (stride x.cs), depth runs down X's rows.
                        pack_block(ablock, mr, x.data, pc, kc, x.rs, ic, mc, x.cs);
                        let tiles = mc.div_ceil(mr);
                        for j0 in (jc..jc + nc).step_by(nr) {
                            let bp = w.block(j0 / nr, pc, kc);
                            // The weight panels stream from memory once per call (each is
                            // used by only the few position tiles), so fetch the next one
                            // while this one is reused from L1, a slice per tile.
                            let next = if j0 + nr < jc + nc {
                                w.block(j0 / nr + 1, pc, kc)
                            } else {
                                &[]
                            };
                            let slice = next.len().div_ceil(tiles);
                            for (ti, ap) in ablock.chunks_exact(mr * kc).enumerate() {
                                if !next.is_empty() {
                                    let from = (ti * slice).min(next.len());
                                    kern.prefetch(&next[from..(from + slice).min(next.len())]);
                                }
                                let origin = (ic + ti * mr) * m_pad + j0;
                                let tile = &mut ct[origin..origin + (mr - 1) * m_pad + nr];
                                kern.tile(kc, ap, bp, nr, 1.0, tile, m_pad);
                            }
                        }
                    }
                }
            }
        });
        transpose_from(ct, m_pad, m, n, c, ldc);
    });
}

/// ct[i * ldt + j] = c[j * ldc + i] for the `rows x cols` matrix c (rows are channels here).
fn transpose_into(c: &[f32], ldc: usize, rows: usize, cols: usize, ct: &mut [f32], ldt: usize) {
    // Eight rows at a time: eight sequential read streams, one contiguous write per column.
    for j0 in (0..rows).step_by(8) {
        let height = 8.min(rows - j0);
        for i in 0..cols {
            let dst = &mut ct[i * ldt + j0..][..height];
            for (jj, d) in dst.iter_mut().enumerate() {
                *d = c[(j0 + jj) * ldc + i];
            }
        }
    }
}

/// c[j * ldc + i] = ct[i * ldt + j], the inverse of [`transpose_into`].
fn transpose_from(ct: &[f32], ldt: usize, rows: usize, cols: usize, c: &mut [f32], ldc: usize) {
    for j0 in (0..rows).step_by(8) {
        let height = 8.min(rows - j0);
        for i in 0..cols {
            let src = &ct[i * ldt + j0..][..height];
            for (jj, &v) in src.iter().enumerate() {
                c[(j0 + jj) * ldc + i] = v;
            }
        }
    }
}

/// A partial (or non-unit column stride) tile: gather C into a scratch tile, run the full
/// micro-kernel on it, and scatter back only the `rows x cols` that exist.
#[allow(clippy::too_many_arguments)]
fn edge_tile<K: MicroKernel>(
    kern: &K,
    kc: usize,
    ap: &[f32],
    bp: &[f32],
    ldb: usize,
    alpha: f32,
    c: &mut [f32],
    origin: usize,
    c_rs: usize,
    c_cs: usize,
    rows: usize,
    cols: usize,
) {
    let (mr, nr) = (K::MR, K::NR);
    let mut tmp = [0.0f32; MAX_TILE];
    if c_rs == 1 && rows == mr {
        // Whole tile of a transposed C (the swapped orientation): each tile column is a
        // contiguous run of MR floats.
        for j in 0..cols {
            let col = &c[origin + j * c_cs..][..mr];
            for (i, &v) in col.iter().enumerate() {
                tmp[i * nr + j] = v;
            }
        }
        kern.tile(kc, ap, bp, ldb, alpha, &mut tmp[..mr * nr], nr);
        for j in 0..cols {
            let col = &mut c[origin + j * c_cs..][..mr];
            for (i, v) in col.iter_mut().enumerate() {
                *v = tmp[i * nr + j];
            }
        }
        return;
    }
    for i in 0..rows {
        for j in 0..cols {
            tmp[i * nr + j] = c[origin + i * c_rs + j * c_cs];
        }
    }
    kern.tile(kc, ap, bp, ldb, alpha, &mut tmp[..mr * nr], nr);
    for i in 0..rows {
        for j in 0..cols {
            c[origin + i * c_rs + j * c_cs] = tmp[i * nr + j];
        }
    }
}

/// Packs lines `t0..t0 + lines` (rows of A or columns of B) over depth `p0..p0 + kc` into
/// consecutive panels of `width` lines each, zero-padding the last one (see [`pack_panel`]).
#[allow(clippy::too_many_arguments)]
fn pack_block(
    dst: &mut [f32],
    width: usize,
    src: &[f32],
    p0: usize,
    kc: usize,
    depth_stride: usize,
    t0: usize,
    lines: usize,
    line_stride: usize,
) {
    let panel_len = width * kc;
    debug_assert_eq!(dst.len(), lines.div_ceil(width) * panel_len);
    if line_stride == 1 && lines >= width {
        // Lines are contiguous (B stored [k, n]): walk source rows in order and deal each one
        // out to the panels. Packing panel by panel would instead read kc far-apart cache
        // lines per panel, which the hardware prefetcher follows poorly.
        let full = lines / width;
        for p in 0..kc {
            let row = &src[(p0 + p) * depth_stride + t0..][..full * width];
            for (t, chunk) in row.chunks_exact(width).enumerate() {
                dst[t * panel_len + p * width..][..width].copy_from_slice(chunk);
            }
        }
        if full * width < lines {
            let tail = &mut dst[full * panel_len..];
            pack_panel(
                tail,
                width,
                src,
                p0,
                kc,
                depth_stride,
                t0 + full * width,
                lines - full * width,
                1,
            );
        }
        return;
    }
    for (t, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
        let l0 = t * width;
        pack_panel(
            panel,
            width,
            src,
            p0,
            kc,
            depth_stride,
            t0 + l0,
            width.min(lines - l0),
            line_stride,
        );
    }
}

/// Packs `valid` lines (rows of A or columns of B) starting at line `t0`, over depth
/// `p0..p0 + kc`, into `dst[p * width + r]`; element (line r, depth p) of the source is
/// `src[r * line_stride + p * depth_stride]`. Lines `valid..width` are zero.
#[allow(clippy::too_many_arguments)]
fn pack_panel(
    dst: &mut [f32],
    width: usize,
    src: &[f32],
    p0: usize,
    kc: usize,
    depth_stride: usize,
    t0: usize,
    valid: usize,
    line_stride: usize,
) {
    debug_assert_eq!(dst.len(), width * kc);
    let base = t0 * line_stride + p0 * depth_stride;
    let src = &src[base..];
    // A compile-time width turns the per-step copies into a few vector moves instead of
    // memmove calls.
    match width {
        24 => pack_fixed::<24>(dst, src, kc, depth_stride, valid, line_stride),
        4 => pack_fixed::<4>(dst, src, kc, depth_stride, valid, line_stride),
        16 => pack_fixed::<16>(dst, src, kc, depth_stride, valid, line_stride),
        8 => pack_fixed::<8>(dst, src, kc, depth_stride, valid, line_stride),
        6 => pack_fixed::<6>(dst, src, kc, depth_stride, valid, line_stride),
        _ => pack_any(dst, width, src, kc, depth_stride, valid, line_stride),
    }
}

/// [`pack_panel`] for a width known at compile time; `src` starts at the panel's origin.
fn pack_fixed<const W: usize>(
    dst: &mut [f32],
    src: &[f32],
    kc: usize,
    depth_stride: usize,
    valid: usize,
    line_stride: usize,
) {
    if valid < W {
        return pack_any(dst, W, src, kc, depth_stride, valid, line_stride);
    }
    let (steps, _) = dst.as_chunks_mut::<W>();
    if line_stride == 1 {
        // Each depth step is a contiguous run of W floats.
        for (p, d) in steps.iter_mut().enumerate() {
            let s = p * depth_stride;
            *d = src[s..s + W].try_into().expect("W floats");
        }
    } else if depth_stride == 1 {
        // Each line is contiguous along depth: take W rows and interleave them.
        let rows: [&[f32]; W] = std::array::from_fn(|r| &src[r * line_stride..][..kc]);
        for (p, d) in steps.iter_mut().enumerate() {
            for (dv, row) in d.iter_mut().zip(&rows) {
                *dv = row[p];
            }
        }
    } else {
        pack_any(dst, W, src, kc, depth_stride, valid, line_stride);
    }
}

/// [`pack_panel`] for any width and stride; `src` starts at the panel's origin.
fn pack_any(
    dst: &mut [f32],
    width: usize,
    src: &[f32],
    kc: usize,
    depth_stride: usize,
    valid: usize,
    line_stride: usize,
) {
    for (p, d) in dst.chunks_exact_mut(width).enumerate().take(kc) {
        for (r, dv) in d.iter_mut().enumerate() {
            *dv = if r < valid {
                src[r * line_stride + p * depth_stride]
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_block_sizes() {
        assert_eq!(balanced_block(1152, 256, 8), 232);
        assert_eq!(balanced_block(256, 256, 8), 256);
        assert_eq!(balanced_block(257, 256, 8), 136);
        assert_eq!(balanced_block(3, 256, 8), 8);
        assert_eq!(balanced_block(64, 144, 6), 66);
        assert_eq!(balanced_block(1000, 144, 6), 144);
        assert_eq!(balanced_block(2048, 144, 6), 138);
    }

    #[test]
    fn pack_block_fast_paths_match_the_plain_loop() {
        // A 37 x 29 matrix read as lines x depth (row-major) and as its transpose, packed
        // with every specialised width, full and partial blocks, offset origins.
        let (rows, cols) = (37usize, 29usize);
        let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        for width in [4usize, 5, 6, 8, 16, 24] {
            for (line_stride, depth_stride) in [(cols, 1), (1, cols)] {
                let (nlines, ndepth) = if line_stride == 1 {
                    (cols, rows)
                } else {
                    (rows, cols)
                };
                for (t0, lines, p0, kc) in
                    [(0, nlines, 0, ndepth), (3, nlines - 5, 2, 7), (1, 2, 5, 1)]
                {
                    let len = lines.div_ceil(width) * width * kc;
                    let mut fast = vec![f32::NAN; len];
                    pack_block(
                        &mut fast,
                        width,
                        &src,
                        p0,
                        kc,
                        depth_stride,
                        t0,
                        lines,
                        line_stride,
                    );
                    let mut want = vec![f32::NAN; len];
                    for (t, panel) in want.chunks_exact_mut(width * kc).enumerate() {
                        let l0 = t0 + t * width;
                        let valid = width.min(t0 + lines - l0);
                        let origin = &src[l0 * line_stride + p0 * depth_stride..];
                        pack_any(panel, width, origin, kc, depth_stride, valid, line_stride);
                    }
                    assert_eq!(
                        fast, want,
                        "width {width} strides {line_stride},{depth_stride}"
                    );
                }
            }
        }
    }

    #[test]
    fn pack_panel_pads_with_zeros() {
        // 3 x 4 source, rows are lines: pack rows 1..3 over depth 1..3 into width 4.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut dst = [9.0; 8];
        pack_panel(&mut dst, 4, &src, 1, 2, 1, 1, 2, 4);
        assert_eq!(dst, [5.0, 9.0, 0.0, 0.0, 6.0, 10.0, 0.0, 0.0]);
        // Same lines as columns of the transpose (line stride 1, depth stride 3 on a 4 x 3).
        let srct: Vec<f32> = (0..12).map(|i| src[(i % 3) * 4 + i / 3]).collect();
        let mut dst2 = [9.0; 8];
        pack_panel(&mut dst2, 4, &srct, 1, 2, 3, 1, 2, 1);
        assert_eq!(dst2, dst);
    }
}
