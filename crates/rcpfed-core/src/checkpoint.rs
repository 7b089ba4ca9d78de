//! Log checkpoints (<https://c2sp.org/tlog-checkpoint>) and witness cosignatures
//! (<https://c2sp.org/tlog-cosignature>, Ed25519 v1).
//!
//! A checkpoint is the signed-note text `<origin>\n<size>\n<base64 root>\n` plus optional
//! non-empty extension lines. The hub signs it with its log key, whose name is the origin.
//! A witness cosignature is a note signature of type 0x04 whose payload is an 8-byte
//! big-endian timestamp and an Ed25519 signature over
//! `cosignature/v1\ntime <timestamp>\n<checkpoint text>`.

use crate::keys::SecretKey;
use crate::merkle::Hash;
use crate::note::{
    ALG_COSIGNATURE_V1, ALG_ED25519, NoteSignature, NoteVerifier, SignedNote, check_signature,
    cosignature_message, note_key_hash, parse_note, sign_note, verify_note,
};
use crate::rejection::{RejectClass, Rejection, reasons};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A tree head: the log's origin, its size and its RFC 6962 root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log identity, also its key name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at that size.
    pub root: Hash,
    /// Extension lines, without newlines (usually none).
    pub extensions: Vec<String>,
}

fn bad(message: String) -> Rejection {
    Rejection::new(RejectClass::Invalid, reasons::BAD_CHECKPOINT, message)
}

fn check_origin(origin: &str) -> Result<(), Rejection> {
    if origin.is_empty() {
        return Err(bad("the checkpoint origin line is empty".into()));
    }
    if origin.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!(
            "the checkpoint origin {origin:?} contains a space or control character"
        )));
    }
    Ok(())
}

impl Checkpoint {
    /// The note text: origin, size and base64 root, each on its own line, then extensions.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses checkpoint text strictly: at least three newline-terminated lines; a
    /// non-empty origin without spaces; a decimal size without sign or leading zeros; a
    /// canonical standard-base64 32-byte root; non-empty extension lines.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let Some(body) = text.strip_suffix('\n') else {
            return Err(bad("the checkpoint text must end with a newline".into()));
        };
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad(
                "a checkpoint needs three lines: origin, tree size and root hash".into(),
            ));
        };
        check_origin(origin)?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad(format!(
                "the checkpoint tree size {size:?} is not a decimal number without leading zeros"
            )));
        }
        let size: u64 = size
            .parse()
            .map_err(|_| bad(format!("the checkpoint tree size {size} is too large")))?;
        let raw = B64
            .decode(root)
            .map_err(|_| bad("the checkpoint root hash is not standard base64".into()))?;
        let root: Hash = raw.as_slice().try_into().map_err(|_| {
            bad(format!(
                "the checkpoint root hash is {} bytes, not 32",
                raw.len()
            ))
        })?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("a checkpoint extension line is empty".into()));
        }
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        };
        if cp.to_text() != text {
            return Err(bad(
                "the checkpoint text is not in canonical form (root base64 padding or bits)".into(),
            ));
        }
        Ok(cp)
    }
}

/// Signs `cp` as a note by the log key `key` named `log_name`, which must be the origin.
pub fn sign_checkpoint(
    cp: &Checkpoint,
    log_name: &str,
    key: &SecretKey,
) -> Result<String, Rejection> {
    check_origin(&cp.origin)?;
    if cp
        .extensions
        .iter()
        .any(|e| e.is_empty() || e.contains('\n'))
    {
        return Err(bad(
            "a checkpoint extension line is empty or contains a newline".into(),
        ));
    }
    if cp.origin != log_name {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::WRONG_LOG_ORIGIN,
            format!(
                "the checkpoint origin {:?} is not the log key name {log_name:?}",
                cp.origin
            ),
        ));
    }
    sign_note(&cp.to_text(), log_name, key)
}

/// Opens a signed checkpoint: the note must carry a valid Ed25519 signature by `log`
/// (other signatures, e.g. cosignatures, are ignored here), its text must be a checkpoint,
/// and the origin must be the log key's name.
pub fn open_checkpoint(
    note: &str,
    log: &NoteVerifier,
) -> Result<(Checkpoint, SignedNote), Rejection> {
    if log.alg != ALG_ED25519 {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::BAD_VERIFIER_KEY,
            format!(
                "the log key {} must be an ed25519 (0x01) note key, not type 0x{:02x}",
                log.name, log.alg
            ),
        ));
    }
    let parsed = parse_note(note)?;
    match verify_note(&parsed, std::slice::from_ref(log)) {
        Ok(_) => {}
        Err(e) if e.reason == reasons::NO_TRUSTED_SIGNATURE => {
            return Err(Rejection::new(
                RejectClass::Unauthenticated,
                reasons::UNKNOWN_LOG_KEY,
                format!(
                    "the checkpoint is not signed by the log key {}+{}",
                    log.name,
                    hex::encode(log.key_hash)
                ),
            ));
        }
        Err(e) => return Err(e),
    }
    let cp = Checkpoint::parse(&parsed.text)?;
    if cp.origin != log.name {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::WRONG_LOG_ORIGIN,
            format!(
                "the checkpoint origin {:?} is not the log's name {:?}",
                cp.origin, log.name
            ),
        ));
    }
    Ok((cp, parsed))
}

/// A tlog-cosignature/v1 by the witness key `key` named `witness_name` on `cp` at
/// `timestamp_secs` (POSIX seconds; values above 2^63 - 1 are clamped to it, as the spec
/// caps timestamps there).
pub fn cosign(
    cp: &Checkpoint,
    witness_name: &str,
    key: &SecretKey,
    timestamp_secs: u64,
) -> NoteSignature {
    let ts = timestamp_secs.min(i64::MAX as u64);
    let ed = key.sign(&cosignature_message(&cp.to_text(), ts));
    let mut sig = Vec::with_capacity(72);
    sig.extend_from_slice(&ts.to_be_bytes());
    sig.extend_from_slice(&ed);
    NoteSignature {
        name: witness_name.to_owned(),
        key_hash: note_key_hash(
            witness_name,
            ALG_COSIGNATURE_V1,
            &key.verify_key().to_bytes(),
        ),
        sig,
    }
}

/// The note signature line of a cosignature, `— <name> <base64>\n`, to append to the
/// signed checkpoint.
pub fn cosignature_line(sig: &NoteSignature) -> String {
    sig.to_line()
}

fn bad_cosig(message: String) -> Rejection {
    Rejection::new(
        RejectClass::Unauthenticated,
        reasons::BAD_COSIGNATURE,
        message,
    )
}

/// Verifies that `sig` is `witness`'s cosignature on `cp`; returns its timestamp.
pub fn verify_cosignature(
    cp: &Checkpoint,
    sig: &NoteSignature,
    witness: &NoteVerifier,
) -> Result<u64, Rejection> {
    if witness.alg != ALG_COSIGNATURE_V1 {
        return Err(bad_cosig(format!(
            "the witness key {} is not a cosignature/v1 (0x04) key",
            witness.name
        )));
    }
    if sig.name != witness.name || sig.key_hash != witness.key_hash {
        return Err(bad_cosig(format!(
            "the cosignature is by {}+{}, not by the witness {}+{}",
            sig.name,
            hex::encode(sig.key_hash),
            witness.name,
            hex::encode(witness.key_hash)
        )));
    }
    match check_signature(&cp.to_text(), sig, witness) {
        Ok(Some(ts)) => Ok(ts),
        Ok(None) => Err(bad_cosig(format!(
            "the signature by {} is not a cosignature",
            witness.name
        ))),
        Err(m) => Err(bad_cosig(m)),
    }
}

/// The number of distinct witnesses (distinct public keys, so one key listed under two
/// names counts once) with a valid cosignature on `cp` among `sigs`. Signatures by other
/// keys and invalid ones are ignored.
pub fn cosignature_quorum(
    cp: &Checkpoint,
    sigs: &[NoteSignature],
    witnesses: &[NoteVerifier],
) -> usize {
    let mut counted: Vec<[u8; 32]> = Vec::new();
    for w in witnesses {
        let key = w.key.to_bytes();
        if counted.contains(&key) {
            continue;
        }
        if sigs.iter().any(|s| verify_cosignature(cp, s, w).is_ok()) {
            counted.push(key);
        }
    }
    counted.len()
}
