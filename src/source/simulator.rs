//! The built-in DICT simulator: DICT's published policies driven by the traffic model, with a
//! scripted scenario on the participant anti-scan bucket (`ENTRIES_READ_PARTICIPANT_ANTISCAN`),
//! in real time. Used in-process by `serve` (the default source), and by
//! `dictmon simulate --listen` over the Bridge's gRPC service or, with `--protocol dict`, over
//! DICT's HTTPS API ([`super::simulator_dict`]).
//!
//! Scenarios (`--scenario`), each a cycle in wall-clock time since the simulator started:
//!
//! | scenario | anti-scan bucket |
//! |---|---|
//! | `steady` | ordinary traffic, plus every 10 min a near-exhaustion episode: drains to 5 % over 2 min, holds 1 min, recovers over 2 min |
//! | `burst` | every 60 s, a 10 s burst drops it to 40 % |
//! | `exhaustion` | every 35 s: full 4 s, drains to 5 % over 8 s, holds 2 s, −2 (penalty) for 6 s, refills over 10 s, full 5 s |
//! | `capacity-change` | the participant moves between categories C and E every 30 s |
//! | `flapping` | alternates between 19 % and 21 % remaining at every poll |
//! | `malformed` | ordinary traffic, and nonsense injected: tokens above capacity (every 3rd poll, `CLAIMS_READ`), capacity 0 (every 4th, `KEYS_CHECK`), a response time 1 min in the past (every 5th poll) |

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::proto::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use super::proto::{
    GetPolicyRequest, GetPolicyResponse, ListPoliciesRequest, ListPoliciesResponse, PolicyState,
};
use super::traffic::Traffic;
use super::{PolicyList, RawPolicy, Source, SourceError};
use crate::domain::PspCategory;

/// Policies DICT publishes (the simulator's default).
pub const DICT_POLICIES: usize = crate::domain::dict_table::PSP_POLICIES.len();

/// The bucket the scenarios script.
pub const SCRIPTED_POLICY: &str = "ENTRIES_READ_PARTICIPANT_ANTISCAN";

/// A traffic scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Ordinary traffic with a near-exhaustion episode every 10 minutes.
    Steady,
    /// Periodic bursts.
    Burst,
    /// The bucket runs dry and refills, every 30 s.
    Exhaustion,
    /// The participant's category changes every 30 s.
    CapacityChange,
    /// Hovers around the warning threshold.
    Flapping,
    /// Injects invalid values.
    Malformed,
}

impl Scenario {
    /// Every scenario, for `--help`.
    pub const ALL: [Self; 6] = [
        Self::Steady,
        Self::Burst,
        Self::Exhaustion,
        Self::CapacityChange,
        Self::Flapping,
        Self::Malformed,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Burst => "burst",
            Self::Exhaustion => "exhaustion",
            Self::CapacityChange => "capacity-change",
            Self::Flapping => "flapping",
            Self::Malformed => "malformed",
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|x| x.name()).collect();
                format!("unknown scenario {s:?}; one of {}", names.join(", "))
            })
    }
}

/// The simulated DICT of one participant.
pub struct Simulator {
    traffic: Traffic,
    scenario: Scenario,
    category: PspCategory,
    started: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
    polls: u64,
}

impl Simulator {
    /// A simulator with `seed`, running `scenario`, for a participant of `category`, serving
    /// DICT's published policies.
    pub fn new(seed: u64, scenario: Scenario, category: PspCategory) -> Self {
        Self::with_policies(seed, scenario, category, DICT_POLICIES)
    }

    /// The same with `policies` buckets: DICT's table, repeated with suffixed names past its
    /// end (scale tests).
    pub fn with_policies(
        seed: u64,
        scenario: Scenario,
        category: PspCategory,
        policies: usize,
    ) -> Self {
        Self {
            traffic: Traffic::new(seed, policies.max(1), category),
            scenario,
            category,
            started: None,
            last: None,
            polls: 0,
        }
    }

    /// Runs the traffic model up to `now`.
    fn advance_to(&mut self, now: DateTime<Utc>) {
        if let Some(last) = self.last.filter(|l| *l < now) {
            let dt = (now - last).as_seconds_f64().min(86_400.0);
            self.traffic.advance(last, dt);
        }
        self.last = Some(self.last.map_or(now, |l| l.max(now)));
    }

    /// DICT's answer to `GET /policies/` at `now`, which costs a `POLICIES_LIST` token: the
    /// listing, or — as DICT answers 429 — the wait until that bucket refills, when it is
    /// empty.
    pub fn list_policies_at(&mut self, now: DateTime<Utc>) -> Result<PolicyList, Duration> {
        self.advance_to(now);
        if let Some(wait) = self.traffic.empty_for("POLICIES_LIST") {
            return Err(wait);
        }
        Ok(self.list_at(now))
    }

    /// DICT's answer to `GET /policies/{name}` at `now`, which costs a `POLICIES_READ` token
    /// (60 a minute, 200 in a burst): the policy alone, `None` when there is no such policy,
    /// or the wait until `POLICIES_READ` refills when it is empty.
    pub fn policy_at(
        &mut self,
        now: DateTime<Utc>,
        name: &str,
    ) -> Result<Option<PolicyList>, Duration> {
        self.advance_to(now);
        if let Some(wait) = self.traffic.empty_for("POLICIES_READ") {
            return Err(wait);
        }
        self.traffic.charge("POLICIES_READ");
        let mut list = self.listing(now, false);
        list.policies.retain(|p| p.name == name);
        Ok((!list.policies.is_empty()).then_some(list))
    }

    /// The listing DICT would give at `now` (a poll: it costs a `POLICIES_LIST` token, and
    /// the balance may go negative, as the Bridge does not ask first).
    pub fn list_at(&mut self, now: DateTime<Utc>) -> PolicyList {
        self.advance_to(now);
        self.listing(now, true)
    }

    fn listing(&mut self, now: DateTime<Utc>, poll: bool) -> PolicyList {
        let started = *self.started.get_or_insert(now);
        self.polls += 1;
        let t = (now - started).as_seconds_f64();
        self.apply_scenario(t);
        let mut response_time = now
            .duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(now);
        let observed = if poll {
            self.traffic.poll()
        } else {
            self.traffic.observe()
        };
        let mut policies: Vec<RawPolicy> = observed
            .into_iter()
            .map(|(name, available, bucket)| RawPolicy {
                name: name.to_string(),
                available_tokens: available,
                capacity: bucket.capacity,
                refill_tokens: bucket.refill_tokens,
                refill_period_secs: bucket.refill_period_secs,
            })
            .collect();
        if self.scenario == Scenario::Malformed {
            let n = self.polls;
            for p in &mut policies {
                if n.is_multiple_of(3) && p.name == "CLAIMS_READ" {
                    p.available_tokens = p.capacity + 1;
                }
                if n.is_multiple_of(4) && p.name == "KEYS_CHECK" {
                    p.capacity = 0;
                }
            }
            if n.is_multiple_of(5) {
                response_time -= TimeDelta::minutes(1);
            }
        }
        PolicyList {
            response_time,
            category: self.traffic.category().to_string(),
            correlation_id: correlation_id(0x51, self.polls),
            policies,
        }
    }

    fn apply_scenario(&mut self, t: f64) {
        let level = match self.scenario {
            Scenario::Steady => episode(t % 600.0, 300.0, 120.0, 60.0, 120.0, 0.05),
            Scenario::Burst => (t % 60.0 < 10.0).then_some(0.40),
            // 35 s, not 30: polls every 10 s (DICT's least interval) then visit every 5 s of
            // phase, and the 8 s below 10 % cannot be stepped over.
            // The 2 s at 5 % give a poll every second a wide chance to see the CRITICAL
            // band before the bucket is empty, even when a cycle runs late.
            Scenario::Exhaustion => Some(match t % 35.0 {
                p if p < 4.0 => 1.0,
                p if p < 12.0 => 1.0 - 0.95 * (p - 4.0) / 8.0,
                p if p < 14.0 => 0.05,
                p if p < 20.0 => -0.0001, // below zero: a penalty
                p if p < 30.0 => (p - 20.0) / 10.0,
                _ => 1.0,
            }),
            Scenario::CapacityChange => {
                let c = if t % 60.0 < 30.0 {
                    self.category
                } else {
                    PspCategory::E
                };
                if c != self.traffic.category() {
                    self.traffic.set_category(c);
                }
                None
            }
            Scenario::Flapping => Some(if self.polls.is_multiple_of(2) {
                0.19
            } else {
                0.21
            }),
            Scenario::Malformed => None,
        };
        if let Some(fraction) = level {
            self.traffic.set_level(SCRIPTED_POLICY, fraction);
        }
    }
}

/// Fraction of capacity during a near-exhaustion episode at phase `p` (seconds into the cycle):
/// untouched before `start`, then drain to `floor` over `down`, hold `hold`, recover over `up`.
/// A correlation id as DICT writes them: 32 hexadecimal digits (the 1.8.0 schema's pattern);
/// the simulator's start with `kind` (0x51: an answer, 0xE4: a problem) then count.
pub fn correlation_id(kind: u8, n: u64) -> String {
    format!("{:032X}", (u128::from(kind) << 120) | u128::from(n))
}

fn episode(p: f64, start: f64, down: f64, hold: f64, up: f64, floor: f64) -> Option<f64> {
    let p = p - start;
    if p < 0.0 {
        None
    } else if p < down {
        Some(1.0 - (1.0 - floor) * p / down)
    } else if p < down + hold {
        Some(floor)
    } else if p < down + hold + up {
        Some(floor + (1.0 - floor) * (p - down - hold) / up)
    } else {
        None
    }
}

/// The simulator as an in-process [`Source`].
pub struct SimulatorSource {
    sim: Arc<Mutex<Simulator>>,
    scenario: Scenario,
}

impl SimulatorSource {
    /// A source answering from `sim`.
    pub fn new(sim: Simulator) -> Self {
        let scenario = sim.scenario;
        Self {
            sim: Arc::new(Mutex::new(sim)),
            scenario,
        }
    }
}

impl Source for SimulatorSource {
    fn describe(&self) -> String {
        format!("the built-in simulator (scenario {})", self.scenario)
    }

    fn kind(&self) -> &'static str {
        "simulator"
    }

    fn list(&mut self) -> impl Future<Output = Result<PolicyList, SourceError>> + Send {
        let list = self
            .sim
            .lock()
            .map(|mut s| s.list_at(Utc::now()))
            .map_err(|_| SourceError::Unavailable {
                endpoint: "simulator".into(),
                retry_after: None,
                detail: "the simulator panicked earlier".into(),
            });
        std::future::ready(list)
    }
}

use std::future::Future;

/// The simulator served as the Bridge's gRPC service.
#[derive(Clone)]
pub struct SimulatorService {
    sim: Arc<Mutex<Simulator>>,
}

impl SimulatorService {
    /// A tonic service answering from `sim`.
    pub fn new(sim: Simulator) -> RateLimitServiceServer<Self> {
        RateLimitServiceServer::new(Self {
            sim: Arc::new(Mutex::new(sim)),
        })
    }

    fn list(&self) -> Result<PolicyList, tonic::Status> {
        self.sim
            .lock()
            .map(|mut s| s.list_at(Utc::now()))
            .map_err(|_| tonic::Status::internal("simulator state poisoned"))
    }
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn state(p: RawPolicy) -> PolicyState {
    PolicyState {
        name: p.name,
        available_tokens: p.available_tokens,
        capacity: p.capacity,
        refill_tokens: p.refill_tokens,
        refill_period_sec: p.refill_period_secs,
    }
}

#[tonic::async_trait]
impl RateLimitService for SimulatorService {
    async fn list_policies(
        &self,
        _request: tonic::Request<ListPoliciesRequest>,
    ) -> Result<tonic::Response<ListPoliciesResponse>, tonic::Status> {
        let list = self.list()?;
        Ok(tonic::Response::new(ListPoliciesResponse {
            response_time: Some(timestamp(list.response_time)),
            category: list.category,
            correlation_id: list.correlation_id,
            policies: list.policies.into_iter().map(state).collect(),
        }))
    }

    async fn get_policy(
        &self,
        request: tonic::Request<GetPolicyRequest>,
    ) -> Result<tonic::Response<GetPolicyResponse>, tonic::Status> {
        let name = request.into_inner().name;
        let list = self.list()?;
        let policy = list
            .policies
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| tonic::Status::not_found(format!("no policy named {name:?}")))?;
        Ok(tonic::Response::new(GetPolicyResponse {
            response_time: Some(timestamp(list.response_time)),
            category: list.category,
            correlation_id: list.correlation_id,
            policy: Some(state(policy)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("in range")
    }

    fn scripted(list: &PolicyList) -> &RawPolicy {
        list.policies
            .iter()
            .find(|p| p.name == SCRIPTED_POLICY)
            .expect("present")
    }

    #[test]
    fn exhaustion_drains_below_zero_and_refills() {
        let mut sim = Simulator::new(1, Scenario::Exhaustion, PspCategory::C);
        let levels: Vec<i64> = (0..35)
            .map(|s| scripted(&sim.list_at(at(s * 1000))).available_tokens)
            .collect();
        let capacity = scripted(&sim.list_at(at(35_000))).capacity;
        assert_eq!(levels[0], capacity);
        assert!(levels[14] < 0 && levels[19] < 0, "{levels:?}");
        assert!(levels[10] < capacity / 2 && levels[10] > 0);
        assert_eq!(levels[32], capacity);
        // Polled every 10 s from any start, one of 7 polls (70 s) lands below 10 %.
        for start in 0..35 {
            let low = (0..7)
                .map(|k| (start + 10 * k) % 35)
                .any(|s| levels[s] < capacity / 10);
            assert!(low, "polls from {start}s miss the exhaustion");
        }
    }

    #[test]
    fn malformed_injects_each_kind_of_nonsense() {
        let mut sim = Simulator::new(1, Scenario::Malformed, PspCategory::C);
        let lists: Vec<_> = (0..12).map(|s| sim.list_at(at(s * 1000))).collect();
        let find = |l: &PolicyList, n: &str| l.policies.iter().find(|p| p.name == n).cloned();
        assert!(
            lists
                .iter()
                .any(|l| find(l, "CLAIMS_READ").is_some_and(|p| p.available_tokens > p.capacity))
        );
        assert!(
            lists
                .iter()
                .any(|l| find(l, "KEYS_CHECK").is_some_and(|p| p.capacity == 0))
        );
        assert!(
            lists
                .windows(2)
                .any(|w| w[1].response_time < w[0].response_time)
        );
    }

    #[test]
    fn scenarios_parse_by_name() {
        for s in Scenario::ALL {
            assert_eq!(s.to_string().parse::<Scenario>(), Ok(s));
        }
        assert!("nope".parse::<Scenario>().is_err());
    }
}
