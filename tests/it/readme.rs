//! The README, followed literally: every command of its `sh` blocks, in order, from a fresh
//! directory, each checked for its exit status and what it says. `cargo run --release --`
//! is the built binary; `/tmp/` is a temporary directory, so that runs do not collide.
//!
//! A command the README adds or changes fails this test until it is followed here too; the
//! few that are not run (they need a named database, a package install or a tool Debian
//! does not ship) say why, and another test covers what they show.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::{collect, dictmon, http_get, wait_until};

/// The README's commands, one per entry: comments dropped, continued lines joined.
fn readme_commands() -> VecDeque<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let (mut commands, mut in_sh, mut pending) = (VecDeque::new(), false, String::new());
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = line.split(" #").next().unwrap_or_default().trim();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        pending.push_str(code.trim_end_matches('\\').trim_end());
        if code.ends_with('\\') {
            pending.push(' ');
        } else {
            commands.push_back(std::mem::take(&mut pending));
        }
    }
    commands
}

/// A process started by a README command, its output collected.
struct Background {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<Vec<String>>>,
}

impl Background {
    fn output(&self) -> String {
        let out = self.out.lock().expect("out").join("\n");
        let err = self.err.lock().expect("err").join("\n");
        format!("{out}\n{err}")
    }

    fn wait_for(&self, what: &str, limit: Duration) {
        wait_until(what, limit, || self.output().contains(what));
    }

    /// SIGTERM, as Ctrl-C would; it must exit cleanly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut status = None;
        wait_until("the exit after SIGTERM", Duration::from_secs(20), || {
            status = self.child.try_wait().expect("wait");
            status.is_some()
        });
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}:\n{}",
            self.output()
        );
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README, taken command by command.
struct Readme {
    commands: RefCell<VecDeque<String>>,
    /// Stands for `/tmp/`.
    tmp: PathBuf,
    /// The working directory: a fresh one, like a clone's root with nothing made yet.
    cwd: PathBuf,
}

impl Readme {
    /// The next command, which must read `expected`, as the binary's arguments.
    fn next(&self, expected: &str) -> Vec<String> {
        let command = self.commands.borrow_mut().pop_front().unwrap_or_default();
        assert_eq!(
            command, expected,
            "README.md changed: follow the new command in tests/it/readme.rs"
        );
        self.args(&command)
    }

    /// A command's arguments after `cargo run --release --`, `/tmp/` moved to the test's.
    fn args(&self, command: &str) -> Vec<String> {
        let tmp = format!("{}/", self.tmp.display());
        command
            .strip_prefix("cargo run --release -- ")
            .unwrap_or(command)
            .split_whitespace()
            .map(|a| a.replace("/tmp/", &tmp))
            .collect()
    }

    fn tmp(&self, path: &str) -> PathBuf {
        self.tmp.join(path)
    }

    fn run(&self, args: &[String]) -> Output {
        dictmon()
            .args(args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .output()
            .expect("spawn dictmon")
    }

    /// Runs; it must succeed and say each of `says`.
    fn run_ok(&self, args: &[String], says: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {}\n{text}", out.status);
        for s in says {
            assert!(text.contains(s), "{args:?} does not say {s:?}:\n{text}");
        }
        text
    }

    fn spawn(&self, args: &[String]) -> Background {
        let mut child = dictmon()
            .args(args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dictmon");
        let out = collect(child.stdout.take().expect("stdout"));
        let err = collect(child.stderr.take().expect("stderr"));
        Background { child, out, err }
    }

    /// The next command is one the simulator printed: the same, with `dictmon` for
    /// `cargo run --release --`.
    fn next_printed_by(&self, simulator: &Background, expected: &str) -> Vec<String> {
        let printed = simulator
            .output()
            .lines()
            .find_map(|l| l.strip_prefix("connect with: dictmon ").map(str::to_owned))
            .expect("the simulator prints the serve command");
        let args = self.next(expected);
        assert_eq!(
            printed.split_whitespace().collect::<Vec<_>>(),
            args,
            "the README's serve command is not the one the simulator prints"
        );
        args
    }

    /// A command not run here, and why.
    fn not_run(&self, expected: &str, _why: &str) {
        self.next(expected);
    }
}

fn get(url: &str) -> (u16, String) {
    http_get(url).unwrap_or((0, String::new()))
}

/// Waits until `url` answers 200 with a body that contains `what`.
fn wait_for_page(url: &str, what: &str, limit: Duration) {
    wait_until(&format!("{what} at {url}"), limit, || {
        let (status, body) = get(url);
        status == 200 && body.contains(what)
    });
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn every_readme_command_works_as_written() {
    let tmp = tempfile::tempdir().expect("temp");
    let cwd = tmp.path().join("clone");
    std::fs::create_dir(&cwd).expect("mkdir");
    let readme = Readme {
        commands: RefCell::new(readme_commands()),
        tmp: tmp.path().to_owned(),
        cwd,
    };
    first_run(&readme);
    through_a_bridge(&readme);
    from_dict(&readme);
    history(&readme);
    alert_events(&readme);
    // Installing on a server.
    readme.not_run(
        "packaging/build.sh",
        "builds the release package: .ci/run builds and lintian-checks the package",
    );
    readme.not_run(
        "sudo dpkg -i target/debian/dictmon_0.1.0-1_amd64.deb",
        "installs on this machine: packaging/test.sh does it in a clean Debian root",
    );
    assert!(
        readme.commands.borrow().is_empty(),
        "README.md has commands this test does not follow: {:?}",
        readme.commands.borrow()
    );
}

/// The two commands a newcomer needs, then the faster demo.
fn first_run(readme: &Readme) {
    let serve = readme.spawn(&readme.next("cargo run --release -- serve"));
    serve.wait_for("HTTP on http://127.0.0.1:9464", MINUTE);
    serve.wait_for("gRPC off", MINUTE);
    serve.wait_for(
        &format!("data in {}", readme.cwd.join("dictmon-data").display()),
        MINUTE,
    );
    wait_for_page("http://127.0.0.1:9464/", "POLICIES_LIST", MINUTE);
    serve.stop();
    readme.not_run("cargo test", "it is what runs this test");

    let serve = readme.spawn(&readme.next("cargo run --release -- serve --interval 5s"));
    wait_for_page(
        "http://127.0.0.1:9464/api/v1/policies",
        "ENTRIES_READ_PARTICIPANT_ANTISCAN",
        MINUTE,
    );
    wait_for_page("http://127.0.0.1:9464/api/v1/alerts?open=true", "[", MINUTE);
    wait_for_page(
        "http://127.0.0.1:9464/metrics",
        "dict_rate_limit_available_tokens",
        MINUTE,
    );
    serve.stop();
    readme.run_ok(&readme.args("status"), &["POLICIES_LIST"]);
}

/// Through a Bridge over gRPC, with an alert within a minute.
fn through_a_bridge(readme: &Readme) {
    let simulator = readme.spawn(&readme.next(
        "cargo run --release -- simulate --listen 127.0.0.1:50051 --tls-dir /tmp/pki --scenario exhaustion",
    ));
    simulator.wait_for("connect with:", MINUTE);
    let serve = readme.spawn(&readme.next_printed_by(
        &simulator,
        "cargo run --release -- serve --source bridge --bridge-url https://127.0.0.1:50051 --ca-cert /tmp/pki/ca.pem --client-cert /tmp/pki/client.pem --client-key /tmp/pki/client-key.pem --interval 1s",
    ));
    wait_for_page(
        "http://127.0.0.1:9464/api/v1/alerts?open=true",
        "\"severity\"",
        MINUTE,
    );
    serve.stop();
}

/// Straight from DICT's HTTPS API, and one policy read live.
fn from_dict(readme: &Readme) {
    let simulator = readme.spawn(&readme.next(
        "cargo run --release -- simulate --listen 127.0.0.1:16422 --protocol dict --tls-dir /tmp/dict-pki --scenario exhaustion",
    ));
    simulator.wait_for("connect with:", MINUTE);
    let serve_args = readme.next_printed_by(
        &simulator,
        "cargo run --release -- serve --source dict --dict-url https://127.0.0.1:16422/api/v2/ --ispb 12345678 --ca-cert /tmp/dict-pki/ca.pem --client-cert /tmp/dict-pki/client.pem --client-key /tmp/dict-pki/client-key.pem --dict-signing-cert /tmp/dict-pki/dict-signing.pem --interval 10s",
    );
    let serve = readme.spawn(&serve_args);
    wait_for_page(
        "http://127.0.0.1:9464/api/v1/policies",
        "ENTRIES_READ_PARTICIPANT_ANTISCAN",
        MINUTE,
    );
    serve.stop();
    // "…" stands for the connection flags of the serve command above.
    let mut live = readme.next(
        "cargo run --release -- status --live ENTRIES_READ_PARTICIPANT_ANTISCAN --source dict …",
    );
    live.pop();
    live.extend(
        serve_args
            .iter()
            .skip_while(|a| *a != "--dict-url")
            .take_while(|a| *a != "--interval")
            .cloned(),
    );
    readme.run_ok(&live, &["ENTRIES_READ_PARTICIPANT_ANTISCAN"]);
}

/// 13 months of history, the store's tools, forensics and PostgreSQL.
fn history(readme: &Readme) {
    readme.run_ok(
        &readme.next("cargo run --release -- simulate --backfill 13mo --data-dir /tmp/demo"),
        &["wrote"],
    );
    let months = std::fs::read_dir(readme.tmp("demo/segments"))
        .expect("segments")
        .count();
    assert_eq!(months, 13, "13 months of history: 13 monthly segments");
    readme.run_ok(
        &readme.next("cargo run --release -- status --data-dir /tmp/demo"),
        &["ENTRIES_WRITE"],
    );
    readme.run_ok(
        &readme.next("cargo run --release -- verify --data-dir /tmp/demo"),
        &["13 segments", "clean"],
    );
    readme.run_ok(
        &readme.next("cargo run --release -- retention --data-dir /tmp/demo --dry-run"),
        &[],
    );
    readme.run_ok(
        &readme.next("cargo run --release -- query states --data-dir /tmp/demo --policy ENTRIES_WRITE --since 2d --until 1d"),
        &["ENTRIES_WRITE"],
    );
    let alerts = readme.run_ok(
        &readme.next("cargo run --release -- query alerts --data-dir /tmp/demo --severity CRITICAL --since 30d --format json"),
        &["\"CRITICAL\""],
    );
    for line in alerts.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).expect("one JSON object per line");
    }
    readme.run_ok(
        &readme.next(
            "cargo run --release -- query summary --data-dir /tmp/demo --by month --below 10",
        ),
        &["ENTRIES_WRITE", "<10%"],
    );
    readme.run_ok(
        &readme.next(
            "cargo run --release -- query episodes --data-dir /tmp/demo --policy ENTRIES_WRITE",
        ),
        &["START (UTC)"],
    );
    readme.run_ok(
        &readme.next("cargo run --release -- export --data-dir /tmp/demo --out /tmp/pg"),
        &[],
    );
    for file in [
        "schema.sql",
        "load.sql",
        "states.csv",
        "alerts.csv",
        "policies.csv",
    ] {
        assert!(
            readme.tmp("pg").join(file).is_file(),
            "export wrote no {file}"
        );
    }
    readme.not_run(
        "(cd /tmp/pg && psql -d mydb -f schema.sql -f load.sql)",
        "needs a database named mydb: tests/it/export_postgres.rs loads exports into a real PostgreSQL",
    );
    readme.run_ok(
        &readme.next("cargo run --release -- import --data-dir /tmp/back --states /tmp/pg/states.csv --alerts /tmp/pg/alerts.csv"),
        &["imported", "0 bad rows"],
    );
}

/// Alert events: an events file, the sinks' state, the gRPC stream.
fn alert_events(readme: &Readme) {
    let serve =
        readme
            .spawn(&readme.next(
                "cargo run --release -- serve --interval 5s --events-file /tmp/events.jsonl",
            ));
    serve.wait_for("HTTP on http://127.0.0.1:9464", MINUTE);
    wait_for_page(
        "http://127.0.0.1:9464/api/v1/policies",
        "POLICIES_LIST",
        MINUTE,
    );
    serve.stop();
    readme.run_ok(
        &readme.next("cargo run --release -- query alerts"),
        &["events-file"],
    );
    let serve = readme.spawn(
        &readme.next("cargo run --release -- serve --interval 5s --grpc-listen 127.0.0.1:9465"),
    );
    serve.wait_for("gRPC on 127.0.0.1:9465", MINUTE);
    assert!(std::net::TcpStream::connect("127.0.0.1:9465").is_ok());
    serve.stop();
    readme.not_run(
        "grpcurl -plaintext -import-path proto -proto alerts.proto -d '{}' 127.0.0.1:9465 dictmon.alerts.v1.AlertService/WatchAlerts",
        "grpcurl is not in Debian: tests/it/notify_stream.rs watches the stream with a real gRPC client",
    );
    assert!(readme.cwd.join("dictmon-data").is_dir());
}
