//! C2SP checkpoints: the checkpoint text grammar (also behind a valid log signature, which the
//! target adds, as a witness or a node sees it), opening a signed checkpoint, and cosignatures.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::checkpoint::{Checkpoint, cosignature_quorum, open_checkpoint};
use rcpfed_core::logkeys::{log_origin, log_verifier, witness_verifiers};
use rcpfed_core::note::{NoteVerifier, sign_note};
use rcpfed_fuzz as fx;
use std::sync::OnceLock;

fn keys() -> &'static (NoteVerifier, Vec<NoteVerifier>) {
    static F: OnceLock<(NoteVerifier, Vec<NoteVerifier>)> = OnceLock::new();
    F.get_or_init(|| {
        let fed = fx::federation();
        let log = match log_verifier(&fed) {
            Some(l) => l,
            None => panic!("the fixture has no log key"),
        };
        let witnesses = witness_verifiers(&fed)
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        (log, witnesses)
    })
}

fuzz_target!(|data: &[u8]| {
    let (log, witnesses) = keys();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        if let Ok(cp) = Checkpoint::parse(&text) {
            let again = Checkpoint::parse(&cp.to_text());
            assert_eq!(
                again.as_ref().ok(),
                Some(&cp),
                "checkpoint text does not round-trip"
            );
        }
        if let Ok((cp, note)) = open_checkpoint(&text, log) {
            let _ = cosignature_quorum(&cp, &note.signatures, witnesses);
        }
    } else if let Ok(note) = sign_note(&text, &log_origin(fx::FED), &fx::hub_key())
        && let Ok((cp, signed)) = open_checkpoint(&note, log)
    {
        let _ = cosignature_quorum(&cp, &signed.signatures, witnesses);
    }
});
