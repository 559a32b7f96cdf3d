//! `sbert serve`: the embedding server (`sbert-server`) on a Tokio runtime, stopped gracefully
//! by Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::ModelArgs;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Token budget of one encoder batch across concurrent requests.
    #[arg(long, default_value_t = 16_384, value_name = "N")]
    max_batch_tokens: usize,
    /// Requests admitted at once (waiting or running); more are answered 429.
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_concurrent_requests: usize,
    /// Inputs one request may carry; more are answered 413.
    #[arg(long, default_value_t = 32, value_name = "N")]
    max_client_batch_size: usize,
    /// Largest request body in bytes; larger are answered 413.
    #[arg(long, default_value_t = 2_000_000, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Seconds a request may wait for its embeddings (or tokens) before a 504.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    timeout: u64,
    /// Seconds a client may take to send a request's headers, and the longest a keep-alive
    /// connection may sit idle; then the connection is closed (slowloris).
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    header_timeout: u64,
    /// Seconds a client may take to send a body once its headers are in; then 408 and the
    /// connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    body_timeout: u64,
    /// Seconds a response write may make no progress (a client that stopped reading); then
    /// the connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    write_timeout: u64,
    /// Seconds SIGTERM / Ctrl-C waits for requests in flight before closing what is left.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    drain_timeout: u64,
    /// Connections open at once; at the limit new clients wait in the listen backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Answer only requests whose Host header (port aside) is this name; repeat for several.
    /// Guards a loopback server against DNS rebinding. Default: any host.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(
        long,
        env = "SBERT_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Name reported by /info and in OpenAI responses (default: the model's folder name).
    #[arg(long, value_name = "NAME")]
    model_id: Option<String>,
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("stopping: finishing accepted requests");
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let model_id = args.model_id.clone().unwrap_or_else(|| {
        let trimmed = args.model.model.trim_end_matches('/');
        trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
    });
    let config = sbert_server::ServerConfig {
        model_id,
        max_batch_tokens: args.max_batch_tokens,
        max_concurrent_requests: args.max_concurrent_requests,
        max_client_batch_size: args.max_client_batch_size,
        max_body_bytes: args.max_body_bytes,
        request_timeout: Duration::from_secs(args.timeout),
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        write_timeout: Duration::from_secs(args.write_timeout),
        drain_timeout: Duration::from_secs(args.drain_timeout),
        max_connections: args.max_connections,
        api_key: args.api_key.clone(),
        allowed_hosts: args.allowed_hosts.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
        let addr = listener.local_addr().context("listener address")?;
        eprintln!("listening on http://{addr} (loading {})", args.model.model);
        let model = args.model.clone();
        // A sparse encoder serves /embed_sparse, a cross-encoder the rerank routes; anything
        // else loads as an embedding model (and its errors say what is wrong with it).
        let load = move || -> Result<sbert_server::ServedModel> {
            let device = || sbert::device(&model.device);
            match sbert::ModelKind::of(&model.model) {
                Ok(sbert::ModelKind::Sparse) => {
                    Ok(sbert::SparseEncoder::load(&model.model, &device()?)?
                        .with_batch_size(model.batch_size)?
                        .into())
                }
                Ok(sbert::ModelKind::CrossEncoder) => {
                    Ok(sbert::CrossEncoder::load(&model.model, &device()?)?
                        .with_batch_size(model.batch_size)?
                        .into())
                }
                _ => Ok(model.load(None)?.into()),
            }
        };
        sbert_server::serve(listener, config, load, stop_signal())
            .await
            .context("server")
    })
}
