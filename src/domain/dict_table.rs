//! DICT's published rate table (API spec v2.12.1, which Manual Operacional v8 matches bar two
//! rows): every participant-scope (PSP) policy with its refill and capacity, and the per-category
//! figures of the two anti-scan buckets.
//!
//! This feeds the simulator, tests and benches. The monitor itself never assumes these figures:
//! it reads every bucket's configuration from DICT, which can differ (see the manual/spec
//! discrepancies on `ENTRIES_WRITE` and `CIDS_EVENTS_LIST`) and changes with the category.
//!
//! The spec gives rates as "N/min" or "N/day" and never says which `(RefillTokens,
//! RefillPeriodSec)` pair DICT returns; this table uses `(N, 60)` and `(N, 86400)`.
//! The per-user buckets (`ENTRIES_READ_USER_ANTISCAN*`, one per end user) are left out.

use super::policy::{BucketConfig, PolicyName, PspCategory};

/// How a published policy refills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishedRefill {
    /// The same figures for every participant.
    Fixed(BucketConfig),
    /// Set by the participant's category ([`category_bucket`]).
    ByCategory,
}

/// One row of the published table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedPolicy {
    /// DICT's policy name.
    pub name: &'static str,
    /// Its refill and capacity.
    pub refill: PublishedRefill,
}

impl PublishedPolicy {
    /// The bucket this policy has for a participant of `category`; none for a category outside
    /// `A`–`H` on a category-dependent policy.
    pub fn bucket(&self, category: PspCategory) -> Option<BucketConfig> {
        match self.refill {
            PublishedRefill::Fixed(b) => Some(b),
            PublishedRefill::ByCategory => category_bucket(category),
        }
    }
}

const fn per_min(tokens: i64, capacity: i64) -> PublishedRefill {
    PublishedRefill::Fixed(BucketConfig {
        capacity,
        refill_tokens: tokens,
        refill_period_secs: 60,
    })
}

const fn per_day(tokens: i64, capacity: i64) -> PublishedRefill {
    PublishedRefill::Fixed(BucketConfig {
        capacity,
        refill_tokens: tokens,
        refill_period_secs: 86_400,
    })
}

const fn row(name: &'static str, refill: PublishedRefill) -> PublishedPolicy {
    PublishedPolicy { name, refill }
}

/// The 29 participant-scope policies of spec v2.12.1, in the spec's order.
pub const PSP_POLICIES: [PublishedPolicy; 29] = [
    row(
        "ENTRIES_READ_PARTICIPANT_ANTISCAN",
        PublishedRefill::ByCategory,
    ),
    row("ENTRIES_STATISTICS_READ", PublishedRefill::ByCategory),
    row("ENTRIES_WRITE", per_min(1_200, 36_000)),
    row("ENTRIES_UPDATE", per_min(600, 600)),
    row("CLAIMS_READ", per_min(600, 18_000)),
    row("CLAIMS_WRITE", per_min(1_200, 36_000)),
    row("CLAIMS_LIST_WITH_ROLE", per_min(40, 200)),
    row("CLAIMS_LIST_WITHOUT_ROLE", per_min(10, 50)),
    row("SYNC_VERIFICATIONS_WRITE", per_min(10, 50)),
    row("CIDS_FILES_WRITE", per_day(40, 200)),
    row("CIDS_FILES_READ", per_min(10, 50)),
    row("CIDS_EVENTS_LIST", per_min(20, 100)),
    row("CIDS_ENTRIES_READ", per_min(1_200, 36_000)),
    row("INFRACTION_REPORTS_READ", per_min(600, 18_000)),
    row("INFRACTION_REPORTS_WRITE", per_min(1_200, 36_000)),
    row("INFRACTION_REPORTS_LIST_WITH_ROLE", per_min(40, 200)),
    row("INFRACTION_REPORTS_LIST_WITHOUT_ROLE", per_min(10, 50)),
    row("KEYS_CHECK", per_min(70, 70)),
    row("REFUNDS_READ", per_min(1_200, 36_000)),
    row("REFUNDS_WRITE", per_min(2_400, 72_000)),
    row("REFUND_LIST_WITH_ROLE", per_min(40, 200)),
    row("REFUND_LIST_WITHOUT_ROLE", per_min(10, 50)),
    row("FRAUD_MARKERS_READ", per_min(600, 18_000)),
    row("FRAUD_MARKERS_WRITE", per_min(1_200, 36_000)),
    row("FRAUD_MARKERS_LIST", per_min(600, 18_000)),
    row("PERSONS_STATISTICS_READ", per_min(12_000, 36_000)),
    row("POLICIES_READ", per_min(60, 200)),
    row("POLICIES_LIST", per_min(6, 20)),
    row("EVENT_LIST", per_min(40, 200)),
];

/// The `i`-th of any number of policies shaped like the published ones: the table's rows in
/// order, then again with a suffix (`ENTRIES_WRITE_1`, …). For simulations larger than DICT.
pub fn nth_policy(i: usize) -> (PolicyName, PublishedPolicy) {
    let row = PSP_POLICIES[i % PSP_POLICIES.len()];
    let round = i / PSP_POLICIES.len();
    let name = if round == 0 {
        PolicyName::new(row.name)
    } else {
        PolicyName::new(&format!("{}_{round}", row.name))
    };
    // Table names are valid and a numeric suffix keeps them so (under 64 characters).
    (
        name.unwrap_or_else(|_| unreachable!("{} is a valid name", row.name)),
        row,
    )
}

/// The anti-scan bucket of a participant category (Manual Operacional 7.1 and later); none
/// outside `A`–`H`.
pub fn category_bucket(category: PspCategory) -> Option<BucketConfig> {
    let (per_minute, capacity) = match category {
        PspCategory::A => (25_000, 50_000),
        PspCategory::B => (20_000, 40_000),
        PspCategory::C => (15_000, 30_000),
        PspCategory::D => (8_000, 16_000),
        PspCategory::E => (2_500, 5_000),
        PspCategory::F => (250, 500),
        PspCategory::G => (25, 250),
        PspCategory::H => (2, 50),
        PspCategory::Unknown(_) => return None,
    };
    Some(BucketConfig {
        capacity,
        refill_tokens: per_minute,
        refill_period_secs: 60,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PolicyName;

    #[test]
    fn every_published_row_is_a_valid_policy() {
        for row in PSP_POLICIES {
            assert!(PolicyName::new(row.name).is_ok(), "{}", row.name);
            for c in PspCategory::KNOWN {
                let bucket = row.bucket(c).expect("known category");
                assert_eq!(bucket.check(), Ok(()), "{}", row.name);
            }
        }
        let names: std::collections::HashSet<_> = PSP_POLICIES.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), PSP_POLICIES.len());
    }

    #[test]
    fn nth_policy_cycles_with_a_suffix() {
        assert_eq!(nth_policy(2).0.as_str(), "ENTRIES_WRITE");
        assert_eq!(nth_policy(29 + 2).0.as_str(), "ENTRIES_WRITE_1");
        assert_eq!(nth_policy(2 * 29).1, PSP_POLICIES[0]);
    }

    #[test]
    fn categories_shrink_from_a_to_h() {
        let capacities: Vec<_> = PspCategory::KNOWN
            .iter()
            .map(|&c| category_bucket(c).map(|b| b.capacity))
            .collect();
        assert!(capacities.windows(2).all(|w| w[0] > w[1]), "{capacities:?}");
        assert_eq!(category_bucket(PspCategory::Unknown('Z')), None);
    }
}
