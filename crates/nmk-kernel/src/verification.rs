//! The verification taxonomy: what a node's validator verdict supports, with fixed confidences.

use std::fmt;
use std::str::FromStr;

use nmk_det::ValidationLevel;

/// What a task's result is backed by. Never a bare "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verification {
    /// A validator passed at ORACLE or above.
    Verified,
    /// A validator passed at PROPERTY.
    Validated,
    /// A validator passed at SYNTAX or SCHEMA.
    Checked,
    /// No validator: an op registered as judgment-only, or nothing certified.
    Judgment,
    /// The validator failed, was missing at run time, or raised.
    Unverified,
}

/// The inclusive confidence band in which a same-kind retry is worth running.
pub const REPAIR_BAND: (f64, f64) = (0.5, 0.8);

impl Verification {
    /// The calibrated confidence this verdict supports.
    pub fn confidence(self) -> f64 {
        match self {
            Verification::Verified => 0.95,
            Verification::Validated => 0.8,
            Verification::Checked => 0.6,
            Verification::Judgment => 0.5,
            Verification::Unverified => 0.1,
        }
    }

    /// The verification a *passing* validator at `level` supports.
    pub fn for_pass(level: ValidationLevel) -> Verification {
        match level {
            ValidationLevel::Oracle | ValidationLevel::Proven => Verification::Verified,
            ValidationLevel::Property => Verification::Validated,
            ValidationLevel::Syntax | ValidationLevel::Schema => Verification::Checked,
            ValidationLevel::None => Verification::Judgment,
        }
    }

    /// Whether a deterministic validator backs the result (checked, validated or verified).
    pub fn is_evidence_backed(self) -> bool {
        matches!(
            self,
            Verification::Checked | Verification::Validated | Verification::Verified
        )
    }

    /// Whether the confidence lies in the inclusive repair band.
    pub fn in_repair_band(self) -> bool {
        let c = self.confidence();
        c >= REPAIR_BAND.0 && c <= REPAIR_BAND.1
    }

    /// The lower-case name used in ledgers and traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::Validated => "validated",
            Verification::Checked => "checked",
            Verification::Judgment => "judgment",
            Verification::Unverified => "unverified",
        }
    }

    /// The stronger of two verifications (by confidence).
    pub fn stronger(self, other: Verification) -> Verification {
        if other.confidence() > self.confidence() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown verification {0:?}")]
pub struct VerificationParseError(pub String);

impl FromStr for Verification {
    type Err = VerificationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Verification::Verified,
            Verification::Validated,
            Verification::Checked,
            Verification::Judgment,
            Verification::Unverified,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
        .ok_or_else(|| VerificationParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidences_are_fixed_and_ordered() {
        let ordered = [
            Verification::Unverified,
            Verification::Judgment,
            Verification::Checked,
            Verification::Validated,
            Verification::Verified,
        ];
        for pair in ordered.windows(2) {
            assert!(pair[0].confidence() < pair[1].confidence());
        }
        assert_eq!(Verification::Verified.confidence(), 0.95);
        assert_eq!(Verification::Unverified.confidence(), 0.1);
    }

    #[test]
    fn passing_levels_map_to_the_taxonomy() {
        assert_eq!(
            Verification::for_pass(ValidationLevel::Proven),
            Verification::Verified
        );
        assert_eq!(
            Verification::for_pass(ValidationLevel::Oracle),
            Verification::Verified
        );
        assert_eq!(
            Verification::for_pass(ValidationLevel::Property),
            Verification::Validated
        );
        assert_eq!(
            Verification::for_pass(ValidationLevel::Schema),
            Verification::Checked
        );
        assert_eq!(
            Verification::for_pass(ValidationLevel::Syntax),
            Verification::Checked
        );
    }

    #[test]
    fn repair_band_is_inclusive_half_to_point_eight() {
        assert!(Verification::Judgment.in_repair_band());
        assert!(Verification::Checked.in_repair_band());
        assert!(Verification::Validated.in_repair_band());
        assert!(!Verification::Verified.in_repair_band());
        assert!(!Verification::Unverified.in_repair_band());
    }

    #[test]
    fn only_validator_backed_verdicts_count_as_evidence() {
        assert!(Verification::Checked.is_evidence_backed());
        assert!(!Verification::Judgment.is_evidence_backed());
        assert!(!Verification::Unverified.is_evidence_backed());
    }
}
