//! Parser, validation, every accessor, stream framing and the serializer on arbitrary bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::exercise(data);
});
