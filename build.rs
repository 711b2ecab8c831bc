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
    let descriptors = protox::compile(["proto/bridge.proto", "proto/alerts.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The build's effective user id, from `/proc/self/status` (`Uid: real effective …`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
