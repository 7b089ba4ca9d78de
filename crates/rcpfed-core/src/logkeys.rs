//! Names and keys of the transparency log and its witnesses, derived from the member file.
//!
//! - The log's origin, which is also the name of the hub's log key, is
//!   `rcpfed/{federation_id}/log`. Checkpoints are signed (note signature type 0x01, Ed25519)
//!   with the hub member's first signing key.
//! - The witness key of node `N` is named `rcpfed/{federation_id}/witness/{N}`. Its
//!   cosignatures (type 0x04, tlog-cosignature/v1) are made with that node's Ed25519 signing
//!   key from the member file. Witnesses are the members with the `witness` role.

use crate::members::{Federation, Role};
use crate::note::{ALG_COSIGNATURE_V1, ALG_ED25519, NoteVerifier};

/// The log's origin line and the name of the hub's log key: `rcpfed/{fed}/log`.
pub fn log_origin(fed: &str) -> String {
    format!("rcpfed/{fed}/log")
}

/// The witness key name of member `node`: `rcpfed/{fed}/witness/{node}`.
pub fn witness_name(fed: &str, node: &str) -> String {
    format!("rcpfed/{fed}/witness/{node}")
}

/// The verifier of the hub's log key: the hub member's first key, named [`log_origin`],
/// signature type 0x01. `None` if the hub member has no key.
pub fn log_verifier(federation: &Federation) -> Option<NoteVerifier> {
    let key = federation.hub()?.keys.first()?;
    NoteVerifier::new(
        &log_origin(&federation.federation_id),
        ALG_ED25519,
        key.clone(),
    )
    .ok()
}

/// The cosignature verifiers of every member with the `witness` role, one per key, named
/// [`witness_name`], signature type 0x04, each with the member's id. Sorted by member id.
pub fn witness_verifiers(federation: &Federation) -> Vec<(String, NoteVerifier)> {
    let mut out = Vec::new();
    for m in federation.members().filter(|m| m.has_role(Role::Witness)) {
        let name = witness_name(&federation.federation_id, &m.id);
        for key in &m.keys {
            // A revoked key vouches for nothing, not even an old cosignature: whoever stole it
            // could have made that too. (Retired keys keep verifying what they signed.)
            if federation
                .key_lifecycle(&key.key_id)
                .is_some_and(|l| matches!(l.status, crate::members::KeyLifecycle::Revoked(_)))
            {
                continue;
            }
            if let Ok(v) = NoteVerifier::new(&name, ALG_COSIGNATURE_V1, key.clone()) {
                out.push((m.id.clone(), v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn federation() -> Federation {
        let hub = SecretKey::from_seed(&[1; 32]);
        let a = SecretKey::from_seed(&[2; 32]);
        let b = SecretKey::from_seed(&[3; 32]);
        let key = |k: &SecretKey| {
            format!(
                "[[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
                k.key_id(),
                k.verify_key().to_base64()
            )
        };
        let text = format!(
            "federation_id = \"fed\"\nhub_id = \"hub\"\n\
             [[members]]\nid = \"hub\"\nname = \"Hub\"\nkind = \"hub\"\nroles = [\"reader\"]\nspiffe_id = \"spiffe://fed/node/hub\"\n{}\
             [[members]]\nid = \"a\"\nname = \"A\"\nkind = \"RCP\"\nroles = [\"publisher\", \"witness\"]\nspiffe_id = \"spiffe://fed/node/a\"\n{}\
             [[members]]\nid = \"b\"\nname = \"B\"\nkind = \"RCP\"\nroles = [\"publisher\"]\nspiffe_id = \"spiffe://fed/node/b\"\n{}",
            key(&hub),
            key(&a),
            key(&b)
        );
        match Federation::from_toml(&text) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_and_verifiers() {
        assert_eq!(log_origin("fed"), "rcpfed/fed/log");
        assert_eq!(witness_name("fed", "a"), "rcpfed/fed/witness/a");
        let f = federation();
        let log = log_verifier(&f).expect("hub key");
        assert_eq!(log.name, "rcpfed/fed/log");
        assert_eq!(log.alg, ALG_ED25519);
        assert_eq!(log.key, *SecretKey::from_seed(&[1; 32]).verify_key());
        let w = witness_verifiers(&f);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, "a");
        assert_eq!(w[0].1.name, "rcpfed/fed/witness/a");
        assert_eq!(w[0].1.alg, ALG_COSIGNATURE_V1);
    }
}
