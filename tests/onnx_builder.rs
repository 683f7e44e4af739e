//! Small ONNX models built in memory, so the fault-kind tests need no files.

use kestrel_graph::Dim;
use prost::Message;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto;
use tract_onnx::pb::{
    attribute_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

const FLOAT: i32 = 1;
const INT64: i32 = 7;

/// A model under construction: nodes in order, weights, declared inputs and outputs.
pub struct ModelBuilder {
    opset: i64,
    graph: GraphProto,
}

impl ModelBuilder {
    pub fn new(opset: i64) -> Self {
        ModelBuilder {
            opset,
            graph: GraphProto {
                name: "test".into(),
                ..Default::default()
            },
        }
    }

    /// A float input; `Dim::Free` dimensions are symbolic.
    pub fn input(mut self, name: &str, dims: &[Dim]) -> Self {
        self.graph.input.push(value_info(name, Some(dims)));
        self
    }

    /// A float input with fixed dimensions.
    pub fn input_fixed(self, name: &str, shape: &[usize]) -> Self {
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d)).collect();
        self.input(name, &dims)
    }

    /// A float output whose shape is left undeclared.
    pub fn output(mut self, name: &str) -> Self {
        self.graph.output.push(value_info(name, None));
        self
    }

    pub fn weights(mut self, name: &str, shape: &[usize], data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "weights '{name}'"
        );
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: data,
            ..Default::default()
        });
        self
    }

    pub fn ints(mut self, name: &str, data: &[i64]) -> Self {
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: vec![data.len() as i64],
            data_type: INT64,
            int64_data: data.to_vec(),
            ..Default::default()
        });
        self
    }

    pub fn node(
        mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attributes: Vec<AttributeProto>,
    ) -> Self {
        self.graph.node.push(NodeProto {
            name: name.into(),
            op_type: op_type.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attributes,
            ..Default::default()
        });
        self
    }

    /// A boolean scalar initializer.
    pub fn bool_scalar(mut self, name: &str, value: bool) -> Self {
        const BOOL: i32 = 9;
        self.graph.initializer.push(TensorProto {
            name: name.into(),
            dims: vec![],
            data_type: BOOL,
            int32_data: vec![i32::from(value)],
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> ModelProto {
        ModelProto {
            ir_version: 7,
            producer_name: "kestrel-tests".into(),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
            }],
            graph: Some(self.graph),
            ..Default::default()
        }
    }

    pub fn bytes(self) -> Vec<u8> {
        self.build().encode_to_vec()
    }
}

fn value_info(name: &str, dims: Option<&[Dim]>) -> ValueInfoProto {
    let shape = dims.map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| Dimension {
                value: Some(match d {
                    Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                    Dim::Free(s) => dimension::Value::DimParam(s.clone()),
                }),
                ..Default::default()
            })
            .collect(),
    });
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: FLOAT,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_proto::AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}
