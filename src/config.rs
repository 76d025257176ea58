//! Configuration of the pipeline: `instrument(...)` arguments > OTEL_* environment variables > spec defaults.
//!
//! The Python side turns each argument into the variable it overrides, so one lookup function
//! (`overrides`, then the process environment) feeds every setting and the precedence lives here only.
//! Every endpoint, header, timeout and protocol is resolved here and handed to the exporter builders
//! explicitly, so the OTLP crate's own environment reading never disagrees with this table.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterKind {
    Otlp,
    Console,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    Cumulative,
    Delta,
    LowMemory,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn env_infix(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
    fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

/// OTLP settings of one signal, fully resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub compression: Compression,
    pub certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub disabled: bool,
    pub traces_exporter: ExporterKind,
    pub metrics_exporter: ExporterKind,
    pub traces: OtlpConfig,
    pub metrics: OtlpConfig,
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: SamplerConfig,
    pub bsp_max_queue_size: usize,
    pub bsp_max_export_batch_size: usize,
    pub bsp_schedule_delay: Duration,
    pub metric_export_interval: Duration,
    pub temporality: Temporality,
    pub latency_summary_at_exit: bool,
    /// Which GenAI semantic conventions to emit (`OTEL_SEMCONV_STABILITY_OPT_IN`).
    pub semconv: SemconvMode,
    /// Problems found while parsing (invalid values that fell back to defaults), to be logged once.
    pub warnings: Vec<String>,
}

pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_millis(10_000);
pub const DEFAULT_BSP_MAX_QUEUE_SIZE: usize = 2048;
pub const DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE: usize = 512;
pub const DEFAULT_BSP_SCHEDULE_DELAY: Duration = Duration::from_millis(5000);
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_millis(60_000);
/// Ours, not a spec variable: log a latency percentile table at interpreter exit.
pub const LATENCY_SUMMARY_VAR: &str = "OTEL_INSTRUMENTATION_VLLM_LATENCY_SUMMARY";
/// The spec's opt-in list (comma-separated); `gen_ai_latest_experimental` selects the latest GenAI
/// conventions. Other categories in the list (http, database, ...) concern other instrumentations.
pub const SEMCONV_OPT_IN_VAR: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";
pub const GEN_AI_LATEST_EXPERIMENTAL: &str = "gen_ai_latest_experimental";

/// The GenAI conventions the core emits: v1.41.1 by default (the conventions ask existing
/// instrumentations not to change what they emit by default), the latest on request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SemconvMode {
    #[default]
    V1_41,
    Latest,
}

impl SemconvMode {
    /// From the value of `OTEL_SEMCONV_STABILITY_OPT_IN`: entries are trimmed and compared exactly,
    /// as opentelemetry-instrumentation's own reader (`_semconv.py`) does.
    pub fn from_opt_in(value: Option<&str>) -> SemconvMode {
        let latest = value
            .unwrap_or("")
            .split(',')
            .any(|entry| entry.trim() == GEN_AI_LATEST_EXPERIMENTAL);
        if latest {
            SemconvMode::Latest
        } else {
            SemconvMode::V1_41
        }
    }
}

impl Config {
    /// Resolves the configuration from `overrides` (argument values, keyed by the variable they
    /// override) and then the process environment.
    pub fn from_overrides_and_env(overrides: &HashMap<String, String>) -> Config {
        Config::resolve(|name| {
            overrides
                .get(name)
                .cloned()
                .or_else(|| std::env::var(name).ok())
        })
    }

    /// Resolves the configuration from a lookup function; empty values count as unset (spec).
    pub fn resolve(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let mut p = Parser {
            lookup: &|name: &str| {
                lookup(name)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            },
            warnings: Vec::new(),
        };
        let disabled = p.bool("OTEL_SDK_DISABLED", false);
        let traces_exporter = p.exporter("OTEL_TRACES_EXPORTER");
        let metrics_exporter = p.exporter("OTEL_METRICS_EXPORTER");
        let traces = p.otlp(Signal::Traces);
        let metrics = p.otlp(Signal::Metrics);
        let service_name = p.get("OTEL_SERVICE_NAME");
        let resource_attributes = p
            .get("OTEL_RESOURCE_ATTRIBUTES")
            .map(|v| parse_key_values(&v, &mut p.warnings, "OTEL_RESOURCE_ATTRIBUTES"))
            .unwrap_or_default();
        let sampler = p.sampler();
        let bsp_max_queue_size = p.positive("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_BSP_MAX_QUEUE_SIZE);
        let mut bsp_max_export_batch_size = p.positive(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            DEFAULT_BSP_MAX_EXPORT_BATCH_SIZE,
        );
        if bsp_max_export_batch_size > bsp_max_queue_size {
            // Spec: the batch size must be less than or equal to the queue size.
            bsp_max_export_batch_size = bsp_max_queue_size;
        }
        let bsp_schedule_delay = p.millis("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_BSP_SCHEDULE_DELAY);
        let metric_export_interval = p.millis(
            "OTEL_METRIC_EXPORT_INTERVAL",
            DEFAULT_METRIC_EXPORT_INTERVAL,
        );
        let temporality = match p
            .get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("cumulative") => Temporality::Cumulative,
            Some("delta") => Temporality::Delta,
            Some("lowmemory") => Temporality::LowMemory,
            Some(other) => {
                p.warn(
                    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                    other,
                    "cumulative",
                );
                Temporality::Cumulative
            }
        };
        let latency_summary_at_exit = p.bool(LATENCY_SUMMARY_VAR, false);
        let semconv = SemconvMode::from_opt_in(p.get(SEMCONV_OPT_IN_VAR).as_deref());
        Config {
            disabled,
            traces_exporter,
            metrics_exporter,
            traces,
            metrics,
            service_name,
            resource_attributes,
            sampler,
            bsp_max_queue_size,
            bsp_max_export_batch_size,
            bsp_schedule_delay,
            metric_export_interval,
            temporality,
            latency_summary_at_exit,
            semconv,
            warnings: p.warnings,
        }
    }
}

struct Parser<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    fn warn(&mut self, name: &str, value: &str, fallback: &str) {
        self.warnings.push(format!(
            "invalid value {value:?} for {name}; using {fallback}"
        ));
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => default,
            Some("true") => true,
            Some("false") => false,
            Some(other) => {
                self.warn(name, other, &default.to_string());
                default
            }
        }
    }

    fn positive(&mut self, name: &str, default: usize) -> usize {
        match self.get(name) {
            None => default,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    self.warn(name, &v, &default.to_string());
                    default
                }
            },
        }
    }

    fn millis(&mut self, name: &str, default: Duration) -> Duration {
        match self.get(name) {
            None => default,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    self.warn(name, &v, &format!("{} ms", default.as_millis()));
                    default
                }
            },
        }
    }

    fn exporter(&mut self, name: &str) -> ExporterKind {
        // Only the first exporter of a comma-separated list is used; the core has one pipeline.
        let value = self.get(name).map(|v| v.to_ascii_lowercase());
        match value
            .as_deref()
            .map(|v| v.split(',').next().unwrap_or("").trim())
        {
            None | Some("otlp") => ExporterKind::Otlp,
            Some("console") => ExporterKind::Console,
            Some("none") => ExporterKind::None,
            Some(other) => {
                let other = other.to_string();
                self.warn(name, &other, "otlp");
                ExporterKind::Otlp
            }
        }
    }

    /// The signal-specific variable if set, else the generic one.
    fn signal_or_generic(&self, signal: Signal, suffix: &str) -> Option<String> {
        self.get(&format!(
            "OTEL_EXPORTER_OTLP_{}_{suffix}",
            signal.env_infix()
        ))
        .or_else(|| self.get(&format!("OTEL_EXPORTER_OTLP_{suffix}")))
    }

    fn otlp(&mut self, signal: Signal) -> OtlpConfig {
        let infix = signal.env_infix();
        let protocol = match self
            .signal_or_generic(signal, "PROTOCOL")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("http/json") => Protocol::HttpJson,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                let other = other.to_string();
                self.warn(
                    &format!("OTEL_EXPORTER_OTLP_{infix}_PROTOCOL"),
                    &other,
                    "http/protobuf",
                );
                Protocol::HttpProtobuf
            }
        };
        // A signal-specific endpoint is used as is; the generic one is a base URL to which HTTP
        // appends the signal's path (spec, protocol/exporter.md).
        let endpoint = match self.get(&format!("OTEL_EXPORTER_OTLP_{infix}_ENDPOINT")) {
            Some(url) => url,
            None => {
                let base = self.get("OTEL_EXPORTER_OTLP_ENDPOINT");
                match protocol {
                    Protocol::Grpc => base.unwrap_or_else(|| DEFAULT_GRPC_ENDPOINT.to_string()),
                    _ => {
                        let base = base.unwrap_or_else(|| DEFAULT_HTTP_ENDPOINT.to_string());
                        format!("{}{}", base.trim_end_matches('/'), signal.http_path())
                    }
                }
            }
        };
        let headers_var =
            format!("OTEL_EXPORTER_OTLP_{infix}_HEADERS (or OTEL_EXPORTER_OTLP_HEADERS)");
        let headers = self
            .signal_or_generic(signal, "HEADERS")
            .map(|v| parse_key_values(&v, &mut self.warnings, &headers_var))
            .unwrap_or_default();
        let timeout = match self.signal_or_generic(signal, "TIMEOUT") {
            None => DEFAULT_OTLP_TIMEOUT,
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    self.warn(
                        &format!("OTEL_EXPORTER_OTLP_{infix}_TIMEOUT"),
                        &v,
                        "10000 ms",
                    );
                    DEFAULT_OTLP_TIMEOUT
                }
            },
        };
        let compression = match self
            .signal_or_generic(signal, "COMPRESSION")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("none") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some(other) => {
                let other = other.to_string();
                self.warn(
                    &format!("OTEL_EXPORTER_OTLP_{infix}_COMPRESSION"),
                    &other,
                    "none",
                );
                Compression::None
            }
        };
        OtlpConfig {
            endpoint,
            protocol,
            headers,
            timeout,
            compression,
            certificate: self
                .signal_or_generic(signal, "CERTIFICATE")
                .map(PathBuf::from),
            client_key: self
                .signal_or_generic(signal, "CLIENT_KEY")
                .map(PathBuf::from),
            client_certificate: self
                .signal_or_generic(signal, "CLIENT_CERTIFICATE")
                .map(PathBuf::from),
        }
    }

    fn sampler(&mut self) -> SamplerConfig {
        let arg = self.get("OTEL_TRACES_SAMPLER_ARG");
        let ratio = match arg.as_deref().map(str::parse::<f64>) {
            None => 1.0,
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => r,
            Some(_) => {
                let v = arg.clone().unwrap_or_default();
                self.warn("OTEL_TRACES_SAMPLER_ARG", &v, "1.0");
                1.0
            }
        };
        match self
            .get("OTEL_TRACES_SAMPLER")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("parentbased_always_on") => SamplerConfig::ParentBasedAlwaysOn,
            Some("always_on") => SamplerConfig::AlwaysOn,
            Some("always_off") => SamplerConfig::AlwaysOff,
            Some("traceidratio") => SamplerConfig::TraceIdRatio(ratio),
            Some("parentbased_always_off") => SamplerConfig::ParentBasedAlwaysOff,
            Some("parentbased_traceidratio") => SamplerConfig::ParentBasedTraceIdRatio(ratio),
            Some(other) => {
                let other = other.to_string();
                self.warn("OTEL_TRACES_SAMPLER", &other, "parentbased_always_on");
                SamplerConfig::ParentBasedAlwaysOn
            }
        }
    }
}

/// Parses `k1=v1,k2=v2` (W3C baggage style, as OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES
/// use it); values are percent-decoded. Malformed entries are skipped with a warning that names
/// the variable but never the value, since header values carry credentials.
pub fn parse_key_values(
    text: &str,
    warnings: &mut Vec<String>,
    variable: &str,
) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for entry in text.split(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match entry.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                pairs.push((percent_decode(k.trim()), percent_decode(v.trim())));
            }
            _ => warnings.push(format!("skipped a malformed entry in {variable}")),
        }
    }
    pairs
}

/// Percent-decoding of `%XX` sequences; invalid sequences are kept as they are. Hand-written because
/// pulling a URL crate into the wheel for these few lines is not worth it.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::resolve(|k| map.get(k).cloned())
    }

    #[test]
    fn spec_defaults() {
        let c = resolve(&[]);
        assert!(!c.disabled);
        assert_eq!(c.traces_exporter, ExporterKind::Otlp);
        assert_eq!(c.metrics_exporter, ExporterKind::Otlp);
        assert_eq!(c.traces.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.traces.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.metrics.endpoint, "http://localhost:4318/v1/metrics");
        assert_eq!(c.traces.timeout, Duration::from_secs(10));
        assert_eq!(c.traces.compression, Compression::None);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.bsp_max_queue_size, 2048);
        assert_eq!(c.bsp_max_export_batch_size, 512);
        assert_eq!(c.bsp_schedule_delay, Duration::from_secs(5));
        assert_eq!(c.metric_export_interval, Duration::from_secs(60));
        assert_eq!(c.temporality, Temporality::Cumulative);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn semconv_opt_in_is_a_list_with_exact_entries() {
        assert_eq!(resolve(&[]).semconv, SemconvMode::V1_41);
        let mode = |v: &str| resolve(&[(SEMCONV_OPT_IN_VAR, v)]).semconv;
        assert_eq!(mode("gen_ai_latest_experimental"), SemconvMode::Latest);
        assert_eq!(
            mode("http, gen_ai_latest_experimental ,database"),
            SemconvMode::Latest
        );
        assert_eq!(mode("http,database/dup"), SemconvMode::V1_41);
        assert_eq!(mode("gen_ai"), SemconvMode::V1_41);
        assert_eq!(mode("GEN_AI_LATEST_EXPERIMENTAL"), SemconvMode::V1_41);
    }

    #[test]
    fn generic_endpoint_is_a_base_for_http_and_verbatim_for_grpc() {
        let c = resolve(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(c.traces.endpoint, "http://collector:4318/v1/traces");
        let c = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.traces.protocol, Protocol::Grpc);
        assert_eq!(c.metrics.endpoint, "http://collector:4317");
        assert_eq!(
            resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
                .traces
                .endpoint,
            DEFAULT_GRPC_ENDPOINT
        );
    }

    #[test]
    fn signal_specific_beats_generic() {
        let c = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ]);
        assert_eq!(c.traces.endpoint, "http://traces:9999/custom");
        assert_eq!(c.traces.protocol, Protocol::Grpc);
        assert_eq!(c.metrics.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.metrics.endpoint, "http://generic:4318/v1/metrics");
        assert_eq!(c.traces.headers, vec![("a".into(), "1".into())]);
        assert_eq!(c.metrics.headers, vec![("b".into(), "2".into())]);
        assert_eq!(c.traces.timeout, Duration::from_millis(700));
        assert_eq!(c.metrics.timeout, Duration::from_millis(2500));
        assert_eq!(c.traces.compression, Compression::None);
        assert_eq!(c.metrics.compression, Compression::Gzip);
    }

    #[test]
    fn overrides_beat_environment() {
        let mut overrides = HashMap::new();
        overrides.insert("OTEL_SERVICE_NAME".to_string(), "from-argument".to_string());
        // A variable no test sets, so the process environment cannot interfere.
        let c = Config::resolve(|k| {
            overrides
                .get(k)
                .cloned()
                .or_else(|| (k == "OTEL_SERVICE_NAME").then(|| "from-env".to_string()))
        });
        assert_eq!(c.service_name.as_deref(), Some("from-argument"));
    }

    #[test]
    fn headers_and_resource_attributes_are_percent_decoded() {
        let c = resolve(&[
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=se%3Dcret , x-tenant=a%20b,broken",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.instance.id=i%2D1",
            ),
        ]);
        assert_eq!(
            c.traces.headers,
            vec![
                ("api-key".into(), "se=cret".into()),
                ("x-tenant".into(), "a b".into())
            ]
        );
        assert_eq!(
            c.resource_attributes,
            vec![
                ("deployment.environment".into(), "prod".into()),
                ("service.instance.id".into(), "i-1".into())
            ]
        );
        // The malformed entry is reported without echoing the header text.
        assert_eq!(c.warnings.len(), 2);
        assert!(c.warnings.iter().all(|w| !w.contains("cret")));
    }

    #[test]
    fn exporters_sampler_and_batch_settings() {
        let c = resolve(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
        ]);
        assert!(c.disabled);
        assert_eq!(c.traces_exporter, ExporterKind::Console);
        assert_eq!(c.metrics_exporter, ExporterKind::None);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        assert_eq!(c.bsp_max_queue_size, 100);
        assert_eq!(
            c.bsp_max_export_batch_size, 100,
            "batch size is capped by the queue size"
        );
        assert_eq!(c.bsp_schedule_delay, Duration::from_millis(250));
        assert_eq!(c.metric_export_interval, Duration::from_secs(1));
        assert_eq!(c.temporality, Temporality::Delta);
    }

    #[test]
    fn invalid_values_fall_back_with_a_warning() {
        let c = resolve(&[
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_TRACES_SAMPLER", "jaeger_remote"),
            ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift"),
            ("OTEL_SDK_DISABLED", "yes"),
        ]);
        assert_eq!(c.traces_exporter, ExporterKind::Otlp);
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.bsp_max_queue_size, DEFAULT_BSP_MAX_QUEUE_SIZE);
        assert_eq!(c.traces.timeout, DEFAULT_OTLP_TIMEOUT);
        assert_eq!(c.traces.protocol, Protocol::HttpProtobuf);
        assert!(!c.disabled);
        assert_eq!(c.warnings.len(), 9, "{:?}", c.warnings);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = resolve(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_SERVICE_NAME", "  "),
        ]);
        assert_eq!(c.traces.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(c.service_name, None);
    }
}
