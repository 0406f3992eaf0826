//! Validation levels: what a validator's pass certifies, ordered from nothing to hold-out proof.

use std::fmt;
use std::str::FromStr;

/// How much a passing validator certifies. Ordered: `None < Syntax < … < Proven`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValidationLevel {
    /// Nothing was checked.
    None = 0,
    /// The result parses or compiles.
    Syntax = 1,
    /// Required keys, the entry symbol or required substrings are present.
    Schema = 2,
    /// Structure or signature matches the contract.
    Property = 3,
    /// Executed against real cases and agreed with an oracle.
    Oracle = 4,
    /// Produced by a primitive that passed the hold-out gate; no per-call check needed.
    Proven = 5,
}

/// Every level, lowest first.
pub const ALL_LEVELS: [ValidationLevel; 6] = [
    ValidationLevel::None,
    ValidationLevel::Syntax,
    ValidationLevel::Schema,
    ValidationLevel::Property,
    ValidationLevel::Oracle,
    ValidationLevel::Proven,
];

impl ValidationLevel {
    /// The upper-case name used in ledgers and reports (`"ORACLE"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationLevel::None => "NONE",
            ValidationLevel::Syntax => "SYNTAX",
            ValidationLevel::Schema => "SCHEMA",
            ValidationLevel::Property => "PROPERTY",
            ValidationLevel::Oracle => "ORACLE",
            ValidationLevel::Proven => "PROVEN",
        }
    }

    /// The level's rank, 0 for `None` up to 5 for `Proven`.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for ValidationLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is not one of the six levels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed validation level {0:?} (expected one of NONE, SYNTAX, SCHEMA, PROPERTY, ORACLE, PROVEN)"
)]
pub struct LevelParseError(pub String);

impl FromStr for ValidationLevel {
    type Err = LevelParseError;

    /// Parses a level name, case-insensitively; anything else is an error, never a default.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_LEVELS
            .iter()
            .copied()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| LevelParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_from_none_to_proven() {
        for pair in ALL_LEVELS.windows(2) {
            assert!(pair[0] < pair[1], "{} should be below {}", pair[0], pair[1]);
        }
        assert_eq!(ValidationLevel::Proven.rank(), 5);
    }

    #[test]
    fn names_parse_case_insensitively_and_round_trip() {
        for level in ALL_LEVELS {
            assert_eq!(level.as_str().parse::<ValidationLevel>(), Ok(level));
            assert_eq!(
                level.as_str().to_lowercase().parse::<ValidationLevel>(),
                Ok(level)
            );
        }
        assert_eq!(
            "Oracle".parse::<ValidationLevel>(),
            Ok(ValidationLevel::Oracle)
        );
    }

    #[test]
    fn malformed_names_are_rejected_not_defaulted() {
        for bad in ["", "ORACLES", "5", " schema", "judgment"] {
            assert!(bad.parse::<ValidationLevel>().is_err(), "{bad:?} parsed");
        }
    }
}
