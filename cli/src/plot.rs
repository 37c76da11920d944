//! `hiedge monitor --plot FILE.png`: the monitor's state over the replayed stream as a PNG (the
//! `image` crate the CLI already uses; a 5x7 bitmap font for the few words it writes).
//!
//! One panel, 0-100% against samples: the offload rate over the window (blue) and the calibrated
//! rate (grey), the label-free accuracy estimate on kept samples (green) and the labels' truth
//! (dark green, where known); a vertical orange line where the shift starts, red where an
//! offload-rate alarm fired, purple where a drift alarm did.

use anyhow::{Context, Result};
use hiedge_core::monitor::{AlarmKind, MonitorState};
use image::{Rgb, RgbImage};

/// One point of the plot.
pub struct Point {
    /// Samples seen.
    pub sample: usize,
    /// The monitor's state then.
    pub state: MonitorState,
    /// True accuracy of the kept samples over the window, where labels are known.
    pub true_kept_window: Option<f64>,
}

/// What one line of the plot reads off a point.
type Series = dyn Fn(&Point) -> Option<f64>;

const W: u32 = 960;
const H: u32 = 420;
const LEFT: u32 = 56;
const RIGHT: u32 = 16;
const TOP: u32 = 44;
const BOTTOM: u32 = 36;

const BLUE: Rgb<u8> = Rgb([21, 101, 192]);
const GREY: Rgb<u8> = Rgb([130, 130, 130]);
const GREEN: Rgb<u8> = Rgb([46, 160, 50]);
const DARK_GREEN: Rgb<u8> = Rgb([20, 80, 30]);
const ORANGE: Rgb<u8> = Rgb([239, 108, 0]);
const RED: Rgb<u8> = Rgb([198, 40, 40]);
const PURPLE: Rgb<u8> = Rgb([106, 27, 154]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// Draws `points` (samples 1..=`total`) with the shift at `shift_at` (if inside) into `path`.
pub fn write(path: &std::path::Path, points: &[Point], total: usize, shift_at: usize) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let total = total.max(1);
    let x_of = |sample: usize| x0 + ((x1 - x0) as f64 * sample as f64 / total as f64).round() as u32;
    let y_of = |fraction: f64| y1 - ((y1 - y0) as f64 * fraction.clamp(0.0, 1.0)).round() as u32;
    for tick in 0..=4 {
        let f = f64::from(tick) / 4.0;
        hline(&mut img, x0, x1, y_of(f), GRID);
        text(&mut img, 4, y_of(f).saturating_sub(3), &format!("{:>3}%", tick * 25), INK);
    }
    hline(&mut img, x0, x1, y1, INK);
    vline(&mut img, x0, y0, y1, INK);
    text(&mut img, x0, y1 + 10, "0", INK);
    let end = total.to_string();
    text(&mut img, x1.saturating_sub(6 * end.len() as u32), y1 + 10, &end, INK);
    text(&mut img, (x0 + x1) / 2 - 21, y1 + 22, "samples", INK);

    if shift_at > 0 && shift_at < total {
        vline(&mut img, x_of(shift_at), y0, y1, ORANGE);
    }
    if let Some(last) = points.last() {
        for a in &last.state.alarms {
            let color = if a.kind == AlarmKind::OffloadRate { RED } else { PURPLE };
            vline(&mut img, x_of(a.sample as usize), y0, y1, color);
        }
    }
    let series: [(Rgb<u8>, &Series); 4] = [
        (GREY, &|p| Some(p.state.offload.target)),
        (BLUE, &|p| Some(p.state.offload.window_rate)),
        (GREEN, &|p| p.state.accuracy.kept_window),
        (DARK_GREEN, &|p| p.true_kept_window),
    ];
    for (color, value) in series {
        let mut prev: Option<(u32, u32)> = None;
        for p in points {
            let here = value(p).map(|v| (x_of(p.sample), y_of(v)));
            if let (Some(a), Some(b)) = (prev, here) {
                line(&mut img, a, b, color);
            }
            prev = here;
        }
    }
    // Legend.
    let legend: [(Rgb<u8>, &str); 7] = [
        (BLUE, "offload rate"),
        (GREY, "calibrated rate"),
        (GREEN, "est acc kept"),
        (DARK_GREEN, "true acc kept"),
        (ORANGE, "shift"),
        (RED, "rate alarm"),
        (PURPLE, "drift alarm"),
    ];
    let mut x = LEFT;
    for (color, label) in legend {
        for dy in 0..7 {
            hline(&mut img, x, x + 12, 14 + dy, color);
        }
        text(&mut img, x + 16, 14, label, INK);
        x += 16 + 6 * label.len() as u32 + 14;
    }
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

fn put(img: &mut RgbImage, x: u32, y: u32, c: Rgb<u8>) {
    if x < img.width() && y < img.height() {
        img.put_pixel(x, y, c);
    }
}

fn hline(img: &mut RgbImage, x0: u32, x1: u32, y: u32, c: Rgb<u8>) {
    for x in x0..=x1 {
        put(img, x, y, c);
    }
}

fn vline(img: &mut RgbImage, x: u32, y0: u32, y1: u32, c: Rgb<u8>) {
    for y in y0..=y1 {
        put(img, x, y, c);
        put(img, x + 1, y, c);
    }
}

/// A 2-pixel line from `a` to `b` (DDA).
fn line(img: &mut RgbImage, (ax, ay): (u32, u32), (bx, by): (u32, u32), c: Rgb<u8>) {
    let (dx, dy) = (f64::from(bx) - f64::from(ax), f64::from(by) - f64::from(ay));
    let steps = dx.abs().max(dy.abs()).max(1.0) as u32;
    for s in 0..=steps {
        let t = f64::from(s) / f64::from(steps);
        let (x, y) = ((f64::from(ax) + t * dx).round() as u32, (f64::from(ay) + t * dy).round() as u32);
        put(img, x, y, c);
        put(img, x, y + 1, c);
    }
}

/// Writes `s` at (x, y) in the 5x7 font (6 pixels per character; unknown characters blank).
fn text(img: &mut RgbImage, x: u32, y: u32, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let Some(rows) = glyph(ch) else { continue };
        for (dy, row) in rows.iter().enumerate() {
            for dx in 0..5 {
                if row & (0x10 >> dx) != 0 {
                    put(img, x + 6 * i as u32 + dx, y + dy as u32, c);
                }
            }
        }
    }
}

/// The 5x7 bitmap of `ch` (rows top to bottom, bit 4 the left column).
fn glyph(ch: char) -> Option<[u8; 7]> {
    Some(match ch {
        '0' => [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e],
        '1' => [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
        '2' => [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f],
        '3' => [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
        '4' => [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02],
        '5' => [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
        '6' => [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e],
        '7' => [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e],
        '9' => [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        'a' => [0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f],
        'b' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e],
        'c' => [0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e],
        'd' => [0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f],
        'e' => [0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e],
        'f' => [0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e],
        'k' => [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12],
        'l' => [0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e],
        'm' => [0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e],
        'p' => [0x00, 0x00, 0x1e, 0x11, 0x1e, 0x10, 0x10],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e],
        't' => [0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d],
        ' ' => [0; 7],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_legend_and_axis_character_has_a_glyph() {
        for s in [
            "offload rate",
            "calibrated rate",
            "est acc kept",
            "true acc kept",
            "shift",
            "rate alarm",
            "drift alarm",
            "samples",
            "0123456789%",
        ] {
            for ch in s.chars() {
                assert!(glyph(ch).is_some(), "{ch:?} in {s:?}");
            }
        }
    }
}
