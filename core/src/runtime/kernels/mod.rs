//! Kernels hiedge puts in place of tract's where tract is slow in the browser.
//!
//! Each replaces one kind of optimised tract node wherever it computes exactly the same values,
//! and leaves every other node to tract:
//! - [`MaxPool2x2`]: the 2x2, stride-2 f32 max pool (tract has no fast path for it in wasm).
//! - [`ConstantPad`]: f32 padding with a constant, which convolutions with padding start with.
//!   tract pads through ndarray's generic slicing, which is fast only when the crate that
//!   instantiates it is built for speed; hiedge's copy is a row loop that stays fast in a
//!   size-optimised build, so the client can build tract-core for size (bench/size.md).
//!
//! [`use_fast_kernels`] does the swapping, once, after tract's optimisation.

mod max_pool;
mod pad;

pub use max_pool::MaxPool2x2;
pub use pad::ConstantPad;

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::array::Pad;
use tract_nnef::tract_core::ops::cnn::OptMaxPool;

/// Puts hiedge's kernels in place of tract's in an optimised model, node by node, wherever they
/// compute the same thing (see [`MaxPool2x2::replacing`], [`ConstantPad::replacing`]). Returns how
/// many nodes changed.
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
        }
    }
    let count = swaps.len();
    for (id, kernel) in swaps {
        model.nodes[id].op = kernel;
    }
    Ok(count)
}
