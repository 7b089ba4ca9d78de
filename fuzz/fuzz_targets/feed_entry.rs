//! Feed entry verification as a node's mirror applies it to an untrusted
//! `SubscribeFeedResponse` (rcpfed-node's `mirror::verify_entry`, built from the same core
//! functions without the node's I/O): the statement signature by a key of its issuer, payload
//! decode, the issuer check, the hub receipt and its match with the entry; then, for a chunked
//! snapshot, the manifest and each chunk; a hub catalogue entry through `verify_catalogue`.
//! Mode 0 takes the whole entry from the input; mode 1 takes a statement payload and wraps it
//! in a correctly signed envelope and receipt, so the checks behind the signatures are reached;
//! mode 2 takes a chunk for the manifest of the statement in the rest of the input; mode 3
//! takes a `CatalogueDocument` payload, signed with the hub's key, through `verify_catalogue`
//! as version 1 and as the version after a real version 1.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rcpfed_core::catalogue::{CATALOGUE_PAYLOAD_TYPE, verify_catalogue};
use rcpfed_core::chunks::{check_manifest, decode_chunk};
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, verify_signatures};
use rcpfed_core::members::Federation;
use rcpfed_core::receipt::Receipt;
use rcpfed_core::statement::{Body, Statement};
use rcpfed_fuzz as fx;
use rcpfed_proto::v1 as pb;
use std::sync::OnceLock;

fn federation() -> &'static Federation {
    static F: OnceLock<Federation> = OnceLock::new();
    F.get_or_init(fx::federation)
}

/// The mirror's checks; `Some(statement)` when the entry is accepted.
fn verify_entry(fed: &Federation, entry: &pb::SubscribeFeedResponse) -> Option<Statement> {
    let signed = SignedEnvelope::from_proto(entry.envelope.clone()?);
    let receipt_env = SignedEnvelope::from_proto(entry.receipt.clone()?);
    let hub_keys = fed.hub().map(|h| h.keys.clone()).unwrap_or_default();
    if signed.payload_type != STATEMENT_PAYLOAD_TYPE {
        let _ = verify_catalogue(&signed, &hub_keys, &fed.federation_id, None);
        return None;
    }
    let key = verify_signatures(&signed, |id| fed.key_owner(id).map(|(_, k)| k)).ok()?;
    let statement = Statement::decode(&signed.payload).ok()?;
    let owner = fed.key_owner(&key.key_id).map(|(m, _)| m.id.clone())?;
    if owner != statement.header.node_id {
        return None;
    }
    let r = Receipt::verify(&receipt_env, &hub_keys, &fed.federation_id).ok()?;
    let matches = r.statement_digest == signed.digest()
        && r.feed_index == entry.feed_index
        && r.node_id == statement.header.node_id
        && r.seq == statement.header.seq
        && r.federation_id == fed.federation_id;
    matches.then_some(statement)
}

fn check_chunks(st: &Statement, chunk: Option<&[u8]>) {
    let Body::Indicators(snap) = &st.body else {
        return;
    };
    let Some(m) = &snap.chunks else {
        return;
    };
    if check_manifest(m).is_err() {
        return;
    }
    if let Some(bytes) = chunk {
        for i in 0..m.chunks.len().min(4) {
            let _ = decode_chunk(m, i, bytes);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fed = federation();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(entry) = pb::SubscribeFeedResponse::decode(rest)
                && let Some(st) = verify_entry(fed, &entry)
            {
                check_chunks(&st, None);
            }
        }
        1 => {
            let Ok(st) = Statement::decode(rest) else {
                return;
            };
            let i = fx::node_index(&st.header.node_id).unwrap_or(0);
            let env = fx::sign_statement_payload(i, rest.to_vec());
            let receipt = fx::receipt_for(&env, &st.header.node_id, st.header.seq, 7);
            let entry = fx::feed_entry(&env, &receipt, 7);
            let accepted = verify_entry(fed, &entry);
            if fx::node_index(&st.header.node_id).is_some() {
                assert!(
                    accepted.is_some(),
                    "a correctly signed entry of a member is refused"
                );
            }
            check_chunks(&st, None);
        }
        3 => {
            let env = SignedEnvelope::sign(CATALOGUE_PAYLOAD_TYPE, rest.to_vec(), &fx::hub_key());
            let hub_keys = fed.hub().map(|h| h.keys.clone()).unwrap_or_default();
            let _ = verify_catalogue(&env, &hub_keys, fx::FED, None);
            let previous = (1, rcpfed_core::Digest::of(b"catalogue version 1"));
            let _ = verify_catalogue(&env, &hub_keys, fx::FED, Some(previous));
        }
        _ => {
            // [len: u16 BE][statement payload][chunk bytes]
            if rest.len() < 2 {
                return;
            }
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let body = &rest[2..];
            let (payload, chunk) = body.split_at(n.min(body.len()));
            if let Ok(st) = Statement::decode(payload) {
                check_chunks(&st, Some(chunk));
            }
        }
    }
});
