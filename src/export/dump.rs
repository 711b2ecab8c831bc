//! `dictmon export`: the retained history as PostgreSQL files — `schema.sql` (the legacy
//! tables, `dict_rate_limit_states` partitioned by month with one partition per month in the
//! export, and the indexes for "latest per policy" and "open alerts"), `policies.csv`,
//! `states.csv`, `alerts.csv`, and `load.sql` with the `\copy` commands.
//!
//! States stream month by month (memory: one month), and each file is written under a
//! temporary name and renamed when complete, so a folder never holds a half export that looks
//! whole.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{
    ALERTS_COLUMNS, ExportError, Format, MonthRows, POLICIES_COLUMNS, STATES_COLUMNS, StatesQuery,
    alerts_in, pg, push_state_pg, scan_state_months, write_alerts,
};
use crate::store::{Corruption, Month, StoreReader};

/// What an export wrote.
#[derive(Clone, Debug, Default)]
pub struct DumpReport {
    /// Rows of `states.csv`.
    pub states: u64,
    /// Rows of `alerts.csv`.
    pub alerts: usize,
    /// Rows of `policies.csv`.
    pub policies: usize,
    /// Months (partitions) of `created_at`.
    pub partitions: Vec<Month>,
    /// Damage met in the segments (skipped).
    pub problems: Vec<Corruption>,
    /// The catalog could not be read: `alerts.csv` and `policies.csv` hold their header only,
    /// the states are exported all the same (they live in the segments).
    pub catalog_error: Option<String>,
}

/// Writes the export of `reader`'s history between `since` and `until` (response time; alerts
/// by opening time) into `out` (created if missing). `progress(month, done, total)` is called
/// before each month.
pub fn dump(
    reader: &StoreReader,
    out: &Path,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    progress: &mut dyn FnMut(Month, usize, usize),
) -> Result<DumpReport, ExportError> {
    let werr = |what: &Path| {
        let what = what.display().to_string();
        move |error: io::Error| ExportError::Write {
            what: what.clone(),
            error,
        }
    };
    fs::create_dir_all(out).map_err(werr(out))?;
    let mut report = DumpReport::default();

    let (states, partitions, problems) = write_states(reader, out, since, until, progress)?;
    report.states = states;
    report.partitions = partitions;
    report.problems = problems;

    // The catalog's tables; a damaged catalog costs them, never the states.
    let from_catalog = alerts_in(reader, since, until).and_then(|alerts| {
        let policies = reader.catalog()?.policies()?;
        Ok((alerts, policies))
    });
    let (alerts, mut policies) = match from_catalog {
        Ok(tables) => tables,
        Err(e) => {
            report.catalog_error = Some(e.to_string());
            (Vec::new(), Vec::new())
        }
    };

    // alerts.csv, in opening order.
    report.alerts = alerts.len();
    write_file(&out.join("alerts.csv"), |w| {
        write_alerts(w, Format::PgCsv, &alerts, &[])
    })?;

    // policies.csv: the configuration as last seen.
    policies.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
    report.policies = policies.len();
    write_file(&out.join("policies.csv"), |w| {
        writeln!(w, "{}", POLICIES_COLUMNS.join(","))?;
        let mut line: Vec<u8> = Vec::new();
        for p in &policies {
            line.clear();
            let b = p.policy.bucket;
            write!(
                line,
                "{},{},{},{},{},",
                p.policy.name.as_str(),
                b.capacity,
                b.refill_tokens,
                b.refill_period_secs,
                p.policy.category
            )?;
            pg::push_timestamp(&mut line, p.first_seen);
            line.push(b',');
            pg::push_timestamp(&mut line, p.last_seen);
            line.push(b'\n');
            w.write_all(&line)?;
        }
        w.flush()
    })?;

    let schema = schema_sql(&report.partitions);
    write_file(&out.join("schema.sql"), |w| w.write_all(schema.as_bytes()))?;
    write_file(&out.join("load.sql"), |w| w.write_all(LOAD_SQL.as_bytes()))?;
    Ok(report)
}

/// `states.csv`, streaming: the rows, the months of `created_at` met, and the damage skipped.
fn write_states(
    reader: &StoreReader,
    out: &Path,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    progress: &mut dyn FnMut(Month, usize, usize),
) -> Result<(u64, Vec<Month>, Vec<Corruption>), ExportError> {
    let werr = |what: &Path| {
        let what = what.display().to_string();
        move |error: io::Error| ExportError::Write {
            what: what.clone(),
            error,
        }
    };
    // states.csv, streaming; the partitions are the months of created_at met on the way.
    let states_path = out.join("states.csv");
    let tmp = temp(&states_path);
    let mut file = File::create(&tmp).map_err(werr(&tmp))?;
    writeln!(file, "{}", STATES_COLUMNS.join(",")).map_err(werr(&tmp))?;
    let query = StatesQuery {
        policies: None,
        since,
        until,
    };
    // A formatter thread formats each month (split over the cores, order kept) and writes it
    // while this thread decodes the next month.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let (months, inbox) = std::sync::mpsc::sync_channel::<MonthRows>(0);
    let scanned = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut partitions = BTreeSet::new();
            let mut rows = 0_u64;
            for month in inbox {
                rows += month.len() as u64;
                let runs = month.runs(threads);
                let texts: Vec<Vec<u8>> = std::thread::scope(|inner| {
                    let handles: Vec<_> = runs
                        .iter()
                        .map(|run| {
                            inner.spawn(move || {
                                let mut text = Vec::with_capacity(run.len() * 140);
                                let mut times = pg::TimestampCache::default();
                                let mut seen = BTreeSet::new();
                                for r in run {
                                    push_state_pg(&mut text, &mut times, r);
                                    seen.insert(Month::of(r.created_at));
                                }
                                (text, seen)
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            // A formatter that panicked is a bug: the export fails with it
                            // (the writer thread's join below says so) rather than write a
                            // month with rows missing.
                            let (text, seen) =
                                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
                            partitions.extend(seen);
                            text
                        })
                        .collect()
                });
                for text in texts {
                    file.write_all(&text)?;
                }
            }
            file.flush()?;
            Ok::<_, io::Error>((rows, partitions))
        });
        let scanned = scan_state_months(reader, &query, progress, &mut |month| {
            months
                .send(month)
                .map_err(|_| io::Error::other("the writer thread stopped"))
        });
        drop(months);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        (scanned, written)
    });
    let (scanned, written) = scanned;
    let (rows, partitions) = written.map_err(werr(&tmp))?;
    let problems = scanned?;
    fs::rename(&tmp, &states_path).map_err(werr(&states_path))?;
    Ok((rows, partitions.into_iter().collect(), problems))
}

fn temp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".part");
    path.with_file_name(name)
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), ExportError> {
    let err = |error| ExportError::Write {
        what: path.display().to_string(),
        error,
    };
    let tmp = temp(path);
    let mut w = BufWriter::new(File::create(&tmp).map_err(err)?);
    body(&mut w).map_err(err)?;
    w.flush().map_err(err)?;
    drop(w);
    fs::rename(&tmp, path).map_err(err)
}

/// `load.sql`: run from the export folder, after `schema.sql`.
pub const LOAD_SQL: &str = "\
-- Loads a dictmon export into the tables of schema.sql. Run it from the export folder:
--   cd EXPORT && psql -v ON_ERROR_STOP=1 -d DB -f schema.sql -f load.sql
\\set ON_ERROR_STOP on
SET TimeZone = 'UTC';
BEGIN;
\\copy dict_rate_limit_policies FROM 'policies.csv' WITH (FORMAT csv, HEADER true)
\\copy dict_rate_limit_states FROM 'states.csv' WITH (FORMAT csv, HEADER true)
\\copy dict_rate_limit_alerts FROM 'alerts.csv' WITH (FORMAT csv, HEADER true)
COMMIT;
ANALYZE dict_rate_limit_policies;
ANALYZE dict_rate_limit_states;
ANALYZE dict_rate_limit_alerts;
";

/// `schema.sql`: the legacy tables, with one `dict_rate_limit_states` partition per month.
pub fn schema_sql(partitions: &[Month]) -> String {
    debug_assert_eq!(STATES_COLUMNS.len(), 12);
    debug_assert_eq!(ALERTS_COLUMNS.len(), 13);
    let mut sql = String::from(
        "\
-- The legacy dictmon tables (PostgreSQL 15), as written by `dictmon export`.
-- Column order matches the CSV files; load them with load.sql.
SET TimeZone = 'UTC';

CREATE TABLE IF NOT EXISTS dict_rate_limit_policies (
    endpoint_id       text        PRIMARY KEY,
    capacity          bigint      NOT NULL,
    refill_tokens     bigint      NOT NULL,
    refill_period_sec bigint      NOT NULL,
    psp_category      text        NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- One row per policy per poll; partitioned by month of created_at (the legacy layout).
CREATE TABLE IF NOT EXISTS dict_rate_limit_states (
    endpoint_id                   text        NOT NULL,
    available_tokens              bigint      NOT NULL,
    capacity                      bigint      NOT NULL,
    refill_tokens                 bigint      NOT NULL,
    refill_period_sec             bigint      NOT NULL,
    psp_category                  text        NOT NULL,
    utilization_percent           numeric     NOT NULL,
    consumption_rate_per_minute   numeric,
    recovery_eta_seconds          numeric,
    exhaustion_projection_seconds numeric,
    response_time                 timestamptz NOT NULL,
    created_at                    timestamptz NOT NULL,
    PRIMARY KEY (endpoint_id, response_time, created_at)
) PARTITION BY RANGE (created_at);

-- Latest state per policy.
CREATE INDEX IF NOT EXISTS dict_rate_limit_states_latest
    ON dict_rate_limit_states (endpoint_id, response_time DESC);

CREATE TABLE IF NOT EXISTS dict_rate_limit_alerts (
    id                  uuid        PRIMARY KEY,
    endpoint_id         text        NOT NULL,
    severity            text        NOT NULL CHECK (severity IN ('INFO', 'WARNING', 'CRITICAL')),
    available_tokens    bigint      NOT NULL,
    capacity            bigint      NOT NULL,
    utilization_percent numeric     NOT NULL,
    psp_category        text        NOT NULL,
    message             text        NOT NULL,
    created_at          timestamptz NOT NULL,
    resolved            boolean     NOT NULL,
    resolved_at         timestamptz,
    resolution_notes    text,
    cause               text        NOT NULL DEFAULT 'threshold' -- dictmon's addition
);

-- Open alerts.
CREATE INDEX IF NOT EXISTS dict_rate_limit_alerts_open
    ON dict_rate_limit_alerts (endpoint_id, severity) WHERE NOT resolved;

",
    );
    for m in partitions {
        let next = m.next();
        let _ = writeln!(
            sql,
            "CREATE TABLE IF NOT EXISTS dict_rate_limit_states_y{:04}m{:02} PARTITION OF dict_rate_limit_states\n    FOR VALUES FROM ('{:04}-{:02}-01 00:00:00+00') TO ('{:04}-{:02}-01 00:00:00+00');",
            m.year, m.month, m.year, m.month, next.year, next.month
        );
    }
    sql
}
