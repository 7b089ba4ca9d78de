//! Signed notes (C2SP signed-note): parsing, signature lines, verifier keys, and verification
//! against the fixture's log and witness keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::logkeys::{log_verifier, witness_verifiers};
use rcpfed_core::note::{
    NoteVerifier, parse_note, parse_signature_line, parse_verifier_key, verify_note,
};
use rcpfed_fuzz as fx;
use std::sync::OnceLock;

fn verifiers() -> &'static Vec<NoteVerifier> {
    static F: OnceLock<Vec<NoteVerifier>> = OnceLock::new();
    F.get_or_init(|| {
        let fed = fx::federation();
        let mut v: Vec<NoteVerifier> = log_verifier(&fed).into_iter().collect();
        v.extend(witness_verifiers(&fed).into_iter().map(|(_, w)| w));
        v
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(note) = parse_note(&text) {
        let _ = verify_note(&note, verifiers());
        // What parses must parse again from its own rendering.
        let again = parse_note(&note.to_note_string());
        assert!(
            again.is_ok(),
            "a parsed note does not parse after rendering: {again:?}"
        );
    }
    for line in text.lines().take(64) {
        let _ = parse_signature_line(line);
        if let Ok(v) = parse_verifier_key(line) {
            let _ = v.to_vkey();
        }
    }
});
