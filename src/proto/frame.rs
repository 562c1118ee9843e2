//! Framing: bytes on a Unix socket <-> typed messages.
//!
//! A frame is
//!
//! ```text
//! u32 LE header_len | u32 LE payload_len | header (bincode) | payload (raw bytes)
//! ```
//!
//! The image bytes travel as the raw payload, outside serde: bincode's serde
//! path encodes a byte vector element by element, which costs about 3x more
//! than a plain copy on large images. Both lengths are checked against the
//! caller's maximum *before* anything is allocated, so a garbage or hostile
//! length cannot make the reader reserve gigabytes.
//!
//! This module (with its parent) is the only place bincode is named, so the
//! codec can be swapped by editing one file.

use std::io::{Read, Write};

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upper bound on a header, whatever the caller asks: headers hold an op list
/// and a few numbers, never pixels.
pub const MAX_HEADER_LEN: u32 = 1 << 20;

/// Bytes before the header: the two little-endian lengths.
pub const PREFIX_LEN: usize = 8;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("socket i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the socket cleanly between two frames.
    #[error("peer closed the connection")]
    Closed,
    /// The peer closed the socket in the middle of a frame.
    #[error("frame truncated: peer closed the connection mid-frame")]
    Truncated,
    #[error("frame header of {len} bytes exceeds the maximum of {max}")]
    HeaderTooLarge { len: u32, max: u32 },
    #[error("frame payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge { len: u64, max: u64 },
    #[error("malformed frame header: {0}")]
    Decode(String),
    #[error("could not encode frame header: {0}")]
    Encode(String),
    #[error("protocol version mismatch: peer speaks version {peer}, this binary speaks {ours}")]
    VersionMismatch { peer: u32, ours: u32 },
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
}

/// bincode configuration shared by both directions. The limit bounds what a
/// malformed header can make the decoder allocate.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ MAX_HEADER_LEN as usize }>()
}

/// Encodes `msg` as a header. Used by the writers below and by tests.
pub fn encode_header<T: Serialize>(msg: &T) -> Result<Vec<u8>, ProtoError> {
    bincode::serde::encode_to_vec(msg, config()).map_err(|e| ProtoError::Encode(e.to_string()))
}

/// Decodes a complete header. Trailing bytes are an error: a header that does
/// not fill its declared length is as malformed as one that overruns it.
pub fn decode_header<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| ProtoError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(ProtoError::Decode(format!(
            "{} trailing bytes after the header",
            bytes.len() - used
        )));
    }
    Ok(msg)
}

/// Builds the prefix and header of a frame whose payload has `payload_len` bytes.
fn frame_head<T: Serialize>(msg: &T, payload_len: usize) -> Result<Vec<u8>, ProtoError> {
    let header = encode_header(msg)?;
    let header_len = u32::try_from(header.len())
        .ok()
        .filter(|len| *len <= MAX_HEADER_LEN)
        .ok_or(ProtoError::HeaderTooLarge {
            len: u32::try_from(header.len()).unwrap_or(u32::MAX),
            max: MAX_HEADER_LEN,
        })?;
    let payload_len = u32::try_from(payload_len).map_err(|_| ProtoError::PayloadTooLarge {
        len: payload_len as u64,
        max: u32::MAX as u64,
    })?;
    let mut head = Vec::with_capacity(PREFIX_LEN + header.len());
    head.extend_from_slice(&header_len.to_le_bytes());
    head.extend_from_slice(&payload_len.to_le_bytes());
    head.extend_from_slice(&header);
    Ok(head)
}

/// Parses the 8-byte prefix and checks both lengths before any allocation.
fn parse_prefix(prefix: [u8; PREFIX_LEN], max_payload: u64) -> Result<(u32, u32), ProtoError> {
    let header_len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let payload_len = u32::from_le_bytes([prefix[4], prefix[5], prefix[6], prefix[7]]);
    if header_len > MAX_HEADER_LEN {
        return Err(ProtoError::HeaderTooLarge {
            len: header_len,
            max: MAX_HEADER_LEN,
        });
    }
    if u64::from(payload_len) > max_payload {
        return Err(ProtoError::PayloadTooLarge {
            len: u64::from(payload_len),
            max: max_payload,
        });
    }
    Ok((header_len, payload_len))
}

fn map_eof(e: std::io::Error) -> ProtoError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ProtoError::Truncated
    } else {
        ProtoError::Io(e)
    }
}

/// Reads the prefix, telling a clean close (no byte at all) from a torn frame.
fn read_prefix_blocking<R: Read>(r: &mut R) -> Result<[u8; PREFIX_LEN], ProtoError> {
    let mut prefix = [0u8; PREFIX_LEN];
    let mut filled = 0;
    while filled < PREFIX_LEN {
        match r.read(&mut prefix[filled..]) {
            Ok(0) if filled == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    Ok(prefix)
}

/// Writes one frame to a blocking writer (the worker side).
pub fn write_frame<W: Write, T: Serialize>(
    w: &mut W,
    msg: &T,
    payload: &[u8],
) -> Result<(), ProtoError> {
    let head = frame_head(msg, payload.len())?;
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame from a blocking reader (the worker side). The payload is
/// read into `payload`, which is cleared first and reused across frames so a
/// long-lived worker does not allocate a fresh input buffer per request.
pub fn read_frame<R: Read, T: DeserializeOwned>(
    r: &mut R,
    max_payload: u64,
    payload: &mut Vec<u8>,
) -> Result<T, ProtoError> {
    let prefix = read_prefix_blocking(r)?;
    let (header_len, payload_len) = parse_prefix(prefix, max_payload)?;
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).map_err(map_eof)?;
    let msg = decode_header(&header)?;
    payload.clear();
    payload.resize(payload_len as usize, 0);
    r.read_exact(payload).map_err(map_eof)?;
    Ok(msg)
}

/// Writes one frame to an async writer (the master side). The payload is
/// written straight from the caller's buffer: no copy into a frame buffer.
pub async fn write_frame_async<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    payload: &[u8],
) -> Result<(), ProtoError> {
    write_frame_parts_async(w, msg, &[payload]).await
}

/// [`write_frame_async`] with a payload given in parts (an image and the
/// overlay images that travel with it), written one after the other
/// without joining them into one buffer first.
pub async fn write_frame_parts_async<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
    parts: &[&[u8]],
) -> Result<(), ProtoError> {
    let total = parts
        .iter()
        .try_fold(0usize, |sum, part| sum.checked_add(part.len()))
        .ok_or(ProtoError::PayloadTooLarge {
            len: u64::MAX,
            max: u32::MAX as u64,
        })?;
    let head = frame_head(msg, total)?;
    w.write_all(&head).await?;
    for part in parts {
        w.write_all(part).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Reads one frame from an async reader (the master side) and returns the
/// message with its payload.
pub async fn read_frame_async<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max_payload: u64,
) -> Result<(T, Vec<u8>), ProtoError> {
    let mut prefix = [0u8; PREFIX_LEN];
    let mut filled = 0;
    while filled < PREFIX_LEN {
        match r.read(&mut prefix[filled..]).await {
            Ok(0) if filled == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    let (header_len, payload_len) = parse_prefix(prefix, max_payload)?;
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header).await.map_err(map_eof)?;
    let msg = decode_header(&header)?;
    let payload = read_payload_async(r, payload_len as usize).await?;
    Ok((msg, payload))
}

/// Most a payload buffer grows by before the bytes to fill it have come.
const GROW_STEP: usize = 1 << 20;

/// Reads exactly `len` payload bytes, growing the buffer as they arrive:
/// a length prefix that promises gigabytes costs nothing until the peer
/// actually sends them (and the caller's maximum still bounds the total).
async fn read_payload_async<R: AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
) -> Result<Vec<u8>, ProtoError> {
    let mut payload = Vec::with_capacity(len.min(GROW_STEP));
    while payload.len() < len {
        let want = (len - payload.len()).min(GROW_STEP);
        let start = payload.len();
        payload.resize(start + want, 0);
        r.read_exact(&mut payload[start..]).await.map_err(map_eof)?;
    }
    Ok(payload)
}
