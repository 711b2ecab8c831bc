//! Arbitrary bytes as a catalog file (`catalog.redb`), opened read-only as `status`, `query`
//! and `export` open it, and every table read: a damaged catalog must be an error, never a
//! panic.
#![no_main]

use dictmon::store::catalog::CatalogReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
