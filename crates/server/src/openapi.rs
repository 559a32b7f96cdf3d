//! The OpenAPI 3.1 document (`GET /openapi.json`), derived by `utoipa` from the request and
//! response types and the handlers' `#[utoipa::path]` annotations, then narrowed to the loaded
//! model (its prompts, dimension, vocabulary and the batch limit); and the Swagger UI that reads
//! it (`GET /docs`).

use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use crate::error::{OpenAiError, OpenAiErrorBody, TeiError};
use crate::routes;
use crate::AppState;

/// The document of every route, as the types and annotations give it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sbert embedding server",
        description = "Sentence embeddings with text-embeddings-inference and OpenAI compatible routes."
    ),
    paths(
        routes::embed,
        routes::similarity,
        routes::tokenize,
        routes::rerank,
        routes::embed_sparse,
        routes::openai_embeddings,
        routes::v1_rerank,
        routes::info,
        routes::health,
        routes::metrics,
        openapi_json,
    ),
    components(schemas(TeiError, OpenAiError, OpenAiErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "TEI", description = "text-embeddings-inference routes"),
        (name = "OpenAI", description = "The OpenAI embeddings route"),
        (name = "Server", description = "Health, limits, metrics and this document")
    )
)]
struct ApiDoc;

/// Adds the `bearer` scheme (`--api-key`) to the components.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the document says of the loaded model, so that every request it calls valid is served.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) prompts: Vec<String>,
    pub(crate) dimension: usize,
    pub(crate) vocab_size: usize,
    pub(crate) max_batch: usize,
}

/// The kind of model a server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Served {
    Embedding,
    Reranker,
    Sparse,
}

impl Served {
    /// Whether a server of this kind answers `path` (the other kinds' routes are 400s).
    fn serves(self, path: &str) -> bool {
        const EMBEDDING: [&str; 6] = [
            "/embed",
            "/similarity",
            "/tokenize",
            "/v1/embeddings",
            "/",
            "/embeddings",
        ];
        const RERANKER: [&str; 2] = ["/rerank", "/v1/rerank"];
        match self {
            Self::Embedding => !RERANKER.contains(&path) && path != "/embed_sparse",
            Self::Reranker => !EMBEDDING.contains(&path) && path != "/embed_sparse",
            Self::Sparse => !EMBEDDING.contains(&path) && !RERANKER.contains(&path),
        }
    }
}

/// Routes served under a second path: (alias, route, summary).
const ALIASES: [(&str, &str, &str); 2] = [
    (
        "/",
        "/embed",
        "Alias of /embed (what TEI clients post to a bare endpoint URL)",
    ),
    ("/embeddings", "/v1/embeddings", "Alias of /v1/embeddings"),
];

/// The document for a server that answers to `model_id`: every route while the model loads,
/// then those of the `served` kind; `limits` narrow the schemas once an embedding model is
/// loaded; with `api_key`, every route but `/health` requires the bearer key.
pub(crate) fn document(
    model_id: &str,
    served: Option<Served>,
    limits: Option<&Limits>,
    api_key: bool,
) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    for (alias, route, summary) in ALIASES {
        let mut item = doc["paths"][route].clone();
        if let Some(operation) = item.get_mut("post") {
            operation["summary"] = json!(summary);
            operation["operationId"] = json!(format!(
                "{}_alias",
                operation["operationId"].as_str().unwrap_or("route")
            ));
        }
        doc["paths"][alias] = item;
    }
    // Once the model is loaded, only the routes of its kind (the others answer 400).
    if let (Some(served), Some(paths)) = (served, doc["paths"].as_object_mut()) {
        paths.retain(|path, _| served.serves(path));
    }
    if api_key {
        let paths = doc["paths"].as_object_mut().map(|p| p.iter_mut());
        for (path, item) in paths.into_iter().flatten() {
            if path == "/health" {
                continue;
            }
            for operation in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                operation["security"] = json!([{"bearer": []}]);
            }
        }
    }
    let schemas = &mut doc["components"]["schemas"];
    schemas["OpenAiRequest"]["properties"]["model"] = json!({"enum": [model_id, null]});
    let Some(l) = limits else { return doc };
    let mut prompt: Vec<Value> = l.prompts.iter().map(|p| json!(p)).collect();
    prompt.push(Value::Null);
    let prompt = json!({"enum": prompt});
    for name in ["EmbedRequest", "SimilarityRequest", "TokenizeRequest"] {
        schemas[name]["properties"]["prompt_name"] = prompt.clone();
    }
    schemas["Input"] = json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": l.max_batch}
    ]});
    let dims = json!({"type": ["integer", "null"], "minimum": 1, "maximum": l.dimension});
    schemas["EmbedRequest"]["properties"]["dimensions"] = dims.clone();
    schemas["OpenAiRequest"]["properties"]["dimensions"] = dims;
    schemas["SimilarityInputs"]["properties"]["sentences"]["maxItems"] =
        json!(l.max_batch.saturating_sub(1).max(1));
    let ids = json!({
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": l.vocab_size.saturating_sub(1)},
        "minItems": 1,
        "description": "Token ids, used as given; longer than the model's limit, truncated as texts are."
    });
    schemas["OpenAiInput"] = json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": l.max_batch},
        ids.clone(),
        {"type": "array", "items": ids, "minItems": 1, "maxItems": l.max_batch}
    ]});
    doc
}

/// The Swagger UI at `/docs`, reading the live document at `/openapi.json`.
pub(crate) fn swagger_ui() -> utoipa_swagger_ui::SwaggerUi {
    utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/openapi.json"))
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Server",
    summary = "This document (the Swagger UI at /docs reads it)",
    responses(
        (status = 200, description = "The OpenAPI document", body = serde_json::Value),
        (status = 401, description = "Missing or wrong API key", body = TeiError)
    )
)]
pub(crate) async fn openapi_json(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let limits = state.loaded.get().map(|l| Limits {
        prompts: l.model.prompts().keys().cloned().collect(),
        dimension: l.model.dim(),
        vocab_size: sbert::Encoder::vocab_size(l.model.encoder()),
        max_batch: state.config.max_client_batch_size,
    });
    let served = if state.loaded.get().is_some() {
        Some(Served::Embedding)
    } else if state.reranker.get().is_some() {
        Some(Served::Reranker)
    } else if state.sparse.get().is_some() {
        Some(Served::Sparse)
    } else {
        None
    };
    Json(document(
        &state.config.model_id,
        served,
        limits.as_ref(),
        state.config.api_key.is_some(),
    ))
}
