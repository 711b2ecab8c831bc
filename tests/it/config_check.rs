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
