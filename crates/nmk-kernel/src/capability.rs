//! Capability tokens and the granted set: deny by default, granted only by trusted code.
//!
//! A capability is a namespaced token: `op:<tool>`, `prim:<entry>`, `fact:<name>`,
//! `trap:<class>`, `tool:<name>` (and, for later services, `net:<what>`, `read:<what>`). A
//! [`Grants`] set starts empty and is only ever extended by kernel code through
//! [`Grants::grant`]; nothing a plan or a model declares is added to it.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The namespaces a capability may live in.
pub const NAMESPACES: &[&str] = &["op", "prim", "fact", "trap", "tool", "net", "read"];

/// A well-formed capability token such as `op:run_tests`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(String);

/// A token that is not `namespace:name` with a known namespace and a clean name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed capability {0:?} (expected one of op:, prim:, fact:, trap:, tool:, net:, read: followed by a name)"
)]
pub struct CapabilityParseError(pub String);

impl FromStr for Capability {
    type Err = CapabilityParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CapabilityParseError(s.chars().take(100).collect());
        let (ns, name) = s.split_once(':').ok_or_else(err)?;
        let clean = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'));
        if NAMESPACES.contains(&ns) && clean {
            Ok(Capability(s.to_owned()))
        } else {
            Err(err())
        }
    }
}

impl Capability {
    /// Parses a token; see [`FromStr`].
    pub fn parse(s: &str) -> Result<Capability, CapabilityParseError> {
        s.parse()
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace (`op`, `prim`, …).
    pub fn namespace(&self) -> &str {
        self.0.split_once(':').map(|(ns, _)| ns).unwrap_or("")
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The capabilities trusted code has granted for one request. Empty authorizes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    granted: BTreeSet<Capability>,
}

impl Grants {
    /// An empty grant set: denies everything.
    pub fn none() -> Grants {
        Grants::default()
    }

    /// Grants `cap`. Only kernel-side, trusted code holds a `&mut Grants`.
    pub fn grant(&mut self, cap: Capability) {
        self.granted.insert(cap);
    }

    /// Withdraws `cap`.
    pub fn revoke(&mut self, cap: &Capability) {
        self.granted.remove(cap);
    }

    /// Whether `cap` is granted.
    pub fn allows(&self, cap: &Capability) -> bool {
        self.granted.contains(cap)
    }

    /// The first of `caps` that is not granted.
    pub fn first_missing<'a>(
        &self,
        caps: impl IntoIterator<Item = &'a Capability>,
    ) -> Option<&'a Capability> {
        caps.into_iter().find(|c| !self.allows(c))
    }

    /// The granted tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.granted.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_need_a_known_namespace_and_a_clean_name() {
        for good in [
            "op:run_tests",
            "prim:c_gcd",
            "fact:letter_count",
            "trap:c_gcd",
            "tool:web",
            "net:fetch",
        ] {
            assert!(Capability::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "op:",
            "run_tests",
            "root:all",
            "op:a b",
            "OP:x",
            "op:x;rm",
        ] {
            assert!(Capability::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn empty_grants_deny_everything_and_granting_allows() {
        let cap = Capability::parse("op:memory").unwrap();
        let mut grants = Grants::none();
        assert!(!grants.allows(&cap));
        assert_eq!(grants.first_missing([&cap]), Some(&cap));
        grants.grant(cap.clone());
        assert!(grants.allows(&cap));
        assert_eq!(grants.first_missing([&cap]), None);
        grants.revoke(&cap);
        assert!(!grants.allows(&cap));
    }
}
