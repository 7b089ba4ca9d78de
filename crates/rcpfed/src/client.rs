//! mTLS clients for operators and the demo.

use anyhow::{Context as _, Result};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::path::Path;
use tonic::transport::Channel;

/// TLS files of a member in a PKI directory written by `rcpfed pki init`.
pub fn identity_in(pki_dir: &Path, member: &str) -> TlsFiles {
    let dir = pki_dir.join("members").join(member);
    TlsFiles {
        ca_cert: pki_dir.join("ca.pem"),
        cert: dir.join("tls.pem"),
        key: dir.join("tls.key"),
    }
}

/// A connected channel over mTLS.
pub async fn connect(endpoint: &str, tls: &TlsFiles) -> Result<Channel> {
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("{endpoint:?} is not a URL"))?;
    let host = uri.host().unwrap_or("localhost").to_string();
    tonic::transport::Endpoint::from(uri)
        .tls_config(tls.client_config(&host)?)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

/// A NodeService client.
pub async fn node_client(endpoint: &str, tls: &TlsFiles) -> Result<NodeServiceClient<Channel>> {
    Ok(NodeServiceClient::new(connect(endpoint, tls).await?)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES))
}

/// A HubService client.
pub async fn hub_client(endpoint: &str, tls: &TlsFiles) -> Result<HubServiceClient<Channel>> {
    Ok(HubServiceClient::new(connect(endpoint, tls).await?)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES))
}

/// A failed call as an error for the CLI's output, in the words of [`describe_status`].
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", describe_status(&status))
}

/// A status in plain words, with its ErrorInfo reason and field violations.
pub fn describe_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = details.error_info() {
        text.push_str(&format!(" [reason {}]", info.reason));
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            text.push_str(&format!("\n  - {}: {}", v.field, v.description));
        }
    }
    text
}
