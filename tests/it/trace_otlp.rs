//! Traces over OTLP/gRPC. The far side is a collector stand-in built on the published OTLP
//! protobufs (`opentelemetry-proto`'s tonic `TraceService`): it keeps every span it receives.
//! dictmon runs for real, on the flapping scenario with a file sink, so that cycles raise
//! alert events and a sink delivers them; the span tree is held against what a cycle does.
//! With the collector hanging (a port that accepts and never answers), cycles keep their pace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

use super::util::{Serve, free_port, metric, stand_in_runtime, wait_until};

/// A span as received, with its resource's `service.name`.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    links: Vec<Vec<u8>>,
    attributes: HashMap<String, String>,
    error: bool,
    service: String,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut kept = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource.get("service.name").cloned().unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(Received {
                        attributes: attributes(&span.attributes),
                        links: span.links.iter().map(|l| l.span_id.clone()).collect(),
                        // STATUS_CODE_ERROR is 2.
                        error: span.status.as_ref().is_some_and(|s| s.code == 2),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The collector, serving OTLP/gRPC on a loopback port until dropped.
struct RunningCollector {
    addr: SocketAddr,
    collector: Collector,
    _runtime: tokio::runtime::Runtime,
}

impl RunningCollector {
    fn start() -> Self {
        let runtime = stand_in_runtime();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        Self {
            addr,
            collector,
            _runtime: runtime,
        }
    }

    fn spans(&self) -> Vec<Received> {
        self.collector.spans.lock().expect("spans").clone()
    }
}

fn start(dir: &Path, endpoint: &str) -> Serve {
    let config = dir.join("dictmon.toml");
    std::fs::write(
        &config,
        format!(
            "[telemetry.otlp]\nendpoint = \"{endpoint}\"\ntimeout = \"2s\"\ninstance = \"it-1\"\n"
        ),
    )
    .expect("config");
    let events = dir.join("events.jsonl");
    Serve::start(
        &dir.join("data"),
        &[
            "--config",
            &config.display().to_string(),
            "--scenario",
            "flapping",
            "--interval",
            "1s",
            "--events-file",
            &events.display().to_string(),
        ],
    )
}

/// The children of `parent` by name.
fn children<'a>(spans: &'a [Received], parent: &Received) -> HashMap<&'a str, &'a Received> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id && s.trace_id == parent.trace_id)
        .map(|s| (s.name.as_str(), s))
        .collect()
}

#[test]
fn every_cycle_is_a_trace_of_its_steps_and_deliveries_hang_from_the_cycle_that_raised_them() {
    let dir = tempfile::tempdir().expect("temp");
    let collector = RunningCollector::start();
    let serve = start(dir.path(), &format!("http://{}", collector.addr));
    // A cycle that raised events, and a delivery of them, both exported.
    wait_until(
        "a delivery span under a cycle that committed events",
        Duration::from_secs(90),
        || {
            let spans = collector.spans();
            spans.iter().any(|d| {
                d.name == "sink.deliver"
                    && spans.iter().any(|c| {
                        c.name == "poll_cycle"
                            && c.span_id == d.parent_span_id
                            && c.trace_id == d.trace_id
                    })
            })
        },
    );
    let exported = metric(
        &serve.get("/metrics").1,
        "dictmon_otlp_spans_exported_total",
    );
    let (status, _) = serve.terminate();
    assert!(status.success());
    assert!(exported.is_some_and(|n| n > 0.0), "{exported:?}");

    let spans = collector.spans();
    assert!(spans.iter().all(|s| s.service == "dictmon"), "service.name");
    let cycles: Vec<&Received> = spans.iter().filter(|s| s.name == "poll_cycle").collect();
    assert!(cycles.len() >= 2, "{} cycles", cycles.len());
    for cycle in &cycles {
        assert!(cycle.parent_span_id.is_empty(), "a cycle is a trace's root");
        let a = &cycle.attributes;
        assert_eq!(a["source.kind"], "simulator");
        assert_eq!(a["outcome"], "ok", "{a:?}");
        assert!(!cycle.error);
        let policies: usize = a["policies"].parse().expect("policies");
        assert!(policies > 0);
        assert!(!a["dict.correlation_id"].is_empty());
        let written: usize = a["rows_written"].parse().expect("rows_written");
        let accepted: usize = a["accepted"].parse().expect("accepted");
        assert_eq!(written, accepted, "every accepted sample written: {a:?}");
        // Its steps, each once, in its trace.
        let steps = children(&spans, cycle);
        for step in ["source.list", "validate", "store.append"] {
            assert!(steps.contains_key(step), "{step} missing under {a:?}");
        }
        assert_eq!(steps["source.list"].attributes["outcome"], "ok");
        assert_eq!(
            steps["source.list"].attributes["dict.correlation_id"],
            a["dict.correlation_id"]
        );
        assert_eq!(steps["validate"].attributes["accepted"], a["accepted"]);
        assert_eq!(steps["store.append"].attributes["rows"], a["rows_written"]);
        let events: usize = a["alert_events"].parse().expect("alert_events");
        if events > 0 {
            let commit = steps.get("catalog.commit").expect("a catalog commit");
            assert_eq!(commit.attributes["events"], a["alert_events"]);
        }
    }
    // Every delivery names its sink and outcome; those of events a cycle raised in this run
    // hang from that cycle.
    let deliveries: Vec<&Received> = spans.iter().filter(|s| s.name == "sink.deliver").collect();
    for d in &deliveries {
        assert_eq!(d.attributes["sink"], "events-file");
        assert_eq!(d.attributes["sink.kind"], "file");
        assert_eq!(d.attributes["outcome"], "delivered");
        if !d.parent_span_id.is_empty() {
            let parent = spans
                .iter()
                .find(|c| c.span_id == d.parent_span_id)
                .expect("the parent cycle exported");
            assert_eq!(parent.name, "poll_cycle");
            let events: usize = parent.attributes["alert_events"].parse().expect("n");
            assert!(events > 0, "a delivery under a cycle that raised no event");
        }
        for link in &d.links {
            assert!(
                cycles.iter().any(|c| &c.span_id == link),
                "a link to a span that is not a cycle"
            );
        }
    }
}

#[test]
fn with_the_collector_hanging_cycles_keep_their_pace_and_dropped_spans_are_counted() {
    let dir = tempfile::tempdir().expect("temp");
    // Accepts connections and never answers: every export waits its whole timeout (2 s).
    let port = free_port();
    let hanging = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in hanging.incoming().map_while(Result::ok) {
            keep.lock().expect("held").push(stream);
        }
    });
    let serve = start(dir.path(), &format!("http://127.0.0.1:{port}"));
    let metrics = || serve.get("/metrics").1;
    wait_until(
        "ten cycles, and spans the collector did not take counted",
        Duration::from_secs(60),
        || {
            let m = metrics();
            metric(&m, "dictmon_cycle_duration_seconds_count").unwrap_or(0.0) >= 10.0
                && metric(
                    &m,
                    "dictmon_otlp_spans_dropped_total{reason=\"export_failed\"}",
                )
                .unwrap_or(0.0)
                    > 0.0
        },
    );
    let m = metrics();
    let cycles = metric(&m, "dictmon_cycle_duration_seconds_count").expect("count");
    // A cycle that waited on an export would take its 2 s timeout: none reached 1 s.
    let under_a_second =
        metric(&m, "dictmon_cycle_duration_seconds_bucket{le=\"1\"}").expect("bucket");
    assert!(
        (under_a_second - cycles).abs() < f64::EPSILON,
        "{cycles} cycles, {under_a_second} under 1 s"
    );
    assert_eq!(
        metric(&m, "dictmon_otlp_spans_exported_total"),
        Some(0.0),
        "nothing exported to a collector that never answers"
    );
    assert!(
        !held.lock().expect("held").is_empty(),
        "dictmon did try the collector"
    );
    // Said once, not once a batch.
    let said = serve.log().matches("did not take").count();
    assert_eq!(said, 1, "{}", serve.log());
    let (status, took) = serve.terminate();
    assert!(status.success());
    // Shutdown waits for the last spans at most two export timeouts.
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
}
