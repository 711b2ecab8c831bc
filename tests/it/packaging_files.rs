//! The shipped Grafana dashboard and Prometheus rules: the rules pass `promtool check` and
//! their unit tests; every metric the dashboard or the rules name is one a running `serve`
//! exports (or a recording rule of the rules file); the dashboard is well-formed.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use super::util::{Serve, packaging, wait_until};

/// The metric names in a Prometheus query: identifiers starting `dict_rate_limit` or `dictmon_`
/// that are not function calls.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &promql[start..i];
            if (word.starts_with("dict_rate_limit") || word.starts_with("dictmon_"))
                && bytes.get(i) != Some(&b'(')
            {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The metric names of a running `serve`'s `/metrics` that has raised alerts and has a sink.
fn exported() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("temp");
    let events = dir.path().join("events.jsonl");
    let serve = Serve::start(
        &dir.path().join("data"),
        &[
            "--scenario",
            "exhaustion",
            "--interval",
            "1s",
            "--events-file",
            &events.display().to_string(),
        ],
    );
    let mut text = String::new();
    wait_until("an open alert in /metrics", Duration::from_secs(60), || {
        text = serve.get("/metrics").1;
        text.contains("dictmon_alert_open{")
    });
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (name, kind) = (parts.next()?, parts.next()?);
            Some(if kind == "histogram" {
                vec![
                    name.to_owned(),
                    format!("{name}_bucket"),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                ]
            } else {
                vec![name.to_owned()]
            })
        })
        .flatten()
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(list: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for p in list.as_array().expect("panels is an array") {
        out.push(p);
        if let Some(nested) = p.get("panels") {
            out.extend(panels(nested));
        }
    }
    out
}

#[test]
fn the_dashboard_and_the_rules_name_only_exported_metrics() {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(packaging("grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let rules = [
        "prometheus-rules-appliance.yml",
        "prometheus-rules-buckets.yml",
    ]
    .map(|f| std::fs::read_to_string(packaging(f)).expect("rules"))
    .join("\n");
    let recorded: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_owned)
        .collect();

    // Structure Grafana needs to import it.
    for key in ["title", "uid", "panels", "schemaVersion", "templating"] {
        assert!(dashboard.get(key).is_some(), "dashboard without {key}");
    }
    let all = panels(&dashboard["panels"]);
    let mut ids = BTreeSet::new();
    let mut queries = Vec::new();
    for p in &all {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        let grid = &p["gridPos"];
        let (x, w) = (
            grid["x"].as_u64().expect("x"),
            grid["w"].as_u64().expect("w"),
        );
        assert!(x + w <= 24, "panel {id} wider than the grid");
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            queries.push(t["expr"].as_str().expect("expr").to_owned());
        }
    }
    for a in dashboard["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        queries.push(a["expr"].as_str().expect("annotation expr").to_owned());
    }
    let rows = all.iter().filter(|p| p["type"] == "row").count();
    assert!(rows >= 5, "one row per policy group expected, found {rows}");
    // Each of DICT's policies is in exactly one row (Prometheus anchors its regexes).
    let groups: BTreeSet<String> = queries
        .iter()
        .filter_map(|q| {
            Some(
                q.split("endpoint_id=~\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .to_owned(),
            )
        })
        .collect();
    for p in dictmon::domain::dict_table::PSP_POLICIES {
        let rows: Vec<&String> = groups
            .iter()
            .filter(|g| {
                regex::Regex::new(&format!("^(?:{g})$"))
                    .expect("a regex")
                    .is_match(p.name)
            })
            .collect();
        assert_eq!(rows.len(), 1, "{} is in the rows {rows:?}", p.name);
    }

    let mut named: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    let rules_without_comments: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    named.extend(metric_names(&rules_without_comments));
    assert!(named.len() >= 10, "too few metric names found: {named:?}");
    let exported = exported();
    let unknown: Vec<&String> = named
        .iter()
        .filter(|n| !exported.contains(*n) && !recorded.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "named but neither exported nor recorded: {unknown:?}"
    );
    for design in [
        "dict_rate_limit_utilization_percent",
        "dict_rate_limit_consumption_rate_per_minute",
        "dict_rate_limit_recovery_eta_seconds",
        "dict_rate_limit_exhaustion_projection_seconds",
        "dict_rate_limit_alerts_created_total",
    ] {
        assert!(
            queries.iter().any(|q| q.contains(design)),
            "the dashboard does not show {design}"
        );
    }
}

#[test]
fn the_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        vec![
            "check",
            "rules",
            "prometheus-rules-appliance.yml",
            "prometheus-rules-buckets.yml",
        ],
        vec![
            "test",
            "rules",
            "prometheus-rules-appliance.test.yml",
            "prometheus-rules-buckets.test.yml",
        ],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(packaging(""))
            .output()
            .expect("promtool not found: install the Debian package `prometheus` (.ci/run does)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
