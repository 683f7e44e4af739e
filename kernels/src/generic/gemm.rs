//! Single-precision matrix multiply-accumulate.

/// Columns of C updated per pass over K: four rows of this width stay in L1 while B streams.
const GEMM_NC: usize = 256;

/// out[m, n] += alpha * sum_k A[m, k] * B[k, n], where A is stored [m, k] (or [k, m] when
/// `a_transposed`) and B is stored [k, n] (or [n, k] when `b_transposed`). out is [m, n].
///
/// Slices must hold exactly `m * k`, `k * n` and `m * n` elements.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_transposed: bool,
    b: &[f32],
    b_transposed: bool,
    alpha: f32,
    out: &mut [f32],
) {
    assert_eq!(a.len(), m * k, "gemm_f32: a has wrong length");
    assert_eq!(b.len(), k * n, "gemm_f32: b has wrong length");
    assert_eq!(out.len(), m * n, "gemm_f32: out has wrong length");
    if m == 0 || n == 0 || k == 0 {
        return;
    }

    match (a_transposed, b_transposed) {
        (false, false) => gemm_acc_f32_4xnc(m, n, k, alpha, a, k, 1, b, n, out, n),
        (true, false) => gemm_acc_f32_4xnc(m, n, k, alpha, a, 1, m, b, n, out, n),
        // B stored [n, k] is the usual fully-connected weight layout: every output is a dot
        // product of two contiguous rows, so B (often the largest operand) is never copied.
        (false, true) => gemm_nt_acc_f32_dot(m, n, k, alpha, a, b, out),
        (true, true) => {
            // A is the small activation side here; repack it to [m, k] for the dot path.
            let mut a_rows = vec![0.0f32; m * k];
            for (p, a_row) in a.chunks_exact(m).enumerate() {
                for (i, &v) in a_row.iter().enumerate() {
                    a_rows[i * k + p] = v;
                }
            }
            gemm_nt_acc_f32_dot(m, n, k, alpha, &a_rows, b, out);
        }
    }
}

/// C += alpha * A * B with A element (i, p) at `a[i * a_rs + p * a_cs]`, B row-major with row
/// stride `ldb` and C row-major with row stride `ldc`.
///
/// Loop order is i-k-j over blocks of four C rows and `GEMM_NC` columns: each B row segment
/// is loaded once for four rows, and the innermost loop is a contiguous axpy the compiler
/// vectorises.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_acc_f32_4xnc(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    a_rs: usize,
    a_cs: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(n <= ldb && n <= ldc);
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() >= (k - 1) * ldb + n);
    assert!(c.len() >= (m - 1) * ldc + n);

    let mut i = 0;
    while i + 4 <= m {
        let block = &mut c[i * ldc..(i + 3) * ldc + n];
        let (c0, rest) = block.split_at_mut(ldc);
        let (c1, rest) = rest.split_at_mut(ldc);
        let (c2, c3) = rest.split_at_mut(ldc);
        for j0 in (0..n).step_by(GEMM_NC) {
            let j1 = (j0 + GEMM_NC).min(n);
            let (c0, c1, c2, c3) = (
                &mut c0[j0..j1],
                &mut c1[j0..j1],
                &mut c2[j0..j1],
                &mut c3[j0..j1],
            );
            for p in 0..k {
                let a0 = alpha * a[i * a_rs + p * a_cs];
                let a1 = alpha * a[(i + 1) * a_rs + p * a_cs];
                let a2 = alpha * a[(i + 2) * a_rs + p * a_cs];
                let a3 = alpha * a[(i + 3) * a_rs + p * a_cs];
                let b_row = &b[p * ldb + j0..p * ldb + j1];
                let rows = c0
                    .iter_mut()
                    .zip(c1.iter_mut())
                    .zip(c2.iter_mut())
                    .zip(c3.iter_mut());
                for ((((x0, x1), x2), x3), &bv) in rows.zip(b_row) {
                    *x0 += a0 * bv;
                    *x1 += a1 * bv;
                    *x2 += a2 * bv;
                    *x3 += a3 * bv;
                }
            }
        }
        i += 4;
    }

    // Leftover rows, one at a time.
    for i in i..m {
        let c_row = &mut c[i * ldc..i * ldc + n];
        for j0 in (0..n).step_by(GEMM_NC) {
            let j1 = (j0 + GEMM_NC).min(n);
            let c_seg = &mut c_row[j0..j1];
            for p in 0..k {
                let av = alpha * a[i * a_rs + p * a_cs];
                for (x, &bv) in c_seg.iter_mut().zip(&b[p * ldb + j0..p * ldb + j1]) {
                    *x += av * bv;
                }
            }
        }
    }
}

/// out[i, j] += alpha * dot(A[i, :], B[j, :]) with A [m, k] and B [n, k], both row-major.
fn gemm_nt_acc_f32_dot(
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
) {
    debug_assert!(a.len() == m * k && b.len() == n * k && out.len() == m * n);
    for (a_row, out_row) in a.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
        for (o, b_row) in out_row.iter_mut().zip(b.chunks_exact(k)) {
            *o += alpha * dot_f32(a_row, b_row);
        }
    }
}

/// Dot product with eight independent partial sums; float addition is not associative, so
/// the compiler only vectorises a reduction whose lanes are spelled out like this.
pub(crate) fn dot_f32(x: &[f32], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [0.0f32; 8];
    let xc = x.chunks_exact(8);
    let yc = y.chunks_exact(8);
    let (x_tail, y_tail) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..8 {
            acc[l] += xs[l] * ys[l];
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (&xv, &yv) in x_tail.iter().zip(y_tail) {
        sum += xv * yv;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_f32_tail_lengths() {
        for len in 0..20 {
            let x: Vec<f32> = (0..len).map(|i| i as f32).collect();
            let y: Vec<f32> = (0..len).map(|i| (i % 3) as f32 - 1.0).collect();
            let want: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            assert_eq!(dot_f32(&x, &y), want);
        }
    }

    #[test]
    fn gemm_f32_2x2_by_hand() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50], accumulated onto ones, alpha 2.
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let mut out = [1.0; 4];
        gemm_f32(2, 2, 2, &a, false, &b, false, 2.0, &mut out);
        assert_eq!(out, [39.0, 45.0, 87.0, 101.0]);
    }
}
