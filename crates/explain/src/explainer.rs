//! Running a model while keeping what a CAM needs.

use kestrel_graph::Tensor;
use kestrel_runtime::Session;

use crate::heatmap::Heatmap;
use crate::tail::{find_cam_tail, CamTail};
use crate::CamError;

/// A session whose graph has a CAM tail.
#[derive(Debug)]
pub struct Explainer {
    session: Session,
    tail: CamTail,
}

/// One run: the graph outputs, the logits `[N, classes]` (the fully connected layer's output
/// even when the graph ends in a softmax) and the `[N, K, h, w]` feature map.
#[derive(Clone, Debug)]
pub struct CamRun {
    pub outputs: Vec<Tensor>,
    pub logits: Tensor,
    pub features: Tensor,
}

impl Explainer {
    /// Finds the CAM tail of the session's graph.
    pub fn new(session: Session) -> Result<Explainer, CamError> {
        let tail = find_cam_tail(session.graph())?;
        Ok(Explainer { session, tail })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn tail(&self) -> &CamTail {
        &self.tail
    }

    pub fn into_session(self) -> Session {
        self.session
    }

    /// Runs a single-input graph on `input`.
    pub fn run(&self, input: Tensor) -> Result<CamRun, CamError> {
        self.run_inputs(vec![input])
    }

    /// Runs the graph on `inputs` (in the order of the graph's inputs).
    pub fn run_inputs(&self, inputs: Vec<Tensor>) -> Result<CamRun, CamError> {
        let tail = &self.tail;
        let mut run = self
            .session
            .run_keeping(inputs, &[tail.features, tail.logits])?;
        let name = |id: kestrel_graph::ValueId| &self.session.graph().value(id).name;
        let missing = |id| CamError::Shape {
            message: format!("the run did not keep '{}'", name(id)),
        };
        let features = run
            .kept
            .remove(&tail.features)
            .ok_or_else(|| missing(tail.features))?;
        let logits = run
            .kept
            .remove(&tail.logits)
            .ok_or_else(|| missing(tail.logits))?;

        let images = match features.shape() {
            &[n, k, _, _] if k == tail.channels => n,
            shape => {
                return Err(CamError::Shape {
                    message: format!(
                        "feature map '{}' has shape {shape:?}, expected [N, {}, h, w]",
                        name(tail.features),
                        tail.channels
                    ),
                })
            }
        };
        let logits_shape = logits.shape().to_vec();
        let logits =
            logits
                .reshaped(vec![images, tail.classes])
                .ok_or_else(|| CamError::Shape {
                    message: format!(
                        "logits '{}' have shape {logits_shape:?}, not [{images}, {}]",
                        name(tail.logits),
                        tail.classes
                    ),
                })?;
        Ok(CamRun {
            outputs: run.outputs,
            logits,
            features,
        })
    }
}

impl CamRun {
    /// The number of images in the batch.
    pub fn images(&self) -> usize {
        self.features.shape().first().copied().unwrap_or(0)
    }

    /// The class activation map of `class` for image `image`, at feature-map resolution.
    pub fn map(&self, tail: &CamTail, image: usize, class: usize) -> Result<Heatmap, CamError> {
        tail.map(&self.features, image, class)
    }

    /// The class with the largest logit for image `image` (the first on a tie; NaN never wins).
    pub fn top_class(&self, image: usize) -> Option<usize> {
        let &[n, classes] = self.logits.shape() else {
            return None;
        };
        if image >= n {
            return None;
        }
        let row = &self.logits.data()[image * classes..(image + 1) * classes];
        let mut best: Option<(usize, f32)> = None;
        for (c, &v) in row.iter().enumerate() {
            match best {
                _ if v.is_nan() => {}
                Some((_, b)) if b >= v => {}
                _ => best = Some((c, v)),
            }
        }
        best.map(|(c, _)| c)
    }
}
