//! The 2x2, stride-2 max pool that ends most small CNN blocks. tract 0.23 runs it one output pixel
//! at a time with a bounds check per tap, and its SIMD path is for stride 1 on x86 and ARM only;
//! in the browser the tiny Fashion-MNIST model spent about a third of its time there
//! (bench/results.md's profile). [`MaxPool2x2`] does the same work with wasm `simd128` (four
//! outputs per step; plain Rust on other targets); it stands in for an optimised `OptMaxPool` node
//! it covers exactly: f32, a 2x2 window, stride 2, no dilation, no padding, no index output. Every
//! other pool keeps tract's kernel. The maximum picks one of its inputs, so both kernels give the
//! same values.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::cnn::OptMaxPool;

/// A 2x2, stride-2 max pool over f32 images laid out NCHW/CHW (`channels_last` false) or
/// NHWC/HWC (true), with every window inside the image (an odd last row or column is dropped,
/// as a floor-mode pool does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaxPool2x2 {
    channels_last: bool,
    /// Images (the N axis, 1 without one).
    images: usize,
    channels: usize,
    height: usize,
    width: usize,
    output_shape: TVec<usize>,
}

impl MaxPool2x2 {
    /// The kernel for an optimised tract max pool reading a tensor of `input`, when it computes
    /// exactly the same thing; `None` for every other pool.
    pub fn replacing(op: &OptMaxPool, input: &TypedFact) -> TractResult<Option<Self>> {
        let spec = &op.pool_spec;
        let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
        if op.with_index_outputs.is_some()
            || input.datum_type != f32::datum_type()
            || spec.kernel_shape.as_slice() != [2, 2]
            || *spec.strides() != [2, 2]
            || *spec.dilations() != [1, 1]
        {
            return Ok(None);
        }
        let geometry = op.geometry.to_concrete(shape)?;
        let data = &geometry.input_shape;
        let (height, width) = (data.hw_dims()[0], data.hw_dims()[1]);
        if geometry.patch.pad_before.iter().any(|&p| p != 0)
            || geometry.patch.output_shape.as_slice() != [height / 2, width / 2]
        {
            return Ok(None);
        }
        Ok(Some(MaxPool2x2 {
            channels_last: spec.data_format.c_is_last(),
            images: data.n().copied().unwrap_or(1),
            channels: *data.c(),
            height,
            width,
            output_shape: geometry.output_shape.shape.clone(),
        }))
    }

    /// The kernel for `images` images of `channels` x `height` x `width`, channels first
    /// (NCHW) or last (NHWC).
    pub fn new(channels_last: bool, images: usize, channels: usize, height: usize, width: usize) -> Self {
        let (oh, ow) = (height / 2, width / 2);
        let output_shape =
            if channels_last { tvec![images, oh, ow, channels] } else { tvec![images, channels, oh, ow] };
        MaxPool2x2 { channels_last, images, channels, height, width, output_shape }
    }

    /// Pools `input` (`images * channels * height * width` floats in this kernel's layout): the
    /// output, `height / 2` by `width / 2` per channel.
    pub fn pool(&self, input: &[f32]) -> TractResult<Vec<f32>> {
        let mut output = vec![0.0; self.output_shape.iter().product()];
        self.run(input, &mut output)?;
        Ok(output)
    }

    /// Pools `input` (the layout and sizes this kernel was made for) into `output` (of
    /// `output_shape`); refuses an input of another length.
    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        let (h, w, c) = (self.height, self.width, self.channels);
        let expected = self.images * c * h * w;
        ensure!(input.len() == expected, "HiedgeMaxPool2x2 made for {expected} floats got {}", input.len());
        if output.is_empty() {
            return Ok(()); // a side under 2 (or no channels): no window, and no chunk size to split by
        }
        if self.channels_last {
            let (image_in, image_out) = (h * w * c, (h / 2) * (w / 2) * c);
            for (x, out) in input.chunks_exact(image_in).zip(output.chunks_exact_mut(image_out)) {
                pool_channels_last(x, h, w, c, out);
            }
        } else {
            let (plane_in, plane_out) = (h * w, (h / 2) * (w / 2));
            for (x, out) in input.chunks_exact(plane_in).zip(output.chunks_exact_mut(plane_out)) {
                pool_plane(x, h, w, out);
            }
        }
        Ok(())
    }
}

/// `a < b ? b : a`, WebAssembly's `f32x4.pmax` lane by lane, so every lane and the scalar tail
/// agree (and NaN handling does not depend on the target).
#[inline(always)]
fn pmax(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// One channel plane `x` (`h` x `w`, row-major) pooled into `out` (`h/2` x `w/2`).
fn pool_plane(x: &[f32], h: usize, w: usize, out: &mut [f32]) {
    let ow = w / 2;
    for (oy, dst) in out.chunks_exact_mut(ow).enumerate().take(h / 2) {
        let (r0, r1) = (&x[2 * oy * w..][..w], &x[(2 * oy + 1) * w..][..w]);
        let done = simd::pool_row_pairs(r0, r1, dst);
        for (o, x) in dst[done..].iter_mut().zip(done..) {
            *o = pmax(pmax(r0[2 * x], r0[2 * x + 1]), pmax(r1[2 * x], r1[2 * x + 1]));
        }
    }
}

/// One image `x` (`h` x `w` pixels of `c` channels) pooled into `out` (`h/2` x `w/2` pixels).
fn pool_channels_last(x: &[f32], h: usize, w: usize, c: usize, out: &mut [f32]) {
    let (ow, row) = (w / 2, w * c);
    for (oy, dst_row) in out.chunks_exact_mut(ow * c).enumerate().take(h / 2) {
        let (r0, r1) = (&x[2 * oy * row..][..row], &x[(2 * oy + 1) * row..][..row]);
        for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
            let at = 2 * ox * c;
            let (a, b) = (&r0[at..at + 2 * c], &r1[at..at + 2 * c]);
            let done = simd::pool_pixel_quad(a, b, dst);
            for (o, k) in dst[done..].iter_mut().zip(done..) {
                *o = pmax(pmax(a[k], a[c + k]), pmax(b[k], b[c + k]));
            }
        }
    }
}

/// The SIMD steps: each does a prefix of its output and returns its length; the caller finishes
/// the rest with [`pmax`].
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// Output pixels `0..4k` of one row from the two input rows `r0`, `r1` under it: four
    /// outputs read eight floats of each row, split into even and odd lanes.
    #[inline(always)]
    pub fn pool_row_pairs(r0: &[f32], r1: &[f32], dst: &mut [f32]) -> usize {
        let mut ox = 0;
        while 2 * ox + 8 <= r0.len().min(r1.len()) && ox + 4 <= dst.len() {
            // SAFETY: the loop condition keeps the eight floats read from each row and the four
            // written to `dst` in bounds; v128 loads and stores need no alignment.
            unsafe {
                let (a0, a1) =
                    (v128_load(r0.as_ptr().add(2 * ox).cast()), v128_load(r0.as_ptr().add(2 * ox + 4).cast()));
                let (b0, b1) =
                    (v128_load(r1.as_ptr().add(2 * ox).cast()), v128_load(r1.as_ptr().add(2 * ox + 4).cast()));
                let top = f32x4_pmax(i32x4_shuffle::<0, 2, 4, 6>(a0, a1), i32x4_shuffle::<1, 3, 5, 7>(a0, a1));
                let bottom = f32x4_pmax(i32x4_shuffle::<0, 2, 4, 6>(b0, b1), i32x4_shuffle::<1, 3, 5, 7>(b0, b1));
                v128_store(dst.as_mut_ptr().add(ox).cast(), f32x4_pmax(top, bottom));
            }
            ox += 4;
        }
        ox
    }

    /// Channels `0..4k` of one output pixel from its window's two pixels in each row (`a`, `b`:
    /// `2c` floats each, `c = dst.len()`).
    #[inline(always)]
    pub fn pool_pixel_quad(a: &[f32], b: &[f32], dst: &mut [f32]) -> usize {
        let c = dst.len();
        let mut i = 0;
        while i + 4 <= c && c + i + 4 <= a.len().min(b.len()) {
            // SAFETY: the loop condition keeps every four-float access in bounds.
            unsafe {
                let top = f32x4_pmax(v128_load(a.as_ptr().add(i).cast()), v128_load(a.as_ptr().add(c + i).cast()));
                let bottom = f32x4_pmax(v128_load(b.as_ptr().add(i).cast()), v128_load(b.as_ptr().add(c + i).cast()));
                v128_store(dst.as_mut_ptr().add(i).cast(), f32x4_pmax(top, bottom));
            }
            i += 4;
        }
        i
    }
}

/// Without wasm SIMD the scalar loops do everything (native builds: tests and the CLI).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod simd {
    #[inline(always)]
    pub fn pool_row_pairs(_r0: &[f32], _r1: &[f32], _dst: &mut [f32]) -> usize {
        0
    }

    #[inline(always)]
    pub fn pool_pixel_quad(_a: &[f32], _b: &[f32], _dst: &mut [f32]) -> usize {
        0
    }
}

impl MaxPool2x2 {
    /// What `info` shows of this node in tract's model dumps.
    fn describe(&self) -> String {
        let layout = if self.channels_last { "channels last" } else { "channels first" };
        format!("{layout}, {} images of {}x{}x{}", self.images, self.channels, self.height, self.width)
    }
}

super::f32_kernel_op!(MaxPool2x2, "HiedgeMaxPool2x2", pool);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Plan;
    use crate::test_support::{one_op_plan, pool_spec, run, values_with_ties};
    use tract_nnef::tract_core::ops::cnn::{MaxPool, PaddingSpec};
    use tract_nnef::tract_core::ops::nn::DataFormat;

    /// Seeded values in [-2, 2), with a few ties and negative zeros, which a max pool must handle.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        values_with_ties(len, seed, 17)
    }

    /// One 2x2 max pool as a model, optimised by tract, with or without hiedge's kernels.
    fn pool_model(
        format: DataFormat,
        shape: &[usize],
        strides: [usize; 2],
        padding: PaddingSpec,
        fast: bool,
    ) -> (Plan, usize) {
        let spec = pool_spec(format, shape, [2, 2], strides, padding);
        one_op_plan(shape, MaxPool::new(spec, None), fast)
    }

    #[test]
    fn gives_tract_maxpool_values_in_every_layout_and_odd_size() {
        // Even and odd sides, widths below, at and past one SIMD step, several images.
        let cases: &[(DataFormat, &[usize])] = &[
            (DataFormat::NCHW, &[1, 24, 28, 28]),
            (DataFormat::NCHW, &[2, 3, 7, 9]),
            (DataFormat::NCHW, &[1, 5, 15, 17]),
            (DataFormat::CHW, &[4, 6, 10]),
            (DataFormat::NHWC, &[1, 14, 14, 32]),
            (DataFormat::NHWC, &[2, 9, 11, 6]),
            (DataFormat::HWC, &[8, 8, 3]),
        ];
        for (i, &(format, shape)) in cases.iter().enumerate() {
            let x = values(shape.iter().product(), i as u32 + 1);
            let (tract_plan, _) = pool_model(format, shape, [2, 2], PaddingSpec::Valid, false);
            let (fast_plan, swapped) = pool_model(format, shape, [2, 2], PaddingSpec::Valid, true);
            assert_eq!(swapped, 1, "{format:?} {shape:?} was not swapped");
            let (want, got) = (run(&tract_plan, shape, &x), run(&fast_plan, shape, &x));
            // A maximum is one of its inputs: no rounding, so the values are equal on any CPU.
            assert_eq!(want, got, "{format:?} {shape:?}");
        }
    }

    #[test]
    fn leaves_pools_it_does_not_cover_to_tract() {
        let shape = [1, 3, 8, 8];
        let (_, stride_1) = pool_model(DataFormat::NCHW, &shape, [1, 1], PaddingSpec::Valid, true);
        let (_, padded) =
            pool_model(DataFormat::NCHW, &shape, [2, 2], PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]), true);
        let odd = [1, 3, 7, 7];
        let (_, ceil) = pool_model(
            DataFormat::NCHW,
            &odd,
            [2, 2],
            PaddingSpec::ExplicitOnnxPool(tvec![0, 0], tvec![0, 0], true),
            true,
        );
        assert_eq!((stride_1, padded, ceil), (0, 0, 0));
    }

    #[test]
    fn an_image_with_a_side_under_two_pools_to_nothing_and_a_wrong_length_is_refused() {
        assert_eq!(MaxPool2x2::new(false, 1, 2, 1, 5).pool(&[0.5; 10]).unwrap(), Vec::<f32>::new());
        assert_eq!(MaxPool2x2::new(true, 2, 3, 4, 1).pool(&[0.5; 24]).unwrap(), Vec::<f32>::new());
        let err = MaxPool2x2::new(false, 1, 1, 4, 4).pool(&[0.0; 15]).unwrap_err().to_string();
        assert!(err.contains("made for 16 floats got 15"), "{err}");
    }
}
