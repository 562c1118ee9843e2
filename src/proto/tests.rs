use std::io::Cursor;

use super::*;

fn sample_request() -> ToWorker {
    ToWorker::Request(Request {
        id: 42,
        task: Task {
            ops: vec![
                Op::Resize {
                    width: Some(400),
                    height: None,
                    fit: Fit::Cover,
                    gravity: Gravity::Smart,
                    enlarge: false,
                    linear: Some(true),
                },
                Op::Rotate {
                    angle: 30.0,
                    background: Color::rgba(1, 2, 3, 4),
                },
                Op::Blur { sigma: 2.5 },
                Op::Crop {
                    x: 1,
                    y: 2,
                    width: 3,
                    height: 4,
                },
                Op::Overlay {
                    image: OverlaySource::Named("logo".into()),
                    gravity: Gravity::SouthEast,
                    x: -5,
                    y: 10,
                    opacity: 0.5,
                    scale: Some(0.25),
                    tile: false,
                },
            ],
            output: OutputSpec {
                format: Some(OutputFormat::Webp),
                quality: 90,
                ..OutputSpec::default()
            },
            limits: Limits::default(),
        },
        attachments: vec![3],
    })
}

#[test]
fn a_payload_splits_into_the_input_and_its_overlays() {
    let ToWorker::Request(req) = sample_request() else {
        unreachable!("sample_request builds a request");
    };
    let (input, parts) = req.split_payload(b"imageabc").expect("fits");
    assert_eq!(input, b"image");
    assert_eq!(parts, vec![&b"abc"[..]]);
    // Lengths that overrun the payload, or that do not match the overlay
    // ops, are refused rather than read past the end.
    assert!(req.split_payload(b"ab").is_err());
    let mut wrong = req.clone();
    wrong.attachments = vec![1, 1];
    assert!(wrong.split_payload(b"imageabc").is_err());
    wrong.attachments = vec![u64::MAX];
    assert!(wrong.split_payload(b"imageabc").is_err());
}

fn frame_bytes<T: serde::Serialize>(msg: &T, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, msg, payload).expect("write");
    out
}

#[test]
fn request_round_trips_with_payload() {
    let msg = sample_request();
    let payload = vec![7u8; 100_000];
    let bytes = frame_bytes(&msg, &payload);
    let mut buf = Vec::new();
    let back: ToWorker = read_frame(&mut Cursor::new(&bytes), 1 << 20, &mut buf).expect("read");
    assert_eq!(back, msg);
    assert_eq!(buf, payload);
}

#[test]
fn reply_round_trips_async() {
    let msg = FromWorker::Reply(Reply {
        id: 9,
        outcome: Outcome::Info(ImageInfo {
            format: "gif".into(),
            width: 10,
            height: 20,
            frames: 3,
            has_alpha: true,
            delays_ms: vec![100, 200, 300],
            loop_count: Some(0),
            color_type: "rgba8".into(),
            bit_depth: 8,
            orientation: 1,
            pages: 1,
            icc: None,
            exif: true,
            xmp: false,
            bytes: 1234,
        }),
        timing: Timing::default(),
        exiting: false,
    });
    let bytes = frame_bytes(&msg, b"abc");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (back, payload): (FromWorker, Vec<u8>) = rt
        .block_on(read_frame_async(&mut &bytes[..], 1 << 20))
        .expect("read");
    assert_eq!(back, msg);
    assert_eq!(payload, b"abc");
}

#[test]
fn hello_round_trips_and_version_is_checked() {
    let hello = Hello {
        version: PROTOCOL_VERSION,
        pid: 1,
    };
    let back: Hello = decode_header(&encode_header(&hello).expect("enc")).expect("dec");
    assert!(check_hello(&back).is_ok());
    let old = Hello {
        version: PROTOCOL_VERSION + 1,
        pid: 1,
    };
    match check_hello(&old) {
        Err(ProtoError::VersionMismatch { peer, ours }) => {
            assert_eq!(peer, PROTOCOL_VERSION + 1);
            assert_eq!(ours, PROTOCOL_VERSION);
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

#[test]
fn empty_stream_is_a_clean_close() {
    let mut buf = Vec::new();
    let r: Result<ToWorker, _> = read_frame(&mut Cursor::new(&[][..]), 1024, &mut buf);
    assert!(matches!(r, Err(ProtoError::Closed)), "{r:?}");
}

#[test]
fn every_truncation_is_a_typed_error() {
    let bytes = frame_bytes(&sample_request(), &[1, 2, 3, 4, 5]);
    for cut in 1..bytes.len() {
        let mut buf = Vec::new();
        let r: Result<ToWorker, _> = read_frame(&mut Cursor::new(&bytes[..cut]), 1024, &mut buf);
        assert!(
            matches!(r, Err(ProtoError::Truncated)),
            "cut at {cut}: {r:?}"
        );
    }
}

#[test]
fn over_long_lengths_are_refused_before_allocating() {
    // Header length far past the maximum.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    let mut buf = Vec::new();
    let r: Result<ToWorker, _> = read_frame(&mut Cursor::new(&bytes), 1024, &mut buf);
    assert!(
        matches!(r, Err(ProtoError::HeaderTooLarge { len: u32::MAX, .. })),
        "{r:?}"
    );

    // Payload length past the caller's maximum: refused from the prefix,
    // before the (absent) header is even read.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&4u32.to_le_bytes());
    bytes.extend_from_slice(&(3_000_000_000u32).to_le_bytes());
    let r: Result<ToWorker, _> = read_frame(&mut Cursor::new(&bytes), 1 << 20, &mut buf);
    assert!(
        matches!(
            r,
            Err(ProtoError::PayloadTooLarge {
                len: 3_000_000_000,
                max: 1_048_576
            })
        ),
        "{r:?}"
    );
    assert_eq!(buf.capacity(), 0, "nothing was allocated for the payload");
}

#[test]
fn garbage_header_is_a_decode_error() {
    let garbage = [0xffu8; 32];
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&garbage);
    let mut buf = Vec::new();
    let r: Result<ToWorker, _> = read_frame(&mut Cursor::new(&bytes), 1024, &mut buf);
    assert!(matches!(r, Err(ProtoError::Decode(_))), "{r:?}");
}

#[test]
fn trailing_bytes_in_header_are_refused() {
    let mut header = encode_header(&sample_request()).expect("enc");
    header.push(0);
    let r: Result<ToWorker, _> = decode_header(&header);
    assert!(matches!(r, Err(ProtoError::Decode(_))), "{r:?}");
}

#[test]
fn arbitrary_prefixes_never_panic() {
    // A cheap deterministic sweep: every header length 0..64 over patterned
    // bytes must give Ok or a typed error, never a panic.
    for len in 0u32..64 {
        for seed in 0u8..8 {
            let body: Vec<u8> = (0..len)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect();
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&body);
            let mut buf = Vec::new();
            let _: Result<ToWorker, _> = read_frame(&mut Cursor::new(&bytes), 1024, &mut buf);
            let _: Result<FromWorker, _> = read_frame(&mut Cursor::new(&bytes), 1024, &mut buf);
        }
    }
}

#[test]
fn a_lying_payload_length_is_not_allocated_up_front() {
    // A frame that promises 1 GiB and sends 3 bytes: a truncation error,
    // after allocating about one growth step, not the promised gigabyte.
    let msg = FromWorker::Hello(Hello { version: 1, pid: 2 });
    let mut bytes = frame_bytes(&msg, b"");
    bytes[4..8].copy_from_slice(&(1u32 << 30).to_le_bytes());
    bytes.extend_from_slice(b"abc");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let r: Result<(FromWorker, Vec<u8>), _> =
        rt.block_on(read_frame_async(&mut &bytes[..], 2 << 30));
    assert!(matches!(r, Err(ProtoError::Truncated)), "{r:?}");
}

#[test]
fn reply_bound_follows_the_limits() {
    let l = Limits::default();
    assert!(l.max_reply_bytes() >= l.max_pixels * 8);
    let small = Limits {
        max_pixels: 1000,
        max_frames: 1,
        max_total_pixels: 1000,
    };
    assert!(small.max_reply_bytes() < 2 << 20);
}
