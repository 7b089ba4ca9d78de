//! Ed25519 statement-signing keys. A node's signing key is separate from its TLS key: TLS
//! authenticates the channel, these keys authenticate the content.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// First line of a secret key file.
const SECRET_KEY_HEADER: &str = "rcpfed-ed25519-secret-key-v1";

/// Errors about keys and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes are not a valid Ed25519 public key.
    #[error("public key is not a valid ed25519 point")]
    InvalidPublicKey,
    /// The key has small order: any signature could verify under it.
    #[error("public key is weak (small order) and is refused")]
    WeakPublicKey,
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

/// The key id of a public key: "ed25519:" + hex of the first 8 bytes of SHA-256(public key).
pub fn key_id_of(public_key: &[u8; 32]) -> String {
    let hash = Sha256::digest(public_key);
    format!("ed25519:{}", hex::encode(&hash[..8]))
}

/// A public key that verifies statements, with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyKey {
    /// See [`key_id_of`].
    pub key_id: String,
    key: VerifyingKey,
}

impl VerifyKey {
    /// Parses a raw 32-byte key, refusing invalid and weak (small-order) keys up front, so that
    /// no later check can be fooled by a key that verifies anything.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadEncoding)?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
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

    /// Verifies `sig` over `message` with RFC 8032 strict rules (canonical S, no small-order
    /// components). Returns false for a signature that is not 64 bytes.
    pub fn verify_strict(&self, message: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
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
