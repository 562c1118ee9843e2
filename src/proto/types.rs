//! The plain data that crosses the process boundary.
//!
//! Nothing here holds a file descriptor, a pointer or a closure: every type is
//! a tree of integers, strings and enums, so it survives a bincode round trip
//! unchanged and a worker can be replaced by any binary that speaks the same
//! [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).

use serde::{Deserialize, Serialize};

/// An sRGB colour with alpha, as given by `rrggbb`, `rrggbbaa` or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    /// 255 is opaque, 0 fully transparent.
    pub a: u8,
}

impl Color {
    pub const WHITE: Color = Color::rgba(255, 255, 255, 255);
    pub const BLACK: Color = Color::rgba(0, 0, 0, 255);
    pub const TRANSPARENT: Color = Color::rgba(0, 0, 0, 0);

    pub const fn rgba(r: u8, g: u8, b: u8, a: u8) -> Color {
        Color { r, g, b, a }
    }

    /// The four channels scaled to 0.0..=1.0.
    pub fn unit(self) -> [f32; 4] {
        [self.r, self.g, self.b, self.a].map(|c| f32::from(c) / 255.0)
    }
}

/// How `resize` maps the image onto a `width` x `height` box (as in sharp
/// and imaginary). Only meaningful when both sides are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fit {
    /// Fit inside the box, keeping the aspect ratio (the default).
    Contain,
    /// Fill the box, keeping the aspect ratio, then crop the overflow at
    /// the `gravity`.
    Cover,
    /// Stretch to the box exactly, ignoring the aspect ratio.
    Fill,
    /// Like `Contain`, but never enlarge, whatever `enlarge` says.
    Inside,
    /// The smallest size that covers the box, keeping the aspect ratio; no crop.
    Outside,
}

/// Which part of the image a cover-crop keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gravity {
    Centre,
    North,
    South,
    East,
    West,
    NorthEast,
    NorthWest,
    SouthEast,
    SouthWest,
    /// The window with the most detail (highest luma entropy).
    Smart,
    /// Keep the point (`x`, `y`) as close to the centre of the crop as the
    /// image allows; in ten-thousandths of the width and height from the
    /// left and top edges (whole numbers keep the type `Eq`).
    Focal {
        x: u16,
        y: u16,
    },
}

/// Where the image of an `overlay` op comes from. The front (or the job
/// runner) turns it into bytes, which travel after the input in the
/// request's payload ([`Request::attachments`]); the worker never fetches
/// or opens anything itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OverlaySource {
    /// An image the operator registered at start (`--overlay NAME=FILE`).
    Named(String),
    /// A second URL source (`image_url=`, only with URL sources on).
    Url(String),
}

/// One image operation. The front builds these from query parameters (and
/// validates every field); the worker's engine executes them in order, on
/// every frame of an animation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Scale to the `width` x `height` box as `fit` says. With one side the
    /// other follows the aspect ratio (every fit then behaves as `Contain`).
    /// Never enlarges unless `enlarge`.
    Resize {
        width: Option<u32>,
        height: Option<u32>,
        fit: Fit,
        gravity: Gravity,
        enlarge: bool,
        /// Scale in linear light (`linear=true`) instead of on the stored
        /// sRGB values. `None` means the server's default; the front
        /// resolves it before a request is named or sent, so the engine
        /// takes `None` as off.
        linear: Option<bool>,
    },
    /// A `width` x `height` cover-crop (resize to fill, crop at `gravity`);
    /// never enlarges: a small input gives the largest crop of the box's
    /// aspect ratio instead.
    Thumbnail {
        width: u32,
        height: u32,
        gravity: Gravity,
        /// As for [`Op::Resize`].
        linear: Option<bool>,
    },
    /// Gaussian blur with standard deviation `sigma` (pixels).
    Blur { sigma: f32 },
    /// Unsharp mask: add `amount` x (image - blur(`sigma`)) where that
    /// difference exceeds `threshold` (0..=255 scale).
    Sharpen {
        sigma: f32,
        amount: f32,
        threshold: u8,
    },
    /// Replace each `size` x `size` block with its mean colour.
    Pixelate { size: u32 },
    /// Luma only; alpha is kept.
    Grayscale,
    /// Negate the colour channels; alpha is kept.
    Invert,
    /// Add `value`% of full scale (-100..=100) to every colour channel.
    Brightness { value: f32 },
    /// Scale the distance from mid-grey by `1 + value / 100` (-100..=100).
    Contrast { value: f32 },
    /// Rotate hues by `degrees` (luminance kept).
    Hue { degrees: f32 },
    /// Multiply the saturation by `factor` (0 = grey, 1 = unchanged).
    Saturation { factor: f32 },
    /// The classic sepia tone matrix.
    Sepia,
    /// Luma at or above `value` becomes white, the rest black; alpha kept.
    Threshold { value: u8 },
    /// Composite onto `color`, removing transparency when it is opaque.
    Background { color: Color },
    /// Clockwise rotation by `angle` degrees. Multiples of 90 are exact;
    /// other angles are bilinear into a canvas grown to hold the whole
    /// image, the corners filled with `background`.
    Rotate { angle: f32, background: Color },
    /// Mirror top to bottom.
    Flip,
    /// Mirror left to right.
    Flop,
    /// Cut the `width` x `height` rectangle whose top-left corner is (`x`, `y`).
    /// The rectangle is clipped to the image; a corner outside it is an error.
    Crop {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    /// Add borders of the given widths, filled with `background`.
    Pad {
        top: u32,
        right: u32,
        bottom: u32,
        left: u32,
        background: Color,
    },
    /// Cut away borders of the top-left pixel's colour (each channel within
    /// `threshold`, 0..=255 scale).
    Trim { threshold: u8 },
    /// Composite another image onto this one (a watermark): placed at
    /// `gravity` (`Smart` and `Focal` are not positions) and moved `x`, `y`
    /// pixels inwards from the edges it names (right and down for the
    /// centre), its alpha multiplied by `opacity` (0..=1), first resized to
    /// `scale` x the base's width when given, repeated over the whole image
    /// when `tile`. Every frame of an animation gets the same overlay.
    Overlay {
        image: OverlaySource,
        gravity: Gravity,
        x: i32,
        y: i32,
        opacity: f32,
        scale: Option<f32>,
        tile: bool,
    },
    /// No pixel change: decode and encode to the output format.
    Convert,
    /// Describe the image instead of transforming it (reply is [`ImageInfo`]).
    Info,
    /// Test-only: sleep this long before answering. Refused unless both
    /// binaries were built with the `test-ops` feature.
    TestSleep { ms: u64 },
    /// Test-only: panic inside the engine.
    TestPanic,
    /// Test-only: `abort()` the worker process.
    TestAbort,
    /// Test-only: raise SIGSEGV in the worker process.
    TestSegv,
    /// Test-only: open a file, which the worker's sandbox forbids.
    TestOpenFile,
    /// Test-only: create a network socket, which the worker's sandbox forbids.
    TestSocket,
    /// Test-only: send SIGKILL to the master (the worker's parent), which
    /// the worker's sandbox forbids.
    TestKillMaster,
}

impl Op {
    /// The canonical route name of this op, as used in `/v1/{op}`, logs and
    /// metrics (aliases such as `extract` report their canonical op).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Resize { .. } => "resize",
            Op::Thumbnail { .. } => "thumbnail",
            Op::Blur { .. } => "blur",
            Op::Sharpen { .. } => "sharpen",
            Op::Pixelate { .. } => "pixelate",
            Op::Grayscale => "grayscale",
            Op::Invert => "invert",
            Op::Brightness { .. } => "brightness",
            Op::Contrast { .. } => "contrast",
            Op::Hue { .. } => "hue",
            Op::Saturation { .. } => "saturation",
            Op::Sepia => "sepia",
            Op::Threshold { .. } => "threshold",
            Op::Background { .. } => "background",
            Op::Rotate { .. } => "rotate",
            Op::Flip => "flip",
            Op::Flop => "flop",
            Op::Crop { .. } => "crop",
            Op::Pad { .. } => "pad",
            Op::Trim { .. } => "trim",
            Op::Overlay { .. } => "overlay",
            Op::Convert => "convert",
            Op::Info => "info",
            Op::TestSleep { .. } => "__sleep",
            Op::TestPanic => "__panic",
            Op::TestAbort => "__abort",
            Op::TestSegv => "__segv",
            Op::TestOpenFile => "__open",
            Op::TestSocket => "__socket",
            Op::TestKillMaster => "__kill_master",
        }
    }

    /// Test-only ops need no image and exist only in `test-ops` builds.
    pub fn is_test(&self) -> bool {
        matches!(
            self,
            Op::TestSleep { .. }
                | Op::TestPanic
                | Op::TestAbort
                | Op::TestSegv
                | Op::TestOpenFile
                | Op::TestSocket
                | Op::TestKillMaster
        )
    }
}

/// Encodings the engine can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputFormat {
    Jpeg,
    Png,
    Gif,
    Webp,
    /// Still AVIF (AV1 in HEIF), encoded by rav1e.
    Avif,
}

impl OutputFormat {
    /// The `Content-Type` of a response body in this format.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Gif => "image/gif",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
        }
    }

    /// The name used by the `format=` query parameter.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Png => "png",
            OutputFormat::Gif => "gif",
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
        }
    }
}

/// Which of the input's metadata (EXIF, XMP) goes into the output
/// (`keep=`). Stripped by default: EXIF carries GPS positions and camera
/// serial numbers that a published thumbnail should not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeepMeta {
    None,
    /// EXIF Artist and Copyright, and XMP's creator and rights statements.
    Copyright,
    /// EXIF (orientation reset to 1 once the pixels are upright), XMP,
    /// and the ICC profile as `icc=keep`.
    All,
}

/// Deflate effort of PNG output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PngCompression {
    Fast,
    Default,
    Best,
}

/// How to encode the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// `None`: the input's family (animated input stays an animated GIF).
    /// `format=auto` is resolved by the front before dispatch.
    pub format: Option<OutputFormat>,
    /// JPEG and lossy WebP quality, 1..=100.
    pub quality: u8,
    /// Progressive JPEG.
    pub progressive: bool,
    /// PNG deflate effort.
    pub compression: PngCompression,
    /// Most palette entries of a GIF frame, 2..=256.
    pub colors: u16,
    /// Lossless WebP instead of lossy.
    pub lossless: bool,
    /// Apply the EXIF orientation (on by default); `false` keeps the stored pixels.
    pub autorotate: bool,
    /// AVIF encoder effort, 0 (fastest) ..= 9 (smallest files).
    pub effort: u8,
    /// Which page of a multi-page input to read (0-based; TIFF).
    pub page: u32,
    /// `icc=keep`: leave the pixels in the embedded profile's space and
    /// embed that profile in the output (JPEG, PNG, WebP), instead of
    /// converting to sRGB.
    pub keep_icc: bool,
    /// `keep=`: the metadata copied into JPEG, PNG and WebP output.
    pub keep_meta: KeepMeta,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            format: None,
            quality: 80,
            progressive: false,
            compression: PngCompression::Fast,
            colors: 256,
            lossless: false,
            autorotate: true,
            effort: 4,
            page: 0,
            keep_icc: false,
            keep_meta: KeepMeta::None,
        }
    }
}

/// Decode limits, checked by the worker from the image header before any
/// pixel buffer is allocated. They travel with every request so the master's
/// flags are the single source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest width x height of one frame (for animations: of the canvas).
    pub max_pixels: u64,
    /// Largest number of frames of an animation.
    pub max_frames: u32,
    /// Largest width x height summed over all frames.
    pub max_total_pixels: u64,
}

impl Limits {
    /// The largest reply payload a request under these limits can produce:
    /// an uncompressed 16-bit RGBA frame of `max_pixels`, or every frame of
    /// an animation at 4 bytes a pixel, plus room for headers and metadata.
    /// The master reads no more than this from a worker, so a broken or
    /// compromised worker cannot make it hold more.
    pub fn max_reply_bytes(&self) -> u64 {
        let still = self.max_pixels.saturating_mul(8);
        let animation = self.max_total_pixels.saturating_mul(4);
        still.max(animation).saturating_add(1 << 20)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_frames: 1000,
            max_total_pixels: 200_000_000,
        }
    }
}

/// Everything a worker needs besides the image bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub ops: Vec<Op>,
    pub output: OutputSpec,
    pub limits: Limits,
}

/// First frame in each direction: proves both ends run the same protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// The sender's process id (the master checks it against the child it spawned).
    pub pid: u32,
}

/// One unit of work. The image bytes follow the header as the frame payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed by the reply; a mismatch means the slot is out of step.
    pub id: u64,
    pub task: Task,
    /// The byte lengths of the overlay images that follow the input in the
    /// payload, one for each `Overlay` op of the task, in op order (the
    /// input is what comes before them).
    pub attachments: Vec<u64>,
}

impl Request {
    /// Splits a request's payload into the input and its attachments, or
    /// says why the lengths do not fit it.
    pub fn split_payload<'a>(
        &self,
        payload: &'a [u8],
    ) -> Result<(&'a [u8], Vec<&'a [u8]>), String> {
        let overlays = self
            .task
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Overlay { .. }))
            .count();
        if overlays != self.attachments.len() {
            return Err(format!(
                "{} overlay images sent for {overlays} overlay ops",
                self.attachments.len()
            ));
        }
        let tail = self
            .attachments
            .iter()
            .try_fold(0u64, |sum, len| sum.checked_add(*len))
            .and_then(|t| usize::try_from(t).ok())
            .filter(|t| *t <= payload.len())
            .ok_or_else(|| "overlay images longer than the payload".to_string())?;
        let (input, mut rest) = payload.split_at(payload.len() - tail);
        let mut parts = Vec::with_capacity(self.attachments.len());
        for len in &self.attachments {
            // Each length fits: their sum does.
            let (part, more) = rest.split_at(*len as usize);
            parts.push(part);
            rest = more;
        }
        Ok((input, parts))
    }
}

/// Master to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    Hello(Hello),
    Request(Request),
}

/// Worker to master.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    Hello(Hello),
    Reply(Reply),
}

/// The answer to one [`Request`]. For [`Outcome::Image`] the encoded image is
/// the frame payload; otherwise the payload is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub outcome: Outcome,
    pub timing: Timing,
    /// The worker exits right after this reply (it caught a panic, or it
    /// holds memory a fresh process would not): the master must not send
    /// it another request, and replaces it at once.
    pub exiting: bool,
}

/// Where the worker spent its time, in microseconds (for `Server-Timing`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    pub decode_us: u64,
    pub ops_us: u64,
    pub encode_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Image(ImageMeta),
    Info(ImageInfo),
    Error(WorkError),
}

/// Describes an encoded output image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
}

/// The `info` op's answer, serialised to JSON by the front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Detected input format: `jpeg`, `png`, `gif`, `webp`, `bmp`, `tiff`, `ico`.
    pub format: String,
    /// Stored width, before EXIF orientation.
    pub width: u32,
    /// Stored height, before EXIF orientation.
    pub height: u32,
    pub frames: u32,
    pub has_alpha: bool,
    /// Frame delays in milliseconds (animations only; empty for stills).
    pub delays_ms: Vec<u32>,
    /// `Some(0)` loops forever; `None` for stills or when not stated.
    pub loop_count: Option<u32>,
    /// e.g. `rgb8`, `rgba8`, `l8`, `rgb16`.
    pub color_type: String,
    pub bit_depth: u8,
    /// EXIF orientation 1..=8 (1 when absent).
    pub orientation: u8,
    /// Pages (images) in the file: a multi-page TIFF's IFDs; 1 for every
    /// other format (animation frames are `frames`).
    pub pages: u32,
    /// The description of the embedded ICC profile (`unnamed` when it has
    /// none that reads); `None` without a profile.
    pub icc: Option<String>,
    /// The input carries an EXIF block.
    pub exif: bool,
    /// The input carries an XMP packet.
    pub xmp: bool,
    /// Size of the input in bytes.
    pub bytes: u64,
}

/// A typed failure the front maps to an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// A parameter that only the image can refute (crop outside the image). 400.
    BadParameter,
    /// Not an image, or a format/variant the engine cannot decode. 415.
    Unsupported,
    /// The data is damaged or ends early. 422.
    Corrupt,
    /// Over the pixel, frame or size limits. 413.
    TooLarge,
    /// A bug: the engine panicked or failed to encode. 500.
    Internal,
}

impl ErrorKind {
    /// The HTTP status the API answers this kind with. Here, beside the
    /// kind, so that the synchronous routes and the job runner (which
    /// stores it with a failed job) cannot answer the same failure
    /// differently.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadParameter => 400,
            ErrorKind::Unsupported => 415,
            ErrorKind::Corrupt => 422,
            ErrorKind::TooLarge => 413,
            ErrorKind::Internal => 500,
        }
    }

    /// The stable error code of the API's JSON errors.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadParameter => "bad_parameter",
            ErrorKind::Unsupported => "unsupported_format",
            ErrorKind::Corrupt => "corrupt_image",
            ErrorKind::TooLarge => "image_too_large",
            ErrorKind::Internal => "internal_error",
        }
    }
}
