//! WebP output through libwebp (vendored C, via `libwebp-sys`).
//!
//! The pure-Rust encoder in `image` writes lossless stills only; libwebp
//! adds lossy quality and animations. Every call here is single-threaded
//! (libwebp's default `thread_level` is 0), so it stays inside the worker's
//! seccomp allow-list, and every libwebp allocation is released on every
//! path, errors included, by small RAII guards.

use std::ffi::{c_int, CStr};

use libwebp_sys as ffi;

use super::decode::AnimFrame;

/// Why libwebp refused to encode.
#[derive(Debug, thiserror::Error)]
pub enum WebpError {
    #[error("image is too large for WebP")]
    TooLarge,
    #[error("libwebp could not initialise its {0}")]
    Init(&'static str),
    #[error("libwebp failed: {0}")]
    Encode(String),
}

/// Encoder settings shared by stills and animations.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub quality: u8,
    pub lossless: bool,
}

fn dims(width: u32, height: u32) -> Result<(c_int, c_int), WebpError> {
    // WebP's own limit is 16383 per side; checked by the caller too.
    match (c_int::try_from(width), c_int::try_from(height)) {
        (Ok(w), Ok(h)) if w <= 16383 && h <= 16383 => Ok((w, h)),
        _ => Err(WebpError::TooLarge),
    }
}

fn config(settings: Settings) -> Result<ffi::WebPConfig, WebpError> {
    let mut config = ffi::WebPConfig::new().map_err(|()| WebpError::Init("config"))?;
    config.quality = f32::from(settings.quality.clamp(1, 100));
    config.lossless = c_int::from(settings.lossless);
    // SAFETY: `config` is a fully initialised WebPConfig (WebPConfigInit
    // succeeded above); the call only reads it.
    if unsafe { ffi::WebPValidateConfig(&config) } == 0 {
        return Err(WebpError::Init("config"));
    }
    Ok(config)
}

/// Frees a WebPPicture's buffers when dropped.
struct Picture(ffi::WebPPicture);

impl Picture {
    /// A picture holding a copy of `rgba` (4 bytes per pixel, no padding).
    fn from_rgba(rgba: &[u8], width: u32, height: u32, alpha: bool) -> Result<Picture, WebpError> {
        let (w, h) = dims(width, height)?;
        let channels = if alpha { 4 } else { 3 };
        let needed = (width as usize) * (height as usize) * channels;
        if rgba.len() < needed {
            return Err(WebpError::Encode("pixel buffer is too short".to_string()));
        }
        let mut pic = Picture(ffi::WebPPicture::new().map_err(|()| WebpError::Init("picture"))?);
        pic.0.use_argb = 1;
        pic.0.width = w;
        pic.0.height = h;
        let stride = w * channels as c_int;
        // SAFETY: `pic.0` was initialised by WebPPictureInit; `rgba` holds at
        // least `height` rows of `stride` bytes (checked above) and is only
        // read; libwebp copies it into buffers it allocates in `pic.0`, which
        // `Drop` frees.
        let ok = unsafe {
            if alpha {
                ffi::WebPPictureImportRGBA(&mut pic.0, rgba.as_ptr(), stride)
            } else {
                ffi::WebPPictureImportRGB(&mut pic.0, rgba.as_ptr(), stride)
            }
        };
        if ok == 0 {
            return Err(WebpError::Encode("could not import the pixels".to_string()));
        }
        Ok(pic)
    }
}

impl Drop for Picture {
    fn drop(&mut self) {
        // SAFETY: the picture was initialised; WebPPictureFree releases only
        // what libwebp allocated in it and accepts a picture with none.
        unsafe { ffi::WebPPictureFree(&mut self.0) }
    }
}

/// Collects encoder output into a Vec.
struct Memory(ffi::WebPMemoryWriter);

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: initialised by WebPMemoryWriterInit; frees its buffer once.
        unsafe { ffi::WebPMemoryWriterClear(&mut self.0) }
    }
}

/// One still picture: `pixels` is RGBA8 when `alpha`, else RGB8.
pub fn encode_still(
    pixels: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    settings: Settings,
) -> Result<Vec<u8>, WebpError> {
    let config = config(settings)?;
    let mut pic = Picture::from_rgba(pixels, width, height, alpha)?;
    // SAFETY: a zeroed WebPMemoryWriter is a valid argument for
    // WebPMemoryWriterInit, which then sets every field.
    let mut memory = Memory(unsafe { std::mem::zeroed() });
    // SAFETY: see above; `memory` outlives the encode that writes into it.
    unsafe { ffi::WebPMemoryWriterInit(&mut memory.0) };
    pic.0.writer = Some(ffi::WebPMemoryWrite);
    pic.0.custom_ptr = (&mut memory.0 as *mut ffi::WebPMemoryWriter).cast();
    // SAFETY: `config` was validated, `pic` holds imported pixels and points
    // its writer at `memory`, alive for the whole call.
    let ok = unsafe { ffi::WebPEncode(&config, &mut pic.0) };
    if ok == 0 {
        return Err(WebpError::Encode(format!(
            "encoding error {:?}",
            pic.0.error_code
        )));
    }
    if memory.0.mem.is_null() {
        return Err(WebpError::Encode("no output".to_string()));
    }
    // SAFETY: after a successful encode `mem`/`size` describe the buffer the
    // writer filled (non-null, checked); it is copied before `memory` frees it.
    let bytes = unsafe { std::slice::from_raw_parts(memory.0.mem, memory.0.size) }.to_vec();
    Ok(bytes)
}

/// Deletes an animation encoder when dropped.
struct AnimEncoder(*mut ffi::WebPAnimEncoder);

impl AnimEncoder {
    fn error(&self) -> String {
        // SAFETY: the encoder is live; the returned string is owned by it
        // and copied before the encoder can be deleted.
        let msg = unsafe { ffi::WebPAnimEncoderGetError(self.0) };
        if msg.is_null() {
            return "unknown error".to_string();
        }
        // SAFETY: libwebp returns a NUL-terminated static or encoder-owned string.
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for AnimEncoder {
    fn drop(&mut self) {
        // SAFETY: the pointer came from WebPAnimEncoderNewInternal, was
        // checked non-null, and is deleted exactly once, here.
        unsafe { ffi::WebPAnimEncoderDelete(self.0) }
    }
}

/// The frames a WebP file holds: its `ANMF` chunks, or 1 for a still.
///
/// libwebp's animation encoder merges consecutive identical frames (adding
/// up their durations), and an animation whose frames are all alike comes
/// out as a still: the count the response reports must be the file's, not
/// the number of frames handed in.
pub fn frame_count(webp: &[u8]) -> u32 {
    let mut frames = 0u32;
    let mut at: usize = 12;
    while let Some(head) = at.checked_add(8).and_then(|end| webp.get(at..end)) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if &head[..4] == b"ANMF" {
            frames = frames.saturating_add(1);
        }
        // Chunks are padded to an even length.
        at = at
            .saturating_add(8)
            .saturating_add(len)
            .saturating_add(len & 1);
    }
    frames.max(1)
}

/// An animated WebP of full-canvas RGBA8 frames. `loop_count`: `None` or
/// `Some(0)` loop forever (WebP has no "play once without a count" form, and
/// `None` comes from GIFs without a NETSCAPE block, which browsers loop).
pub fn encode_animation(
    frames: &[AnimFrame],
    width: u32,
    height: u32,
    loop_count: Option<u32>,
    settings: Settings,
) -> Result<Vec<u8>, WebpError> {
    let (w, h) = dims(width, height)?;
    let config = config(settings)?;
    // SAFETY: a zeroed options struct is valid input for the init call,
    // which fills every field.
    let mut options: ffi::WebPAnimEncoderOptions = unsafe { std::mem::zeroed() };
    // SAFETY: `options` is a valid, writable WebPAnimEncoderOptions.
    let ok = unsafe {
        ffi::WebPAnimEncoderOptionsInitInternal(&mut options, ffi::WEBP_MUX_ABI_VERSION as c_int)
    };
    if ok == 0 {
        return Err(WebpError::Init("animation options"));
    }
    options.anim_params.loop_count =
        c_int::try_from(loop_count.unwrap_or(0).min(65535)).unwrap_or(0);
    // SAFETY: sizes are in range (checked by `dims`), `options` initialised.
    let raw = unsafe {
        ffi::WebPAnimEncoderNewInternal(w, h, &options, ffi::WEBP_MUX_ABI_VERSION as c_int)
    };
    if raw.is_null() {
        return Err(WebpError::Init("animation encoder"));
    }
    let encoder = AnimEncoder(raw);
    let mut timestamp: c_int = 0;
    for frame in frames {
        let mut pic = Picture::from_rgba(frame.image.as_raw(), width, height, true)?;
        // SAFETY: the encoder is live, `pic` holds a picture of the canvas
        // size, and `config` was validated; libwebp copies what it keeps.
        let ok = unsafe { ffi::WebPAnimEncoderAdd(encoder.0, &mut pic.0, timestamp, &config) };
        if ok == 0 {
            return Err(WebpError::Encode(encoder.error()));
        }
        timestamp = timestamp.saturating_add(c_int::try_from(frame.delay_ms).unwrap_or(c_int::MAX));
    }
    // SAFETY: a null frame marks the end of the animation, as documented.
    let ok = unsafe {
        ffi::WebPAnimEncoderAdd(encoder.0, std::ptr::null_mut(), timestamp, std::ptr::null())
    };
    if ok == 0 {
        return Err(WebpError::Encode(encoder.error()));
    }
    let mut data = ffi::WebPData::default();
    // SAFETY: the encoder is live; `data` receives a buffer libwebp allocates.
    let ok = unsafe { ffi::WebPAnimEncoderAssemble(encoder.0, &mut data) };
    if ok == 0 {
        return Err(WebpError::Encode(encoder.error()));
    }
    if data.bytes.is_null() {
        return Err(WebpError::Encode("no output".to_string()));
    }
    // SAFETY: after a successful assemble `data` describes a live, non-null
    // buffer of `size` bytes; it is copied, then freed exactly once.
    let bytes = unsafe { std::slice::from_raw_parts(data.bytes, data.size) }.to_vec();
    // SAFETY: `data.bytes` was allocated by libwebp and is not used after.
    unsafe { ffi::WebPDataClear(&mut data) };
    Ok(bytes)
}

/// Deletes a mux object when dropped.
struct Mux(*mut ffi::WebPMux);

impl Drop for Mux {
    fn drop(&mut self) {
        // SAFETY: the pointer came from WebPMuxCreateInternal, was checked
        // non-null, and is deleted exactly once, here.
        unsafe { ffi::WebPMuxDelete(self.0) }
    }
}

/// `webp` (a still or an animation from the encoders above) with
/// `chunks` added, each a fourcc (`ICCP` for `icc=keep`, `EXIF`, `XMP `
/// for `keep=`) and its payload. libwebp's mux writes the extended
/// (`VP8X`) header with the matching flags, which a plain file lacks.
pub fn with_chunks(webp: &[u8], chunks: &[(&CStr, &[u8])]) -> Result<Vec<u8>, WebpError> {
    let input = ffi::WebPData {
        bytes: webp.as_ptr(),
        size: webp.len(),
    };
    // SAFETY: `input` describes `webp`, alive for the call; copy_data = 1
    // makes the mux own a copy, so nothing borrowed outlives this call.
    let raw = unsafe { ffi::WebPMuxCreateInternal(&input, 1, ffi::WEBP_MUX_ABI_VERSION as c_int) };
    if raw.is_null() {
        return Err(WebpError::Encode(
            "the mux could not read its own output".to_string(),
        ));
    }
    let mux = Mux(raw);
    for (fourcc, payload) in chunks {
        let data = ffi::WebPData {
            bytes: payload.as_ptr(),
            size: payload.len(),
        };
        // SAFETY: the mux is live, the fourcc is a NUL-terminated 4-byte
        // tag, `data` describes `payload` and is copied (copy_data = 1).
        let set = unsafe { ffi::WebPMuxSetChunk(mux.0, fourcc.as_ptr(), &data, 1) };
        if set != ffi::WebPMuxError::WEBP_MUX_OK {
            return Err(WebpError::Encode(format!("adding {fourcc:?}: {set:?}")));
        }
    }
    let mut data = ffi::WebPData::default();
    // SAFETY: the mux is live; `data` receives a buffer libwebp allocates.
    let done = unsafe { ffi::WebPMuxAssemble(mux.0, &mut data) };
    if done != ffi::WebPMuxError::WEBP_MUX_OK || data.bytes.is_null() {
        // SAFETY: clearing an empty or filled WebPData is valid.
        unsafe { ffi::WebPDataClear(&mut data) };
        return Err(WebpError::Encode(format!(
            "assembling with the added chunks: {done:?}"
        )));
    }
    // SAFETY: after a successful assemble `data` describes a live, non-null
    // buffer of `size` bytes; it is copied, then freed exactly once.
    let bytes = unsafe { std::slice::from_raw_parts(data.bytes, data.size) }.to_vec();
    // SAFETY: `data.bytes` was allocated by libwebp and is not used after.
    unsafe { ffi::WebPDataClear(&mut data) };
    Ok(bytes)
}
