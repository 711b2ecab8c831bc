//! DICT's XML bodies: every fixture of the spec, and hand-made variants.

use std::path::Path;

use chrono::DateTime;
use dictmon::domain::{PspCategory, RejectReason};
use dictmon::source::dict_xml::{XmlError, parse_get, parse_list, parse_problem};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/dict")
            .join(name),
    )
    .expect("fixture")
}

#[test]
fn the_spec_examples_parse() {
    let list = parse_list(&fixture("ListPoliciesResponse.xml")).expect("list");
    assert_eq!(
        list.response_time,
        DateTime::parse_from_rfc3339("2022-09-02T13:19:25.833Z").expect("time")
    );
    assert_eq!(list.category, "A");
    assert_eq!(list.correlation_id, "B20220902101925801123456781A6998");
    assert_eq!(list.policies.len(), 1);
    assert_eq!(list.policies[0].name, "ENTRIES_READ_PARTICIPANT_ANTISCAN");
    assert_eq!(
        list.policies[0].capacity, 0,
        "the spec's example has all numbers 0"
    );
    let get = parse_get(&fixture("GetPolicyResponse.xml")).expect("get");
    assert_eq!(get.policies.len(), 1);
    assert_eq!(get.correlation_id, "B20220902102129115123456788B2B22");
}

#[test]
fn every_problem_example_parses() {
    for (file, status, kind) in [
        ("RateLimitedProblem-v1.xml", 429, "RateLimited"),
        ("RateLimitedProblem-v2.xml", 429, "RateLimited"),
        ("ForbiddenProblem-v2.xml", 403, "Forbidden"),
        (
            "ServiceUnavailableProblem-v2.xml",
            503,
            "ServiceUnavailable",
        ),
        // Published with type …/BadRequest although it is a 410: kept as DICT sends it.
        ("GoneProblem-v2.xml", 410, "BadRequest"),
    ] {
        let p = parse_problem(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.status, Some(status), "{file}");
        assert_eq!(p.short_type(), kind, "{file}");
        assert!(!p.title.is_empty(), "{file}");
    }
}

const VARIANT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ns2:ListPoliciesResponse xmlns:ns2="urn:example" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
  <ns2:Policies>
    <ns2:Policy>
      <ns2:Name>ENTRIES_READ_USER_ANTISCAN</ns2:Name>
      <ns2:Capacity>100</ns2:Capacity>
      <ns2:AvailableTokens>-15</ns2:AvailableTokens>
      <ns2:Unexpected><Deep>1</Deep></ns2:Unexpected>
      <ns2:RefillPeriodSec>60</ns2:RefillPeriodSec>
      <ns2:RefillTokens>2</ns2:RefillTokens>
    </ns2:Policy>
    <ns2:Policy>
      <ns2:RefillTokens>25</ns2:RefillTokens>
      <ns2:RefillPeriodSec>60</ns2:RefillPeriodSec>
      <ns2:Name>ENTRIES_READ_PARTICIPANT_ANTISCAN</ns2:Name>
      <ns2:AvailableTokens>250</ns2:AvailableTokens>
      <ns2:Capacity>250</ns2:Capacity>
    </ns2:Policy>
  </ns2:Policies>
  <ns2:Category> G </ns2:Category>
  <ds:Signature><ds:SignedInfo><ds:Reference URI=""><ds:DigestValue>abc=</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>xyz=</ds:SignatureValue></ds:Signature>
  <ns2:ResponseTime>2026-11-23T14:00:00.123Z</ns2:ResponseTime>
  <ns2:Extra>ignored</ns2:Extra>
</ns2:ListPoliciesResponse>"#;

#[test]
fn order_namespaces_extra_elements_and_a_signature_are_tolerated() {
    let list = parse_list(VARIANT.as_bytes()).expect("variant");
    assert_eq!(list.category, "G");
    assert_eq!(PspCategory::parse(&list.category), Ok(PspCategory::G));
    assert_eq!(list.correlation_id, "", "absent: empty");
    let names: Vec<_> = list.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ENTRIES_READ_USER_ANTISCAN",
            "ENTRIES_READ_PARTICIPANT_ANTISCAN"
        ]
    );
    // A penalty below zero is data, not an error.
    assert_eq!(list.policies[0].available_tokens, -15);
    assert_eq!(
        (
            list.policies[1].refill_tokens,
            list.policies[1].refill_period_secs
        ),
        (25, 60)
    );
}

#[test]
fn category_h_and_an_unknown_letter_reach_the_validator_as_sent() {
    let h = VARIANT.replace("> G <", ">H<");
    assert_eq!(parse_list(h.as_bytes()).expect("H").category, "H");
    let z = VARIANT.replace("> G <", ">Z<");
    assert_eq!(
        PspCategory::parse(&parse_list(z.as_bytes()).expect("Z").category),
        Ok(PspCategory::Unknown('Z'))
    );
    let bad = VARIANT.replace("> G <", ">GH<");
    assert_eq!(
        PspCategory::parse(&parse_list(bad.as_bytes()).expect("GH").category),
        Err(RejectReason::MalformedCategory)
    );
}

#[test]
fn a_missing_required_element_is_named() {
    let no_time = VARIANT.replace(
        "<ns2:ResponseTime>2026-11-23T14:00:00.123Z</ns2:ResponseTime>",
        "",
    );
    assert_eq!(
        parse_list(no_time.as_bytes()),
        Err(XmlError::Missing {
            element: "ResponseTime",
            within: None
        })
    );
    let no_capacity = VARIANT.replace("<ns2:Capacity>100</ns2:Capacity>", "");
    let e = parse_list(no_capacity.as_bytes()).expect_err("missing capacity");
    assert_eq!(
        e,
        XmlError::Missing {
            element: "Capacity",
            within: Some("Policy")
        }
    );
    assert_eq!(e.to_string(), "<Capacity> is missing in <Policy>");
    let no_category = VARIANT.replace("<ns2:Category> G </ns2:Category>", "");
    assert_eq!(
        parse_list(no_category.as_bytes()),
        Err(XmlError::Missing {
            element: "Category",
            within: None
        })
    );
}

#[test]
fn bad_values_and_bad_documents_are_errors_not_panics() {
    let bad_number = VARIANT.replace(
        "<ns2:Capacity>250</ns2:Capacity>",
        "<ns2:Capacity>lots</ns2:Capacity>",
    );
    assert!(matches!(
        parse_list(bad_number.as_bytes()),
        Err(XmlError::BadValue {
            element: "Capacity",
            ..
        })
    ));
    let bad_time = VARIANT.replace("2026-11-23T14:00:00.123Z", "yesterday");
    assert!(matches!(
        parse_list(bad_time.as_bytes()),
        Err(XmlError::BadValue {
            element: "ResponseTime",
            ..
        })
    ));
    assert!(matches!(
        parse_list(b"<ListPoliciesResponse><Category>A</Category"),
        Err(XmlError::Syntax { .. })
    ));
    assert!(matches!(parse_list(b""), Err(XmlError::Syntax { .. })));
    assert!(matches!(
        parse_list(&fixture("GetPolicyResponse.xml")),
        Err(XmlError::WrongRoot { .. })
    ));
    assert!(matches!(
        parse_get(&fixture("ListPoliciesResponse.xml")),
        Err(XmlError::WrongRoot { .. })
    ));
}

#[test]
fn problem_details_unescape_entities() {
    let p = parse_problem(br#"<problem xmlns="urn:ietf:rfc:7807"><type>https://dict.pi.rsfn.net.br/api/v2/error/ServiceUnavailable</type><title>Service Unavailable</title><status>503</status><detail>try again &amp; wait &#233;</detail><correlationId>abc</correlationId></problem>"#).expect("problem");
    assert_eq!(p.detail, "try again & wait é");
    assert_eq!(p.correlation_id, "abc");
}

mod hostile {
    use proptest::prelude::*;

    use super::{VARIANT, parse_get, parse_list, parse_problem};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The fuzz target's in-suite twin: random bytes, and a real body mutated.
        #[test]
        fn hostile_bodies_never_panic(
            random in prop::collection::vec(any::<u8>(), 0..512),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        ) {
            let _ = (parse_list(&random), parse_get(&random), parse_problem(&random));
            let mut body = VARIANT.as_bytes().to_vec();
            for (at, byte) in edits {
                let i = at.index(body.len());
                body[i] = byte;
            }
            let _ = (parse_list(&body), parse_get(&body), parse_problem(&body));
        }
    }
}

mod round_trip {
    use chrono::DateTime;
    use dictmon::source::dict_xml::{
        parse_get, parse_list, parse_problem, write_get, write_list, write_problem,
    };
    use dictmon::source::{PolicyList, RawPolicy};
    use proptest::prelude::*;

    fn policy() -> impl Strategy<Value = RawPolicy> {
        (
            "[A-Z_]{1,40}",
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(|(name, a, c, r, p)| RawPolicy {
                name,
                available_tokens: a,
                capacity: c,
                refill_tokens: r,
                refill_period_secs: p,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// What the simulator writes, the client reads back unchanged (escaping included).
        #[test]
        fn what_is_written_is_read_back(
            ms in 0i64..4_102_444_800_000,
            category in "[A-H<&>]",
            correlation in "[ -~]{0,32}",
            policies in prop::collection::vec(policy(), 1..30),
        ) {
            let list = PolicyList {
                response_time: DateTime::from_timestamp_millis(ms).expect("in range"),
                category,
                correlation_id: correlation.trim().to_owned(),
                policies,
            };
            prop_assert_eq!(parse_list(write_list(&list).as_bytes()).expect("list"), list.clone());
            let one = PolicyList { policies: list.policies[..1].to_vec(), ..list };
            prop_assert_eq!(parse_get(write_get(&one).as_bytes()).expect("get"), one);
        }
    }

    #[test]
    fn problems_are_read_back() {
        let xml = write_problem("RateLimited", "Rate <limited>", 429, "wait & see", "c0ffee");
        let p = parse_problem(xml.as_bytes()).expect("problem");
        assert_eq!(
            (
                p.short_type(),
                p.title.as_str(),
                p.status,
                p.detail.as_str(),
                p.correlation_id.as_str()
            ),
            (
                "RateLimited",
                "Rate <limited>",
                Some(429),
                "wait & see",
                "c0ffee"
            )
        );
    }
}

#[test]
fn signed_answers_verify_with_the_published_certificate_and_nothing_else() {
    use dictmon::source::dict_signature::{SignatureError, SignatureVerifier};
    let cert = fixture("dict-signing.pem");
    let verifier = SignatureVerifier::from_pem(&cert, Path::new("dict-signing.pem")).expect("cert");
    for name in ["signed-GetPolicyResponse.xml", "signed-problem.xml"] {
        let body = fixture(name);
        verifier
            .verify(&body)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // One byte changed anywhere in the signed content fails.
        let text = String::from_utf8(body).expect("UTF-8");
        let altered = text
            .replacen("<Name>POLICIES_READ", "<Name>POLICIES_LIST", 1)
            .replacen("<status>403", "<status>429", 1);
        assert!(
            matches!(
                verifier.verify(altered.as_bytes()),
                Err(SignatureError::Invalid(_))
            ),
            "{name}"
        );
    }
    let get = parse_get(&fixture("signed-GetPolicyResponse.xml")).expect("parses");
    assert_eq!(get.policies[0].name, "POLICIES_READ");
    // The spec's examples carry an empty Signature: unsigned.
    assert_eq!(
        verifier.verify(&fixture("GetPolicyResponse.xml")),
        Err(SignatureError::Unsigned)
    );
}
