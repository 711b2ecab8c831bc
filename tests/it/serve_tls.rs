//! Mutual TLS between `serve` and the Bridge, with certificates generated for the test: the
//! right client certificate works; a wrong CA or a missing client certificate fails with an
//! error that says which.

use std::path::Path;
use std::time::Duration;

use dictmon::source::tls::ensure_pki;

use crate::util::{Serve, Simulator, metric, wait_until};

fn tls_args<'a>(url: &'a str, ca: &'a Path, cert: Option<(&'a Path, &'a Path)>) -> Vec<String> {
    let mut args = vec![
        "--source".into(),
        "bridge".into(),
        "--bridge-url".into(),
        url.into(),
        "--ca-cert".into(),
        ca.display().to_string(),
        "--interval".into(),
        "1s".into(),
    ];
    if let Some((c, k)) = cert {
        args.extend([
            "--client-cert".into(),
            c.display().to_string(),
            "--client-key".into(),
            k.display().to_string(),
        ]);
    }
    args
}

fn start(dir: &Path, args: &[String]) -> Serve {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Serve::start(dir, &args)
}

#[test]
fn mutual_tls_works_and_failures_say_which_side() {
    let pki = tempfile::tempdir().expect("temp");
    let other = tempfile::tempdir().expect("temp");
    let (files, made) = ensure_pki(pki.path()).expect("certificates");
    assert!(made);
    let (foreign, _) = ensure_pki(other.path()).expect("another CA");
    let sim = Simulator::start(
        "127.0.0.1:0",
        &["--tls-dir", &pki.path().display().to_string()],
    );
    assert!(sim.url.starts_with("https://"), "{}", sim.url);
    let url = sim.url.replace("127.0.0.1", "localhost");

    // The right client certificate: polls succeed.
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(
        dir.path(),
        &tls_args(
            &url,
            &files.ca,
            Some((&files.client_cert, &files.client_key)),
        ),
    );
    wait_until("ready over mutual TLS", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });
    assert!(serve.get("/api/v1/policies").1.contains("ENTRIES_WRITE"));
    drop(serve);

    // A CA that did not sign the Bridge's certificate.
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(
        dir.path(),
        &tls_args(
            &url,
            &foreign.ca,
            Some((&files.client_cert, &files.client_key)),
        ),
    );
    wait_until(
        "a TLS error about the Bridge's certificate",
        Duration::from_secs(30),
        || serve.log().contains("certificate is not trusted"),
    );
    let (_, text) = serve.get("/metrics");
    assert!(metric(&text, "dictmon_poll_errors_total{kind=\"tls\"}").unwrap_or(0.0) >= 1.0);
    assert_ne!(serve.get("/readyz").0, 200);
    drop(serve);

    // No client certificate at all.
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &tls_args(&url, &files.ca, None));
    wait_until(
        "a TLS error about the client certificate",
        Duration::from_secs(30),
        || serve.log().contains("client certificate"),
    );
    let (_, text) = serve.get("/metrics");
    assert!(
        metric(&text, "dictmon_poll_errors_total{kind=\"tls\"}").unwrap_or(0.0) >= 1.0,
        "{}",
        serve.log()
    );
    drop(sim);
}
