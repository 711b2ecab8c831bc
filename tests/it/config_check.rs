//! `dictmon config check`: the shipped example is valid; a bad file is reported with file,
//! line, column and key, and exit status 1.

use crate::util::dictmon;

#[test]
fn the_shipped_example_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/dictmon.toml");
    let out = dictmon()
        .args(["config", "check", example])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn errors_name_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "interval = \"5m\"\n[thresholds]\nwarning_percent = 10\ncritical_percent = 15\n",
    )
    .expect("write");
    let out = dictmon()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{}:4:", file.display())), "{text}");
    assert!(text.contains("critical threshold must be below"), "{text}");
    std::fs::write(&file, "intervl = \"5m\"\n").expect("write");
    let out = dictmon()
        .args(["config", "check"])
        .arg(&file)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains(":1:1:") && text.contains("intervl"), "{text}");
}

/// Settings that once panicked the monitor task (an interval that overflows the scheduler's
/// clock), stopped polling (a jitter of a week) or silenced every log line (a level that is
/// not one): `config check` and `serve` both refuse them, naming the line and the key.
#[test]
fn nonsense_timing_and_log_levels_are_refused_by_check_and_by_serve() {
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("bad.toml");
    for (text, line, key) in [
        ("interval = \"18446744073709551615s\"\n", 1, "interval"),
        ("interval = \"10s\"\njitter = \"1w\"\n", 2, "jitter"),
        ("[log]\nlevel = \"verbose!!\"\n", 2, "log.level"),
    ] {
        std::fs::write(&file, text).expect("write");
        let where_ = format!("{}:{line}:", file.display());
        let out = dictmon()
            .args(["config", "check"])
            .arg(&file)
            .output()
            .expect("run");
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}: {said}");
        assert!(
            said.contains(&where_) && said.contains(key),
            "{text}: {said}"
        );
        let out = dictmon()
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&file)
            .output()
            .expect("run");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {said}");
        assert!(
            said.contains(&where_) && said.contains(key),
            "{text}: {said}"
        );
    }
    let out = dictmon()
        .args(["serve", "--interval", "18446744073709551615s", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interval"));
}

fn check(file: &std::path::Path) -> (Option<i32>, String) {
    let out = dictmon()
        .args(["config", "check"])
        .arg(file)
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every problem of a file is reported in one run, each at its line and column, in file order.
#[test]
fn every_problem_is_reported_not_only_the_first() {
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "listen = \"not an address\"\ninterval = \"5x\"\ngrpc_listen = \"127.0.0.1:99999\"\n\n[log]\nlevel = \"verbose!!\"\n\n[retention]\nkeep_months = 0\n",
    )
    .expect("write");
    let (code, said) = check(&file);
    assert_eq!(code, Some(1), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    for (i, (line, key)) in [
        (1, "listen"),
        (2, "interval"),
        (3, "grpc_listen"),
        (6, "log.level"),
        (9, "retention.keep_months"),
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = format!("{}:{line}:", file.display());
        assert!(
            lines
                .get(i)
                .is_some_and(|l| l.starts_with(&prefix) && l.contains(&format!(": {key}: "))),
            "problem {i} should be at line {line}, key {key}:\n{said}"
        );
    }
    assert!(said.contains("5 problems"), "{said}");
}

/// The files a configuration names are read and parsed as `serve` would: a missing CA, an
/// unreadable or malformed token, a missing HMAC secret, an events file in a directory that
/// does not exist.
#[test]
fn the_files_it_names_are_checked() {
    let dir = tempfile::tempdir().expect("temp");
    let token = dir.path().join("token");
    std::fs::write(&token, "two words\n").expect("write");
    let file = dir.path().join("files.toml");
    std::fs::write(
        &file,
        format!(
            "api_token_file = \"{token}\"\n\n[source]\nkind = \"bridge\"\n\n[source.bridge]\nurl = \"https://127.0.0.1:5000\"\nca_cert = \"{missing}/ca.pem\"\n\n[[notify.webhook]]\nurl = \"https://127.0.0.1:6000/hook\"\nhmac_secret_file = \"{missing}/secret\"\n\n[[notify.file]]\npath = \"{missing}/events.jsonl\"\n",
            token = token.display(),
            missing = dir.path().join("nowhere").display(),
        ),
    )
    .expect("write");
    let (code, said) = check(&file);
    assert_eq!(code, Some(1), "{said}");
    for what in ["ca.pem", "token must be one line", "secret", "events.jsonl"] {
        assert!(said.contains(what), "{what}:\n{said}");
    }
    assert!(said.contains("4 problems"), "{said}");
    assert!(!said.contains('{'), "no Rust debug output: {said}");
}

/// A real source's section without `kind` would leave `serve` polling the simulator.
#[test]
fn a_source_section_without_its_kind_is_refused() {
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("kind.toml");
    std::fs::write(&file, "[source.bridge]\nurl = \"http://127.0.0.1:5000\"\n").expect("write");
    let (code, said) = check(&file);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("add kind = \"bridge\""), "{said}");
}

/// The OTLP collector's TLS files are read by `config check` as `serve` reads them, and a
/// valid traces section is named in the summary.
#[test]
fn the_otlp_collector_s_files_are_checked_and_traces_are_summarised() {
    let dir = tempfile::tempdir().expect("temp");
    let file = dir.path().join("traces.toml");
    let missing = dir.path().join("no-such-ca.pem");
    std::fs::write(
        &file,
        format!(
            "[telemetry.otlp]\nendpoint = \"https://collector:4317\"\nca_cert = \"{}\"\n",
            missing.display()
        ),
    )
    .expect("write");
    let (code, text) = check(&file);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("[telemetry.otlp]"), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    let serve = dictmon()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert_eq!(serve.status.code(), Some(2));
    let said = String::from_utf8_lossy(&serve.stderr);
    assert!(said.contains(&missing.display().to_string()), "{said}");

    std::fs::write(
        &file,
        "[telemetry.otlp]\nendpoint = \"http://127.0.0.1:4317\"\n",
    )
    .expect("write");
    let (code, text) = check(&file);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("traces to http://127.0.0.1:4317"), "{text}");
}
