//! The HTTP routes: TEI's (`/embed`, `/similarity`, `/tokenize`, `/info`, `/health`,
//! `/metrics`) and OpenAI's (`/v1/embeddings`), with their request and response shapes.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sbert::Prompt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::engine::{Embedded, EngineError, Inputs};
use crate::error::{ApiError, Flavor, Kind, OpenAiErrors, TeiError, TeiErrors};
use crate::{AppState, Loaded};

type ApiResult<T> = Result<T, ApiError>;

/// A string or a list of strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Input)]
pub(crate) enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    fn into_vec(self) -> Vec<String> {
        match self {
            Texts::One(s) => vec![s],
            Texts::Many(v) => v,
        }
    }
}

/// TEI `POST /embed`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmbedRequest {
    inputs: Texts,
    /// Scale each vector to unit length.
    #[schema(default = true)]
    normalize: Option<bool>,
    /// Cut inputs longer than the model's limit (false: such an input is a 422).
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(value_type = Option<TruncationDirection>)]
    truncation_direction: Option<String>,
    /// Keep the first `dimensions` values of each vector (Matryoshka), before normalizing.
    #[schema(value_type = Option<u64>, minimum = 1)]
    dimensions: Option<serde_json::Value>,
    /// A prompt of the model's `config_sentence_transformers.json`, put before each input.
    prompt_name: Option<String>,
}

/// Where a long input is cut: only the end (TEI's `Right`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub(crate) enum TruncationDirection {
    Right,
    #[serde(rename = "right")]
    RightLowerCase,
}

/// TEI `POST /similarity`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SimilarityRequest {
    inputs: SimilarityInputs,
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(value_type = Option<TruncationDirection>)]
    truncation_direction: Option<String>,
    prompt_name: Option<String>,
}

/// A sentence and the sentences to compare it with.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SimilarityInputs {
    source_sentence: String,
    #[schema(min_items = 1)]
    sentences: Vec<String>,
}

/// TEI `POST /tokenize`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TokenizeRequest {
    inputs: Texts,
    #[schema(default = true)]
    add_special_tokens: Option<bool>,
    prompt_name: Option<String>,
}

/// A token of a tokenized input; `start` and `stop` are byte offsets into the input (none for
/// special tokens).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Token {
    id: u32,
    text: String,
    special: bool,
    start: Option<usize>,
    stop: Option<usize>,
}

/// OpenAI `POST /v1/embeddings`. `input` is a string, strings, token ids, or lists of token
/// ids; numbers are JSON numbers (`1.0` is the integer 1, as JSON Schema has it).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct OpenAiRequest {
    #[schema(value_type = OpenAiInput)]
    input: serde_json::Value,
    /// The served model's name (another is a 404).
    model: Option<String>,
    #[schema(value_type = Option<EncodingFormat>)]
    encoding_format: Option<String>,
    #[schema(value_type = Option<u64>, minimum = 1)]
    dimensions: Option<serde_json::Value>,
    #[allow(dead_code)]
    user: Option<String>,
}

/// What `/v1/embeddings` embeds: a text, texts, token ids, or lists of token ids.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) enum OpenAiInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

/// How `/v1/embeddings` writes vectors: JSON numbers, or base64 of little-endian f32 bytes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum EncodingFormat {
    Float,
    Base64,
}

/// The answer of `/v1/embeddings`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiResponse {
    object: ListObject,
    data: Vec<OpenAiEmbedding>,
    /// The served model's name.
    model: String,
    usage: Usage,
}

/// The constant `"list"`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ListObject {
    List,
}

/// The constant `"embedding"`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EmbeddingObject {
    Embedding,
}

/// One vector of an OpenAI answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiEmbedding {
    object: EmbeddingObject,
    /// The input's position.
    index: usize,
    embedding: Vector,
}

/// A vector as JSON numbers, or as base64 (`encoding_format: "base64"`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

/// Tokens read for an OpenAI request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

/// `GET /info`: the model and the server's limits (TEI's shape).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Info {
    model_id: String,
    model_sha: Option<String>,
    model_dtype: String,
    model_type: ModelType,
    max_concurrent_requests: usize,
    /// The longest input in tokens (longer ones are cut, or refused with `truncate: false`).
    max_input_length: usize,
    max_batch_tokens: usize,
    max_batch_requests: Option<usize>,
    max_client_batch_size: usize,
    auto_truncate: bool,
    tokenization_workers: usize,
    /// The width of a vector (embedding models).
    #[serde(skip_serializing_if = "Option::is_none")]
    dimension: Option<usize>,
    version: String,
}

/// What kind of model is served (TEI's names): `{"embedding": …}` or `{"reranker": …}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ModelType {
    Embedding(EmbeddingModel),
    Reranker(RerankerModel),
}

/// A cross-encoder and its labels.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RerankerModel {
    /// Label names by id (`config.json`'s `id2label`).
    id2label: std::collections::BTreeMap<String, String>,
}

/// An embedding model and its pooling.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmbeddingModel {
    pooling: String,
}

/// A JSON number that is a non-negative integer (`3` or `3.0`).
fn whole(v: &serde_json::Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < 9.0e15).then_some(f as u64)
    })
}

fn token_ids(v: &serde_json::Value) -> Option<Vec<u32>> {
    v.as_array()?
        .iter()
        .map(|x| whole(x).and_then(|n| u32::try_from(n).ok()))
        .collect()
}

fn openai_inputs(input: &serde_json::Value) -> ApiResult<Inputs> {
    let invalid = || {
        ApiError::new(
            Kind::Validation,
            "input must be a string, a list of strings, a list of token ids or a list of such lists",
        )
    };
    if let Some(s) = input.as_str() {
        return Ok(Inputs::Texts(vec![s.to_string()], None));
    }
    let items = input.as_array().ok_or_else(invalid)?;
    if items.iter().all(serde_json::Value::is_string) {
        return Ok(Inputs::Texts(
            items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            None,
        ));
    }
    if let Some(ids) = token_ids(input) {
        return Ok(Inputs::Ids(vec![ids]));
    }
    items
        .iter()
        .map(token_ids)
        .collect::<Option<Vec<_>>>()
        .map(Inputs::Ids)
        .ok_or_else(invalid)
}

fn dimensions(v: Option<&serde_json::Value>) -> ApiResult<Option<usize>> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => whole(v)
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    Kind::Validation,
                    format!("dimensions must be a positive integer, not {v}"),
                )
            }),
    }
}

/// Parses a JSON body: 413 over the size limit, 400 for bad JSON, 422 for a body that does not
/// fit the schema.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(Kind::TooLarge, "request body is over the size limit")
        } else {
            ApiError::bad_json(e.body_text())
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_json(format!("invalid JSON: {e}"))
        } else {
            ApiError::new(Kind::Validation, format!("invalid request: {e}"))
        }
    })
}

impl AppState {
    /// What the server serves, for the errors of routes that need another kind; `None`
    /// while the model loads.
    fn served(&self) -> Option<&'static str> {
        if self.loaded.get().is_some() {
            Some("an embedding model (routes /embed, /similarity, /tokenize, /v1/embeddings)")
        } else if self.reranker.get().is_some() {
            Some("a cross-encoder, a reranker (routes /rerank, /v1/rerank)")
        } else if self.sparse.get().is_some() {
            Some("a sparse (SPLADE) encoder (route /embed_sparse)")
        } else {
            None
        }
    }

    /// The error of a route that needs `wanted` on this server: 503 while the model loads,
    /// else 400 naming what is served.
    fn not_served(&self, wanted: &str) -> ApiError {
        match self.served() {
            Some(served) => ApiError::new(
                Kind::Empty,
                format!("this server serves {served}, not {wanted}"),
            ),
            None => ApiError::new(Kind::Unhealthy, "the model is loading"),
        }
    }

    /// The embedding model.
    fn loaded(&self) -> ApiResult<&Loaded> {
        self.loaded
            .get()
            .ok_or_else(|| self.not_served("an embedding model"))
    }

    /// The cross-encoder.
    fn reranker(&self) -> ApiResult<&Arc<sbert::CrossEncoder>> {
        self.reranker
            .get()
            .ok_or_else(|| self.not_served("a cross-encoder"))
    }

    /// The sparse encoder.
    fn sparse(&self) -> ApiResult<&Arc<sbert::SparseEncoder>> {
        self.sparse
            .get()
            .ok_or_else(|| self.not_served("a sparse encoder"))
    }

    /// `work` on a blocking thread holding one of the concurrent-request slots, under the
    /// request timeout (what a model without the batching queue runs through).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> sbert::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let slot = self.slot()?;
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        });
        match tokio::time::timeout(self.config.request_timeout, task).await {
            Err(_) => Err(ApiError::new(
                Kind::Timeout,
                format!("no answer within {:?}", self.config.request_timeout),
            )),
            Ok(Err(_)) => Err(ApiError::new(Kind::Backend, "the model's thread stopped")),
            Ok(Ok(Err(e))) => Err(ApiError::new(Kind::Backend, e.to_string())),
            Ok(Ok(Ok(value))) => Ok(value),
        }
    }

    /// `documents` scored against `query` by the cross-encoder on a blocking thread, under the
    /// batch, concurrency and time limits: `(index, score)` best first, and the tokens read.
    async fn rerank(
        &self,
        query: String,
        documents: Vec<String>,
        raw_scores: bool,
    ) -> ApiResult<Vec<sbert::Ranked>> {
        let reranker = self.reranker()?.clone();
        if documents.is_empty() {
            return Err(ApiError::new(Kind::Empty, "no documents to rank"));
        }
        if reranker.num_labels() != 1 {
            return Err(ApiError::new(
                Kind::Validation,
                format!(
                    "the served cross-encoder has {} labels; ranking needs one score per pair",
                    reranker.num_labels()
                ),
            ));
        }
        self.check_batch(documents.len())?;
        let options = sbert::PredictOptions {
            batch_size: None,
            activation: raw_scores.then_some(sbert::Activation::Identity),
        };
        self.blocking(move || reranker.rank_with(&query, &documents, None, &options))
            .await
    }

    /// Runs `inputs` through the batching queue, holding one of the concurrent-request slots
    /// while it waits (a full house is a 429; a client that goes away frees its slot).
    async fn embed(&self, inputs: Inputs, truncate: bool) -> ApiResult<Embedded> {
        let loaded = self.loaded()?;
        if inputs.len() == 0 {
            return Err(ApiError::new(Kind::Empty, "no inputs"));
        }
        self.check_batch(inputs.len())?;
        let _slot = self.slot()?;
        let answer = loaded.engine.submit(inputs, truncate);
        match tokio::time::timeout(self.config.request_timeout, answer).await {
            Err(_) => Err(ApiError::new(
                Kind::Timeout,
                format!("no answer within {:?}", self.config.request_timeout),
            )),
            Ok(Err(_)) => Err(ApiError::new(Kind::Backend, "the batching thread stopped")),
            Ok(Ok(Err(EngineError::Validation(m)))) => Err(ApiError::new(Kind::Validation, m)),
            Ok(Ok(Err(EngineError::Backend(m)))) => Err(ApiError::new(Kind::Backend, m)),
            Ok(Ok(Ok(e))) => Ok(e),
        }
    }

    /// One of the concurrent-request slots, or 429 when all are taken.
    fn slot(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                Kind::Overloaded,
                format!(
                    "the server is at its limit of {} concurrent requests; retry later",
                    self.config.max_concurrent_requests
                ),
            )
        })
    }

    /// 413 for a batch over `max_client_batch_size`.
    fn check_batch(&self, n: usize) -> ApiResult<()> {
        if n > self.config.max_client_batch_size {
            return Err(ApiError::new(
                Kind::TooLarge,
                format!(
                    "batch of {n} inputs is over the limit of {} (--max-client-batch-size)",
                    self.config.max_client_batch_size
                ),
            ));
        }
        Ok(())
    }

    /// `texts` to embed after the named prompt (the model's default prompt when `None`); an
    /// unknown name is refused here, before the request queues.
    fn prompted(&self, texts: Vec<String>, prompt_name: Option<&str>) -> ApiResult<Inputs> {
        if let Some(name) = prompt_name {
            self.loaded()?
                .model
                .prompt_text(Prompt::Named(name))
                .map_err(|e| ApiError::new(Kind::Validation, e.to_string()))?;
        }
        Ok(Inputs::Texts(texts, prompt_name.map(String::from)))
    }
}

fn check_direction(direction: Option<&str>) -> ApiResult<()> {
    match direction {
        None => Ok(()),
        Some(d) if d.eq_ignore_ascii_case("right") => Ok(()),
        Some(d) => Err(ApiError::new(
            Kind::Validation,
            format!("truncation_direction {d:?} is not supported; sentence-transformers keeps the start (Right)"),
        )),
    }
}

/// Keeps the first `dimensions` values (Matryoshka truncation), then L2-normalizes if asked.
fn finish(
    mut vectors: Vec<Vec<f32>>,
    dimensions: Option<usize>,
    normalize: bool,
) -> ApiResult<Vec<Vec<f32>>> {
    if let Some(d) = dimensions {
        let full = vectors.first().map_or(0, Vec::len);
        if d == 0 || d > full {
            return Err(ApiError::new(
                Kind::Validation,
                format!("dimensions must be between 1 and {full}, not {d}"),
            ));
        }
        vectors.iter_mut().for_each(|v| v.truncate(d));
    }
    if normalize {
        for v in &mut vectors {
            let dim = v.len();
            sbert::normalize_rows(v, dim);
        }
    }
    Ok(vectors)
}

#[utoipa::path(
    post,
    path = "/embed",
    tag = "TEI",
    summary = "Embed texts",
    request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input, in order", body = Vec<Vec<f32>>),
        TeiErrors
    )
)]
pub(crate) async fn embed(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<Vec<f32>>>> {
    let req: EmbedRequest = parse(body)?;
    check_direction(req.truncation_direction.as_deref())?;
    let dims = dimensions(req.dimensions.as_ref())?;
    let inputs = state.prompted(req.inputs.into_vec(), req.prompt_name.as_deref())?;
    let e = state.embed(inputs, req.truncate.unwrap_or(true)).await?;
    Ok(Json(finish(
        e.vectors,
        dims,
        req.normalize.unwrap_or(true),
    )?))
}

#[utoipa::path(
    post,
    path = "/similarity",
    tag = "TEI",
    summary = "Cosine similarity of a source sentence to each of several sentences",
    request_body = SimilarityRequest,
    responses(
        (status = 200, description = "One score per sentence", body = Vec<f32>),
        TeiErrors
    )
)]
pub(crate) async fn similarity(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<f32>>> {
    let req: SimilarityRequest = parse(body)?;
    check_direction(req.truncation_direction.as_deref())?;
    if req.inputs.sentences.is_empty() {
        return Err(ApiError::new(Kind::Empty, "no sentences to compare with"));
    }
    let mut texts = vec![req.inputs.source_sentence];
    texts.extend(req.inputs.sentences);
    let inputs = state.prompted(texts, req.prompt_name.as_deref())?;
    let e = state.embed(inputs, req.truncate.unwrap_or(true)).await?;
    let v = finish(e.vectors, None, true)?;
    let source = &v[0];
    Ok(Json(
        v[1..]
            .iter()
            .map(|u| u.iter().zip(source).map(|(a, b)| a * b).sum())
            .collect(),
    ))
}

/// TEI's `/tokenize`, under the same batch and concurrency limits as embedding, on a blocking
/// thread (a long text takes the tokenizer a while; the async workers stay free).
#[utoipa::path(
    post,
    path = "/tokenize",
    tag = "TEI",
    summary = "Tokenize texts",
    request_body = TokenizeRequest,
    responses(
        (status = 200, description = "The tokens of each input", body = Vec<Vec<Token>>),
        TeiErrors
    )
)]
pub(crate) async fn tokenize(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<Vec<Token>>>> {
    let req: TokenizeRequest = parse(body)?;
    let loaded = state.loaded()?;
    let prompt = loaded
        .model
        .prompt_text(Prompt::named_or_default(req.prompt_name.as_deref()))
        .map_err(|e| ApiError::new(Kind::Validation, e.to_string()))?
        .unwrap_or("")
        .to_string();
    let texts = req.inputs.into_vec();
    if texts.is_empty() {
        return Err(ApiError::new(Kind::Empty, "no inputs"));
    }
    state.check_batch(texts.len())?;
    let slot = state.slot()?;
    let model = loaded.model.clone();
    let add_special_tokens = req.add_special_tokens.unwrap_or(true);
    let work = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        texts
            .iter()
            .map(|t| tokens(&model, &format!("{prompt}{t}"), add_special_tokens))
            .collect::<ApiResult<Vec<_>>>()
    });
    match tokio::time::timeout(state.config.request_timeout, work).await {
        Err(_) => Err(ApiError::new(
            Kind::Timeout,
            format!("no answer within {:?}", state.config.request_timeout),
        )),
        Ok(Err(_)) => Err(ApiError::new(Kind::Backend, "the tokenizer stopped")),
        Ok(Ok(result)) => result.map(Json),
    }
}

/// `text`'s tokens with their text and byte offsets, as TEI answers them.
fn tokens(
    model: &sbert::SentenceEmbedder,
    text: &str,
    add_special_tokens: bool,
) -> ApiResult<Vec<Token>> {
    let enc = model
        .encode_with_offsets(text, add_special_tokens)
        .map_err(|e| ApiError::new(Kind::Validation, format!("tokenizer: {e}")))?;
    Ok(enc
        .get_ids()
        .iter()
        .zip(enc.get_tokens())
        .zip(enc.get_offsets())
        .zip(enc.get_special_tokens_mask())
        .map(|(((&id, token), &(start, stop)), &special)| {
            let special = special == 1;
            Token {
                id,
                text: if special {
                    token.clone()
                } else {
                    text.get(start..stop).unwrap_or(token).to_string()
                },
                special,
                start: (!special).then_some(start),
                stop: (!special).then_some(stop),
            }
        })
        .collect())
}

/// Base64 of the little-endian f32 bytes (what the OpenAI clients decode).
fn base64_f32(v: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "OpenAI",
    summary = "Embed texts or token ids",
    request_body = OpenAiRequest,
    responses(
        (status = 200, description = "One vector per input", body = OpenAiResponse),
        OpenAiErrors
    )
)]
pub(crate) async fn openai_embeddings(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<OpenAiResponse>, ApiError> {
    let run = async {
        let req: OpenAiRequest = parse(body)?;
        let loaded = state.loaded()?;
        let base64 = match req.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::new(
                    Kind::Validation,
                    format!("encoding_format must be \"float\" or \"base64\", not {other:?}"),
                ))
            }
        };
        check_model(&state, req.model.as_deref())?;
        let inputs = openai_inputs(&req.input)?;
        let dims = dimensions(req.dimensions.as_ref())?;
        let e = state.embed(inputs, true).await?;
        let normalize = loaded.normalizes || dims.is_some();
        let vectors = finish(e.vectors, dims, normalize)?;
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| OpenAiEmbedding {
                object: EmbeddingObject::Embedding,
                index,
                embedding: if base64 {
                    Vector::Base64(base64_f32(&v))
                } else {
                    Vector::Float(v)
                },
            })
            .collect();
        Ok(Json(OpenAiResponse {
            object: ListObject::List,
            data,
            model: state.config.model_id.clone(),
            usage: Usage {
                prompt_tokens: e.tokens,
                total_tokens: e.tokens,
            },
        }))
    };
    run.await
        .map_err(|e: ApiError| e.with_flavor(Flavor::OpenAi))
}

/// TEI `POST /embed_sparse`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmbedSparseRequest {
    inputs: Texts,
    /// Cut inputs longer than the model's limit (`false` is refused: there is no other
    /// behaviour).
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(value_type = Option<TruncationDirection>)]
    truncation_direction: Option<String>,
}

/// A nonzero dimension of a sparse embedding: a vocabulary id and its weight.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SparseValue {
    index: u32,
    value: f32,
}

#[utoipa::path(
    post,
    path = "/embed_sparse",
    tag = "TEI",
    summary = "Sparse (SPLADE) embeddings: the nonzero dimensions of each input",
    request_body = EmbedSparseRequest,
    responses(
        (status = 200, description = "Per input, its nonzero dimensions, ascending", body = Vec<Vec<SparseValue>>),
        TeiErrors
    )
)]
pub(crate) async fn embed_sparse(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<Vec<SparseValue>>>> {
    let req: EmbedSparseRequest = parse(body)?;
    check_direction(req.truncation_direction.as_deref())?;
    if req.truncate == Some(false) {
        return Err(ApiError::new(
            Kind::Validation,
            "truncate false is not supported here: inputs longer than the model's limit lose \
             their tail, as sentence-transformers' SparseEncoder does",
        ));
    }
    let model = state.sparse()?.clone();
    let texts = req.inputs.into_vec();
    if texts.is_empty() {
        return Err(ApiError::new(Kind::Empty, "no inputs"));
    }
    state.check_batch(texts.len())?;
    let rows = state.blocking(move || model.encode(&texts)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|e| {
                e.indices
                    .into_iter()
                    .zip(e.values)
                    .map(|(index, value)| SparseValue { index, value })
                    .collect()
            })
            .collect(),
    ))
}

/// TEI `POST /rerank`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RerankRequest {
    /// The query each text is read with.
    query: String,
    /// The texts ranked.
    #[schema(min_items = 1)]
    texts: Vec<String>,
    /// The logits without the model's activation (sigmoid).
    #[schema(default = false)]
    raw_scores: Option<bool>,
    /// Echo each text in its result.
    #[schema(default = false)]
    return_text: Option<bool>,
    /// Pairs longer than the model's limit are cut, the longer text first (`false` is
    /// refused: there is no other behaviour).
    #[schema(default = true)]
    truncate: Option<bool>,
    #[schema(value_type = Option<TruncationDirection>)]
    truncation_direction: Option<String>,
}

/// One text of a TEI rerank answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RankedText {
    /// The text's position in the request.
    index: usize,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

#[utoipa::path(
    post,
    path = "/rerank",
    tag = "TEI",
    summary = "Rank texts against a query with the served cross-encoder",
    request_body = RerankRequest,
    responses(
        (status = 200, description = "The texts, best first", body = Vec<RankedText>),
        TeiErrors
    )
)]
pub(crate) async fn rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<RankedText>>> {
    let req: RerankRequest = parse(body)?;
    check_direction(req.truncation_direction.as_deref())?;
    if req.truncate == Some(false) {
        return Err(ApiError::new(
            Kind::Validation,
            "truncate false is not supported here: a pair longer than the model's limit is cut, \
             the longer text first, as sentence-transformers' CrossEncoder does",
        ));
    }
    let return_text = req.return_text.unwrap_or(false);
    let texts = req.texts;
    let ranked = state
        .rerank(req.query, texts.clone(), req.raw_scores.unwrap_or(false))
        .await?;
    Ok(Json(
        ranked
            .into_iter()
            .map(|r| RankedText {
                index: r.corpus_id,
                score: r.score,
                text: return_text.then(|| texts[r.corpus_id].clone()),
            })
            .collect(),
    ))
}

/// `POST /v1/rerank` (Cohere, Jina and Infinity's shape).
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct V1RerankRequest {
    /// The served model's name (another is a 404).
    model: Option<String>,
    query: String,
    #[schema(min_items = 1)]
    documents: Vec<Document>,
    /// Results returned, best first (default: all).
    #[schema(minimum = 1)]
    top_n: Option<usize>,
    /// Echo each document in its result.
    #[schema(default = false)]
    return_documents: Option<bool>,
}

/// A document: its text, or an object with a `text` field.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Document {
    Text(String),
    Object { text: String },
}

impl Document {
    fn text(&self) -> &str {
        match self {
            Self::Text(t) | Self::Object { text: t } => t,
        }
    }
}

/// The answer of `/v1/rerank`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct V1RerankResponse {
    /// The served model's name.
    model: String,
    results: Vec<V1RerankResult>,
}

/// One document of a `/v1/rerank` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct V1RerankResult {
    /// The document's position in the request.
    index: usize,
    relevance_score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<DocumentText>,
}

/// An echoed document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DocumentText {
    text: String,
}

#[utoipa::path(
    post,
    path = "/v1/rerank",
    tag = "OpenAI",
    summary = "Rank documents against a query (Cohere / Jina / Infinity shape)",
    request_body = V1RerankRequest,
    responses(
        (status = 200, description = "The documents, best first", body = V1RerankResponse),
        OpenAiErrors
    )
)]
pub(crate) async fn v1_rerank(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<V1RerankResponse>, ApiError> {
    let run = async {
        let req: V1RerankRequest = parse(body)?;
        check_model(&state, req.model.as_deref())?;
        if req.top_n == Some(0) {
            return Err(ApiError::new(Kind::Validation, "top_n must be at least 1"));
        }
        let texts: Vec<String> = req.documents.iter().map(|d| d.text().to_string()).collect();
        let ranked = state.rerank(req.query, texts.clone(), false).await?;
        let keep = req.top_n.unwrap_or(ranked.len());
        let echo = req.return_documents.unwrap_or(false);
        Ok(Json(V1RerankResponse {
            model: state.config.model_id.clone(),
            results: ranked
                .into_iter()
                .take(keep)
                .map(|r| V1RerankResult {
                    index: r.corpus_id,
                    relevance_score: r.score,
                    document: echo.then(|| DocumentText {
                        text: texts[r.corpus_id].clone(),
                    }),
                })
                .collect(),
        }))
    };
    run.await
        .map_err(|e: ApiError| e.with_flavor(Flavor::OpenAi))
}

/// 404 for an OpenAI-style `model` other than the one served.
fn check_model(state: &AppState, model: Option<&str>) -> ApiResult<()> {
    match model {
        Some(model) if model != state.config.model_id => Err(ApiError::new(
            Kind::Validation,
            format!(
                "the model {model:?} does not exist here; this server serves {:?}",
                state.config.model_id
            ),
        )
        .with_status(StatusCode::NOT_FOUND)),
        _ => Ok(()),
    }
}

#[utoipa::path(
    get,
    path = "/info",
    tag = "Server",
    summary = "The model and the server's limits",
    responses(
        (status = 200, description = "Information", body = Info),
        (status = 401, description = "Missing or wrong API key", body = TeiError),
        (status = 503, description = "The model is loading", body = TeiError)
    )
)]
pub(crate) async fn info(State(state): State<Arc<AppState>>) -> ApiResult<Json<Info>> {
    let c = &state.config;
    let (model_type, max_input_length, dimension) = match (state.reranker.get(), state.sparse.get())
    {
        (_, Some(sparse)) => (
            ModelType::Embedding(EmbeddingModel {
                pooling: "splade".into(),
            }),
            sparse.max_seq_length(),
            Some(sparse.dimension()),
        ),
        (Some(r), None) => (
            ModelType::Reranker(RerankerModel {
                id2label: r
                    .labels()
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), l.clone()))
                    .collect(),
            }),
            r.max_length(),
            None,
        ),
        (None, None) => {
            let loaded = state.loaded()?;
            (
                ModelType::Embedding(EmbeddingModel {
                    pooling: loaded.model.pooling().to_string(),
                }),
                loaded.model.max_seq_length(),
                Some(loaded.model.dim()),
            )
        }
    };
    Ok(Json(Info {
        model_id: c.model_id.clone(),
        model_sha: None,
        model_dtype: "float32".into(),
        model_type,
        max_concurrent_requests: c.max_concurrent_requests,
        max_input_length,
        max_batch_tokens: c.max_batch_tokens,
        max_batch_requests: None,
        max_client_batch_size: c.max_client_batch_size,
        auto_truncate: true,
        tokenization_workers: 1,
        dimension,
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// `GET /health`: an empty object.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Healthy {}

#[utoipa::path(
    get,
    path = "/health",
    tag = "Server",
    summary = "200 once the model is loaded (no API key needed)",
    responses(
        (status = 200, description = "Ready", body = Healthy),
        (status = 503, description = "The model is loading", body = TeiError)
    )
)]
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> ApiResult<Json<Healthy>> {
    if state.served().is_none() {
        return Err(ApiError::new(Kind::Unhealthy, "the model is loading"));
    }
    Ok(Json(Healthy {}))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Server",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "The text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or wrong API key", body = TeiError)
    )
)]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let depth = state.loaded.get().map_or(0, |l| l.engine.queue_depth());
    let in_flight = state.config.max_concurrent_requests - state.slots.available_permits();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(depth, in_flight),
    )
        .into_response()
}

/// Unknown routes: 404 in TEI's shape.
pub(crate) async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        ..ApiError::new(Kind::Validation, "no such route")
    }
}

/// Guards every request before its handler runs, and records its route, status and latency:
/// the `Host` header (when `allowed_hosts` is set), `Authorization: Bearer KEY` (every route
/// but `/health`, when a key is set), then for a body: its declared length (413 before any
/// `100 Continue`; without `Expect`, after reading and dropping a bounded part of the body so
/// the client can read the answer), its content type (JSON only), and the body itself, read
/// whole under `body_timeout` (408) and `max_body_bytes` (413).
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let flavor = if route.starts_with("/v1/") || route == "/embeddings" {
        Flavor::OpenAi
    } else {
        Flavor::Tei
    };
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let response = tracing::Instrument::instrument(
        async {
            match admit(&state, &route, request).await {
                Ok(request) => next.run(request).await,
                Err(refused) => refused.with_flavor(flavor).into_response(),
            }
        },
        span.clone(),
    )
    .await;
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        );
    });
    state
        .metrics
        .observe_request(&route, response.status().as_u16(), elapsed);
    response
}

/// The checks of [`guard`]; a request that passes comes back with its body read.
async fn admit(state: &AppState, route: &str, request: Request) -> ApiResult<Request> {
    let config = &state.config;
    if !config.allowed_hosts.is_empty() {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(host_name);
        if !host.is_some_and(|h| {
            config
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h))
        }) {
            return Err(ApiError::new(
                Kind::Validation,
                "the Host header is not one this server answers (--allowed-host)",
            )
            .with_status(StatusCode::MISDIRECTED_REQUEST));
        }
    }
    if let Some(key) = &config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if route != "/health" && given != Some(key.as_str()) {
            return Err(ApiError::new(
                Kind::Unauthorized,
                "missing or wrong API key",
            ));
        }
    }
    // The routes that take a body; others answer without reading one (405 for a POST to a
    // GET route, 404 for no route).
    const BODY_ROUTES: [&str; 9] = [
        "/embed_sparse",
        "/rerank",
        "/v1/rerank",
        "/",
        "/embed",
        "/similarity",
        "/tokenize",
        "/v1/embeddings",
        "/embeddings",
    ];
    if request.method() != axum::http::Method::POST || !BODY_ROUTES.contains(&route) {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        closing(ApiError::new(
            Kind::TooLarge,
            format!(
                "request body is over the limit of {} bytes (--max-body-bytes)",
                config.max_body_bytes
            ),
        ))
    };
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if !expects_continue {
            // The client is sending the body regardless; a reply before it is read would
            // reach a client that is still writing as a reset, not as a 413. Read a bounded
            // amount of it, discarded, first (nginx's "lingering close").
            let cap = config.max_body_bytes.saturating_mul(8).max(1 << 20);
            let _ = tokio::time::timeout(config.body_timeout, discard_body(body, cap)).await;
        }
        return Err(too_large());
    }
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json"))
        });
    if !json {
        return Err(closing(
            ApiError::new(
                Kind::Validation,
                "the body must be JSON: send Content-Type: application/json",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ));
    }
    let read = read_body(body, config.max_body_bytes);
    match tokio::time::timeout(config.body_timeout, read).await {
        Err(_) => Err(closing(
            ApiError::new(
                Kind::Timeout,
                format!(
                    "the request body did not arrive within {:?} (--body-timeout)",
                    config.body_timeout
                ),
            )
            .with_status(StatusCode::REQUEST_TIMEOUT),
        )),
        Ok(Err(BodyError::TooLarge)) => Err(too_large()),
        Ok(Err(BodyError::Read(e))) => Err(closing(ApiError::bad_json(format!(
            "cannot read the request body: {e}"
        )))),
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
    }
}

/// An error after which the connection closes: the body was not read (or not all of it).
fn closing(error: ApiError) -> ApiError {
    ApiError {
        close: true,
        ..error
    }
}

/// `Host` without its port (`example.com:8080`, `[::1]:80`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// Reads and drops up to `cap` bytes of `body`.
async fn discard_body(mut body: axum::body::Body, cap: usize) {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len());
        if seen > cap {
            return;
        }
    }
}

/// The whole body, refused as soon as it passes `limit` bytes (chunked bodies declare no
/// length).
async fn read_body(mut body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_alphabet_and_padding() {
        // 1.0f32 = 00 00 80 3f
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[]), "");
        // 3 floats = 12 bytes: no padding.
        assert_eq!(base64_f32(&[0.0, 0.0, 0.0]), "AAAAAAAAAAAAAAAA");
    }

    #[test]
    fn dimensions_truncate_then_normalize() {
        let v = finish(vec![vec![3.0, 4.0, 12.0]], Some(2), true).expect("ok");
        assert_eq!(v, vec![vec![0.6, 0.8]]);
        assert!(finish(vec![vec![1.0]], Some(2), true).is_err());
        assert!(finish(vec![vec![1.0]], Some(0), false).is_err());
        assert_eq!(
            finish(vec![vec![3.0, 4.0]], None, false).expect("ok"),
            vec![vec![3.0, 4.0]]
        );
    }
}
