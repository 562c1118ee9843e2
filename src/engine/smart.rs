//! `gravity=smart`: choose the crop window with the most detail.
//!
//! Detail is measured as the Shannon entropy of the window's luma histogram
//! (as sharp's `entropy` strategy does): sky, walls and blurred backgrounds
//! have few distinct tones, faces and objects many. The search runs on a
//! copy scaled down to at most [`SIDE`] pixels, with one integral image per
//! histogram bin, so every candidate window costs [`BINS`] lookups whatever
//! its size; the whole search is a few milliseconds even for large photos.

use image::{imageops, DynamicImage, GrayImage};

/// Longest side of the scaled-down copy the search runs on.
const SIDE: u32 = 256;

/// Histogram bins: coarse enough that noise does not count as detail.
const BINS: usize = 32;

/// Top-left corner of the `cw` x `ch` window of `image` with the highest
/// luma entropy. Ties go to the window nearest the centre, so a flat image
/// crops like `gravity=centre`.
pub fn best_window(image: &DynamicImage, cw: u32, ch: u32) -> (u32, u32) {
    let (w, h) = (image.width(), image.height());
    if cw >= w && ch >= h {
        return (0, 0);
    }
    let scale = (f64::from(w.max(h)) / f64::from(SIDE)).max(1.0);
    let sw = ((f64::from(w) / scale).round() as u32).clamp(1, w);
    let sh = ((f64::from(h) / scale).round() as u32).clamp(1, h);
    let small: GrayImage = imageops::thumbnail(&image.to_luma8(), sw, sh);
    let win_w = ((f64::from(cw) / scale).round() as u32).clamp(1, sw) as usize;
    let win_h = ((f64::from(ch) / scale).round() as u32).clamp(1, sh) as usize;
    let (sw, sh) = (sw as usize, sh as usize);

    // integral[b][(y * (sw + 1)) + x]: pixels of bin b above and left of (x, y).
    let stride = sw + 1;
    let mut integral = vec![0u32; BINS * stride * (sh + 1)];
    for y in 0..sh {
        let mut row = [0u32; BINS];
        for x in 0..sw {
            let bin = usize::from(small.as_raw()[y * sw + x]) * BINS / 256;
            row[bin] += 1;
            for (b, count) in row.iter().enumerate() {
                let base = b * stride * (sh + 1);
                integral[base + (y + 1) * stride + x + 1] =
                    integral[base + y * stride + x + 1] + count;
            }
        }
    }
    let area = (win_w * win_h) as f64;
    let entropy = |x: usize, y: usize| -> f64 {
        let mut e = 0.0;
        for b in 0..BINS {
            let base = b * stride * (sh + 1);
            let at = |xx: usize, yy: usize| integral[base + yy * stride + xx];
            let count = at(x + win_w, y + win_h) + at(x, y) - at(x + win_w, y) - at(x, y + win_h);
            if count > 0 {
                let p = f64::from(count) / area;
                e -= p * p.log2();
            }
        }
        e
    };
    let (max_x, max_y) = (sw - win_w, sh - win_h);
    let (mid_x, mid_y) = (max_x as f64 / 2.0, max_y as f64 / 2.0);
    let mut best = (f64::MIN, f64::MAX, 0usize, 0usize);
    for y in 0..=max_y {
        for x in 0..=max_x {
            let score = entropy(x, y);
            let off_centre = (x as f64 - mid_x).abs() + (y as f64 - mid_y).abs();
            let better = score > best.0 + 1e-9 || (score > best.0 - 1e-9 && off_centre < best.1);
            if better {
                best = (score, off_centre, x, y);
            }
        }
    }
    let to_full = |v: usize, max: u32| ((v as f64 * scale).round() as u32).min(max);
    (
        to_full(best.2, w.saturating_sub(cw)),
        to_full(best.3, h.saturating_sub(ch)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb, RgbImage};

    /// A flat image with a detailed (noisy) patch on one side: the window
    /// lands on the patch, on either side.
    #[test]
    fn finds_the_detailed_part() {
        for patch_right in [true, false] {
            let img = RgbImage::from_fn(600, 200, |x, y| {
                let in_patch = if patch_right { x >= 420 } else { x < 180 };
                if in_patch {
                    let v = ((x * 7919 + y * 104_729) % 251) as u8;
                    Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
                } else {
                    Rgb([40, 120, 200])
                }
            });
            let (x, y) = best_window(&DynamicImage::ImageRgb8(img), 200, 200);
            assert_eq!(y, 0);
            if patch_right {
                assert!(x >= 380, "window at {x}");
            } else {
                assert!(x <= 20, "window at {x}");
            }
        }
    }

    #[test]
    fn flat_image_crops_in_the_centre() {
        let img = GrayImage::from_pixel(300, 100, Luma([128]));
        let (x, y) = best_window(&DynamicImage::ImageLuma8(img), 100, 100);
        assert_eq!((x, y), (100, 0));
    }
}
