//! HTTP hygiene against a real `serve`, over raw loopback sockets: oversized and overlong
//! request heads, a client that never finishes its head, a flood of idle connections, request
//! bodies, and the optional bearer token of `/api/*`. The poll cycle goes on throughout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dictmon::http::{HEADER_TIMEOUT, MAX_CONNECTIONS};

use super::util::{Serve, metric};

fn addr(serve: &Serve) -> String {
    serve.base.trim_start_matches("http://").to_owned()
}

/// Sends `request` on a fresh connection and reads until the server closes it or 20 s pass;
/// returns what came back.
fn exchange(serve: &Serve, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(serve)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or("")
}

fn polls(serve: &Serve) -> f64 {
    let (_, text) = serve.get("/metrics");
    metric(&text, "dictmon_last_successful_poll_timestamp_seconds").unwrap_or(0.0)
}

#[test]
fn oversized_heads_bodies_slow_and_surplus_clients_are_refused_and_polling_goes_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let serve = Serve::start(&tmp.path().join("data"), &["--interval", "1s"]);
    super::util::wait_until("a first poll", Duration::from_secs(30), || {
        polls(&serve) > 0.0
    });
    let first_poll = polls(&serve);

    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let reply = exchange(&serve, big.as_bytes());
    assert!(
        status_line(&reply).contains("431"),
        "a 20 KB header: {reply:.200}"
    );
    let many = "X-H: v\r\n".repeat(100);
    let reply = exchange(
        &serve,
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    );
    assert!(
        status_line(&reply).contains("431"),
        "100 headers: {reply:.200}"
    );
    let reply = exchange(
        &serve,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(status_line(&reply).contains("413"), "a body: {reply:.200}");

    // A client that starts a request and never finishes it is cut off.
    let started = Instant::now();
    let reply = exchange(&serve, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    let waited = started.elapsed();
    assert!(
        waited + Duration::from_secs(1) >= HEADER_TIMEOUT
            && waited < HEADER_TIMEOUT + Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert!(!reply.contains("200 OK"), "no answer to half a request");

    // MAX_CONNECTIONS idle clients hold every slot: one more is closed at once, without an
    // answer; once they go, new clients are served again.
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr(&serve)).expect("connect"))
        .collect();
    // Once the server has accepted them all (until then a surplus client may still find a
    // slot, and is answered), a surplus client is closed at once, unanswered.
    let mut took = Duration::ZERO;
    super::util::wait_until(
        "a surplus connection closed unanswered",
        Duration::from_secs(10),
        || {
            let started = Instant::now();
            let reply = exchange(&serve, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            took = started.elapsed();
            reply.is_empty()
        },
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(idle);
    super::util::wait_until("slots free again", Duration::from_secs(10), || {
        serve.get("/healthz").0 == 200
    });
    assert!(
        polls(&serve) > first_poll,
        "the poll cycle went on while clients misbehaved"
    );
}

#[test]
fn the_api_needs_the_bearer_token_when_one_is_configured() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, "s3cr3t-t0ken\n").expect("token");
    let config = tmp.path().join("dictmon.toml");
    std::fs::write(
        &config,
        format!("api_token_file = {:?}\n", token_file.display().to_string()),
    )
    .expect("config");
    let serve = Serve::start(
        &tmp.path().join("data"),
        &[
            "--config",
            config.to_str().expect("UTF-8"),
            "--interval",
            "1s",
        ],
    );
    let get = |path: &str, auth: Option<&str>| {
        let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        let reply = exchange(
            &serve,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
        );
        (status_line(&reply).to_owned(), reply)
    };
    for path in ["/api/v1/policies", "/api/v1/alerts?open=true"] {
        let (status, reply) = get(path, None);
        assert!(status.contains("401"), "{path} without a token: {status}");
        assert!(reply.contains("www-authenticate: Bearer realm=\"dictmon\""));
        assert!(get(path, Some("Bearer wrong")).0.contains("401"));
        assert!(get(path, Some("Bearer s3cr3t-t0ke")).0.contains("401"));
        assert!(get(path, Some("Basic s3cr3t-t0ken")).0.contains("401"));
        let (status, _) = get(path, Some("Bearer s3cr3t-t0ken"));
        assert!(status.contains("200"), "{path} with the token: {status}");
    }
    for open in ["/metrics", "/healthz", "/"] {
        assert!(get(open, None).0.contains("200"), "{open} stays open");
    }
}

/// Many clients ask for a policy's 13-month CSV and read nothing: downloads are streamed and at
/// most `HEAVY_REQUESTS` run at once, so `/healthz`, `/metrics` and the API answer throughout;
/// once the clients are gone, a download works again, whole.
#[test]
fn clients_that_ask_for_downloads_and_read_nothing_hold_only_their_turn() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    super::util::run_ok(
        super::util::dictmon()
            .args([
                "simulate",
                "--backfill",
                "3d",
                "--interval",
                "10s",
                "--data-dir",
            ])
            .arg(&data),
    );
    let serve = Serve::start(&data, &["--interval", "5s"]);
    let path = "/policy/ENTRIES_WRITE/states.csv?range=13mo";
    let request = format!("GET {path} HTTP/1.1\r\nHost: dictmon\r\n\r\n");
    let stalled: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(addr(&serve)).expect("connect");
            s.write_all(request.as_bytes()).expect("send");
            s
        })
        .collect();
    super::util::wait_until(
        "both heavy permits taken by clients that read nothing",
        Duration::from_secs(30),
        || {
            let (_, text) = serve.get("/metrics");
            metric(&text, "dictmon_http_heavy_requests") == Some(2.0)
        },
    );
    for endpoint in ["/healthz", "/api/v1/policies", "/metrics", "/"] {
        assert_eq!(
            serve.get(endpoint).0,
            200,
            "{endpoint} while downloads stall"
        );
    }
    drop(stalled);
    let mut body = String::new();
    super::util::wait_until(
        "a whole download once the stalled clients are gone",
        Duration::from_secs(90),
        || {
            let (status, text) = serve.get(path);
            body = text;
            status == 200
        },
    );
    let rows = body.lines().count();
    assert!(rows > 3 * 24 * 360, "3 days at 10 s: {rows} lines");
    let query = super::util::run_ok(
        super::util::dictmon()
            .args([
                "query",
                "states",
                "--policy",
                "ENTRIES_WRITE",
                "--since",
                "13mo",
            ])
            .args(["--format", "pg-csv", "--data-dir"])
            .arg(&data),
    );
    let (got, want): (Vec<&str>, Vec<&str>) = (body.lines().collect(), query.lines().collect());
    assert_eq!(
        got[..],
        want[..got.len()],
        "the download is the query's output"
    );
}
