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
