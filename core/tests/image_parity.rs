//! hiedge's one image conversion against Pillow: the same synthetic images of odd sizes, resized by
//! Pillow's antialiased BILINEAR filter (float channels) with its `box` for centre-crop, made gray
//! by BT.601 luma or kept RGB (`models/train/image_reference.py` wrote `image_parity.json` once).
//! Floating-point order differs between the two, so a byte may round the other way at a .5:
//! every byte must be within 1 level, and at most 2% of them may differ at all.

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

#[test]
fn conversion_matches_pillow_within_one_level() {
    let reference: Reference = serde_json::from_str(include_str!("image_parity.json")).expect("fixture parses");
    assert!(reference.cases.len() >= 6, "{}", reference.generator);
    for (k, case) in reference.cases.iter().enumerate() {
        let gray = case.format == "gray";
        let pixels = source(case.width, case.height, gray);
        let format = if gray { PixelFormat::Gray } else { PixelFormat::Rgba };
        let image = Image::new(&pixels, case.width, case.height, format).expect("a valid image");
        let input = InputSpec {
            shape: vec![1, case.out_height, case.out_width, case.color.channels()],
            layout: Layout::Nhwc,
            dtype: Dtype::U8,
            normalize: Normalize { scale: 1.0, mean: PerChannel::All(0.0), std: PerChannel::All(1.0) },
            color: Some(case.color),
            resize: Some(case.resize),
        };
        let ours = to_model_pixels(&image, &input).expect("converts");
        assert_eq!(ours.len(), case.pixels.len(), "case {k}: length");
        let diffs: Vec<(usize, u8, u8)> = ours
            .iter()
            .zip(&case.pixels)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, *a, *b))
            .collect();
        let worst = diffs.iter().map(|(_, a, b)| a.abs_diff(*b)).max().unwrap_or(0);
        assert!(
            worst <= 1,
            "case {k} ({}x{} {:?} {:?}): a byte differs by {worst}: {:?}",
            case.width,
            case.height,
            case.color,
            case.resize,
            &diffs[..diffs.len().min(5)]
        );
        assert!(diffs.len() * 50 <= ours.len(), "case {k}: {} of {} bytes differ", diffs.len(), ours.len());
    }
}
