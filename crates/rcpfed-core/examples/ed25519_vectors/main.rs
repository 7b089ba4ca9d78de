//! Prints the Ed25519 acceptance vectors of docs/spec/keys.md §3:
//!
//! ```sh
//! cargo run -p rcpfed-core --example ed25519_vectors > proto/vectors/ed25519.json
//! ```
//!
//! `tests/ed25519_vectors.rs` regenerates them and checks the committed file is this output.

mod generator;

fn main() {
    print!("{}", generator::vectors_json());
}
