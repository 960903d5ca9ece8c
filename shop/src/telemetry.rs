//! Logs and traces of a process. Logs go to stderr as text or JSON (`SHOP_LOG_FORMAT`); with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, spans are also
//! exported over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or
//! `http/json`; batching as `OTEL_BSP_*` say). How a trace crosses events and Kafka is in
//! `store::trace`.

use anyhow::{bail, Context};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;
use crate::Config;

/// Installs the process's subscriber; returns the trace provider to shut down (flush) at exit
/// when traces are exported. `role` names the service: `shop-<role>` unless `OTEL_SERVICE_NAME`.
pub fn init(config: &Config, role: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    // Both settings were checked by the parser. A log line carries only the fields each call
    // site names: never a request body, a header or a token.
    let Some(provider) = provider(role)? else {
        // Without traces the filter is the subscriber's own, not a per-layer one: a per-layer
        // filter remembers, per thread, what it refused when asked whether a callsite is on,
        // and takes that for the thread's next event (tokio-rs/tracing#2704). rdkafka asks so
        // of `librdkafka` at debug level each time it makes a client, and with a debug
        // directive in `SHOP_LOG` the next line of that thread vanished ("shop started",
        // "partitions assigned").
        tracing_subscriber::registry().with(EnvFilter::new(&config.log)).with(log_layer(config.log_format)).init();
        return Ok(None);
    };
    // `SHOP_LOG` filters the log only: traces keep every info-level span whatever it says, so
    // each layer has a filter of its own (and tracing#2704 can still eat a line now and then).
    store::trace::set_enabled(true);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("shop"));
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![
        log_layer(config.log_format).with_filter(EnvFilter::new(&config.log)).boxed(),
        otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO).boxed(),
    ];
    tracing_subscriber::registry().with(layers).init();
    tracing::info!(role, "exporting traces over OTLP");
    Ok(Some(provider))
}

/// Log lines on standard error, as text or JSON.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    }
}

fn provider(role: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
        return Ok(None);
    }
    let protocol = match set("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        None | Some("http/protobuf") => Protocol::HttpBinary,
        Some("http/json") => Protocol::HttpJson,
        Some(other) => bail!("OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json (gRPC is not built in), not {other:?}"),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT: the OTLP exporter could not be built")?;
    let service = set("OTEL_SERVICE_NAME").unwrap_or_else(|| format!("shop-{role}"));
    let resource = Resource::builder().with_service_name(service).build();
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
}
