//! Statement bundles (`rcpfed export bundle` / `rcpfed verify`): JSON parsing and every
//! verification step against the fixture's trust anchors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rcpfed_core::bundle::{Bundle, TrustAnchors, all_ok, verify_bundle};
use rcpfed_fuzz as fx;
use std::sync::OnceLock;

fn anchors() -> &'static TrustAnchors {
    static F: OnceLock<TrustAnchors> = OnceLock::new();
    F.get_or_init(fx::anchors)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bundle) = Bundle::from_json(&text) {
        let steps = verify_bundle(&bundle, anchors());
        let _ = all_ok(&steps);
        let again = Bundle::from_json(&bundle.to_json());
        assert_eq!(
            again.as_ref().ok(),
            Some(&bundle),
            "bundle JSON does not round-trip"
        );
    }
});
