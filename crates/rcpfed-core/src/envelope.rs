//! DSSE-style signed envelopes. Signatures cover PAE(payload_type, payload) over the exact
//! payload bytes; a verifier checks them before decoding and never re-serializes the payload.

use crate::Digest;
use crate::keys::{SecretKey, VerifyKey};
use crate::rejection::{RejectClass, Rejection, reasons};
use prost::Message as _;
use rcpfed_proto::v1 as pb;

/// Payload type of an envelope carrying a `rcpfed.v1.Statement`.
pub const STATEMENT_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.statement.v1+protobuf";
/// Payload type of an envelope carrying a `rcpfed.v1.Receipt`.
pub const RECEIPT_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.receipt.v1+protobuf";

/// DSSE v1 pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = payload.len().to_string();
    let mut out = Vec::with_capacity(
        10 + type_len.len() + payload_type.len() + body_len.len() + payload.len(),
    );
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// One signature over PAE(payload_type, payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// Id of the signing key (see [`crate::keys::key_id_of`]).
    pub key_id: String,
    /// The 64-byte Ed25519 signature (any length is carried; only 64 can verify).
    pub sig: Vec<u8>,
}

/// A signed envelope: payload type, exact payload bytes, signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEnvelope {
    /// What the payload is, e.g. [`STATEMENT_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// The exact payload bytes that were signed.
    pub payload: Vec<u8>,
    /// Signatures, one or more.
    pub signatures: Vec<EnvelopeSignature>,
}

impl SignedEnvelope {
    /// The envelope's leaf in the transparency log: `SHA-256(0x00 || PAE(payload_type,
    /// payload))`, the signed bytes, so the signatures themselves are not logged.
    pub fn leaf_hash(&self) -> crate::merkle::Hash {
        crate::merkle::leaf_hash(&pae(&self.payload_type, &self.payload))
    }

    /// Signs `payload` as `payload_type` with `key`.
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &SecretKey) -> Self {
        let sig = key.sign(&pae(payload_type, &payload)).to_vec();
        SignedEnvelope {
            payload_type: payload_type.to_owned(),
            payload,
            signatures: vec![EnvelopeSignature {
                key_id: key.key_id().to_owned(),
                sig,
            }],
        }
    }

    /// SHA-256 of the payload bytes: the statement's identity and chain link.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.payload)
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Envelope {
        pb::Envelope {
            payload_type: self.payload_type.clone(),
            payload: self.payload.clone(),
            signatures: self
                .signatures
                .iter()
                .map(|s| pb::Signature {
                    key_id: s.key_id.clone(),
                    sig: s.sig.clone(),
                })
                .collect(),
        }
    }

    /// From the wire form; every wire envelope is representable, checks come later.
    pub fn from_proto(p: pb::Envelope) -> Self {
        SignedEnvelope {
            payload_type: p.payload_type,
            payload: p.payload,
            signatures: p
                .signatures
                .into_iter()
                .map(|s| EnvelopeSignature {
                    key_id: s.key_id,
                    sig: s.sig,
                })
                .collect(),
        }
    }

    /// Serialized `rcpfed.v1.Envelope` bytes.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// Parses serialized `rcpfed.v1.Envelope` bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Rejection> {
        pb::Envelope::decode(bytes)
            .map(Self::from_proto)
            .map_err(|e| {
                Rejection::new(
                    RejectClass::Invalid,
                    reasons::ENVELOPE_MALFORMED,
                    format!("the bytes are not a valid rcpfed.v1.Envelope: {e}"),
                )
            })
    }
}

/// Verifies the envelope's signatures with keys found by `lookup(key_id)`. Accepts when at least
/// one signature verifies (strict RFC 8032) with a known key and returns that key; otherwise
/// reports the first signature's failure. The caller still checks who owns the key.
pub fn verify_signatures<'a>(
    env: &SignedEnvelope,
    lookup: impl Fn(&str) -> Option<&'a VerifyKey>,
) -> Result<&'a VerifyKey, Rejection> {
    if env.signatures.is_empty() {
        return Err(Rejection::new(
            RejectClass::Unauthenticated,
            reasons::MISSING_SIGNATURE,
            "the envelope has no signature; sign it with the node's signing key",
        ));
    }
    let message = pae(&env.payload_type, &env.payload);
    let mut first_failure = None;
    for (i, s) in env.signatures.iter().enumerate() {
        let failure = match lookup(&s.key_id) {
            Some(key) => match key.verify(&message, &s.sig) {
                Ok(()) => return Ok(key),
                Err(refusal) => Rejection::new(
                    RejectClass::Unauthenticated,
                    reasons::BAD_SIGNATURE,
                    format!(
                        "signature {i} by key {:?} does not verify over the payload: {refusal}",
                        s.key_id
                    ),
                )
                .with_meta("signature_check", refusal.code()),
            },
            None => Rejection::new(
                RejectClass::Unauthenticated,
                reasons::UNKNOWN_KEY_ID,
                format!(
                    "signature {i} names key {:?}, which is not a known key of the federation",
                    s.key_id
                ),
            ),
        };
        first_failure.get_or_insert(failure.with_meta("key_id", s.key_id.clone()));
    }
    Err(first_failure.unwrap_or_else(|| {
        Rejection::new(
            RejectClass::Unauthenticated,
            reasons::MISSING_SIGNATURE,
            "the envelope has no signature",
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_dsse_spec_example() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
        assert_eq!(
            pae(STATEMENT_PAYLOAD_TYPE, b"\x00\x01"),
            [
                b"DSSEv1 44 application/vnd.rcpfed.statement.v1+protobuf 2 ".as_slice(),
                b"\x00\x01"
            ]
            .concat()
        );
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    #[test]
    fn sign_verify_and_failures() {
        let k1 = key(1);
        let k2 = key(2);
        let keys = [k1.verify_key().clone()];
        let lookup = |id: &str| keys.iter().find(|k| k.key_id == id);

        let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, b"hello".to_vec(), &k1);
        assert_eq!(verify_signatures(&env, lookup), Ok(&keys[0]));
        assert_eq!(env.digest(), Digest::of(b"hello"));

        let round = SignedEnvelope::decode(&env.encode());
        assert_eq!(round.as_ref(), Ok(&env));

        let mut none = env.clone();
        none.signatures.clear();
        let err = verify_signatures(&none, lookup).err().map(|e| e.reason);
        assert_eq!(err, Some(reasons::MISSING_SIGNATURE));

        let unknown = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, b"hello".to_vec(), &k2);
        let err = verify_signatures(&unknown, lookup).err().map(|e| e.reason);
        assert_eq!(err, Some(reasons::UNKNOWN_KEY_ID));

        let mut retyped = env.clone();
        retyped.payload_type = RECEIPT_PAYLOAD_TYPE.to_owned();
        let err = verify_signatures(&retyped, lookup).err().map(|e| e.reason);
        assert_eq!(err, Some(reasons::BAD_SIGNATURE));

        // An unknown extra signature first, then a good one: accepted.
        let mut both = unknown.clone();
        both.signatures.extend(env.signatures.clone());
        assert_eq!(verify_signatures(&both, lookup), Ok(&keys[0]));

        // A good key id with a wrong-length signature: bad signature, not a panic.
        let mut short = env.clone();
        short.signatures[0].sig.truncate(10);
        let err = verify_signatures(&short, lookup).err().map(|e| e.reason);
        assert_eq!(err, Some(reasons::BAD_SIGNATURE));
    }

    #[test]
    fn bad_signature_names_the_check_that_refused_it() {
        let k1 = key(1);
        let keys = [k1.verify_key().clone()];
        let lookup = |id: &str| keys.iter().find(|k| k.key_id == id);
        let env = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, b"hello".to_vec(), &k1);
        let check = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bad = env.clone();
            edit(&mut bad.signatures[0].sig);
            let e = verify_signatures(&bad, lookup).err();
            e.map(|e| {
                assert!(e.message.contains("does not verify over the payload: "));
                (e.reason, e.metadata)
            })
        };
        let meta = |code: &str| {
            Some((
                reasons::BAD_SIGNATURE,
                vec![
                    ("signature_check".to_string(), code.to_string()),
                    ("key_id".to_string(), k1.key_id().to_string()),
                ],
            ))
        };
        assert_eq!(check(&|s| s.truncate(63)), meta("SIG_LENGTH"));
        // S + L (little-endian addition): the same point equation, but S >= L.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        assert_eq!(
            check(&|s| {
                let mut carry = 0u16;
                for (b, l) in s[32..].iter_mut().zip(L) {
                    let v = u16::from(*b) + u16::from(l) + carry;
                    *b = (v & 0xff) as u8;
                    carry = v >> 8;
                }
            }),
            meta("S_OUT_OF_RANGE")
        );
        // R = the identity, canonical and with y = p + 1.
        let identity = |s: &mut Vec<u8>| {
            s[..32].fill(0);
            s[0] = 1;
        };
        assert_eq!(check(&identity), meta("R_SMALL_ORDER"));
        assert_eq!(
            check(&|s| {
                s[..32].fill(0xff);
                s[0] = 0xee;
                s[31] = 0x7f;
            }),
            meta("R_NON_CANONICAL")
        );
        assert_eq!(check(&|s| s[40] ^= 1), meta("EQUATION"));
    }

    #[test]
    fn garbage_is_envelope_malformed() {
        let err = SignedEnvelope::decode(&[0xff, 0xff, 0xff])
            .err()
            .map(|e| e.reason);
        assert_eq!(err, Some(reasons::ENVELOPE_MALFORMED));
    }
}
