//! TLS material: PEM files read with errors that name them, and a throw-away PKI (CA, server
//! and client certificates) for the simulator, demos and tests — so that mutual TLS can be
//! tried in a minute without a real PKI.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Why TLS material could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {error}; check the path in the configuration")]
    Read {
        /// Which file it is (`CA certificate`, `client key` …).
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate certificates: {0}")]
    Generate(String),
}

/// Reads a PEM file; the error names `what` and the path.
pub fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        error,
    })
}

/// The files of a PKI made by [`ensure_pki`], in its folder.
#[derive(Clone, Debug)]
pub struct PkiFiles {
    /// `ca.pem`: trust anchor for both sides.
    pub ca: PathBuf,
    /// `server.pem`, for `localhost`, `127.0.0.1` and `::1`.
    pub server_cert: PathBuf,
    /// `server-key.pem`.
    pub server_key: PathBuf,
    /// `client.pem`: the participant's client certificate.
    pub client_cert: PathBuf,
    /// `client-key.pem`.
    pub client_key: PathBuf,
}

impl PkiFiles {
    /// The file names in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        }
    }
}

/// Makes a throw-away CA and a server and a client certificate in `dir` unless `ca.pem` is
/// already there. Returns the files and whether they were made now. Keys are written 0600.
pub fn ensure_pki(dir: &Path) -> Result<(PkiFiles, bool), TlsError> {
    let files = PkiFiles::in_dir(dir);
    if files.ca.exists() {
        return Ok((files, false));
    }
    let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
    fs::create_dir_all(dir).map_err(|error| TlsError::Write {
        path: dir.to_owned(),
        error,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dictmon throw-away CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(gen_err)?)
        .map_err(gen_err)?;
    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(names).map_err(gen_err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &ca).map_err(gen_err)?;
        Ok::<_, TlsError>((cert.pem(), key.serialize_pem()))
    };
    let (server, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        "dictmon simulator",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client, client_key) = leaf(
        vec!["dictmon-client".into()],
        "dictmon participant 00000000",
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    write(&files.ca, ca.pem().as_bytes(), false)?;
    write(&files.server_cert, server.as_bytes(), false)?;
    write(&files.server_key, server_key.as_bytes(), true)?;
    write(&files.client_cert, client.as_bytes(), false)?;
    write(&files.client_key, client_key.as_bytes(), true)?;
    Ok((files, true))
}

fn write(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    let err = |error| TlsError::Write {
        path: path.to_owned(),
        error,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = options.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)
}

/// Which side of a mutual-TLS handshake failed, read from an error chain's text (rustls names
/// its alerts and verifier errors, e.g. `UnknownIssuer`, `CertificateRequired`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// We do not trust the server's certificate.
    PeerNotTrusted,
    /// The server refused our client certificate, or wants one.
    OwnCertificateRejected,
}

/// Classifies an error chain's text; none when it is not a TLS failure.
pub fn tls_failure(detail: &str) -> Option<TlsFailure> {
    let lower = detail.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if any(&[
        "unknownissuer",
        "invalid peer certificate",
        "notvalidforname",
    ]) {
        Some(TlsFailure::PeerNotTrusted)
    } else if any(&[
        "certificaterequired",
        "certificate required",
        "badcertificate",
        "unsupportedcertificate",
        "unknownca",
        "handshakefailure",
        "received fatal alert",
    ]) {
        Some(TlsFailure::OwnCertificateRejected)
    } else {
        None
    }
}

/// `first`, then every error in `source`'s chain not already said, as one line.
pub fn error_chain(
    first: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    let mut text = first;
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
