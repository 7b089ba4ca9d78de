//! Revocation cannot go backwards (issue 9, finding 9): the reloading acceptor refuses a CRL
//! whose CRL Number is lower than that of the CRL in force, and keeps the newer one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rcpfed_grpc::acceptor::ReloadOutcome;
use rcpfed_grpc::tls::{ReloadingTlsAcceptor, TlsFiles};
use rcpfed_pki::{MemberPlan, PkiPlan, RevocationReason, RevokeTarget};

fn member(id: &str, kind: &str) -> MemberPlan {
    MemberPlan {
        id: id.into(),
        name: id.into(),
        kind: kind.into(),
        states: Vec::new(),
    }
}

#[test]
fn an_older_crl_does_not_replace_a_newer_one() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = rcpfed_pki::init(
        &tmp.path().join("pki"),
        &PkiPlan {
            federation_id: "rcp-federation".into(),
            hub: member("gfmd", "hub"),
            nodes: vec![member("colombo", "RCP")],
            operators: vec!["operator".into()],
            server_hosts: rcpfed_pki::default_server_hosts(),
            valid_days: 2,
        },
    )
    .expect("pki init");
    let files = TlsFiles {
        ca_cert: layout.ca_cert(),
        cert: layout.tls_cert("gfmd"),
        key: layout.tls_key("gfmd"),
    };
    let acceptor = ReloadingTlsAcceptor::new(files, Some(layout.crl())).unwrap();
    assert_eq!(acceptor.current().crl_number, Some(1u32.into()));
    let first = std::fs::read(layout.crl()).unwrap();

    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("colombo".into()),
        RevocationReason::KeyCompromise,
    )
    .unwrap();
    assert_eq!(
        acceptor.reload_if_changed(),
        ReloadOutcome::Reloaded {
            revoked: 1,
            closed: 0
        }
    );
    assert_eq!(acceptor.current().crl_number, Some(2u32.into()));

    // The older CRL (number 1, nothing revoked) put back: refused, the newer one stays.
    std::fs::write(layout.crl(), &first).unwrap();
    match acceptor.reload_if_changed() {
        ReloadOutcome::Failed(why) => assert!(why.contains("lower than"), "{why}"),
        other => panic!("the older CRL was not refused: {other:?}"),
    }
    assert_eq!(acceptor.current().crl_number, Some(2u32.into()));
    assert_eq!(acceptor.current().revoked.len(), 1);

    // A newer CRL is taken again.
    rcpfed_pki::revoke(
        &layout,
        &RevokeTarget::Member("operator".into()),
        RevocationReason::Superseded,
    )
    .unwrap();
    assert!(matches!(
        acceptor.reload_if_changed(),
        ReloadOutcome::Reloaded { revoked: 2, .. }
    ));
    assert_eq!(acceptor.current().crl_number, Some(3u32.into()));
    assert_eq!(acceptor.current().stale_since(0), None);
}
