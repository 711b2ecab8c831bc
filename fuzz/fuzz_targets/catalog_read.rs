//! Arbitrary bytes as a catalog file (`catalog.redb`), opened read-only as `status`, `query`
//! and `export` open it, and every table read: a damaged catalog must be an error, never a
//! crash. redb panics on some damaged files; `CatalogReader` catches those panics
//! (`CatalogError::Damaged`), so this target replaces libFuzzer's abort-on-panic hook with a
//! silent one: a panic that escapes the reader still fails the run, through the harness's own
//! check.
#![no_main]

use std::sync::Once;

use dictmon::store::catalog::CatalogReader;
use libfuzzer_sys::fuzz_target;

static QUIET: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("catalog.redb");
    std::fs::write(&path, data).expect("temp file");
    if let Ok(catalog) = CatalogReader::open(&path) {
        let _ = catalog.alerts();
        let _ = catalog.policies();
        let _ = catalog.outbox();
        let _ = catalog.sinks();
    }
});
