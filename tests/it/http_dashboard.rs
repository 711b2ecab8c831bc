//! The built-in dashboard in a real browser: `serve` on the simulator (over two days of
//! backfilled history), pages opened in headless Chromium, checked through the DOM it built
//! (after the page's own script ran), and screenshots kept as test artefacts in
//! `target/tmp/dashboard/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::util::{Serve, backfill, dictmon, http_get, run_ok, wait_until};

/// The policy the simulator's scenarios script.
const SCRIPTED: &str = "ENTRIES_READ_PARTICIPANT_ANTISCAN";

/// Headless Chromium, kept off every network but loopback: no background requests, no
/// component updates, no sync; a fresh profile per run.
fn chromium(profile: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium not found: install the Debian package `chromium` (.ci/run does)");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The DOM Chromium built for `url`, serialized after `virtual_ms` of the page's (virtual)
/// time, in which its script runs its timers.
fn dom(profile: &Path, url: &str, virtual_ms: u32) -> String {
    let budget = format!("--virtual-time-budget={virtual_ms}");
    String::from_utf8(chromium(profile, &[&budget, "--dump-dom", url])).expect("UTF-8 DOM")
}

/// A screenshot of `url` at `width`×`height`, checked to be a PNG of some substance.
fn screenshot(profile: &Path, url: &str, size: (u32, u32), dark: bool, file: &Path) {
    let mut args = vec![
        format!("--window-size={},{}", size.0, size.1),
        format!("--screenshot={}", file.display()),
    ];
    if dark {
        args.push("--force-dark-mode".into());
    }
    args.push(url.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ = std::fs::remove_file(file);
    chromium(profile, &args);
    let png = std::fs::read(file).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        file.display()
    );
    assert!(png.len() > 10_000, "{} is nearly empty", file.display());
}

/// The start tags of `tag` elements carrying `attr`, in document order.
fn tags_with<'a>(dom: &'a str, tag: &str, attr: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    dom.match_indices(&open)
        .filter_map(|(at, _)| {
            let end = dom[at..].find('>')? + at;
            let t = &dom[at..=end];
            t.contains(&format!(" {attr}=")).then_some(t)
        })
        .collect()
}

/// The value of `attr` in a start tag.
fn attr<'a>(tag: &'a str, attr: &str) -> Option<&'a str> {
    let key = format!(" {attr}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The element starting at `start_tag` up to the end of the next `</tag>`.
fn element<'a>(dom: &'a str, start_tag: &str, tag: &str) -> &'a str {
    let at = dom.find(start_tag).expect("start tag in the DOM");
    let end = dom[at..]
        .find(&format!("</{tag}>"))
        .expect("element closed");
    &dom[at..at + end]
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("artefact directory");
    dir
}

#[test]
fn every_policy_has_a_card_the_critical_one_says_so_and_the_history_chart_has_points() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    backfill(&data, "2d");
    // The flapping scenario holds the scripted bucket at 19–21 %: with its CRITICAL threshold
    // at 25 % it stays CRITICAL for the whole test, so the page cannot race a resolution.
    let config = tmp.path().join("dictmon.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"1s\"\n[source.simulator]\nscenario = \"flapping\"\n\
             [thresholds.policies.{SCRIPTED}]\nwarning_percent = 30.0\ncritical_percent = 25.0\n"
        ),
    )
    .expect("config");
    let serve = Serve::start(&data, &["--config", config.to_str().expect("UTF-8 path")]);
    let mut api = Vec::new();
    wait_until(
        "the scripted policy CRITICAL in /api/v1/policies",
        Duration::from_secs(30),
        || {
            let (status, body) = serve.get("/api/v1/policies");
            api = serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap_or_default();
            status == 200
                && api
                    .iter()
                    .any(|p| p["endpoint_id"] == SCRIPTED && p["severity"] == "CRITICAL")
        },
    );
    let names: BTreeSet<String> = api
        .iter()
        .filter_map(|p| p["endpoint_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        names.len() >= 29,
        "the simulator polls DICT's table: {names:?}"
    );

    let profile = tmp.path().join("chromium");
    check_overview(&serve, &profile, &names);
    let policy_url = check_history(&serve, &profile, &data);
    check_forensics(&serve, &data, &config);
    // Screenshots: desktop and phone width, light and dark.
    let out = artefacts();
    let overview_url = format!("{}/", serve.base);
    for (file, url, size, dark) in [
        ("overview-desktop.png", &overview_url, (1280, 1800), false),
        ("overview-phone.png", &overview_url, (390, 2400), false),
        ("overview-phone-dark.png", &overview_url, (390, 1600), true),
        ("policy-desktop.png", &policy_url, (1280, 1200), false),
        ("policy-phone-dark.png", &policy_url, (390, 1600), true),
    ] {
        screenshot(&profile, url, size, dark, &out.join(file));
    }
}

/// Every policy has one card; the critical one says so, first, with its sparkline; open
/// alerts on top; the page's script ran.
fn check_overview(serve: &Serve, profile: &Path, names: &BTreeSet<String>) {
    let url = format!("{}/", serve.base);
    let overview = dom(profile, &url, 2_000);

    // Every policy has exactly one card.
    let cards = tags_with(&overview, "article", "data-policy");
    let carded: Vec<&str> = cards
        .iter()
        .filter_map(|t| attr(t, "data-policy"))
        .collect();
    assert_eq!(
        carded
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        *names,
        "one card per policy of /api/v1/policies"
    );
    assert_eq!(carded.len(), names.len(), "no policy has two cards");

    // The critical policy shows the critical state, in colour and in words, and comes first.
    let critical = cards
        .iter()
        .find(|t| attr(t, "data-policy") == Some(SCRIPTED))
        .expect("card of the scripted policy");
    assert_eq!(attr(critical, "data-severity"), Some("critical"));
    let card = element(&overview, critical, "article");
    assert!(card.contains(">CRITICAL</span>"), "badge text: {card}");
    assert!(
        card.contains("aria-label=\"") && card.contains("remaining, CRITICAL\""),
        "the bar's text alternative names the state: {card}"
    );
    let before: Vec<&&str> = cards
        .iter()
        .take_while(|t| attr(t, "data-policy") != Some(SCRIPTED))
        .collect();
    assert!(
        before
            .iter()
            .all(|t| attr(t, "data-severity") == Some("critical")),
        "CRITICAL cards come first: {before:?}"
    );
    let spark = tags_with(card, "svg", "data-points");
    let spark_points: usize = spark
        .first()
        .and_then(|t| attr(t, "data-points"))
        .and_then(|n| n.parse().ok())
        .expect("a sparkline");
    assert!(
        (90..=100).contains(&spark_points),
        "the sparkline draws the ring's last 24 h (288 backfilled samples reloaded) in at most 100 points: {spark_points}"
    );
    let legend = element(card, "<p class=\"spark-legend muted\"", "p");
    assert!(
        legend.contains("Last 2")
            && legend.contains("h · ")
            && legend.contains("WARNING 30.0 %")
            && legend.contains("CRITICAL 25.0 %"),
        "the sparkline says its span and what its ticks are: {legend}"
    );
    assert!(
        cards.len() == names.len() && overview.contains("_<wbr>"),
        "policy names may wrap after an underscore"
    );
    let alerts = element(&overview, "<section id=\"alerts\"", "section");
    assert!(
        alerts.contains(&format!("/policy/{SCRIPTED}")) && alerts.contains(">CRITICAL<"),
        "open alerts on top name the critical policy: {alerts}"
    );
    assert!(
        alerts.contains("Now <strong>") && alerts.contains("when it opened ("),
        "an open alert shows its value now beside its value at opening: {alerts}"
    );
    assert!(
        overview.contains("data-ago=\""),
        "the page's script ran (relative times)"
    );
    assert!(
        overview.contains("Polls: fresh"),
        "source health in the header"
    );

    // Refreshed in place: after 12 s (the page refreshes every 5 s at this interval) the
    // script has fetched the page and swapped its live part, every card still there.
    let later = dom(profile, &url, 12_000);
    let body = tags_with(&later, "body", "data-refreshes");
    let refreshes: u32 = body
        .first()
        .and_then(|t| attr(t, "data-refreshes"))
        .and_then(|n| n.parse().ok())
        .expect("the page refreshed itself");
    assert!(refreshes >= 1, "refreshes: {refreshes}");
    assert_eq!(
        tags_with(&later, "article", "data-policy").len(),
        names.len()
    );
}

/// The policy page lists the range's episodes at or below WARNING — those `dictmon query
/// episodes` finds with the command the page prints — linked to the alerts that covered them,
/// and the summary by day.
fn check_forensics(serve: &Serve, data: &Path, config: &Path) {
    let (status, page) = serve.get(&format!("/policy/{SCRIPTED}?range=7d"));
    assert_eq!(status, 200);
    assert!(
        page.contains("Episodes at or below WARNING (30 %)"),
        "the policy's own threshold"
    );
    let starts: Vec<&str> = page
        .split("data-start=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert!(
        !starts.is_empty(),
        "held at 19–21 %: at least the ongoing episode"
    );
    // The command the page prints, run as printed (with the test's data and config).
    let since = page
        .split("dictmon query episodes --policy ")
        .nth(1)
        .and_then(|s| s.split("--since &quot;").nth(1))
        .and_then(|s| s.split("&quot;").next())
        .expect("the command line under the table");
    let cli = run_ok(
        dictmon()
            .args(["query", "episodes", "--policy", SCRIPTED, "--since", since])
            .args(["--format", "csv", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data),
    );
    let cli_starts: Vec<chrono::DateTime<chrono::Utc>> = cli
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .map(|t| t.parse().expect("start"))
        .collect();
    for s in &starts {
        let t: chrono::DateTime<chrono::Utc> = s.parse().expect("data-start");
        assert!(cli_starts.contains(&t), "{t} not in {cli_starts:?}");
    }
    assert!(
        cli.lines().last().is_some_and(|l| l.contains(",true,")),
        "ongoing: {cli}"
    );
    // The ongoing episode links to the open CRITICAL alert, listed in the table above.
    let link = page
        .split("class=\"alert-link\" href=\"#")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an episode links to its alert");
    assert!(
        page.contains(&format!("id=\"{link}\"")),
        "{link} is a row of the alert table"
    );
    assert!(page.contains("Summary by day") && page.contains("<table class=\"summary\">"));
}

/// The history page draws a chart with points, the thresholds in force and the open alert,
/// and links its CSV, which is `query states --format pg-csv`; returns the page's URL.
fn check_history(serve: &Serve, profile: &Path, data: &Path) -> String {
    let policy_url = format!("{}/policy/{SCRIPTED}?range=7d", serve.base);
    let page = dom(profile, &policy_url, 2_000);
    let chart = tags_with(&page, "svg", "data-points");
    let chart_tag = chart.first().expect("a history chart");
    let points: usize = attr(chart_tag, "data-points")
        .and_then(|n| n.parse().ok())
        .expect("point count");
    assert!(
        points >= 200,
        "two days of 5-minute history in 300 steps: {points}"
    );
    let svg = element(&page, chart_tag, "svg");
    let path = tags_with(svg, "path", "d")
        .into_iter()
        .find(|t| attr(t, "class") == Some("line"))
        .and_then(|t| attr(t, "d"))
        .expect("the line");
    assert!(
        path.matches('L').count() + path.matches('M').count() == points,
        "one path vertex per point"
    );
    assert!(svg.contains("WARNING 30.0 %") && svg.contains("CRITICAL 25.0 %"));
    assert!(
        svg.contains(" UTC</text>"),
        "the time axis says its zone: {svg}"
    );
    assert!(
        page.contains("Blocks above the plot: alerts"),
        "the alert lane has a legend"
    );
    assert!(
        svg.contains("<rect class=\"span critical\""),
        "the open alert drawn as a span"
    );
    let link = tags_with(&page, "a", "download")
        .into_iter()
        .find_map(|t| attr(t, "href"))
        .expect("a download link");
    assert_eq!(link, format!("/policy/{SCRIPTED}/states.csv?range=7d"));
    let (status, csv) = http_get(&format!("{}{link}", serve.base)).expect("CSV download");
    assert_eq!(status, 200);
    let query = run_ok(
        dictmon()
            .args(["query", "states", "--policy", SCRIPTED, "--since", "7d"])
            .args(["--format", "pg-csv", "--data-dir"])
            .arg(data),
    );
    let (csv_lines, query_lines): (Vec<&str>, Vec<&str>) =
        (csv.lines().collect(), query.lines().collect());
    assert!(
        csv_lines.len() > 500,
        "2 days at 5 min and more: {}",
        csv_lines.len()
    );
    assert!(
        query_lines.len() >= csv_lines.len(),
        "the later query saw at least as much"
    );
    assert_eq!(
        csv_lines[..],
        query_lines[..csv_lines.len()],
        "the download is `query states --format pg-csv` of the range"
    );

    // The other ranges render too; a bad one and an unknown policy are refused in words.
    for range in ["24h", "30d", "13mo"] {
        let (status, body) = serve.get(&format!("/policy/{SCRIPTED}?range={range}"));
        assert_eq!(status, 200, "{range}");
        assert!(body.contains("data-points=\""), "{range}");
    }
    let (status, body) = serve.get(&format!("/policy/{SCRIPTED}?range=1y"));
    assert_eq!(status, 400);
    assert!(body.contains("one of 24h, 7d, 30d, 13mo"));
    assert_eq!(serve.get("/policy/NO_SUCH_POLICY").0, 404);
    assert_eq!(serve.get("/policy/%3Cscript%3E").0, 404);
    policy_url
}
