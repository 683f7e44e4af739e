//! Truncated, corrupt and hostile `.kst` files: every one is refused with an error naming the
//! file and the problem, never a panic.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use kestrel_format::{load_bytes, load_file, to_bytes, FormatError, WriteOptions, HEADER_LEN};
use kestrel_graph::Graph;

const NAME: &str = "hostile.kst";

fn valid(graph: &Graph) -> Vec<u8> {
    to_bytes(graph, WriteOptions::default()).unwrap()
}

/// Loads `bytes`, proving the loader does not panic.
fn load(bytes: &[u8]) -> Result<Graph, FormatError> {
    catch_unwind(AssertUnwindSafe(|| load_bytes(bytes, NAME)))
        .unwrap_or_else(|_| panic!("the loader panicked on {} bytes", bytes.len()))
}

/// Asserts `bytes` are refused with a message naming the file and containing `needle`.
fn refused(bytes: &[u8], needle: &str) -> String {
    let err = match load(bytes) {
        Ok(_) => panic!("a hostile file loaded (expected an error about {needle:?})"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with(NAME), "{err}");
    assert!(err.contains(needle), "{err:?} does not mention {needle:?}");
    err
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Fixes the length and checksum after an edit, so the structural checks are what is tested.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len() as u64;
    put_u64(bytes, 16, len);
    let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
}

/// Offset in the file of the first byte after the length-prefixed string `name`.
fn after_name(bytes: &[u8], name: &str) -> usize {
    let mut needle = (name.len() as u32).to_le_bytes().to_vec();
    needle.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("'{name}' is in the description"));
    at + needle.len()
}

#[test]
fn empty_magic_and_version_are_named() {
    refused(&[], "empty");
    refused(b"KST", "truncated");
    refused(b"PK\x03\x04 not a graph at all, but long enough", "magic");
    let mut bytes = valid(&common::cam_net());
    bytes[..4].copy_from_slice(b"\x08\x01\x12\x00");
    refused(&bytes, "magic");
    let mut newer = valid(&common::cam_net());
    let next = kestrel_format::VERSION + 1;
    newer[8..12].copy_from_slice(&next.to_le_bytes());
    let err = refused(&newer, &format!("version {next}"));
    assert!(err.contains("newer"), "{err}");
    let mut older = valid(&common::cam_net());
    older[8..12].copy_from_slice(&0u32.to_le_bytes());
    let err = refused(&older, "older");
    assert!(err.contains("kestrel compile"), "{err}");
}

#[test]
fn missing_files_are_named() {
    let err = load_file("no/such/model.kst".as_ref())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such/model.kst"), "{err}");
    let dir = std::env::temp_dir().join(format!("kestrel-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty.kst");
    std::fs::write(&empty, b"").unwrap();
    let err = load_file(&empty).unwrap_err().to_string();
    assert!(err.contains("empty.kst") && err.contains("empty"), "{err}");
}

#[test]
fn every_truncation_is_refused() {
    let bytes = valid(&common::every_op());
    for len in 0..bytes.len() {
        let err = load(&bytes[..len]);
        assert!(err.is_err(), "truncated to {len} bytes, it loaded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    refused(&longer, "the header says");
}

#[test]
fn every_flipped_byte_is_caught() {
    let bytes = valid(&common::every_op());
    for at in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[at] ^= mask;
            assert!(
                load(&bad).is_err(),
                "flipping byte {at} with {mask:#x} went unnoticed"
            );
        }
    }
}

#[test]
fn resealed_edits_of_the_description_never_panic() {
    // With the checksum recomputed, every edit of the graph description reaches the
    // structural checks; some edits (a letter of a name) still give a valid graph.
    let bytes = valid(&common::every_op());
    let end = HEADER_LEN + u64_at(&bytes, 40) as usize;
    let mut refused_count = 0;
    for at in HEADER_LEN..end {
        for value in [0x00, 0x01, 0x07, 0x40, 0x80, 0xff] {
            let mut bad = bytes.clone();
            if bad[at] == value {
                continue;
            }
            bad[at] = value;
            reseal(&mut bad);
            if let Err(e) = load(&bad) {
                assert!(e.to_string().starts_with(NAME), "{e}");
                refused_count += 1;
            }
        }
    }
    assert!(refused_count > 0);
}

#[test]
fn header_sections_must_lie_in_the_file() {
    let bytes = valid(&common::cam_net());
    let len = bytes.len() as u64;
    for (field, value, needle) in [
        (40, len, "graph description"),
        (40, u64::MAX, "outside the file"),
        (32, 0, "graph description"),
        (48, len + 64, "weights section"),
        (56, u64::MAX - 10, "outside the file"),
    ] {
        let mut bad = bytes.clone();
        put_u64(&mut bad, field, value);
        reseal(&mut bad);
        refused(&bad, needle);
    }
    let mut misaligned = bytes.clone();
    put_u64(&mut misaligned, 48, u64_at(&bytes, 48) + 4);
    put_u64(&mut misaligned, 56, u64_at(&bytes, 56) - 4);
    reseal(&mut misaligned);
    refused(&misaligned, "aligned");
    let mut flags = bytes.clone();
    flags[12] = 0x02;
    reseal(&mut flags);
    refused(&flags, "unknown flags");
    let mut f16 = bytes.clone();
    f16[12] = 0x01;
    reseal(&mut f16);
    refused(&f16, "dtype");
    let mut reserved = bytes;
    reserved[30] = 1;
    reseal(&mut reserved);
    refused(&reserved, "reserved");
}

#[test]
fn hostile_blobs_are_refused() {
    let bytes = valid(&common::cam_net());
    // conv.w: shape [6, 3, 3, 3], then kind 1, dtype, offset, count.
    let shape_at = after_name(&bytes, "conv.w") + 4;
    let offset_at = shape_at + 4 * 8 + 2;
    let count_at = offset_at + 8;
    let offset = u64_at(&bytes, offset_at);
    let len = bytes.len() as u64;
    for (at, value, needle) in [
        (offset_at, len, "outside the weights section"),
        (offset_at, u64::MAX - 3, "outside the weights section"),
        (offset_at, 0, "outside the weights section"),
        (offset_at, offset + 4, "aligned"),
        (count_at, 163, "elements"),
        (count_at, u64::MAX, "elements"),
    ] {
        let mut bad = bytes.clone();
        put_u64(&mut bad, at, value);
        reseal(&mut bad);
        refused(&bad, needle);
    }
    // A shape of 2^40 elements with a matching count: no allocation, just an error.
    let mut huge = bytes.clone();
    put_u64(&mut huge, shape_at, 1 << 40);
    put_u64(&mut huge, count_at, 27 << 40);
    reseal(&mut huge);
    refused(&huge, "outside the weights section");
    // A shape whose element count overflows.
    let mut overflow = bytes.clone();
    put_u64(&mut overflow, shape_at, 1 << 62);
    put_u64(&mut overflow, shape_at + 8, 1 << 62);
    reseal(&mut overflow);
    refused(&overflow, "overflows");
    // A rank no description could hold.
    let mut rank = bytes;
    rank[shape_at - 4..shape_at].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut rank);
    refused(&rank, "cannot fit");
}

#[test]
fn hostile_references_are_refused() {
    let bytes = valid(&common::cam_net());
    let graph = common::cam_net();
    // The "gap" node: tag-only operator, one input (feat), then its output (pooled).
    let inputs_at = after_name(&bytes, "gap") + 1;
    let first_input = inputs_at + 4;
    let output_at = first_input + 8;
    let logits = graph.find_value("logits").unwrap().0 as u64;
    for (at, value, needle) in [
        (first_input, 1000, "not yet defined"),
        (first_input, u64::MAX, "not yet defined"),
        // A forward reference, closing a cycle: gap reads the logits that depend on it.
        (first_input, logits, "not yet defined"),
        (output_at, 1000, "inconsistent output"),
        (output_at, logits, "inconsistent output"),
    ] {
        let mut bad = bytes.clone();
        put_u64(&mut bad, at, value);
        reseal(&mut bad);
        refused(&bad, needle);
    }
    // Too many inputs for the operator: shape inference names it.
    let mut arity = bytes.clone();
    arity[inputs_at..inputs_at + 4].copy_from_slice(&0u32.to_le_bytes());
    reseal(&mut arity);
    assert!(load(&arity).is_err());
    // A value claiming a node that does not exist.
    let pooled_kind = after_name(&bytes, "pooled") + 4 + 4 * 8;
    let mut claim = bytes.clone();
    put_u64(&mut claim, pooled_kind + 1, 99);
    reseal(&mut claim);
    assert!(load(&claim).is_err());
    // The graph output out of range: the last 8 bytes of the description.
    let end = HEADER_LEN + u64_at(&bytes, 40) as usize;
    let mut output = bytes.clone();
    put_u64(&mut output, end - 8, 1 << 40);
    reseal(&mut output);
    refused(&output, "undefined");
    // Absurd counts are refused before anything is allocated.
    let mut values = bytes;
    values[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut values);
    refused(&values, "cannot fit");
}

#[test]
fn shapes_must_agree_with_shape_inference() {
    let bytes = valid(&common::cam_net());
    // feat is [1, 6, 8, 8]; claim [1, 6, 8, 9].
    let shape_at = after_name(&bytes, "feat") + 4;
    let mut bad = bytes;
    put_u64(&mut bad, shape_at + 24, 9);
    reseal(&mut bad);
    refused(&bad, "shape inference");
}
