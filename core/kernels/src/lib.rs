//! hiedge-kernels: the kernels hiedge puts in place of tract's where tract is slow in the browser.
//!
//! hiedge-core's compute layer, in its own crate (as tract-linalg is tract's) so that the browser
//! client can build it for speed and the rest of hiedge-core (manifests, policies, the session,
//! serde code) for size: Cargo sets optimisation per crate (Cargo.toml's profile `client`,
//! bench/size.md). hiedge-core re-exports it as `hiedge_core::runtime::kernels`.
//!
//! Each replaces one kind of tract node wherever it computes the same values (the same sums in
//! the same order; the direct convolution within rounding of tract's where tract fuses a
//! multiply-add and it does not), and leaves every other node to tract:
//! - [`MaxPool2x2`]: the 2x2, stride-2 f32 max pool (tract has no fast path for it in wasm).
//! - [`ConstantPad`]: f32 padding with a constant, which convolutions with padding start with.
//!   tract pads through ndarray's generic slicing, which is fast only when the crate that
//!   instantiates it is built for speed; hiedge's copy is a row loop that stays fast in a
//!   size-optimised build, so the client can build tract-core for size (bench/size.md).
//! - [`SumPool2d`]: the f32 sum or average pool over whole windows (no padding), which tract runs
//!   through its generic patch scanner in tract-core.
//!
//! - [`DirectConv`]: the first convolution of an image model (a few input channels, any kernel and
//!   stride), computed from the image rather than through tract's im2col gather.
//!
//! [`optimise`] is tract's optimisation with the swapping around it: [`use_direct_convs`] before
//! (in the browser and the Worker), [`use_fast_kernels`] after. Beside them, the two
//! other loops every inference goes through: [`lookup_pixels`] (preprocessing: pixels to the
//! model's input values by a table per channel) and [`RunState`] (running the plan with a kept
//! state).

/// tract's operator traits for a kernel type with one f32 input and one f32 output: the type has
/// `output_shape: TVec<usize>`, a method `$apply(&self, input: &[f32]) -> TractResult<Vec<f32>>`
/// (which checks the input's length) and `fn describe(&self) -> String`.
///
/// The output starts as a `Vec` the allocator zeroes and is then copied into the tensor: both a
/// memset and a memcpy at any opt-level, where tract's `Tensor::zero` stores one zero at a time in
/// a client built for size (2 us of the tiny model's time in that build's profile).
macro_rules! f32_kernel_op {
    ($kernel:ty, $name:literal, $apply:ident) => {
        impl Op for $kernel {
            fn name(&self) -> StaticName {
                $name.into()
            }

            fn info(&self) -> TractResult<Vec<String>> {
                Ok(vec![self.describe()])
            }

            fn as_typed(&self) -> Option<&dyn TypedOp> {
                Some(self)
            }
        }

        impl EvalOp for $kernel {
            fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
                let input = inputs.first().ok_or_else(|| format_err!("{} takes one input", $name))?;
                let output = self.$apply(input.try_as_plain_ram()?.as_slice::<f32>()?)?;
                Ok(tvec!(Tensor::from_shape(&self.output_shape, &output)?.into_tvalue()))
            }

            fn eval_out_of_plan(&self, inputs: TVec<TValue>) -> TractResult<Option<TVec<TValue>>> {
                Ok(Some(EvalOp::eval(self, &EvalContext::out_of_plan(), inputs)?))
            }
        }

        impl TypedOp for $kernel {
            fn as_op(&self) -> &dyn Op {
                self
            }

            fn as_op_mut(&mut self) -> &mut dyn Op {
                self
            }

            fn output_facts(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
                Ok(tvec!(f32::fact(&*self.output_shape)))
            }
        }
    };
}
use f32_kernel_op;

/// The README's example, compiled and run by `cargo test --doc`.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

mod direct_conv;
mod lookup;
mod max_pool;
mod pad;
mod run_state;
mod sum_pool;

pub use lookup::lookup_pixels;
pub use run_state::{run_f32, run_plan, seeded_values, Plan, RunState};

pub use direct_conv::DirectConv;
pub use max_pool::MaxPool2x2;
pub use pad::ConstantPad;
pub use sum_pool::SumPool2d;

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::array::Pad;
use tract_nnef::tract_core::ops::cnn::{Conv, OptMaxPool, OptSumPool};

/// tract's optimisation of `model` (declutter, then codegen) with hiedge's kernels: the
/// convolutions [`use_direct_convs`] covers where tract's kernels are wasm's (the browser and the
/// Worker; natively tract's x86 and ARM matrix products are faster than its plain loops), then
/// [`use_fast_kernels`] on the optimised model.
pub fn optimise(model: TypedModel) -> TractResult<TypedModel> {
    // `--cfg hiedge_tract_convs`: a build without it, to time it against (scripts/size-levers.sh).
    optimise_with(model, cfg!(all(target_arch = "wasm32", target_feature = "simd128", not(hiedge_tract_convs))))
}

/// [`optimise`], with the direct convolutions or without them whatever the target: what a native
/// test of the browser's plan runs.
pub fn optimise_with(mut model: TypedModel, direct_convs: bool) -> TractResult<TypedModel> {
    model.declutter()?;
    if direct_convs {
        use_direct_convs(&mut model)?;
    }
    model.optimize()?;
    use_fast_kernels(&mut model)?;
    Ok(model)
}

/// Puts [`DirectConv`] in place of every convolution of a decluttered model it covers (see
/// [`DirectConv::replacing`]): the node keeps its data input and drops the kernel and bias
/// constants (which the kernel holds), left without successors for tract to prune. Returns how
/// many nodes changed.
pub fn use_direct_convs(model: &mut TypedModel) -> TractResult<usize> {
    let mut swaps = Vec::new();
    for node in &model.nodes {
        let Some(conv) = node.op_as::<Conv>() else { continue };
        let inputs: TVec<&TypedFact> = node.inputs.iter().map(|i| model.outlet_fact(*i)).collect::<TractResult<_>>()?;
        if let Some(kernel) = DirectConv::replacing(conv, &inputs)? {
            swaps.push((node.id, kernel));
        }
    }
    let count = swaps.len();
    // Edited in place rather than through a tract patch, whose code would make the browser client
    // 15 KB bigger (bench/size.md).
    for (id, kernel) in swaps {
        let dropped: TVec<OutletId> = model.nodes[id].inputs.drain(1..).collect();
        model.nodes[id].op = Box::new(kernel);
        for (slot, outlet) in dropped.into_iter().enumerate() {
            let successors = &mut model.nodes[outlet.node].outputs[outlet.slot].successors;
            successors.retain(|inlet| *inlet != InletId::new(id, slot + 1));
        }
    }
    Ok(count)
}

/// Puts hiedge's kernels in place of tract's in an optimised model, node by node, wherever they
/// compute the same thing (see [`MaxPool2x2::replacing`], [`ConstantPad::replacing`],
/// [`SumPool2d::replacing`]). Returns how many nodes changed.
pub fn use_fast_kernels(model: &mut TypedModel) -> TractResult<usize> {
    let mut swaps: Vec<(usize, Box<dyn TypedOp>)> = Vec::new();
    for node in &model.nodes {
        let Some(&input) = node.inputs.first() else { continue };
        let fact = model.outlet_fact(input)?;
        if let Some(pool) = node.op_as::<OptMaxPool>() {
            if let Some(kernel) = MaxPool2x2::replacing(pool, fact)? {
                swaps.push((node.id, Box::new(kernel)));
            }
        } else if let Some(pad) = node.op_as::<Pad>() {
            if let Some(kernel) = ConstantPad::replacing(pad, fact)? {
                swaps.push((node.id, Box::new(kernel)));
            }
        } else if let Some(pool) = node.op_as::<OptSumPool>() {
            if let Some(kernel) = SumPool2d::replacing(pool, fact)? {
                swaps.push((node.id, Box::new(kernel)));
            }
        }
    }
    let count = swaps.len();
    for (id, kernel) in swaps {
        model.nodes[id].op = kernel;
    }
    Ok(count)
}

/// What the kernels' tests share: one tract operator as an optimised model (with or without
/// hiedge's kernels swapped in), a 2-D pool's spec, and inputs with ties and negative zeros.
#[cfg(test)]
mod test_support {
    use super::use_fast_kernels;
    use tract_nnef::internal::*;
    use tract_nnef::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_nnef::tract_core::ops::nn::DataFormat;

    /// `op` on one f32 input of `shape`, as a model optimised by tract, then with hiedge's kernels
    /// swapped in when `fast`: the plan, and how many nodes were swapped.
    pub fn one_op_plan(shape: &[usize], op: impl Into<Box<dyn TypedOp>>, fast: bool) -> (Plan, usize) {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let y = model.wire_node("op", op, &[x]).unwrap();
        model.select_output_outlets(&y).unwrap();
        let mut model = model.into_optimized().unwrap();
        let swapped = if fast { use_fast_kernels(&mut model).unwrap() } else { 0 };
        (model.into_runnable().unwrap(), swapped)
    }

    /// A 2-D pool over an input of `shape` in `format`, as many output channels as input ones.
    pub fn pool_spec(
        format: DataFormat,
        shape: &[usize],
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingSpec,
    ) -> PoolSpec {
        let channels = shape[format.shape(shape.to_vec()).unwrap().c_axis()];
        let strides = Some(strides.iter().copied().collect());
        PoolSpec::new(format, kernel.iter().copied().collect(), padding, None, strides, channels, channels)
    }

    /// Seeded values in [-2, 2), with a tie (0.5) and a negative zero at offsets 3 and 7 of every
    /// `period` values.
    pub fn values_with_ties(len: usize, mut seed: u32, period: usize) -> Vec<f32> {
        let mut x = seeded_values(len, &mut seed);
        for (i, v) in x.iter_mut().enumerate() {
            match i % period {
                3 => *v = 0.5,
                7 => *v = -0.0,
                _ => {}
            }
        }
        x
    }

    /// The plan's first output on `x`.
    pub fn run(plan: &Plan, shape: &[usize], x: &[f32]) -> Vec<f32> {
        run_plan(plan, shape, x).unwrap().remove(0)
    }

    pub use crate::{run_plan, seeded_values, Plan};
}
