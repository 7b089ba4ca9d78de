//! mTLS connections of the CLI commands that reach a server (publish, query, report, export,
//! registry publish/fetch) and of the demo.
//!
//! Every mistake in reaching a server comes back as one line that says what is wrong and what
//! to try, and nothing else is printed: a node's port where the hub is expected or the reverse,
//! an ops port (plaintext), `http://`, another federation's CA, a `--pki` directory, identity or
//! file that is not there, nothing listening, a member posing as the hub, a server that refuses
//! this client's certificate. The connection is made before the first call (not lazily), and a
//! health check names the service the command needs, so a wrong port is told apart from a call
//! the server refuses.

use anyhow::{Result, anyhow, bail};
use rcpfed_grpc::client_tls::{IdentityRefused, error_chain};
use rcpfed_grpc::tls::{TlsError, TlsFiles};
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

/// TCP connect plus TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The health check that tells what the server is.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

const HUB_SERVICE: &str = "rcpfed.v1.HubService";
const NODE_SERVICE: &str = "rcpfed.v1.NodeService";

/// What a command needs at the other end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The hub (HubService); its SPIFFE id is checked when the PKI directory names it.
    Hub,
    /// A node (NodeService).
    Node,
    /// The hub or a node (IndicatorService, served by both).
    Either,
}

impl Role {
    fn server(self) -> &'static str {
        match self {
            Role::Hub => "the hub",
            Role::Node => "the node",
            Role::Either => "the hub or the node",
        }
    }
}

/// What a server is, by the services its health check knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// It serves HubService.
    Hub,
    /// It serves NodeService.
    Node,
    /// Neither (not an rcpfed server, or no health service).
    Other,
}

/// Where to connect, and how the operator named it (for the messages).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// "https://host:port".
    pub endpoint: &'a str,
    /// The flag that gave it: `--hub`, `--node`, `--endpoint`.
    pub flag: &'static str,
    /// What must answer there.
    pub role: Role,
}

/// TLS files of a member in a PKI directory written by `rcpfed pki init`, unchecked (the demo's
/// own directory).
pub fn identity_in(pki_dir: &Path, member: &str) -> TlsFiles {
    let dir = pki_dir.join("members").join(member);
    TlsFiles {
        ca_cert: pki_dir.join("ca.pem"),
        cert: dir.join("tls.pem"),
        key: dir.join("tls.key"),
    }
}

/// The TLS files of `identity` in the PKI directory `pki` (`--pki`, `--identity`), each checked
/// to be there, with one line saying which is missing.
pub fn identity_files(pki: &Path, identity: &str) -> Result<TlsFiles> {
    const WRITTEN_BY: &str = "give the directory that rcpfed pki init wrote (it holds ca.pem and members/), or set RCPFED_PKI_DIR";
    if !pki.is_dir() {
        if pki.exists() {
            bail!("--pki {}: not a directory; {WRITTEN_BY}", pki.display());
        }
        bail!("--pki {}: no such directory; {WRITTEN_BY}", pki.display());
    }
    let files = identity_in(pki, identity);
    if !files.ca_cert.is_file() {
        bail!(
            "--pki {}: there is no ca.pem in it; {WRITTEN_BY}",
            pki.display()
        );
    }
    let member_dir = pki.join("members").join(identity);
    if !member_dir.is_dir() {
        let mut known: Vec<String> = std::fs::read_dir(pki.join("members"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("tls.pem").is_file())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        known.sort();
        let listed = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        bail!(
            "--identity {identity}: there is no {} (identities in {}: {listed}); pass --identity or set RCPFED_IDENTITY",
            member_dir.display(),
            pki.display()
        );
    }
    for (what, path) in [("certificate", &files.cert), ("private key", &files.key)] {
        if !path.is_file() {
            bail!(
                "{} is missing: the identity {identity} in {} has no TLS {what}",
                path.display(),
                pki.display()
            );
        }
    }
    Ok(files)
}

/// The endpoint as a URI, refused in plain words unless it is `https://host[:port]`.
fn endpoint_uri(target: &Target<'_>) -> Result<http::Uri> {
    let Target { endpoint, flag, .. } = *target;
    let example = match target.role {
        Role::Node => "https://localhost:50061",
        Role::Hub | Role::Either => "https://localhost:50051",
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| {
        anyhow!("{flag} {endpoint:?} is not an address: give https://host:port, e.g. {example}")
    })?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") => bail!(
            "{flag} {endpoint}: rcpfed speaks only mutual TLS; use https://{}",
            uri.authority().map(|a| a.as_str()).unwrap_or("host:port")
        ),
        Some(other) => bail!(
            "{flag} {endpoint}: {other}:// is not served; use https://host:port, e.g. {example}"
        ),
        None => bail!("{flag} {endpoint}: the address needs https://, e.g. https://{endpoint}"),
    }
    if uri.host().is_none_or(str::is_empty) {
        bail!("{flag} {endpoint}: no host; use https://host:port, e.g. {example}");
    }
    Ok(uri)
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

/// A connected channel to `target`, checked to be the kind of server its role needs. For the
/// hub, when the member file of the PKI directory names it, the server must present that hub's
/// SPIFFE id and not be revoked by the directory's `crl.pem` (another member's certificate is
/// refused); otherwise only the host name is checked.
pub async fn open(target: &Target<'_>, tls: &TlsFiles) -> Result<Channel> {
    let uri = endpoint_uri(target)?;
    let host = uri
        .host()
        .unwrap_or("localhost")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let hub = match target.role {
        Role::Hub => expected_hub(tls),
        Role::Node | Role::Either => None,
    };
    let dialled: Result<Channel, Box<dyn std::error::Error + Send + Sync>> = match hub {
        Some((federation_id, hub)) => {
            let crl = tls
                .ca_cert
                .parent()
                .map(|dir| dir.join("crl.pem"))
                .filter(|path| path.is_file());
            let expected = Some(hub);
            rcpfed_grpc::client_tls::connect_checked(
                target.endpoint,
                rcpfed_grpc::client_tls::ServerIdentityCheck {
                    files: tls.clone(),
                    crl,
                    federation_id,
                    expected: std::sync::Arc::new(move || expected.clone()),
                },
                rcpfed_grpc::client_tls::ChannelTiming {
                    connect_timeout: CONNECT_TIMEOUT,
                    ..Default::default()
                },
            )
            .await
        }
        None => {
            let config = tls.client_config(&host).map_err(|e| anyhow!("{e}"))?;
            match tonic::transport::Endpoint::from(uri).tls_config(config) {
                Ok(endpoint) => endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .connect()
                    .await
                    .map_err(Into::into),
                Err(e) => Err(e.into()),
            }
        }
    };
    let channel = dialled.map_err(|e| anyhow!("{}", explain(target, tls, e.as_ref())))?;
    check_kind(target, tls, &channel).await?;
    Ok(channel)
}

/// What the server at the other end of `channel` is: its health check knows HubService or
/// NodeService (checked in that order, or the reverse when a node is expected).
pub async fn server_kind(channel: &Channel, node_first: bool) -> Result<ServerKind, tonic::Status> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut health = HealthClient::new(channel.clone());
    let mut order = [
        (HUB_SERVICE, ServerKind::Hub),
        (NODE_SERVICE, ServerKind::Node),
    ];
    if node_first {
        order.reverse();
    }
    for (service, kind) in order {
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: service.into(),
        });
        request.set_timeout(PROBE_TIMEOUT);
        match health.check(request).await {
            // SERVING or NOT_SERVING: either way, this is the service's server.
            Ok(_) => return Ok(kind),
            Err(s) if s.code() == tonic::Code::NotFound => continue,
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(ServerKind::Other),
            Err(s) => return Err(s),
        }
    }
    Ok(ServerKind::Other)
}

/// Refuses a server that is not what `target.role` needs, naming what it is instead.
async fn check_kind(target: &Target<'_>, tls: &TlsFiles, channel: &Channel) -> Result<()> {
    let kind = match server_kind(channel, target.role == Role::Node).await {
        Ok(kind) => kind,
        // A failure of the connection is worded now; anything else is left to the call.
        Err(status) => match explain_status(target, Some(tls), &status) {
            Some(line) => bail!(line),
            None => match diagnose(target, tls).await {
                Some(line) => bail!(line),
                // Not a connection problem that can be named: the call will say what it is.
                None => return Ok(()),
            },
        },
    };
    let Target { endpoint, flag, .. } = *target;
    match (target.role, kind) {
        (Role::Hub, ServerKind::Hub)
        | (Role::Node, ServerKind::Node)
        | (Role::Either, ServerKind::Hub | ServerKind::Node) => Ok(()),
        (Role::Node, ServerKind::Hub) => bail!(
            "{endpoint} is the hub, not a node: this command goes through your node; give {flag} \
             the node's gRPC address (listen in its configuration; rcpfed pki init gives the \
             first node https://localhost:50061)"
        ),
        (Role::Hub, ServerKind::Node) => bail!(
            "{endpoint} is a node, not the hub: give {flag} the hub's gRPC address (listen in \
             hub.toml; rcpfed pki init gives https://localhost:50051)"
        ),
        (role, _) => bail!(
            "{endpoint} answers gRPC but is not an rcpfed hub or node (its health check knows \
             neither {HUB_SERVICE} nor {NODE_SERVICE}); give {flag} the address of {}",
            role.server()
        ),
    }
}

/// Why the server dropped the connection, when a call could only see "connection closed" or
/// "broken pipe": a second dial that reads the server's first answer after the handshake,
/// where a refusal of our certificate (a TLS alert) shows.
async fn diagnose(target: &Target<'_>, tls: &TlsFiles) -> Option<String> {
    let uri = endpoint_uri(target).ok()?;
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let config = match target.role {
        Role::Hub => expected_hub(tls).map(|(federation_id, hub)| {
            let expected = Some(hub);
            rcpfed_grpc::client_tls::ServerIdentityCheck {
                files: tls.clone(),
                crl: None,
                federation_id,
                expected: std::sync::Arc::new(move || expected.clone()),
            }
            .client_config()
        }),
        Role::Node | Role::Either => None,
    }
    .unwrap_or_else(|| rcpfed_grpc::client_tls::webpki_client_config(tls))
    .ok()?;
    let error = rcpfed_grpc::client_tls::first_answer(&host, port, config, PROBE_TIMEOUT)
        .await
        .err()?;
    explain_chain(target, Some(tls), error.as_ref())
}

/// A failed connection in one line: what is wrong and what to try.
fn explain(
    target: &Target<'_>,
    tls: &TlsFiles,
    error: &(dyn std::error::Error + 'static),
) -> String {
    explain_chain(target, Some(tls), error).unwrap_or_else(|| {
        let innermost = error_chain(error)
            .last()
            .map(|e| e.to_string())
            .unwrap_or_default();
        format!("cannot connect to {}: {innermost}", target.endpoint)
    })
}

/// The wording of a known connection failure found in `error`'s chain, if there is one.
fn explain_chain(
    target: &Target<'_>,
    tls: Option<&TlsFiles>,
    error: &(dyn std::error::Error + 'static),
) -> Option<String> {
    let at = target.endpoint;
    if let Some(refused) = IdentityRefused::find(error) {
        return Some(not_the_hub(target, tls, refused));
    }
    for cause in error_chain(error) {
        if let Some(alert) = cause.to_string().strip_prefix(ALERT_PREFIX) {
            return Some(refused_us(target, tls, alert.trim()));
        }
        if let Some(e) = cause.downcast_ref::<TlsError>() {
            return Some(e.to_string());
        }
        if let Some(e) = cause.downcast_ref::<rustls::Error>() {
            return Some(explain_tls(target, tls, e));
        }
        if cause.is::<tonic::TimeoutExpired>() {
            return Some(timed_out(at));
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    let place = http::Uri::try_from(at)
                        .ok()
                        .and_then(|u| u.authority().map(|a| a.to_string()))
                        .unwrap_or_else(|| at.to_string());
                    return Some(format!(
                        "nothing listens at {place} (connection refused): is {} running, and \
                         is this its gRPC port (listen in its configuration)? Check {}",
                        target.role.server(),
                        target.flag
                    ));
                }
                std::io::ErrorKind::TimedOut => return Some(timed_out(at)),
                _ => {}
            }
        }
    }
    None
}

fn timed_out(at: &str) -> String {
    format!(
        "{at} did not answer within {} s (TCP connect and TLS handshake): is the host right, and \
         does a firewall let the port through?",
        CONNECT_TIMEOUT.as_secs()
    )
}

fn ca_name(tls: Option<&TlsFiles>) -> String {
    tls.map_or("the federation CA".to_string(), |t| {
        t.ca_cert.display().to_string()
    })
}

fn explain_tls(target: &Target<'_>, tls: Option<&TlsFiles>, error: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let at = target.endpoint;
    match error {
        rustls::Error::InvalidMessage(_) => format!(
            "{at} does not answer TLS: it looks like a plaintext port, such as an ops port \
             (health and /metrics, ops_listen); give {} the gRPC port of {} (listen in its \
             configuration)",
            target.flag,
            target.role.server()
        ),
        rustls::Error::InvalidCertificate(C::BadSignature | C::UnknownIssuer | C::BadEncoding) => {
            format!(
                "{at} presented a certificate that {} did not sign: the server belongs to another \
             federation, or --pki names another federation's directory",
                ca_name(tls)
            )
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            format!(
                "{at}'s certificate is not valid for this host name: connect by a name the \
                 certificate carries (rcpfed pki init: localhost or 127.0.0.1)"
            )
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("{at}'s certificate has expired: its operator must renew it (rcpfed pki)")
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            format!("{at}'s certificate is not valid yet: check the clocks of both machines")
        }
        rustls::Error::InvalidCertificate(C::Revoked) => format!(
            "{at}'s certificate is revoked by the CRL next to {}: this server may not be talked to",
            ca_name(tls)
        ),
        rustls::Error::InvalidCertificate(other) => {
            format!("{at}'s certificate is refused: {other:?}")
        }
        rustls::Error::AlertReceived(alert) => refused_us(target, tls, &format!("{alert:?}")),
        other => format!("the TLS handshake with {at} failed: {other}"),
    }
}

/// Prefix of the message of a TLS alert from the server, as it reaches us once the handshake
/// is over (TLS 1.3: the server checks our certificate after we finish): an `io::Error` with
/// only the text of rustls's error.
const ALERT_PREFIX: &str = "received fatal alert: ";

/// The server refused our certificate with the TLS alert `alert` (rustls's name for it).
fn refused_us(target: &Target<'_>, tls: Option<&TlsFiles>, alert: &str) -> String {
    let cert = tls
        .map(|t| format!(" {}", t.cert.display()))
        .unwrap_or_default();
    let why = match alert {
        "CertificateRevoked" => {
            "it is revoked (rcpfed pki revoke-cert): use another identity (--identity) or ask the \
             federation CA for a new certificate"
        }
        "CertificateExpired" => "it has expired: ask the federation CA for a new certificate",
        "UnknownCA" | "BadCertificate" | "DecryptError" => {
            "the server does not trust its CA: --pki names another federation's directory?"
        }
        _ => {
            "it is revoked, expired, or not from the server's federation CA; check --pki and \
             --identity"
        }
    };
    format!(
        "{} refused this client's certificate{cert} (TLS alert {alert}): {why}",
        target.endpoint
    )
}

fn not_the_hub(target: &Target<'_>, tls: Option<&TlsFiles>, refused: &IdentityRefused) -> String {
    let node_prefix = format!("spiffe://{}/node/", refused.federation_id);
    let presented = match refused.presented.as_slice() {
        [] => "no SPIFFE id".to_string(),
        [one] => match one.strip_prefix(&node_prefix) {
            Some(member) => format!("the identity of the member {member} ({one})"),
            None => one.clone(),
        },
        many => many.join(", "),
    };
    let expected = refused
        .expected
        .as_deref()
        .unwrap_or("a hub or node identity");
    let source = tls
        .and_then(|t| t.ca_cert.parent())
        .map(|dir| format!(" (from {})", dir.join("federation.toml").display()))
        .unwrap_or_default();
    format!(
        "{} is not the hub: it presented {presented}, but the hub of this federation is \
         {expected}{source}; give {} the hub's gRPC address (a node's port?)",
        target.endpoint, target.flag
    )
}

/// The wording of a status that carries a connection failure (a closed connection, a refused
/// certificate), or of UNIMPLEMENTED without a message (a call the server does not serve).
fn explain_status(
    target: &Target<'_>,
    tls: Option<&TlsFiles>,
    status: &tonic::Status,
) -> Option<String> {
    use std::error::Error as _;
    if let Some(line) = status.source().and_then(|s| explain_chain(target, tls, s)) {
        return Some(line);
    }
    if status.code() == tonic::Code::Unimplemented && status.message().is_empty() {
        return Some(format!(
            "{} does not serve this call: is it the right server ({}) and an rcpfed of the same \
             version? Check {}",
            target.endpoint,
            target.role.server(),
            target.flag
        ));
    }
    None
}

/// A NodeService client of a connected channel to a node.
pub async fn node_client(
    endpoint: &str,
    flag: &'static str,
    tls: &TlsFiles,
) -> Result<NodeServiceClient<Channel>> {
    Ok(node_service(node_channel(endpoint, flag, tls).await?))
}

/// A connected channel to a node (checked to be one), for its NodeService and
/// IndicatorService.
pub async fn node_channel(endpoint: &str, flag: &'static str, tls: &TlsFiles) -> Result<Channel> {
    let target = Target {
        endpoint,
        flag,
        role: Role::Node,
    };
    open(&target, tls).await
}

/// A NodeService client on `channel`, with the federation's message limits.
pub fn node_service(channel: Channel) -> NodeServiceClient<Channel> {
    NodeServiceClient::new(channel)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
}

/// A HubService client of a connected channel to the hub, its identity checked as in [`open`].
pub async fn hub_client(
    endpoint: &str,
    flag: &'static str,
    tls: &TlsFiles,
) -> Result<HubServiceClient<Channel>> {
    let target = Target {
        endpoint,
        flag,
        role: Role::Hub,
    };
    Ok(HubServiceClient::new(open(&target, tls).await?)
        .max_decoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(rcpfed_grpc::limits::MAX_MESSAGE_BYTES))
}

/// A connected channel to the hub or a node (IndicatorService).
pub async fn connect(endpoint: &str, flag: &'static str, tls: &TlsFiles) -> Result<Channel> {
    open(
        &Target {
            endpoint,
            flag,
            role: Role::Either,
        },
        tls,
    )
    .await
}

/// A failed call as an error for the CLI's output, in the words of [`describe_status`].
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{}", describe_status(&status))
}

/// A status in plain words, with its ErrorInfo reason and field violations. A status that
/// carries a connection failure is worded as [`open`] words it.
pub fn describe_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let unnamed = Target {
        endpoint: "the server",
        flag: "the address",
        role: Role::Either,
    };
    if let Some(line) = explain_status(&unnamed, None, status) {
        return line;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str, role: Role) -> Target<'_> {
        Target {
            endpoint,
            flag: "--hub",
            role,
        }
    }

    fn uri_error(endpoint: &str) -> String {
        endpoint_uri(&target(endpoint, Role::Hub))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn only_https_endpoints_pass() {
        assert!(endpoint_uri(&target("https://localhost:50051", Role::Hub)).is_ok());
        assert_eq!(
            uri_error("http://localhost:50051"),
            "--hub http://localhost:50051: rcpfed speaks only mutual TLS; use https://localhost:50051"
        );
        assert_eq!(
            uri_error("localhost:50051"),
            "--hub localhost:50051: the address needs https://, e.g. https://localhost:50051"
        );
        assert!(uri_error("not an address").contains("is not an address"));
        assert!(uri_error("ftp://localhost:21").contains("ftp:// is not served"));
    }

    #[test]
    fn missing_pki_pieces_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("fed");
        let error = |identity: &str| {
            identity_files(&pki, identity)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            error("operator").contains("no such directory"),
            "{}",
            error("operator")
        );
        std::fs::create_dir_all(pki.join("members/operator")).expect("mkdir");
        assert!(error("operator").contains("there is no ca.pem"));
        std::fs::write(pki.join("ca.pem"), "x").expect("ca");
        std::fs::write(pki.join("members/operator/tls.pem"), "x").expect("cert");
        let missing_key = error("operator");
        assert!(
            missing_key.contains("tls.key is missing") && missing_key.contains("private key"),
            "{missing_key}"
        );
        std::fs::write(pki.join("members/operator/tls.key"), "x").expect("key");
        assert!(identity_files(&pki, "operator").is_ok());
        let unknown = error("nobody");
        assert!(
            unknown.starts_with("--identity nobody:")
                && unknown.contains("identities in")
                && unknown.contains("operator"),
            "{unknown}"
        );
    }

    #[test]
    fn tls_failures_say_what_to_do() {
        use rustls::CertificateError as C;
        let t = target("https://localhost:9051", Role::Hub);
        let plaintext = explain_tls(
            &t,
            None,
            &rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert!(
            plaintext.contains("ops port") && plaintext.contains("--hub"),
            "{plaintext}"
        );
        for foreign in [C::BadSignature, C::UnknownIssuer] {
            let line = explain_tls(&t, None, &rustls::Error::InvalidCertificate(foreign));
            assert!(line.contains("another federation"), "{line}");
        }
        let alert = explain_tls(
            &t,
            None,
            &rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        assert!(
            alert.contains("refused this client's certificate") && alert.contains("revoked"),
            "{alert}"
        );
        // After the handshake, the alert reaches us as text only.
        let late = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRevoked",
        );
        let line = explain_chain(&t, None, &late).unwrap_or_default();
        assert!(
            line.contains("(TLS alert CertificateRevoked): it is revoked"),
            "{line}"
        );
    }

    #[test]
    fn a_member_posing_as_the_hub_is_named() {
        let refused = IdentityRefused {
            presented: vec!["spiffe://fed/node/colombo".into()],
            expected: Some("spiffe://fed/node/gfmd".into()),
            federation_id: "fed".into(),
        };
        let line = not_the_hub(
            &target("https://localhost:50061", Role::Hub),
            None,
            &refused,
        );
        assert!(
            line.starts_with("https://localhost:50061 is not the hub: it presented the identity of the member colombo")
                && line.contains("spiffe://fed/node/gfmd")
                && line.contains("--hub"),
            "{line}"
        );
    }

    #[test]
    fn an_unimplemented_call_without_a_message_is_explained() {
        let line = describe_status(&tonic::Status::unimplemented(""));
        assert!(line.contains("does not serve this call"), "{line}");
        let line = describe_status(&tonic::Status::unimplemented("not in v1"));
        assert_eq!(line, "Unimplemented: not in v1");
    }
}
