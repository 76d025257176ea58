//! Span and metric exporters built from the configuration, wrapped to count what they deliver.
//!
//! OTLP over http/protobuf (or http/json) uses a blocking reqwest client, the only HTTP client that
//! works on the SDK's worker threads; OTLP over gRPC uses tonic on a small tokio runtime that the
//! pipeline owns. TLS is rustls with the ring provider (no C toolchain beyond what ring needs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, Value};
use opentelemetry_http::Bytes;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::Temporality as SdkTemporality;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use parking_lot::Mutex;

use crate::bridge::PyCallback;
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

// ---- OTLP/HTTP protobuf span encoding ---------------------------------------------------------
//
// Deliberately not the OTLP crate's encoder: it converts every span into owned prost structs (a
// String per attribute key and string value, a Vec per id) and then walks them twice (length, then
// bytes); that, with the allocations and frees, was over half of the span exporter thread's CPU
// (about 2-3 µs per span). This writes the same `ExportTraceServiceRequest` bytes straight from the
// `SpanData` (byte for byte what prost writes: fields in tag order as prost writes them, proto3 defaults
// omitted, oneof members always written; a test compares the two). The OTLP crate still sends the
// request (endpoint, headers, retries, throttling, timeout, partial success): `export` hands it
// an empty batch and the prepared body, which `ResolvedHeadersClient` puts in place of the crate's
// body. A batch this encoder does not cover (events, links, a value type it does not know) goes the
// crate's way unchanged.

/// The OTLP crate's default limit on a request body (`DEFAULT_MAX_REQUEST_BODY_SIZE`).
const MAX_REQUEST_BODY_SIZE: usize = 64 * 1024 * 1024;

/// Where `export` leaves a prepared body for the HTTP client of the same exporter: the encoded
/// request, and whether it has been compressed yet.
#[derive(Debug, Default)]
pub struct PreparedBody(Mutex<Option<(Bytes, bool)>>);

impl PreparedBody {
    /// The prepared body for `request`, compressed as the crate chose for it (its
    /// Content-Encoding: the crate decides compression, from the configuration and, for want of a
    /// way to say "none", the environment), or `None` when nothing was prepared.
    fn body_for(
        &self,
        request: &opentelemetry_http::Request<Bytes>,
    ) -> Result<Option<Bytes>, opentelemetry_http::HttpError> {
        let mut slot = self.0.lock();
        let Some((body, compressed)) = slot.as_mut() else {
            return Ok(None);
        };
        match request.headers().get(http::header::CONTENT_ENCODING) {
            None => {}
            Some(e) if e.as_bytes().eq_ignore_ascii_case(b"gzip") && *compressed => {}
            Some(e) if e.as_bytes().eq_ignore_ascii_case(b"gzip") => {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(body)?;
                *body = Bytes::from(encoder.finish()?);
                *compressed = true;
            }
            Some(other) => {
                return Err(format!("unsupported Content-Encoding {other:?}").into());
            }
        }
        Ok(Some(body.clone()))
    }
}

#[derive(Debug)]
pub struct ProtoSpanEncoder {
    body: Arc<PreparedBody>,
    /// The encoded `Resource` message and the resource's schema URL.
    resource: Vec<u8>,
    resource_schema_url: String,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A string or bytes field, omitted when empty (proto3 default).
fn put_nonempty(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_bytes_field(out, field, bytes);
    }
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, 0);
        put_varint(out, v);
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Length of a length-delimited field (tag below 16) holding `len` bytes.
fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Length of the `AnyValue` message of `value`; `None` for a type not covered.
fn any_value_len(value: &Value) -> Option<usize> {
    Some(match value {
        Value::Bool(_) => 2,
        Value::I64(i) => 1 + varint_len(*i as u64),
        Value::F64(_) => 9,
        Value::String(s) => delimited_len(s.as_str().len()),
        Value::Array(array) => delimited_len(array_value_len(array)?),
        _ => return None,
    })
}

/// Length of the `ArrayValue` message of `array`.
fn array_value_len(array: &Array) -> Option<usize> {
    Some(match array {
        Array::Bool(v) => v.len() * delimited_len(2),
        Array::I64(v) => v
            .iter()
            .map(|i| delimited_len(1 + varint_len(*i as u64)))
            .sum(),
        Array::F64(v) => v.len() * delimited_len(9),
        Array::String(v) => v
            .iter()
            .map(|s| delimited_len(delimited_len(s.as_str().len())))
            .sum(),
        _ => return None,
    })
}

/// The members of an `AnyValue` (its length is known to be `any_value_len`).
fn put_any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            put_tag(out, 2, 0);
            put_varint(out, u64::from(*b));
        }
        Value::I64(i) => {
            put_tag(out, 3, 0);
            put_varint(out, *i as u64);
        }
        Value::F64(f) => {
            put_tag(out, 4, 1);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::String(s) => put_bytes_field(out, 1, s.as_str().as_bytes()),
        Value::Array(array) => {
            put_tag(out, 5, 2);
            put_varint(out, array_value_len(array).unwrap_or(0) as u64);
            let item = |out: &mut Vec<u8>, v: Value| {
                put_tag(out, 1, 2);
                put_varint(out, any_value_len(&v).unwrap_or(0) as u64);
                put_any_value(out, &v);
            };
            match array {
                Array::Bool(v) => v.iter().for_each(|x| item(out, Value::Bool(*x))),
                Array::I64(v) => v.iter().for_each(|x| item(out, Value::I64(*x))),
                Array::F64(v) => v.iter().for_each(|x| item(out, Value::F64(*x))),
                Array::String(v) => v.iter().for_each(|x| {
                    put_tag(out, 1, 2);
                    put_varint(out, delimited_len(x.as_str().len()) as u64);
                    put_bytes_field(out, 1, x.as_str().as_bytes());
                }),
                _ => {}
            }
        }
        _ => {}
    }
}

/// Repeated `KeyValue` attributes at `field`; false (with `out` partly written) when a value's
/// type is not covered.
fn put_attributes<'a>(
    out: &mut Vec<u8>,
    field: u32,
    attributes: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> bool {
    for (key, value) in attributes {
        let Some(value_len) = any_value_len(value) else {
            return false;
        };
        let key_len = if key.is_empty() {
            0
        } else {
            delimited_len(key.len())
        };
        put_tag(out, field, 2);
        put_varint(out, (key_len + delimited_len(value_len)) as u64);
        put_nonempty(out, 1, key.as_bytes());
        put_tag(out, 2, 2);
        put_varint(out, value_len as u64);
        put_any_value(out, value);
    }
    true
}

fn unix_nanos_of(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

fn put_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) -> bool {
    let mut inner = Vec::new();
    put_nonempty(&mut inner, 1, scope.name().as_bytes());
    put_nonempty(
        &mut inner,
        2,
        scope.version().unwrap_or_default().as_bytes(),
    );
    if !put_attributes(
        &mut inner,
        3,
        scope.attributes().map(|kv| (kv.key.as_str(), &kv.value)),
    ) {
        return false;
    }
    put_bytes_field(out, 1, &inner);
    true
}

/// One `Span` message (without its tag and length); false for a span this encoder does not cover.
fn put_span(out: &mut Vec<u8>, span: &SpanData) -> bool {
    if !(span.events.is_empty() && span.links.is_empty()) {
        return false;
    }
    let cx = &span.span_context;
    put_bytes_field(out, 1, &cx.trace_id().to_bytes());
    put_bytes_field(out, 2, &cx.span_id().to_bytes());
    put_nonempty(out, 3, cx.trace_state().header().as_bytes());
    if span.parent_span_id != SpanId::INVALID {
        put_bytes_field(out, 4, &span.parent_span_id.to_bytes());
    }
    put_nonempty(out, 5, span.name.as_bytes());
    let kind = match span.span_kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    put_uint(out, 6, kind);
    put_fixed64(out, 7, unix_nanos_of(span.start_time));
    put_fixed64(out, 8, unix_nanos_of(span.end_time));
    if !put_attributes(
        out,
        9,
        span.attributes
            .iter()
            .map(|kv| (kv.key.as_str(), &kv.value)),
    ) {
        return false;
    }
    put_uint(out, 10, u64::from(span.dropped_attributes_count));
    put_uint(out, 12, u64::from(span.events.dropped_count));
    put_uint(out, 14, u64::from(span.links.dropped_count));
    // Status { message = 2, code = 3 }: always present, its members only when not default.
    let (message, code): (&str, u64) = match &span.status {
        Status::Error { description } => (description, 2),
        Status::Ok => ("", 1),
        Status::Unset => ("", 0),
    };
    let message_len = if message.is_empty() {
        0
    } else {
        delimited_len(message.len())
    };
    put_tag(out, 15, 2);
    put_varint(out, (message_len + if code != 0 { 2 } else { 0 }) as u64);
    put_nonempty(out, 2, message.as_bytes());
    put_uint(out, 3, code);
    // SpanFlags (tag 16, written last: prost writes fields in tag order): the trace flags, plus "has is_remote" and "is_remote" of the parent.
    let flags = u32::from(cx.trace_flags().to_u8())
        | 0x100
        | if span.parent_span_is_remote { 0x200 } else { 0 };
    put_tag(out, 16, 5);
    out.extend_from_slice(&flags.to_le_bytes());
    true
}

impl ProtoSpanEncoder {
    fn new(body: Arc<PreparedBody>) -> Self {
        let mut encoder = ProtoSpanEncoder {
            body,
            resource: Vec::new(),
            resource_schema_url: String::new(),
        };
        encoder.set_resource(&Resource::builder_empty().build());
        encoder
    }

    fn set_resource(&mut self, resource: &Resource) {
        let mut out = Vec::new();
        // The same attributes in the same order as the OTLP crate's `resource_attributes`.
        put_attributes(&mut out, 1, resource.iter().map(|(k, v)| (k.as_str(), v)));
        self.resource = out;
        self.resource_schema_url = resource.schema_url().unwrap_or_default().to_string();
    }

    /// The `ExportTraceServiceRequest` of `batch`, or `None` when a span is not covered.
    pub fn encode(&self, batch: &[SpanData]) -> Option<Bytes> {
        let Some(first) = batch.first() else {
            // No spans: the resource alone (the crate writes no ScopeSpans either).
            let mut resource_spans = Vec::new();
            put_bytes_field(&mut resource_spans, 1, &self.resource);
            put_nonempty(&mut resource_spans, 3, self.resource_schema_url.as_bytes());
            let mut body = Vec::new();
            put_bytes_field(&mut body, 1, &resource_spans);
            return Some(body.into());
        };
        let scope = &first.instrumentation_scope;
        if batch.iter().any(|s| &s.instrumentation_scope != scope) {
            return self.encode_scopes(batch).map(Bytes::from);
        }
        // One scope (the core's own): the spans are written once, into the body itself, behind a
        // gap that then takes the enclosing messages' heads, whose lengths are known only then.
        // No second buffer, no copy of the spans (each buffer of this size is fresh memory from
        // the kernel, whose page faults cost more than the encoding).
        let mut resource = Vec::with_capacity(self.resource.len() + 4);
        put_bytes_field(&mut resource, 1, &self.resource);
        let mut scope_head = Vec::new();
        if !put_scope(&mut scope_head, scope) {
            return None;
        }
        let gap = resource.len() + scope_head.len() + 2 * (1 + 10);
        let mut scratch = Vec::with_capacity(1024);
        if !put_span(&mut scratch, first) {
            return None;
        }
        let mut body = Vec::with_capacity(gap + (scratch.len() + 8) * batch.len() * 9 / 8 + 64);
        body.resize(gap, 0);
        put_bytes_field(&mut body, 2, &scratch);
        for span in &batch[1..] {
            scratch.clear();
            if !put_span(&mut scratch, span) {
                return None;
            }
            put_bytes_field(&mut body, 2, &scratch);
        }
        let spans_len = body.len() - gap;
        let scope_tail_start = body.len();
        put_nonempty(
            &mut body,
            3,
            scope.schema_url().unwrap_or_default().as_bytes(),
        );
        let scope_spans_len = scope_head.len() + spans_len + (body.len() - scope_tail_start);
        let resource_tail_start = body.len();
        put_nonempty(&mut body, 3, self.resource_schema_url.as_bytes());
        let resource_spans_len = resource.len()
            + 1
            + varint_len(scope_spans_len as u64)
            + scope_spans_len
            + (body.len() - resource_tail_start);
        let mut head = Vec::with_capacity(gap);
        put_tag(&mut head, 1, 2);
        put_varint(&mut head, resource_spans_len as u64);
        head.extend_from_slice(&resource);
        put_tag(&mut head, 2, 2);
        put_varint(&mut head, scope_spans_len as u64);
        head.extend_from_slice(&scope_head);
        let start = gap - head.len();
        body[start..gap].copy_from_slice(&head);
        Some(Bytes::from(body).slice(start..))
    }

    /// `encode` for spans of several scopes: grouped by scope in order of first appearance, as the
    /// OTLP crate groups them.
    fn encode_scopes(&self, batch: &[SpanData]) -> Option<Vec<u8>> {
        let mut scopes: Vec<(&InstrumentationScope, Vec<u8>)> = Vec::new();
        let mut scratch = Vec::with_capacity(1024);
        for span in batch {
            let i = match scopes
                .iter()
                .position(|(s, _)| *s == &span.instrumentation_scope)
            {
                Some(i) => i,
                None => {
                    scopes.push((&span.instrumentation_scope, Vec::new()));
                    scopes.len() - 1
                }
            };
            scratch.clear();
            if !put_span(&mut scratch, span) {
                return None;
            }
            put_bytes_field(&mut scopes[i].1, 2, &scratch);
        }
        let mut resource_spans = Vec::new();
        put_bytes_field(&mut resource_spans, 1, &self.resource);
        for (scope, spans) in &scopes {
            let mut head = Vec::new();
            if !put_scope(&mut head, scope) {
                return None;
            }
            let mut tail = Vec::new();
            put_nonempty(
                &mut tail,
                3,
                scope.schema_url().unwrap_or_default().as_bytes(),
            );
            put_tag(&mut resource_spans, 2, 2);
            put_varint(
                &mut resource_spans,
                (head.len() + spans.len() + tail.len()) as u64,
            );
            resource_spans.extend_from_slice(&head);
            resource_spans.extend_from_slice(spans);
            resource_spans.extend_from_slice(&tail);
        }
        put_nonempty(&mut resource_spans, 3, self.resource_schema_url.as_bytes());
        let mut body = Vec::with_capacity(resource_spans.len() + 8);
        put_bytes_field(&mut body, 1, &resource_spans);
        Some(body)
    }

    /// Encodes `batch` and leaves it for the client; false when the crate must encode this batch
    /// itself.
    fn prepare(&self, batch: &[SpanData]) -> bool {
        // Over the limit, the crate refuses the batch with its own error: it gets the batch.
        match self.encode(batch) {
            Some(body) if body.len() <= MAX_REQUEST_BODY_SIZE => {
                *self.body.0.lock() = Some((body, false));
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message;
    use std::borrow::Cow;
    use std::time::{Duration, UNIX_EPOCH};

    fn span(i: u64, scope: &InstrumentationScope) -> SpanData {
        let kinds = [
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let statuses = [
            Status::Unset,
            Status::Ok,
            Status::error("ValueError"),
            Status::error(""),
        ];
        let state = if i.is_multiple_of(3) {
            TraceState::from_key_value([("vendor", "x1")]).unwrap()
        } else {
            TraceState::NONE
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(0x0123_4567_89ab_cdef_u128 << 64 | u128::from(i + 1)),
                SpanId::from(i * 0x1_0000_0001 + 7),
                TraceFlags::new((i % 2) as u8),
                false,
                state,
            ),
            parent_span_id: if i.is_multiple_of(4) {
                SpanId::INVALID
            } else {
                SpanId::from(i + 99)
            },
            parent_span_is_remote: i % 5 == 1,
            span_kind: kinds[i as usize % kinds.len()].clone(),
            name: if i % 7 == 6 {
                Cow::Borrowed("")
            } else {
                Cow::Owned(format!("text_completion model-{i}"))
            },
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + i),
            end_time: if i % 6 == 5 {
                UNIX_EPOCH
            } else {
                UNIX_EPOCH + Duration::from_nanos(1_700_000_000_250_000_000 + i * 1000)
            },
            attributes: vec![
                KeyValue::new("gen_ai.operation.name", "text_completion"),
                KeyValue::new("gen_ai.request.model", Arc::<str>::from("m")),
                KeyValue::new("gen_ai.response.id", format!("{i}")),
                KeyValue::new("empty", ""),
                KeyValue::new("n", i as i64 - 3),
                KeyValue::new("zero", 0_i64),
                KeyValue::new("min", i64::MIN),
                KeyValue::new("f", 0.25 * i as f64),
                KeyValue::new("fzero", 0.0),
                KeyValue::new("nan", f64::NAN),
                KeyValue::new("b", i.is_multiple_of(2)),
                KeyValue::new("bf", false),
                KeyValue::new(
                    "reasons",
                    Value::Array(Array::String(vec!["length".into(), "".into()])),
                ),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, -1, 300]))),
                KeyValue::new("floats", Value::Array(Array::F64(vec![1.5, 0.0]))),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("none", Value::Array(Array::String(vec![]))),
                KeyValue::new("long", "x".repeat(300 + i as usize)),
            ],
            dropped_attributes_count: (i % 3) as u32,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: statuses[i as usize % statuses.len()].clone(),
            instrumentation_scope: scope.clone(),
        }
    }

    fn prost_body(batch: Vec<SpanData>, resource: &Resource) -> Vec<u8> {
        let resource = ResourceAttributesWithSchema::from(resource);
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &resource),
        }
        .encode_to_vec()
    }

    #[test]
    fn encodes_the_same_bytes_as_the_otlp_crate() {
        let ours = InstrumentationScope::builder("opentelemetry.instrumentation.vllm")
            .with_version("0.1.0")
            .build();
        let other = InstrumentationScope::builder("other")
            .with_schema_url("https://opentelemetry.io/schemas/1.0.0")
            .with_attributes([KeyValue::new("scope.attr", 1_i64)])
            .build();
        let resources = [
            Resource::builder_empty().build(),
            Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "svc"),
                    KeyValue::new("telemetry.sdk.language", "rust"),
                    KeyValue::new("host.count", 3_i64),
                ])
                .with_schema_url(
                    [KeyValue::new("a", "b")],
                    "https://opentelemetry.io/schemas/1.2.0",
                )
                .build(),
        ];
        for resource in &resources {
            let mut encoder = ProtoSpanEncoder::new(Arc::default());
            encoder.set_resource(resource);
            for n in [0_u64, 1, 2, 17, 600] {
                let batch: Vec<SpanData> = (0..n)
                    .map(|i| span(i, if i % 5 == 3 { &other } else { &ours }))
                    .collect();
                let expected = prost_body(batch.clone(), resource);
                assert_eq!(encoder.encode(&batch).unwrap(), expected, "{n} spans");
            }
            // One scope (the single-buffer path), also one with a schema URL and attributes.
            for scope in [&ours, &other] {
                for n in [1_u64, 2, 17, 600] {
                    let batch: Vec<SpanData> = (0..n).map(|i| span(i, scope)).collect();
                    let expected = prost_body(batch.clone(), resource);
                    assert_eq!(encoder.encode(&batch).unwrap(), expected, "{n} spans");
                }
            }
        }
    }

    #[test]
    fn spans_with_events_or_links_are_left_to_the_otlp_crate() {
        let scope = InstrumentationScope::builder("s").build();
        let mut with_event = span(1, &scope);
        with_event
            .events
            .events
            .push(opentelemetry::trace::Event::new("e", UNIX_EPOCH, vec![], 0));
        assert!(ProtoSpanEncoder::new(Arc::default())
            .encode(&[span(0, &scope), with_event])
            .is_none());
    }

    #[test]
    fn the_prepared_body_is_compressed_as_the_request_says() {
        let encoder = ProtoSpanEncoder::new(Arc::default());
        let scope = InstrumentationScope::builder("s").build();
        assert!(encoder.prepare(&[span(0, &scope)]));
        let expected = prost_body(vec![span(0, &scope)], &Resource::builder_empty().build());
        let request = |encoding: Option<&str>| {
            let mut b = http::Request::builder();
            if let Some(e) = encoding {
                b = b.header("Content-Encoding", e);
            }
            b.body(Bytes::new()).unwrap()
        };
        let plain = encoder.body.body_for(&request(None)).unwrap().unwrap();
        assert_eq!(plain.as_ref(), &expected[..]);
        for _ in 0..2 {
            let gzipped = encoder
                .body
                .body_for(&request(Some("gzip")))
                .unwrap()
                .unwrap();
            let mut unzipped = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&gzipped[..])
                .read_to_end(&mut unzipped)
                .unwrap();
            assert_eq!(unzipped, expected);
        }
        assert!(encoder.body.body_for(&request(Some("zstd"))).is_err());
        encoder.body.0.lock().take();
        assert!(encoder.body.body_for(&request(None)).unwrap().is_none());
    }
}
