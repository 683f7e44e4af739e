//! The real-weight models on the twelve real photos, preprocessed as each model expects: the
//! known answers must come out, and every output must match tract on the same batch.

use kestrel_explain::{CamBox, Explainer};
use kestrel_runtime::Session;
use kestrel_tests::oracle::{compare_with_tract, Onnx};
use kestrel_tests::photos::{batch, efficientnet_input, opennsfw_input, photo_paths, PHOTOS};
use kestrel_tests::{model_file, top_k};
use kestrel_vision::Preprocess;

fn photo_index(name: &str) -> usize {
    PHOTOS.iter().position(|&p| p == name).expect("known photo")
}

#[test]
fn efficientnet_lite0_recognises_the_photos() {
    let (Some(model), Some(photos)) = (model_file("real/efficientnet_lite0.onnx"), photo_paths())
    else {
        return;
    };
    let images: Vec<_> = photos.iter().map(|p| efficientnet_input(p)).collect();
    let report = compare_with_tract(Onnx::File(&model), vec![batch(&images)]);
    report.assert_ok();

    let logits = &report.outputs[0];
    assert_eq!(logits.shape(), [PHOTOS.len(), 1000]);
    let rows: Vec<&[f32]> = logits.data().chunks(1000).collect();
    for (name, row) in PHOTOS.iter().zip(&rows) {
        eprintln!("efficientnet_lite0 {name}: top 3 {:?}", top_k(row, 3));
    }
    let chelsea = top_k(rows[photo_index("chelsea.png")], 3);
    assert!(
        chelsea.iter().any(|c| (281..=285).contains(c)),
        "no cat class in chelsea.png's top 3: {chelsea:?}"
    );
    let coffee = top_k(rows[photo_index("coffee.png")], 1);
    assert_eq!(coffee, [967], "coffee.png is not espresso");
}

#[test]
fn opennsfw_matches_tract_on_every_photo() {
    let (Some(model), Some(photos)) = (model_file("real/resnet50_opennsfw.onnx"), photo_paths())
    else {
        return;
    };
    let images: Vec<_> = photos.iter().map(|p| opennsfw_input(p)).collect();
    let report = compare_with_tract(Onnx::File(&model), vec![batch(&images)]);
    report.assert_ok();

    let scores = &report.outputs[0];
    assert_eq!(scores.shape(), [PHOTOS.len(), 2]);
    for (name, p) in PHOTOS.iter().zip(scores.data().chunks(2)) {
        eprintln!("open_nsfw {name}: sfw {:.4}, nsfw {:.4}", p[0], p[1]);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-5, "{name}: {p:?}");
        assert!(p[0] > p[1], "{name} scored as nsfw: {p:?}");
    }
}

/// CAM on a real photo: in dog.jpg a dog sits in front of a bicycle, with a truck behind. The
/// map of EfficientNet-Lite0's "German shepherd" class must put its box on the dog: the box's
/// centre inside the dog, and its overlap with the dog larger than with the bicycle or the
/// truck. Runs the product path (the `efficientnet` preset and the CAM explainer).
#[test]
fn efficientnet_lite0_cam_box_is_on_the_dog() {
    const GERMAN_SHEPHERD: usize = 235;
    // Hand-drawn boxes in dog.jpg's 768x576 pixels.
    let dog = CamBox {
        x0: 128.0,
        y0: 220.0,
        x1: 315.0,
        y1: 540.0,
    };
    let bicycle = CamBox {
        x0: 115.0,
        y0: 125.0,
        x1: 570.0,
        y1: 435.0,
    };
    let truck = CamBox {
        x0: 467.0,
        y0: 75.0,
        x1: 690.0,
        y1: 172.0,
    };

    let (Some(model), Some(photo)) = (
        model_file("real/efficientnet_lite0.onnx"),
        model_file("photos/dog.jpg"),
    ) else {
        return;
    };
    let graph = kestrel_onnx::import_file(&model).expect("import");
    let explainer = Explainer::new(Session::new(graph).expect("session")).expect("CAM applies");
    let image = kestrel_vision::load_image(&photo).expect("dog.jpg decodes");
    let preprocess = Preprocess::preset("efficientnet").expect("preset");
    let prepared = kestrel_vision::prepare(&image, &preprocess);
    let run = explainer.run(prepared.tensor).expect("run");
    let map = run.map(explainer.tail(), 0, GERMAN_SHEPHERD).expect("map");
    let in_input = map
        .upsample(224, 224)
        .bounding_box(kestrel_explain::DEFAULT_THRESHOLD)
        .expect("the map has a positive region");
    let [x0, y0, x1, y1] = prepared.window.rect_to_image(
        [in_input.x0, in_input.y0, in_input.x1, in_input.y1],
        image.dimensions(),
    );
    let cam = CamBox { x0, y0, x1, y1 };
    eprintln!(
        "dog.jpg CAM box {cam:?}: IoU dog {:.3}, bicycle {:.3}, truck {:.3}",
        cam.iou(&dog),
        cam.iou(&bicycle),
        cam.iou(&truck)
    );
    let (cx, cy) = ((cam.x0 + cam.x1) / 2.0, (cam.y0 + cam.y1) / 2.0);
    assert!(
        (dog.x0..dog.x1).contains(&cx) && (dog.y0..dog.y1).contains(&cy),
        "the CAM box {cam:?} is not centred on the dog {dog:?}"
    );
    assert!(
        cam.iou(&dog) > cam.iou(&bicycle),
        "the CAM box {cam:?} is on the bicycle"
    );
    assert!(
        cam.iou(&dog) > cam.iou(&truck),
        "the CAM box {cam:?} is on the truck"
    );
    assert!(
        cam.iou(&dog) >= 0.3,
        "the CAM box {cam:?} hardly overlaps the dog"
    );
}
