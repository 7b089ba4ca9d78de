//! C2SP signed notes, checkpoints and cosignatures: public test vectors (Go's
//! golang.org/x/mod/sumdb/note examples and the C2SP signed-note spec example), round
//! trips, and refusals.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcpfed_core::checkpoint::{
    Checkpoint, cosign, cosignature_line, cosignature_quorum, open_checkpoint, sign_checkpoint,
    verify_cosignature,
};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::merkle::{Hash, empty_root, leaf_hash, root_from_leaves};
use rcpfed_core::note::{
    ALG_COSIGNATURE_V1, ALG_ED25519, MAX_SIGNATURES, NoteVerifier, note_key_hash, parse_note,
    parse_verifier_key, sign_note, verifier_key_string, verify_note,
};
use rcpfed_core::rejection::reasons;

// golang.org/x/mod/sumdb/note: package documentation and example_test.go.
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                          then you don't know what your problem is.\n";
const PETER_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_LINE: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

// The C2SP signed-note specification's example.
const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

fn peter_key() -> SecretKey {
    let raw = B64
        .decode(PETER_SKEY.splitn(5, '+').nth(4).unwrap())
        .unwrap();
    assert_eq!(raw[0], ALG_ED25519);
    SecretKey::from_seed(&raw[1..].try_into().unwrap())
}

#[test]
fn go_sumdb_note_vector_verifies() {
    let v = parse_verifier_key(PETER_VKEY).unwrap();
    assert_eq!(v.name, "PeterNeumann");
    assert_eq!(hex::encode(v.key_hash), "c74f20a3");
    assert_eq!(v.alg, ALG_ED25519);
    assert_eq!(v.to_vkey(), PETER_VKEY);
    let note = format!("{PETER_TEXT}\n{PETER_LINE}");
    let parsed = parse_note(&note).unwrap();
    assert_eq!(parsed.text, PETER_TEXT);
    assert_eq!(parsed.to_note_string(), note);
    assert_eq!(verify_note(&parsed, &[v]).unwrap(), vec!["PeterNeumann"]);
}

#[test]
fn go_sumdb_note_vector_is_reproduced_by_signing() {
    let key = peter_key();
    assert_eq!(
        verifier_key_string("PeterNeumann", ALG_ED25519, &key.verify_key().to_bytes()),
        PETER_VKEY
    );
    let note = sign_note(PETER_TEXT, "PeterNeumann", &key).unwrap();
    assert_eq!(note, format!("{PETER_TEXT}\n{PETER_LINE}"));
}

#[test]
fn go_sumdb_two_signer_vector() {
    let note = format!("{PETER_TEXT}\n{PETER_LINE}{ENOCH_LINE}");
    let parsed = parse_note(&note).unwrap();
    assert_eq!(parsed.signatures.len(), 2);
    let peter = parse_verifier_key(PETER_VKEY).unwrap();
    let enoch = parse_verifier_key(ENOCH_VKEY).unwrap();
    assert_eq!(
        verify_note(&parsed, &[peter.clone(), enoch.clone()]).unwrap(),
        vec!["PeterNeumann", "EnochRoot"]
    );
    // An unknown signer is ignored as long as a known one verifies.
    assert_eq!(verify_note(&parsed, &[enoch]).unwrap(), vec!["EnochRoot"]);
}

#[test]
fn c2sp_spec_example_verifies() {
    let v = parse_verifier_key(SPEC_VKEY).unwrap();
    let parsed = parse_note(SPEC_NOTE).unwrap();
    assert_eq!(parsed.text, "This is an example message.\n");
    assert_eq!(verify_note(&parsed, &[v]).unwrap(), vec!["example.com/foo"]);
}

#[test]
fn bad_verifier_keys_are_refused() {
    let bad = [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // wrong hash
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // upper case
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  // bad base64
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ];
    // A well-formed key of an unsupported signature type (0x02, ECDSA).
    let peter = parse_verifier_key(PETER_VKEY).unwrap();
    let ecdsa = verifier_key_string("PeterNeumann", 0x02, &peter.key.to_bytes());
    for s in bad.iter().copied().chain([ecdsa.as_str()]) {
        let e = parse_verifier_key(s).unwrap_err();
        assert_eq!(e.reason, reasons::BAD_VERIFIER_KEY, "{s:?}");
    }
    // Every truncation of a good key is refused.
    for i in 0..PETER_VKEY.len() {
        assert!(parse_verifier_key(&PETER_VKEY[..i]).is_err(), "{i}");
    }
}

#[test]
fn malformed_notes_are_refused() {
    let good = format!("{PETER_TEXT}\n{PETER_LINE}");
    let cases = [
        // Truncated: every strict prefix fails (to parse or to verify).
        String::new(),
        PETER_TEXT.to_string(),
        format!("{PETER_TEXT}\n"),
        good[..good.len() - 1].to_string(),
        // A hyphen instead of the em dash.
        good.replace('\u{2014}', "-"),
        // No space after the dash.
        good.replace("\u{2014} ", "\u{2014}"),
        // A control character.
        good.replace("problem,", "problem,\t"),
        // A carriage return.
        good.replace("\n\u{2014}", "\r\n\u{2014}"),
        // Too short a signature.
        format!("{PETER_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        // Non-base64 signature.
        format!("{PETER_TEXT}\n\u{2014} PeterNeumann x08go/ZJ!!\n"),
        // Unpadded base64.
        good.replace("JnAM=", "JnAM"),
    ];
    for c in &cases {
        assert!(parse_note(c).is_err(), "{c:?}");
    }
    for i in 0..good.len() {
        if !good.is_char_boundary(i) {
            continue;
        }
        let prefix = &good[..i];
        let verified = parse_note(prefix)
            .and_then(|n| verify_note(&n, &[parse_verifier_key(PETER_VKEY).unwrap()]));
        assert!(verified.is_err(), "prefix of {i} bytes accepted");
    }
    let e = parse_note(&good[..good.len() - 1]).unwrap_err();
    assert_eq!(e.reason, reasons::MALFORMED_NOTE);
    // Too many signatures.
    let many = format!("{PETER_TEXT}\n{}", PETER_LINE.repeat(MAX_SIGNATURES + 1));
    assert!(parse_note(&many).is_err());
    let enough = format!("{PETER_TEXT}\n{}", PETER_LINE.repeat(MAX_SIGNATURES));
    assert!(parse_note(&enough).is_ok());
}

#[test]
fn note_text_must_end_with_newline_to_sign() {
    let k = SecretKey::from_seed(&[1; 32]);
    assert!(sign_note("no newline", "a.example/k", &k).is_err());
    assert!(sign_note("ok\n", "bad name", &k).is_err());
    assert!(sign_note("ok\n", "bad+name", &k).is_err());
}

#[test]
fn tampered_or_foreign_signatures_are_refused() {
    let peter = parse_verifier_key(PETER_VKEY).unwrap();
    // Text changed under a known signature: BAD_NOTE_SIGNATURE.
    let tampered = format!("{}\n{PETER_LINE}", PETER_TEXT.replace("answer", "Answer"));
    let e = verify_note(
        &parse_note(&tampered).unwrap(),
        std::slice::from_ref(&peter),
    )
    .unwrap_err();
    assert_eq!(e.reason, reasons::BAD_NOTE_SIGNATURE);
    // Signed by another key under the same name: key hash differs, so it is unknown and
    // the note has no trusted signature.
    let other = SecretKey::from_seed(&[9; 32]);
    let forged = sign_note(PETER_TEXT, "PeterNeumann", &other).unwrap();
    let e = verify_note(&parse_note(&forged).unwrap(), std::slice::from_ref(&peter)).unwrap_err();
    assert_eq!(e.reason, reasons::NO_TRUSTED_SIGNATURE);
    // Another key claiming Peter's name and key hash: verified, and fails.
    let mut n = parse_note(&forged).unwrap();
    n.signatures[0].key_hash = peter.key_hash;
    let e = verify_note(&n, std::slice::from_ref(&peter)).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_NOTE_SIGNATURE);
    // One good and one bad signature from known keys: the whole note is refused.
    let mut two = parse_note(&format!("{PETER_TEXT}\n{PETER_LINE}{ENOCH_LINE}")).unwrap();
    two.signatures[1].sig[0] ^= 1;
    let enoch = parse_verifier_key(ENOCH_VKEY).unwrap();
    assert_eq!(
        verify_note(&two, &[peter, enoch]).unwrap_err().reason,
        reasons::BAD_NOTE_SIGNATURE
    );
}

// --- checkpoints -------------------------------------------------------------------------

const LOG: &str = "gfmd.example/rcpfed-log";

fn log_key() -> SecretKey {
    SecretKey::from_seed(&[42; 32])
}

fn log_verifier() -> NoteVerifier {
    NoteVerifier::new(LOG, ALG_ED25519, log_key().verify_key().clone()).unwrap()
}

fn checkpoint(size: u64) -> Checkpoint {
    let leaves: Vec<Hash> = (0..size)
        .map(|i| leaf_hash(format!("statement {i}").as_bytes()))
        .collect();
    Checkpoint {
        origin: LOG.into(),
        size,
        root: root_from_leaves(&leaves),
        extensions: vec![],
    }
}

#[test]
fn c2sp_checkpoint_example_text_parses() {
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let cp = Checkpoint::parse(text).unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert_eq!(cp.to_text(), text);
}

#[test]
fn checkpoint_text_round_trips_and_is_strict() {
    let mut cp = checkpoint(5);
    assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    cp.extensions = vec!["ext one".into()];
    assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    let empty = Checkpoint {
        origin: LOG.into(),
        size: 0,
        root: empty_root(),
        extensions: vec![],
    };
    assert_eq!(Checkpoint::parse(&empty.to_text()).unwrap(), empty);
    let root = B64.encode(checkpoint(5).root);
    let bad = [
        format!("{LOG}\n5\n{root}"),                     // no final newline
        format!("{LOG}\n5\n"),                           // no root
        format!("\n5\n{root}\n"),                        // empty origin
        format!("gfmd.example/rcpfed log\n5\n{root}\n"), // space in origin
        format!("{LOG}\n05\n{root}\n"),                  // leading zero
        format!("{LOG}\n+5\n{root}\n"),                  // sign
        format!("{LOG}\n-5\n{root}\n"),
        format!("{LOG}\n 5\n{root}\n"),
        format!("{LOG}\n5x\n{root}\n"),
        format!("{LOG}\n18446744073709551616\n{root}\n"), // u64 overflow
        format!("{LOG}\n5\n{}\n", &root[..40]),           // short root
        format!("{LOG}\n5\n{}\n", B64.encode([0u8; 31])), // 31 bytes
        format!("{LOG}\n5\n{root}\n\n"),                  // empty extension line
        format!("{LOG}\n5\n{}\n", root.trim_end_matches('=')), // no padding
    ];
    for b in &bad {
        let e = Checkpoint::parse(b).unwrap_err();
        assert_eq!(e.reason, reasons::BAD_CHECKPOINT, "{b:?}");
    }
}

#[test]
fn checkpoint_sign_open_round_trip() {
    let cp = checkpoint(7);
    let note = sign_checkpoint(&cp, LOG, &log_key()).unwrap();
    assert!(note.starts_with(&cp.to_text()));
    let (got, signed) = open_checkpoint(&note, &log_verifier()).unwrap();
    assert_eq!(got, cp);
    assert_eq!(signed.text, cp.to_text());
    // The log key's vkey string round-trips.
    let vkey = log_verifier().to_vkey();
    assert_eq!(parse_verifier_key(&vkey).unwrap(), log_verifier());
}

#[test]
fn checkpoint_signed_by_another_key_is_refused() {
    let cp = checkpoint(7);
    let other = SecretKey::from_seed(&[43; 32]);
    let note = sign_checkpoint(&cp, LOG, &other).unwrap();
    let e = open_checkpoint(&note, &log_verifier()).unwrap_err();
    assert_eq!(e.reason, reasons::UNKNOWN_LOG_KEY);
}

#[test]
fn truncated_or_tampered_checkpoint_is_refused() {
    let cp = checkpoint(7);
    let note = sign_checkpoint(&cp, LOG, &log_key()).unwrap();
    for i in 0..note.len() {
        if note.is_char_boundary(i) {
            assert!(open_checkpoint(&note[..i], &log_verifier()).is_err(), "{i}");
        }
    }
    let bigger = note.replacen("\n7\n", "\n8\n", 1);
    let e = open_checkpoint(&bigger, &log_verifier()).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_NOTE_SIGNATURE);
}

#[test]
fn checkpoint_with_wrong_origin_is_refused() {
    let mut cp = checkpoint(7);
    cp.origin = "elsewhere.example/log".into();
    // The log refuses to sign another origin...
    let e = sign_checkpoint(&cp, LOG, &log_key()).unwrap_err();
    assert_eq!(e.reason, reasons::WRONG_LOG_ORIGIN);
    // ...and a reader refuses a note whose origin is not the log key's name even if the log
    // key signed it.
    let note = sign_note(&cp.to_text(), LOG, &log_key()).unwrap();
    let e = open_checkpoint(&note, &log_verifier()).unwrap_err();
    assert_eq!(e.reason, reasons::WRONG_LOG_ORIGIN);
    // A body that is not a checkpoint at all.
    let note = sign_note("hello\n", LOG, &log_key()).unwrap();
    let e = open_checkpoint(&note, &log_verifier()).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_CHECKPOINT);
}

// --- cosignatures ------------------------------------------------------------------------

fn witness(i: u8) -> (SecretKey, NoteVerifier) {
    let k = SecretKey::from_seed(&[100 + i; 32]);
    let name = format!("witness{i}.example/rcpfed");
    let v = NoteVerifier::new(&name, ALG_COSIGNATURE_V1, k.verify_key().clone()).unwrap();
    (k, v)
}

#[test]
fn cosignature_round_trip_and_wire_format() {
    let cp = checkpoint(7);
    let (k, v) = witness(1);
    let sig = cosign(&cp, &v.name, &k, 1_679_315_147);
    assert_eq!(sig.key_hash, v.key_hash);
    assert_eq!(
        sig.key_hash,
        note_key_hash(&v.name, ALG_COSIGNATURE_V1, &k.verify_key().to_bytes())
    );
    assert_eq!(sig.sig.len(), 72);
    assert_eq!(&sig.sig[..8], &1_679_315_147u64.to_be_bytes());
    // The Ed25519 part signs the spec's message layout.
    let msg = format!("cosignature/v1\ntime 1679315147\n{}", cp.to_text());
    assert!(k.verify_key().verify_strict(msg.as_bytes(), &sig.sig[8..]));
    assert_eq!(verify_cosignature(&cp, &sig, &v).unwrap(), 1_679_315_147);

    // Appended to the signed checkpoint, it parses, the log key still opens the note, and
    // verify_note accepts the cosignature with a type 0x04 verifier.
    let mut note = sign_checkpoint(&cp, LOG, &log_key()).unwrap();
    note.push_str(&cosignature_line(&sig));
    let (opened, signed) = open_checkpoint(&note, &log_verifier()).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(signed.signatures.len(), 2);
    assert_eq!(signed.signatures[1], sig);
    assert_eq!(
        verify_note(&signed, &[log_verifier(), v.clone()]).unwrap(),
        vec![LOG.to_string(), v.name.clone()]
    );
    // A cosigner vkey uses type 0x04 and round-trips.
    let vkey = v.to_vkey();
    assert_eq!(parse_verifier_key(&vkey).unwrap(), v);
}

#[test]
fn cosignature_for_a_different_checkpoint_is_refused() {
    let (k, v) = witness(1);
    let sig = cosign(&checkpoint(7), &v.name, &k, 1000);
    let e = verify_cosignature(&checkpoint(8), &sig, &v).unwrap_err();
    assert_eq!(e.reason, reasons::BAD_COSIGNATURE);
    // Same size, another root.
    let mut forked = checkpoint(7);
    forked.root[0] ^= 1;
    assert!(verify_cosignature(&forked, &sig, &v).is_err());
    // The timestamp is signed.
    let mut later = sig.clone();
    later.sig[7] ^= 1;
    assert!(verify_cosignature(&checkpoint(7), &later, &v).is_err());
    // By another witness.
    let (_, v2) = witness(2);
    assert!(verify_cosignature(&checkpoint(7), &sig, &v2).is_err());
    // A plain ed25519 (0x01) verifier for the same key does not accept a cosignature.
    let plain = NoteVerifier::new(&v.name, ALG_ED25519, k.verify_key().clone()).unwrap();
    assert!(verify_cosignature(&checkpoint(7), &sig, &plain).is_err());
    // Truncated payload.
    let mut short = sig.clone();
    short.sig.truncate(71);
    assert!(verify_cosignature(&checkpoint(7), &short, &v).is_err());
}

#[test]
fn quorum_counts_distinct_valid_witnesses() {
    let cp = checkpoint(9);
    let ws: Vec<(SecretKey, NoteVerifier)> = (1..=3).map(witness).collect();
    let verifiers: Vec<NoteVerifier> = ws.iter().map(|(_, v)| v.clone()).collect();
    let s1 = cosign(&cp, &ws[0].1.name, &ws[0].0, 10);
    let s2 = cosign(&cp, &ws[1].1.name, &ws[1].0, 11);
    let stale = cosign(&checkpoint(8), &ws[2].1.name, &ws[2].0, 12);
    let stranger_key = SecretKey::from_seed(&[7; 32]);
    let stranger = cosign(&cp, "stranger.example/w", &stranger_key, 13);
    assert_eq!(cosignature_quorum(&cp, &[], &verifiers), 0);
    assert_eq!(
        cosignature_quorum(&cp, std::slice::from_ref(&s1), &verifiers),
        1
    );
    // Duplicates of one witness count once; stale and unknown ones not at all.
    let sigs = vec![s1.clone(), s1.clone(), stale, stranger, s2];
    assert_eq!(cosignature_quorum(&cp, &sigs, &verifiers), 2);
    // The same key listed twice under two names counts once.
    let mut twice = verifiers.clone();
    let alias = NoteVerifier::new(
        "alias.example/w",
        ALG_COSIGNATURE_V1,
        ws[0].0.verify_key().clone(),
    )
    .unwrap();
    twice.push(alias.clone());
    let alias_sig = cosign(&cp, &alias.name, &ws[0].0, 14);
    assert_eq!(cosignature_quorum(&cp, &[s1, alias_sig], &twice), 1);
}
