//! A statement's decoded payload, carried beside its envelope from the verifier that decoded
//! it to the store's apply step, so that the apply step does not decode the envelope again.

use rcpfed_core::statement::Statement;
use std::sync::Arc;

/// The decoded statement of a stored entry's envelope, when the caller has it: the hub's
/// sequencer (decoded in its verify step) and the node's mirror (decoded to verify the entry).
/// The store's apply step uses it in place of decoding the envelope; without it (an entry read
/// back from the database) the apply step decodes and checks the envelope itself.
///
/// It is the envelope's own content, so it takes no part in equality (the envelope is
/// compared), and a statement read back from the store has none.
#[derive(Clone, Default)]
pub struct DecodedStatement(Option<Arc<Statement>>);

impl DecodedStatement {
    /// The caller's decoded statement. It must be the decoding of the entry's envelope
    /// payload: the apply step writes the view from it.
    pub fn of(statement: Arc<Statement>) -> Self {
        Self(Some(statement))
    }

    /// The statement, if the caller handed one.
    pub fn get(&self) -> Option<&Statement> {
        self.0.as_deref()
    }
}

impl PartialEq for DecodedStatement {
    /// Always equal: the decoded form adds nothing to the envelope, which its owner compares.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for DecodedStatement {
    // Not the statement: an inline snapshot's observations would flood any debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "DecodedStatement(held)"
        } else {
            "DecodedStatement(none)"
        })
    }
}
