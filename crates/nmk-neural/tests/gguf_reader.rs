//! GGUF reader and writer: round trips, and hostile files that must give typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use nmk_neural::gguf::{
    Array, GgmlType, GgufContent, GgufError, GgufFile, GgufWriter, Limits, Value, ValueType,
};
use proptest::prelude::*;

/// A small valid file exercising every metadata type and a few tensor types.
fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama").unwrap();
    w.add("t.u8", 200u8).unwrap();
    w.add("t.i8", -5i8).unwrap();
    w.add("t.u16", 60000u16).unwrap();
    w.add("t.i16", -30000i16).unwrap();
    w.add("t.u32", 4_000_000_000u32).unwrap();
    w.add("t.i32", -2_000_000_000i32).unwrap();
    w.add("t.f32", 1.5f32).unwrap();
    w.add("t.bool", true).unwrap();
    w.add("t.u64", u64::MAX).unwrap();
    w.add("t.i64", i64::MIN).unwrap();
    w.add("t.f64", -0.25f64).unwrap();
    w.add("t.tokens", vec!["<s>", "a", "bé", ""]).unwrap();
    w.add("t.types", vec![1i32, 2, 3, -1]).unwrap();
    w.add("t.scores", vec![0.5f32, -1.0]).unwrap();
    w.add("t.bytes", vec![1u8, 2, 3]).unwrap();
    w.add("t.flags", vec![true, false]).unwrap();
    w.add(
        "t.nested",
        vec![Array::U32(vec![1, 2]), Array::String(vec!["x".into()])],
    )
    .unwrap();
    w.add_tensor_f32("a", &[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        .unwrap();
    w.add_tensor_f16("b", &[4], &[0.5, -2.0, 65504.0, 0.0])
        .unwrap();
    let q8: Vec<u8> = (0..2 * 34).map(|i| i as u8).collect();
    w.add_tensor_raw("c", &[64, 1], GgmlType::Q8_0, q8).unwrap();
    w.add_tensor_f32("d", &[1], &[7.0]).unwrap();
    w
}

fn sample_bytes() -> Vec<u8> {
    sample_writer().to_bytes().unwrap()
}

#[test]
fn round_trip_metadata_and_tensors() {
    let w = sample_writer();
    let bytes = w.to_bytes().unwrap();
    let f = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.content().alignment(), 32);
    assert_eq!(f.content().data_offset() % 32, 0);
    // Metadata comes back identical, in order.
    assert_eq!(f.metadata(), w.metadata());
    let m = f.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(m.get_u32("t.u8").unwrap(), 200);
    assert_eq!(m.get_i32("t.i8").unwrap(), -5);
    assert_eq!(m.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(m.get_u64("t.u64").unwrap(), u64::MAX);
    assert_eq!(m.get_i64("t.i64").unwrap(), i64::MIN);
    assert_eq!(m.get_f32("t.f32").unwrap(), 1.5);
    assert_eq!(m.get_f64("t.f64").unwrap(), -0.25);
    assert!(m.get_bool("t.bool").unwrap());
    assert_eq!(m.get_str_array("t.tokens").unwrap(), ["<s>", "a", "bé", ""]);
    assert_eq!(m.get_i32_array("t.types").unwrap(), vec![1, 2, 3, -1]);
    assert_eq!(m.get_u32_array("t.bytes").unwrap(), vec![1, 2, 3]);
    assert!(matches!(
        m.get_u32_array("t.types"),
        Err(GgufError::OutOfRange { .. })
    ));
    assert_eq!(m.get_f32_array("t.scores").unwrap(), [0.5, -1.0]);
    assert!(matches!(
        m.get_str("t.u32"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        m.get_u32("missing"),
        Err(GgufError::MissingKey { .. })
    ));

    let names: Vec<&str> = f.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    let a = f.tensor("a").unwrap();
    assert_eq!(a.dims(), [3, 2]);
    assert_eq!(a.n_elements(), 6);
    assert_eq!(a.n_bytes(), 24);
    assert_eq!(
        f.tensor_to_f32("a").unwrap(),
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
    assert_eq!(f.tensor_to_f32("b").unwrap(), [0.5, -2.0, 65504.0, 0.0]);
    let c = f.tensor("c").unwrap();
    assert_eq!(c.ggml_type(), GgmlType::Q8_0);
    assert_eq!(c.n_bytes(), 68);
    let c_data = f.tensor_data("c").unwrap();
    assert_eq!(c_data, (0..68).map(|i| i as u8).collect::<Vec<_>>());
    assert!(matches!(
        f.tensor_to_f32("c"),
        Err(GgufError::InvalidTensor { .. })
    ));
    for t in f.tensors() {
        assert_eq!(t.offset() % 32, 0);
        assert_eq!(
            t.data_range().start,
            f.content().data_offset() + t.offset() as usize
        );
    }
    assert!(matches!(
        f.tensor("zz"),
        Err(GgufError::TensorNotFound { .. })
    ));
}

#[test]
fn round_trip_through_mmap_with_custom_alignment() {
    let mut w = GgufWriter::with_alignment(64).unwrap();
    w.add("general.name", "x").unwrap();
    w.add_tensor_f32("a", &[5], &[1.0; 5]).unwrap();
    w.add_tensor_f32("b", &[3], &[2.0; 3]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let n = w.write_file(&path).unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), Some(path.as_path()));
    assert_eq!(f.content().alignment(), 64);
    assert_eq!(f.metadata().get_u32("general.alignment").unwrap(), 64);
    assert_eq!(f.tensor("b").unwrap().offset(), 64);
    assert_eq!(f.content().data_offset() % 64, 0);
    assert_eq!(f.tensor_to_f32("b").unwrap(), [2.0; 3]);
    // The mapped view and an in-memory parse agree.
    let g = GgufFile::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(f.content(), g.content());
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    assert!(matches!(
        w.add_tensor_f32("a", &[3], &[1.0, 2.0]),
        Err(GgufError::InvalidTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor_raw("q", &[33], GgmlType::Q4_0, vec![0; 18]),
        Err(GgufError::InvalidTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor_f32("a", &[], &[]),
        Err(GgufError::InvalidTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor_f32("a", &[1, 1, 1, 1, 1], &[1.0]),
        Err(GgufError::InvalidTensor { .. })
    ));
    w.add_tensor_f32("a", &[1], &[1.0]).unwrap();
    assert!(matches!(
        w.add_tensor_f32("a", &[1], &[1.0]),
        Err(GgufError::DuplicateTensor { .. })
    ));
    w.add("k", 1u32).unwrap();
    assert!(matches!(
        w.add("k", 2u32),
        Err(GgufError::DuplicateKey { .. })
    ));
    assert!(matches!(
        w.add("general.alignment", 64u32),
        Err(GgufError::InvalidValue { .. })
    ));
    assert!(matches!(
        w.add("s", "x".repeat((1 << 20) + 1)),
        Err(GgufError::InvalidValue { .. })
    ));
    let deep = Array::Array(vec![Array::Array(vec![Array::Array(vec![Array::Array(
        vec![Array::U8(vec![1])],
    )])])]);
    assert!(matches!(
        w.add("deep", deep),
        Err(GgufError::InvalidValue { .. })
    ));
    for a in [0, 3, 1 << 20] {
        assert!(matches!(
            GgufWriter::with_alignment(a),
            Err(GgufError::BadAlignment { .. })
        ));
    }
}

#[test]
fn every_truncated_prefix_is_a_clean_error() {
    let bytes = sample_bytes();
    assert!(GgufContent::parse(&bytes).is_ok());
    let mut kinds = std::collections::BTreeSet::new();
    for len in 0..bytes.len() {
        let err =
            GgufContent::parse(&bytes[..len]).expect_err(&format!("prefix of {len} bytes parsed"));
        kinds.insert(
            format!("{err:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    // Truncation is detected in the header/metadata, in the tensor infos and in the data.
    assert!(kinds.contains("Truncated"), "{kinds:?}");
    assert!(kinds.contains("TensorOutOfBounds"), "{kinds:?}");
}

// ---------------------------------------------------------------------------------------------
// Hand-built hostile files.

/// A raw GGUF byte builder that writes whatever it is told, however wrong.
#[derive(Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, x: u32) -> &mut Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn u64(&mut self, x: u64) -> &mut Raw {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn string(&mut self, s: &str) -> &mut Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Raw {
        self.string(key).u32(4).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Raw {
        self.string(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Raw {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn parse(&self) -> Result<GgufContent, GgufError> {
        GgufContent::parse(&self.0)
    }
}

/// Two F32 tensors of 4 elements (16 bytes) at the given offsets, with `data` bytes of data.
fn two_tensors(off_a: u64, off_b: u64, data: usize) -> Raw {
    let mut r = Raw::new(3, 2, 0);
    r.tensor("a", &[4], 0, off_a).tensor("b", &[4], 0, off_b);
    r.pad(32).zeros(data);
    r
}

#[test]
fn hand_built_valid_files_parse() {
    // v2 and v3 share a layout.
    for v in [2, 3] {
        let mut r = Raw::new(v, 1, 1);
        r.kv_u32("k", 9).tensor("a", &[4], 0, 0).pad(32).zeros(16);
        let c = r.parse().unwrap();
        assert_eq!(c.version(), v);
        assert_eq!(c.metadata().get_u32("k").unwrap(), 9);
    }
    two_tensors(0, 32, 48).parse().unwrap();
    // A file without tensors may end right after its metadata.
    let mut r = Raw::new(3, 0, 1);
    r.kv_u32("k", 1);
    assert_eq!(r.parse().unwrap().tensors().len(), 0);
}

#[test]
fn header_errors() {
    assert!(matches!(
        GgufContent::parse(b"GGML\x03\0\0\0"),
        Err(GgufError::BadMagic { .. })
    ));
    for v in [0, 1, 4, 0x0300_0000] {
        let mut r = Raw::new(v, 0, 0);
        r.zeros(64);
        assert!(
            matches!(r.parse(), Err(GgufError::UnsupportedVersion { version }) if version == v),
            "version {v}"
        );
    }
    for (t, k) in [
        (u64::MAX, 0),
        (0, u64::MAX),
        (1 << 40, 0),
        (0, 1 << 40),
        (100, 0),
    ] {
        let mut r = Raw::new(3, t, k);
        r.zeros(256);
        assert!(
            matches!(r.parse(), Err(GgufError::CountTooLarge { .. })),
            "counts {t} {k}: {:?}",
            r.parse()
        );
    }
}

#[test]
fn metadata_errors() {
    // Huge key and value string lengths.
    let mut r = Raw::new(3, 0, 1);
    r.u64(u64::MAX).zeros(64);
    assert!(matches!(r.parse(), Err(GgufError::StringTooLong { .. })));
    let mut r = Raw::new(3, 0, 1);
    r.string("k").u32(8).u64(1 << 40).zeros(64);
    assert!(matches!(r.parse(), Err(GgufError::StringTooLong { .. })));
    // A string length within the cap but past the end of the file.
    let mut r = Raw::new(3, 0, 1);
    r.string("k").u32(8).u64(1000).zeros(64);
    assert!(matches!(r.parse(), Err(GgufError::Truncated { .. })));
    // Unknown value type ids, top level and in an array.
    for ty in [13, 100, u32::MAX] {
        let mut r = Raw::new(3, 0, 1);
        r.string("k").u32(ty).zeros(16);
        assert!(matches!(
            r.parse(),
            Err(GgufError::UnknownValueType { type_id, .. }) if type_id == ty
        ));
        let mut r = Raw::new(3, 0, 1);
        r.string("k").u32(9).u32(ty).u64(1).zeros(16);
        assert!(matches!(r.parse(), Err(GgufError::UnknownValueType { .. })));
    }
    // Array counts larger than the file could hold.
    for count in [u64::MAX, 1 << 40, 17] {
        let mut r = Raw::new(3, 0, 1);
        r.string("k").u32(9).u32(4).u64(count).zeros(64);
        assert!(
            matches!(r.parse(), Err(GgufError::CountTooLarge { .. })),
            "count {count}"
        );
    }
    // Nesting too deep (5 > 4) and the deepest allowed (4).
    let nested = |depth: usize| {
        let mut r = Raw::new(3, 0, 1);
        r.string("k").u32(9);
        for _ in 1..depth {
            r.u32(9).u64(1);
        }
        r.u32(0).u64(1).bytes(&[7]);
        r
    };
    assert!(nested(4).parse().is_ok());
    assert!(matches!(
        nested(5).parse(),
        Err(GgufError::ArrayTooDeep { max: 4, .. })
    ));
    // Self-similar deep nesting far past the cap does not recurse without bound.
    let mut r = Raw::new(3, 0, 1);
    r.string("k").u32(9);
    for _ in 0..100_000 {
        r.u32(9).u64(1);
    }
    assert!(matches!(r.parse(), Err(GgufError::ArrayTooDeep { .. })));
    // Invalid bool, invalid UTF-8, duplicate key.
    let mut r = Raw::new(3, 0, 1);
    r.string("k").u32(7).bytes(&[2]);
    assert!(matches!(
        r.parse(),
        Err(GgufError::InvalidBool { value: 2, .. })
    ));
    let mut r = Raw::new(3, 0, 1);
    r.u64(2).bytes(&[0xff, 0xfe]).u32(0).bytes(&[0]);
    assert!(matches!(r.parse(), Err(GgufError::InvalidUtf8 { .. })));
    let mut r = Raw::new(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateKey { .. })));
}

#[test]
fn metadata_memory_cap_is_enforced() {
    let mut w = GgufWriter::new();
    w.add("tokens", vec!["abcdefgh"; 10_000]).unwrap();
    let bytes = w.to_bytes().unwrap();
    let small = Limits {
        max_metadata_bytes: 100_000,
        ..Limits::default()
    };
    assert!(matches!(
        GgufContent::parse_with_limits(&bytes, &small),
        Err(GgufError::MetadataTooLarge { .. })
    ));
    assert!(GgufContent::parse(&bytes).is_ok());
}

#[test]
fn alignment_errors() {
    for a in [0u32, 3, 48, 1 << 17, u32::MAX] {
        let mut r = Raw::new(3, 0, 1);
        r.kv_u32("general.alignment", a);
        assert!(
            matches!(r.parse(), Err(GgufError::BadAlignment { .. })),
            "alignment {a}"
        );
    }
    let mut r = Raw::new(3, 0, 1);
    r.string("general.alignment").u32(8).string("32");
    assert!(matches!(r.parse(), Err(GgufError::WrongType { .. })));
    // A u64 alignment is accepted (integer interchange); offsets follow it.
    let mut r = Raw::new(3, 1, 1);
    r.string("general.alignment").u32(10).u64(8);
    r.tensor("a", &[1], 0, 0).pad(8).zeros(4);
    let c = r.parse().unwrap();
    assert_eq!(c.alignment(), 8);
    assert_eq!(c.data_offset() % 8, 0);
}

#[test]
fn tensor_info_errors() {
    let one = |dims: &[u64], ty: u32| {
        let mut r = Raw::new(3, 1, 0);
        r.tensor("t", dims, ty, 0).pad(32).zeros(4096);
        r.parse()
    };
    assert!(one(&[4], 0).is_ok());
    assert!(matches!(
        one(&[], 0),
        Err(GgufError::BadDimensionCount { n_dims: 0, .. })
    ));
    assert!(matches!(
        one(&[1, 1, 1, 1, 1], 0),
        Err(GgufError::BadDimensionCount { n_dims: 5, .. })
    ));
    assert!(matches!(
        one(&[4, 0], 0),
        Err(GgufError::ZeroDimension { index: 1, .. })
    ));
    assert!(matches!(
        one(&[u64::MAX, 2], 0),
        Err(GgufError::SizeOverflow { .. })
    ));
    assert!(matches!(
        one(&[1 << 32, 1 << 32], 0),
        Err(GgufError::SizeOverflow { .. })
    ));
    assert!(matches!(
        one(&[1 << 62], 0),
        Err(GgufError::SizeOverflow { .. })
    ));
    for ty in [4, 5, 16, 29, 31, 1000, u32::MAX] {
        assert!(matches!(
            one(&[4], ty),
            Err(GgufError::UnknownTensorType { type_id, .. }) if type_id == ty
        ));
    }
    assert!(matches!(
        one(&[33], GgmlType::Q8_0.id()),
        Err(GgufError::RowNotBlockMultiple {
            row: 33,
            block: 32,
            ..
        })
    ));
    assert!(one(&[32, 2], GgmlType::Q8_0.id()).is_ok());
    // n_dims huge: rejected before reading dims.
    let mut r = Raw::new(3, 1, 0);
    r.string("t").u32(u32::MAX).zeros(64);
    assert!(matches!(
        r.parse(),
        Err(GgufError::BadDimensionCount { .. })
    ));
    // Tensor name too long.
    let mut r = Raw::new(3, 1, 0);
    r.u64(1 << 30).zeros(64);
    assert!(matches!(r.parse(), Err(GgufError::StringTooLong { .. })));
    // Duplicate tensor names.
    let mut r = Raw::new(3, 2, 0);
    r.tensor("a", &[4], 0, 0)
        .tensor("a", &[4], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(r.parse(), Err(GgufError::DuplicateTensor { .. })));
}

#[test]
fn tensor_offset_errors() {
    // Past EOF: data section ends 1 byte short.
    assert!(matches!(
        two_tensors(0, 32, 47).parse(),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    // Offset far past EOF and offsets that overflow when added.
    assert!(matches!(
        two_tensors(0, 1 << 40, 48).parse(),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    assert!(matches!(
        two_tensors(0, u64::MAX - 31, 48).parse(),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    // Misaligned.
    assert!(matches!(
        two_tensors(0, 16, 48).parse(),
        Err(GgufError::MisalignedTensor {
            offset: 16,
            alignment: 32,
            ..
        })
    ));
    // Overlapping: same offset, and one range inside another.
    assert!(matches!(
        two_tensors(0, 0, 48).parse(),
        Err(GgufError::OverlappingTensors { .. })
    ));
    let mut r = Raw::new(3, 2, 0);
    r.tensor("big", &[16], 0, 0)
        .tensor("small", &[4], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(
        r.parse(),
        Err(GgufError::OverlappingTensors { .. })
    ));
    // The same two ranges side by side are fine, in either order.
    two_tensors(32, 0, 48).parse().unwrap();
    // The data section itself starts past EOF.
    let mut r = Raw::new(3, 1, 0);
    r.tensor("a", &[4], 0, 0);
    assert!(matches!(
        r.parse(),
        Err(GgufError::DataSectionOutOfBounds { .. } | GgufError::TensorOutOfBounds { .. })
    ));
}

#[test]
fn value_type_ids_are_stable() {
    for id in 0..13 {
        assert_eq!(ValueType::from_id(id).unwrap().id(), id);
    }
    assert_eq!(ValueType::from_id(13), None);
    assert_eq!(Value::from("x").value_type(), ValueType::String);
}

#[test]
fn errors_render_what_and_where() {
    let mut r = Raw::new(3, 0, 1);
    r.string("k").u32(42).zeros(8);
    let e = r.parse().unwrap_err();
    assert_eq!(e.to_string(), "unknown metadata value type 42 at offset 33");
    let e = GgufContent::parse(&sample_bytes()[..10]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "truncated GGUF: tensor count at offset 8 needs 8 bytes, 2 left"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Random byte mutations and truncations of a valid file: the parser returns Ok or Err,
    /// never panics, and whatever it accepts has tensor data inside the buffer.
    #[test]
    fn mutated_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = sample_bytes();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        if let Ok(c) = GgufContent::parse(&bytes) {
            for t in c.tensors() {
                let data = c.tensor_data(&bytes, t).unwrap();
                prop_assert_eq!(data.len() as u64, t.n_bytes());
            }
        }
    }

    /// Mutations targeted at the header and tensor-info region, where counts and offsets live.
    #[test]
    fn mutated_headers_never_panic(
        edits in proptest::collection::vec((0usize..600, any::<u8>()), 1..6),
    ) {
        let mut bytes = sample_bytes();
        for (i, b) in edits {
            if let Some(x) = bytes.get_mut(i) {
                *x = b;
            }
        }
        let _ = GgufFile::from_bytes(bytes);
    }
}

#[test]
fn fuzz_seeds_are_valid_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/gguf_reader");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let f = GgufFile::open(&path).unwrap();
        assert!(!f.tensors().is_empty(), "{}", path.display());
        n += 1;
    }
    assert!(n >= 2, "expected fuzz seeds in {}", dir.display());
}
