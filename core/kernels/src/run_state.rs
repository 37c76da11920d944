//! Running an optimised plan again and again: the loop every inference goes through, here so the
//! browser client builds it (tract's plan runner, instantiated in this crate) for speed.

use std::sync::{Arc, Mutex};

use tract_nnef::internal::*;

/// An optimised tract plan, ready to run.
pub type Plan = Arc<TypedRunnableModel>;

/// The plan's run state, kept from one run to the next: tract's `SimplePlan::run` builds a new one
/// (every node's slots and operator states) per call, which was a visible part of the tiny model's
/// time in the browser. Kept only for plans whose operators hold no state between runs (every
/// classifier hiedge's reader loads); a plan with a stateful operator gets a fresh state per run,
/// as with `SimplePlan::run`. A clone starts without one.
#[derive(Debug, Default)]
pub struct RunState(Mutex<Option<TypedSimpleState>>);

impl Clone for RunState {
    fn clone(&self) -> Self {
        RunState::default()
    }
}

impl RunState {
    /// Runs `plan` on one f32 input of `shape`; every output as a flat `Vec<f32>`.
    pub fn outputs(&self, plan: &Plan, shape: &[usize], input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
        run_f32(shape, input, |inputs| self.run(plan, inputs))
    }

    /// Whether a state is kept for the next run.
    pub fn is_kept(&self) -> bool {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).is_some()
    }

    /// Runs `plan` on `inputs` with the kept state (or a new one), keeping it afterwards if no
    /// operator holds state.
    fn run(&self, plan: &Plan, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // The state is out of the slot (and the lock released) while it runs, and goes back only
        // after a run that succeeded: a failed or panicking run leaves no half-run state behind.
        let kept = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        let mut state = match kept {
            Some(state) => state,
            None => TypedSimpleState::new(plan)?,
        };
        let outputs = state.run(inputs)?;
        if state.op_states.iter().all(Option::is_none) {
            *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state);
        }
        Ok(outputs)
    }
}

/// One f32 input of `shape` through `run`; every output as a flat `Vec<f32>`.
pub fn run_f32(
    shape: &[usize],
    input: &[f32],
    run: impl FnOnce(TVec<TValue>) -> TractResult<TVec<TValue>>,
) -> TractResult<Vec<Vec<f32>>> {
    let tensor = Tensor::from_shape(shape, input)?;
    let outputs = run(tvec!(tensor.into_tvalue()))?;
    outputs.iter().map(|o| Ok(o.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())).collect()
}

/// Runs a plan on one f32 input of `shape` with a fresh state, as tract's `SimplePlan::run` does;
/// every output as a flat `Vec<f32>`. Models keep their state ([`RunState`]); this is the
/// reference hiedge's checks and the kernels' tests compare against.
pub fn run_plan(plan: &Plan, shape: &[usize], input: &[f32]) -> TractResult<Vec<Vec<f32>>> {
    run_f32(shape, input, |inputs| plan.run(inputs))
}

/// `len` pseudo-random values in [-2, 2) from a linear congruential generator at `seed` (left
/// where the next call continues): model inputs that are the same on every machine.
pub fn seeded_values(len: usize, seed: &mut u32) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (*seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}
