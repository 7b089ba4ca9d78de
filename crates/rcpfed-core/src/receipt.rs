//! The hub's signed receipt for an accepted statement.

use crate::Digest;
use crate::envelope::{RECEIPT_PAYLOAD_TYPE, SignedEnvelope};
use crate::hub_document::{HubDocument, HubDocumentError, verify_hub_document};
use crate::keys::{SecretKey, VerifyKey};
use crate::rejection::{RejectClass, Rejection, reasons};
use crate::wire::{timestamp_from_proto, timestamp_to_proto};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use time::OffsetDateTime;

/// What the hub signs when it accepts a statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Federation id.
    pub federation_id: String,
    /// The hub's member id.
    pub hub_id: String,
    /// The issuing node.
    pub node_id: String,
    /// The statement's seq.
    pub seq: u64,
    /// SHA-256 of the statement's payload.
    pub statement_digest: Digest,
    /// Position in the hub's feed, from 1.
    pub feed_index: u64,
    /// When the hub stored it.
    pub accepted_at: OffsetDateTime,
}

fn malformed(what: impl std::fmt::Display) -> Rejection {
    Rejection::new(
        RejectClass::Invalid,
        reasons::PAYLOAD_MALFORMED,
        format!("the receipt payload is not a valid rcpfed.v1.Receipt: {what}"),
    )
}

impl Receipt {
    /// The wire form.
    pub fn to_proto(&self) -> pb::Receipt {
        pb::Receipt {
            federation_id: self.federation_id.clone(),
            hub_id: self.hub_id.clone(),
            node_id: self.node_id.clone(),
            seq: self.seq,
            statement_digest: self.statement_digest.0.to_vec(),
            feed_index: self.feed_index,
            accepted_at: Some(timestamp_to_proto(self.accepted_at)),
        }
    }

    /// From the wire form; the digest must be 32 bytes and the time present.
    pub fn from_proto(p: pb::Receipt) -> Result<Self, Rejection> {
        let statement_digest = Digest::from_slice(&p.statement_digest)
            .ok_or_else(|| malformed("statement_digest is not 32 bytes"))?;
        let accepted_at = p
            .accepted_at
            .as_ref()
            .and_then(timestamp_from_proto)
            .ok_or_else(|| malformed("accepted_at is missing or invalid"))?;
        Ok(Receipt {
            federation_id: p.federation_id,
            hub_id: p.hub_id,
            node_id: p.node_id,
            seq: p.seq,
            statement_digest,
            feed_index: p.feed_index,
            accepted_at,
        })
    }

    /// Signs the receipt: an envelope of [`RECEIPT_PAYLOAD_TYPE`] over the proto bytes.
    pub fn sign(&self, key: &SecretKey) -> SignedEnvelope {
        SignedEnvelope::sign(RECEIPT_PAYLOAD_TYPE, self.to_proto().encode_to_vec(), key)
    }

    /// Checks `env` as a hub document ([`verify_hub_document`]: payload type, a signature by
    /// one of `hub_keys`, decoding, `federation_id`), then the receipt's own fields.
    pub fn verify(
        env: &SignedEnvelope,
        hub_keys: &[VerifyKey],
        federation_id: &str,
    ) -> Result<Receipt, Rejection> {
        let verified = verify_hub_document::<pb::Receipt>(env, hub_keys, federation_id).map_err(
            |e| match e {
                HubDocumentError::PayloadType { found, expected } => Rejection::new(
                    RejectClass::Invalid,
                    reasons::UNKNOWN_PAYLOAD_TYPE,
                    format!("payload type {found:?} is not a receipt ({expected})"),
                ),
                HubDocumentError::Signature(e) => e,
                HubDocumentError::Undecodable { error, .. } => malformed(error),
                HubDocumentError::OtherFederation { found, expected } => Rejection::new(
                    RejectClass::Forbidden,
                    reasons::WRONG_FEDERATION,
                    format!("the receipt is of federation {found:?}, not {expected:?}"),
                ),
            },
        )?;
        Self::from_proto(verified.document)
    }
}

impl HubDocument for pb::Receipt {
    const PAYLOAD_TYPE: &'static str = RECEIPT_PAYLOAD_TYPE;
    const MESSAGE_NAME: &'static str = "rcpfed.v1.Receipt";
    fn federation_id(&self) -> &str {
        &self.federation_id
    }
}

/// The statement a receipt must acknowledge.
#[derive(Clone, Copy, Debug)]
pub struct Acknowledged<'a> {
    /// The member that signed the statement.
    pub node_id: &'a str,
    /// Its sequence number.
    pub seq: u64,
    /// Its digest.
    pub digest: &'a Digest,
    /// The feed index the receipt must give, when the verifier knows it.
    pub feed_index: Option<u64>,
}

impl Receipt {
    /// Verifies `env` as the receipt the hub of `federation` signed for `statement`: signed
    /// with a key of the hub member, by that hub for that federation, naming that statement
    /// (and that feed index when given). The one check of a receipt against what it
    /// acknowledges; the error says what differs, in plain words.
    pub fn verify_for(
        env: &SignedEnvelope,
        federation: &crate::members::Federation,
        statement: Acknowledged<'_>,
    ) -> Result<Receipt, String> {
        let hub = federation
            .hub()
            .ok_or_else(|| format!("the member file has no hub member {}", federation.hub_id))?;
        let r = Receipt::verify(env, &hub.keys, &federation.federation_id).map_err(|e| {
            if e.reason == reasons::WRONG_FEDERATION {
                return e.message;
            }
            format!(
                "not a receipt signed by the hub {}: {} [{}]",
                hub.id, e.message, e.reason
            )
        })?;
        if r.statement_digest != *statement.digest {
            return Err(format!(
                "the receipt is for the statement with digest {}, not this one ({})",
                r.statement_digest, statement.digest
            ));
        }
        if r.node_id != statement.node_id || r.seq != statement.seq {
            return Err(format!(
                "the receipt names {}#{}, but the statement is {}#{}",
                r.node_id, r.seq, statement.node_id, statement.seq
            ));
        }
        if r.hub_id != hub.id {
            return Err(format!(
                "the receipt is by hub {:?} of federation {:?}, not {} of {:?}",
                r.hub_id, r.federation_id, hub.id, federation.federation_id
            ));
        }
        if let Some(index) = statement.feed_index
            && r.feed_index != index
        {
            return Err(format!(
                "the receipt puts the statement at feed index {}, not {index}",
                r.feed_index
            ));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const FED: &str = "rcp-federation";

    fn sample() -> Receipt {
        Receipt {
            federation_id: FED.into(),
            hub_id: "gfmd".into(),
            node_id: "colombo".into(),
            seq: 7,
            statement_digest: Digest::of(b"statement"),
            feed_index: 42,
            accepted_at: datetime!(2024-05-17 10:00:00.5 UTC),
        }
    }

    #[test]
    fn sign_and_verify() {
        let hub = SecretKey::from_seed(&[9; 32]);
        let keys = [hub.verify_key().clone()];
        let env = sample().sign(&hub);
        assert_eq!(env.payload_type, RECEIPT_PAYLOAD_TYPE);
        assert_eq!(Receipt::verify(&env, &keys, FED), Ok(sample()));
    }

    #[test]
    fn tampering_fails() {
        let hub = SecretKey::from_seed(&[9; 32]);
        let keys = [hub.verify_key().clone()];
        let env = sample().sign(&hub);

        let mut tampered = env.clone();
        let mut r = sample();
        r.feed_index = 43;
        tampered.payload = r.to_proto().encode_to_vec();
        let e = Receipt::verify(&tampered, &keys, FED).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::BAD_SIGNATURE));

        let other = SecretKey::from_seed(&[8; 32]);
        let e = Receipt::verify(&sample().sign(&other), &keys, FED).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::UNKNOWN_KEY_ID));

        let mut retyped = env.clone();
        retyped.payload_type = crate::envelope::STATEMENT_PAYLOAD_TYPE.into();
        let e = Receipt::verify(&retyped, &keys, FED).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::UNKNOWN_PAYLOAD_TYPE));

        // Signed but not a receipt: malformed after the signature check.
        let junk = SignedEnvelope::sign(RECEIPT_PAYLOAD_TYPE, vec![0x2a, 0x01], &hub);
        let e = Receipt::verify(&junk, &keys, FED).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::PAYLOAD_MALFORMED));

        // Signed by the hub, but for another federation.
        let e = Receipt::verify(&env, &keys, "other-federation").err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::WRONG_FEDERATION));
    }

    #[test]
    fn a_receipt_is_checked_against_the_statement_it_acknowledges() {
        let hub = SecretKey::from_seed(&[9; 32]);
        let text = format!(
            "federation_id = \"rcp-federation\"\nhub_id = \"gfmd\"\n\
             [[members]]\nid = \"gfmd\"\nname = \"GFMD\"\nkind = \"hub\"\nroles = [\"reader\"]\n\
             spiffe_id = \"spiffe://rcp-federation/node/gfmd\"\n\
             [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
            hub.key_id(),
            hub.verify_key().to_base64()
        );
        let federation = crate::members::Federation::from_toml(&text).expect("member file");
        let digest = sample().statement_digest;
        let expected = |feed_index| Acknowledged {
            node_id: "colombo",
            seq: 7,
            digest: &digest,
            feed_index,
        };
        let check = |r: Receipt, feed_index| {
            Receipt::verify_for(&r.sign(&hub), &federation, expected(feed_index))
        };
        assert_eq!(check(sample(), Some(42)), Ok(sample()));
        assert_eq!(check(sample(), None), Ok(sample()));
        let differs = |edit: &dyn Fn(&mut Receipt), feed_index, words: &str| {
            let mut r = sample();
            edit(&mut r);
            let e = check(r, feed_index).expect_err("refused");
            assert!(e.contains(words), "{e}");
        };
        differs(&|_| {}, Some(41), "feed index 42, not 41");
        differs(&|r| r.seq = 8, None, "names colombo#8");
        differs(&|r| r.node_id = "midwa".into(), None, "names midwa#7");
        differs(&|r| r.statement_digest = Digest::of(b"x"), None, "digest");
        differs(&|r| r.hub_id = "other".into(), None, "by hub \"other\"");
        differs(
            &|r| r.federation_id = "other".into(),
            None,
            "of federation \"other\"",
        );
        let stranger = SecretKey::from_seed(&[8; 32]);
        let e = Receipt::verify_for(&sample().sign(&stranger), &federation, expected(None));
        assert!(e.is_err_and(|e| e.contains("not a receipt signed by the hub gfmd")));
    }
}
