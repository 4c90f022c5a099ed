//! Structured logs (JSON lines by default, `RUST_LOG` overrides the configured level) and
//! metrics (the Prometheus recorder behind `/v1/metrics`, the dashboard's running totals).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

/// The OpenTelemetry exporter while traces are on; [`Tracing::shutdown`] sends what is buffered.
pub struct Tracing(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Tracing {
    /// Export the spans still buffered and stop the exporter (call outside the async runtime:
    /// the exporter's HTTP client blocks).
    pub fn shutdown(self) {
        if let Some(provider) = self.0
            && let Err(e) = provider.shutdown()
        {
            eprintln!("cortex: exporting the last spans failed: {e}");
        }
    }
}

/// Logs to stderr and, with `otlp_endpoint`, spans to an OpenTelemetry collector (OTLP/HTTP,
/// protobuf, batched on a thread of the exporter's own). The log filter applies to both.
pub fn init(cfg: &LogConfig) -> Tracing {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let provider = cfg.otlp_endpoint.as_deref().and_then(|endpoint| {
        match otlp_provider(endpoint, &cfg.service_name) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("cortex: traces are off: the OTLP exporter for {endpoint} failed: {e}");
                None
            }
        }
    });
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(p.tracer("cortex"))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init();
    Tracing(provider)
}

fn otlp_provider(
    endpoint: &str,
    service_name: &str,
) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig;
    let base = endpoint.trim_end_matches('/');
    let url = if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Buckets (milliseconds) of every `*_ms` histogram.
const MS_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0, 30000.0, 60000.0,
];

static PROMETHEUS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// The process-wide Prometheus recorder behind `/v1/metrics`, installed on first use (`None`
/// when another recorder was installed first). Metric labels never carry tenant identifiers:
/// the exposition is shared by every company of the node.
pub fn prometheus() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_ms".into()), MS_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // Recorded histogram samples wait in a buffer until drained; drain it even when
            // nobody scrapes.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "cortex_http_requests_total",
        "HTTP requests by method, route template and status"
    );
    describe_histogram!(
        "cortex_http_request_duration_ms",
        Unit::Milliseconds,
        "Time to the response head"
    );
    describe_histogram!(
        "cortex_pipeline_duration_ms",
        Unit::Milliseconds,
        "Chat pipeline processing time by model tier (cache, extractive or a tier)"
    );
    describe_histogram!(
        "cortex_stage_duration_ms",
        Unit::Milliseconds,
        "Chat pipeline stage durations"
    );
    describe_counter!(
        "cortex_config_cache_hits_total",
        "Agent configurations served from the config cache"
    );
    describe_counter!(
        "cortex_config_cache_misses_total",
        "Agent configurations loaded from the database"
    );
    describe_counter!(
        "cortex_answer_cache_lookups_total",
        "Semantic answer cache lookups by result (hit, miss)"
    );
    describe_counter!("cortex_routed_total", "Chat messages routed, by model tier");
    describe_counter!(
        "cortex_tokens_total",
        "Model tokens by direction (input, output) and model tier"
    );
    describe_counter!(
        "cortex_cost_microusd_total",
        "Model cost in millionths of a US dollar, by model tier"
    );
    describe_counter!("cortex_tool_calls_total", "Tool calls executed, by outcome");
    describe_counter!(
        "cortex_sandbox_commands_total",
        "Sandboxed commands, by outcome (ok, error, timeout, output_limit)"
    );
    describe_histogram!(
        "cortex_sandbox_command_seconds",
        Unit::Seconds,
        "Wall-clock time of one sandboxed command"
    );
    describe_counter!(
        "cortex_rate_limited_total",
        "Requests refused with 429, by limit (company, conversation, client_ips)"
    );
    describe_gauge!(
        "cortex_sse_clients",
        "Event-stream clients connected to this node"
    );
}

/// This node's running totals behind `/v1/metrics/dashboard` (the Prometheus exposition cannot
/// be read back): config loading, model routing and agent compilation.
#[derive(Default)]
pub struct Dashboard {
    config_loads: AtomicU64,
    config_hits: AtomicU64,
    config_ms: AtomicU64,
    routed: Mutex<BTreeMap<String, u64>>,
    /// Chats answered by the model (not the cache, not the extractive responder).
    model_answers: AtomicU64,
    model_ms: AtomicU64,
    with_tools: AtomicU64,
    tool_rounds: AtomicU64,
}

/// One finished chat, as the dashboard counts it.
pub struct ChatSample<'a> {
    pub config_hit: bool,
    pub config_ms: u64,
    /// The tier the router chose; `None` for a cache hit.
    pub tier: Option<&'a str>,
    /// Stage 07's time when a model answered.
    pub model_ms: Option<u64>,
    pub tool_rounds: u64,
}

impl Dashboard {
    pub fn record(&self, s: &ChatSample<'_>) {
        self.config_loads.fetch_add(1, Ordering::Relaxed);
        if s.config_hit {
            self.config_hits.fetch_add(1, Ordering::Relaxed);
        }
        self.config_ms.fetch_add(s.config_ms, Ordering::Relaxed);
        if let Some(tier) = s.tier
            && let Ok(mut routed) = self.routed.lock()
        {
            *routed.entry(tier.to_owned()).or_insert(0) += 1;
        }
        if let Some(ms) = s.model_ms {
            self.model_answers.fetch_add(1, Ordering::Relaxed);
            self.model_ms.fetch_add(ms, Ordering::Relaxed);
            if s.tool_rounds > 0 {
                self.with_tools.fetch_add(1, Ordering::Relaxed);
            }
            self.tool_rounds.fetch_add(s.tool_rounds, Ordering::Relaxed);
        }
    }

    /// The JSON of `/v1/metrics/dashboard`.
    pub fn snapshot(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        let (loads, hits, answers) = (
            get(&self.config_loads),
            get(&self.config_hits),
            get(&self.model_answers),
        );
        let by_tier = self.routed.lock().map(|m| m.clone()).unwrap_or_default();
        serde_json::json!({
            "config_loading": {
                "cache_hit_rate": round1(100.0 * ratio(hits, loads)),
                "total_loads": loads,
                "cache_hits": hits,
                "avg_duration_ms": round1(ratio(get(&self.config_ms), loads)),
            },
            "model_routing": {
                "total_routed": by_tier.values().sum::<u64>(),
                "by_tier": by_tier,
            },
            "agent_compilation": {
                "avg_llm_latency_ms": round1(ratio(get(&self.model_ms), answers)),
                "tool_call_rate": round1(100.0 * ratio(get(&self.with_tools), answers)),
                "avg_tool_rounds": round1(ratio(get(&self.tool_rounds), answers)),
            },
        })
    }
}

/// Holds a gauge one higher while alive (an open event stream).
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// `cortex_http_requests_total{method, route, status}` and `cortex_http_request_duration_ms`,
/// with the counter handles cached per route template, method and status: recording costs a
/// read lock, two map look-ups and an atomic add, not a label set built and hashed per request.
/// A route's request counters by (method label, status code).
type ByMethodStatus = HashMap<(&'static str, u16), metrics::Counter>;

#[derive(Default)]
pub struct HttpMetrics {
    counters: std::sync::RwLock<HashMap<String, ByMethodStatus>>,
    duration: std::sync::OnceLock<metrics::Histogram>,
}

/// The method as a label; anything unusual is `OTHER`, so clients cannot grow the label set.
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl HttpMetrics {
    pub fn record(
        &self,
        route: Option<&str>,
        method: &http::Method,
        status: http::StatusCode,
        started: std::time::Instant,
    ) {
        let route = route.unwrap_or("unmatched");
        let key = (method_label(method), status.as_u16());
        // The common case, a known route, method and status: a shared read lock only.
        let known = self
            .counters
            .read()
            .ok()
            .and_then(|map| map.get(route).and_then(|m| m.get(&key)).cloned());
        let counter = known.or_else(|| {
            let mut map = self.counters.write().ok()?;
            Some(
                map.entry(route.to_owned())
                    .or_default()
                    .entry(key)
                    .or_insert_with(|| {
                        metrics::counter!("cortex_http_requests_total",
                            "method" => key.0, "route" => route.to_owned(), "status" => key.1.to_string())
                    })
                    .clone(),
            )
        });
        if let Some(c) = counter {
            c.increment(1);
        }
        self.duration
            .get_or_init(|| metrics::histogram!("cortex_http_request_duration_ms"))
            .record(started.elapsed().as_secs_f64() * 1000.0);
    }
}
