//! C2SP signed notes (<https://c2sp.org/signed-note>): text signed by one or more keys.
//!
//! A signed note is the text (ending in a newline), a blank line, then one or more lines
//! `— <key name> <base64(key hash (4 bytes) || signature)>`. The key hash is
//! `SHA-256(name || 0x0A || signature type || public key)[..4]`. Verifiers ignore
//! signatures by unknown keys, refuse a note whose known-key signature fails, and refuse a
//! note that no known key signed.
//!
//! Two signature types are supported: Ed25519 (0x01, over the note text; the hub's log key)
//! and timestamped Ed25519 witness cosignatures (0x04, c2sp.org/tlog-cosignature; see
//! [`crate::checkpoint`]).

use crate::keys::{SecretKey, VerifyKey};
use crate::rejection::{RejectClass, Rejection, reasons};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest as _, Sha256};

/// Signature type of plain Ed25519 note signatures.
pub const ALG_ED25519: u8 = 0x01;
/// Signature type of timestamped Ed25519 witness cosignatures (tlog-cosignature/v1).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Most signature lines accepted in one note (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// The em dash (U+2014) and space that open a signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// A key trusted to sign notes: name, key hash, public key and signature type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    /// Key name (no spaces, no '+').
    pub name: String,
    /// [`note_key_hash`] of name, type and key.
    pub key_hash: [u8; 4],
    /// The Ed25519 public key.
    pub key: VerifyKey,
    /// Signature type: [`ALG_ED25519`] or [`ALG_COSIGNATURE_V1`].
    pub alg: u8,
}

impl NoteVerifier {
    /// A verifier for `key` under `name` with signature type `alg`; refuses invalid names
    /// and unsupported types.
    pub fn new(name: &str, alg: u8, key: VerifyKey) -> Result<Self, Rejection> {
        check_key_name(name).map_err(|m| bad_vkey(format!("key name {name:?} {m}")))?;
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(bad_vkey(format!(
                "signature type 0x{alg:02x} is not supported (only 0x01 ed25519 and 0x04 cosignature/v1)"
            )));
        }
        let key_hash = note_key_hash(name, alg, &key.to_bytes());
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_hash,
            key,
            alg,
        })
    }

    /// The verifier key string (vkey) of this verifier.
    pub fn to_vkey(&self) -> String {
        verifier_key_string(&self.name, self.alg, &self.key.to_bytes())
    }
}

/// The key hash (key ID): `SHA-256(name || 0x0A || alg || public_key)[..4]`.
pub fn note_key_hash(name: &str, alg: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key string: `<name>+<hex key hash>+<base64(alg || public key)>`.
pub fn verifier_key_string(name: &str, alg: u8, public_key: &[u8; 32]) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(alg);
    material.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(note_key_hash(name, alg, public_key)),
        B64.encode(material)
    )
}

fn bad_vkey(message: String) -> Rejection {
    Rejection::new(RejectClass::Invalid, reasons::BAD_VERIFIER_KEY, message)
}

/// Parses a verifier key string (see [`verifier_key_string`]); refuses malformed strings,
/// unsupported signature types, invalid or weak keys, and a key hash that does not match.
pub fn parse_verifier_key(s: &str) -> Result<NoteVerifier, Rejection> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash_hex), Some(material)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_vkey(
            "a verifier key must be <name>+<8 hex digits>+<base64 key>".into(),
        ));
    };
    check_key_name(name).map_err(|m| bad_vkey(format!("verifier key name {name:?} {m}")))?;
    if hash_hex.len() != 8
        || !hash_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad_vkey(format!(
            "verifier key hash {hash_hex:?} is not 8 lowercase hex digits"
        )));
    }
    let material = B64
        .decode(material)
        .map_err(|_| bad_vkey("verifier key material is not standard base64".into()))?;
    let Some((&alg, raw)) = material.split_first() else {
        return Err(bad_vkey("verifier key material is empty".into()));
    };
    let key = VerifyKey::from_bytes(raw)
        .map_err(|e| bad_vkey(format!("verifier key of {name:?}: {e}")))?;
    let v = NoteVerifier::new(name, alg, key)?;
    if hex::encode(v.key_hash) != hash_hex {
        return Err(bad_vkey(format!(
            "verifier key hash {hash_hex} does not match the name and key (expected {})",
            hex::encode(v.key_hash)
        )));
    }
    Ok(v)
}

/// A parsed (not yet verified) signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// The full note: text, blank line, one line per signature.
    pub fn to_note_string(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.to_line());
        }
        out
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// The key hash (first 4 decoded bytes).
    pub key_hash: [u8; 4],
    /// The bytes after the key hash (64 for Ed25519, 8 + 64 for a cosignature).
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// The signature line, `— <name> <base64(key hash || sig)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_hash);
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// Key names are non-empty, without Unicode spaces or '+'.
fn check_key_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.chars().any(char::is_whitespace) {
        return Err("contains a space");
    }
    if name.contains('+') {
        return Err("contains '+'");
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

fn malformed(message: String) -> Rejection {
    Rejection::new(RejectClass::Invalid, reasons::MALFORMED_NOTE, message)
}

/// Refuses control characters other than newline.
fn check_note_chars(s: &str, what: &str) -> Result<(), Rejection> {
    if let Some(c) = s.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(malformed(format!(
            "{what} contains the control character U+{:04X}; only newlines are allowed",
            c as u32
        )));
    }
    Ok(())
}

/// Checks that `text` can be the text of a signed note.
fn check_note_text(text: &str) -> Result<(), Rejection> {
    if !text.ends_with('\n') {
        return Err(malformed("the note text must end with a newline".into()));
    }
    check_note_chars(text, "the note text")?;
    if text.len() > MAX_NOTE_BYTES {
        return Err(malformed(format!(
            "the note text is larger than {MAX_NOTE_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Signs `text` with an Ed25519 note signature by `key` under `name`; returns the full
/// signed note (`text`, a blank line, the signature line).
pub fn sign_note(text: &str, name: &str, key: &SecretKey) -> Result<String, Rejection> {
    check_note_text(text)?;
    check_key_name(name).map_err(|m| malformed(format!("signer name {name:?} {m}")))?;
    let sig = NoteSignature {
        name: name.to_owned(),
        key_hash: note_key_hash(name, ALG_ED25519, &key.verify_key().to_bytes()),
        sig: key.sign(text.as_bytes()).to_vec(),
    };
    Ok(format!("{text}\n{}", sig.to_line()))
}

/// Parses a signed note strictly: size and character limits, text ending in a newline, a
/// blank line, then 1 to [`MAX_SIGNATURES`] lines `— <name> <base64>` each ending in a
/// newline, with valid names and at least 5 decoded signature bytes.
pub fn parse_note(note: &str) -> Result<SignedNote, Rejection> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(malformed(format!(
            "the note is larger than {MAX_NOTE_BYTES} bytes"
        )));
    }
    check_note_chars(note, "the note")?;
    // The text ends at the last blank line: signature lines never contain one.
    let Some(split) = note.rfind("\n\n") else {
        return Err(malformed(
            "the note has no blank line before its signatures (truncated?)".into(),
        ));
    };
    let text = &note[..split + 1];
    let block = &note[split + 2..];
    if block.is_empty() {
        return Err(malformed("the note has no signature lines".into()));
    }
    let Some(block) = block.strip_suffix('\n') else {
        return Err(malformed(
            "the last signature line does not end with a newline (truncated?)".into(),
        ));
    };
    let mut signatures = Vec::new();
    for (i, line) in block.split('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(malformed(format!(
                "the note has more than {MAX_SIGNATURES} signatures"
            )));
        }
        signatures.push(parse_line(line, i + 1)?);
    }
    Ok(SignedNote {
        text: text.to_owned(),
        signatures,
    })
}

/// One signature line (`— <name> <base64(key hash || signature)>`), the `n`-th of its note.
fn parse_line(line: &str, n: usize) -> Result<NoteSignature, Rejection> {
    let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
        return Err(malformed(format!(
            "signature line {n} does not start with an em dash (U+2014) and a space"
        )));
    };
    let Some((name, b64)) = rest.split_once(' ') else {
        return Err(malformed(format!(
            "signature line {n} is not \"<name> <base64 signature>\""
        )));
    };
    check_key_name(name)
        .map_err(|m| malformed(format!("signature line {n}: key name {name:?} {m}")))?;
    let raw = B64.decode(b64).map_err(|_| {
        malformed(format!(
            "signature line {n}: the signature is not standard base64"
        ))
    })?;
    if raw.len() < 5 {
        return Err(malformed(format!(
            "signature line {n}: the signature is shorter than a key hash and one byte"
        )));
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        key_hash: [raw[0], raw[1], raw[2], raw[3]],
        sig: raw[4..].to_vec(),
    })
}

/// Parses a single signature line, as a witness sends a cosignature on its own (a trailing
/// newline is allowed).
pub fn parse_signature_line(line: &str) -> Result<NoteSignature, Rejection> {
    check_note_chars(line, "the signature line")?;
    parse_line(line.strip_suffix('\n').unwrap_or(line), 1)
}

/// The message a tlog-cosignature/v1 signs: `cosignature/v1\ntime <timestamp>\n` followed by
/// the note text.
pub fn cosignature_message(text: &str, timestamp: u64) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    msg.extend_from_slice(text.as_bytes());
    msg
}

/// Checks one signature made by `v`'s key (the name and key hash already match). For a
/// cosignature returns its timestamp.
pub(crate) fn check_signature(
    text: &str,
    sig: &NoteSignature,
    v: &NoteVerifier,
) -> Result<Option<u64>, String> {
    match v.alg {
        ALG_ED25519 => {
            if sig.sig.len() != 64 {
                return Err(format!(
                    "the ed25519 signature by {} is {} bytes, not 64",
                    v.name,
                    sig.sig.len()
                ));
            }
            if v.key.verify_strict(text.as_bytes(), &sig.sig) {
                Ok(None)
            } else {
                Err(format!(
                    "the signature by {} does not verify over the note text",
                    v.name
                ))
            }
        }
        ALG_COSIGNATURE_V1 => {
            let Some((ts, ed)) = sig.sig.split_first_chunk::<8>() else {
                return Err(format!(
                    "the cosignature by {} is {} bytes, not 8 + 64",
                    v.name,
                    sig.sig.len()
                ));
            };
            if ed.len() != 64 {
                return Err(format!(
                    "the cosignature by {} is {} bytes, not 8 + 64",
                    v.name,
                    sig.sig.len()
                ));
            }
            let ts = u64::from_be_bytes(*ts);
            if ts > i64::MAX as u64 {
                return Err(format!(
                    "the cosignature by {} has a timestamp above 2^63 - 1",
                    v.name
                ));
            }
            if v.key.verify_strict(&cosignature_message(text, ts), ed) {
                Ok(Some(ts))
            } else {
                Err(format!(
                    "the cosignature by {} does not verify over this note at time {ts}",
                    v.name
                ))
            }
        }
        other => Err(format!(
            "signature type 0x{other:02x} of {} is not supported",
            v.name
        )),
    }
}

/// Verifies `note` against trusted `verifiers`: signatures whose name and key hash match no
/// verifier are ignored; one that matches but fails is BAD_NOTE_SIGNATURE; a note with no
/// verified signature is NO_TRUSTED_SIGNATURE. Returns the names that verified, each once,
/// in signature order.
pub fn verify_note(
    note: &SignedNote,
    verifiers: &[NoteVerifier],
) -> Result<Vec<String>, Rejection> {
    let mut verified: Vec<String> = Vec::new();
    for sig in &note.signatures {
        for v in verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_hash == sig.key_hash)
        {
            check_signature(&note.text, sig, v).map_err(|m| {
                Rejection::new(RejectClass::Unauthenticated, reasons::BAD_NOTE_SIGNATURE, m)
                    .with_meta("key_name", v.name.clone())
            })?;
            if !verified.contains(&v.name) {
                verified.push(v.name.clone());
            }
        }
    }
    if verified.is_empty() {
        let names: Vec<&str> = note.signatures.iter().map(|s| s.name.as_str()).collect();
        return Err(Rejection::new(
            RejectClass::Unauthenticated,
            reasons::NO_TRUSTED_SIGNATURE,
            format!(
                "no signature on the note is by a trusted key (signed by: {})",
                names.join(", ")
            ),
        ));
    }
    Ok(verified)
}
