//! Arbitrary bytes as a Bridge's `ListPoliciesResponse`, through what the monitor does with
//! a decoded answer: the listing (`bridge::policy_list`), each policy's sample
//! (`monitor::cycle::sample_of`), validation against the policy's previous sample, the bucket
//! math over the accepted window, the exhaustion forecast and the alert state machine. Nonsense must be refused with a
//! reason; what is accepted must give finite derived values; nothing may panic.
#![no_main]

use std::collections::HashMap;

use chrono::DateTime;
use dictmon::domain::forecast::{BucketNow, forecast};
use dictmon::domain::{
    AlertState, Observation, PspCategory, RateWindow, Snapshot, Thresholds, ValidationLimits,
    enrich, evaluate, validate,
};
use dictmon::monitor::cycle::sample_of;
use dictmon::source::bridge::policy_list;
use dictmon::source::proto::ListPoliciesResponse;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(answer) = ListPoliciesResponse::decode(data) else {
        return;
    };
    let Ok(list) = policy_list(
        "fuzz",
        answer.response_time,
        answer.category,
        answer.correlation_id,
        answer.policies,
    ) else {
        return;
    };
    let now = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
    let category = PspCategory::parse(&list.category);
    let mut windows: HashMap<_, Vec<_>> = HashMap::new();
    let mut states: HashMap<_, AlertState> = HashMap::new();
    for raw in &list.policies {
        let Ok((name, sample)) = sample_of(raw, category, list.response_time) else {
            continue;
        };
        let window = windows.entry(name.clone()).or_default();
        let previous = window.last().map(|s: &dictmon::domain::Sample| s.at);
        if validate(&sample, previous, now, ValidationLimits::default()).is_err() {
            continue;
        }
        window.push(sample);
        let Some(e) = enrich(window, RateWindow::default()) else {
            continue;
        };
        for x in [
            Some(e.utilization_percent),
            Some(e.remaining_percent),
            e.consumption_rate_per_minute,
            e.recovery_eta_seconds,
            e.exhaustion_projection_seconds,
        ]
        .into_iter()
        .flatten()
        {
            assert!(x.is_finite(), "{e:?}");
        }
        let forecast = forecast(
            None,
            BucketNow::of(&sample, e.consumption_rate_per_minute),
            60.0,
        );
        if let Some(f) = &forecast {
            for x in [f.central_minutes, f.pessimistic_minutes, Some(f.rate_now)]
                .into_iter()
                .flatten()
            {
                assert!(x.is_finite(), "{f:?}");
            }
            let _ = f.explain();
        }
        let state = states.entry(name.clone()).or_default();
        let snapshot = Snapshot {
            policy: name,
            sample,
        };
        let t = evaluate(
            state,
            Observation {
                snapshot: &snapshot,
                enrichment: &e,
                forecast: forecast.as_ref(),
            },
            &Thresholds::default(),
        );
        *state = t.state;
    }
});
