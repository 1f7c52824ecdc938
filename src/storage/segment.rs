//! An id as one segment of an object key or file name: the one encoding of
//! statement files (`statements/<seller>/<buyer>.html`) and e-invoice keys
//! (`einvoices/<seller>/<number>.xml`, the number sequences' folders).
//!
//! Every byte but `A-Z a-z 0-9 _ -` is `%XX` (upper-case hex), so an id
//! never adds a folder, never names `.` or `..`, and two ids that differ
//! only by the case of a letter they do not have never meet: `dp 1/ä.` is
//! `dp%201%2F%C3%A4%2E`. Ids of the example are unchanged.
//!
//! A file system allows 255 bytes a name. An id whose encoding is longer
//! than [`MAX_SEGMENT_BYTES`] (a 201-character id, or 23 CJK characters at
//! 9 bytes each once encoded) keeps the encoding of as many of its first
//! characters as fit, then `~` and 16 hex digits of its SHA-256: still one
//! segment, still distinct, and with room for an extension. `~` is never
//! part of an encoding (it is `%7E` there), so such a name cannot be
//! another id's.

use sha2::{Digest, Sha256};

/// The longest segment [`key_segment`] gives, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 200;

/// Hex digits of the SHA-256 that stand for the rest of a long id.
const HASH_DIGITS: usize = 16;

/// `id` as one key segment (see the module's documentation).
pub fn key_segment(id: &str) -> String {
    let out = encode(id, usize::MAX);
    if out.len() <= MAX_SEGMENT_BYTES {
        return out;
    }
    // The encoding of the id's longest start (whole characters) that leaves
    // room for `~` and the hash.
    let mut out = encode(id, MAX_SEGMENT_BYTES - 1 - HASH_DIGITS);
    out.push('~');
    out.push_str(&hex::encode(Sha256::digest(id.as_bytes()))[..HASH_DIGITS]);
    out
}

/// The encoding of `id`'s characters, as many whole ones as fit in `limit` bytes.
fn encode(id: &str, limit: usize) -> String {
    let mut out = String::with_capacity(id.len().min(limit));
    let mut buf = [0u8; 4];
    for c in id.chars() {
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let plain = matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_');
        if out.len() + if plain { 1 } else { 3 * bytes.len() } > limit {
            break;
        }
        if plain {
            out.push(c);
        } else {
            bytes.iter().for_each(|b| out.push_str(&format!("%{b:02X}")));
        }
    }
    out
}

/// The id a [`key_segment`] stands for: `None` for anything else, and for
/// the shortened segment of a long id (its hash cannot be undone).
pub fn decode_key_segment(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = segment.get(i + 1..i + 3)?;
                if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_safe_and_reversible() {
        for id in ["dp-1", "a b", "x/y", ".", "..", "<&\"'>", "ä€", "a%20b", "under_score", "a~b"] {
            let s = key_segment(id);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)), "{s}");
            assert!(s != "." && s != ".." && !s.contains('/'), "{s}");
            assert_eq!(decode_key_segment(&s).as_deref(), Some(id));
        }
        assert_eq!(key_segment("dp 1/ä."), "dp%201%2F%C3%A4%2E");
        assert_eq!(key_segment("../x/y"), "%2E%2E%2Fx%2Fy");
        for bad in ["%zz", "%4", "%+1", "a.b", "a/b", "a~0123"] {
            assert_eq!(decode_key_segment(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_id_keeps_its_start_and_a_hash_within_the_limit() {
        let fits = "w".repeat(MAX_SEGMENT_BYTES);
        assert_eq!(key_segment(&fits), fits, "an encoding of exactly the limit stays whole");
        for id in ["w".repeat(251), "日".repeat(28), format!("{}日", "w".repeat(195)), "a b".repeat(100)] {
            let s = key_segment(&id);
            assert!(s.len() <= MAX_SEGMENT_BYTES, "{} bytes: {s}", s.len());
            let (start, hash) = s.split_once('~').unwrap();
            assert_eq!(hash.len(), HASH_DIGITS);
            assert!(
                key_segment(&id).starts_with(start) && decode_key_segment(start).is_some(),
                "whole characters: {start}"
            );
            assert!(!start.is_empty() && s != "." && !s.contains('/'));
            assert_eq!(decode_key_segment(&s), None, "a shortened name stands for no id of its own");
        }
        // Ids that share the kept start differ by their hash.
        let (a, b) = (format!("{}a", "w".repeat(250)), format!("{}b", "w".repeat(250)));
        assert_ne!(key_segment(&a), key_segment(&b));
    }
}
