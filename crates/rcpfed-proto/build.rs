//! Compiles `proto/rcpfed/v1` with protox (pure Rust, so a fresh machine needs no `protoc`)
//! and writes the descriptor set that the servers publish through gRPC reflection.
//!
//! Two outputs: the messages (always), and with the `grpc` feature the gRPC stubs in a file of
//! their own that refers to those messages, so the messages build without tonic.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "rcpfed/v1/envelope.proto",
        "rcpfed/v1/registry.proto",
        "rcpfed/v1/statement.proto",
        "rcpfed/v1/hub_service.proto",
        "rcpfed/v1/node_service.proto",
        "rcpfed/v1/witness_service.proto",
        "rcpfed/v1/catalogue.proto",
        "rcpfed/v1/indicator_service.proto",
    ];
    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rcpfed_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // The messages only.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(descriptors.clone())?;
    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        // The stubs only: every message is taken from the module above.
        let grpc_dir = out_dir.join("grpc");
        std::fs::create_dir_all(&grpc_dir)?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .out_dir(&grpc_dir)
            .extern_path(".rcpfed.v1", "crate::v1")
            // prost's codec, but an undecodable message is INVALID_ARGUMENT with a reason.
            .codec_path("crate::codec::ProtoCodec")
            .compile_fds(descriptors)?;
    }
    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
