//! Content digests on the wire (RFC 9530 `Repr-Digest: sha-256=:BASE64:`).
//!
//! A clip server that announces a digest lets a download prove it got the very bytes the
//! server meant, not merely a well-formed MP4 of the right length: a body that changed in
//! flight fails the check and is fetched again. Servers that announce nothing are trusted on
//! length and MP4 structure alone.

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The `Repr-Digest` header value for `bytes`.
pub fn repr_digest(bytes: &[u8]) -> String {
    format!("sha-256=:{}:", base64(&Sha256::digest(bytes)))
}

/// The sha-256 announced in a `Repr-Digest` or `Content-Digest` value, if there is one.
pub fn parse_sha256(value: &str) -> Option<[u8; 32]> {
    value.split(',').find_map(|member| {
        let (alg, rest) = member.trim().split_once('=')?;
        if !alg.trim().eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let b64 = rest.trim().strip_prefix(':')?.strip_suffix(':')?;
        unbase64(b64)?.try_into().ok()
    })
}

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            assert_eq!(unbase64(encoded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn an_announced_digest_is_read_back() {
        let header = repr_digest(b"clip");
        assert_eq!(
            parse_sha256(&header).unwrap().to_vec(),
            Sha256::digest(b"clip").to_vec()
        );
        assert_eq!(
            parse_sha256(&format!("md5=:AAAA:, {header}"))
                .unwrap()
                .to_vec(),
            Sha256::digest(b"clip").to_vec()
        );
        assert!(parse_sha256("sha-512=:AAAA:").is_none());
        assert!(parse_sha256("sha-256=garbage").is_none());
    }
}
