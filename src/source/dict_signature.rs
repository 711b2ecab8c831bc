//! DICT's response signatures: every answer (listing, single policy, problem) carries an
//! enveloped XML-DSig `Signature` as the first child of its root element. This module verifies
//! them against the signing certificate(s) the operator configured, and — for the simulator —
//! makes them.
//!
//! The profile accepted is DICT's and nothing wider ([`check_profile`], before the
//! cryptography): exactly one `Signature`, a child of the root; exactly one `Reference`, with
//! `URI=""` (the whole document, so nothing outside the signature can be added, moved or
//! wrapped without breaking the digest); exclusive C14N, the enveloped-signature transform,
//! RSA-SHA256 and SHA-256, in that order; no DTD (no entity can change what is read). The
//! cryptography is `bergshamra`'s (exclusive C14N, RSA-SHA256, XSW position checks), in its
//! strict mode: only the configured certificates' keys count, never a key the answer brings
//! in its own `KeyInfo`.
//!
//! Invariants: the bytes verified are the bytes parsed afterwards; no external reference is
//! ever resolved (no file or network access); no panic on any input.

use std::path::{Path, PathBuf};

use bergshamra::keys::loader;
use bergshamra::{DsigContext, KeysManager, VerifyResult};
use quick_xml::Reader;
use quick_xml::events::Event;

use super::tls::{TlsError, read_pem};

/// The signing certificate the simulator writes beside its TLS files.
pub const SIGNING_CERT_FILE: &str = "dict-signing.pem";
/// Its private key.
pub const SIGNING_KEY_FILE: &str = "dict-signing-key.pem";

const C14N_EXCLUSIVE: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";

/// The algorithms of DICT's profile, in document order.
const PROFILE: [(&str, &str); 5] = [
    ("CanonicalizationMethod", C14N_EXCLUSIVE),
    ("SignatureMethod", RSA_SHA256),
    ("Transform", ENVELOPED),
    ("Transform", C14N_EXCLUSIVE),
    ("DigestMethod", SHA256),
];

/// The signature template the simulator fills in (as DICT's answers carry it).
const TEMPLATE: &str = concat!(
    r#"<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>"#,
    r#"<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
    r#"<SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
    r#"<Reference URI=""><Transforms>"#,
    r#"<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
    r#"<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
    r#"</Transforms><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
    r#"<DigestValue></DigestValue></Reference></SignedInfo><SignatureValue></SignatureValue>"#,
    r#"<KeyInfo><X509Data/></KeyInfo></Signature>"#
);

/// Why an answer's signature is refused. The answer is then not used at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No signature, or an empty one (as in the spec's examples).
    #[error("the answer is not signed (no filled-in <Signature> element)")]
    Unsigned,
    /// A signature of another shape than DICT's (algorithms, references, place, DTD).
    #[error("the signature is not of DICT's profile: {0}")]
    Profile(String),
    /// The signature does not verify with any configured certificate.
    #[error("the signature does not verify against signing_cert: {0}")]
    Invalid(String),
    /// The simulator could not sign.
    #[error("cannot sign the answer: {0}")]
    Sign(String),
}

/// Why the signing certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningSetupError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] TlsError),
    /// It holds nothing usable.
    #[error("{path}: {detail}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The simulator's key could not be made or written.
    #[error("cannot make DICT's signing key in {dir}: {detail}")]
    Generate {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        detail: String,
    },
}

/// Verifies DICT's answers against the configured signing certificate(s). Several
/// certificates may be configured at once (one PEM file), for a rollover: an answer verifies
/// when any of them verifies it.
#[derive(Clone, Debug)]
pub struct SignatureVerifier {
    /// DER of each trusted certificate (a context is built per answer: cheap, and `Send`).
    certs: Vec<Vec<u8>>,
}

impl SignatureVerifier {
    /// Reads the PEM certificate(s) of `path`; refuses a file without one, or with one whose
    /// key cannot verify signatures.
    pub fn from_pem_file(path: &Path) -> Result<Self, SigningSetupError> {
        Self::from_pem(&read_pem(path, "DICT signing certificate")?, path)
    }

    /// The same from PEM text; `path` names it in errors.
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<Self, SigningSetupError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let unusable = |detail: String| SigningSetupError::Unusable {
            path: path.to_owned(),
            detail,
        };
        let certs = CertificateDer::pem_slice_iter(pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unusable(e.to_string()))?;
        if certs.is_empty() {
            return Err(unusable(
                "no CERTIFICATE block in it (DICT's signing certificate, PEM)".into(),
            ));
        }
        for der in &certs {
            loader::load_x509_cert_der(der).map_err(|e| unusable(e.to_string()))?;
        }
        Ok(Self { certs })
    }

    /// How many certificates are trusted.
    pub fn certificates(&self) -> usize {
        self.certs.len()
    }

    /// Verifies `body` (the exact bytes that will be parsed).
    pub fn verify(&self, body: &[u8]) -> Result<(), SignatureError> {
        let xml = std::str::from_utf8(body)
            .map_err(|e| SignatureError::Profile(format!("the answer is not UTF-8: {e}")))?;
        check_profile(xml)?;
        let mut keys = KeysManager::new();
        for der in &self.certs {
            let key = loader::load_x509_cert_der(der)
                .map_err(|e| SignatureError::Invalid(e.to_string()))?;
            keys.add_key(key);
        }
        // Strict: only the configured keys, XSW position checks, every reference digested.
        let ctx = DsigContext::new(keys);
        match bergshamra::verify(&ctx, xml).map_err(|e| SignatureError::Invalid(e.to_string()))? {
            VerifyResult::Valid { references, .. } => match references.as_slice() {
                [only] if only.uri.is_empty() && only.digest_verified => Ok(()),
                _ => Err(SignatureError::Profile(
                    "the signature must cover the whole answer (one Reference, URI=\"\")".into(),
                )),
            },
            VerifyResult::Invalid { reason } => Err(SignatureError::Invalid(reason)),
        }
    }
}

/// Checks that `xml` carries DICT's kind of signature and nothing that could make the bytes
/// verified differ from what is read: see the module documentation.
pub fn check_profile(xml: &str) -> Result<(), SignatureError> {
    let profile = |m: String| SignatureError::Profile(m);
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    // Depth of the Signature element while inside it.
    let mut inside: Option<usize> = None;
    let (mut signatures, mut references, mut signed_info) = (0, 0, false);
    let mut algorithms: Vec<(String, String)> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| profile(format!("not well-formed XML: {e}")))?;
        let (element, empty) = match &event {
            Event::DocType(_) => return Err(profile("a DTD is not allowed".into())),
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if inside == Some(depth) {
                    inside = None;
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
        if name == "Signature" && inside.is_none() {
            signatures += 1;
            if depth != 1 {
                return Err(profile(
                    "the Signature must be a child of the answer's root element".into(),
                ));
            }
            if !empty {
                inside = Some(depth);
            }
        } else if inside.is_some() {
            let attribute = |key: &[u8]| {
                element
                    .try_get_attribute(key)
                    .ok()
                    .flatten()
                    .map(|a| String::from_utf8_lossy(&a.value).into_owned())
            };
            match name.as_str() {
                "SignedInfo" => signed_info = true,
                "Reference" => {
                    references += 1;
                    if attribute(b"URI").as_deref() != Some("") {
                        return Err(profile(
                            "the Reference must be URI=\"\" (the whole answer)".into(),
                        ));
                    }
                }
                _ => {}
            }
            if PROFILE.iter().any(|(n, _)| *n == name) {
                algorithms.push((name, attribute(b"Algorithm").unwrap_or_default()));
            }
        }
        if !empty {
            depth += 1;
        }
    }
    match (signatures, signed_info) {
        (0, _) | (1, false) => return Err(SignatureError::Unsigned),
        (1, true) => {}
        (n, _) => return Err(profile(format!("{n} Signature elements, DICT sends one"))),
    }
    if references != 1 {
        return Err(profile(format!(
            "{references} Reference elements, DICT signs with one"
        )));
    }
    let matches = algorithms.len() == PROFILE.len()
        && algorithms
            .iter()
            .zip(PROFILE)
            .all(|((n, a), (en, ea))| n == en && a == ea);
    if !matches {
        let found: Vec<&str> = algorithms.iter().map(|(_, a)| a.as_str()).collect();
        return Err(profile(format!(
            "algorithms {found:?}; DICT's are exclusive C14N, RSA-SHA256, enveloped signature, SHA-256"
        )));
    }
    Ok(())
}

/// Signs answers as DICT does (the simulator's side): an RSA-2048 key and its self-signed
/// certificate.
#[derive(Clone, Debug)]
pub struct ResponseSigner {
    key_pem: String,
    cert_der: Vec<u8>,
}

impl ResponseSigner {
    /// The signer of `dir`: [`SIGNING_CERT_FILE`] and [`SIGNING_KEY_FILE`], made there first
    /// when absent (and then `true`).
    pub fn ensure(dir: &Path) -> Result<(Self, bool), SigningSetupError> {
        let cert = dir.join(SIGNING_CERT_FILE);
        let key = dir.join(SIGNING_KEY_FILE);
        let made = !(cert.exists() && key.exists());
        if made {
            generate(dir, &cert, &key)?;
        }
        Ok((Self::from_files(&cert, &key)?, made))
    }

    /// The signer of a PEM certificate and its PKCS#8 PEM key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, SigningSetupError> {
        let verifier = SignatureVerifier::from_pem_file(cert)?;
        let key_pem = String::from_utf8(read_pem(key, "DICT signing key")?).map_err(|e| {
            SigningSetupError::Unusable {
                path: key.to_owned(),
                detail: e.to_string(),
            }
        })?;
        let signer = Self {
            key_pem,
            cert_der: verifier.certs.into_iter().next().unwrap_or_default(),
        };
        // Refuse a key that does not go with the certificate now, not at the first answer.
        let probe = signer
            .sign("<Probe><Value>1</Value></Probe>")
            .map_err(|e| SigningSetupError::Unusable {
                path: key.to_owned(),
                detail: e.to_string(),
            })?;
        SignatureVerifier {
            certs: vec![signer.cert_der.clone()],
        }
        .verify(probe.as_bytes())
        .map_err(|e| SigningSetupError::Unusable {
            path: key.to_owned(),
            detail: format!("does not go with {}: {e}", cert.display()),
        })?;
        Ok(signer)
    }

    /// `xml` with its signature filled in, as the first child of its root (in place of an
    /// empty `<Signature></Signature>` when there is one).
    pub fn sign(&self, xml: &str) -> Result<String, SignatureError> {
        let template = with_template(xml)?;
        let mut key = loader::load_pem_auto(self.key_pem.as_bytes(), None)
            .map_err(|e| SignatureError::Sign(e.to_string()))?;
        key.x509_chain = vec![self.cert_der.clone()];
        let mut keys = KeysManager::new();
        keys.add_key(key);
        bergshamra::sign(&DsigContext::new(keys), &template)
            .map_err(|e| SignatureError::Sign(e.to_string()))
    }
}

/// `xml` with the signature template as the first child of its root.
fn with_template(xml: &str) -> Result<String, SignatureError> {
    const PLACEHOLDER: &str = "<Signature></Signature>";
    if xml.contains(PLACEHOLDER) {
        return Ok(xml.replacen(PLACEHOLDER, TEMPLATE, 1));
    }
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::Start(_)) => {
                let at = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
                let (head, tail) = xml
                    .split_at_checked(at)
                    .ok_or_else(|| SignatureError::Sign("no root element".into()))?;
                return Ok(format!("{head}{TEMPLATE}{tail}"));
            }
            Ok(Event::Eof) | Err(_) => {
                return Err(SignatureError::Sign(
                    "no root element with content to sign".into(),
                ));
            }
            Ok(_) => {}
        }
    }
}

/// Makes an RSA-2048 key and a self-signed certificate for it, written to `cert` and `key`.
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), SigningSetupError> {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    let failed = |detail: String| SigningSetupError::Generate {
        dir: dir.to_owned(),
        detail,
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
    let private = rsa::RsaPrivateKey::new(&mut rand08::rngs::OsRng, 2048)
        .map_err(|e| failed(e.to_string()))?;
    let key_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| failed(e.to_string()))?
        .to_string();
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| failed(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| failed(e.to_string()))?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "DICT response signing (dictmon simulator)",
    );
    let certificate = params
        .self_signed(&pair)
        .map_err(|e| failed(e.to_string()))?;
    std::fs::write(cert, certificate.pem()).map_err(|e| failed(e.to_string()))?;
    write_private(key, &key_pem).map_err(|e| failed(e.to_string()))
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(pem.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetPolicyResponse>\n  <Signature></Signature>\n  <CorrelationId>B20220902102129115123456788B2B22</CorrelationId>\n  <ResponseTime>2022-09-02T13:21:29.110Z</ResponseTime>\n  <Category>A</Category>\n  <Policy>\n    <AvailableTokens>5</AvailableTokens>\n    <Capacity>200</Capacity>\n    <RefillTokens>1</RefillTokens>\n    <RefillPeriodSec>1</RefillPeriodSec>\n    <Name>POLICIES_READ</Name>\n  </Policy>\n</GetPolicyResponse>\n";

    fn pair(dir: &Path) -> (ResponseSigner, SignatureVerifier) {
        let (made_signer, made) = ResponseSigner::ensure(dir).expect("signer");
        assert!(made);
        let verifier =
            SignatureVerifier::from_pem_file(&dir.join(SIGNING_CERT_FILE)).expect("verifier");
        (made_signer, verifier)
    }

    #[test]
    fn signed_answers_verify_and_every_alteration_is_refused() {
        let dir = tempfile::tempdir().expect("temp");
        let other = tempfile::tempdir().expect("temp");
        let (key, verifier) = pair(dir.path());
        let (_, stranger) = pair(other.path());
        let signed = key.sign(ANSWER).expect("sign");
        assert!(signed.contains("<SignatureValue>") && !signed.contains("<Signature></Signature>"));
        // Valid, and the parser still reads it.
        verifier.verify(signed.as_bytes()).expect("valid");
        let list = crate::source::dict_xml::parse_get(signed.as_bytes()).expect("parses");
        assert_eq!(list.policies[0].available_tokens, 5);
        // A tampered value.
        let tampered = signed.replace("<AvailableTokens>5<", "<AvailableTokens>150<");
        assert!(matches!(
            verifier.verify(tampered.as_bytes()),
            Err(SignatureError::Invalid(_))
        ));
        // A tampered signature value.
        let at = signed.find("<SignatureValue>").expect("value") + "<SignatureValue>".len() + 8;
        let mut bytes = signed.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        assert!(verifier.verify(&bytes).is_err());
        // Another key: the stranger's certificate does not verify it, whatever KeyInfo says.
        assert!(matches!(
            stranger.verify(signed.as_bytes()),
            Err(SignatureError::Invalid(_))
        ));
        // Unsigned: the spec's examples, and no Signature at all.
        assert_eq!(
            verifier.verify(ANSWER.as_bytes()),
            Err(SignatureError::Unsigned)
        );
        let bare = ANSWER.replace("  <Signature></Signature>\n", "");
        assert_eq!(
            verifier.verify(bare.as_bytes()),
            Err(SignatureError::Unsigned)
        );
    }

    #[test]
    fn wrapping_and_moving_are_refused() {
        let dir = tempfile::tempdir().expect("temp");
        let (key, verifier) = pair(dir.path());
        let signed = key.sign(ANSWER).expect("sign");
        // A second Policy (or Policies) element beside the signed one.
        let forged = "<Policy><AvailableTokens>99999</AvailableTokens><Capacity>99999</Capacity><RefillTokens>1</RefillTokens><RefillPeriodSec>1</RefillPeriodSec><Name>FORGED</Name></Policy>";
        let second = signed.replace(
            "</GetPolicyResponse>",
            &format!("{forged}</GetPolicyResponse>"),
        );
        assert!(verifier.verify(second.as_bytes()).is_err());
        let listing = signed.replace(
            "</GetPolicyResponse>",
            &format!("<Policies>{forged}</Policies></GetPolicyResponse>"),
        );
        assert!(verifier.verify(listing.as_bytes()).is_err());
        // The signed answer moved under a forged root.
        let body = signed
            .split_once("?>")
            .map(|(_, rest)| rest)
            .expect("declaration");
        let wrapped = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><GetPolicyResponse><CorrelationId>X</CorrelationId><ResponseTime>2022-09-02T13:21:29.110Z</ResponseTime><Category>A</Category>{forged}<Original>{body}</Original></GetPolicyResponse>"
        );
        assert!(verifier.verify(wrapped.as_bytes()).is_err());
        // The Signature moved deeper: not DICT's place for it.
        let (start, end) = (
            signed.find("<Signature").expect("start"),
            signed.find("</Signature>").expect("end") + "</Signature>".len(),
        );
        let element = &signed[start..end];
        let moved = format!("{}{}", &signed[..start], &signed[end..])
            .replace("<Name>", &format!("{element}<Name>"));
        assert!(matches!(
            verifier.verify(moved.as_bytes()),
            Err(SignatureError::Profile(_))
        ));
        // A DTD that would change what is read.
        let dtd = signed.replacen(
            "<GetPolicyResponse>",
            "<!DOCTYPE GetPolicyResponse [<!ENTITY a \"A\">]><GetPolicyResponse>",
            1,
        );
        assert!(matches!(
            verifier.verify(dtd.as_bytes()),
            Err(SignatureError::Profile(_))
        ));
        // A weaker algorithm.
        let sha1 = signed.replace(RSA_SHA256, "http://www.w3.org/2000/09/xmldsig#rsa-sha1");
        assert!(matches!(
            verifier.verify(sha1.as_bytes()),
            Err(SignatureError::Profile(_))
        ));
    }

    #[test]
    fn problems_are_signed_too() {
        let dir = tempfile::tempdir().expect("temp");
        let (key, verifier) = pair(dir.path());
        let problem = crate::source::dict_xml::write_problem(
            "RateLimited",
            "Rate limited",
            429,
            "POLICIES_LIST is empty",
            "E4000000000000000000000000000001",
        );
        let signed = key.sign(&problem).expect("sign");
        verifier.verify(signed.as_bytes()).expect("valid");
        let p = crate::source::dict_xml::parse_problem(signed.as_bytes()).expect("parses");
        assert_eq!(p.short_type(), "RateLimited");
    }
}
