//! SPIFFE ids carried as the one URI SAN of every TLS certificate in the federation:
//! `spiffe://{federation}/node/{id}` for nodes and `spiffe://{federation}/operator/{name}`.

use crate::members::is_valid_member_id;

/// What kind of peer a SPIFFE id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// A node (regional process or the hub).
    Node,
    /// A human operator.
    Operator,
}

impl PeerKind {
    /// The path segment: "node" or "operator".
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Node => "node",
            PeerKind::Operator => "operator",
        }
    }
}

/// A parsed rcpfed SPIFFE id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpiffeId {
    /// The federation id.
    pub trust_domain: String,
    /// Node or operator.
    pub kind: PeerKind,
    /// Member id or operator name.
    pub name: String,
}

impl SpiffeId {
    /// Parses `spiffe://{fed}/node/{id}` or `spiffe://{fed}/operator/{name}`; both the trust
    /// domain and the name must be valid member ids, and nothing else may follow.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let mut parts = rest.split('/');
        let (domain, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !is_valid_member_id(domain) || !is_valid_member_id(name) {
            return None;
        }
        let kind = match kind {
            "node" => PeerKind::Node,
            "operator" => PeerKind::Operator,
            _ => return None,
        };
        Some(SpiffeId {
            trust_domain: domain.to_owned(),
            kind,
            name: name.to_owned(),
        })
    }

    /// The SPIFFE id of node `id` in federation `fed`.
    pub fn node(fed: &str, id: &str) -> String {
        format!("spiffe://{fed}/node/{id}")
    }

    /// The SPIFFE id of operator `name` in federation `fed`.
    pub fn operator(fed: &str, name: &str) -> String {
        format!("spiffe://{fed}/operator/{name}")
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.trust_domain,
            self.kind.as_str(),
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let node = SpiffeId::node("rcp-federation", "colombo");
        assert_eq!(node, "spiffe://rcp-federation/node/colombo");
        let parsed = SpiffeId::parse(&node);
        assert_eq!(
            parsed,
            Some(SpiffeId {
                trust_domain: "rcp-federation".into(),
                kind: PeerKind::Node,
                name: "colombo".into(),
            })
        );
        assert_eq!(parsed.map(|p| p.to_string()), Some(node));
        let op = SpiffeId::operator("rcp-federation", "alice");
        assert_eq!(
            SpiffeId::parse(&op).map(|p| (p.kind, p.name)),
            Some((PeerKind::Operator, "alice".to_owned()))
        );
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "spiffe://rcp-federation/node/",
            "spiffe://rcp-federation/node/colombo/extra",
            "spiffe://rcp-federation/admin/colombo",
            "spiffe://rcp-federation/node/Colombo",
            "spiffe://RCP/node/colombo",
            "https://rcp-federation/node/colombo",
            "spiffe://rcp-federation/node/colombo?x=1",
            "spiffe:///node/colombo",
        ] {
            assert_eq!(SpiffeId::parse(bad), None, "{bad}");
        }
    }
}
