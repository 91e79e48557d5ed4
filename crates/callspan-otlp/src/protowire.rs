//! The few protobuf wire-format primitives the OTLP encoder needs: varints, field keys,
//! fixed-width integers and length-delimited fields, appended to a `Vec<u8>`.
//!
//! Hand-written because the encoder writes OTLP messages straight from span records, without
//! building prost structs first (see `encode.rs`); prost is still used in tests to decode
//! what these produce.

/// Wire type of varint fields (int64, uint32, enum, bool).
pub const VARINT: u32 = 0;
/// Wire type of 8-byte little-endian fields (fixed64, double).
pub const FIXED64: u32 = 1;
/// Wire type of length-delimited fields (string, bytes, embedded message).
pub const LEN: u32 = 2;
/// Wire type of 4-byte little-endian fields (fixed32).
pub const FIXED32: u32 = 5;

/// Bytes `value` takes as a varint.
#[inline]
pub fn varint_len(value: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `value` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key of field `number` with wire type `wire`.
#[inline]
pub fn put_key(out: &mut Vec<u8>, number: u32, wire: u32) {
    put_varint(out, u64::from(number << 3 | wire));
}

/// Appends a length-delimited field holding `bytes` (a string, bytes, or an encoded message).
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends the key and length of a length-delimited field whose `len` bytes follow.
#[inline]
pub fn put_len_prefix(out: &mut Vec<u8>, number: u32, len: usize) {
    put_key(out, number, LEN);
    put_varint(out, len as u64);
}

/// Appends a varint field (int64 values are written as their two's-complement u64).
#[inline]
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, VARINT);
    put_varint(out, value);
}

/// Appends a fixed64 field.
#[inline]
pub fn put_fixed64(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends a fixed32 field.
#[inline]
pub fn put_fixed32(out: &mut Vec<u8>, number: u32, value: u32) {
    put_key(out, number, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Bytes a length-delimited field of `len` payload bytes takes, key included.
#[inline]
pub fn field_len(number: u32, len: usize) -> usize {
    varint_len(u64::from(number << 3)) + varint_len(len as u64) + len
}

/// Reads a varint at the start of `bytes`: its value and length. `None` if `bytes` ends first.
#[inline]
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Bytes the first `n` fields of `bytes` take, where `bytes` is a run of length-delimited
/// fields this module wrote (the encoder cuts attribute fragments to a count limit with it).
/// Stops at the end of `bytes` if it holds fewer than `n`.
pub fn first_fields_len(bytes: &[u8], n: usize) -> usize {
    let mut at = 0;
    for _ in 0..n {
        let Some((_key, key_len)) = read_varint(&bytes[at..]) else {
            break;
        };
        let Some((len, len_len)) = read_varint(&bytes[at + key_len..]) else {
            break;
        };
        at = (at + key_len + len_len + len as usize).min(bytes.len());
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_protobufs_encoding() {
        for (value, bytes) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len(), "{value}");
        }
    }

    #[test]
    fn fields_decode_with_prost() {
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct Sample {
            #[prost(string, tag = "1")]
            text: String,
            #[prost(int64, tag = "2")]
            number: i64,
            #[prost(fixed64, tag = "7")]
            time: u64,
            #[prost(fixed32, tag = "16")]
            flags: u32,
        }
        let mut out = Vec::new();
        put_bytes(&mut out, 1, "héllo".as_bytes());
        put_varint_field(&mut out, 2, (-5i64) as u64);
        put_fixed64(&mut out, 7, 1_700_000_000_123_456_789);
        put_fixed32(&mut out, 16, 0x301);
        let decoded = Sample::decode(out.as_slice()).unwrap();
        assert_eq!(
            decoded,
            Sample {
                text: "héllo".into(),
                number: -5,
                time: 1_700_000_000_123_456_789,
                flags: 0x301,
            }
        );
        assert_eq!(decoded.encoded_len(), out.len());
        assert_eq!(field_len(1, 6), 8);
    }

    #[test]
    fn the_first_fields_of_a_run_are_found_by_their_lengths() {
        let mut run = Vec::new();
        put_bytes(&mut run, 9, b"ab");
        let first = run.len();
        put_bytes(&mut run, 9, &[7u8; 200]); // a two-byte length
        let second = run.len();
        put_bytes(&mut run, 9, b"");
        assert_eq!(first_fields_len(&run, 0), 0);
        assert_eq!(first_fields_len(&run, 1), first);
        assert_eq!(first_fields_len(&run, 2), second);
        assert_eq!(first_fields_len(&run, 3), run.len());
        assert_eq!(first_fields_len(&run, 9), run.len());
    }
}
