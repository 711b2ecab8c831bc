//! Arbitrary bytes as a signed DICT answer: the profile check and the XML-DSig verification
//! against the fixture certificate must refuse nonsense with a reason and never panic; an
//! answer that verifies must also parse as what it claims to be.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use dictmon::source::dict_signature::SignatureVerifier;
use libfuzzer_sys::fuzz_target;

static VERIFIER: OnceLock<SignatureVerifier> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let verifier = VERIFIER.get_or_init(|| {
        SignatureVerifier::from_pem(
            include_bytes!("../../tests/fixtures/dict/dict-signing.pem"),
            Path::new("dict-signing.pem"),
        )
        .expect("the fixture certificate")
    });
    if verifier.verify(data).is_ok() {
        let parsed = dictmon::source::dict_xml::parse_get(data).is_ok()
            || dictmon::source::dict_xml::parse_list(data).is_ok()
            || dictmon::source::dict_xml::parse_problem(data).is_ok();
        assert!(parsed, "a verified answer that is no DICT answer");
    }
});
