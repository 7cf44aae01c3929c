//! Tiny real PNGs for batches of 100,000 subjects: a solid grey 300 x 300 image (the smallest
//! side the provider accepts) compressed with fixed-Huffman deflate to 670 bytes in all, made
//! unique by a `tEXt` chunk so every subject gets its own job key.
//!
//! No image crate: the encoder below only knows how to write long runs of one byte, which is
//! all a solid image needs.

/// Side of the square, in pixels.
pub const SIDE: u32 = 300;

/// A valid 8-bit greyscale PNG, `SIDE` x `SIDE`, whose bytes differ for every `i`.
pub fn unique_png(i: usize) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(SIDE.to_be_bytes());
    ihdr.extend(SIDE.to_be_bytes());
    // Bit depth 8, colour type 0 (grey), deflate, filter 0, no interlace.
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"tEXt",
        format!("Comment\0bench subject {i}").as_bytes(),
    );
    // Every row is a filter byte (0) and SIDE black pixels (0): one long run of zeros.
    let raw_len = (SIDE as usize) * (SIDE as usize + 1);
    chunk(&mut out, b"IDAT", &zlib_zeros(raw_len));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend(data);
    out.extend(&typed);
    out.extend(crc32(&typed).to_be_bytes());
}

/// A zlib stream of `n` zero bytes: one literal, then back-references at distance 1.
fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = 01, fixed Huffman
    let mut left = n;
    if left > 0 {
        bits.literal(0);
        left -= 1;
    }
    while left > 0 {
        // A match is 3..=258 long; never leave a remainder of 1 or 2.
        let take = match left {
            0..=2 => {
                for _ in 0..left {
                    bits.literal(0);
                }
                break;
            }
            3..=258 => left,
            259..=260 => left - 3,
            _ => 258,
        };
        bits.length(take);
        bits.put(0, 5); // distance code 0: distance 1, no extra bits
        left -= take;
    }
    bits.symbol(256); // end of block
    let mut out = vec![0x78, 0x01];
    out.extend(bits.finish());
    // Adler-32 of n zeros: a = 1, b = n (mod 65521).
    let b = (n % 65_521) as u32;
    out.extend(((b << 16) | 1).to_be_bytes());
    out
}

/// Deflate's bit writer: values go in least-significant bit first, Huffman codes most
/// significant bit first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    used: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= u64::from(value) << self.used;
        self.used += count;
        while self.used >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.used -= 8;
        }
    }

    fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    /// A literal/length symbol in the fixed Huffman code.
    fn symbol(&mut self, s: u32) {
        match s {
            0..=143 => self.code(0x30 + s, 8),
            144..=255 => self.code(0x190 + s - 144, 9),
            256..=279 => self.code(s - 256, 7),
            _ => self.code(0xC0 + s - 280, 8),
        }
    }

    fn literal(&mut self, byte: u8) {
        self.symbol(u32::from(byte));
    }

    fn length(&mut self, len: usize) {
        // (first symbol, base length, extra bits) per group of RFC 1951's length table.
        const GROUPS: [(u32, usize, u32); 6] = [
            (257, 3, 0),
            (265, 11, 1),
            (269, 19, 2),
            (273, 35, 3),
            (277, 67, 4),
            (281, 131, 5),
        ];
        if len == 258 {
            self.symbol(285);
            return;
        }
        let &(first, base, extra) = GROUPS
            .iter()
            .rev()
            .find(|(_, base, _)| len >= *base)
            .expect("a match is at least 3 long");
        let offset = len - base;
        self.symbol(first + (offset >> extra) as u32);
        self.put((offset & ((1 << extra) - 1)) as u32, extra);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.used > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
