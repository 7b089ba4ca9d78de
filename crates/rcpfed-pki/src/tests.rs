#![allow(clippy::unwrap_used)]

use super::*;
use std::os::unix::fs::PermissionsExt as _;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

fn plan() -> PkiPlan {
    PkiPlan {
        federation_id: "rcp-federation".to_owned(),
        hub: MemberPlan {
            id: "gfmd".to_owned(),
            name: "Global Forum on Migration and Development".to_owned(),
            kind: "hub".to_owned(),
            states: Vec::new(),
        },
        nodes: vec![
            MemberPlan {
                id: "colombo".to_owned(),
                name: "Colombo Process".to_owned(),
                kind: "RCP".to_owned(),
                states: vec![MemberStateFile {
                    iso3: "IND".to_owned(),
                    since: "2003-04-01".to_owned(),
                    until: String::new(),
                }],
            },
            MemberPlan {
                id: "midwa".to_owned(),
                name: "Migration Dialogue for West Africa".to_owned(),
                kind: "RCP".to_owned(),
                states: vec![MemberStateFile {
                    iso3: "BFA".to_owned(),
                    since: String::new(),
                    until: "2025-01-29".to_owned(),
                }],
            },
        ],
        operators: vec!["alice".to_owned()],
        server_hosts: default_server_hosts(),
        member_hosts: Default::default(),
        valid_days: 30,
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    pem.contents
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn uris(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_a_consistent_federation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let layout = init(&dir, &plan()).unwrap();

    let ca_der = pem_der(&layout.ca_cert());
    let ca = parse(&ca_der);
    let bc = ca.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = ca.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(
        ca.subject()
            .iter_common_name()
            .any(|cn| cn.as_str().unwrap() == "rcpfed federation CA rcp-federation")
    );
    ca.verify_signature(None).unwrap();
    assert_eq!(mode(&layout.ca_key()), 0o600);
    assert_eq!(mode(&layout.dir), 0o700);

    let expect = [
        ("gfmd", "spiffe://rcp-federation/node/gfmd", true),
        ("colombo", "spiffe://rcp-federation/node/colombo", true),
        ("midwa", "spiffe://rcp-federation/node/midwa", true),
        ("alice", "spiffe://rcp-federation/operator/alice", false),
    ];
    for (id, spiffe, serves) in expect {
        let der = pem_der(&layout.tls_cert(id));
        let cert = parse(&der);
        assert_eq!(uris(&cert), vec![spiffe.to_owned()], "{id}");
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert!(
            cert.verify_signature(Some(cert.public_key())).is_err(),
            "{id} is not self-signed"
        );
        assert_eq!(cert.issuer(), ca.subject());
        assert!(
            cert.subject()
                .iter_common_name()
                .any(|cn| cn.as_str().unwrap() == id)
        );
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth);
        assert_eq!(eku.server_auth, serves, "{id}");
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let has_localhost = san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::DNSName("localhost")));
        let has_loopback = san
            .value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(ip) if *ip == [127, 0, 0, 1]));
        assert_eq!(has_localhost, serves, "{id}");
        assert_eq!(has_loopback, serves, "{id}");
        assert!(cert.validity().not_after <= ca.validity().not_after);
        assert_eq!(mode(&layout.tls_key(id)), 0o600);
        assert_eq!(mode(&layout.member_dir(id)), 0o700);
        // The TLS key parses and matches the certificate.
        let key = KeyPair::from_pem(&std::fs::read_to_string(layout.tls_key(id)).unwrap()).unwrap();
        assert_eq!(
            key.public_key_raw(),
            cert.public_key().subject_public_key.data.as_ref()
        );
        let signing = layout.signing_key(id);
        if serves {
            assert_eq!(mode(&signing), 0o600);
        } else {
            assert!(!signing.exists(), "operators get no signing key");
        }
    }

    let text = std::fs::read_to_string(layout.federation_file()).unwrap();
    let fed = Federation::from_toml(&text).unwrap();
    assert_eq!(fed.federation_id, "rcp-federation");
    assert_eq!(fed.hub_id, "gfmd");
    let hub = fed.hub().unwrap();
    assert_eq!(hub.kind, "hub");
    assert!(hub.has_role(Role::Reader) && !hub.has_role(Role::Publisher));
    let colombo = fed
        .member_by_spiffe("spiffe://rcp-federation/node/colombo")
        .unwrap();
    assert!(colombo.has_role(Role::Publisher) && colombo.has_role(Role::Witness));
    assert!(colombo.ever_had_state("IND"));
    let secret =
        SecretKey::from_file_text(&std::fs::read_to_string(layout.signing_key("colombo")).unwrap())
            .unwrap();
    let (owner, key) = fed.key_owner(secret.key_id()).unwrap();
    assert_eq!(owner.id, "colombo");
    assert!(key.verify_strict(b"m", &secret.sign(b"m")));
    let midwa = fed.member("midwa").unwrap();
    assert_eq!(
        midwa.states[0].until,
        Some(time::macros::date!(2025 - 01 - 29))
    );
    let alice = fed
        .member_by_spiffe("spiffe://rcp-federation/operator/alice")
        .unwrap();
    assert_eq!(alice.kind, "operator");
    assert!(alice.has_role(Role::Admin) && alice.keys.is_empty());
}

#[test]
fn refuses_a_second_init() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = init(tmp.path(), &plan()).unwrap();
    let before = std::fs::read(layout.ca_cert()).unwrap();
    let err = init(tmp.path(), &plan()).unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists(_)), "{err}");
    assert_eq!(std::fs::read(layout.ca_cert()).unwrap(), before);
}

#[test]
fn refuses_bad_plans_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = plan();
    p.operators.push("colombo".to_owned());
    assert!(matches!(
        init(tmp.path(), &p),
        Err(PkiError::InvalidPlan(_))
    ));
    let mut p = plan();
    p.nodes[0].id = "Colombo".to_owned();
    assert!(matches!(
        init(tmp.path(), &p),
        Err(PkiError::InvalidPlan(_))
    ));
    let mut p = plan();
    p.server_hosts.push("not a host".to_owned());
    assert!(matches!(
        init(tmp.path(), &p),
        Err(PkiError::InvalidPlan(_))
    ));
    let mut p = plan();
    p.hub.kind = "RCP".to_owned();
    assert!(matches!(
        init(tmp.path(), &p),
        Err(PkiError::InvalidPlan(_))
    ));
    assert!(!PkiLayout::new(tmp.path()).ca_key().exists());
}

#[test]
fn issues_a_later_member_cert() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = init(tmp.path(), &plan()).unwrap();
    let spiffe = issue_member_cert(
        &layout,
        "rcp-federation",
        "abu-dhabi",
        IdentityKind::Node,
        &["hub.example.org".to_owned()],
        10_000,
    )
    .unwrap();
    assert_eq!(spiffe, "spiffe://rcp-federation/node/abu-dhabi");
    let ca_der = pem_der(&layout.ca_cert());
    let ca = parse(&ca_der);
    let der = pem_der(&layout.tls_cert("abu-dhabi"));
    let cert = parse(&der);
    cert.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    assert_eq!(uris(&cert), vec![spiffe]);
    assert!(cert.validity().not_after <= ca.validity().not_after);
    assert_eq!(mode(&layout.tls_key("abu-dhabi")), 0o600);

    let err = issue_member_cert(
        &layout,
        "rcp-federation",
        "abu-dhabi",
        IdentityKind::Node,
        &[],
        1,
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::AlreadyExists(_)), "{err}");
    let err =
        issue_member_cert(&layout, "other-fed", "bob", IdentityKind::Operator, &[], 1).unwrap_err();
    assert!(matches!(err, PkiError::Ca(_)), "{err}");
}

/// The CRL in `crl.pem`, checked: issued by the CA, signed by it. Returns (CRL number, serials).
fn read_crl(layout: &PkiLayout) -> (u64, Vec<String>) {
    let ca_der = pem_der(&layout.ca_cert());
    let ca = parse(&ca_der);
    let text = std::fs::read(layout.crl()).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text).unwrap();
    assert_eq!(pem.label, "X509 CRL");
    let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
    assert_eq!(crl.issuer(), ca.subject());
    crl.verify_signature(ca.public_key()).unwrap();
    let next = crl.next_update().unwrap().timestamp();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert!(next > now + 29 * 86_400 && next <= now + 31 * 86_400);
    let number: u64 = crl.crl_number().unwrap().try_into().unwrap();
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| serial_hex(r.raw_serial()))
        .collect();
    (number, serials)
}

#[test]
fn init_writes_an_empty_crl_and_revoke_adds_member_serials() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = init(&tmp.path().join("pki"), &plan()).unwrap();
    assert_eq!(read_crl(&layout), (1, Vec::new()));
    assert_eq!(read_revoked(&layout).unwrap().crl_number, 1);
    assert_eq!(mode(&layout.crl()), 0o644);

    // rcgen derives serials from the key; they can be read back from the certificate.
    let colombo = cert_serial(&layout.tls_cert("colombo")).unwrap();
    let midwa = cert_serial(&layout.tls_cert("midwa")).unwrap();
    assert_ne!(colombo, midwa);
    assert!(colombo.len() >= 2 && colombo.len() <= 42, "{colombo}");

    let r = revoke(
        &layout,
        &RevokeTarget::Member("colombo".into()),
        RevocationReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(r.crl, layout.crl());
    assert_eq!(
        (r.crl_number, r.revoked_count, r.newly_revoked),
        (2, 1, true)
    );
    assert_eq!(r.serial, colombo);
    assert_eq!(read_crl(&layout), (2, vec![colombo.clone()]));
    let list = read_revoked(&layout).unwrap();
    assert_eq!(list.revoked[0].member, "colombo");
    assert_eq!(list.revoked[0].reason, RevocationReason::KeyCompromise);

    // Again: nothing new, but a fresh CRL with the next number.
    let again = revoke(
        &layout,
        &RevokeTarget::Member("colombo".into()),
        RevocationReason::Unspecified,
    )
    .unwrap();
    assert_eq!(
        (again.crl_number, again.revoked_count, again.newly_revoked),
        (3, 1, false)
    );

    // By serial, with colons and upper case.
    let spaced: String = midwa
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let by_serial = revoke(
        &layout,
        &RevokeTarget::Serial(spaced),
        RevocationReason::Superseded,
    )
    .unwrap();
    assert_eq!(by_serial.serial, midwa);
    assert_eq!(read_crl(&layout), (4, vec![colombo, midwa]));

    assert!(matches!(
        revoke(
            &layout,
            &RevokeTarget::Member("nobody".into()),
            RevocationReason::Unspecified
        ),
        Err(PkiError::InvalidPlan(_))
    ));
    assert!(matches!(
        revoke(
            &layout,
            &RevokeTarget::Serial("xyz".into()),
            RevocationReason::Unspecified
        ),
        Err(PkiError::InvalidPlan(_))
    ));
    assert_eq!(read_crl(&layout).0, 4, "refused revocations write nothing");
    assert_eq!(
        "key-compromise".parse::<RevocationReason>().unwrap(),
        RevocationReason::KeyCompromise
    );
    assert!("bogus".parse::<RevocationReason>().is_err());
}

/// Each member's own names go in its certificate only; a non-loopback name for everyone, or
/// one name for two members, is refused (issue 9 finding 3: a member posing as the hub).
#[test]
fn each_member_certificate_carries_its_own_names_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = plan();
    p.member_hosts
        .insert(p.hub.id.clone(), vec!["hub.gfmd.example".to_owned()]);
    p.member_hosts.insert(
        p.nodes[0].id.clone(),
        vec!["node.one.example".to_owned(), "10.0.0.7".to_owned()],
    );
    let layout = init(tmp.path(), &p).unwrap();
    let names = |id: &str| -> Vec<String> {
        let der = pem_der(&layout.member_dir(id).join("tls.pem"));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        san.value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other}"),
            })
            .collect()
    };
    let hub = names(&p.hub.id);
    assert!(hub.contains(&"hub.gfmd.example".to_owned()), "{hub:?}");
    assert!(!hub.contains(&"node.one.example".to_owned()), "{hub:?}");
    let node = names(&p.nodes[0].id);
    assert!(node.contains(&"node.one.example".to_owned()), "{node:?}");
    assert!(!node.contains(&"hub.gfmd.example".to_owned()), "{node:?}");
    let other = names(&p.nodes[1].id);
    assert!(!other.iter().any(|n| n.ends_with(".example")), "{other:?}");

    let mut p = plan();
    p.server_hosts.push("hub.gfmd.example".to_owned());
    let err = init(tempfile::tempdir().unwrap().path(), &p).unwrap_err();
    assert!(err.to_string().contains("every member"), "{err}");
    let mut p = plan();
    p.member_hosts
        .insert(p.hub.id.clone(), vec!["x.example".to_owned()]);
    p.member_hosts
        .insert(p.nodes[0].id.clone(), vec!["X.example".to_owned()]);
    let err = init(tempfile::tempdir().unwrap().path(), &p).unwrap_err();
    assert!(err.to_string().contains("one member"), "{err}");
    let mut p = plan();
    p.member_hosts
        .insert("alice".to_owned(), vec!["a.example".to_owned()]);
    assert!(init(tempfile::tempdir().unwrap().path(), &p).is_err());
    assert!(is_loopback_host("localhost") && is_loopback_host("a.localhost"));
    assert!(is_loopback_host("127.0.0.1") && is_loopback_host("::1"));
    assert!(!is_loopback_host("10.0.0.7") && !is_loopback_host("localhost.example"));
}
