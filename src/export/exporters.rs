//! Span and metric exporters built from the configuration, wrapped to count what they deliver.
//!
//! OTLP over http/protobuf (or http/json) uses a blocking reqwest client, the only HTTP client that
//! works on the SDK's worker threads; OTLP over gRPC uses tonic on a small tokio runtime that the
//! pipeline owns. TLS is rustls with the ring provider (no C toolchain beyond what ring needs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality as SdkTemporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::bridge::PyCallback;
use super::otlp_span_encoder::{PreparedBody, ProtoSpanEncoder};
use crate::config::{Compression, Config, OtlpConfig, Protocol, Temporality};
use crate::diagnostics::{self, Counters};

fn install_tls_provider() {
    // Process-wide for this library's own copy of rustls; an error only means it is already set.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read_file(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn http_client(cfg: &OtlpConfig) -> Result<reqwest::blocking::Client, String> {
    install_tls_provider();
    let mut builder = reqwest::blocking::Client::builder().timeout(cfg.timeout);
    if let Some(path) = &cfg.certificate {
        let pem = read_file(path, "certificate")?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("invalid certificate {}: {e}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&cfg.client_certificate, &cfg.client_key) {
        let mut pem = read_file(cert, "client certificate")?;
        pem.extend(read_file(key, "client key")?);
        let identity = reqwest::Identity::from_pem(&pem)
            .map_err(|e| format!("invalid client certificate or key: {e}"))?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Sends with the resolved headers only. The OTLP crate merges OTEL_EXPORTER_OTLP_[SIGNAL_]HEADERS
/// from the environment over the headers it is given, which would let the environment beat an
/// `instrument(headers=...)` argument; this client removes what the crate added from the
/// environment and sets the resolved headers, so the precedence of `config.rs` holds.
#[derive(Debug)]
struct ResolvedHeadersClient {
    inner: reqwest::blocking::Client,
    from_environment: Vec<http::HeaderName>,
    resolved: Vec<(http::HeaderName, http::HeaderValue)>,
    /// A body `ProtoSpanEncoder` prepared for the request being sent (see there).
    prepared: Option<Arc<PreparedBody>>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ResolvedHeadersClient {
    async fn send_bytes(
        &self,
        mut request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let headers = request.headers_mut();
        for name in &self.from_environment {
            headers.remove(name);
        }
        for (name, value) in &self.resolved {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(prepared) = &self.prepared {
            if let Some(body) = prepared.body_for(&request)? {
                *request.body_mut() = body;
            }
        }
        self.inner.send_bytes(request).await
    }
}

/// Header names the OTLP crate reads from the environment for `signal` (the signal's variable,
/// else the generic one), which it adds to every request.
fn environment_header_names(signal_variable: &str) -> Vec<String> {
    let text = std::env::var(signal_variable)
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
        .unwrap_or_default();
    crate::config::parse_key_values(&text, &mut Vec::new(), signal_variable)
        .into_iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect()
}

fn resolved_headers_client(
    cfg: &OtlpConfig,
    signal_variable: &str,
    prepared: Option<Arc<PreparedBody>>,
) -> Result<ResolvedHeadersClient, String> {
    Ok(ResolvedHeadersClient {
        prepared,
        inner: http_client(cfg)?,
        from_environment: environment_header_names(signal_variable)
            .iter()
            .filter_map(|k| http::HeaderName::from_bytes(k.as_bytes()).ok())
            .collect(),
        resolved: cfg
            .headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).ok()?,
                    v.parse().ok()?,
                ))
            })
            .collect(),
    })
}

/// The same for gRPC metadata, as a tonic interceptor.
fn resolved_metadata_interceptor(
    cfg: &OtlpConfig,
    signal_variable: &str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>
       + Clone
       + Send
       + Sync
       + 'static {
    let from_environment: Vec<String> = environment_header_names(signal_variable);
    let resolved = grpc_metadata(cfg);
    move |mut request: tonic::Request<()>| {
        let metadata = request.metadata_mut();
        for name in &from_environment {
            metadata.remove(name.as_str());
        }
        for entry in resolved.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(k, v) = entry {
                metadata.insert(k.clone(), v.clone());
            }
        }
        Ok(request)
    }
}

/// The settings every gRPC exporter (spans, metrics) takes from its signal's configuration.
fn grpc_settings<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    cfg: &OtlpConfig,
    headers_variable: &str,
) -> Result<B, String> {
    let mut b = builder
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(cfg.timeout)
        .with_interceptor(resolved_metadata_interceptor(cfg, headers_variable));
    if cfg.compression == Compression::Gzip {
        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    if let Some(tls) = grpc_tls(cfg)? {
        b = b.with_tls_config(tls);
    }
    Ok(b)
}

/// The settings every HTTP exporter (spans, metrics) takes from its signal's configuration.
fn http_settings<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    cfg: &OtlpConfig,
    headers_variable: &str,
    prepared: Option<Arc<PreparedBody>>,
) -> Result<B, String> {
    let mut b = builder
        .with_protocol(http_protocol(cfg.protocol))
        .with_endpoint(cfg.endpoint.clone())
        .with_timeout(cfg.timeout)
        .with_http_client(resolved_headers_client(cfg, headers_variable, prepared)?);
    if cfg.compression == Compression::Gzip {
        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    Ok(b)
}

fn http_protocol(protocol: Protocol) -> opentelemetry_otlp::Protocol {
    match protocol {
        Protocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    }
}

fn grpc_metadata(cfg: &OtlpConfig) -> tonic::metadata::MetadataMap {
    let mut map = tonic::metadata::MetadataMap::new();
    for (k, v) in &cfg.headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
            v.parse(),
        ) {
            map.insert(key, value);
        }
    }
    map
}

fn grpc_tls(cfg: &OtlpConfig) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    if cfg.certificate.is_none() && cfg.client_certificate.is_none() {
        return Ok(None);
    }
    install_tls_provider();
    let mut tls = tonic::transport::ClientTlsConfig::new();
    if let Some(path) = &cfg.certificate {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read_file(
            path,
            "certificate",
        )?));
    }
    if let (Some(cert), Some(key)) = (&cfg.client_certificate, &cfg.client_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read_file(cert, "client certificate")?,
            read_file(key, "client key")?,
        ));
    }
    Ok(Some(tls))
}

/// The exporters a signal can use. An enum rather than a trait object: the SDK's exporter traits
/// return `impl Future` and are not object safe.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per process
pub enum SpanSink {
    /// With an encoder for OTLP/HTTP protobuf (see `ProtoSpanEncoder`).
    Otlp(opentelemetry_otlp::SpanExporter, Option<ProtoSpanEncoder>),
    Console(opentelemetry_stdout::SpanExporter),
    /// The application's Python tracer provider (bridge delivery).
    Bridge(Arc<PyCallback>),
}

#[allow(clippy::large_enum_variant)] // built once per process
pub enum MetricSink {
    Otlp(opentelemetry_otlp::MetricExporter),
    Console(opentelemetry_stdout::MetricExporter),
}

/// Builds the OTLP span exporter; gRPC exporters must be built inside `runtime`'s context.
pub fn otlp_span_exporter(
    cfg: &OtlpConfig,
    runtime: Option<&tokio::runtime::Runtime>,
) -> Result<SpanSink, String> {
    const HEADERS_VARIABLE: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    let encoder =
        (cfg.protocol == Protocol::HttpProtobuf).then(|| ProtoSpanEncoder::new(Arc::default()));
    let prepared = encoder.as_ref().map(|e| e.body.clone());
    let exporter = match cfg.protocol {
        Protocol::Grpc => {
            let runtime = runtime.ok_or("gRPC needs the core's runtime")?;
            let _guard = runtime.enter();
            grpc_settings(
                opentelemetry_otlp::SpanExporter::builder().with_tonic(),
                cfg,
                HEADERS_VARIABLE,
            )?
            .build()
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => http_settings(
            opentelemetry_otlp::SpanExporter::builder().with_http(),
            cfg,
            HEADERS_VARIABLE,
            prepared,
        )?
        .build(),
    };
    exporter
        .map(|e| SpanSink::Otlp(e, encoder))
        .map_err(|e| format!("cannot build the OTLP span exporter: {e}"))
}

fn sdk_temporality(t: Temporality) -> SdkTemporality {
    match t {
        Temporality::Cumulative => SdkTemporality::Cumulative,
        Temporality::Delta => SdkTemporality::Delta,
        Temporality::LowMemory => SdkTemporality::LowMemory,
    }
}

pub fn otlp_metric_exporter(
    config: &Config,
    runtime: Option<&tokio::runtime::Runtime>,
) -> Result<MetricSink, String> {
    const HEADERS_VARIABLE: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
    let cfg = &config.metrics;
    let temporality = sdk_temporality(config.temporality);
    let exporter = match cfg.protocol {
        Protocol::Grpc => {
            let runtime = runtime.ok_or("gRPC needs the core's runtime")?;
            let _guard = runtime.enter();
            let builder = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_temporality(temporality);
            grpc_settings(builder, cfg, HEADERS_VARIABLE)?.build()
        }
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            let builder = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_temporality(temporality);
            http_settings(builder, cfg, HEADERS_VARIABLE, None)?.build()
        }
    };
    exporter
        .map(MetricSink::Otlp)
        .map_err(|e| format!("cannot build the OTLP metric exporter: {e}"))
}

pub fn console_metric_exporter(config: &Config) -> MetricSink {
    MetricSink::Console(
        opentelemetry_stdout::MetricExporter::builder()
            .with_temporality(sdk_temporality(config.temporality))
            .build(),
    )
}

/// Counts the spans each export delivers or loses, and keeps `in_flight` (spans handed to the batch
/// processor and not yet exported) so the pipeline can refuse a span, and count it dropped, before
/// the processor's queue would silently drop it.
#[derive(Debug)]
pub struct CountingSpanExporter {
    pub sink: SpanSink,
    pub counters: Arc<Counters>,
    pub in_flight: Arc<AtomicUsize>,
}

impl CountingSpanExporter {
    /// (spans lost, error) of an exporter that delivers or loses a batch whole.
    fn whole(n: usize, result: OTelSdkResult) -> (usize, Option<String>) {
        match result {
            Ok(()) => (0, None),
            Err(e) => (n, Some(e.to_string())),
        }
    }
}

impl SpanExporter for CountingSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        let (failed, error) = match &self.sink {
            SpanSink::Otlp(e, Some(encoder)) if encoder.prepare(&batch) => {
                drop(batch);
                // The crate sends the prepared body in place of this empty batch's.
                let result = e.export(Vec::new()).await;
                encoder.body.0.lock().take();
                Self::whole(n, result)
            }
            SpanSink::Otlp(e, _) => Self::whole(n, e.export(batch).await),
            SpanSink::Console(e) => Self::whole(n, e.export(batch).await),
            SpanSink::Bridge(b) => b.deliver_spans(&batch),
        };
        Counters::add(&self.counters.spans_exported, (n - failed) as u64);
        if failed == 0 {
            return Ok(());
        }
        Counters::add(&self.counters.spans_export_failed, failed as u64);
        let error = error.unwrap_or_default();
        diagnostics::warn("span_export", || {
            format!("exporting {failed} of {n} spans failed: {error}")
        });
        Err(OTelSdkError::InternalFailure(error))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.sink {
            SpanSink::Otlp(e, _) => e.shutdown_with_timeout(timeout),
            SpanSink::Console(e) => e.shutdown_with_timeout(timeout),
            // The application owns its provider and shuts it down itself.
            SpanSink::Bridge(_) => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match &mut self.sink {
            SpanSink::Otlp(e, encoder) => {
                e.set_resource(resource);
                if let Some(encoder) = encoder {
                    encoder.set_resource(resource);
                }
            }
            SpanSink::Console(e) => e.set_resource(resource),
            // The application's provider has its own resource.
            SpanSink::Bridge(_) => {}
        }
    }
}

pub struct CountingMetricExporter {
    pub sink: MetricSink,
    pub counters: Arc<Counters>,
}

impl PushMetricExporter for CountingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = match &self.sink {
            MetricSink::Otlp(e) => e.export(metrics).await,
            MetricSink::Console(e) => e.export(metrics).await,
        };
        match &result {
            Ok(()) => Counters::add(&self.counters.metric_exports, 1),
            Err(err) => {
                Counters::add(&self.counters.metric_exports_failed, 1);
                let err = err.to_string();
                diagnostics::warn("metric_export", move || {
                    format!("exporting metrics failed: {err}")
                });
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        match &self.sink {
            MetricSink::Otlp(e) => e.force_flush(),
            MetricSink::Console(e) => e.force_flush(),
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match &self.sink {
            MetricSink::Otlp(e) => e.shutdown_with_timeout(timeout),
            MetricSink::Console(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn temporality(&self) -> SdkTemporality {
        match &self.sink {
            MetricSink::Otlp(e) => e.temporality(),
            MetricSink::Console(e) => e.temporality(),
        }
    }
}
