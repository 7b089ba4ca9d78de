//! RFC 8032 section 7.1 Ed25519 test vectors, through the crate's own key API.

#![allow(clippy::unwrap_used)]

use rcpfed_core::keys::{KeyError, SecretKey, VerifyKey};

struct Vector {
    name: &'static str,
    seed: &'static str,
    public: &'static str,
    message: &'static str,
    signature: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "TEST 1",
        seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        public: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
                    5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    },
    Vector {
        name: "TEST 2",
        seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        public: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                    085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    },
    Vector {
        name: "TEST 3",
        seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        public: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac\
                    18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    },
    Vector {
        name: "TEST SHA(abc)",
        seed: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        public: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        message: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                  2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        signature: "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589\
                    09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    },
];

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).unwrap()
}

#[test]
fn rfc8032_section_7_1_vectors() {
    for v in VECTORS {
        let seed: [u8; 32] = unhex(v.seed).try_into().unwrap();
        let public = unhex(v.public);
        let message = unhex(v.message);
        let signature = unhex(v.signature);
        assert_eq!((public.len(), signature.len()), (32, 64), "{}", v.name);

        let sk = SecretKey::from_seed(&seed);
        assert_eq!(
            sk.verify_key().to_bytes().to_vec(),
            public,
            "{}: public key",
            v.name
        );
        assert_eq!(
            sk.sign(&message).to_vec(),
            signature,
            "{}: signature",
            v.name
        );

        let vk = VerifyKey::from_bytes(&public).unwrap();
        assert!(vk.verify_strict(&message, &signature), "{}: verify", v.name);

        for bit in [0, 7, 255, 256, 511] {
            let mut bad = signature.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !vk.verify_strict(&message, &bad),
                "{}: flipped sig bit {bit}",
                v.name
            );
        }
        let mut other = message.clone();
        match other.first_mut() {
            Some(b) => *b ^= 1,
            None => other.push(0),
        }
        assert!(
            !vk.verify_strict(&other, &signature),
            "{}: other message",
            v.name
        );
    }
}

#[test]
fn non_canonical_s_is_refused() {
    // TEST 1's signature with S replaced by S + L: the same point equation holds, but strict
    // verification requires S < L.
    let vk = VerifyKey::from_bytes(&unhex(VECTORS[0].public)).unwrap();
    let malleated = unhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155\
         4c8c7872aa064e049dbb3013fbf29380d25bf5f0595bbe24655141438e7a101b",
    );
    assert!(!vk.verify_strict(b"", &malleated));
}

#[test]
fn small_order_public_keys_are_refused() {
    // The identity point (y = 1), and the order-2 point (y = -1).
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        VerifyKey::from_bytes(&identity),
        Err(KeyError::WeakPublicKey)
    );
    let minus_one = unhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
    assert_eq!(
        VerifyKey::from_bytes(&minus_one),
        Err(KeyError::WeakPublicKey)
    );
    assert_eq!(
        VerifyKey::from_bytes(&[1u8; 31]),
        Err(KeyError::BadEncoding)
    );
}
