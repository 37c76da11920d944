//! Weights stored as f16 or int8 in a model's NNEF archive (`hiedge quantize`, and `hiedge compile`
//! again after it): every large f32 constant of the graph becomes a smaller stored tensor and one
//! operator, `hiedge_stored_weights(stored, scale)`, that stands for the f32 weights it holds:
//! `f32(stored) * scale`, with one scale per row (the first axis: a convolution's output
//! channels) for int8 and a single 1 for f16. hiedge's reader ([`registry`], registered by
//! `reader.rs`) turns each such operator back into an f32 constant as it loads the archive, so the
//! plan computes in f32 as before; what changes is the file's size (half, a quarter), hence the
//! download, the number of 25 MiB parts, and the memory the fetched file takes. The operator never
//! folds while a graph is rewritten or written (tract's writer folds other constant operators),
//! which is why it is hiedge's own. Nothing is stored this way unasked: the manifest names the
//! storage (`models.<name>.weights`) with the accuracy gate it passed.

use tract_nnef::internal::*;

#[cfg(feature = "onnx")]
use crate::error::Result;
#[cfg(feature = "onnx")]
use crate::manifest::WeightStorage;

/// The NNEF extension registry of hiedge's archives (`extension tract_registry hiedge;`).
pub const REGISTRY: &str = "hiedge";

/// The operator's name in `graph.nnef`.
pub const PRIMITIVE: &str = "hiedge_stored_weights";

/// Smallest constant (in values) whose storage changes: biases, norms' scales and other small
/// tensors stay f32 (they weigh little and some are sensitive).
pub const MIN_STORED_VALUES: usize = 1024;

/// The f32 weights a stored tensor stands for (inputs: the stored f16 or i8 tensor, the f32 scales):
/// the operator `hiedge compile` writes. Native tools only: the reader never wires it (it loads the
/// constant it stands for), so the browser client and the Worker do not link it.
#[cfg(feature = "onnx")]
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct StoredWeightsOp;

#[cfg(feature = "onnx")]
impl Op for StoredWeightsOp {
    fn name(&self) -> StaticName {
        "HiedgeStoredWeights".into()
    }

    op_as_typed_op!();
}

#[cfg(feature = "onnx")]
impl EvalOp for StoredWeightsOp {
    // Never folded while a graph is rewritten or written: the stored tensor is what the archive keeps.
    not_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (stored, scale) = args_2!(inputs);
        Ok(tvec!(expand(&stored, &scale)?.into_tvalue()))
    }
}

#[cfg(feature = "onnx")]
impl TypedOp for StoredWeightsOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// `f32(stored) * scale`: `stored` is f16 or i8; `scale` holds f32 values, one for the whole tensor
/// or one per row (index on the first axis). Anything else is an error naming what it got (an
/// archive is input, never a reason to panic).
pub fn expand(stored: &Tensor, scale: &Tensor) -> TractResult<Tensor> {
    ensure!(
        matches!(stored.datum_type(), DatumType::F16 | DatumType::I8),
        "{PRIMITIVE}: stored weights are f16 or i8, not {:?}",
        stored.datum_type()
    );
    ensure!(scale.datum_type() == f32::datum_type(), "{PRIMITIVE}: scales are f32, not {:?}", scale.datum_type());
    let scale_ram = scale.try_as_plain_ram()?;
    let scales = scale_ram.as_slice::<f32>()?;
    let rows = if stored.rank() == 0 { 1 } else { stored.shape()[0] };
    ensure!(
        scales.len() == 1 || scales.len() == rows,
        "{PRIMITIVE}: {} scales for a tensor of shape {:?} (one, or one per row)",
        scales.len(),
        stored.shape()
    );
    let ram = stored.try_as_plain_ram()?;
    let mut weights: Vec<f32> = if stored.datum_type() == DatumType::F16 {
        ram.as_slice::<f16>()?.iter().map(|v| v.to_f32()).collect()
    } else {
        ram.as_slice::<i8>()?.iter().map(|v| f32::from(*v)).collect()
    };
    let row_len = if scales.len() == 1 { weights.len() } else { weights.len() / rows.max(1) };
    if row_len > 0 && !(scales.len() == 1 && scales[0] == 1.0) {
        for (row, s) in weights.chunks_mut(row_len).zip(scales.iter().cycle()) {
            row.iter_mut().for_each(|v| *v *= s);
        }
    }
    Tensor::from_shape(stored.shape(), &weights)
}

/// The `hiedge` registry: the reader's loader of [`PRIMITIVE`] (and, in the native tools, its writer).
pub(crate) fn registry() -> Registry {
    let mut registry = Registry::new(REGISTRY);
    #[cfg(feature = "onnx")]
    registry.register_dumper(dump);
    registry.register_primitive(
        PRIMITIVE,
        &[TypeName::Scalar.tensor().named("stored"), TypeName::Scalar.tensor().named("scale")],
        &[("output", TypeName::Scalar.tensor())],
        load,
    );
    registry
}

#[cfg(feature = "onnx")]
fn dump(ast: &mut IntoAst, node: &TypedNode, _op: &StoredWeightsOp) -> TractResult<Option<Arc<RValue>>> {
    let (stored, scale) = (ast.mapping[&node.inputs[0]].clone(), ast.mapping[&node.inputs[1]].clone());
    Ok(Some(tract_nnef::ser::invocation(PRIMITIVE, &[stored, scale], &[])))
}

/// Loads the operator as the f32 constant it stands for; both inputs must be constants (the
/// archive's variables, as `hiedge compile` writes them).
fn load(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let stored: OutletId = invocation.named_arg_as(builder, "stored")?;
    let scale: OutletId = invocation.named_arg_as(builder, "scale")?;
    let konst = |o: OutletId| builder.model.outlet_fact(o).map(|f| f.konst.clone());
    match (konst(stored)?, konst(scale)?) {
        (Some(stored), Some(scale)) => {
            let weights = expand(&stored, &scale)?;
            Ok(Value::Wire(builder.add_const(weights)?))
        }
        _ => bail!("{PRIMITIVE}: its inputs must be the archive's variables (constants)"),
    }
}

/// tract's NNEF writer with the `hiedge` registry: what `hiedge compile` writes archives with.
#[cfg(feature = "onnx")]
pub(crate) fn writer() -> tract_nnef::framework::Nnef {
    let mut nnef = tract_nnef::nnef();
    nnef.registries.push(registry());
    nnef
}

/// Rewrites every f32 constant of rank >= 2 with at least [`MIN_STORED_VALUES`] values as
/// `storage` stores it (a stored tensor, its scales, a [`StoredWeightsOp`]); returns how many it
/// rewrote. `F32` leaves the model as it is.
#[cfg(feature = "onnx")]
pub fn store_weights(model: &mut TypedModel, storage: WeightStorage) -> Result<usize> {
    use tract_nnef::tract_core::ops::konst::Const;
    if storage == WeightStorage::F32 {
        return Ok(0);
    }
    let mut rewritten = 0;
    // Patches add nodes after the existing ones: only the original nodes are visited.
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let Some(konst) = node.op_as::<Const>() else { continue };
        let tensor = konst.val();
        if tensor.datum_type() != f32::datum_type()
            || tensor.rank() < 2
            || tensor.len() < MIN_STORED_VALUES
            || konst.exotic_fact().is_some()
        {
            continue;
        }
        let (stored, scale) = match storage {
            WeightStorage::F32 => unreachable!("returned above"),
            WeightStorage::F16 => (tensor.cast_to::<f16>()?.into_owned(), tensor1(&[1f32])),
            WeightStorage::Int8 => int8_rows(tensor)?,
        };
        let name = node.name.clone();
        let mut patch = TypedModelPatch::default();
        let stored = patch.add_const(format!("{name}.{storage}"), stored)?;
        let scale = patch.add_const(format!("{name}.scale"), scale)?;
        let weights = patch.wire_node(format!("{name}.f32"), StoredWeightsOp, &[stored, scale])?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), weights)?;
        patch.apply(model)?;
        rewritten += 1;
    }
    *model = std::mem::take(model).into_compact()?;
    Ok(rewritten)
}

/// Symmetric int8 with one scale per row (index on the first axis): each row's largest magnitude
/// maps to 127. Returns the i8 values (the tensor's shape) and the f32 scales (one per row).
#[cfg(feature = "onnx")]
fn int8_rows(tensor: &Tensor) -> Result<(Tensor, Tensor)> {
    let shape = tensor.shape().to_vec();
    let ram = tensor.try_as_plain_ram()?;
    let values = ram.as_slice::<f32>()?;
    let row_len = (values.len() / shape[0].max(1)).max(1);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(shape[0]);
    for row in values.chunks(row_len) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() { max / 127.0 } else { 1.0 };
        q.extend(row.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8));
        scales.push(scale);
    }
    Ok((Tensor::from_shape(&shape, &q)?, tensor1(&scales)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Inputs and outputs of the test graph.
    const K: usize = 256;
    const N: usize = 128;

    /// x [1, K] -> matmul by a [K, N] constant -> + a [1, N] bias: one weight to store, one bias to keep.
    fn dense(weights: &[f32]) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, K])).unwrap();
        let w = model.add_const("w", Tensor::from_shape(&[K, N], weights).unwrap()).unwrap();
        let y = model
            .wire_node(
                "mm",
                tract_nnef::tract_core::ops::einsum::EinSum::new("ik,kj->ij".parse().unwrap(), f32::datum_type()),
                &[x, w],
            )
            .unwrap()[0];
        let b = model.add_const("b", Tensor::from_shape(&[1, N], &[0.5f32; N]).unwrap()).unwrap();
        let y = model.wire_node("bias", tract_nnef::tract_core::ops::math::add(), &[y, b]).unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    fn weights() -> Vec<f32> {
        let mut seed = 7u32;
        crate::runtime::model::seeded_values(K * N, &mut seed)
    }

    fn run(model: &TypedModel, input: &[f32]) -> Vec<f32> {
        let plan = model.clone().into_optimized().unwrap().into_runnable().unwrap();
        let out = plan.run(tvec!(Tensor::from_shape(&[1, K], input).unwrap().into_tvalue())).unwrap();
        out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    fn consts(model: &TypedModel) -> Vec<(DatumType, usize)> {
        let mut c: Vec<_> = model
            .nodes()
            .iter()
            .filter_map(|n| n.op_as::<tract_nnef::tract_core::ops::konst::Const>())
            .map(|k| (k.val().datum_type(), k.val().len()))
            .collect();
        c.sort_by_key(|(_, len)| *len);
        c
    }

    #[test]
    fn f16_and_int8_store_the_weight_and_keep_the_bias_and_the_answers_close() {
        let w = weights();
        let mut seed = 3u32;
        let input = crate::runtime::model::seeded_values(K, &mut seed);
        let want = run(&dense(&w), &input);
        // The exact product, for the expected error bound: |sum x_k (w_k - w'_k)| <= sum |x_k| max|w - w'|.
        let l1: f32 = input.iter().map(|v| v.abs()).sum();
        for (storage, dt, step) in [
            (WeightStorage::F16, f16::datum_type(), 2f32 * 2f32.powi(-11)),
            (WeightStorage::Int8, i8::datum_type(), 2.0 / 127.0),
        ] {
            let mut model = dense(&w);
            assert_eq!(store_weights(&mut model, storage).unwrap(), 1, "{storage}");
            let c = consts(&model);
            assert!(c.contains(&(dt, K * N)), "{storage}: {c:?}");
            assert!(c.contains(&(f32::datum_type(), N)), "{storage}: the bias stays f32: {c:?}");
            assert!(!c.contains(&(f32::datum_type(), K * N)), "{storage}: the f32 weight is gone: {c:?}");
            let got = run(&model, &input);
            // |w| < 2: f16 rounds to half an ulp (2^-11 relative); int8 to half a step of max/127.
            let bound = l1 * step / 2.0 + 1e-5;
            let worst = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= bound, "{storage}: {worst} > {bound}");
            assert!(worst > 0.0, "{storage}: the stored weights are not the f32 ones");
        }
    }

    #[test]
    fn the_stored_model_writes_smaller_and_reads_back_as_the_f32_weights_it_stands_for() {
        let w = weights();
        let mut seed = 5u32;
        let input = crate::runtime::model::seeded_values(K, &mut seed);
        let f32_bytes = writer().write_to_tar_with_config(&dense(&w), Vec::new(), false, true).unwrap();
        for (storage, share) in [(WeightStorage::F16, 0.55), (WeightStorage::Int8, 0.3)] {
            let mut model = dense(&w);
            store_weights(&mut model, storage).unwrap();
            let bytes = writer().write_to_tar_with_config(&model, Vec::new(), false, true).unwrap();
            assert!(
                (bytes.len() as f64) < share * f32_bytes.len() as f64,
                "{storage}: {} bytes against f32's {}",
                bytes.len(),
                f32_bytes.len()
            );
            // Read back, the weights are an f32 constant again: the f32 graph of the expanded weights.
            let back = crate::runtime::reader::read(&bytes).unwrap();
            let weight = model.nodes().iter().find(|n| n.op_is::<StoredWeightsOp>()).unwrap();
            let facts: Vec<_> =
                weight.inputs.iter().map(|i| model.outlet_fact(*i).unwrap().konst.clone().unwrap()).collect();
            let expanded = expand(&facts[0], &facts[1]).unwrap();
            let expanded = expanded.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
            assert!(consts(&back).contains(&(f32::datum_type(), K * N)), "{storage}: {:?}", consts(&back));
            assert!(!back.nodes().iter().any(|n| n.op_is::<StoredWeightsOp>()), "{storage}: folded on load");
            let (want, got) = (run(&dense(&expanded), &input), run(&back, &input));
            for (a, b) in want.iter().zip(&got) {
                assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "{storage}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn expand_refuses_what_an_archive_should_not_hold() {
        let i8s = Tensor::from_shape(&[2, 2], &[1i8, 2, 3, 4]).unwrap();
        let wide = expand(&i8s, &tensor1(&[0.5f32, 2.0])).unwrap();
        assert_eq!(wide.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), &[0.5, 1.0, 6.0, 8.0]);
        let f32s = Tensor::from_shape(&[2, 2], &[1f32; 4]).unwrap();
        assert!(expand(&f32s, &tensor1(&[1f32])).unwrap_err().to_string().contains("f16 or i8"));
        assert!(expand(&i8s, &tensor1(&[1f32, 2.0, 3.0])).unwrap_err().to_string().contains("3 scales"));
        assert!(expand(&i8s, &tensor1(&[1i8])).unwrap_err().to_string().contains("scales are f32"));
        let empty = Tensor::from_shape(&[0, 3], &[0i8; 0]).unwrap();
        assert_eq!(expand(&empty, &Tensor::from_shape(&[0], &[0f32; 0]).unwrap()).unwrap().len(), 0);
    }

    #[test]
    fn int8_rows_map_each_rows_largest_magnitude_to_127() {
        let t = Tensor::from_shape(&[2, 3], &[1.0f32, -2.0, 0.5, 0.0, 0.0, 0.0]).unwrap();
        let (q, s) = int8_rows(&t).unwrap();
        assert_eq!(q.try_as_plain_ram().unwrap().as_slice::<i8>().unwrap(), &[64, -127, 32, 0, 0, 0]);
        assert_eq!(s.shape(), &[2]);
        assert_eq!(s.try_as_plain_ram().unwrap().as_slice::<f32>().unwrap(), &[2.0 / 127.0, 1.0]);
    }
}
