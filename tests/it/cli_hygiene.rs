//! Commands that fail leave nothing behind, and output into a closed pipe is no crash: a
//! mistyped `--data-dir` for `retention`, an `import` of a missing file or a `--strict` one
//! with bad rows create no data directory; a second import of the same file says "already
//! present" once, not once per row; `--backfill 13m` is refused as minutes; `query … | head`
//! stops quietly; a reader outside the data directory's group is told so, and how to join it.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use super::util::{backfill, dictmon};

#[test]
fn a_mistyped_data_directory_is_not_created() {
    let tmp = tempfile::tempdir().expect("temp");
    let typo = tmp.path().join("dictmon-dta");
    let out = dictmon()
        .args(["retention", "--data-dir"])
        .arg(&typo)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no data directory there"), "{stderr}");
    assert!(!typo.exists(), "retention created {}", typo.display());
}

#[test]
fn a_failed_import_leaves_no_data_directory() {
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    let out = dictmon()
        .args(["import", "--data-dir"])
        .arg(&data)
        .arg("--states")
        .arg(tmp.path().join("missing.csv"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing.csv: cannot open"), "{stderr}");
    assert!(
        !data.exists(),
        "import of a missing file created the data directory"
    );

    let bad = tmp.path().join("bad.csv");
    std::fs::write(
        &bad,
        "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\nKEYS_CHECK,x,100,10,60,C,2026-01-02 00:00:00+00\n",
    )
    .expect("write");
    let out = dictmon()
        .args(["import", "--strict", "--data-dir"])
        .arg(&data)
        .arg("--states")
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !data.exists(),
        "--strict with bad rows left a data directory"
    );
}

#[test]
fn a_second_import_counts_rows_already_present_without_listing_them() {
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    let csv = tmp.path().join("states.csv");
    let header = "endpoint_id,available_tokens,capacity,refill_tokens,refill_period_sec,psp_category,response_time\n";
    let mut text = header.to_owned();
    for minute in 0..500 {
        let (h, m) = (minute / 60, minute % 60);
        writeln!(
            text,
            "KEYS_CHECK,90,100,10,60,C,2026-01-02 {h:02}:{m:02}:00+00"
        )
        .expect("write");
    }
    std::fs::write(&csv, text).expect("write");
    let import = || {
        dictmon()
            .args(["import", "--data-dir"])
            .arg(&data)
            .arg("--states")
            .arg(&csv)
            .output()
            .expect("run")
    };
    assert!(import().status.success());
    let again = import();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr),
    );
    assert!(again.status.success(), "{stderr}");
    assert!(
        stdout.contains("skipped 500 rows already present and 0 bad rows"),
        "{stdout}"
    );
    assert_eq!(stderr.lines().count(), 0, "{stderr}");
}

#[test]
fn backfill_in_m_is_refused_as_minutes() {
    let tmp = tempfile::tempdir().expect("temp");
    let out = dictmon()
        .args(["simulate", "--backfill", "13m", "--data-dir"])
        .arg(tmp.path().join("data"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--backfill 13mo"), "{stderr}");
}

/// Reads one line of the command's output, closes the pipe, and returns its exit status and
/// standard error.
fn first_line_then_close(cmd: &mut std::process::Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("a first line");
    assert!(!line.is_empty());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_into_a_closed_pipe_stops_quietly() {
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    backfill(&data, "3d");
    // Megabytes of rows, far past what a pipe holds once its reader is gone.
    let (status, stderr) = first_line_then_close(
        dictmon()
            .args(["query", "states", "--format", "csv", "--data-dir"])
            .arg(&data),
    );
    assert_eq!(status, Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // (`completions bash` takes the same path, but its 37 KB fit in a pipe's buffer, so a
    // test could not tell whether its write ever met the closed pipe.)
}

#[test]
fn a_reader_outside_the_data_directory_s_group_is_told_why() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp");
    let data = tmp.path().join("data");
    backfill(&data, "1h");
    let mode = |path: &std::path::Path, m: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    mode(tmp.path(), 0o755);
    // As installed: the owner and its group read it, nobody else.
    mode(&data, 0o750);
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if root {
        // Root reads everything: the reader is `nobody`, in no group of ours.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_dictmon"));
        c
    } else {
        mode(&data, 0o000);
        dictmon()
    };
    let out = cmd
        .args(["status", "--data-dir"])
        .arg(&data)
        .output()
        .expect("run");
    mode(&data, 0o755);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(stderr.contains("usermod -aG dictmon"), "{stderr}");
    assert!(!stderr.contains("not a dictmon data directory"), "{stderr}");
}
