//! An embedding server for `sbert` that text-embeddings-inference (TEI) and OpenAI clients
//! call unchanged.
//!
//! * TEI routes: `POST /embed`, `POST /similarity`, `POST /tokenize`, `GET /info`,
//!   `GET /health`, `GET /metrics` (Prometheus); OpenAI: `POST /v1/embeddings` (strings or
//!   token ids, `float` or `base64`, `dimensions`); `GET /openapi.json` (derived from the request and response types) and the Swagger UI at
//!   `GET /docs`.
//! * Dynamic batching: requests from every client wait in one queue and are embedded together
//!   under a token budget (`max_batch_tokens`); the encoder sorts and packs them without
//!   padding, and each request gets its own rows back in its order.
//! * Back-pressure: at most `max_concurrent_requests` requests are admitted; the next gets 429
//!   at once instead of queueing without bound. A client that disconnects frees its slot, and
//!   its inputs are dropped before they reach the encoder.
//! * Errors in each API's own shape; 413 for a body over `max_body_bytes` or a batch over
//!   `max_client_batch_size`; 401 without the API key when one is set; long inputs truncated
//!   at the model's limit unless a request says `"truncate": false` (then 422).
//! * `/health` answers 200 only once the model is loaded; shutdown stops accepting, answers
//!   every accepted request, then returns (after at most `drain_timeout`).
//! * Every resource a client can hold is bounded: connections (`max_connections`), time to
//!   send headers or idle between requests (`header_timeout`), time to send a body
//!   (`body_timeout`, then 408), a stalled response write (`write_timeout`), the wait for
//!   embeddings (`request_timeout`, then 504), body size and inputs per request (413, checked
//!   from `Content-Length` before a `100 Continue`), concurrent requests (429), `/tokenize`
//!   included.
//! * Bodies must be `application/json` (a browser cannot send that cross-site without a CORS
//!   preflight, which this server never grants); `allowed_hosts` refuses other `Host` headers
//!   (DNS rebinding). The CLI binds loopback unless told otherwise.
//!
//! # Example
//!
//! ```no_run
//! use sbert::{Device, SentenceEmbedder};
//! use sbert_server::{serve, ServerConfig};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let config = ServerConfig::default();
//! serve(
//!     listener,
//!     config,
//!     || SentenceEmbedder::from_dir("models/all-MiniLM-L6-v2", &Device::Cpu),
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! )
//! .await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, missing_debug_implementations)]
#![doc(test(attr(deny(warnings))))]

mod conn;
mod engine;
mod error;
mod metrics;
mod openapi;
mod routes;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use sbert::{CrossEncoder, SentenceEmbedder, SparseEncoder};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::engine::Engine;
use crate::metrics::Metrics;

/// Server limits and identity.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The name `/info` and OpenAI responses report.
    pub model_id: String,
    /// Token budget of one encoder batch across requests.
    pub max_batch_tokens: usize,
    /// Requests admitted at once (waiting or running); more get 429.
    pub max_concurrent_requests: usize,
    /// Inputs one request may carry; more get 413.
    pub max_client_batch_size: usize,
    /// Largest request body in bytes; larger get 413.
    pub max_body_bytes: usize,
    /// How long a request may wait for its embeddings; then 504.
    pub request_timeout: Duration,
    /// How long a client may take to send a request's headers, and the longest a keep-alive
    /// connection may sit idle between requests; then the connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in; then 408
    /// and the connection is closed.
    pub body_timeout: Duration,
    /// How long a response write may make no progress (a client that stopped reading); then
    /// the connection is closed.
    pub write_timeout: Duration,
    /// How long shutdown waits for requests in flight before closing their connections.
    pub drain_timeout: Duration,
    /// Connections open at once; at the limit new clients wait in the listen backlog.
    pub max_connections: usize,
    /// When set, every route but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// When not empty, requests whose `Host` header (port aside) is not one of these get 421:
    /// a guard against DNS rebinding for a server on loopback.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerConfig {
    /// TEI's defaults: 16,384 batch tokens, 512 concurrent requests, 32 inputs per request,
    /// 2 MB bodies; 60 s request timeout; 10 s for headers (and idle keep-alive), 30 s for a
    /// body, 30 s of write stall, 30 s of drain; 1,024 connections; no key; any host.
    fn default() -> Self {
        Self {
            model_id: "sbert".into(),
            max_batch_tokens: 16_384,
            max_concurrent_requests: 512,
            max_client_batch_size: 32,
            max_body_bytes: 2_000_000,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
            api_key: None,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Invalid limits.
    #[error("invalid server settings: {0}")]
    Config(String),
    /// The model failed to load.
    #[error("cannot load the model")]
    Model(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The listener failed.
    #[error("server I/O")]
    Io(#[source] std::io::Error),
}

type LoadError = Box<dyn std::error::Error + Send + Sync>;

impl ServerConfig {
    /// Refuses limits that would lock every client out: a zero count, size or timeout, an
    /// empty API key, an empty allowed host.
    fn validate(&self) -> Result<(), ServerError> {
        for (name, v) in [
            ("max_batch_tokens", self.max_batch_tokens),
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_client_batch_size", self.max_client_batch_size),
            ("max_body_bytes", self.max_body_bytes),
            ("max_connections", self.max_connections),
        ] {
            if v == 0 {
                return Err(ServerError::Config(format!("{name} must be at least 1")));
            }
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if d.is_zero() {
                return Err(ServerError::Config(format!(
                    "{name} must be longer than zero (a zero timeout fails every request)"
                )));
            }
        }
        if self.api_key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return Err(ServerError::Config(
                "the API key is empty: no client could send it; set a key or none".into(),
            ));
        }
        if self.allowed_hosts.iter().any(|h| h.trim().is_empty()) {
            return Err(ServerError::Config("an allowed host is empty".into()));
        }
        Ok(())
    }
}

/// The model a server serves: an embedding model (the embedding routes) or a cross-encoder
/// (the rerank routes). The other kind's routes answer 400 naming what is served.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServedModel {
    /// A sentence embedding model: `/embed`, `/similarity`, `/tokenize`, `/v1/embeddings`.
    Embedder(SentenceEmbedder),
    /// A cross-encoder: `/rerank`, `/v1/rerank`.
    Reranker(CrossEncoder),
    /// A SPLADE sparse encoder: `/embed_sparse`.
    Sparse(SparseEncoder),
}

impl From<SparseEncoder> for ServedModel {
    fn from(model: SparseEncoder) -> Self {
        Self::Sparse(model)
    }
}

impl From<SentenceEmbedder> for ServedModel {
    fn from(model: SentenceEmbedder) -> Self {
        Self::Embedder(model)
    }
}

impl From<CrossEncoder> for ServedModel {
    fn from(model: CrossEncoder) -> Self {
        Self::Reranker(model)
    }
}

/// What exists once the model is loaded.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) model: Arc<SentenceEmbedder>,
    pub(crate) engine: Engine,
    /// Whether the folder lists Normalize (the model itself runs without it; requests ask).
    pub(crate) normalizes: bool,
}

/// Shared by every handler.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) loaded: OnceLock<Loaded>,
    /// The cross-encoder, when the server serves one (then `loaded` stays empty).
    pub(crate) reranker: OnceLock<Arc<CrossEncoder>>,
    /// The sparse encoder, when the server serves one (then `loaded` stays empty).
    pub(crate) sparse: OnceLock<Arc<SparseEncoder>>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) metrics: Arc<Metrics>,
}

fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", post(routes::embed))
        .route("/embed", post(routes::embed))
        .route("/similarity", post(routes::similarity))
        .route("/tokenize", post(routes::tokenize))
        .route("/rerank", post(routes::rerank))
        .route("/embed_sparse", post(routes::embed_sparse))
        .route("/v1/rerank", post(routes::v1_rerank))
        .route("/v1/embeddings", post(routes::openai_embeddings))
        .route("/embeddings", post(routes::openai_embeddings))
        .route("/info", get(routes::info))
        .route("/health", get(routes::health))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(openapi::swagger_ui())
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::guard,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then finishes every accepted request and
/// returns. The model is loaded by `load` on a blocking thread after the listener is up;
/// until it is, `/health` and the embedding routes answer 503.
///
/// # Errors
/// [`ServerError::Config`] for zero limits, [`ServerError::Model`] when `load` fails (the
/// server stops accepting and returns it), [`ServerError::Io`] when serving fails.
pub async fn serve<L, M, E>(
    listener: TcpListener,
    config: ServerConfig,
    load: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError>
where
    L: FnOnce() -> Result<M, E> + Send + 'static,
    M: Into<ServedModel>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    config.validate()?;
    let metrics = Arc::new(Metrics::new());
    let state = Arc::new(AppState {
        slots: Arc::new(Semaphore::new(config.max_concurrent_requests)),
        config,
        loaded: OnceLock::new(),
        reranker: OnceLock::new(),
        sparse: OnceLock::new(),
        metrics: metrics.clone(),
    });
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<LoadError>();
    let loader_state = state.clone();
    tokio::task::spawn_blocking(move || match load().map(Into::into) {
        Ok(ServedModel::Reranker(model)) => {
            let _ = loader_state.reranker.set(Arc::new(model));
        }
        Ok(ServedModel::Sparse(model)) => {
            let _ = loader_state.sparse.set(Arc::new(model));
        }
        Ok(ServedModel::Embedder(model)) => {
            // The engine embeds without the Normalize module; each request normalizes (or
            // not) after its own truncation.
            let normalizes = model.normalizes();
            let model = Arc::new(model);
            let engine =
                Engine::start(model.clone(), loader_state.config.max_batch_tokens, metrics);
            let _ = loader_state.loaded.set(Loaded {
                model,
                engine,
                normalizes,
            });
        }
        Err(e) => {
            let _ = failed_tx.send(e.into());
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<LoadError>>();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => { let _ = stop_tx.send(None); }
            Ok(e) = failed_rx => { let _ = stop_tx.send(Some(e)); }
        }
    });
    let (error_tx, error_rx) = tokio::sync::oneshot::channel::<LoadError>();
    let graceful = async move {
        if let Ok(Some(e)) = stop_rx.await {
            let _ = error_tx.send(e);
        }
    };
    let limits = conn::ConnLimits {
        header_timeout: state.config.header_timeout,
        write_timeout: state.config.write_timeout,
        drain_timeout: state.config.drain_timeout,
        max_connections: state.config.max_connections,
    };
    conn::run(listener, router(state), limits, graceful).await;
    match error_rx.await {
        Ok(e) => Err(ServerError::Model(e)),
        Err(_) => Ok(()),
    }
}
