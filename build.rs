//! Generates the gRPC code (the Bridge's service, dictmon's alert stream) from `proto/` with a
//! pure-Rust protobuf compiler (protox): a fresh machine builds with cargo alone, no `protoc`.
//!
//! Also sets `cfg(dictmon_test_root)` when the build runs as root: the tests that need root
//! (mounts) are compiled as `#[ignore]`d otherwise, so that `cargo test` counts them as
//! skipped, not passed. CI builds and runs as root.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo::rustc-check-cfg=cfg(dictmon_test_root)");
    if effective_uid() == Some(0) {
        println!("cargo::rustc-cfg=dictmon_test_root");
    }
    build_info();
    let descriptors = protox::compile(["proto/bridge.proto", "proto/alerts.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// `dictmon_build_info`'s labels: the git revision of the source (`unknown` outside a git
/// checkout, e.g. a source package) and the compiler's version.
fn build_info() {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let revision =
        run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    // `rustc 1.89.0 (29483883e 2025-08-04)` → `1.89.0`.
    let version = version
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_owned();
    println!("cargo:rustc-env=DICTMON_REVISION={revision}");
    println!("cargo:rustc-env=DICTMON_RUSTC={version}");
    // A new commit changes the revision: watch HEAD and the branch it points to (only files
    // that exist: a missing one would make cargo run this script at every build).
    let watched = [
        ".git/HEAD".to_owned(),
        git_ref().unwrap_or_default(),
        // Where the branch lives once git has packed its refs.
        ".git/packed-refs".to_owned(),
    ];
    for path in watched {
        if !path.is_empty() && std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// The file of the branch `.git/HEAD` names (`ref: refs/heads/main` → `.git/refs/heads/main`).
fn git_ref() -> Option<String> {
    let head = std::fs::read_to_string(".git/HEAD").ok()?;
    Some(format!(".git/{}", head.strip_prefix("ref: ")?.trim()))
}

/// The build's effective user id, from `/proc/self/status` (`Uid: real effective …`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
