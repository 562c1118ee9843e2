//! Reading request bodies under a byte cap and a deadline, and draining
//! the ones we refuse.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header;
use hyper::Request;

use super::error::ApiError;
use crate::budget::Hold;

/// Reads the body under the cap: a declared length over it is refused before
/// a byte is read, and a chunked body is cut off as soon as it passes it.
/// Every byte is taken from `hold`'s budget (`--max-inflight-bytes`) before
/// it is kept: a declared length up front, a chunked body as it arrives;
/// when the budget is spent the request is refused with 503 `server_busy`
/// instead of read further.
pub async fn read_body(
    req: Request<Incoming>,
    max: u64,
    timeout: Duration,
    hold: &mut Hold,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|len| len > max) {
        // A client waiting for "100 Continue" has sent nothing yet: answer
        // at once. Otherwise read (and drop) a bounded amount of what it is
        // sending, so it gets to read our 413 instead of a connection reset.
        if !expects_continue {
            drain(req.into_body()).await;
        }
        return Err(ApiError::BodyTooLarge { limit: max });
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    if let Some(len) = declared {
        if let Err(busy) = hold.grow(len as usize) {
            if !expects_continue {
                drain(req.into_body()).await;
            }
            return Err(busy.into());
        }
    }
    let mut body = req.into_body();
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame.map_err(|e| ApiError::BodyRead(e.to_string()))?,
            Ok(None) => break,
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
        };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(ApiError::BodyTooLarge { limit: max });
            }
            let beyond = (buf.len() + data.len()).saturating_sub(hold.bytes() as usize);
            if let Err(busy) = hold.grow(beyond) {
                drain(body).await;
                return Err(busy.into());
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Most a rejected body is read for before the connection is dropped.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Reads and discards up to [`DRAIN_BYTES`] / [`DRAIN_TIME`] of a body we
/// refuse. Closing a socket with unread data makes the kernel send a reset,
/// which can destroy our error response before the client reads it.
pub(super) async fn drain(mut body: Incoming) {
    let work = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len();
            }
            if seen > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, work).await;
}

/// [`drain`], unless the client sent `Expect: 100-continue` and is still
/// waiting for our go-ahead: then it has sent nothing, and the answer can
/// go at once.
pub(super) async fn drain_unless_waiting(req: Request<Incoming>) {
    let waiting = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waiting {
        drain(req.into_body()).await;
    }
}
