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
    Ok(node_client_on(connect(endpoint, tls).await?))
}

/// A NodeService client on a connected channel.
pub fn node_client_on(channel: Channel) -> NodeServiceClient<Channel> {
    NodeServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
}

/// The federation id and the hub's SPIFFE id from the member file next to the CA certificate
/// (the layout of `rcpfed pki init`), if there is one.
fn expected_hub(tls: &TlsFiles) -> Option<(String, String)> {
    let dir = tls.ca_cert.parent()?;
    let text = std::fs::read_to_string(dir.join("federation.toml")).ok()?;
    let federation = rcpfed_core::members::Federation::from_toml(&text).ok()?;
    let hub = federation.hub()?.spiffe_id.clone();
    Some((federation.federation_id.clone(), hub))
}

/// A channel to the hub. When the member file of the PKI directory names the hub, the server
/// must present that hub's SPIFFE id and not be revoked by the directory's `crl.pem` (another
/// member's certificate is refused); otherwise only the host name is checked.
pub async fn connect_hub(endpoint: &str, tls: &TlsFiles) -> Result<Channel> {
    let Some((federation_id, hub)) = expected_hub(tls) else {
        return connect(endpoint, tls).await;
    };
    let crl = tls
        .ca_cert
        .parent()
        .map(|dir| dir.join("crl.pem"))
        .filter(|path| path.is_file());
    let expected = Some(hub);
    rcpfed_grpc::client_tls::checked_channel(
        endpoint,
        rcpfed_grpc::client_tls::ServerIdentityCheck {
            files: tls.clone(),
            crl,
            federation_id,
            expected: std::sync::Arc::new(move || expected.clone()),
        },
        rcpfed_grpc::client_tls::ChannelTiming::default(),
    )
    .map_err(|e| anyhow::anyhow!("cannot connect to {endpoint}: {e}"))
}

/// A HubService client; the hub's identity is checked as in [`connect_hub`].
pub async fn hub_client(endpoint: &str, tls: &TlsFiles) -> Result<HubServiceClient<Channel>> {
    Ok(HubServiceClient::new(connect_hub(endpoint, tls).await?)
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
