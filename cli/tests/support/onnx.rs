//! Small ONNX graphs written by the tests themselves (tract-onnx's protobuf types, encoded with
//! prost): models whose size or memory is the point of a test, too big to commit. Each takes a
//! 28x28 gray image (NCHW) and outputs 10 logits.

use prost::Message;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto::{self, Tensor};
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

/// One graph node.
pub fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        attribute: attributes,
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), i: value, r#type: 2, ..Default::default() }
}

/// A float initializer of `dims`, filled with small values that are not all alike (a constant
/// weight could be folded away).
pub fn weights(name: &str, dims: &[i64]) -> TensorProto {
    let n: i64 = dims.iter().product();
    let raw: Vec<u8> =
        (0..n).flat_map(|i| (((i % 9973) as f32 * 0.618_034).fract() * 0.02 - 0.01).to_le_bytes()).collect();
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        raw_data: raw,
        ..Default::default()
    }
}

/// A float scalar initializer.
pub fn scalar(name: &str, value: f32) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![],
        data_type: DataType::Float as i32,
        raw_data: value.to_le_bytes().to_vec(),
        ..Default::default()
    }
}

/// An int64 initializer (shapes, repeats).
pub fn ints(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value(name: &str, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() })
            .collect(),
    };
    let tensor = Tensor { elem_type: DataType::Float as i32, shape: Some(shape) };
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// The model: input `x` [1, 1, 28, 28], output `logits` [1, 10], opset 13.
pub fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>) -> Vec<u8> {
    let graph = GraphProto {
        name: "test".into(),
        node: nodes,
        initializer: initializers,
        input: vec![value("x", &[1, 1, 28, 28])],
        output: vec![value("logits", &[1, 10])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        producer_name: "hiedge tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Flatten, then a dense layer of `hidden` units (no activation) and one of 10: the hidden layer's
/// weights are `784 * hidden * 4` bytes.
pub fn dense(hidden: i64) -> Vec<u8> {
    let nodes = vec![
        node("Flatten", &["x"], "flat", vec![int_attribute("axis", 1)]),
        node("MatMul", &["flat", "w1"], "hidden", vec![]),
        node("MatMul", &["hidden", "w2"], "logits", vec![]),
    ];
    model(nodes, vec![weights("w1", &[784, hidden]), weights("w2", &[hidden, 10])])
}

/// Flatten, tiled `repeats` times (an activation of `784 * repeats * 4` bytes), summed back to one
/// value per image, then a dense layer of 10: small weights, large activations.
pub fn wide_activation(repeats: i64) -> Vec<u8> {
    let nodes = vec![
        node("Flatten", &["x"], "flat", vec![int_attribute("axis", 1)]),
        node("Tile", &["flat", "repeats"], "tiled", vec![]),
        node("ReduceSum", &["tiled", "axes"], "sum", vec![int_attribute("keepdims", 1)]),
        node("MatMul", &["sum", "w"], "logits", vec![]),
    ];
    model(nodes, vec![ints("repeats", &[1, repeats]), ints("axes", &[1]), weights("w", &[1, 10])])
}

/// A dense layer of `hidden` units with PyTorch's default (exact, erf) GELU between it and a layer
/// of 10, as `torch.onnx.export` writes `nn.GELU()`: x * 0.5 * (1 + erf(x / sqrt 2)).
pub fn dense_exact_gelu(hidden: i64) -> Vec<u8> {
    let nodes = vec![
        node("Flatten", &["x"], "flat", vec![int_attribute("axis", 1)]),
        node("MatMul", &["flat", "w1"], "h", vec![]),
        node("Div", &["h", "sqrt2"], "scaled", vec![]),
        node("Erf", &["scaled"], "erf", vec![]),
        node("Add", &["erf", "one"], "erf1", vec![]),
        node("Mul", &["h", "erf1"], "gated", vec![]),
        node("Mul", &["gated", "half"], "gelu", vec![]),
        node("MatMul", &["gelu", "w2"], "logits", vec![]),
    ];
    let constants = vec![scalar("sqrt2", std::f32::consts::SQRT_2), scalar("one", 1.0), scalar("half", 0.5)];
    model(nodes, [vec![weights("w1", &[784, hidden]), weights("w2", &[hidden, 10])], constants].concat())
}
