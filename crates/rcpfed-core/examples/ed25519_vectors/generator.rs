//! The generator of `proto/vectors/ed25519.json`: accept/refuse vectors for the exact Ed25519 key
//! and signature rule of docs/spec/keys.md §2. Deterministic: every seed, nonce and message comes
//! from a fixed label, so the output is the same on every run. Shared by the example
//! `ed25519_vectors` (which prints the file) and `tests/ed25519_vectors.rs` (which checks that
//! the committed file is exactly this output, then runs every vector through the real key and
//! signature checks).
//!
//! The points are built with curve25519-dalek's arithmetic directly, never with the checks under
//! test: small-order points from a point of order 8 found as [L]P, non-canonical encodings by
//! adding p to a small y or by setting the sign bit of an x = 0 point.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity as _, IsIdentity as _};
use rcpfed_core::keys::SecretKey;
use serde::Serialize;
use sha2::{Digest as _, Sha512};

/// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The field prime p = 2^255 - 19, little-endian.
const P: [u8; 32] = [
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
];

/// RFC 8032 §7.1 TEST 1.
const RFC8032_TEST1_PUBLIC: &str =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC8032_TEST1_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

/// The whole file.
#[derive(Serialize)]
pub struct VectorFile {
    pub description: Vec<&'static str>,
    pub generator: &'static str,
    pub fields: Vec<Field>,
    pub reasons: Vec<Reason>,
    pub vectors: Vec<Vector>,
}

/// The meaning of one field of a vector.
#[derive(Serialize)]
pub struct Field {
    pub field: &'static str,
    pub meaning: &'static str,
}

/// One refusal reason, in the order the checks apply.
#[derive(Serialize)]
pub struct Reason {
    pub reason: &'static str,
    pub stage: &'static str,
    pub meaning: &'static str,
}

/// One vector.
#[derive(Serialize)]
pub struct Vector {
    pub id: usize,
    pub name: String,
    pub comment: String,
    pub public_key: String,
    pub message: String,
    pub signature: String,
    pub expected: &'static str,
    pub reason: Option<&'static str>,
    pub cofactorless_equation: Option<bool>,
    pub cofactored_equation: Option<bool>,
}

const DESCRIPTION: &[&str] = &[
    "Ed25519 acceptance vectors of rcpfed (docs/spec/keys.md). Every implementation MUST give exactly the outcome in `expected` for every vector: accepting a vector marked refuse, or refusing one marked accept, makes it disagree with the hub and the other nodes.",
    "A vector whose reason starts with A_ is refused when its public key is accepted: a registry version, a member file, a root trust file or a note verifier key naming that key is refused as a whole. The other refusals are of the signature, under a key that is accepted.",
    "`reason` names the first check that refuses, in the order of `reasons`. Only `expected` is normative; the reason is what rcpfed reports (docs/spec/keys.md).",
    "`cofactorless_equation` and `cofactored_equation` are informative: whether [S mod L]B = R + [k]A, respectively [8][S mod L]B = [8]R + [8][k]A, holds for the decoded points, with k = SHA-512(R || A || M) mod L over the bytes as given, and with lenient decoding: y reduced mod p, a sign bit on x = 0 ignored (null when A or R does not decode or a length is wrong). A verifier that only checks an equation accepts every vector where its equation is true; the vectors marked refuse among those are what the extra checks of docs/spec/keys.md §2 exist for.",
];

const GENERATOR: &str = "cargo run -p rcpfed-core --example ed25519_vectors > proto/vectors/ed25519.json (crates/rcpfed-core/examples/ed25519_vectors/); crates/rcpfed-core/tests/ed25519_vectors.rs checks this file is its exact output and runs every vector through rcpfed's key and signature checks";

fn fields() -> Vec<Field> {
    let f = |field, meaning| Field { field, meaning };
    vec![
        f("id", "1-based position"),
        f("name", "short identifier"),
        f("comment", "what the vector exercises"),
        f(
            "public_key",
            "hex of the public key A as it would appear in a registry or member file (normally 32 bytes)",
        ),
        f(
            "message",
            "hex of the signed message M (for rcpfed, the DSSE PAE bytes)",
        ),
        f(
            "signature",
            "hex of the signature R || S (normally 64 bytes; S little-endian)",
        ),
        f("expected", "accept or refuse"),
        f(
            "reason",
            "for refuse, the code of the first check that refuses; null for accept",
        ),
        f(
            "cofactorless_equation",
            "informative: [S mod L]B == R + [k]A for the leniently decoded points, or null",
        ),
        f(
            "cofactored_equation",
            "informative: [8][S mod L]B == [8]R + [8][k]A for the leniently decoded points, or null",
        ),
    ]
}

fn reasons() -> Vec<Reason> {
    let r = |reason, stage, meaning| Reason {
        reason,
        stage,
        meaning,
    };
    vec![
        r("A_ENCODING", "key", "the public key is not 32 bytes"),
        r(
            "A_NOT_A_POINT",
            "key",
            "y (the low 255 bits, reduced mod p) is not the y-coordinate of a curve point",
        ),
        r(
            "A_NON_CANONICAL",
            "key",
            "A decodes, but not from its canonical encoding: the low 255 bits are >= p, or x = 0 and the sign bit is 1",
        ),
        r(
            "A_SMALL_ORDER",
            "key",
            "[8]A is the identity (the 8 small-order points, the identity included)",
        ),
        r(
            "A_MIXED_ORDER",
            "key",
            "[L]A is not the identity: A has a small-order component",
        ),
        r("SIG_LENGTH", "signature", "the signature is not 64 bytes"),
        r(
            "S_OUT_OF_RANGE",
            "signature",
            "S, the last 32 bytes as a little-endian integer, is >= L",
        ),
        r(
            "R_NOT_A_POINT",
            "signature",
            "R (the first 32 bytes) does not decode to a curve point",
        ),
        r(
            "R_NON_CANONICAL",
            "signature",
            "R decodes, but not from its canonical encoding",
        ),
        r("R_SMALL_ORDER", "signature", "[8]R is the identity"),
        r(
            "EQUATION",
            "signature",
            "every check above passes, but [S]B != R + [k]A with k = SHA-512(R || A || M) mod L; this includes every R with a small-order component ([L]R not the identity), which cannot satisfy it under an accepted key",
        ),
    ]
}

fn sha512(parts: &[&[u8]]) -> [u8; 64] {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(&h.finalize());
    out
}

/// A scalar derived from a label and a counter.
fn derived_scalar(label: &str, i: u32) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&sha512(&[label.as_bytes(), &i.to_le_bytes()]))
}

/// k = SHA-512(R || A || M) mod L over the bytes as given.
fn challenge(r: &[u8], a: &[u8], m: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&sha512(&[r, a, m]))
}

fn decode(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    CompressedEdwardsY(*bytes).decompress()
}

fn encode(p: &EdwardsPoint) -> [u8; 32] {
    p.compress().to_bytes()
}

/// [L]P, computed as [L - 1]P + P (a scalar cannot hold L itself).
fn times_l(p: &EdwardsPoint) -> EdwardsPoint {
    p * (-Scalar::ONE) + p
}

/// Little-endian 256-bit addition; panics on overflow.
fn add_le(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0, "256-bit overflow");
    out
}

/// p + v for a small v (no carry out of the first byte for v <= 18).
fn p_plus(v: u8) -> [u8; 32] {
    assert!(v <= 18);
    let mut out = P;
    out[0] += v;
    out
}

fn with_sign_bit(mut bytes: [u8; 32]) -> [u8; 32] {
    bytes[31] |= 0x80;
    bytes
}

/// The canonical encoding of a small y.
fn small_y(v: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[0] = v;
    out
}

/// The 8 points of small order, T[i] = [i]T[1], where T[1] has order 8: the torsion part [L]P
/// of the first point P with a small y whose torsion part has order 8.
fn torsion() -> [EdwardsPoint; 8] {
    let t1 = (2u8..=255)
        .filter_map(|y| decode(&small_y(y)))
        .map(|p| times_l(&p))
        .find(|t| !(t * Scalar::from(4u8)).is_identity())
        .expect("a point with a torsion component of order 8");
    let mut out = [EdwardsPoint::identity(); 8];
    for i in 1..8 {
        out[i] = out[i - 1] + t1;
    }
    assert!(out.iter().all(|t| t.is_small_order()));
    assert!((out[7] + t1).is_identity());
    out
}

/// A signer whose secret scalar is known, so that signatures can be built by hand as well as by
/// rcpfed's signer.
struct Signer {
    key: SecretKey,
    a: Scalar,
    public: [u8; 32],
}

impl Signer {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&sha512(&[b"rcpfed ed25519 vectors: signing key seed"])[..32]);
        let mut clamped = [0u8; 32];
        clamped.copy_from_slice(&sha512(&[&seed])[..32]);
        clamped[0] &= 248;
        clamped[31] &= 127;
        clamped[31] |= 64;
        let a = Scalar::from_bytes_mod_order(clamped);
        let key = SecretKey::from_seed(&seed);
        let public = encode(&EdwardsPoint::mul_base(&a));
        assert_eq!(
            public,
            key.verify_key().to_bytes(),
            "RFC 8032 key derivation"
        );
        Signer { key, a, public }
    }

    /// R || S with S = r + k a mod L, for a given R encoding (whatever point it is) and r.
    fn sign_with(&self, public: &[u8], r_enc: &[u8; 32], r: Scalar, msg: &[u8]) -> Vec<u8> {
        let s = r + challenge(r_enc, public, msg) * self.a;
        [r_enc.as_slice(), s.as_bytes()].concat()
    }
}

/// The informative equations of a vector (see `DESCRIPTION`).
fn equations(public: &[u8], msg: &[u8], sig: &[u8]) -> (Option<bool>, Option<bool>) {
    let (Ok(a_enc), true) = (<[u8; 32]>::try_from(public), sig.len() == 64) else {
        return (None, None);
    };
    let mut r_enc = [0u8; 32];
    r_enc.copy_from_slice(&sig[..32]);
    let mut s_enc = [0u8; 32];
    s_enc.copy_from_slice(&sig[32..]);
    let (Some(a), Some(r)) = (decode(&a_enc), decode(&r_enc)) else {
        return (None, None);
    };
    let s = Scalar::from_bytes_mod_order(s_enc);
    let k = challenge(&r_enc, &a_enc, msg);
    let d = EdwardsPoint::mul_base(&s) - r - a * k;
    (
        Some(d.is_identity()),
        Some(d.mul_by_cofactor().is_identity()),
    )
}

#[derive(Default)]
struct Builder {
    vectors: Vec<Vector>,
}

impl Builder {
    fn push(
        &mut self,
        name: &str,
        comment: &str,
        public: &[u8],
        msg: &[u8],
        sig: &[u8],
        reason: Option<&'static str>,
    ) {
        let (cofactorless, cofactored) = equations(public, msg, sig);
        self.vectors.push(Vector {
            id: self.vectors.len() + 1,
            name: name.to_string(),
            comment: comment.to_string(),
            public_key: hex::encode(public),
            message: hex::encode(msg),
            signature: hex::encode(sig),
            expected: if reason.is_some() { "refuse" } else { "accept" },
            reason,
            cofactorless_equation: cofactorless,
            cofactored_equation: cofactored,
        });
    }
}

/// The first message `label #i` and small-order R (canonical) for which R + [k]A is the identity,
/// so that (R, S = 0) passes a lax cofactorless verifier under the small-order key `public`.
fn forge_under_small_key(
    public: &[u8; 32],
    torsion: &[EdwardsPoint; 8],
    label: &str,
) -> (Vec<u8>, Vec<u8>) {
    let a = decode(public).expect("a decodable key");
    for i in 0u32..10_000 {
        let msg = format!("{label} #{i}").into_bytes();
        for t in torsion {
            let r_enc = encode(t);
            if (t + a * challenge(&r_enc, public, &msg)).is_identity() {
                return (msg, [r_enc, [0u8; 32]].concat());
            }
        }
    }
    panic!("no forgery found for {}", hex::encode(public));
}

fn hex32(s: &str) -> [u8; 32] {
    let v = hex::decode(s).expect("hex");
    v.try_into().expect("32 bytes")
}

/// The points, keys and messages the vector groups share.
struct Material {
    torsion: [EdwardsPoint; 8],
    signer: Signer,
    /// The signer's public key and its point.
    a_enc: [u8; 32],
    a_point: EdwardsPoint,
    /// The honest message and rcpfed's signature over it.
    msg: Vec<u8>,
    honest: [u8; 64],
    non_canonical_small: [(&'static str, [u8; 32]); 6],
    /// y = p + `large_v`, a non-canonical encoding of a point of large order.
    large_v: u8,
    large_nc: [u8; 32],
    not_a_point: [u8; 32],
}

impl Material {
    fn new() -> Self {
        let torsion = torsion();
        let signer = Signer::new();
        let a_enc = signer.public;
        let a_point = decode(&a_enc).expect("the signer's key");
        let non_canonical_small = non_canonical_small_encodings(&torsion);
        let (large_v, large_nc) = non_canonical_large_order();
        let not_a_point = not_a_point();
        let msg = b"rcpfed ed25519 vector: an honest signature".to_vec();
        let honest = signer.key.sign(&msg);
        Material {
            torsion,
            signer,
            a_enc,
            a_point,
            msg,
            honest,
            non_canonical_small,
            large_v,
            large_nc,
            not_a_point,
        }
    }
}

/// The non-canonical encodings of small-order points: y = p (the two points of order 4 with
/// y = 0), y = p + 1 (the identity), and x = 0 with the sign bit set (the identity and the
/// point of order 2, y = -1).
fn non_canonical_small_encodings(t: &[EdwardsPoint; 8]) -> [(&'static str, [u8; 32]); 6] {
    let minus_one = encode(&t[4]);
    let non_canonical_small: [(&str, [u8; 32]); 6] = [
        ("y = p (y = 0, order 4), sign bit 0", p_plus(0)),
        (
            "y = p (y = 0, order 4), sign bit 1",
            with_sign_bit(p_plus(0)),
        ),
        ("y = p + 1 (the identity), sign bit 0", p_plus(1)),
        (
            "y = p + 1 (the identity), sign bit 1",
            with_sign_bit(p_plus(1)),
        ),
        (
            "the identity (x = 0) with the sign bit set",
            with_sign_bit(small_y(1)),
        ),
        (
            "y = -1 (x = 0, order 2) with the sign bit set",
            with_sign_bit(minus_one),
        ),
    ];
    for (what, enc) in &non_canonical_small {
        let point = decode(enc).expect("decodes");
        assert!(point.is_small_order(), "{what}");
        assert_ne!(&encode(&point), enc, "{what} is non-canonical");
    }
    non_canonical_small
}

/// A non-canonical encoding of a point of large order: y = p + v for the first small v that is
/// a y-coordinate. Nobody knows its discrete logarithm, so no signature verifies under it, but
/// a decoder that reduces y mod p accepts it as a key (with a key id of its own).
fn non_canonical_large_order() -> (u8, [u8; 32]) {
    let (large_v, large_nc) = (2u8..=18)
        .map(|v| (v, p_plus(v)))
        .find(|(_, enc)| decode(enc).is_some())
        .expect("some y in 2..=18 is on the curve");
    let large_point = decode(&large_nc).expect("decodes");
    assert!(!large_point.is_small_order() && !large_point.is_torsion_free());
    (large_v, large_nc)
}

/// A canonical 32-byte string that is not a point.
fn not_a_point() -> [u8; 32] {
    (2u8..=255)
        .map(small_y)
        .find(|enc| decode(enc).is_none())
        .expect("some small y is not on the curve")
}

/// Every vector, in file order.
pub fn vector_file() -> VectorFile {
    assert_eq!(
        add_le(&(-Scalar::ONE).to_bytes(), &small_y(1)),
        L,
        "L is (L - 1) + 1"
    );
    let m = Material::new();
    let mut b = Builder::default();
    push_accepted(&mut b, &m);
    push_bad_lengths_and_s(&mut b, &m);
    push_small_order_r(&mut b, &m);
    push_bad_r_encodings(&mut b, &m);
    push_small_order_keys(&mut b, &m);
    push_other_bad_keys(&mut b, &m);
    VectorFile {
        description: DESCRIPTION.to_vec(),
        generator: GENERATOR,
        fields: fields(),
        reasons: reasons(),
        vectors: b.vectors,
    }
}

/// The accepted vectors: RFC 8032's first test and an honest signature.
fn push_accepted(b: &mut Builder, m: &Material) {
    let test1_sig = hex::decode(RFC8032_TEST1_SIGNATURE).expect("hex");
    b.push(
        "valid-rfc8032-test1",
        "RFC 8032 section 7.1 TEST 1 (empty message)",
        &hex32(RFC8032_TEST1_PUBLIC),
        b"",
        &test1_sig,
        None,
    );
    b.push(
        "valid",
        "an honest signature by rcpfed's signer (RFC 8032 deterministic signing)",
        &m.a_enc,
        &m.msg,
        &m.honest,
        None,
    );
}

/// Refused signatures under a valid key: wrong message, wrong length, S out of range.
fn push_bad_lengths_and_s(b: &mut Builder, m: &Material) {
    let (a_enc, msg, honest) = (&m.a_enc, &m.msg, &m.honest);
    let mut other = msg.clone();
    other[0] ^= 0x01;
    b.push(
        "wrong-message",
        "the honest signature over a message with one bit changed",
        a_enc,
        &other,
        honest,
        Some("EQUATION"),
    );
    b.push(
        "signature-63-bytes",
        "the honest signature without its last byte",
        a_enc,
        msg,
        &honest[..63],
        Some("SIG_LENGTH"),
    );
    b.push(
        "signature-65-bytes",
        "the honest signature with a zero byte appended",
        a_enc,
        msg,
        &[honest.as_slice(), &[0]].concat(),
        Some("SIG_LENGTH"),
    );
    let (s_msg, s_sig) = s_plus_l_below_2_253(&m.signer);
    b.push(
        "s-plus-l",
        "an honest signature with S replaced by S + L; S + L < 2^253, so a verifier that only checks the top three bits of S accepts it (both equations hold)",
        a_enc,
        &s_msg,
        &s_sig,
        Some("S_OUT_OF_RANGE"),
    );
    b.push(
        "s-equals-l",
        "the honest R with S = L",
        a_enc,
        msg,
        &[&honest[..32], L.as_slice()].concat(),
        Some("S_OUT_OF_RANGE"),
    );
    let mut high = *honest;
    high[63] |= 0x80;
    b.push(
        "s-high-bit",
        "the honest signature with the top bit of S set (S + 2^255)",
        a_enc,
        msg,
        &high,
        Some("S_OUT_OF_RANGE"),
    );
}

/// A message and its signature with S + L that still fits in 253 bits: an old check of only the
/// top three bits of S misses it.
fn s_plus_l_below_2_253(signer: &Signer) -> (Vec<u8>, Vec<u8>) {
    (0u32..10_000)
        .find_map(|i| {
            let m = format!("rcpfed ed25519 vector: S + L below 2^253 #{i}").into_bytes();
            let sig = signer.key.sign(&m);
            let mut s = [0u8; 32];
            s.copy_from_slice(&sig[32..]);
            let s_plus_l = add_le(&s, &L);
            (s_plus_l[31] & 0xe0 == 0).then(|| (m, [&sig[..32], s_plus_l.as_slice()].concat()))
        })
        .expect("a signature with S + L < 2^253")
}

/// R of small order, signed by the key's holder.
fn push_small_order_r(b: &mut Builder, m: &Material) {
    for (i, point) in m.torsion.iter().enumerate() {
        let r_enc = encode(point);
        let msg = format!("rcpfed ed25519 vector: small-order R #{i}").into_bytes();
        let sig = m.signer.sign_with(&m.a_enc, &r_enc, Scalar::ZERO, &msg);
        let comment = if i == 0 {
            "R = the identity, S = k a mod L, made by the key's holder: [S]B = R + [k]A holds, so a verifier without a small-order check on R accepts this second signature".to_string()
        } else {
            format!(
                "R = T{i}, a point of order {}, S = k a mod L: only the cofactored equation holds",
                8 / gcd(i, 8)
            )
        };
        b.push(
            &format!("r-small-order-{i}"),
            &comment,
            &m.a_enc,
            &msg,
            &sig,
            Some("R_SMALL_ORDER"),
        );
    }
}

/// R non-canonical, of mixed order, or not a point.
fn push_bad_r_encodings(b: &mut Builder, m: &Material) {
    let (a_enc, honest) = (&m.a_enc, &m.honest);
    for (i, (what, r_enc)) in m.non_canonical_small.iter().enumerate() {
        let msg = format!("rcpfed ed25519 vector: non-canonical small-order R #{i}").into_bytes();
        let sig = m.signer.sign_with(a_enc, r_enc, Scalar::ZERO, &msg);
        b.push(
            &format!("r-non-canonical-{i}"),
            &format!(
                "R = {what}, S = k a mod L with k over these R bytes: a verifier that compares points rather than encodings accepts it when R is the identity"
            ),
            a_enc,
            &msg,
            &sig,
            Some("R_NON_CANONICAL"),
        );
    }
    b.push(
        "r-non-canonical-large-order",
        &format!(
            "R = the encoding y = p + {} of a point of large order, with the honest S",
            m.large_v
        ),
        a_enc,
        &m.msg,
        &[m.large_nc.as_slice(), &honest[32..]].concat(),
        Some("R_NON_CANONICAL"),
    );
    let msg = b"rcpfed ed25519 vector: mixed-order R".to_vec();
    let r = derived_scalar("rcpfed ed25519 vectors: mixed-order R nonce", 0);
    let r_mixed = encode(&(EdwardsPoint::mul_base(&r) + m.torsion[1]));
    b.push(
        "r-mixed-order",
        "R = [r]B + T1 (a component of order 8), S = r + k a mod L: the cofactored equation holds, the cofactorless one does not; a cofactored verifier must refuse R outside the prime-order subgroup",
        a_enc,
        &msg,
        &m.signer.sign_with(a_enc, &r_mixed, r, &msg),
        Some("EQUATION"),
    );
    b.push(
        "r-not-a-point",
        &format!(
            "R = the canonical encoding of y = {}, which is not the y-coordinate of a curve point",
            m.not_a_point[0]
        ),
        a_enc,
        &m.msg,
        &[m.not_a_point.as_slice(), &honest[32..]].concat(),
        Some("R_NOT_A_POINT"),
    );
}

/// Refused keys of small order: the identity-key forgery and every torsion point.
fn push_small_order_keys(b: &mut Builder, m: &Material) {
    let identity = small_y(1);
    let forged = [identity.as_slice(), &[0u8; 32]].concat();
    b.push(
        "identity-key-forgery-empty",
        "the identity-key forgery: A = identity, R = identity, S = 0 verifies under an equation-only verifier for ANY message; here the empty message",
        &identity,
        b"",
        &forged,
        Some("A_SMALL_ORDER"),
    );
    b.push(
        "identity-key-forgery",
        "the identity-key forgery over a chosen message",
        &identity,
        b"rcpfed ed25519 vector: transfer everything to mallory",
        &forged,
        Some("A_SMALL_ORDER"),
    );
    for (i, point) in m.torsion.iter().enumerate().skip(1) {
        let public = encode(point);
        let (msg, sig) = forge_under_small_key(
            &public,
            &m.torsion,
            &format!("rcpfed ed25519 vector: small-order A #{i}"),
        );
        b.push(
            &format!("a-small-order-{i}"),
            &format!(
                "A = T{i}, a point of order {}; R small order and S = 0 chosen so that R + [k]A = identity (both equations hold)",
                8 / gcd(i, 8)
            ),
            &public,
            &msg,
            &sig,
            Some("A_SMALL_ORDER"),
        );
    }
}

/// Refused keys: non-canonical, not a point, of mixed order, of the wrong length.
fn push_other_bad_keys(b: &mut Builder, m: &Material) {
    for (i, (what, public)) in m.non_canonical_small.iter().enumerate() {
        let (msg, sig) = forge_under_small_key(
            public,
            &m.torsion,
            &format!("rcpfed ed25519 vector: non-canonical small-order A #{i}"),
        );
        b.push(
            &format!("a-non-canonical-{i}"),
            &format!(
                "A = {what}; R small order and S = 0 chosen so that R + [k]A = identity, k over these A bytes"
            ),
            public,
            &msg,
            &sig,
            Some("A_NON_CANONICAL"),
        );
    }
    for (sign, public) in [(0, m.large_nc), (1, with_sign_bit(m.large_nc))] {
        b.push(
            &format!("a-non-canonical-large-order-{sign}"),
            &format!(
                "A = the encoding y = p + {}, sign bit {sign}, of a point of large order: decoders that reduce y mod p accept it as a key, under a key id other than its canonical encoding's; the signature is the honest one (no one can sign for this key)",
                m.large_v
            ),
            &public,
            &m.msg,
            &m.honest,
            Some("A_NON_CANONICAL"),
        );
    }
    b.push(
        "a-not-a-point",
        &format!(
            "A = the canonical encoding of y = {}, which is not the y-coordinate of a curve point",
            m.not_a_point[0]
        ),
        &m.not_a_point,
        &m.msg,
        &m.honest,
        Some("A_NOT_A_POINT"),
    );
    push_mixed_order_keys(b, m);
    b.push(
        "a-31-bytes",
        "the signer's key without its last byte",
        &m.a_enc[..31],
        &m.msg,
        &m.honest,
        Some("A_ENCODING"),
    );
}

/// A mixed-order key: the signer's point plus T1. Signatures made with the signer's scalar
/// satisfy the cofactored equation always, and the cofactorless one when [k]T1 = identity.
fn push_mixed_order_keys(b: &mut Builder, m: &Material) {
    let t1 = m.torsion[1];
    let mixed = encode(&(m.a_point + t1));
    for (name, want_zero) in [("a-mixed-order-kt-zero", true), ("a-mixed-order", false)] {
        let (msg, sig) = (0u32..10_000)
            .find_map(|i| {
                let msg = format!("rcpfed ed25519 vector: mixed-order A #{i}").into_bytes();
                let r = derived_scalar("rcpfed ed25519 vectors: mixed-order A nonce", i);
                let r_enc = encode(&EdwardsPoint::mul_base(&r));
                let k = challenge(&r_enc, &mixed, &msg);
                ((t1 * k).is_identity() == want_zero)
                    .then(|| (msg.clone(), m.signer.sign_with(&mixed, &r_enc, r, &msg)))
            })
            .expect("a message with the wanted [k]T1");
        let comment = if want_zero {
            "A = [a]B + T1 (a component of order 8), signed with a; the message makes k a multiple of 8, so [k]T1 = identity and both equations hold: a verifier that checks only for small-order A accepts it"
        } else {
            "A = [a]B + T1 (a component of order 8), signed with a; [k]T1 is not the identity, so only the cofactored equation holds: cofactored and cofactorless verifiers disagree"
        };
        b.push(name, comment, &mixed, &msg, &sig, Some("A_MIXED_ORDER"));
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The file's text: pretty JSON with a final newline.
pub fn vectors_json() -> String {
    let mut text = serde_json::to_string_pretty(&vector_file()).expect("serializable");
    text.push('\n');
    text
}
