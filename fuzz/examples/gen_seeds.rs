//! Writes the committed seed corpora under `fuzz/seeds/<target>/` from real data: the bundled
//! sample files (`data/sample`), the catalogue (`data/catalogue`) and envelopes, receipts,
//! registry versions, checkpoints and bundles produced by the project's own code for the
//! fixture federation. Run from the repository root:
//! `cargo +nightly run --manifest-path fuzz/Cargo.toml --example gen_seeds`.

use prost::Message;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::logkeys::log_verifier;
use rcpfed_core::registry::RootTrustFile;
use rcpfed_fuzz as fx;
use std::fs;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    if let Err(e) = fs::create_dir_all(dir).and_then(|_| fs::write(dir.join(name), bytes)) {
        panic!("cannot write seed {}/{name}: {e}", dir.display());
    }
}

fn read(path: &str) -> Vec<u8> {
    match fs::read(path) {
        Ok(b) => b,
        Err(e) => panic!("cannot read {path} (run from the repository root): {e}"),
    }
}

/// `mode` byte followed by `bytes`.
fn moded(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![mode];
    v.extend_from_slice(bytes);
    v
}

fn main() {
    let root = PathBuf::from("fuzz/seeds");
    let mut statements = Vec::new();
    for (i, node) in fx::NODES.iter().enumerate() {
        for st in fx::sample_statements(node) {
            statements.push((i, st));
        }
    }

    // envelope_statement and feed_entry: real statements from the sample data, signed.
    let dir = root.join("envelope_statement");
    let feed = root.join("feed_entry");
    for (n, (i, st)) in statements.iter().enumerate() {
        let payload = st.encode();
        let env = fx::sign_statement_payload(*i, payload.clone());
        write(&dir, &format!("envelope-{n}"), &moded(0, &env.encode()));
        write(&dir, &format!("payload-{n}"), &moded(1, &payload));
        let receipt = fx::receipt_for(&env, &st.header.node_id, st.header.seq, n as u64 + 1);
        let entry = fx::feed_entry(&env, &receipt, n as u64 + 1);
        write(
            &feed,
            &format!("entry-{n}"),
            &moded(0, &entry.encode_to_vec()),
        );
        write(&feed, &format!("payload-{n}"), &moded(1, &payload));
    }
    // A chunked snapshot: manifest statement plus its first chunk.
    if let Some((i, st)) = statements
        .iter()
        .find(|(_, s)| matches!(s.body, rcpfed_core::statement::Body::Indicators(_)))
        && let rcpfed_core::statement::Body::Indicators(snap) = &st.body
    {
        let (manifest, chunks) = rcpfed_core::chunks::encode_chunks(&snap.observations, 4);
        let mut chunked = st.clone();
        let mut s = snap.clone();
        s.observations.clear();
        s.chunks = Some(manifest);
        chunked.body = rcpfed_core::statement::Body::Indicators(s);
        let payload = chunked.encode();
        let env = fx::sign_statement_payload(*i, payload.clone());
        let receipt = fx::receipt_for(&env, &chunked.header.node_id, chunked.header.seq, 99);
        let entry = fx::feed_entry(&env, &receipt, 99);
        write(&feed, "chunked-entry", &moded(0, &entry.encode_to_vec()));
        write(&feed, "chunked-payload", &moded(1, &payload));
        if let Some(first) = chunks.first() {
            let mut v = vec![2];
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            v.extend_from_slice(&payload);
            v.extend_from_slice(first);
            write(&feed, "chunk-0", &v);
        }
    }

    // feed_entry mode 3: the real catalogue (data/catalogue) as version 1 and version 2.
    let text = String::from_utf8_lossy(&read("data/catalogue/catalogue.toml")).into_owned();
    match rcpfed_core::catalogue::Catalogue::from_toml(&text) {
        Ok(cat) => {
            let v1 = cat.to_document(fx::FED, 1, fx::NOW, None);
            write(&feed, "catalogue-v1", &moded(3, &v1.encode_to_vec()));
            let v2 = cat.to_document(
                fx::FED,
                2,
                fx::NOW,
                Some(rcpfed_core::Digest::of(b"catalogue version 1")),
            );
            write(&feed, "catalogue-v2", &moded(3, &v2.encode_to_vec()));
        }
        Err(e) => panic!("data/catalogue/catalogue.toml does not load: {e}"),
    }

    // import_csv: the real sample and catalogue files, and an SDMX-CSV rendering.
    let dir = root.join("import_csv");
    for path in [
        "data/sample/colombo/remittances.csv",
        "data/sample/abu-dhabi/remittances.csv",
        "data/sample/colombo/policy.toml",
        "data/sample/abu-dhabi/policy.toml",
        "data/sample/midwa/policy.toml",
        "data/sample/indicators.csv",
    ] {
        let name = path.trim_start_matches("data/sample/").replace('/', "-");
        let bytes = read(path);
        // Keep seeds small: the first 60 lines.
        let text = String::from_utf8_lossy(&bytes);
        let head: String = text.lines().take(60).map(|l| format!("{l}\n")).collect();
        write(&dir, &name, head.as_bytes());
    }
    write(
        &dir,
        "sdmx-colombo.csv",
        b"STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,TIME_PERIOD,SEX,AGE,OBS_VALUE,UNIT_MEASURE,UNIT_MULT,OBS_STATUS,CONF_STATUS,COMMENT,SOURCE\n\
          dataflow,GFMD:MIG_STOCK(1.0.0),I,LKA,2020,F,_T,1.5,persons,6,A,F,\"mid-year, revised\",UN DESA\n\
          dataflow,GFMD:REMIT_INFLOW(1.0.0),A,IND,2024,,,129,current USD,9,E,,,World Bank/KNOMAD\n",
    );

    // registry: version 1 of the fixture (payload, signed envelope), the root trust file.
    let dir = root.join("registry");
    let v1 = fx::registry_v1();
    let payload = v1.encode();
    write(&dir, "payload-v1", &moded(0, &payload));
    write(&dir, "signed-payload-v1", &moded(1, &payload));
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.previous_digest = Some(rcpfed_core::Digest::of(&payload));
    let env2 = fx::sign_registry_payload(v2.encode());
    write(&dir, "envelope-v2", &moded(2, &env2.encode()));
    let trust: RootTrustFile = v1.root.to_trust_file(fx::FED);
    write(
        &dir,
        "root-trust",
        &moded(
            3,
            trust.to_toml().expect("root trust file as TOML").as_bytes(),
        ),
    );

    // note and checkpoint: a real signed, cosigned checkpoint and the log's verifier key.
    let st = &statements[0].1;
    let env = fx::sign_statement_payload(0, st.encode());
    let (cp, note, _) = fx::signed_checkpoint(&env);
    write(&root.join("note"), "checkpoint-note", note.as_bytes());
    if let Some(log) = log_verifier(&fx::federation()) {
        write(&root.join("note"), "vkey", log.to_vkey().as_bytes());
    }
    write(
        &root.join("checkpoint"),
        "signed",
        &moded(0, note.as_bytes()),
    );
    write(
        &root.join("checkpoint"),
        "text",
        &moded(1, cp.to_text().as_bytes()),
    );

    // bundle: a complete, valid bundle.
    write(
        &root.join("bundle"),
        "valid.json",
        fx::bundle().to_json().as_bytes(),
    );

    // Sanity: every envelope seed decodes.
    let _ = SignedEnvelope::decode(&env.encode());
    println!("seeds written under {}", root.display());
}
