//! Who is calling: the peer certificate's one URI SAN, looked up in the member file.
//!
//! TLS has already checked the chain to the federation CA. Here we only read the identity and
//! decide per RPC whether that member has the role the RPC declares.

use rcpfed_core::members::{Federation, Member, Role};
use rcpfed_core::rejection::{RejectClass, Rejection, reasons};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::status::rejection_status;

fn unauthenticated(message: impl Into<String>) -> Status {
    rejection_status(&Rejection::new(
        RejectClass::Unauthenticated,
        reasons::PEER_UNAUTHENTICATED,
        message,
    ))
}

/// The URI SAN of the peer's leaf certificate. Exactly one URI SAN is required.
pub fn peer_spiffe_id<T>(request: &Request<T>) -> Result<String, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| unauthenticated("no client certificate was presented"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| unauthenticated("no client certificate was presented"))?;
    spiffe_id_of(leaf.as_ref())
}

/// Most leaf certificates whose SPIFFE id is remembered. A federation has far fewer members;
/// TLS admits only certificates of the federation CA, so nobody can fill it at will, and it is
/// emptied when full.
const SPIFFE_CACHE_ENTRIES: usize = 1024;

/// SPIFFE ids of the leaf certificates seen, so a peer's certificate is parsed once, not on
/// every request (the parse was 2.5 % of the hub's CPU per statement).
static SPIFFE_CACHE: OnceLock<Mutex<HashMap<Vec<u8>, String>>> = OnceLock::new();

/// The one URI SAN of a DER leaf certificate.
pub fn spiffe_id_of(leaf: &[u8]) -> Result<String, Status> {
    let cache = SPIFFE_CACHE.get_or_init(Mutex::default);
    if let Some(id) = cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(leaf)
    {
        return Ok(id.clone());
    }
    // A refusal is not remembered: it is rare, and its certificate never gets this far twice
    // on one connection.
    let id = parse_spiffe_id(leaf)?;
    let mut known = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if known.len() >= SPIFFE_CACHE_ENTRIES {
        known.clear();
    }
    known.insert(leaf.to_vec(), id.clone());
    Ok(id)
}

fn parse_spiffe_id(leaf: &[u8]) -> Result<String, Status> {
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|_| unauthenticated("the client certificate could not be parsed"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| unauthenticated("the client certificate has a malformed subjectAltName"))?
        .ok_or_else(|| unauthenticated("the client certificate has no subjectAltName"))?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => Ok((*one).to_string()),
        [] => Err(unauthenticated(
            "the client certificate has no URI SAN; rcpfed certificates carry spiffe://<federation>/node/<id>",
        )),
        _ => Err(unauthenticated(
            "the client certificate has more than one URI SAN; exactly one is allowed",
        )),
    }
}

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Any member of the federation in force.
    Member,
    /// Members with this role.
    Role(Role),
    /// The hub member by identity, or members with this role.
    HubOrRole(Role),
}

/// Decides `access` for the peer whose DER leaf certificate is `leaf`, before anything of the
/// request is read: UNAUTHENTICATED without a usable certificate, PERMISSION_DENIED for
/// non-members and members without the role (the same reasons as [`authorize`]).
pub fn admit(leaf: Option<&[u8]>, federation: &Federation, access: Access) -> Result<(), Status> {
    let leaf = leaf.ok_or_else(|| unauthenticated("no client certificate was presented"))?;
    let spiffe_id = spiffe_id_of(leaf)?;
    let member = member_of(federation, &spiffe_id)?;
    match access {
        Access::Member => Ok(()),
        Access::HubOrRole(_) if federation.hub().is_some_and(|hub| hub.id == member.id) => Ok(()),
        Access::Role(role) | Access::HubOrRole(role) => require_role(member, role).map(|_| ()),
    }
}

fn member_of<'f>(federation: &'f Federation, spiffe_id: &str) -> Result<&'f Member, Status> {
    federation.member_by_spiffe(spiffe_id).ok_or_else(|| {
        rejection_status(
            &Rejection::new(
                RejectClass::Forbidden,
                reasons::PEER_NOT_A_MEMBER,
                format!(
                    "{spiffe_id} is not a member of federation {}",
                    federation.federation_id
                ),
            )
            .with_meta("spiffe_id", spiffe_id.to_string()),
        )
    })
}

fn require_role(member: &Member, role: Role) -> Result<&Member, Status> {
    if !member.has_role(role) {
        return Err(rejection_status(
            &Rejection::new(
                RejectClass::Forbidden,
                reasons::ROLE_REQUIRED,
                format!(
                    "member {} does not have the {} role this call requires",
                    member.id,
                    role.as_str()
                ),
            )
            .with_meta("member", member.id.clone())
            .with_meta("required_role", role.as_str()),
        ));
    }
    Ok(member)
}

/// The member calling `request`, if it has `role`. Refuses unknown identities and members
/// without the role, naming both in the message.
pub fn authorize<'f, T>(
    request: &Request<T>,
    federation: &'f Federation,
    role: Role,
) -> Result<&'f Member, Status> {
    let spiffe_id = peer_spiffe_id(request)?;
    require_role(member_of(federation, &spiffe_id)?, role)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn leaf(uris: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        for uri in uris {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI((*uri).try_into().expect("uri")));
        }
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn a_certificate_is_read_once_and_answers_the_same_after() {
        let der = leaf(&["spiffe://fed/node/colombo"]);
        assert_eq!(spiffe_id_of(&der).unwrap(), "spiffe://fed/node/colombo");
        let cached = SPIFFE_CACHE
            .get()
            .expect("filled")
            .lock()
            .unwrap()
            .contains_key(&der);
        assert!(cached, "remembered after the first read");
        assert_eq!(spiffe_id_of(&der).unwrap(), "spiffe://fed/node/colombo");
        // Refusals are not remembered and keep their words.
        let two = leaf(&["spiffe://fed/node/a", "spiffe://fed/node/b"]);
        for _ in 0..2 {
            let err = spiffe_id_of(&two).unwrap_err();
            assert!(err.message().contains("more than one URI SAN"), "{err:?}");
        }
        assert!(spiffe_id_of(b"not a certificate").is_err());
    }
}
