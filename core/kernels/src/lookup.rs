//! Raw `u8` pixels to f32 values by one lookup table per channel: preprocessing's loop (hiedge-core's
//! `Preprocessor` builds the tables from the manifest's normalisation).

/// Maps interleaved pixels (`channels = tables.len()` values per pixel, channel last) through
/// their channel's table: in the same interleaved order, or as one plane per channel when
/// `planes` (an NCHW model's input). The caller checks that `pixels` holds whole pixels; a
/// trailing partial pixel is left out, and no tables means no values.
pub fn lookup_pixels(pixels: &[u8], tables: &[[f32; 256]], planes: bool) -> Vec<f32> {
    let mut out = Vec::with_capacity(pixels.len());
    match tables {
        [] => {}
        // One channel: the same order either way. (A `[f32; 256]` indexed by a u8 needs no
        // bounds check.)
        [table] => out.extend(pixels.iter().map(|&p| table[usize::from(p)])),
        _ if planes => {
            let whole = pixels.len() - pixels.len() % tables.len();
            for (ch, table) in tables.iter().enumerate() {
                out.extend(pixels[..whole].iter().skip(ch).step_by(tables.len()).map(|&p| table[usize::from(p)]));
            }
        }
        _ => {
            for pixel in pixels.chunks_exact(tables.len()) {
                out.extend(pixel.iter().zip(tables).map(|(&p, table)| table[usize::from(p)]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables whose every entry says its channel and value: `ch * 1000 + p`.
    fn tables(channels: usize) -> Vec<[f32; 256]> {
        (0..channels).map(|ch| std::array::from_fn(|p| (ch * 1000 + p) as f32)).collect()
    }

    #[test]
    fn interleaved_and_planar_values_come_from_their_channels_table() {
        // Two RGB pixels: (1, 2, 3) and (4, 5, 6).
        let pixels = [1, 2, 3, 4, 5, 6];
        let t = tables(3);
        assert_eq!(lookup_pixels(&pixels, &t, false), [1.0, 1002.0, 2003.0, 4.0, 1005.0, 2006.0]);
        assert_eq!(lookup_pixels(&pixels, &t, true), [1.0, 4.0, 1002.0, 1005.0, 2003.0, 2006.0]);
        // One channel: planar or not, the pixels' order.
        assert_eq!(lookup_pixels(&[7, 255, 0], &tables(1), true), [7.0, 255.0, 0.0]);
        assert_eq!(lookup_pixels(&[7, 255, 0], &tables(1), false), [7.0, 255.0, 0.0]);
    }

    #[test]
    fn partial_pixels_and_no_tables_give_only_whole_pixels() {
        let t = tables(3);
        assert_eq!(lookup_pixels(&[1, 2, 3, 4], &t, true), [1.0, 1002.0, 2003.0]);
        assert_eq!(lookup_pixels(&[1, 2, 3, 4], &t, false), [1.0, 1002.0, 2003.0]);
        assert!(lookup_pixels(&[1, 2, 3], &[], true).is_empty());
    }

    #[test]
    fn every_value_of_a_large_image_lands_in_its_plane() {
        // 224x224 RGB, pixel k of channel ch = (k * 7 + ch * 85) % 256, against the index maths.
        let (hw, c) = (224 * 224, 3);
        let pixels: Vec<u8> = (0..hw).flat_map(|k| (0..c).map(move |ch| ((k * 7 + ch * 85) % 256) as u8)).collect();
        let t = tables(c);
        let planar = lookup_pixels(&pixels, &t, true);
        let interleaved = lookup_pixels(&pixels, &t, false);
        for (i, &p) in pixels.iter().enumerate() {
            let (k, ch) = (i / c, i % c);
            assert_eq!(planar[ch * hw + k], t[ch][usize::from(p)]);
            assert_eq!(interleaved[i], t[ch][usize::from(p)]);
        }
    }
}
