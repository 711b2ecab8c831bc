//! The catalog's alert records decoded as JSON (what `catalog.redb` holds, storage-format.md
//! §10) against the same records archived with rkyv (validated, then made `Alert`s): the "after"
//! of the choice ARCHITECTURE.md records ("Catalog records stay JSON"). 10,000 alerts, as
//! `benches/alerts.sh` reads them whole with `dictmon query alerts`.
//!
//! redb hands a value back as a byte slice with no alignment promise, so the rkyv side copies
//! each record into an aligned buffer before `access`, as a catalog on rkyv would have to.
//!
//! Run: `cargo bench --bench catalog_records`.

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use dictmon::domain::{Alert, AlertCause, PolicyName, PspCategory, Severity};
use rkyv::rancor::Error;
use rkyv::util::AlignedVec;

/// The alerts: 30 policies in turn, one every 47 minutes, some open, messages as dictmon writes
/// them.
fn alerts(n: usize) -> Vec<Alert> {
    let start = DateTime::<Utc>::from_timestamp(1_761_955_200, 0).expect("in range");
    (0..n)
        .map(|i| {
            let opened = start + TimeDelta::minutes(i64::try_from(i).expect("small") * 47);
            let tokens = i64::try_from(i % 19).expect("small");
            Alert {
                id: uuid::Uuid::from_u128(0x9e37_79b9_7f4a_7c15_u128.wrapping_mul(i as u128 + 1)),
                policy: PolicyName::new(&format!("POLICY_{:02}", i % 30)).expect("name"),
                severity: if i % 3 == 0 { Severity::Critical } else { Severity::Warning },
                peak_severity: (i % 7 == 0).then_some(Severity::Critical),
                cause: if i % 5 == 0 { AlertCause::Projection } else { AlertCause::Threshold },
                opened_at: opened,
                available_tokens: tokens,
                capacity: 100,
                utilization_percent: 100.0 - tokens as f64,
                psp_category: PspCategory::C,
                message: format!(
                    "POLICY_{:02}: {tokens} of 100 tokens left (below the 20 % WARNING threshold); at the current 12 tokens/min, empty in ~{} min",
                    i % 30,
                    i % 60
                ),
                resolved_at: (i % 11 != 0).then(|| opened + TimeDelta::minutes(13)),
                resolution: (i % 11 != 0).then(|| "recovered".to_owned()),
            }
        })
        .collect()
}

/// An alert as an archive would keep it: plain numbers and strings.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct AlertRecord {
    id: u128,
    policy: String,
    severity: u8,
    peak_severity: Option<u8>,
    cause: u8,
    opened_at_ns: i64,
    available_tokens: i64,
    capacity: i64,
    utilization_percent: f64,
    psp_category: u32,
    message: String,
    resolved_at_ns: Option<i64>,
    resolution: Option<String>,
}

fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

fn severity_of(code: u8) -> Severity {
    match code {
        0 => Severity::Info,
        1 => Severity::Warning,
        _ => Severity::Critical,
    }
}

fn record(a: &Alert) -> AlertRecord {
    AlertRecord {
        id: a.id.as_u128(),
        policy: a.policy.as_str().to_owned(),
        severity: severity_code(a.severity),
        peak_severity: a.peak_severity.map(severity_code),
        cause: match a.cause {
            AlertCause::Threshold => 0,
            AlertCause::Projection => 1,
            AlertCause::Category => 2,
        },
        opened_at_ns: a.opened_at.timestamp_nanos_opt().expect("in range"),
        available_tokens: a.available_tokens,
        capacity: a.capacity,
        utilization_percent: a.utilization_percent,
        psp_category: u32::from(a.psp_category.as_char()),
        message: a.message.clone(),
        resolved_at_ns: a.resolved_at.and_then(|t| t.timestamp_nanos_opt()),
        resolution: a.resolution.clone(),
    }
}

/// The `Alert` of a validated archive: what the catalog's readers work with.
fn alert_of(r: &ArchivedAlertRecord) -> Alert {
    Alert {
        id: uuid::Uuid::from_u128(r.id.to_native()),
        policy: PolicyName::new(r.policy.as_str()).expect("name"),
        severity: severity_of(r.severity),
        peak_severity: r.peak_severity.as_ref().map(|s| severity_of(*s)),
        cause: match r.cause {
            0 => AlertCause::Threshold,
            1 => AlertCause::Projection,
            _ => AlertCause::Category,
        },
        opened_at: DateTime::from_timestamp_nanos(r.opened_at_ns.to_native()),
        available_tokens: r.available_tokens.to_native(),
        capacity: r.capacity.to_native(),
        utilization_percent: r.utilization_percent.to_native(),
        psp_category: PspCategory::from_char(
            char::from_u32(r.psp_category.to_native()).unwrap_or('?'),
        ),
        message: r.message.as_str().to_owned(),
        resolved_at: r
            .resolved_at_ns
            .as_ref()
            .map(|t| DateTime::from_timestamp_nanos(t.to_native())),
        resolution: r.resolution.as_ref().map(|s| s.as_str().to_owned()),
    }
}

fn catalog_records(c: &mut Criterion) {
    let alerts = alerts(10_000);
    let json: Vec<Vec<u8>> = alerts
        .iter()
        .map(|a| serde_json::to_vec(a).expect("json"))
        .collect();
    let archived: Vec<Vec<u8>> = alerts
        .iter()
        .map(|a| rkyv::to_bytes::<Error>(&record(a)).expect("rkyv").to_vec())
        .collect();
    // Both forms give the very alerts back.
    for ((a, j), r) in alerts.iter().zip(&json).zip(&archived) {
        let from_json: Alert = serde_json::from_slice(j).expect("json");
        let mut aligned = AlignedVec::<16>::new();
        aligned.extend_from_slice(r);
        let from_rkyv =
            alert_of(rkyv::access::<ArchivedAlertRecord, Error>(&aligned).expect("valid"));
        assert_eq!(&from_json, a);
        assert_eq!(&from_rkyv, a);
    }
    let bytes = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>();
    eprintln!(
        "10,000 alert records: JSON {} bytes, rkyv {} bytes",
        bytes(&json),
        bytes(&archived)
    );
    let mut g = c.benchmark_group("catalog_records_10000_alerts");
    g.bench_function("json_decode", |b| {
        b.iter(|| {
            json.iter()
                .map(|j| serde_json::from_slice::<Alert>(j).expect("json"))
                .collect::<Vec<_>>()
        });
    });
    g.bench_function("rkyv_copy_validate_convert", |b| {
        let mut aligned = AlignedVec::<16>::new();
        b.iter(|| {
            archived
                .iter()
                .map(|r| {
                    aligned.clear();
                    aligned.extend_from_slice(r);
                    alert_of(rkyv::access::<ArchivedAlertRecord, Error>(&aligned).expect("valid"))
                })
                .collect::<Vec<_>>()
        });
    });
    g.finish();
}

criterion_group!(benches, catalog_records);
criterion_main!(benches);
