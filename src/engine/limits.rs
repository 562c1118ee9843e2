//! Pixel, frame and memory limits, enforced before pixels are allocated.
//!
//! The `image` crate's own guard (`Limits::max_alloc`) only applies inside
//! `ImageReader::decode()`; we build decoders directly (to reach APNG and
//! animation APIs), and its animation iterators never multiply canvas by frame
//! count. So the engine checks the header dimensions itself ([`check_canvas`]),
//! counts frames as they arrive ([`FrameBudget`]), and additionally hands the
//! decoders an `image::Limits` ([`decoder_limits`]) as a second line of
//! defence for allocations we cannot see (GIF sub-frames, PNG internals).

use crate::proto::Limits;

use super::error::EngineError;

/// Bytes we let a decoder reserve per allowed pixel: enough for a 16-bit
/// RGBA buffer (8 B) or an animation decoder's canvas, previous canvas and
/// frame buffers (3-4 RGBA8 buffers), with headroom.
const ALLOC_BYTES_PER_PIXEL: u64 = 20;

/// Refuses a canvas of zero area or of more than `max_pixels` pixels.
pub fn check_canvas(width: u32, height: u32, limits: &Limits) -> Result<(), EngineError> {
    if width == 0 || height == 0 {
        return Err(EngineError::Corrupt(format!(
            "image header declares an empty {width}x{height} image"
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(EngineError::TooLarge(format!(
            "image is {width}x{height} = {pixels} pixels, over the limit of {}",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// Refuses an output size (after resize) the limits would refuse as input:
/// an enlarging resize must not become a memory bomb of its own.
pub fn check_output(
    width: u32,
    height: u32,
    frames: u64,
    limits: &Limits,
) -> Result<(), EngineError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(EngineError::TooLarge(format!(
            "result would be {width}x{height} = {pixels} pixels, over the limit of {}",
            limits.max_pixels
        )));
    }
    let total = pixels.saturating_mul(frames);
    if frames > 1 && total > limits.max_total_pixels {
        return Err(EngineError::TooLarge(format!(
            "result would be {frames} frames of {width}x{height} = {total} pixels, over the limit of {}",
            limits.max_total_pixels
        )));
    }
    Ok(())
}

/// The `image::Limits` handed to decoders, derived from the request limits.
///
/// `with_dimensions: false` leaves width/height unlimited, for decoders that
/// check them while parsing the header (PNG): our own [`check_canvas`] then
/// gives the precise message instead of the crate's generic one.
pub fn decoder_limits(limits: &Limits, with_dimensions: bool) -> image::Limits {
    let side = u32::try_from(limits.max_pixels).unwrap_or(u32::MAX);
    let mut out = image::Limits::default();
    if with_dimensions {
        out.max_image_width = Some(side);
        out.max_image_height = Some(side);
    } else {
        out.max_image_width = None;
        out.max_image_height = None;
    }
    out.max_alloc = Some(limits.max_pixels.saturating_mul(ALLOC_BYTES_PER_PIXEL));
    out
}

/// Counts animation frames as they are decoded and stops the decode as soon
/// as the frame count or the summed pixel count goes over the limits.
#[derive(Debug)]
pub struct FrameBudget {
    canvas_pixels: u64,
    max_frames: u32,
    max_total_pixels: u64,
    frames: u32,
}

impl FrameBudget {
    /// A budget for frames of a `width` x `height` canvas (already checked
    /// by [`check_canvas`]).
    pub fn new(width: u32, height: u32, limits: &Limits) -> FrameBudget {
        FrameBudget {
            canvas_pixels: u64::from(width) * u64::from(height),
            max_frames: limits.max_frames,
            max_total_pixels: limits.max_total_pixels,
            frames: 0,
        }
    }

    /// Accounts for one more decoded frame.
    pub fn admit(&mut self) -> Result<(), EngineError> {
        self.frames = self.frames.saturating_add(1);
        if self.frames > self.max_frames {
            return Err(EngineError::TooLarge(format!(
                "animation has more than {} frames",
                self.max_frames
            )));
        }
        let total = self.canvas_pixels.saturating_mul(u64::from(self.frames));
        if total > self.max_total_pixels {
            return Err(EngineError::TooLarge(format!(
                "animation is over {} pixels in total ({} frames of {} pixels so far)",
                self.max_total_pixels, self.frames, self.canvas_pixels
            )));
        }
        Ok(())
    }
}
