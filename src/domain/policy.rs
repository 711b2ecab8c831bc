//! A DICT rate-limit policy: its name, the participant category, and the bucket's configuration.
//!
//! Invariants: a [`PolicyName`] is 1–64 characters of `A–Z`, `0–9` and `_` (the shape of every
//! name in BACEN's rate table); a [`BucketConfig`] that passed [`BucketConfig::check`] has
//! `capacity`, `refill_tokens` and `refill_period_secs` all > 0.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::snapshot::RejectReason;

/// The name DICT gives a policy (`ENTRIES_WRITE`, `POLICIES_LIST`, …); the legacy design's
/// `endpoint_id`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PolicyName(Arc<str>);

impl PolicyName {
    /// Longest name accepted. BACEN's longest today is 36 characters.
    pub const MAX_LEN: usize = 64;

    /// Whether `other` is this very name (a clone of it), not only an equal one: a test of one
    /// address.
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Checks the shape of a policy name as DICT sends it.
    pub fn new(name: &str) -> Result<Self, RejectReason> {
        let well_formed = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if well_formed {
            Ok(Self(Arc::from(name)))
        } else {
            Err(RejectReason::MalformedPolicyName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl TryFrom<String> for PolicyName {
    type Error = RejectReason;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<PolicyName> for String {
    fn from(n: PolicyName) -> Self {
        n.0.to_string()
    }
}

/// The participant (PSP) category BACEN assigns, `A` (largest) to `H` (smallest). It sets the
/// capacity and refill of the anti-scan buckets and can change between two polls.
///
/// DICT's own schema still says `A`–`F` while its rate table defines `A`–`H`; a letter outside
/// `A`–`H` is kept as [`PspCategory::Unknown`] (the sample is still stored, the caller warns)
/// rather than dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PspCategory {
    /// Category A.
    A,
    /// Category B.
    B,
    /// Category C.
    C,
    /// Category D.
    D,
    /// Category E.
    E,
    /// Category F.
    F,
    /// Category G.
    G,
    /// Category H.
    H,
    /// Any other single character DICT sent. Kept verbatim.
    Unknown(char),
}

impl PspCategory {
    /// The eight categories of DICT's current rate table, in order.
    pub const KNOWN: [Self; 8] = [
        Self::A,
        Self::B,
        Self::C,
        Self::D,
        Self::E,
        Self::F,
        Self::G,
        Self::H,
    ];

    /// Parses the `Category` element. Surrounding white space is ignored; an empty or
    /// multi-character value is not a category at all.
    pub fn parse(text: &str) -> Result<Self, RejectReason> {
        let mut chars = text.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(Self::from_char(c)),
            _ => Err(RejectReason::MalformedCategory),
        }
    }

    /// The category for one letter; lowercase letters are read as their uppercase form.
    pub fn from_char(c: char) -> Self {
        match c.to_ascii_uppercase() {
            'A' => Self::A,
            'B' => Self::B,
            'C' => Self::C,
            'D' => Self::D,
            'E' => Self::E,
            'F' => Self::F,
            'G' => Self::G,
            'H' => Self::H,
            _ => Self::Unknown(c),
        }
    }

    /// The letter as DICT writes it.
    pub fn as_char(self) -> char {
        match self {
            Self::A => 'A',
            Self::B => 'B',
            Self::C => 'C',
            Self::D => 'D',
            Self::E => 'E',
            Self::F => 'F',
            Self::G => 'G',
            Self::H => 'H',
            Self::Unknown(c) => c,
        }
    }

    /// Whether this is one of `A`–`H`.
    pub fn is_known(self) -> bool {
        !matches!(self, Self::Unknown(_))
    }
}

impl fmt::Display for PspCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_char())
    }
}

impl Serialize for PspCategory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PspCategory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A bucket's configuration as DICT reports it at one moment: it holds at most `capacity`
/// tokens and gains `refill_tokens` every `refill_period_secs` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BucketConfig {
    /// Most tokens the bucket holds (the burst allowance).
    pub capacity: i64,
    /// Tokens added at each refill step.
    pub refill_tokens: i64,
    /// Length of a refill step, in seconds. Never assume 60.
    pub refill_period_secs: i64,
}

impl BucketConfig {
    /// Rejects a zero or negative capacity, refill or period.
    pub fn check(&self) -> Result<(), RejectReason> {
        if self.capacity <= 0 {
            Err(RejectReason::NonPositiveCapacity)
        } else if self.refill_tokens <= 0 {
            Err(RejectReason::NonPositiveRefillTokens)
        } else if self.refill_period_secs <= 0 {
            Err(RejectReason::NonPositiveRefillPeriod)
        } else {
            Ok(())
        }
    }

    /// Refill rate in tokens per second: `refill_tokens / refill_period_secs`.
    pub fn refill_per_second(&self) -> f64 {
        self.refill_tokens as f64 / self.refill_period_secs as f64
    }
}

/// A policy as last seen: its name, bucket configuration and the participant's category.
/// This is a row of the legacy `dict_rate_limit_policies` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The policy's name.
    pub name: PolicyName,
    /// Capacity and refill.
    pub bucket: BucketConfig,
    /// The participant's category when this configuration was seen.
    pub category: PspCategory,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_the_rate_table_is_accepted() {
        for name in [
            "ENTRIES_READ_USER_ANTISCAN_V2",
            "INFRACTION_REPORTS_LIST_WITHOUT_ROLE",
            "POLICIES_LIST",
        ] {
            assert_eq!(
                PolicyName::new(name).map(|n| n.to_string()),
                Ok(name.into())
            );
        }
    }

    #[test]
    fn malformed_names_are_rejected() {
        for name in [
            "",
            "entries_write",
            "ENTRIES WRITE",
            "ENTRIES-WRITE",
            &"A".repeat(65),
        ] {
            assert_eq!(
                PolicyName::new(name),
                Err(RejectReason::MalformedPolicyName),
                "{name:?}"
            );
        }
    }

    #[test]
    fn categories_a_to_h_are_known_and_others_kept() {
        for (c, letter) in PspCategory::KNOWN.iter().zip('A'..='H') {
            assert_eq!(PspCategory::parse(&letter.to_string()), Ok(*c));
            assert!(c.is_known());
        }
        assert_eq!(PspCategory::parse(" g "), Ok(PspCategory::G));
        assert_eq!(PspCategory::parse("Z"), Ok(PspCategory::Unknown('Z')));
        assert!(!PspCategory::Unknown('Z').is_known());
        assert_eq!(PspCategory::parse(""), Err(RejectReason::MalformedCategory));
        assert_eq!(
            PspCategory::parse("AB"),
            Err(RejectReason::MalformedCategory)
        );
    }

    #[test]
    fn bucket_config_rejects_each_non_positive_field() {
        let ok = BucketConfig {
            capacity: 20,
            refill_tokens: 6,
            refill_period_secs: 60,
        };
        assert_eq!(ok.check(), Ok(()));
        assert!((ok.refill_per_second() - 0.1).abs() < 1e-12);
        let zero_cap = BucketConfig { capacity: 0, ..ok };
        let neg_refill = BucketConfig {
            refill_tokens: -1,
            ..ok
        };
        let zero_period = BucketConfig {
            refill_period_secs: 0,
            ..ok
        };
        assert_eq!(zero_cap.check(), Err(RejectReason::NonPositiveCapacity));
        assert_eq!(
            neg_refill.check(),
            Err(RejectReason::NonPositiveRefillTokens)
        );
        assert_eq!(
            zero_period.check(),
            Err(RejectReason::NonPositiveRefillPeriod)
        );
    }
}
