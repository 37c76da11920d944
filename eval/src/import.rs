//! `hiedge import`: a model set's manifest written from its two ONNX files and what only the user
//! knows (class names, normalisation, colour, how images are fitted). Read from the graphs: the
//! input name and shape, the layout where the shape says it, the number of outputs, and the output
//! kind (a graph that ends in `Softmax` outputs probabilities). Contradictions are refused with a
//! message that names both sides.

use std::collections::BTreeMap;

use hiedge_core::manifest::{
    Color, Dtype, InputSpec, Layout, Manifest, ModelEntry, Normalize, OutputKind, PerChannel, Resize, SplitEntry,
    StageEntry, SCHEMA_VERSION,
};
use hiedge_core::runtime::sha256_hex;
use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};

/// What an ONNX file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxInfo {
    /// Name of the graph's (first non-weight) input.
    pub input_name: String,
    /// Its shape; `None` for a symbolic dimension (usually the batch).
    pub input_shape: Vec<Option<usize>>,
    /// `Probabilities` when the graph's output comes straight from a `Softmax` node.
    pub output: OutputKind,
    /// Number of weights (initializer elements).
    pub params: u64,
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Import(format!("{what}: {e}"))
}

impl OnnxInfo {
    /// Reads the graph of an ONNX file (`what` names it in errors).
    pub fn read(bytes: &[u8], what: &str) -> Result<Self> {
        let proto = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| bad(what, format!("not an ONNX model ({e})")))?;
        let graph = proto.graph.ok_or_else(|| bad(what, "the ONNX file has no graph"))?;
        let weights: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let input = graph
            .input
            .iter()
            .find(|i| !weights.contains(&i.name.as_str()))
            .ok_or_else(|| bad(what, "the graph has no input"))?;
        let shape = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(TypeValue::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match d.value {
                            Some(Dim::DimValue(v)) if v > 0 => Some(v as usize),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let output_name =
            graph.output.first().map(|o| o.name.as_str()).ok_or_else(|| bad(what, "the graph has no output"))?;
        let softmax = graph.node.iter().any(|n| n.op_type == "Softmax" && n.output.iter().any(|o| o == output_name));
        Ok(OnnxInfo {
            input_name: input.name.clone(),
            input_shape: shape,
            output: if softmax { OutputKind::Probabilities } else { OutputKind::Logits },
            // Checked: the dims are the file's, and a hostile file can make their product overflow.
            params: graph
                .initializer
                .iter()
                .map(|t| {
                    t.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?)).unwrap_or(u64::MAX)
                })
                .fold(0u64, u64::saturating_add),
        })
    }
}

/// Number of values the model outputs for one input of `shape` (tract works it out).
fn output_len(bytes: &[u8], shape: &[usize], what: &str) -> Result<usize> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_typed())
        .map_err(|e| bad(what, format!("tract cannot run it with input shape {shape:?}: {e:#}")))?;
    let fact = model.output_fact(0).map_err(|e| bad(what, e))?;
    let shape =
        fact.shape.as_concrete().ok_or_else(|| bad(what, "its output shape is not fixed by the input shape"))?;
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(what, format!("its output shape {shape:?} has more values than fit in memory")))
}

/// Concrete shapes of every output for one input of `shape` (tract works them out).
fn output_shapes(bytes: &[u8], shape: &[usize], what: &str) -> Result<Vec<Vec<usize>>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_typed())
        .map_err(|e| bad(what, format!("tract cannot run it with input shape {shape:?}: {e:#}")))?;
    (0..model.output_outlets().map_err(|e| bad(what, e))?.len())
        .map(|i| {
            let fact = model.output_fact(i).map_err(|e| bad(what, e))?;
            fact.shape
                .as_concrete()
                .map(|s| s.to_vec())
                .ok_or_else(|| bad(what, format!("output {i}'s shape is not fixed by the input shape")))
        })
        .collect()
}

/// Adds a split model (MDI-Exit) to an imported manifest: `trunk` maps the set's input to (exit
/// logits, features) and `tail` maps those features to logits. The feature shape is read from the
/// trunk's second output; both heads must output one value per class. The files are to be written
/// as `split_trunk.onnx` and `split_tail.onnx` next to the manifest.
pub fn add_split(manifest: &mut Manifest, trunk: &[u8], tail: &[u8]) -> Result<()> {
    let classes = manifest.classes.len();
    let outs = output_shapes(trunk, &manifest.input.shape, "split trunk")?;
    let [exit, features] = outs.as_slice() else {
        return Err(Error::Import(format!(
            "the split trunk has {} outputs; it must have two: the exit head's logits, then the features",
            outs.len()
        )));
    };
    if exit.iter().product::<usize>() != classes {
        return Err(Error::Import(format!(
            "the split trunk's exit head outputs {} values but there are {classes} classes",
            exit.iter().product::<usize>()
        )));
    }
    let tail_outs = output_shapes(tail, features, "split tail")?;
    let tail_len = tail_outs.first().map(|s| s.iter().product::<usize>()).unwrap_or(0);
    if tail_len != classes {
        return Err(Error::Import(format!(
            "the split tail, on the trunk's features {features:?}, outputs {tail_len} values but there are {classes} classes"
        )));
    }
    let stage = |file: &str, bytes: &[u8], what: &str| -> Result<StageEntry> {
        Ok(StageEntry {
            file: file.into(),
            sha256: sha256_hex(bytes),
            source: None,
            params: Some(OnnxInfo::read(bytes, what)?.params),
        })
    };
    manifest.split = Some(SplitEntry {
        trunk: stage("split_trunk.onnx", trunk, "split trunk")?,
        tail: stage("split_tail.onnx", tail, "split tail")?,
        feature_shape: features.clone(),
        exit_test_accuracy: None,
        test_accuracy: None,
        test_accuracy_u8: None,
        architecture: None,
        trained: None,
    });
    manifest.validate()?;
    Ok(())
}

/// What `hiedge import` is told.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The set's name.
    pub name: String,
    /// Class names, by label.
    pub classes: Vec<String>,
    /// Mean per channel (one value: all channels); default 0.
    pub mean: Option<Vec<f32>>,
    /// Std per channel (one value: all channels); default 1.
    pub std: Option<Vec<f32>>,
    /// Layout, when the input shape does not settle it.
    pub layout: Option<Layout>,
    /// Colour, when the channel count does not settle it (it must agree with it).
    pub color: Option<Color>,
    /// How images are fitted (default stretch).
    pub resize: Option<Resize>,
}

/// The layout a 4-D `[1, a, b, c]` shape implies: NCHW when only `a` can be channels (1 or 3),
/// NHWC when only `c` can; `asked` settles ambiguity and is refused when the shape contradicts it.
fn layout_of(shape: &[usize], asked: Option<Layout>) -> Result<Layout> {
    let image_channels = |c: usize| c == 1 || c == 3;
    let (nchw, nhwc) = (image_channels(shape[1]), image_channels(shape[3]));
    match (asked, nchw, nhwc) {
        (Some(Layout::Nchw), true, _) => Ok(Layout::Nchw),
        (Some(Layout::Nhwc), _, true) => Ok(Layout::Nhwc),
        (Some(l), _, _) => Err(Error::Import(format!(
            "--layout {l:?} contradicts the input shape {shape:?}: its channel dimension is not 1 or 3"
        ))),
        (None, true, false) => Ok(Layout::Nchw),
        (None, false, true) => Ok(Layout::Nhwc),
        (None, true, true) => Err(Error::Import(format!(
            "the input shape {shape:?} could be NCHW or NHWC: give --layout NCHW or --layout NHWC"
        ))),
        (None, false, false) => Err(Error::Import(format!(
            "the input shape {shape:?} has no image channel dimension (1 or 3) first or last"
        ))),
    }
}

fn per_channel(values: Option<&[f32]>, default: f32, channels: usize, flag: &str) -> Result<PerChannel> {
    match values {
        None => Ok(PerChannel::All(default)),
        Some([v]) => Ok(PerChannel::All(*v)),
        Some(v) if v.len() == channels => Ok(PerChannel::Each(v.to_vec())),
        Some(v) => Err(Error::Import(format!("{flag} has {} values but the input has {channels} channels", v.len()))),
    }
}

/// The manifest for a tiny and a large ONNX model (as bytes), stored as `tiny.onnx` and
/// `large.onnx` next to it. Validated before it is returned.
pub fn manifest_for(tiny: &[u8], large: &[u8], opts: &ImportOptions) -> Result<Manifest> {
    let t = OnnxInfo::read(tiny, "tiny model")?;
    let l = OnnxInfo::read(large, "large model")?;
    if t.input_shape.len() != 4 {
        return Err(Error::Import(format!(
            "the tiny model's input `{}` has {} dimensions; hiedge takes images as 4-D tensors (N, C, H, W or N, H, W, C)",
            t.input_name,
            t.input_shape.len()
        )));
    }
    // The batch may be symbolic; every other dimension must be fixed.
    let mut shape = vec![1];
    for (i, d) in t.input_shape.iter().enumerate().skip(1) {
        shape.push(d.ok_or_else(|| {
            Error::Import(format!("dimension {i} of the tiny model's input `{}` is not fixed", t.input_name))
        })?);
    }
    let large_shape: Vec<Option<usize>> = l.input_shape.iter().skip(1).copied().collect();
    if large_shape != shape[1..].iter().map(|&d| Some(d)).collect::<Vec<_>>() {
        return Err(Error::Import(format!(
            "the models take different inputs: tiny {:?}, large {:?} (after the batch dimension)",
            &t.input_shape[1..],
            large_shape
        )));
    }
    let layout = layout_of(&shape, opts.layout)?;
    let (channels, _, _) = layout.chw(&shape);
    let color = opts.color.unwrap_or(if channels == 3 { Color::Rgb } else { Color::Gray });
    if color.channels() != channels {
        return Err(Error::Import(format!(
            "--color {color:?} needs {} channel(s) but the input has {channels}",
            color.channels()
        )));
    }
    for (what, bytes) in [("tiny model", tiny), ("large model", large)] {
        let n = output_len(bytes, &shape, what)?;
        if n != opts.classes.len() {
            return Err(Error::Import(format!(
                "the {what} outputs {n} values but {} class names were given",
                opts.classes.len()
            )));
        }
    }
    let entry = |info: &OnnxInfo, file: &str, bytes: &[u8]| ModelEntry {
        file: file.into(),
        sha256: sha256_hex(bytes),
        source: None,
        parts: None,
        input_name: info.input_name.clone(),
        output: info.output,
        params: Some(info.params),
        weight_bytes: Some(info.params * 4),
        test_accuracy: None,
        architecture: None,
        trained: None,
        weights: None,
    };
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        name: opts.name.clone(),
        input: InputSpec {
            shape,
            layout,
            dtype: Dtype::U8,
            normalize: Normalize {
                scale: 1.0 / 255.0,
                mean: per_channel(opts.mean.as_deref(), 0.0, channels, "--mean")?,
                std: per_channel(opts.std.as_deref(), 1.0, channels, "--std")?,
            },
            color: Some(color),
            resize: Some(opts.resize.unwrap_or_default()),
        },
        classes: opts.classes.clone(),
        models: BTreeMap::from([
            ("tiny".to_string(), entry(&t, "tiny.onnx", tiny)),
            ("large".to_string(), entry(&l, "large.onnx", large)),
        ]),
        decision: None,
        early_exit: None,
        split: None,
        offload_codec: None,
        oip: None,
    };
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_follow_the_shape_or_are_asked_for() {
        assert_eq!(layout_of(&[1, 1, 28, 28], None).unwrap(), Layout::Nchw);
        assert_eq!(layout_of(&[1, 32, 32, 3], None).unwrap(), Layout::Nhwc);
        assert!(layout_of(&[1, 3, 3, 3], None).unwrap_err().to_string().contains("--layout"));
        assert_eq!(layout_of(&[1, 3, 3, 3], Some(Layout::Nhwc)).unwrap(), Layout::Nhwc);
        assert!(layout_of(&[1, 1, 28, 28], Some(Layout::Nhwc)).unwrap_err().to_string().contains("contradicts"));
        assert!(layout_of(&[1, 5, 8, 8], None).is_err());
    }

    #[test]
    fn per_channel_values_must_fit_the_channels() {
        assert_eq!(per_channel(None, 0.0, 3, "--mean").unwrap(), PerChannel::All(0.0));
        assert_eq!(per_channel(Some(&[0.5]), 0.0, 3, "--mean").unwrap(), PerChannel::All(0.5));
        assert!(per_channel(Some(&[0.5, 0.4]), 0.0, 3, "--mean").unwrap_err().to_string().contains("3 channels"));
    }

    #[test]
    fn bytes_that_are_not_onnx_are_named() {
        let err = OnnxInfo::read(b"hello", "tiny model").unwrap_err().to_string();
        assert!(err.starts_with("tiny model: not an ONNX model"), "{err}");
    }
}
