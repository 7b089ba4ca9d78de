//! Registry document verification as a node applies it to a registry version from the feed or
//! its cache: decode and semantic checks of a payload, the root-signature path for version 1
//! (fuzzed payloads signed by the fixture's root keys, so the checks behind the signature are
//! reached), and a whole fuzzed envelope as the next version after the fixture's version 1.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::registry::{
    Registry, RootTrustFile, decode_and_check, verify_first, verify_next, verify_root_signatures,
};
use rcpfed_fuzz as fx;
use std::sync::OnceLock;

fn current() -> &'static (Registry, rcpfed_core::Digest) {
    static F: OnceLock<(Registry, rcpfed_core::Digest)> = OnceLock::new();
    F.get_or_init(|| {
        let r = fx::registry_v1();
        let digest = rcpfed_core::Digest::of(&r.encode());
        (r, digest)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (v1, digest) = current();
    match mode % 4 {
        0 => {
            if let Ok(r) = decode_and_check(rest) {
                let again = decode_and_check(&r.encode());
                assert!(
                    again.is_ok(),
                    "a checked registry does not check after re-encoding: {again:?}"
                );
                let _ = r.to_federation();
            }
        }
        1 => {
            let env = fx::sign_registry_payload(rest.to_vec());
            let _ = verify_root_signatures(&env, &v1.root);
            if let Ok(r) = verify_first(&env, &v1.root, fx::FED, fx::NOW) {
                let _ = r.to_federation();
            }
            let _ = verify_next(v1, digest, &env, fx::NOW);
        }
        2 => {
            if let Ok(env) = SignedEnvelope::decode(rest) {
                let _ = verify_first(&env, &v1.root, fx::FED, fx::NOW);
                let _ = verify_next(v1, digest, &env, fx::NOW);
            }
        }
        _ => {
            if let Ok(file) = RootTrustFile::from_toml(&String::from_utf8_lossy(rest)) {
                let _ = file.to_root_set();
            }
        }
    }
});
