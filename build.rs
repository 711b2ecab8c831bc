//! Generates the gRPC code (the Bridge's service, dictmon's alert stream) from `proto/` with a
//! pure-Rust protobuf compiler (protox): a fresh machine builds with cargo alone, no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["proto/bridge.proto", "proto/alerts.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
