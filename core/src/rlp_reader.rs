//! A strict RLP reader for bytes from peers: canonical lengths only, no single byte
//! behind a string header, no bytes after an item, no cut-off item inside a list. (The
//! `rlp` crate is used for encoding; its decoder tolerates some of these.)

/// Why bytes are not canonical RLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RlpError {
    /// No bytes where an item was expected.
    #[error("empty input")]
    Empty,
    /// A length runs past the end of the input.
    #[error("truncated item")]
    Truncated,
    /// Bytes follow the top-level item.
    #[error("trailing bytes after the item")]
    Trailing,
    /// A length in a longer form than needed, or with leading zeros.
    #[error("non-canonical length")]
    NonCanonicalLength,
    /// A single byte below 0x80 written with a string header.
    #[error("single byte written as a string")]
    SingleByteIndirection,
    /// A list where a string was expected, or the other way round.
    #[error("expected {0}")]
    Expected(&'static str),
    /// An integer with leading zeros or wider than its type.
    #[error("non-canonical or oversized integer")]
    Integer,
}

/// One item: a byte string or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// True for a list.
    pub is_list: bool,
    /// A string's bytes, or a list's concatenated items.
    pub payload: &'a [u8],
    /// The whole encoding, header included.
    pub raw: &'a [u8],
}

impl<'a> Item<'a> {
    /// Reads exactly one item spanning all of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Item<'a>, RlpError> {
        let (item, rest) = read(bytes)?;
        if !rest.is_empty() {
            return Err(RlpError::Trailing);
        }
        Ok(item)
    }

    /// A list's items, each fully read.
    pub fn items(&self) -> Result<Vec<Item<'a>>, RlpError> {
        if !self.is_list {
            return Err(RlpError::Expected("a list"));
        }
        let mut out = Vec::new();
        let mut rest = self.payload;
        while !rest.is_empty() {
            let (item, tail) = read(rest)?;
            out.push(item);
            rest = tail;
        }
        Ok(out)
    }

    /// A string's bytes.
    pub fn bytes(&self) -> Result<&'a [u8], RlpError> {
        if self.is_list {
            return Err(RlpError::Expected("a string"));
        }
        Ok(self.payload)
    }

    /// A canonical unsigned integer of at most 8 bytes.
    pub fn u64(&self) -> Result<u64, RlpError> {
        let b = self.bytes()?;
        if b.len() > 8 || b.first() == Some(&0) {
            return Err(RlpError::Integer);
        }
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
}

/// Reads the first item of `buf`; returns it and the bytes after it.
pub fn read(buf: &[u8]) -> Result<(Item<'_>, &[u8]), RlpError> {
    let &first = buf.first().ok_or(RlpError::Empty)?;
    let (is_list, header, len) = match first {
        0x00..=0x7f => {
            let item = Item {
                is_list: false,
                payload: &buf[..1],
                raw: &buf[..1],
            };
            return Ok((item, &buf[1..]));
        }
        0x80..=0xb7 => (false, 1, usize::from(first - 0x80)),
        0xb8..=0xbf => {
            let n = usize::from(first - 0xb7);
            (false, 1 + n, long_length(&buf[1..], n)?)
        }
        0xc0..=0xf7 => (true, 1, usize::from(first - 0xc0)),
        0xf8..=0xff => {
            let n = usize::from(first - 0xf7);
            (true, 1 + n, long_length(&buf[1..], n)?)
        }
    };
    let end = header.checked_add(len).ok_or(RlpError::Truncated)?;
    if end > buf.len() {
        return Err(RlpError::Truncated);
    }
    let payload = &buf[header..end];
    if !is_list && header == 1 && len == 1 && payload[0] < 0x80 {
        return Err(RlpError::SingleByteIndirection);
    }
    Ok((
        Item {
            is_list,
            payload,
            raw: &buf[..end],
        },
        &buf[end..],
    ))
}

/// The big-endian length of `n` bytes after a long-form header: no leading zero, at least 56.
fn long_length(buf: &[u8], n: usize) -> Result<usize, RlpError> {
    let bytes = buf.get(..n).ok_or(RlpError::Truncated)?;
    if bytes[0] == 0 || n > std::mem::size_of::<usize>() {
        return Err(RlpError::NonCanonicalLength);
    }
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if len < 56 {
        return Err(RlpError::NonCanonicalLength);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm the same tests run on wasm-bindgen-test (`wasm-pack test --node core`).
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_canonical_and_refuses_each_flaw() {
        assert_eq!(Item::parse(&[0x05]).unwrap().payload, &[0x05]);
        assert_eq!(Item::parse(&[0x81, 0x80]).unwrap().payload, &[0x80]);
        let long = [&[0xb8, 56][..], &[7u8; 56][..]].concat();
        assert_eq!(Item::parse(&long).unwrap().payload.len(), 56);
        assert_eq!(
            Item::parse(&[0x81, 0x05]),
            Err(RlpError::SingleByteIndirection)
        );
        assert_eq!(
            Item::parse(&[0xb8, 0x01, 0x01]),
            Err(RlpError::NonCanonicalLength)
        );
        assert_eq!(
            Item::parse(&[0xb9, 0x00, 0x40]),
            Err(RlpError::NonCanonicalLength)
        );
        assert_eq!(
            Item::parse(&[0xc2, 0x20, 0x01, 0xff]),
            Err(RlpError::Trailing)
        );
        assert_eq!(Item::parse(&[0x83]), Err(RlpError::Truncated));
        assert_eq!(Item::parse(&[]), Err(RlpError::Empty));
        // A cut-off string inside a list is an error, not a shorter list.
        assert_eq!(
            Item::parse(&[0xc3, 0x20, 0x01, 0x81]).unwrap().items(),
            Err(RlpError::Truncated)
        );
        assert_eq!(
            Item::parse(&[0xc1, 0x80]).unwrap().items().unwrap()[0].u64(),
            Ok(0)
        );
        assert_eq!(
            Item::parse(&[0x82, 0x00, 0x01]).unwrap().u64(),
            Err(RlpError::Integer)
        );
    }
}
