//! The input contract of a model set: the tensor's shape and layout, and how raw pixels become it
//! (colour, resize, normalisation). Part of the manifest schema.

use serde::{Deserialize, Serialize};

/// What a model's input looks like and how raw pixels become it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor shape including the batch dimension, which must be 1.
    pub shape: Vec<usize>,
    /// Axis order of `shape`.
    pub layout: Layout,
    /// Type of the raw input values a caller sends (only `u8` pixels are supported).
    pub dtype: Dtype,
    /// `x = (raw * scale - mean[c]) / std[c]` for a value of channel `c`.
    pub normalize: Normalize,
    /// Colour of the model's input (schema 2): `gray` (1 channel) or `rgb` (3). Without it, one
    /// channel means gray and three mean rgb.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<Color>,
    /// How an image of another size or aspect ratio is fitted to the input (schema 2; default
    /// `stretch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<Resize>,
}

/// Colour of a model's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// One channel: luma.
    Gray,
    /// Three channels: red, green, blue.
    Rgb,
}

impl Color {
    /// Channels of this colour.
    pub fn channels(self) -> usize {
        match self {
            Color::Gray => 1,
            Color::Rgb => 3,
        }
    }
}

/// How an image of another size is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Scale each axis to the input size (the aspect ratio may change).
    #[default]
    Stretch,
    /// Crop the largest centred region with the input's aspect ratio, then scale it.
    CenterCrop,
}

/// One value for every channel, or one per channel (schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PerChannel {
    /// The same value for every channel.
    All(f32),
    /// A value per channel, in channel order.
    Each(Vec<f32>),
}

impl PerChannel {
    /// The value for `channel` (NaN past the end of a per-channel list; validation prevents that).
    pub fn get(&self, channel: usize) -> f32 {
        match self {
            PerChannel::All(v) => *v,
            PerChannel::Each(v) => v.get(channel).copied().unwrap_or(f32::NAN),
        }
    }

    /// The values as written.
    pub fn values(&self) -> &[f32] {
        match self {
            PerChannel::All(v) => std::slice::from_ref(v),
            PerChannel::Each(v) => v,
        }
    }
}

impl InputSpec {
    /// Channels, height and width of the input tensor (zeros for a shape that is not 4-D).
    pub fn chw(&self) -> (usize, usize, usize) {
        self.layout.chw(&self.shape)
    }

    /// Channels of the input tensor (0 for a shape that is not 4-D).
    pub fn channels(&self) -> usize {
        self.chw().0
    }

    /// Height and width of the input tensor (0, 0 for a shape that is not 4-D).
    pub fn height_width(&self) -> (usize, usize) {
        let (_, h, w) = self.chw();
        (h, w)
    }

    /// The input's colour: `color`, or gray for one channel and rgb for three; `None` for another
    /// channel count without a `color` (such a model takes raw values, not images).
    pub fn color(&self) -> Option<Color> {
        self.color.or(match self.channels() {
            1 => Some(Color::Gray),
            3 => Some(Color::Rgb),
            _ => None,
        })
    }

    /// How images are fitted (`stretch` unless the manifest says otherwise).
    pub fn resize(&self) -> Resize {
        self.resize.unwrap_or_default()
    }
}

/// Axis order of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Batch, channels, height, width.
    #[serde(rename = "NCHW")]
    Nchw,
    /// Batch, height, width, channels.
    #[serde(rename = "NHWC")]
    Nhwc,
}

impl Layout {
    /// Channels, height and width of a 4-D `shape` in this layout (zeros for another rank).
    pub fn chw(self, shape: &[usize]) -> (usize, usize, usize) {
        match (self, shape) {
            (Layout::Nchw, [_, c, h, w]) | (Layout::Nhwc, [_, h, w, c]) => (*c, *h, *w),
            _ => (0, 0, 0),
        }
    }
}

/// Raw input value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Unsigned bytes (pixels 0..=255).
    U8,
}

/// Affine normalisation applied to every raw value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Multiplier applied first (1/255 maps pixels to 0..1).
    pub scale: f32,
    /// Subtracted after scaling: one value, or one per channel (schema 2).
    pub mean: PerChannel,
    /// Divides the centred value; every value must be > 0.
    pub std: PerChannel,
}

impl Normalize {
    /// `(value * scale - mean[channel]) / std[channel]`: the one formula both validation and
    /// preprocessing use.
    pub fn apply(&self, value: f32, channel: usize) -> f32 {
        (value * self.scale - self.mean.get(channel)) / self.std.get(channel)
    }
}
