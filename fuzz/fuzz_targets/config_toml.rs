//! Arbitrary text as a configuration file: it is accepted or refused with a located error
//! (line and column inside the text), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = dictmon::config::parse(text, "fuzz.toml") {
        assert!(e.line >= 1 && e.column >= 1, "{e}");
        assert!(e.line <= text.lines().count().max(1) + 1, "{e}");
    }
});
