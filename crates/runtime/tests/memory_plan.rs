//! The static memory plan: values alive at the same time never share memory, Concat inputs are
//! written straight into their slice of the result where the layout allows, and runs through
//! the arena give the outputs a direct computation gives.

use kestrel_graph::{Dim, Graph, Op, Tensor, ValueId};
use kestrel_runtime::{MemoryPlan, Session, Slot};

fn ramp(shape: &[usize], scale: f32) -> Tensor {
    let len = shape.iter().product();
    Tensor::new(
        shape.to_vec(),
        (0..len).map(|i| (i % 17) as f32 * scale - 1.0).collect(),
    )
    .unwrap()
}

/// x [N, 2, 3, 3] -> relu a, sigmoid b -> concat(a, b) -> relu -> flatten -> output.
fn concat_graph() -> (Graph, [ValueId; 4]) {
    let mut g = Graph::default();
    let x = g.add_input(
        "x",
        vec![
            Dim::Free("N".into()),
            Dim::Fixed(2),
            Dim::Fixed(3),
            Dim::Fixed(3),
        ],
    );
    let a = g.add_node("a", Op::Relu, vec![x], "a_out").unwrap();
    let b = g.add_node("b", Op::Sigmoid, vec![x], "b_out").unwrap();
    let cat = g
        .add_node("cat", Op::Concat { axis: 1 }, vec![a, b], "cat_out")
        .unwrap();
    let r = g.add_node("r", Op::Relu, vec![cat], "r_out").unwrap();
    let flat = g
        .add_node("flat", Op::Flatten { axis: 1 }, vec![r], "y")
        .unwrap();
    g.outputs.push(flat);
    (g, [a, b, cat, r])
}

fn plan(g: &Graph, batch: usize) -> MemoryPlan {
    let shapes = g.infer_shapes(&[&[batch, 2, 3, 3]]).unwrap();
    MemoryPlan::new(g, &shapes, &[])
}

#[test]
fn concat_inputs_are_written_into_their_slice() {
    let (g, [a, b, cat, _]) = concat_graph();
    let p = plan(&g, 1);
    assert_eq!(p.concats_in_place(), 1);
    let (sa, sb, sc) = (p.slot(a).unwrap(), p.slot(b).unwrap(), p.slot(cat).unwrap());
    assert_eq!(sa.offset, sc.offset);
    assert_eq!(sb.offset, sc.offset + sa.len);
    assert_eq!(sa.len + sb.len, sc.len);
}

#[test]
fn concat_over_a_batch_is_copied() {
    // With two images the inputs' channel blocks interleave in the result, so they cannot be
    // written in place.
    let (g, _) = concat_graph();
    assert_eq!(plan(&g, 2).concats_in_place(), 0);
}

#[test]
fn values_alive_together_never_overlap() {
    let (g, [a, b, cat, r]) = concat_graph();
    let p = plan(&g, 1);
    let x = g.inputs[0];
    let overlap = |u: Slot, v: Slot| u.overlaps(&v);
    // The input is read by both branches; the branches and the concat block are alive while
    // the relu after it runs.
    for v in [a, b, cat] {
        assert!(!overlap(p.slot(x).unwrap(), p.slot(v).unwrap()));
    }
    assert!(!overlap(p.slot(cat).unwrap(), p.slot(r).unwrap()));
    assert!(p.arena_bytes() <= p.separate_bytes());
}

#[test]
fn memory_is_reused_along_a_chain() {
    // x -> relu -> relu -> relu -> relu: only two buffers are ever alive at once.
    let mut g = Graph::default();
    let x = g.add_input("x", vec![Dim::Fixed(1), Dim::Fixed(64)]);
    let mut v = x;
    for i in 0..4 {
        v = g
            .add_node(format!("r{i}"), Op::Relu, vec![v], format!("v{i}"))
            .unwrap();
    }
    g.outputs.push(v);
    let shapes = g.infer_shapes(&[&[1, 64]]).unwrap();
    let p = MemoryPlan::new(&g, &shapes, &[]);
    assert_eq!(p.arena_len(), 2 * 64);
    assert_eq!(p.separate_bytes(), 5 * 64 * 4);
}

#[test]
fn runs_through_the_arena_match_a_direct_computation() {
    let (g, _) = concat_graph();
    let session = Session::with_threads(g, 1).unwrap();
    for batch in [1, 2, 1] {
        let x = ramp(&[batch, 2, 3, 3], 0.125);
        let y = session.run(vec![x.clone()]).unwrap().remove(0);
        assert_eq!(y.shape(), &[batch, 36]);
        for (n, image) in y.data().chunks(36).enumerate() {
            let src = &x.data()[n * 18..(n + 1) * 18];
            let relu = src.iter().map(|&v| v.max(0.0));
            let sigmoid = src.iter().map(|&v| 1.0 / (1.0 + (-v).exp()));
            let want: Vec<f32> = relu.chain(sigmoid).collect();
            assert_eq!(image, &want[..], "batch {batch}, image {n}");
        }
    }
}

#[test]
fn kept_values_survive_to_the_end_of_the_run() {
    let (g, [a, _, cat, _]) = concat_graph();
    let session = Session::new(g).unwrap();
    let x = ramp(&[1, 2, 3, 3], 0.25);
    let out = session.run_keeping(vec![x.clone()], &[a, cat]).unwrap();
    let relu: Vec<f32> = x.data().iter().map(|&v| v.max(0.0)).collect();
    assert_eq!(out.kept[&a].data(), &relu[..]);
    assert_eq!(&out.kept[&cat].data()[..18], &relu[..]);
}
