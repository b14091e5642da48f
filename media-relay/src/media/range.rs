//! HTTP `Range` requests (RFC 9110 §14) over media of a known size: one byte range per request.

use std::ops::Range;

/// What a `Range` header asks of a body of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranged {
    /// The whole body (no header, or one this server does not honour, such as several ranges).
    Full,
    /// These bytes (`206 Partial Content`).
    Part(Range<u64>),
    /// Nothing in the body matches (`416 Range Not Satisfiable`).
    Unsatisfiable,
}

/// Resolves a `Range` header value against a body of `size` bytes.
pub fn resolve(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.map(str::trim).and_then(|h| {
        h.get(..6).filter(|unit| unit.eq_ignore_ascii_case("bytes=")).map(|_| &h[6..])
    }) else {
        return Ranged::Full;
    };
    if spec.contains(',') {
        return Ranged::Full; // multipart/byteranges is optional; the whole body is a valid answer
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ranged::Full };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    match (first.is_empty(), number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(suffix)) if suffix > 0 && size > 0 => {
            Ranged::Part(size.saturating_sub(suffix)..size)
        }
        (true, _, Some(_)) => Ranged::Unsatisfiable, // bytes=-0, or an empty body
        (true, _, None) => Ranged::Full,             // malformed: ignored
        (false, Some(start), _) if start >= size => Ranged::Unsatisfiable,
        (false, Some(start), None) if last.is_empty() => Ranged::Part(start..size),
        (false, Some(start), Some(end)) if end >= start => {
            Ranged::Part(start..end.min(size - 1) + 1)
        }
        _ => Ranged::Full, // malformed: ignored, as RFC 9110 allows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc_9110() {
        assert_eq!(resolve(None, 10), Ranged::Full);
        assert_eq!(resolve(Some("bytes=0-3"), 10), Ranged::Part(0..4));
        assert_eq!(resolve(Some("bytes=5-"), 10), Ranged::Part(5..10));
        assert_eq!(resolve(Some("bytes=-3"), 10), Ranged::Part(7..10));
        assert_eq!(resolve(Some("bytes=-30"), 10), Ranged::Part(0..10));
        assert_eq!(resolve(Some("bytes=8-100"), 10), Ranged::Part(8..10));
        assert_eq!(resolve(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
        assert_eq!(resolve(Some("bytes=4-2"), 10), Ranged::Full);
        assert_eq!(resolve(Some("bytes=0-1,4-5"), 10), Ranged::Full);
        assert_eq!(resolve(Some("items=0-1"), 10), Ranged::Full);
        assert_eq!(resolve(Some("bytes=a-b"), 10), Ranged::Full);
        assert_eq!(resolve(Some("bytes=-"), 10), Ranged::Full);
        assert_eq!(resolve(Some("bytes=--1"), 10), Ranged::Full);
        assert_eq!(resolve(Some("Bytes=0-1"), 10), Ranged::Part(0..2));
        assert_eq!(resolve(Some("bytés=0-1"), 10), Ranged::Full);
    }
}
