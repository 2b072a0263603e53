//! The `veneer` binary: logging (and, with the `otlp` feature, trace export), then the CLI.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

// mimalloc: glibc malloc/free were 17 % of the gateway's CPU under load (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A current-thread runtime here; `serve` adds one more per core for its listener
    // (`server::listener::serve_on_threads`): faster than a work-stealing pool (README,
    // Performance).
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    // One crypto provider for every rustls user in the process (STACK.md trap 1).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // VENEER_LOG_FORMAT=json: one JSON object per line, for log pipelines.
    let json = std::env::var("VENEER_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (text_layer, json_layer) = if json {
        (None, Some(tracing_subscriber::fmt::layer().json().with_current_span(false).with_writer(std::io::stderr)))
    } else {
        // Colours only for a terminal: a log written to a file or a pipe stays plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
        (Some(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)), None)
    };
    let registry = tracing_subscriber::registry().with(filter).with(text_layer).with(json_layer);
    #[cfg(feature = "otlp")]
    let registry = registry.with(otlp::layer());
    registry.init();
    veneer::cli::run(veneer::cli::Cli::parse()).await
}

/// OTLP/HTTP span export, configured by the standard `OTEL_EXPORTER_OTLP_*` variables and
/// active only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    pub fn layer<S>() -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok()?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint).build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("OTLP export disabled: {e}");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).build();
        let tracer = provider.tracer("veneer");
        opentelemetry::global::set_tracer_provider(provider);
        Some(tracing_opentelemetry::layer().with_tracer(tracer))
    }
}
