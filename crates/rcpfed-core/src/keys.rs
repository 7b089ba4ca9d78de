//! Ed25519 statement-signing keys. A node's signing key is separate from its TLS key: TLS
//! authenticates the channel, these keys authenticate the content.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// First line of a secret key file.
const SECRET_KEY_HEADER: &str = "rcpfed-ed25519-secret-key-v1";

/// Errors about keys and signatures. The public-key variants are the refusals of the key rule of
/// docs/spec/keys.md §2, checked in the order listed there; [`KeyError::code`] names each one as in
/// `proto/vectors/ed25519.json`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes are not a valid Ed25519 public key: y (its low 255 bits, reduced mod p) is not
    /// the y-coordinate of a curve point.
    #[error("public key is not a valid ed25519 point")]
    InvalidPublicKey,
    /// The bytes decode to a point but are not its RFC 8032 encoding: y >= p, or x = 0 with the
    /// sign bit set. Refused so that one point has one key id and every decoder agrees.
    #[error(
        "public key is a non-canonical encoding (y >= p, or x = 0 with the sign bit set) and is refused"
    )]
    NonCanonicalPublicKey,
    /// The key has small order (one of the 8 points with [8]A = identity, the identity
    /// included): a signature with S = 0 verifies under it for many messages.
    #[error("public key is weak (small order) and is refused")]
    WeakPublicKey,
    /// The key has a small-order (torsion) component: it is not in the prime-order subgroup, so
    /// cofactored and cofactorless verifiers would disagree about its signatures.
    #[error(
        "public key has a small-order component (it is not in the prime-order subgroup) and is refused"
    )]
    MixedOrderPublicKey,
    /// The public key is not 32 bytes or not valid base64.
    #[error("public key must be 32 bytes in base64")]
    BadEncoding,
    /// A secret key file is not in the expected format.
    #[error("secret key file is malformed: {0}")]
    MalformedSecretKey(&'static str),
    /// The random number generator failed.
    #[error("operating system random number generator failed")]
    Rng,
}

impl KeyError {
    /// A stable code for the refusal, as in `proto/vectors/ed25519.json` (`A_…` for a public
    /// key, docs/spec/keys.md §2).
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::BadEncoding => "A_ENCODING",
            KeyError::InvalidPublicKey => "A_NOT_A_POINT",
            KeyError::NonCanonicalPublicKey => "A_NON_CANONICAL",
            KeyError::WeakPublicKey => "A_SMALL_ORDER",
            KeyError::MixedOrderPublicKey => "A_MIXED_ORDER",
            KeyError::MalformedSecretKey(_) => "SECRET_KEY_MALFORMED",
            KeyError::Rng => "RNG_FAILED",
        }
    }
}

/// Why a signature is refused under a valid key (docs/spec/keys.md §2), in the order the checks
/// apply: the first that fails is reported. Only the accept/refuse outcome is normative; the
/// variant says which rule refused it.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureRefusal {
    /// The signature is not exactly 64 bytes.
    #[error("the signature is not 64 bytes")]
    Length,
    /// S (the last 32 bytes, little-endian) is not below the group order L.
    #[error("S is not below the group order L (non-canonical S)")]
    SOutOfRange,
    /// R (the first 32 bytes) does not decode to a curve point.
    #[error("R is not the encoding of a curve point")]
    RNotAPoint,
    /// R decodes but is not the RFC 8032 encoding of its point (y >= p, or x = 0 with the sign
    /// bit set).
    #[error("R is a non-canonical encoding")]
    RNonCanonical,
    /// R has small order (the identity included).
    #[error("R has small order")]
    RSmallOrder,
    /// Every encoding check passes but [S]B != R + [k]A. This includes an R with a small-order
    /// component, which can never satisfy the equation under a prime-order key; it is not told
    /// apart, because that would cost a refused signature a second scalar multiplication.
    #[error("[S]B does not equal R + [k]A")]
    Equation,
}

impl SignatureRefusal {
    /// A stable code for the refusal, as in `proto/vectors/ed25519.json`.
    pub fn code(self) -> &'static str {
        match self {
            SignatureRefusal::Length => "SIG_LENGTH",
            SignatureRefusal::SOutOfRange => "S_OUT_OF_RANGE",
            SignatureRefusal::RNotAPoint => "R_NOT_A_POINT",
            SignatureRefusal::RNonCanonical => "R_NON_CANONICAL",
            SignatureRefusal::RSmallOrder => "R_SMALL_ORDER",
            SignatureRefusal::Equation => "EQUATION",
        }
    }

    /// Which check refuses a 64-byte signature that failed verification under a key that
    /// passed [`VerifyKey::from_bytes`]: the encoding checks of S and R in order, and otherwise
    /// the equation. Only called after a refusal, so an honest verification pays nothing, and a
    /// refused one pays a decoding and three doublings on top of the verification.
    fn classify(sig: &[u8; 64]) -> Self {
        let (r, s) = sig.split_at(32);
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(r);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(s);
        if Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).is_none() {
            return SignatureRefusal::SOutOfRange;
        }
        match decode_point(&r_bytes) {
            Err(PointProblem::NotAPoint) => SignatureRefusal::RNotAPoint,
            Err(PointProblem::NonCanonical) => SignatureRefusal::RNonCanonical,
            Err(PointProblem::SmallOrder) => SignatureRefusal::RSmallOrder,
            Ok(_) => SignatureRefusal::Equation,
        }
    }
}

/// What is wrong with a 32-byte point encoding (A or R), in the order checked.
enum PointProblem {
    NotAPoint,
    NonCanonical,
    SmallOrder,
}

/// Decodes a point and accepts it only if it is canonically encoded and not of small order
/// (docs/spec/keys.md §2). Decoding (curve25519-dalek) takes the low 255 bits as y, reduced mod p,
/// and the top bit as the sign of x; it refuses a y with no x. The canonical check re-encodes the
/// point and compares the bytes, which refuses exactly y >= p and x = 0 with the sign bit set. A
/// key is further checked with [`in_prime_order_subgroup`].
fn decode_point(bytes: &[u8; 32]) -> Result<EdwardsPoint, PointProblem> {
    let point = CompressedEdwardsY(*bytes)
        .decompress()
        .ok_or(PointProblem::NotAPoint)?;
    if point.compress().as_bytes() != bytes {
        return Err(PointProblem::NonCanonical);
    }
    if point.is_small_order() {
        return Err(PointProblem::SmallOrder);
    }
    Ok(point)
}

/// Whether [L]P is the identity, computed as [L - 1]P + P in variable time (a scalar cannot hold
/// L itself). Points here are public (keys, signature R values), so variable time leaks
/// nothing, and it costs about half of curve25519-dalek's constant-time `is_torsion_free`.
fn in_prime_order_subgroup(point: &EdwardsPoint) -> bool {
    let l_minus_one = -Scalar::ONE;
    (EdwardsPoint::vartime_double_scalar_mul_basepoint(&l_minus_one, point, &Scalar::ZERO) + point)
        .is_identity()
}

/// The key id of a public key: "ed25519:" + hex of the first 8 bytes of SHA-256(public key).
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    let hash = Sha256::digest(public_key);
    format!("ed25519:{}", hex::encode(&hash[..8]))
}

/// The canonical encoding of the identity point (y = 1, x = 0): the one small-order R whose
/// encoding [S]B - [k]A can have under a key of prime order.
const IDENTITY_ENCODING: [u8; 32] = {
    let mut bytes = [0u8; 32];
    bytes[0] = 1;
    bytes
};

/// A public key that verifies statements, with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyKey {
    /// See [`key_id_of`].
    pub key_id: String,
    key: VerifyingKey,
}

impl VerifyKey {
    /// Parses a raw 32-byte key with the exact key rule of docs/spec/keys.md §2: it must decode to
    /// a curve point, be that point's canonical encoding, not be of small order and lie in the
    /// prime-order subgroup. Every key the federation accepts (registry, member file, root trust,
    /// note verifier keys) passes here, so no later check meets a key that verifies forgeries, and
    /// cofactored and cofactorless verifiers agree on its signatures.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadEncoding)?;
        let point = decode_point(&raw).map_err(|p| match p {
            PointProblem::NotAPoint => KeyError::InvalidPublicKey,
            PointProblem::NonCanonical => KeyError::NonCanonicalPublicKey,
            PointProblem::SmallOrder => KeyError::WeakPublicKey,
        })?;
        if !in_prime_order_subgroup(&point) {
            return Err(KeyError::MixedOrderPublicKey);
        }
        // The point is canonically encoded, so this key's bytes are `raw`.
        let key = VerifyingKey::from(point);
        Ok(VerifyKey {
            key_id: key_id_of(&raw),
            key,
        })
    }

    /// Parses standard base64 of the raw 32-byte key.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = B64.decode(text.trim()).map_err(|_| KeyError::BadEncoding)?;
        Self::from_bytes(&bytes)
    }

    /// Raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Standard base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }

    /// Verifies `sig` over `message` with the exact rule of docs/spec/keys.md §2 and says which
    /// check refused it. The key already passed [`Self::from_bytes`] (canonical, prime order, not
    /// the identity). The signature is accepted exactly when it is 64 bytes, S < L, R decodes to a
    /// point not of small order, and the encoding of [S]B - [k]A equals the 32 bytes of R, with k =
    /// SHA-512(R || A || M) mod L: ed25519-dalek's `verify_strict`. As A and B lie in the
    /// prime-order subgroup, so does [S]B - [k]A, and the byte equality also refuses a
    /// non-canonical or mixed-order R; the checks of [`SignatureRefusal::classify`] only name the
    /// reason, after a refusal.
    ///
    /// Computed without decoding R (a square root, about a tenth of a verification): the
    /// cofactorless equation as bytes (ed25519-dalek's `verify`: S < L, then the encoding of
    /// [S]B - [k]A compared with R) and R not the identity's encoding. That is `verify_strict`
    /// exactly, for a key of prime order: when the bytes match, R is the canonical encoding of a
    /// point of the prime-order subgroup, which decodes, and has small order only when it is the
    /// identity.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), SignatureRefusal> {
        let bytes: &[u8; 64] = sig.try_into().map_err(|_| SignatureRefusal::Length)?;
        if bytes[..32] != IDENTITY_ENCODING
            && self
                .key
                .verify(message, &Signature::from_bytes(bytes))
                .is_ok()
        {
            return Ok(());
        }
        Err(SignatureRefusal::classify(bytes))
    }

    /// Whether `sig` verifies over `message` ([`Self::verify`]).
    pub fn verify_strict(&self, message: &[u8], sig: &[u8]) -> bool {
        self.verify(message, sig).is_ok()
    }
}

/// A secret signing key with its id.
#[derive(Clone)]
pub struct SecretKey {
    key: SigningKey,
    verify: VerifyKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.verify.key_id)
    }
}

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| KeyError::Rng)?;
        Ok(Self::from_seed(&seed))
    }

    /// The key for a 32-byte RFC 8032 seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let raw = key.verifying_key().to_bytes();
        let verify = VerifyKey {
            key_id: key_id_of(&raw),
            key: key.verifying_key(),
        };
        SecretKey { key, verify }
    }

    /// The public half.
    pub fn verify_key(&self) -> &VerifyKey {
        &self.verify
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.verify.key_id
    }

    /// Signs `message`; 64 bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The secret key file text: a header line, then base64 of the seed.
    pub fn to_file_text(&self) -> String {
        format!(
            "{SECRET_KEY_HEADER}\n{}\n# key id {}\n",
            B64.encode(self.key.to_bytes()),
            self.verify.key_id
        )
    }

    /// Parses [`Self::to_file_text`] output.
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(SECRET_KEY_HEADER) {
            return Err(KeyError::MalformedSecretKey("missing header line"));
        }
        let seed = lines
            .next()
            .ok_or(KeyError::MalformedSecretKey("missing key line"))?;
        let seed = B64
            .decode(seed)
            .map_err(|_| KeyError::MalformedSecretKey("key line is not base64"))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| KeyError::MalformedSecretKey("key is not 32 bytes"))?;
        Ok(Self::from_seed(&seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The variable-time subgroup check agrees with curve25519-dalek's constant-time one on
    /// prime-order points, small-order points and their sums.
    #[test]
    fn subgroup_check_agrees_with_is_torsion_free() {
        // Some point with a torsion component of order 8: [L]P for a point P of small y.
        let mut torsion = Vec::new();
        for y in 2u8..=40 {
            let mut enc = [0u8; 32];
            enc[0] = y;
            if let Some(p) = CompressedEdwardsY(enc).decompress() {
                torsion.push(p * -Scalar::ONE + p);
                assert_eq!(in_prime_order_subgroup(&p), p.is_torsion_free(), "y = {y}");
            }
        }
        assert!(torsion.iter().any(|t| !t.is_identity()));
        for i in 1u8..=20 {
            let q = EdwardsPoint::mul_base(&Scalar::from(i));
            assert!(in_prime_order_subgroup(&q));
            for t in &torsion {
                let mixed = q + t;
                assert_eq!(in_prime_order_subgroup(&mixed), mixed.is_torsion_free());
                assert_eq!(in_prime_order_subgroup(t), t.is_torsion_free());
            }
        }
    }
}
