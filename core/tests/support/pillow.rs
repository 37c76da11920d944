//! hiedge's one image conversion against Pillow, for the native test (`core/tests/image_parity.rs`)
//! and the browser test (`wasm-client/tests/web.rs`, through `#[path]`), so both builds are held to
//! the same reference by the same rules. The reference: the same synthetic images of odd sizes,
//! resized by Pillow's antialiased BILINEAR filter (float channels) with its `box` for centre-crop,
//! made gray by BT.601 luma or kept RGB (`models/train/image_reference.py` wrote
//! `image_parity.json` once). Floating-point order differs between the two, so a byte may round
//! the other way at a .5: every byte must be within 1 level, and at most 2% of them may differ.

use hiedge_core::manifest::{Color, Dtype, InputSpec, Layout, Normalize, PerChannel, Resize};
use hiedge_core::runtime::image::{to_model_pixels, Image, PixelFormat};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    width: usize,
    height: usize,
    format: String,
    out_height: usize,
    out_width: usize,
    color: Color,
    resize: Resize,
    pixels: Vec<u8>,
}

#[derive(Deserialize)]
struct Reference {
    generator: String,
    cases: Vec<Case>,
}

/// The generator's synthetic image (same integer formulas), as RGBA or gray bytes.
fn source(w: usize, h: usize, gray: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if gray {
                out.push(((x * y + 3 * x + 7 * y) % 256) as u8);
            } else {
                let r = (x * 3 + y * 5) % 256;
                let g = (x * y) % 256;
                let b = (255 * x / (w - 1).max(1) + 40 * ((x / 4 + y / 4) % 2)) % 256;
                out.extend([r as u8, g as u8, b as u8, 255]);
            }
        }
    }
    out
}

/// Converts every reference case and checks it; the first failure, described.
pub fn check_against_pillow() -> Result<(), String> {
    let reference: Reference =
        serde_json::from_str(include_str!("../image_parity.json")).map_err(|e| format!("fixture: {e}"))?;
    if reference.cases.len() < 6 {
        return Err(format!("only {} cases in the fixture ({})", reference.cases.len(), reference.generator));
    }
    for (k, case) in reference.cases.iter().enumerate() {
        let gray = case.format == "gray";
        let pixels = source(case.width, case.height, gray);
        let format = if gray { PixelFormat::Gray } else { PixelFormat::Rgba };
        let image = Image::new(&pixels, case.width, case.height, format).map_err(|e| format!("case {k}: {e}"))?;
        let input = InputSpec {
            shape: vec![1, case.out_height, case.out_width, case.color.channels()],
            layout: Layout::Nhwc,
            dtype: Dtype::U8,
            normalize: Normalize { scale: 1.0, mean: PerChannel::All(0.0), std: PerChannel::All(1.0) },
            color: Some(case.color),
            resize: Some(case.resize),
        };
        let ours = to_model_pixels(&image, &input).map_err(|e| format!("case {k}: {e}"))?;
        if ours.len() != case.pixels.len() {
            return Err(format!("case {k}: {} bytes, the reference has {}", ours.len(), case.pixels.len()));
        }
        let diffs: Vec<(usize, u8, u8)> = ours
            .iter()
            .zip(&case.pixels)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, *a, *b))
            .collect();
        let worst = diffs.iter().map(|(_, a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        let what = format!("case {k} ({}x{} {:?} {:?})", case.width, case.height, case.color, case.resize);
        if worst > 1 {
            return Err(format!("{what}: a byte differs by {worst}: {:?}", &diffs[..diffs.len().min(5)]));
        }
        if diffs.len() * 50 > ours.len() {
            return Err(format!("{what}: {} of {} bytes differ", diffs.len(), ours.len()));
        }
    }
    Ok(())
}
