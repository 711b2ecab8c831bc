//! History to and from a real PostgreSQL server: `export` → `psql` (schema.sql, load.sql) →
//! compare with `dictmon query` → `COPY … TO` → `import` into an empty data directory →
//! `export` again, byte for byte.
//!
//! PostgreSQL is Debian's (`.ci/run` installs it); the test runs its own server in a temporary
//! directory on a loopback port, as the `postgres` user when the test runs as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::dictmon;

/// A throw-away PostgreSQL server.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    drop_root: bool,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let uid = run(Command::new("id").arg("-u"));
        let drop_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().expect("temp");
        let data = dir.path().join("data");
        if drop_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let mut pg = Self {
            bin,
            data,
            port: 0,
            drop_root,
            _dir: dir,
        };
        run(pg
            .server("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&pg.data));
        // A port the kernel says is free; pg_ctl -w fails cleanly if it was taken meanwhile.
        for _ in 0..5 {
            pg.port = crate::util::free_port();
            let options = format!(
                "-p {} -h 127.0.0.1 -k {} -c fsync=off -c full_page_writes=off",
                pg.port,
                pg.data.display()
            );
            let started = pg
                .server("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&pg.data)
                .args(["-o", &options, "-l"])
                .arg(pg.data.join("server.log"))
                .arg("start")
                .output()
                .expect("pg_ctl");
            if started.status.success() {
                return pg;
            }
        }
        panic!(
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(pg.data.join("server.log")).unwrap_or_default()
        );
    }

    /// A server-side command, as `postgres` when we are root (initdb refuses root).
    fn server(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.drop_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// psql in `cwd`, UTC, stopping at the first error.
    fn psql(&self, cwd: &Path) -> Command {
        let mut c = Command::new(self.bin.join("psql"));
        c.current_dir(cwd)
            .env("PGTZ", "UTC")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string());
        c
    }

    /// One value from a query.
    fn value(&self, sql: &str) -> String {
        let out = run(self.psql(Path::new("/")).args(["-A", "-t", "-c", sql]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .server("pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

fn ok(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("UTF-8")
}

/// Counts, time range and a sample of rows in PostgreSQL against `dictmon query`; the rows.
fn compare_with_query(pg: &Postgres, d1: &Path, e1: &Path) -> usize {
    // Counts, time range and rows compared with dictmon's own answers.
    let states = ok(dictmon()
        .args(["query", "states", "--format", "pg-csv", "--data-dir"])
        .arg(d1));
    let lines: Vec<&str> = states.lines().skip(1).collect();
    assert!(lines.len() > 250_000, "{} rows", lines.len());
    assert_eq!(
        pg.value("SELECT count(*) FROM dict_rate_limit_states"),
        lines.len().to_string()
    );
    let time_of = |line: &str| line.split(',').nth(10).expect("response_time").to_owned();
    assert_eq!(
        pg.value("SELECT min(response_time) FROM dict_rate_limit_states"),
        time_of(lines[0])
    );
    assert_eq!(
        pg.value("SELECT max(response_time) FROM dict_rate_limit_states"),
        time_of(lines[lines.len() - 1])
    );
    let months = pg.value(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'dict_rate_limit_states'::regclass",
    );
    assert!(
        months.parse::<u32>().expect("count") >= 13,
        "{months} partitions"
    );
    // A sample of rows, field by field: one policy's first day, as PostgreSQL gives it back.
    let policy = "ENTRIES_READ_PARTICIPANT_ANTISCAN";
    let ours = ok(dictmon()
        .args([
            "query",
            "states",
            "--format",
            "pg-csv",
            "--policy",
            policy,
            "--data-dir",
        ])
        .arg(d1));
    let theirs = ok(pg.psql(e1).args([
        "-c",
        &format!(
            "COPY (SELECT * FROM dict_rate_limit_states WHERE endpoint_id = '{policy}' ORDER BY response_time) TO STDOUT WITH (FORMAT csv, HEADER true)"
        ),
    ]));
    let (ours, theirs): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), theirs.lines().collect());
    assert_eq!(ours.len(), theirs.len());
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate().step_by(97) {
        let (fa, fb): (Vec<&str>, Vec<&str>) = (a.split(',').collect(), b.split(',').collect());
        assert_eq!(fa, fb, "row {i} differs");
    }
    assert_eq!(
        pg.value("SELECT count(*) FROM dict_rate_limit_alerts"),
        (ok(dictmon()
            .args(["query", "alerts", "--format", "pg-csv", "--data-dir"])
            .arg(d1))
        .lines()
        .count()
            - 1)
        .to_string()
    );

    lines.len()
}

#[test]
fn thirteen_months_round_trip_through_postgresql_byte_for_byte() {
    let work = tempfile::tempdir().expect("temp");
    let (d1, e1, d2, e2) = (
        work.path().join("d1"),
        work.path().join("e1"),
        work.path().join("d2"),
        work.path().join("e2"),
    );
    // 13 months of hourly history (≈ 275,000 rows), with alerts.
    ok(dictmon()
        .args([
            "simulate",
            "--backfill",
            "13mo",
            "--interval",
            "1h",
            "--data-dir",
        ])
        .arg(&d1));
    ok(dictmon()
        .args(["export", "--data-dir"])
        .arg(&d1)
        .arg("--out")
        .arg(&e1));

    let pg = Postgres::start();
    ok(pg.psql(&e1).args(["-f", "schema.sql", "-f", "load.sql"]));

    let rows = compare_with_query(&pg, &d1, &e1);

    // Back: PostgreSQL's own COPY TO (partition order, not dictmon's) → import → export.
    ok(pg.psql(work.path()).args([
        "-c",
        "\\copy (SELECT * FROM dict_rate_limit_states) TO 'pg-states.csv' WITH (FORMAT csv, HEADER true)",
        "-c",
        "\\copy dict_rate_limit_alerts TO 'pg-alerts.csv' WITH (FORMAT csv, HEADER true)",
    ]));
    let imported = ok(dictmon()
        .args(["import", "--strict", "--data-dir"])
        .arg(&d2)
        .arg("--states")
        .arg(work.path().join("pg-states.csv"))
        .arg("--alerts")
        .arg(work.path().join("pg-alerts.csv")));
    assert!(
        imported.contains(&format!("imported {rows} states")),
        "{imported}"
    );
    ok(dictmon()
        .args(["export", "--data-dir"])
        .arg(&d2)
        .arg("--out")
        .arg(&e2));
    for file in ["states.csv", "alerts.csv", "policies.csv", "schema.sql"] {
        let (a, b) = (
            std::fs::read(e1.join(file)).expect("first export"),
            std::fs::read(e2.join(file)).expect("second export"),
        );
        assert!(
            a == b,
            "{file} differs after the round trip through PostgreSQL"
        );
    }
    // Importing the same files again adds nothing.
    let again = ok(dictmon()
        .args(["import", "--data-dir"])
        .arg(&d2)
        .arg("--states")
        .arg(work.path().join("pg-states.csv")));
    assert!(
        again.contains("imported 0 states")
            && again.contains(&format!("skipped {rows} rows already present")),
        "{again}"
    );
}
