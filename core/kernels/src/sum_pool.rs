//! The sum and average pool over whole windows (no padding), such as the 3x3, stride-2 average
//! pool before the tiny Fashion-MNIST model's classifier. tract 0.23's `OptSumPool` visits every
//! output through its generic patch scanner (a closure per output, an iterator over the window's
//! valid offsets), code it compiles in tract-core, which the browser client builds for size
//! (Cargo.toml's profile `client`). [`SumPool2d`] is the same arithmetic as plain loops in
//! hiedge-core, which that profile builds for speed.
//!
//! It stands in for an optimised `OptSumPool` node it covers exactly: f32, two spatial axes, no
//! dilation, no padding, and no window past the input's edge (so a ceil-mode pool whose last
//! window overhangs stays with tract). It adds each window's values in tract's order (rows, then
//! columns, from the identity of Rust's f32 `Sum`) and multiplies by the reciprocal of the
//! window's size as tract does, so both kernels give the same bits.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::cnn::OptSumPool;

/// A sum pool over f32 images laid out NCHW/CHW (`channels_last` false) or NHWC/HWC (true), every
/// window inside the image; the average pool when `normalize`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SumPool2d {
    channels_last: bool,
    /// Images (the N axis, 1 without one).
    images: usize,
    channels: usize,
    /// Input height and width.
    input_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Output height and width.
    output_hw: [usize; 2],
    /// Divide each sum by the window's size (an average pool).
    normalize: bool,
    output_shape: TVec<usize>,
}

impl SumPool2d {
    /// The kernel for an optimised tract sum pool reading a tensor of `input`, when it computes
    /// exactly the same thing; `None` for every other pool.
    pub fn replacing(op: &OptSumPool, input: &TypedFact) -> TractResult<Option<Self>> {
        let spec = &op.pool_spec;
        let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
        if input.datum_type != f32::datum_type() || spec.kernel_shape.len() != 2 || *spec.dilations() != [1, 1] {
            return Ok(None);
        }
        let geometry = op.geometry.to_concrete(shape)?;
        let data = &geometry.input_shape;
        let input_hw = [data.hw_dims()[0], data.hw_dims()[1]];
        let kernel = [spec.kernel_shape[0], spec.kernel_shape[1]];
        let strides = [spec.strides()[0], spec.strides()[1]];
        // Whole windows only: no padding before, and as many outputs as fit inside the input.
        let fits = |ax: usize| input_hw[ax].checked_sub(kernel[ax]).map(|room| room / strides[ax] + 1).unwrap_or(0);
        let output_hw = [fits(0), fits(1)];
        if strides.contains(&0)
            || kernel.contains(&0)
            || geometry.patch.pad_before.iter().any(|&p| p != 0)
            || geometry.patch.output_shape.as_slice() != output_hw
        {
            return Ok(None);
        }
        Ok(Some(SumPool2d {
            channels_last: spec.data_format.c_is_last(),
            images: data.n().copied().unwrap_or(1),
            channels: *data.c(),
            input_hw,
            kernel,
            strides,
            output_hw,
            normalize: op.normalize,
            output_shape: geometry.output_shape.shape.clone(),
        }))
    }

    /// Pools `input` (`images * channels * height * width` floats in this kernel's layout): one
    /// sum (or average) per window.
    pub fn pool(&self, input: &[f32]) -> TractResult<Vec<f32>> {
        let ([h, w], [oh, ow], c) = (self.input_hw, self.output_hw, self.channels);
        let expected = self.images * c * h * w;
        ensure!(input.len() == expected, "HiedgeSumPool made for {expected} floats got {}", input.len());
        let mut output = vec![0.0; self.images * c * oh * ow];
        // Strides of (channel, row, column) in one image, for the input and the output.
        let ([ic, ir, ix], [oc, or, ox]) =
            if self.channels_last { ([1, w * c, c], [1, ow * c, c]) } else { ([h * w, w, 1], [oh * ow, ow, 1]) };
        let ([kh, kw], [sh, sw]) = (self.kernel, self.strides);
        // tract multiplies by the reciprocal of the window's size, computed in f32.
        let scale = ((kh * kw) as f32).recip();
        // The identity Rust's f32 `Sum` starts from, which tract's sum starts from too.
        let zero: f32 = std::iter::empty::<f32>().sum();
        for (image, out) in input.chunks_exact(c * h * w).zip(output.chunks_exact_mut(c * oh * ow)) {
            for ch in 0..c {
                for y in 0..oh {
                    for x in 0..ow {
                        let corner = ch * ic + y * sh * ir + x * sw * ix;
                        let mut sum = zero;
                        for row in 0..kh {
                            let start = corner + row * ir;
                            for col in 0..kw {
                                sum += image[start + col * ix];
                            }
                        }
                        out[ch * oc + y * or + x * ox] = if self.normalize { sum * scale } else { sum };
                    }
                }
            }
        }
        Ok(output)
    }

    /// What `info` shows of this node in tract's model dumps.
    fn describe(&self) -> String {
        let layout = if self.channels_last { "channels last" } else { "channels first" };
        let ([h, w], [kh, kw], [sh, sw]) = (self.input_hw, self.kernel, self.strides);
        let kind = if self.normalize { "average" } else { "sum" };
        format!(
            "{kind} of {kh}x{kw} windows, stride {sh}x{sw}, {layout}, {} images of {}x{h}x{w}",
            self.images, self.channels
        )
    }
}

super::f32_kernel_op!(SumPool2d, "HiedgeSumPool", pool);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Plan;
    use crate::test_support::{one_op_plan, pool_spec, run, values_with_ties};
    use tract_nnef::tract_core::ops::cnn::{PaddingSpec, SumPool};
    use tract_nnef::tract_core::ops::nn::DataFormat;

    /// Seeded values in [-2, 2), with a few ties and negative zeros.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        values_with_ties(len, seed, 13)
    }

    /// One sum pool as a model, optimised by tract, with or without hiedge's kernels.
    struct Pool<'a> {
        format: DataFormat,
        shape: &'a [usize],
        kernel: [usize; 2],
        strides: [usize; 2],
        padding: PaddingSpec,
        normalize: bool,
        count_include_pad: bool,
    }

    impl Pool<'_> {
        fn plan(&self, fast: bool) -> (Plan, usize) {
            let pool_spec = pool_spec(self.format, self.shape, self.kernel, self.strides, self.padding.clone());
            let op = SumPool { pool_spec, count_include_pad: self.count_include_pad, normalize: self.normalize };
            one_op_plan(self.shape, op, fast)
        }
    }

    fn pool(format: DataFormat, shape: &[usize], kernel: [usize; 2], strides: [usize; 2]) -> Pool<'_> {
        Pool { format, shape, kernel, strides, padding: PaddingSpec::Valid, normalize: true, count_include_pad: false }
    }

    #[test]
    fn gives_tract_sumpool_bits_in_every_layout_window_and_stride() {
        let cases = [
            pool(DataFormat::NCHW, &[1, 32, 7, 7], [3, 3], [2, 2]), // the tiny model's average pool
            pool(DataFormat::NCHW, &[2, 3, 8, 9], [2, 2], [2, 2]),
            pool(DataFormat::NCHW, &[1, 4, 6, 5], [3, 2], [1, 1]),
            pool(DataFormat::NCHW, &[1, 5, 7, 7], [7, 7], [1, 1]), // a global pool
            pool(DataFormat::CHW, &[4, 9, 10], [3, 3], [3, 2]),
            pool(DataFormat::NHWC, &[1, 7, 7, 16], [3, 3], [2, 2]),
            pool(DataFormat::NHWC, &[2, 6, 9, 3], [2, 3], [1, 2]),
            pool(DataFormat::HWC, &[8, 8, 5], [4, 4], [4, 4]),
            Pool { normalize: false, ..pool(DataFormat::NCHW, &[1, 6, 9, 9], [3, 3], [2, 2]) },
            Pool { count_include_pad: true, ..pool(DataFormat::NHWC, &[1, 5, 5, 4], [2, 2], [1, 1]) },
        ];
        for (i, case) in cases.iter().enumerate() {
            let x = values(case.shape.iter().product(), i as u32 + 1);
            let (tract_plan, _) = case.plan(false);
            let (fast_plan, swapped) = case.plan(true);
            let label =
                format!("{:?} {:?} kernel {:?} stride {:?}", case.format, case.shape, case.kernel, case.strides);
            assert_eq!(swapped, 1, "{label} was not swapped");
            let (want, got) = (run(&tract_plan, case.shape, &x), run(&fast_plan, case.shape, &x));
            // The same additions in the same order, on IEEE f32: the same bits on any CPU.
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&want), bits(&got), "{label}");
        }
    }

    #[test]
    fn leaves_padded_and_overhanging_pools_to_tract() {
        let shape = [1, 3, 7, 7];
        let padded = Pool {
            padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
            ..pool(DataFormat::NCHW, &shape, [3, 3], [2, 2])
        };
        let ceil = Pool {
            padding: PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![0, 0], true),
            ..pool(DataFormat::NCHW, &shape, [2, 2], [2, 2])
        };
        assert_eq!((padded.plan(true).1, ceil.plan(true).1), (0, 0));
    }

    #[test]
    fn a_wrong_length_is_refused() {
        let kernel = SumPool2d {
            channels_last: false,
            images: 1,
            channels: 2,
            input_hw: [3, 3],
            kernel: [3, 3],
            strides: [1, 1],
            output_hw: [1, 1],
            normalize: true,
            output_shape: tvec![1, 2, 1, 1],
        };
        assert_eq!(kernel.pool(&[1.0; 18]).unwrap(), vec![1.0, 1.0]);
        let err = kernel.pool(&[0.0; 17]).unwrap_err().to_string();
        assert!(err.contains("made for 18 floats got 17"), "{err}");
    }
}
