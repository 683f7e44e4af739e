//! Class Activation Maps (Zhou et al., "Learning Deep Features for Discriminative Localization",
//! CVPR 2016). When a classifier ends in feature maps, a global average pool and one fully
//! connected layer, the class score is the spatial mean of `M_c = sum_k w[c, k] * f_k(x, y)`, so
//! `M_c` shows where the evidence for class `c` lies, and a box around its strongest region
//! localises the object without any box supervision.
//!
//! [`find_cam_tail`] recognises that tail in a [`Graph`](kestrel_graph::Graph), [`Explainer`]
//! runs a session keeping the feature map, [`CamTail::map`] computes `M_c`, and [`Heatmap`]
//! upsamples it, boxes it and [`overlay`] draws it.

mod explainer;
mod heatmap;
mod overlay;
mod tail;

use kestrel_graph::GraphError;
use kestrel_runtime::RuntimeError;

pub use explainer::{CamRun, Explainer};
pub use heatmap::{CamBox, Heatmap};
pub use overlay::{jet, overlay};
pub use tail::{find_cam_tail, CamTail};

/// Fraction of a map's maximum above which pixels count as the object, as in the CAM paper.
pub const DEFAULT_THRESHOLD: f32 = 0.2;

#[derive(Debug, thiserror::Error)]
pub enum CamError {
    /// The graph does not end in the tail CAM needs; `reason` names where the pattern breaks.
    #[error("{reason}")]
    NotApplicable { reason: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("class {class} is out of range: the classifier has {classes} classes")]
    BadClass { class: usize, classes: usize },
    #[error("image {image} is out of range: the batch has {images} images")]
    BadImage { image: usize, images: usize },
    /// A tensor handed to the CAM code does not have the shape the tail implies.
    #[error("{message}")]
    Shape { message: String },
}

impl CamError {
    fn not_applicable(reason: impl Into<String>) -> CamError {
        CamError::NotApplicable {
            reason: reason.into(),
        }
    }
}
