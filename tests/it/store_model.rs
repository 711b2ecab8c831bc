//! The store against a model: random appends (live and bulk, back-dated, across months, with
//! duplicates), reopenings and compactions, compared after every step with a `BTreeMap` holding the
//! first row written for each (policy, time).

use std::collections::BTreeMap;

use chrono::TimeDelta;
use dictmon::domain::StateRecord;
use dictmon::store::{Filter, Store, StoreOptions, StoreReader};
use proptest::prelude::*;

use crate::util::{record, t0};

#[derive(Clone, Debug)]
enum Op {
    /// A live batch: (policy, hour offset, tokens) rows.
    Append(Vec<(u8, u16, i64)>),
    /// A bulk load.
    AppendSealed(Vec<(u8, u16, i64)>),
    Reopen,
    Compact,
}

fn rows(spec: &[(u8, u16, i64)]) -> Vec<StateRecord> {
    spec.iter()
        .map(|&(p, h, tokens)| {
            record(
                &format!("POLICY_{p}"),
                t0() + TimeDelta::hours(i64::from(h)),
                tokens,
            )
        })
        .collect()
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    // Hours up to ~80 days: three months, many days.
    let row = (0_u8..4, 0_u16..1_900, -50_i64..=1_000);
    let op = prop_oneof![
        4 => prop::collection::vec(row.clone(), 1..6).prop_map(Op::Append),
        1 => prop::collection::vec(row, 1..40).prop_map(Op::AppendSealed),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ];
    prop::collection::vec(op, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn store_reads_back_what_a_map_model_holds(ops in ops()) {
        let dir = tempfile::tempdir().expect("temp");
        let options = StoreOptions { fsync: false, ..StoreOptions::default() };
        let mut store = Some(Store::open(dir.path(), options).expect("open"));
        let mut model: BTreeMap<(String, i64), StateRecord> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Append(spec) | Op::AppendSealed(spec) if spec.is_empty() => {}
                Op::Append(spec) => {
                    let batch = rows(&spec);
                    store.as_mut().expect("open").append(&batch).expect("append");
                    for r in batch {
                        model.entry((r.policy.to_string(), r.sample.at.timestamp())).or_insert(r);
                    }
                }
                Op::AppendSealed(spec) => {
                    let batch = rows(&spec);
                    store.as_mut().expect("open").append_sealed(&batch).expect("append_sealed");
                    for r in batch {
                        model.entry((r.policy.to_string(), r.sample.at.timestamp())).or_insert(r);
                    }
                }
                Op::Reopen => {
                    drop(store.take());
                    let mut reopened = Store::open(dir.path(), options).expect("reopen");
                    // From the first reopening on, the background compactor runs too, beside
                    // the appends and the explicit compactions.
                    reopened.start_compactor().expect("compactor");
                    store = Some(reopened);
                }
                Op::Compact => store.as_mut().expect("open").compact().expect("compact"),
            }
            let mut read = BTreeMap::new();
            let problems = StoreReader::open(dir.path())
                .expect("reader")
                .scan(&Filter::default(), &mut |r| {
                    let k = (r.policy.to_string(), r.sample.at.timestamp());
                    assert!(read.insert(k, r).is_none(), "a row read twice");
                })
                .expect("scan");
            prop_assert!(problems.is_empty(), "{problems:?}");
            prop_assert_eq!(&read, &model);
        }
    }
}
