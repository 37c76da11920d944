//! The first convolution of an image model: few input channels (an RGB or grey image), many
//! output channels, any kernel size and stride (MobileNet's 3x3 stride-2 stem, a ViT's 16x16
//! stride-16 patch embedding). tract 0.23 runs every f32 convolution as a matrix product over a
//! lazy im2col: its packer gathers each output pixel's window one float at a time, and with three
//! input channels there are only 27 (3x3) products per gathered float to pay for it. In the
//! browser that gather was about half of the stem's time (bench/zoo.md).
//!
//! [`DirectConv`] computes the convolution from the image: each input row is split once by
//! column phase (`x mod stride`), so the inputs of four neighbouring outputs under one kernel tap
//! are four consecutive floats, and eight output channels are computed at a time (wasm `simd128`,
//! plain Rust elsewhere). Each output adds its products in tract's order (input channel, kernel
//! row, kernel column; from zero) and then the bias, as tract's matrix product does, with a
//! multiply-add that is fused exactly where tract's is (relaxed SIMD builds). It stands in for a
//! decluttered `Conv` node it covers: f32, NCHW or CHW, two spatial axes, one group, no dilation,
//! an OIHW kernel and a bias that are constants, at most [`DirectConv::MAX_INPUT_CHANNELS`] input
//! and [`DirectConv::MAX_OUTPUT_CHANNELS`] output channels. `optimise` puts it in wasm builds only:
//! natively, tract's x86 and ARM matrix products outrun its plain loops.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat};

/// A 2-D f32 convolution of NCHW images with few channels, with its weights and bias.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectConv {
    /// Images (the N axis, 1 without one).
    images: usize,
    channels: usize,
    /// Input height and width.
    input_hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Zeros before the first row and column.
    pad_before: [usize; 2],
    out_channels: usize,
    /// Output height and width.
    output_hw: [usize; 2],
    /// The weights by block of [`BLOCK`] output channels, tap by tap (input channel, kernel row,
    /// kernel column), the block's channels side by side; zero past the last output channel.
    packed: Vec<f32>,
    bias: Vec<f32>,
    output_shape: TVec<usize>,
}

// Weights compare as values; a NaN weight only makes two equal kernels unequal, which tract's
// optimiser reads as "different ops", the safe answer.
impl Eq for DirectConv {}

/// Output channels computed together: eight accumulators of four outputs each.
const BLOCK: usize = 8;
/// Outputs side by side in one accumulator.
const LANES: usize = 4;

impl DirectConv {
    /// The most input channels this kernel takes: beyond an image's few channels, each gathered
    /// float has enough products to pay for tract's im2col.
    pub const MAX_INPUT_CHANNELS: usize = 4;

    /// The most output channels this kernel takes. Both it and tract's matrix product do one
    /// multiply and one add per product; what tract does on top is the gather, whose share of the
    /// time shrinks as output channels grow, while tract's 8x8 tile loads less per product than
    /// this kernel's 4x8. Measured in headless Chromium, two builds side by side in one page,
    /// whole models (bench/size.md): 0.76x tract's time for models/zoo-rgb's device model (a 3 ->
    /// 16 channel stem), 0.95x for its large model (a 3 -> 48 channel ViT patch embedding),
    /// 1.00x for EfficientNet-B0 (3 -> 32); 64 takes ResNet's stem too, and leaves ViT-B's 768
    /// channels to tract, where it was not measured.
    pub const MAX_OUTPUT_CHANNELS: usize = 64;

    /// The kernel for a decluttered tract convolution, given its three input facts (data, kernel,
    /// bias), when it computes the same thing; `None` for every other convolution.
    pub fn replacing(op: &Conv, inputs: &[&TypedFact]) -> TractResult<Option<Self>> {
        let &[data, kernel, bias] = inputs else { return Ok(None) };
        let spec = &op.pool_spec;
        let (Some(shape), Some(weights), Some(bias)) = (data.shape.as_concrete(), &kernel.konst, &bias.konst) else {
            return Ok(None);
        };
        if op.q_params.is_some()
            || op.group != 1
            || op.kernel_fmt != KernelFormat::OIHW
            || spec.data_format.c_is_last()
            || spec.kernel_shape.len() != 2
            || *spec.dilations() != [1, 1]
            || data.datum_type != f32::datum_type()
            || weights.datum_type() != f32::datum_type()
            || bias.datum_type() != f32::datum_type()
        {
            return Ok(None);
        }
        let data_shape = spec.data_format.shape(shape)?;
        let (channels, out_channels) = (*data_shape.c(), spec.output_channels);
        let kernel = [spec.kernel_shape[0], spec.kernel_shape[1]];
        if channels > Self::MAX_INPUT_CHANNELS
            || out_channels > Self::MAX_OUTPUT_CHANNELS
            || weights.shape() != [out_channels, channels, kernel[0], kernel[1]]
            || !(bias.len() == 1 || bias.shape() == [out_channels])
        {
            return Ok(None);
        }
        let input_hw = [data_shape.hw_dims()[0], data_shape.hw_dims()[1]];
        let strides = [spec.strides()[0], spec.strides()[1]];
        let padding = spec.computed_padding(&input_hw);
        let pad_before = [padding[0].pad_before, padding[1].pad_before];
        let output_hw = [padding[0].convoluted, padding[1].convoluted];
        let bias: Vec<f32> = match bias.try_as_plain_ram()?.as_slice::<f32>()? {
            &[b] => vec![b; out_channels],
            all => all.to_vec(),
        };
        let mut conv = DirectConv::new(
            data_shape.n().copied(),
            channels,
            input_hw,
            kernel,
            strides,
            pad_before,
            output_hw,
            weights.try_as_plain_ram()?.as_slice::<f32>()?,
            &bias,
        )?;
        // The output's shape as tract gives it (N or not), so the nodes after are unchanged.
        conv.output_shape = spec.output_shape(shape)?.shape.clone();
        Ok(Some(conv))
    }

    /// The kernel for `images` images (`None`: a CHW input without the N axis) of `channels` x
    /// `input_hw`, `weights` OIHW (`bias.len()` output channels), zero padding `pad_before` and as
    /// much after as `output_hw` needs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        images: Option<usize>,
        channels: usize,
        input_hw: [usize; 2],
        kernel: [usize; 2],
        strides: [usize; 2],
        pad_before: [usize; 2],
        output_hw: [usize; 2],
        weights: &[f32],
        bias: &[f32],
    ) -> TractResult<Self> {
        let out_channels = bias.len();
        let taps = channels * kernel[0] * kernel[1];
        ensure!(weights.len() == out_channels * taps, "{out_channels}x{taps} weights needed, {} given", weights.len());
        ensure!(
            !kernel.contains(&0) && !strides.contains(&0),
            "kernel {kernel:?} and strides {strides:?} must be positive"
        );
        for ax in 0..2 {
            // The last window may overhang the input (zero padding after) but must start on it.
            ensure!(
                output_hw[ax] == 0 || (output_hw[ax] - 1) * strides[ax] < input_hw[ax] + pad_before[ax],
                "output {output_hw:?} reaches past input {input_hw:?} padded by {pad_before:?}"
            );
        }
        let blocks = out_channels.div_ceil(BLOCK);
        let mut packed = vec![0.0; blocks * taps * BLOCK];
        for (o, filter) in weights.chunks_exact(taps.max(1)).enumerate() {
            for (t, &w) in filter.iter().enumerate() {
                packed[((o / BLOCK) * taps + t) * BLOCK + o % BLOCK] = w;
            }
        }
        let spatial = [out_channels, output_hw[0], output_hw[1]];
        let output_shape = match images {
            Some(n) => std::iter::once(n).chain(spatial).collect(),
            None => spatial.into_iter().collect(),
        };
        Ok(DirectConv {
            images: images.unwrap_or(1),
            channels,
            input_hw,
            kernel,
            strides,
            pad_before,
            out_channels,
            output_hw,
            packed,
            bias: bias.to_vec(),
            output_shape,
        })
    }

    /// Convolves `input` (`images * channels * height * width` floats, NCHW): the output, NCHW.
    pub fn conv(&self, input: &[f32]) -> TractResult<Vec<f32>> {
        let [h, w] = self.input_hw;
        let image_in = self.channels * h * w;
        let expected = self.images * image_in;
        ensure!(input.len() == expected, "HiedgeDirectConv made for {expected} floats got {}", input.len());
        let image_out = self.out_channels * self.output_hw[0] * self.output_hw[1];
        let mut output = vec![0.0; self.images * image_out];
        if image_out == 0 {
            return Ok(output);
        }
        let phases = self.phase_layout();
        let mut split = vec![0.0; phases.len()];
        for (x, out) in input.chunks_exact(image_in.max(1)).zip(output.chunks_exact_mut(image_out)) {
            phases.fill(self, x, &mut split);
            self.conv_image(&phases, &split, out);
        }
        Ok(output)
    }

    /// Where the padded input rows go once split by column phase.
    fn phase_layout(&self) -> PhaseLayout {
        let [oh, ow] = self.output_hw;
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        PhaseLayout {
            channels: self.channels,
            rows: (oh - 1) * sh + kh,
            phases: sw,
            // Whole groups of LANES outputs, and the furthest tap's shift along a phase row.
            row_len: ow.div_ceil(LANES) * LANES + (kw - 1) / sw,
        }
    }

    /// One image's convolution from its phase-split input into `out` (`out_channels` planes).
    fn conv_image(&self, phases: &PhaseLayout, split: &[f32], out: &mut [f32]) {
        let [oh, ow] = self.output_hw;
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.strides;
        let taps = self.channels * kh * kw;
        // Where each tap's four inputs start, from output row 0's first output: the same for every
        // output (shifted by its row and column), so the inner loop has no division.
        let mut offsets = Vec::with_capacity(taps);
        for c in 0..self.channels {
            for ky in 0..kh {
                for kx in 0..kw {
                    offsets.push(phases.row(c, ky) + (kx % sw) * phases.row_len + kx / sw);
                }
            }
        }
        let offsets = TapOffsets::new(offsets);
        let furthest = offsets.furthest();
        let plane = oh * ow;
        for oy in 0..oh {
            let row = phases.row(0, oy * sh);
            for (block, weights) in self.packed.chunks_exact(taps * BLOCK).enumerate() {
                let first = block * BLOCK;
                let channels = (self.out_channels - first).min(BLOCK);
                for ox in (0..ow).step_by(LANES) {
                    // The furthest tap's four inputs: the last of the phase rows' whole groups.
                    let inputs = &split[row + ox..row + ox + furthest + LANES];
                    let acc = lanes::dot_block(inputs, &offsets, weights);
                    let n = (ow - ox).min(LANES);
                    for (j, a) in acc.iter().take(channels).enumerate() {
                        let o = (first + j) * plane + oy * ow + ox;
                        lanes::store_add(*a, self.bias[first + j], &mut out[o..o + n]);
                    }
                }
            }
        }
    }

    /// What `info` shows of this node in tract's model dumps.
    fn describe(&self) -> String {
        let ([h, w], [kh, kw], [sh, sw]) = (self.input_hw, self.kernel, self.strides);
        format!(
            "{} images of {}x{h}x{w}, {kh}x{kw} kernel, stride {sh}x{sw}, {} output channels",
            self.images, self.channels, self.out_channels
        )
    }
}

/// The input of one image split by column phase: for each input channel, each padded row
/// (`rows`), each phase `p` (`phases`, the column stride), the padded columns `p, p + stride, ...`
/// (`row_len` of them, zero where the padding or the overhang is).
struct PhaseLayout {
    channels: usize,
    rows: usize,
    phases: usize,
    row_len: usize,
}

impl PhaseLayout {
    /// Floats in the split image.
    fn len(&self) -> usize {
        self.channels * self.rows * self.phases * self.row_len
    }

    /// Where padded row `y` of channel `c` starts (its phase 0).
    #[inline(always)]
    fn row(&self, c: usize, y: usize) -> usize {
        (c * self.rows + y) * self.phases * self.row_len
    }

    /// Splits one image `x` (the conv's channels x height x width) into `split`.
    fn fill(&self, conv: &DirectConv, x: &[f32], split: &mut [f32]) {
        let [h, w] = conv.input_hw;
        let [top, left] = conv.pad_before;
        let stride = self.phases;
        for c in 0..self.channels {
            for y in 0..self.rows {
                let at = self.row(c, y);
                let dst = &mut split[at..at + self.phases * self.row_len];
                let source = y.checked_sub(top).filter(|&iy| iy < h).map(|iy| &x[(c * h + iy) * w..][..w]);
                let Some(source) = source else {
                    dst.fill(0.0);
                    continue;
                };
                for (p, phase) in dst.chunks_exact_mut(self.row_len).enumerate() {
                    // Padded column j * stride + p is input column j * stride + p - left: on the
                    // input for j in first..end, zero (padding, overhang) elsewhere.
                    let first = left.saturating_sub(p).div_ceil(stride).min(phase.len());
                    let end = (w + left).saturating_sub(p).div_ceil(stride).clamp(first, phase.len());
                    phase[..first].fill(0.0);
                    phase[end..].fill(0.0);
                    if first < end {
                        let start = first * stride + p - left; // < w, as first < end
                        for (v, &x) in phase[first..end].iter_mut().zip(source[start..].iter().step_by(stride)) {
                            *v = x;
                        }
                    }
                }
            }
        }
    }
}

super::f32_kernel_op!(DirectConv, "HiedgeDirectConv", conv);

/// Where each kernel tap's inputs start, with the furthest of them (so one bounds check covers
/// every tap).
struct TapOffsets {
    list: Vec<usize>,
    furthest: usize,
}

impl TapOffsets {
    fn new(list: Vec<usize>) -> Self {
        let furthest = list.iter().copied().max().unwrap_or(0);
        TapOffsets { list, furthest }
    }

    fn furthest(&self) -> usize {
        self.furthest
    }
}

/// Four outputs at a time: wasm `simd128` vectors, or four plain floats elsewhere (native builds:
/// tests and the CLI, where tract's own x86/ARM kernels run instead, see `use_direct_convs`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    use core::arch::wasm32::*;

    use super::TapOffsets as Offsets;
    pub type Lanes = v128;

    #[inline(always)]
    pub fn zero() -> Lanes {
        f32x4_splat(0.0)
    }

    /// `acc + w * x`, fused where tract's matrix product fuses it (relaxed SIMD builds).
    #[inline(always)]
    fn madd(acc: Lanes, w: Lanes, x: Lanes) -> Lanes {
        #[cfg(target_feature = "relaxed-simd")]
        {
            f32x4_relaxed_madd(w, x, acc)
        }
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            f32x4_add(acc, f32x4_mul(w, x))
        }
    }

    /// Eight output channels' sums over the taps for four outputs: tap `t` multiplies the four
    /// inputs at `inputs[offsets[t]..]` by the eight weights `weights[8t..8t + 8]`.
    #[inline(never)]
    pub(super) fn dot_block(inputs: &[f32], offsets: &Offsets, weights: &[f32]) -> [Lanes; super::BLOCK] {
        // One check for the whole loop: every tap's four inputs (no offset is past the furthest)
        // and eight weights are in bounds.
        assert!(offsets.furthest() + 4 <= inputs.len() && weights.len() >= offsets.list.len() * 8);
        let (x, mut w) = (inputs.as_ptr(), weights.as_ptr());
        let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] = [zero(); super::BLOCK];
        for &offset in &offsets.list {
            // SAFETY: asserted above, for every offset and the eight weights of each tap.
            unsafe {
                let v = v128_load(x.add(offset).cast());
                a0 = madd(a0, v128_load32_splat(w.cast()), v);
                a1 = madd(a1, v128_load32_splat(w.add(1).cast()), v);
                a2 = madd(a2, v128_load32_splat(w.add(2).cast()), v);
                a3 = madd(a3, v128_load32_splat(w.add(3).cast()), v);
                a4 = madd(a4, v128_load32_splat(w.add(4).cast()), v);
                a5 = madd(a5, v128_load32_splat(w.add(5).cast()), v);
                a6 = madd(a6, v128_load32_splat(w.add(6).cast()), v);
                a7 = madd(a7, v128_load32_splat(w.add(7).cast()), v);
                w = w.add(8);
            }
        }
        [a0, a1, a2, a3, a4, a5, a6, a7]
    }

    /// `acc + bias`, its first `out.len()` lanes into `out`.
    #[inline(always)]
    pub fn store_add(acc: Lanes, bias: f32, out: &mut [f32]) {
        let sum = f32x4_add(acc, f32x4_splat(bias));
        if out.len() == 4 {
            // SAFETY: four floats in bounds.
            unsafe { v128_store(out.as_mut_ptr().cast(), sum) }
        } else {
            let lanes = [
                f32x4_extract_lane::<0>(sum),
                f32x4_extract_lane::<1>(sum),
                f32x4_extract_lane::<2>(sum),
                f32x4_extract_lane::<3>(sum),
            ];
            out.copy_from_slice(&lanes[..out.len()]);
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes {
    use super::TapOffsets as Offsets;
    pub type Lanes = [f32; 4];

    #[inline(always)]
    pub fn zero() -> Lanes {
        [0.0; 4]
    }

    pub(super) fn dot_block(inputs: &[f32], offsets: &Offsets, weights: &[f32]) -> [Lanes; super::BLOCK] {
        let mut acc = [zero(); super::BLOCK];
        for (&offset, w) in offsets.list.iter().zip(weights.chunks_exact(super::BLOCK)) {
            let x = &inputs[offset..offset + 4];
            for (a, &w) in acc.iter_mut().zip(w) {
                *a = std::array::from_fn(|i| a[i] + w * x[i]);
            }
        }
        acc
    }

    #[inline(always)]
    pub fn store_add(acc: Lanes, bias: f32, out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(acc) {
            *o = a + bias;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{run, seeded_values, Plan};
    use crate::use_direct_convs;
    use tract_nnef::tract_core::ops::cnn::{PaddingSpec, PoolSpec};
    use tract_nnef::tract_core::ops::nn::DataFormat;

    /// One convolution: input layout and shape, OIHW kernel shape, strides, padding, dilations.
    struct Case {
        format: DataFormat,
        shape: &'static [usize],
        kernel: [usize; 4],
        strides: [usize; 2],
        padding: PaddingSpec,
        dilations: [usize; 2],
        group: usize,
        /// A bias per output channel (false: one scalar bias, as ONNX's Conv without B gives).
        bias_per_channel: bool,
    }

    impl Case {
        fn new(format: DataFormat, shape: &'static [usize], kernel: [usize; 4], strides: [usize; 2]) -> Self {
            let padding = PaddingSpec::Valid;
            Case { format, shape, kernel, strides, padding, dilations: [1, 1], group: 1, bias_per_channel: true }
        }

        fn padding(self, padding: PaddingSpec) -> Self {
            Case { padding, ..self }
        }

        /// The convolution as a model optimised by tract, with hiedge's direct convolution put in
        /// before tract's optimisation when `direct`: the plan, the swaps, the weights and bias.
        fn plan(&self, direct: bool) -> (Plan, usize, Vec<f32>, Vec<f32>) {
            let [o, i, kh, kw] = self.kernel;
            let mut seed = 0x5eed_u32 + o as u32;
            let weights = seeded_values(o * i * kh * kw, &mut seed);
            let bias = if self.bias_per_channel { seeded_values(o, &mut seed) } else { vec![0.25] };
            let spec = PoolSpec::new(
                self.format,
                tvec![kh, kw],
                self.padding.clone(),
                Some(self.dilations.iter().copied().collect()),
                Some(self.strides.iter().copied().collect()),
                i * self.group,
                o,
            );
            let conv = Conv { pool_spec: spec, kernel_fmt: KernelFormat::OIHW, group: self.group, q_params: None };
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(self.shape)).unwrap();
            let k = model.add_const("kernel", tensor1(&weights).into_shape(&self.kernel).unwrap()).unwrap();
            let b = if self.bias_per_channel { tensor1(&bias) } else { tensor0(bias[0]) };
            let b = model.add_const("bias", b).unwrap();
            let y = model.wire_node("conv", conv, &[x, k, b]).unwrap();
            model.select_output_outlets(&y).unwrap();
            model.declutter().unwrap();
            let swapped = if direct { use_direct_convs(&mut model).unwrap() } else { 0 };
            model.optimize().unwrap();
            (model.into_runnable().unwrap(), swapped, weights, bias)
        }
    }

    /// For each output of the convolution of `x`: the sum of its products' magnitudes plus the
    /// bias's, in f64 (the scale of the rounding error any order of adding them can make).
    fn magnitudes(case: &Case, x: &[f32], weights: &[f32], bias: &[f32], output_hw: [usize; 2]) -> Vec<f64> {
        let [o, c, kh, kw] = case.kernel;
        let (n, h, w) = if case.shape.len() == 4 {
            (case.shape[0], case.shape[2], case.shape[3])
        } else {
            (1, case.shape[1], case.shape[2])
        };
        let [oh, ow] = output_hw;
        let spec_pad = case.padding.compute(&[h, w], &[kh, kw], &[1, 1], &case.strides);
        let (top, left) = (spec_pad[0].pad_before as isize, spec_pad[1].pad_before as isize);
        let mut out = Vec::with_capacity(n * o * oh * ow);
        for img in 0..n {
            for m in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = bias[m.min(bias.len() - 1)].abs() as f64;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let y = (oy * case.strides[0] + ky) as isize - top;
                                    let xx = (ox * case.strides[1] + kx) as isize - left;
                                    if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                                        continue;
                                    }
                                    let v = x[((img * c + ci) * h + y as usize) * w + xx as usize];
                                    sum += (weights[((m * c + ci) * kh + ky) * kw + kx] * v).abs() as f64;
                                }
                            }
                        }
                        out.push(sum);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn gives_tract_conv_values_within_rounding_for_stems_patches_and_edges() {
        let explicit =
            |b: [usize; 2], a: [usize; 2]| PaddingSpec::Explicit(b.into_iter().collect(), a.into_iter().collect());
        let cases = [
            // MobileNet's stem: 3x3, stride 2, padding 1, 16 output channels (two whole blocks).
            Case::new(DataFormat::NCHW, &[1, 3, 32, 30], [16, 3, 3, 3], [2, 2]).padding(explicit([1, 1], [1, 1])),
            // Two images, an output width that is no multiple of four, 10 channels (a part block).
            Case::new(DataFormat::NCHW, &[2, 3, 17, 19], [10, 3, 3, 3], [2, 2]).padding(explicit([1, 1], [1, 1])),
            // A patch embedding: 16x16, stride 16 (with fewer channels than a ViT's).
            Case::new(DataFormat::NCHW, &[1, 3, 48, 64], [12, 3, 16, 16], [16, 16]),
            // The most output channels it takes: eight whole blocks.
            Case::new(DataFormat::NCHW, &[1, 3, 12, 12], [64, 3, 3, 3], [2, 2]),
            // A grey image without the N axis, 5x5 stride 1, fewer channels than a block.
            Case::new(DataFormat::CHW, &[1, 20, 23], [7, 1, 5, 5], [1, 1]),
            // Four channels, 'same' padding, unequal strides and kernel sides.
            Case::new(DataFormat::NCHW, &[1, 4, 9, 11], [3, 4, 3, 2], [1, 3]).padding(PaddingSpec::SameUpper),
            // A stride that leaves the last window overhanging into padding after.
            Case::new(DataFormat::NCHW, &[1, 2, 10, 10], [5, 2, 4, 4], [3, 3]).padding(explicit([0, 2], [2, 2])),
            // One scalar bias for every channel.
            Case { bias_per_channel: false, ..Case::new(DataFormat::NCHW, &[1, 3, 8, 8], [9, 3, 3, 3], [1, 1]) },
        ];
        for (i, case) in cases.iter().enumerate() {
            let x = seeded_values(case.shape.iter().product(), &mut (i as u32 + 1));
            let (tract_plan, _, weights, bias) = case.plan(false);
            let (direct_plan, swapped, ..) = case.plan(true);
            assert_eq!(swapped, 1, "case {i} was not swapped");
            let (want, got) = (run(&tract_plan, case.shape, &x), run(&direct_plan, case.shape, &x));
            assert_eq!(want.len(), got.len(), "case {i}");
            let out_fact = direct_plan.model().output_fact(0).unwrap().shape.as_concrete().unwrap().to_vec();
            let output_hw = [out_fact[out_fact.len() - 2], out_fact[out_fact.len() - 1]];
            // Both add the same products, each rounding at most once per addition (tract may fuse
            // a multiply-add): within taps * epsilon of the products' magnitude of each other.
            let taps = (case.kernel[1] * case.kernel[2] * case.kernel[3] + 1) as f64;
            let scale = magnitudes(case, &x, &weights, &bias, output_hw);
            assert_eq!(scale.len(), want.len(), "case {i}");
            for (j, ((w, g), m)) in want.iter().zip(&got).zip(&scale).enumerate() {
                let bound = 2.0 * taps * f32::EPSILON as f64 * m;
                assert!(((w - g) as f64).abs() <= bound, "case {i} output {j}: tract {w}, hiedge {g}, bound {bound:e}");
            }
        }
    }

    #[test]
    fn leaves_convolutions_it_does_not_cover_to_tract() {
        let nchw = |kernel: [usize; 4]| Case::new(DataFormat::NCHW, &[1, 8, 9, 9], kernel, [1, 1]);
        let many_channels = nchw([4, 8, 3, 3]);
        let many_outputs = Case::new(DataFormat::NCHW, &[1, 3, 9, 9], [65, 3, 3, 3], [1, 1]);
        let grouped = Case { group: 2, ..Case::new(DataFormat::NCHW, &[1, 4, 9, 9], [4, 2, 3, 3], [1, 1]) };
        let dilated = Case { dilations: [2, 2], ..Case::new(DataFormat::NCHW, &[1, 3, 9, 9], [4, 3, 3, 3], [1, 1]) };
        let channels_last = Case::new(DataFormat::NHWC, &[1, 9, 9, 3], [4, 3, 3, 3], [1, 1]);
        for (what, case) in [
            ("8 channels", many_channels),
            ("65 outputs", many_outputs),
            ("grouped", grouped),
            ("dilated", dilated),
            ("NHWC", channels_last),
        ] {
            assert_eq!(case.plan(true).1, 0, "{what} was swapped");
        }
    }

    #[test]
    fn an_input_of_the_wrong_length_and_weights_of_the_wrong_count_are_refused() {
        let conv =
            DirectConv::new(Some(1), 1, [4, 4], [3, 3], [1, 1], [0, 0], [2, 2], &[0.5; 18], &[0.0, 1.0]).unwrap();
        let err = conv.conv(&[0.0; 15]).unwrap_err().to_string();
        assert!(err.contains("made for 16 floats got 15"), "{err}");
        assert_eq!(conv.conv(&[1.0; 16]).unwrap(), [4.5, 4.5, 4.5, 4.5, 5.5, 5.5, 5.5, 5.5]);
        let err =
            DirectConv::new(None, 1, [4, 4], [3, 3], [1, 1], [0, 0], [2, 2], &[0.5; 17], &[0.0, 1.0]).unwrap_err();
        assert!(err.to_string().contains("2x9 weights needed, 17 given"), "{err}");
    }
}
