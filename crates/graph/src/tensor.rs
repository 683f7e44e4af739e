/// A dense, row-major `f32` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Builds a tensor, or returns `None` when `data` does not hold exactly the elements that
    /// `shape` declares.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Tensor> {
        let len = element_count(&shape)?;
        (len == data.len()).then_some(Tensor { shape, data })
    }

    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let len = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; len],
        }
    }

    pub fn scalar(value: f32) -> Tensor {
        Tensor {
            shape: vec![],
            data: vec![value],
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[f32] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Same data under another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Option<Tensor> {
        Tensor::new(shape, self.data)
    }
}

/// Product of the dimensions, or `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}
