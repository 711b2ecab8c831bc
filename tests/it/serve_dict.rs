//! `serve --source dict` against `simulate --protocol dict`: DICT's HTTPS API over real mutual
//! TLS on loopback, with certificates generated for the test.

use std::path::Path;
use std::time::Duration;

use dictmon::domain::{Alert, Severity};
use dictmon::source::simulator::SCRIPTED_POLICY;
use dictmon::source::tls::{PkiFiles, ensure_pki};

use crate::util::{Serve, Simulator, dictmon, metric, wait_until};

fn simulate(pki: &Path, args: &[&str]) -> Simulator {
    let dir = pki.display().to_string();
    let mut all = vec!["--protocol", "dict", "--tls-dir", &dir];
    all.extend_from_slice(args);
    let sim = Simulator::start("127.0.0.1:0", &all);
    assert!(sim.url.ends_with("/api/v2/"), "{}", sim.url);
    sim
}

fn dict_args(url: &str, ca: &Path, client: &PkiFiles) -> Vec<String> {
    [
        "--source",
        "dict",
        "--dict-url",
        url,
        "--ispb",
        "12345678",
        "--ca-cert",
        &ca.display().to_string(),
        "--client-cert",
        &client.client_cert.display().to_string(),
        "--client-key",
        &client.client_key.display().to_string(),
        "--interval",
        "10s",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn start(dir: &Path, args: &[String]) -> Serve {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Serve::start(dir, &args)
}

fn alerts(serve: &Serve, query: &str) -> Vec<Alert> {
    let (status, body) = serve.get(&format!("/api/v1/alerts{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("alerts JSON")
}

#[test]
fn exhaustion_over_dict_opens_and_resolves_a_critical_alert() {
    let pki = tempfile::tempdir().expect("temp");
    let sim = simulate(pki.path(), &["--scenario", "exhaustion"]);
    let files = PkiFiles::in_dir(pki.path());
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &files.ca, &files));
    assert!(
        serve.log().contains("signatures are NOT verified"),
        "{}",
        serve.log()
    );
    let mut critical = None;
    wait_until(
        "a CRITICAL alert on the scripted bucket",
        Duration::from_secs(90),
        || {
            critical = alerts(&serve, "?open=true")
                .into_iter()
                .find(|a| a.policy.as_str() == SCRIPTED_POLICY && a.severity == Severity::Critical);
            critical.is_some()
        },
    );
    let critical = critical.expect("found");
    wait_until(
        "the CRITICAL alert to resolve",
        Duration::from_secs(90),
        || {
            alerts(&serve, "")
                .iter()
                .any(|a| a.id == critical.id && a.resolved_at.is_some())
        },
    );
    // dictmon's own use of the listing is one of the monitored buckets.
    let (_, text) = serve.get("/metrics");
    let own = text
        .lines()
        .find(|l| l.starts_with("dict_rate_limit_available_tokens{endpoint_id=\"POLICIES_LIST\""))
        .unwrap_or_else(|| panic!("POLICIES_LIST not monitored:\n{text}"));
    let left: f64 = own
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("value");
    assert!(left < 20.0, "the listings cost nothing? {own}");
    assert_eq!(
        metric(&text, "dictmon_poll_errors_total{kind=\"tls\"}"),
        Some(0.0)
    );
    let (status, _) = serve.terminate();
    assert!(status.success());

    // `status --live` reads one policy through GET /policies/{name}.
    let out = dictmon()
        .args(["status", "--live", SCRIPTED_POLICY, "--format", "json"])
        .args(&dict_args(&sim.url, &files.ca, &files)[..12])
        .output()
        .expect("status --live");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(live["endpoint_id"], SCRIPTED_POLICY);
    assert_eq!(live["psp_category"], "C");
    assert!(live["capacity"].as_i64().is_some_and(|c| c > 0), "{live}");
}

#[test]
fn a_client_certificate_dict_does_not_trust_fails_saying_so() {
    let pki = tempfile::tempdir().expect("temp");
    let other = tempfile::tempdir().expect("temp");
    let sim = simulate(pki.path(), &[]);
    let files = PkiFiles::in_dir(pki.path());
    let (foreign, _) = ensure_pki(other.path()).expect("another CA");
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &files.ca, &foreign));
    wait_until(
        "a TLS error about the client certificate",
        Duration::from_secs(30),
        || serve.log().contains("DICT rejected our client certificate"),
    );
    let (_, text) = serve.get("/metrics");
    assert!(metric(&text, "dictmon_poll_errors_total{kind=\"tls\"}").unwrap_or(0.0) >= 1.0);
    assert_ne!(serve.get("/readyz").0, 200);
    drop(serve);

    // And a server certificate our CA did not sign.
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &foreign.ca, &files));
    wait_until(
        "a TLS error about DICT's certificate",
        Duration::from_secs(30),
        || serve.log().contains("server certificate is not trusted"),
    );
}

#[test]
fn rate_limited_and_unavailable_answers_wait_as_asked_and_are_counted() {
    let pki = tempfile::tempdir().expect("temp");
    // The 2nd request gets a 503 with Retry-After: 12 (past the 10 s interval, so honouring it
    // shows as a held poll), the 3rd a 429, without one (DICT declares none on 429).
    let sim = simulate(
        pki.path(),
        &[
            "--fault",
            "503@2",
            "--fault",
            "429@3",
            "--retry-after",
            "12",
        ],
    );
    let files = PkiFiles::in_dir(pki.path());
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &files.ca, &files));
    let mut held = false;
    wait_until("a 503 and a 429 counted", Duration::from_secs(60), || {
        let (_, text) = serve.get("/metrics");
        held |= metric(&text, "dictmon_source_retry_after_seconds") == Some(12.0);
        metric(&text, "dictmon_poll_errors_total{kind=\"rate_limited\"}") >= Some(1.0)
            && metric(&text, "dictmon_poll_errors_total{kind=\"unavailable\"}") >= Some(1.0)
    });
    let log = serve.log();
    // DICT's 32-hex correlation id is in the log line, for BACEN's support.
    assert!(
        log.contains("RateLimited") && log.contains("DICT correlationId E4000000"),
        "{log}"
    );
    assert!(log.contains("POLICIES_LIST allows 6 listings"), "{log}");
    assert!(log.contains("ServiceUnavailable"), "{log}");
    assert!(held, "dictmon_source_retry_after_seconds never showed 12");
    // Honoured: the poll after the 503 came no sooner than 12 s later (the interval is 10 s).
    let failed_at = |kind: &str| {
        log.lines()
            .find(|l| l.contains("poll failed;") && l.contains(kind))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .unwrap_or_else(|| panic!("no timed {kind} line in:\n{log}"))
    };
    assert!(
        log.lines()
            .any(|l| l.contains("asked to wait 12s: no poll before then")
                && l.contains("ServiceUnavailable")),
        "{log}"
    );
    let gap = failed_at("RateLimited") - failed_at("ServiceUnavailable");
    assert!(
        gap >= chrono::TimeDelta::milliseconds(11_900),
        "polled again after {gap} despite Retry-After: 12"
    );
    // The next listing succeeds again, and the gauge goes back to 0.
    wait_until(
        "a successful poll after the faults",
        Duration::from_secs(60),
        || {
            let (_, text) = serve.get("/metrics");
            metric(&text, "dictmon_source_retry_after_seconds") == Some(0.0)
                && serve.get("/readyz").0 == 200
        },
    );
}

/// `status --live NAME` through DICT's `GET /policies/{name}`: its stderr, and whether it
/// succeeded.
fn live(sim: &Simulator, files: &PkiFiles, name: &str) -> (bool, String) {
    let out = dictmon()
        .args(["status", "--live", name, "--format", "json"])
        .args(&dict_args(&sim.url, &files.ca, files)[..12])
        .output()
        .expect("status --live");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn single_reads_check_the_name_and_name_their_own_budget() {
    let pki = tempfile::tempdir().expect("temp");
    let files = PkiFiles::in_dir(pki.path());
    // An answer about another policy is refused, not shown as the one asked for.
    let sim = simulate(pki.path(), &["--fault", "wrong-name@1"]);
    let (ok, err) = live(&sim, &files, "KEYS_CHECK");
    assert!(!ok, "an answer about another policy was accepted");
    assert!(
        err.contains("asked for policy \"KEYS_CHECK\", DICT answered about \"ENTRIES_WRITE\""),
        "{err}"
    );
    drop(sim);
    // A 429 on a single read is POLICIES_READ's doing, not POLICIES_LIST's.
    let sim = simulate(pki.path(), &["--fault", "429@1"]);
    let (ok, err) = live(&sim, &files, "KEYS_CHECK");
    assert!(!ok);
    assert!(err.contains("POLICIES_READ allows 60"), "{err}");
    assert!(!err.contains("POLICIES_LIST"), "{err}");
}

#[test]
fn an_empty_listing_is_counted_and_never_makes_the_source_fresh() {
    let pki = tempfile::tempdir().expect("temp");
    let sim = simulate(pki.path(), &["--fault", "empty@1"]);
    let files = PkiFiles::in_dir(pki.path());
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &files.ca, &files));
    wait_until(
        "empty listings counted, the source stale, the self-alert open",
        Duration::from_secs(60),
        || {
            let (_, text) = serve.get("/metrics");
            metric(&text, "dictmon_poll_errors_total{kind=\"empty_listing\"}") >= Some(2.0)
                && metric(&text, "dictmon_source_fresh") == Some(0.0)
                && alerts(&serve, "?open=true")
                    .iter()
                    .any(|a| a.policy.as_str() == "DICTMON_SOURCE")
        },
    );
    assert!(serve.log().contains("no policy at all"), "{}", serve.log());
    assert_ne!(serve.get("/readyz").0, 200);
    assert_eq!(serve.get("/api/v1/policies").1.trim(), "[]");
}

#[test]
fn a_400_is_our_request_s_fault_and_is_not_retried() {
    let pki = tempfile::tempdir().expect("temp");
    let sim = simulate(pki.path(), &["--fault", "400@1"]);
    let files = PkiFiles::in_dir(pki.path());
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &dict_args(&sim.url, &files.ca, &files));
    wait_until("a 400 counted as refused", Duration::from_secs(30), || {
        let (_, text) = serve.get("/metrics");
        metric(&text, "dictmon_poll_errors_total{kind=\"refused\"}") >= Some(1.0)
    });
    let log = serve.log();
    assert!(
        log.contains("DICT found dictmon's request malformed"),
        "{log}"
    );
    assert!(!log.contains("malformed answer"), "{log}");
    // Not retried within the cycle: no "retrying" with a retry_in.
    assert!(!log.contains("retry_in"), "{log}");
}

/// The serve flags with DICT's signing certificate from `signing_dir`.
fn signed_args(url: &str, files: &PkiFiles, signing_dir: &Path) -> Vec<String> {
    let mut args = dict_args(url, &files.ca, files);
    args.extend([
        "--dict-signing-cert".to_owned(),
        signing_dir
            .join(dictmon::source::dict_signature::SIGNING_CERT_FILE)
            .display()
            .to_string(),
    ]);
    args
}

fn rejected_for_signature(serve: &Serve) -> f64 {
    let (_, text) = serve.get("/metrics");
    metric(
        &text,
        "dictmon_rejected_samples_total{reason=\"bad_signature\"}",
    )
    .unwrap_or(0.0)
}

fn source_alert(serve: &Serve) -> Option<Alert> {
    alerts(serve, "?open=true")
        .into_iter()
        .find(|a| a.policy.as_str() == "DICTMON_SOURCE")
}

#[test]
fn signed_answers_are_verified_and_a_wrong_key_is_refused() {
    let pki = tempfile::tempdir().expect("temp");
    let sim = simulate(pki.path(), &[]);
    let files = PkiFiles::in_dir(pki.path());
    // DICT's certificate: answers are verified and used.
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &signed_args(&sim.url, &files, pki.path()));
    wait_until("ready on verified answers", Duration::from_secs(30), || {
        serve.get("/readyz").0 == 200
    });
    assert!(
        serve.log().contains("signatures are verified"),
        "{}",
        serve.log()
    );
    assert!(!serve.log().contains("NOT verified"), "{}", serve.log());
    assert!(serve.get("/api/v1/policies").1.contains("ENTRIES_WRITE"));
    assert!(rejected_for_signature(&serve) < 0.5, "no answer refused");
    drop(serve);

    // Another key's certificate: every answer refused, counted, the source alert opens at once
    // naming why, and nothing is stored.
    let other = tempfile::tempdir().expect("temp");
    dictmon::source::dict_signature::ResponseSigner::ensure(other.path()).expect("a stranger");
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &signed_args(&sim.url, &files, other.path()));
    wait_until(
        "the answer refused and the source alert open",
        Duration::from_secs(30),
        || rejected_for_signature(&serve) >= 1.0 && source_alert(&serve).is_some(),
    );
    let alert = source_alert(&serve).expect("open");
    assert_eq!(alert.severity, Severity::Critical);
    assert!(
        alert.message.contains("signature does not verify"),
        "{}",
        alert.message
    );
    assert_eq!(serve.get("/api/v1/policies").1.trim(), "[]");
    assert_ne!(serve.get("/readyz").0, 200);
    let (_, text) = serve.get("/metrics");
    assert!(
        metric(&text, "dictmon_poll_errors_total{kind=\"bad_signature\"}") >= Some(1.0),
        "{text}"
    );
}

#[test]
fn unsigned_and_tampered_answers_are_refused_and_the_source_recovers() {
    let pki = tempfile::tempdir().expect("temp");
    // Every answer unsigned.
    let sim = simulate(pki.path(), &["--fault", "unsigned@1"]);
    let files = PkiFiles::in_dir(pki.path());
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &signed_args(&sim.url, &files, pki.path()));
    wait_until(
        "an unsigned answer refused",
        Duration::from_secs(30),
        || rejected_for_signature(&serve) >= 1.0,
    );
    let alert = source_alert(&serve).expect("the source alert");
    assert!(alert.message.contains("not signed"), "{}", alert.message);
    drop(serve);
    drop(sim);

    // Every 2nd answer altered after signing: refused, then the next good one is used and
    // the source alert resolves.
    let sim = simulate(pki.path(), &["--fault", "tampered@2"]);
    let dir = tempfile::tempdir().expect("temp");
    let serve = start(dir.path(), &signed_args(&sim.url, &files, pki.path()));
    wait_until(
        "a tampered answer refused, then the alert resolved by a good one",
        Duration::from_secs(60),
        || {
            rejected_for_signature(&serve) >= 1.0
                && source_alert(&serve).is_none()
                && alerts(&serve, "")
                    .iter()
                    .any(|a| a.policy.as_str() == "DICTMON_SOURCE" && a.resolved_at.is_some())
        },
    );
    assert!(serve.log().contains("does not verify"), "{}", serve.log());
    // What was stored came from verified answers only: the tampered listing's tokens (a 1
    // written before each AvailableTokens) never reach the store.
    assert!(serve.get("/api/v1/policies").1.contains("ENTRIES_WRITE"));
}
