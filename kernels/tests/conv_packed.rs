//! Convolution on weights packed once: against the f64 reference (within 1e-5 of the largest
//! sum |x||w| + |b| of an output), bitwise against the per-call path and the plain GEMM,
//! across thread counts, and the packed layout as documented.

mod common;

use common::{assert_close_to_bound, geometry, random, SIZES};
use kestrel_kernels::{
    conv2d_f32_packed, conv2d_f32_with, conv_weights_layout, gemm_f32_with, pack_conv_weights_f32,
    reference, Conv2dGeometry, ConvWeightsLayout, Isa, PackedConvWeights, PackedWeightsError,
};
use proptest::prelude::*;

fn pointwise(cin: usize, cout: usize, hw: usize) -> Conv2dGeometry {
    geometry(cin, cout, 1, (hw, hw), 1, 1, 0).unwrap()
}

struct Case {
    input: Vec<f32>,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl Case {
    fn new(g: &Conv2dGeometry, seed: u64) -> Case {
        Case {
            input: random(seed, g.in_channels * g.in_h * g.in_w, -1.0, 1.0),
            weights: random(seed ^ 1, g.weights_len(), -1.0, 1.0),
            bias: random(seed ^ 2, g.out_channels, -1.0, 1.0),
        }
    }

    fn packed_output(&self, g: &Conv2dGeometry, packed: &PackedConvWeights<'_>) -> Vec<f32> {
        // Garbage in: the conv must overwrite, not accumulate.
        let mut out = vec![f32::NAN; g.out_channels * g.out_h * g.out_w];
        conv2d_f32_packed(g, &self.input, packed, Some(&self.bias), &mut out);
        out
    }

    fn reference(&self, g: &Conv2dGeometry) -> Vec<f32> {
        let mut out = vec![0.0; g.out_channels * g.out_h * g.out_w];
        reference::conv2d_f32(g, &self.input, &self.weights, Some(&self.bias), &mut out);
        out
    }

    /// Each output's sum of |terms|, which scales its rounding error.
    fn bound(&self, g: &Conv2dGeometry) -> Vec<f32> {
        let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
        let mut out = vec![0.0; g.out_channels * g.out_h * g.out_w];
        let (x, w, b) = (abs(&self.input), abs(&self.weights), abs(&self.bias));
        reference::conv2d_f32(g, &x, &w, Some(&b), &mut out);
        out
    }
}

/// Packed once, the conv matches the reference and, bitwise, the per-call path; borrowed from
/// the packed floats it gives the same again.
fn check(g: &Conv2dGeometry, seed: u64) {
    let case = Case::new(g, seed);
    let (want, bound) = (case.reference(g), case.bound(g));
    for isa in Isa::available() {
        let packed = pack_conv_weights_f32(isa, g, &case.weights);
        assert_eq!(packed.layout(), conv_weights_layout(isa, g));
        let got = case.packed_output(g, &packed);
        assert_close_to_bound(&got, &want, &bound, &format!("{isa} {g:?}"));

        let mut per_call = vec![f32::NAN; got.len()];
        conv2d_f32_with(
            isa,
            g,
            &case.input,
            &case.weights,
            Some(&case.bias),
            &mut per_call,
        );
        assert_eq!(bits(&got), bits(&per_call), "{isa} {g:?}: per-call path");

        let borrowed = PackedConvWeights::from_packed(isa, g, packed.as_slice()).unwrap();
        assert!(borrowed.is_borrowed());
        assert_eq!(bits(&case.packed_output(g, &borrowed)), bits(&got));
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(120))]

    #[test]
    fn packed_conv_matches_reference_on_every_isa(
        cin in 1..=20usize,
        cout in 1..=40usize,
        groups in 1..=2usize,
        h in prop::sample::select(&SIZES[..]),
        w in prop::sample::select(&SIZES[..]),
        kernel in 1..=3usize,
        stride in 1..=2usize,
        pad in 0..=1usize,
        seed: u64,
    ) {
        if let Some(g) = geometry(cin, cout, groups, (h, w), kernel, stride, pad) {
            check(&g, seed);
        }
    }
}

#[test]
fn layer_sized_convs_in_both_orientations() {
    // 7x7 with many channels packs weights as column panels, 28x28 as row panels; depth past
    // one KC block, channel counts not a multiple of either panel width.
    check(&pointwise(300, 100, 7), 1);
    check(&pointwise(70, 37, 28), 2);
    check(&geometry(40, 90, 1, (7, 7), 3, 1, 1).unwrap(), 3);
    check(&geometry(40, 33, 1, (28, 28), 3, 1, 1).unwrap(), 4);
    // Depthwise keeps raw weights; grouped convs pack each group.
    check(&geometry(1, 2, 24, (15, 17), 3, 2, 1).unwrap(), 5);
    check(&geometry(16, 24, 2, (17, 15), 3, 2, 1).unwrap(), 6);
}

#[test]
fn orientation_follows_the_number_of_positions() {
    for isa in Isa::available() {
        let small = conv_weights_layout(isa, &pointwise(512, 2048, 7));
        let large = conv_weights_layout(isa, &pointwise(64, 64, 56));
        match isa {
            Isa::Generic => {
                assert_eq!(small, ConvWeightsLayout::Raw);
                assert_eq!(large, ConvWeightsLayout::Raw);
            }
            Isa::Avx2Fma => {
                assert_eq!(small, ConvWeightsLayout::ColumnPanels { width: 16 });
                assert_eq!(large, ConvWeightsLayout::RowPanels { width: 6 });
            }
            // aarch64's 8x8 tile pads both sides alike, and armv7's 6x8 tile pads 49 positions
            // to 56 either way, so the row panels are kept.
            Isa::Neon => {
                let width = if cfg!(target_arch = "arm") { 6 } else { 8 };
                assert_eq!(small, ConvWeightsLayout::RowPanels { width });
                assert_eq!(large, ConvWeightsLayout::RowPanels { width });
            }
        }
        let depthwise = geometry(1, 1, 32, (14, 14), 3, 1, 1).unwrap();
        assert_eq!(conv_weights_layout(isa, &depthwise), ConvWeightsLayout::Raw);
    }
}

#[test]
fn panel_layout_is_as_documented() {
    // Two groups of 10 output channels, k = 3 * 2 * 2 = 12.
    let g = geometry(3, 10, 2, (9, 9), 2, 1, 0).unwrap();
    let k = 12;
    let weights: Vec<f32> = (0..g.weights_len()).map(|v| v as f32 + 1.0).collect();
    for isa in Isa::available() {
        let packed = pack_conv_weights_f32(isa, &g, &weights);
        let layout = packed.layout();
        let data = packed.as_slice();
        assert_eq!(Some(data.len()), layout.packed_len(&g));
        let Some(width) = layout.panel_width() else {
            assert_eq!(data, &weights[..]);
            continue;
        };
        let group_len = 10usize.div_ceil(width) * width * k;
        assert_eq!(data.len(), 2 * group_len);
        for grp in 0..2 {
            for c in 0..10usize.next_multiple_of(width) {
                for p in 0..k {
                    let (t, r) = (c / width, c % width);
                    let got = data[grp * group_len + t * width * k + p * width + r];
                    let want = if c < 10 {
                        weights[(grp * 10 + c) * k + p]
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "{isa} group {grp} channel {c} depth {p}");
                }
            }
        }
    }
}

#[test]
fn pointwise_is_bitwise_the_plain_gemm() {
    // Each output is the same fused multiply-adds in the same order as the unpacked GEMM,
    // whichever orientation the weights were packed in.
    for (cin, cout, hw) in [(64, 64, 12), (300, 100, 7), (33, 20, 5)] {
        let g = pointwise(cin, cout, hw);
        let case = Case::new(&g, 7);
        let n = hw * hw;
        for isa in Isa::available() {
            let packed = pack_conv_weights_f32(isa, &g, &case.weights);
            let mut conv = vec![f32::NAN; cout * n];
            conv2d_f32_packed(&g, &case.input, &packed, None, &mut conv);
            let mut gemm = vec![0.0; cout * n];
            gemm_f32_with(
                isa,
                cout,
                n,
                cin,
                &case.weights,
                false,
                &case.input,
                false,
                1.0,
                &mut gemm,
            );
            assert_eq!(bits(&conv), bits(&gemm), "{isa} {g:?}");
        }
    }
}

#[test]
fn packed_for_one_size_runs_on_another() {
    // The orientation is picked for 7x7; a 30x30 input still runs correctly on it.
    let packed_for = pointwise(96, 80, 7);
    let run_on = pointwise(96, 80, 30);
    let case = Case::new(&run_on, 9);
    let (want, bound) = (case.reference(&run_on), case.bound(&run_on));
    for isa in Isa::available() {
        let packed = pack_conv_weights_f32(isa, &packed_for, &case.weights);
        let got = case.packed_output(&run_on, &packed);
        assert_close_to_bound(&got, &want, &bound, &format!("{isa}"));
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let g = geometry(24, 70, 1, (20, 20), 3, 1, 1).unwrap();
    let case = Case::new(&g, 11);
    for isa in Isa::available() {
        let packed = pack_conv_weights_f32(isa, &g, &case.weights);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| case.packed_output(&g, &packed))
        };
        let one = run(1);
        assert_eq!(bits(&run(3)), bits(&one), "{isa}");
    }
}

#[test]
fn from_packed_checks_length_and_geometry() {
    let g = pointwise(8, 10, 5);
    for isa in Isa::available() {
        let len = conv_weights_layout(isa, &g).packed_len(&g).unwrap();
        let data = vec![0.0f32; len + 1];
        assert_eq!(
            PackedConvWeights::from_packed(isa, &g, &data[..len - 1]).unwrap_err(),
            PackedWeightsError::Length {
                expected: len,
                found: len - 1
            }
        );
        assert!(PackedConvWeights::from_packed(isa, &g, &data).is_err());
        assert!(PackedConvWeights::from_packed(isa, &g, &data[..len]).is_ok());
        let bad = Conv2dGeometry { groups: 3, ..g };
        assert!(matches!(
            PackedConvWeights::from_packed(isa, &bad, &data),
            Err(PackedWeightsError::Geometry(_))
        ));
    }
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_available()) {
        assert_eq!(
            PackedConvWeights::from_packed(isa, &g, &[]).unwrap_err(),
            PackedWeightsError::Unavailable(isa)
        );
    }
}

#[test]
#[should_panic(expected = "different weight shape")]
fn packed_weights_of_another_shape_are_refused() {
    let g = pointwise(8, 10, 5);
    let packed = pack_conv_weights_f32(Isa::Generic, &g, &vec![0.0; g.weights_len()]);
    let other = pointwise(8, 12, 5);
    let mut out = vec![0.0; 12 * 25];
    conv2d_f32_packed(&other, &vec![0.0; 8 * 25], &packed, None, &mut out);
}
