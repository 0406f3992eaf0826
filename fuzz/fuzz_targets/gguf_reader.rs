//! Fuzz target: arbitrary bytes into the GGUF slice parser. It must return Ok or a typed error,
//! never panic, abort or allocate without bound; whatever it accepts must be self-consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nmk_neural::gguf::{GgufContent, GgufFile};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = GgufContent::parse(data) else {
        return;
    };
    assert!(content.data_offset() <= data.len());
    for t in content.tensors() {
        let bytes = content.tensor_data(data, t).expect("accepted tensor lies inside the file");
        assert_eq!(bytes.len() as u64, t.n_bytes());
        assert_eq!(t.offset() % content.alignment(), 0);
    }
    let m = content.metadata();
    for (key, _) in m.entries() {
        let _ = m.get_u32(key);
        let _ = m.get_f32(key);
        let _ = m.get_str(key);
        let _ = m.get_str_array(key);
        let _ = m.get_i32_array(key);
    }
    // The owned-buffer API must agree with the slice parser.
    let file = GgufFile::from_bytes(data.to_vec()).expect("same bytes parse again");
    for t in file.tensors() {
        let _ = file.tensor_to_f32(t.name());
    }
});
