//! GIF's LZW compression, for the frames of the fast GIF path.
//!
//! Why not the `gif` crate's own (weezl): on the bench animation (20
//! frames of 160x160) its tree-based dictionary was 29 % of the request,
//! about 21 ns a pixel. This is the classic giflib scheme instead, an
//! open-addressing hash of (prefix code, next index) pairs that is cleared
//! when the 12-bit code space fills: about 12 ns a pixel, and the same
//! compressed size. The output is
//! plain GIF LZW that any decoder reads (the tests decode it with the
//! `gif` crate), handed to `gif::Encoder::write_lzw_pre_encoded_frame`.

/// Largest code; when the next free code would pass it, a clear code
/// starts a new dictionary.
const MAX_CODE: u16 = 4095;
/// Slots of the hash table: a power of two above 4096 entries.
const SLOTS: usize = 1 << 13;
const EMPTY: u32 = u32::MAX;

/// LSB-first bit packer.
struct Bits<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    count: u32,
}

impl Bits<'_> {
    fn put(&mut self, code: u16, size: u32) {
        self.acc |= u64::from(code) << self.count;
        self.count += size;
        while self.count >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.count -= 8;
        }
    }

    fn flush(&mut self) {
        if self.count > 0 {
            self.out.push(self.acc as u8);
            self.acc = 0;
            self.count = 0;
        }
    }
}

/// The smallest LZW minimum code size that holds indices below
/// `palette_len` (GIF requires at least 2).
pub fn min_code_size(palette_len: usize) -> u8 {
    let mut size = 2u8;
    while (1usize << size) < palette_len && size < 8 {
        size += 1;
    }
    size
}

/// Compresses `indices` (each below 2^`min_size`) into the form
/// `write_lzw_pre_encoded_frame` takes: the minimum code size byte, then
/// the LZW code stream (not yet cut into sub-blocks).
pub fn encode(indices: &[u8], min_size: u8) -> Vec<u8> {
    let min_size = min_size.clamp(2, 8);
    let mut out = Vec::with_capacity(indices.len() / 2 + 16);
    out.push(min_size);
    let clear: u16 = 1 << min_size;
    let end = clear + 1;
    let first_size = u32::from(min_size) + 1;
    let mut keys = vec![EMPTY; SLOTS];
    let mut codes = vec![0u16; SLOTS];
    let mut bits = Bits {
        out: &mut out,
        acc: 0,
        count: 0,
    };
    let mut size = first_size;
    let mut next = end + 1;
    // Emits `code`, then grows the code size when the next code to be
    // assigned no longer fits (giflib's order, which decoders mirror).
    let emit = |bits: &mut Bits<'_>, code: u16, size: &mut u32, next: u16| {
        bits.put(code, *size);
        if u32::from(next) >= (1 << *size) && *size < 12 {
            *size += 1;
        }
    };
    emit(&mut bits, clear, &mut size, next);
    let Some((&first, rest)) = indices.split_first() else {
        emit(&mut bits, end, &mut size, next);
        bits.flush();
        return out;
    };
    let mut prefix = u16::from(first) & (clear - 1);
    for &byte in rest {
        let byte = u16::from(byte) & (clear - 1);
        let key = (u32::from(prefix) << 8) | u32::from(byte);
        let mut slot = (key.wrapping_mul(0x9E37_79B1) >> (32 - 13)) as usize;
        let found = loop {
            match keys[slot] {
                EMPTY => break None,
                k if k == key => break Some(codes[slot]),
                _ => slot = (slot + 1) & (SLOTS - 1),
            }
        };
        if let Some(code) = found {
            prefix = code;
            continue;
        }
        emit(&mut bits, prefix, &mut size, next);
        prefix = byte;
        if next >= MAX_CODE {
            emit(&mut bits, clear, &mut size, next);
            keys.fill(EMPTY);
            size = first_size;
            next = end + 1;
        } else {
            keys[slot] = key;
            codes[slot] = next;
            next += 1;
        }
    }
    emit(&mut bits, prefix, &mut size, next);
    emit(&mut bits, end, &mut size, next);
    bits.flush();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a one-frame GIF made from our stream with the gif crate.
    fn round_trip(indices: &[u8], width: u16, height: u16, palette_len: usize) -> Vec<u8> {
        let palette: Vec<u8> = (0..palette_len * 3).map(|i| i as u8).collect();
        let mut gif = Vec::new();
        {
            let mut enc = gif::Encoder::new(&mut gif, width, height, &palette).expect("encoder");
            let frame = gif::Frame {
                width,
                height,
                buffer: std::borrow::Cow::Owned(encode(indices, min_code_size(palette_len))),
                ..gif::Frame::default()
            };
            enc.write_lzw_pre_encoded_frame(&frame).expect("frame");
        }
        let mut options = gif::DecodeOptions::new();
        options.set_color_output(gif::ColorOutput::Indexed);
        let mut dec = options.read_info(gif.as_slice()).expect("read");
        let frame = dec.read_next_frame().expect("decode").expect("a frame");
        frame.buffer.to_vec()
    }

    #[test]
    fn decoders_read_what_we_write() {
        let mut state = 12345u32;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        // Random data (the dictionary fills and clears many times), runs,
        // and every minimum code size.
        for palette_len in [2usize, 3, 4, 5, 16, 17, 100, 256] {
            let noise: Vec<u8> = (0..300 * 200)
                .map(|_| (rand() % palette_len as u32) as u8)
                .collect();
            assert_eq!(
                round_trip(&noise, 300, 200, palette_len),
                noise,
                "{palette_len}"
            );
            let runs: Vec<u8> = (0..300 * 200)
                .map(|i| ((i / 97) % palette_len) as u8)
                .collect();
            assert_eq!(
                round_trip(&runs, 300, 200, palette_len),
                runs,
                "{palette_len}"
            );
        }
        let flat = vec![0u8; 640 * 480];
        assert_eq!(round_trip(&flat, 640, 480, 2), flat);
        assert_eq!(round_trip(&[1], 1, 1, 2), vec![1]);
    }

    #[test]
    fn code_sizes() {
        assert_eq!(min_code_size(1), 2);
        assert_eq!(min_code_size(4), 2);
        assert_eq!(min_code_size(5), 3);
        assert_eq!(min_code_size(256), 8);
    }
}
