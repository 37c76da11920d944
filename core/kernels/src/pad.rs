//! Constant padding of an f32 tensor, the node tract puts before a convolution with padding.
//!
//! tract 0.23's `Pad` fills the output and assigns the input through an ndarray slice, generic
//! code that is compiled (and optimised, or not) in tract-core; in a client built for size it took
//! three times as long as in a speed build (bench/size.md). [`ConstantPad`] fills the output and
//! copies the input one innermost row at a time. It copies values and writes the constant, so it
//! gives exactly tract's output.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::array::{Pad, PadMode};

/// Pads an f32 tensor of a fixed shape with a constant: `pads[axis]` = (before, after).
#[derive(Debug, Clone, PartialEq, Hash)]
pub struct ConstantPad {
    input_shape: TVec<usize>,
    output_shape: TVec<usize>,
    pads: TVec<(usize, usize)>,
    /// The constant, as bits (so that the op can be hashed and compared, as tract's ops are).
    value_bits: u32,
    /// Row-major strides of the output, worked out once.
    output_strides: TVec<usize>,
    /// Where the input's first value lands in the output.
    start: usize,
}

impl Eq for ConstantPad {}

impl ConstantPad {
    /// The kernel for a tract `Pad` reading a tensor of `input`, when it computes exactly the same
    /// thing (f32, a concrete shape, constant mode with an f32 constant); `None` otherwise.
    pub fn replacing(op: &Pad, input: &TypedFact) -> TractResult<Option<Self>> {
        let PadMode::Constant(value) = &op.mode else { return Ok(None) };
        let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
        if input.datum_type != f32::datum_type()
            || value.datum_type() != f32::datum_type()
            || value.len() != 1
            || op.pads.len() != shape.len()
        {
            return Ok(None);
        }
        let value = value.try_as_plain_ram()?.as_slice::<f32>()?[0];
        Ok(Some(ConstantPad::new(shape, &op.pads, value)))
    }

    /// The kernel for an input of `shape`, padded by `pads` (one pair per axis) with `value`.
    pub fn new(shape: &[usize], pads: &[(usize, usize)], value: f32) -> Self {
        let output_shape: TVec<usize> =
            shape.iter().zip(pads).map(|(&d, &(before, after))| d + before + after).collect();
        let mut output_strides: TVec<usize> = tvec![1; output_shape.len()];
        for axis in (0..output_shape.len().saturating_sub(1)).rev() {
            output_strides[axis] = output_strides[axis + 1] * output_shape[axis + 1];
        }
        let start = pads.iter().zip(&output_strides).map(|(&(before, _), stride)| before * stride).sum();
        ConstantPad {
            input_shape: shape.into(),
            output_shape,
            pads: pads.into(),
            value_bits: value.to_bits(),
            output_strides,
            start,
        }
    }

    /// Pads `input` (the shape this kernel was made for, row-major): the output, row-major;
    /// refuses an input of another length.
    ///
    /// The strides are worked out once, in [`Self::new`], and the loop indexes plain slices, not
    /// `TVec`s, so that little is left to inline in a client built for size.
    pub fn pad(&self, input: &[f32]) -> TractResult<Vec<f32>> {
        let expected: usize = self.input_shape.iter().product();
        ensure!(input.len() == expected, "HiedgeConstantPad made for {expected} floats got {}", input.len());
        ensure!(self.pads.len() == self.input_shape.len(), "HiedgeConstantPad: one pad pair per axis");
        // Zeroed by the allocator, so a +0.0 constant, the usual one, needs no fill (-0.0 has
        // other bits and is written).
        let mut output = vec![0.0; self.output_shape.iter().product()];
        if self.value_bits != 0 {
            output.fill(f32::from_bits(self.value_bits));
        }
        let Some((&row, outer)) = self.input_shape.split_last() else {
            output.copy_from_slice(input); // a scalar: nothing to pad
            return Ok(output);
        };
        if row == 0 || expected == 0 {
            return Ok(output);
        }
        let strides: &[usize] = &self.output_strides;
        // An odometer over the outer axes: `at` follows the output offset of input row `index`.
        let mut index_storage: TVec<usize> = tvec![0; outer.len()];
        let index: &mut [usize] = &mut index_storage;
        let mut at = self.start;
        for source in input.chunks_exact(row) {
            output[at..at + row].copy_from_slice(source);
            for axis in (0..outer.len()).rev() {
                index[axis] += 1;
                at += strides[axis];
                if index[axis] < outer[axis] {
                    break;
                }
                at -= index[axis] * strides[axis];
                index[axis] = 0;
            }
        }
        Ok(output)
    }
}

impl ConstantPad {
    /// What `info` shows of this node in tract's model dumps.
    fn describe(&self) -> String {
        format!("{:?} padded by {:?} with {}", self.input_shape, self.pads, f32::from_bits(self.value_bits))
    }
}

super::f32_kernel_op!(ConstantPad, "HiedgeConstantPad", pad);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::one_op_plan;
    use crate::test_support::{run_plan, seeded_values, Plan};

    /// One pad as a model, optimised by tract, with or without hiedge's kernels.
    fn pad_model(shape: &[usize], pads: &[(usize, usize)], mode: PadMode, fast: bool) -> (Plan, usize) {
        one_op_plan(shape, Pad::new(pads.to_vec(), mode), fast)
    }

    fn constant(v: f32) -> PadMode {
        PadMode::Constant(Arc::new(v.into()))
    }

    /// An input shape, one (before, after) pad per axis, and the constant.
    type Case<'a> = (&'a [usize], &'a [(usize, usize)], f32);

    #[test]
    fn gives_tract_pad_values_for_every_rank_and_side() {
        let cases: &[Case] = &[
            (&[1, 16, 14, 14], &[(0, 0), (0, 0), (1, 1), (1, 1)], 0.0),
            (&[1, 28, 28, 1], &[(0, 0), (2, 1), (0, 3), (0, 0)], -1.5),
            (&[2, 3, 5, 4], &[(1, 0), (0, 2), (1, 1), (2, 0)], 0.25),
            (&[7], &[(3, 2)], 9.0),
            (&[3, 4], &[(0, 0), (0, 0)], 0.0),
            (&[2, 1, 3, 2, 2], &[(0, 1), (1, 0), (0, 0), (2, 2), (1, 0)], -0.0),
        ];
        for (i, &(shape, pads, value)) in cases.iter().enumerate() {
            let x = seeded_values(shape.iter().product(), &mut (i as u32 + 1));
            let (tract_plan, _) = pad_model(shape, pads, constant(value), false);
            let (fast_plan, swapped) = pad_model(shape, pads, constant(value), true);
            let (want, got) = (run_plan(&tract_plan, shape, &x).unwrap(), run_plan(&fast_plan, shape, &x).unwrap());
            // Copies and one constant, no arithmetic: bit-equal on any CPU.
            let bits = |v: &[Vec<f32>]| v.iter().flatten().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&want), bits(&got), "{shape:?} {pads:?}");
            // tract drops a pad of nothing; every other case is swapped.
            let pads_something = pads.iter().any(|&(a, b)| a + b > 0);
            assert_eq!(swapped, usize::from(pads_something), "{shape:?} {pads:?}");
        }
    }

    #[test]
    fn leaves_edge_and_reflect_padding_to_tract_and_refuses_a_wrong_length() {
        let (shape, pads) = ([1, 2, 4, 4], [(0, 0), (0, 0), (1, 1), (1, 1)]);
        let (_, edge) = pad_model(&shape, &pads, PadMode::Edge, true);
        let (_, reflect) = pad_model(&shape, &pads, PadMode::Reflect, true);
        assert_eq!((edge, reflect), (0, 0));
        let err = ConstantPad::new(&[2, 3], &[(1, 1), (0, 1)], 0.0).pad(&[0.0; 5]).unwrap_err().to_string();
        assert!(err.contains("made for 6 floats got 5"), "{err}");
        assert_eq!(ConstantPad::new(&[2, 0], &[(1, 0), (0, 1)], 2.0).pad(&[]).unwrap(), vec![2.0; 3]);
    }
}
