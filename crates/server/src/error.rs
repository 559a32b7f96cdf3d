//! Errors in each API's own shape: TEI's `{"error", "error_type"}` and OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`, with a status that says what happened.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};

/// A TEI error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TeiError {
    /// What went wrong.
    pub(crate) error: String,
    /// TEI's kind: `Validation`, `Empty`, `Overloaded`, `Unauthorized`, `Unhealthy` or `Backend`.
    pub(crate) error_type: String,
}

/// An OpenAI error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiError {
    pub(crate) error: OpenAiErrorBody,
}

/// The body of an OpenAI error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    /// What went wrong.
    pub(crate) message: String,
    /// `invalid_request_error`, `rate_limit_exceeded`, `authentication_error` or
    /// `server_error`.
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<String>,
}

/// The error answers of the TEI routes that take a body (for the OpenAPI document).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum TeiErrors {
    #[response(status = 400, description = "Malformed JSON or no inputs")]
    BadRequest(TeiError),
    #[response(status = 401, description = "Missing or wrong API key")]
    Unauthorized(TeiError),
    #[response(
        status = 408,
        description = "The body did not arrive within the body timeout"
    )]
    Timeout(TeiError),
    #[response(status = 413, description = "Body or batch over the limit")]
    TooLarge(TeiError),
    #[response(status = 415, description = "The body is not application/json")]
    NotJson(TeiError),
    #[response(status = 421, description = "The Host header is not an allowed host")]
    Misdirected(TeiError),
    #[response(
        status = 422,
        description = "The request does not fit the schema, or an input is too long with truncate false"
    )]
    Invalid(TeiError),
    #[response(status = 429, description = "Too many concurrent requests")]
    Overloaded(TeiError),
    #[response(status = 503, description = "The model is loading")]
    Loading(TeiError),
    #[response(status = 504, description = "No answer within the request timeout")]
    NoAnswer(TeiError),
}

/// The error answers of the OpenAI routes (for the OpenAPI document).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(crate) enum OpenAiErrors {
    #[response(status = 400, description = "Malformed JSON or no inputs")]
    BadRequest(OpenAiError),
    #[response(status = 401, description = "Missing or wrong API key")]
    Unauthorized(OpenAiError),
    #[response(
        status = 404,
        description = "`model` names a model this server does not serve"
    )]
    NoSuchModel(OpenAiError),
    #[response(
        status = 408,
        description = "The body did not arrive within the body timeout"
    )]
    Timeout(OpenAiError),
    #[response(status = 413, description = "Body or batch over the limit")]
    TooLarge(OpenAiError),
    #[response(status = 415, description = "The body is not application/json")]
    NotJson(OpenAiError),
    #[response(status = 421, description = "The Host header is not an allowed host")]
    Misdirected(OpenAiError),
    #[response(status = 422, description = "The request does not fit the schema")]
    Invalid(OpenAiError),
    #[response(status = 429, description = "Too many concurrent requests")]
    Overloaded(OpenAiError),
    #[response(status = 503, description = "The model is loading")]
    Loading(OpenAiError),
    #[response(status = 504, description = "No answer within the request timeout")]
    NoAnswer(OpenAiError),
}

/// Which API's error shape to answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Tei,
    OpenAi,
}

/// What went wrong, as TEI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Malformed JSON or a request that does not fit the schema (400 / 422).
    Validation,
    /// No inputs (400).
    Empty,
    /// The body or the batch is over a limit (413).
    TooLarge,
    /// The queue is full (429).
    Overloaded,
    /// Wrong or missing API key (401).
    Unauthorized,
    /// The model is not loaded yet (503).
    Unhealthy,
    /// The request waited past the timeout (504).
    Timeout,
    /// The model failed (500).
    Backend,
}

/// An error answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) kind: Kind,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    pub(crate) flavor: Flavor,
    /// Whether the connection closes after this answer (a body left unread).
    pub(crate) close: bool,
}

impl ApiError {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        let status = match kind {
            Kind::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::Empty => StatusCode::BAD_REQUEST,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::Backend => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            kind,
            status,
            message: message.into(),
            flavor: Flavor::Tei,
            close: false,
        }
    }

    /// Malformed JSON: 400 rather than 422.
    pub(crate) fn bad_json(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            ..Self::new(Kind::Validation, message)
        }
    }

    /// The same error under another status (404, 408, 415, 421: statuses the TEI kinds do
    /// not name).
    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn with_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    fn tei_type(&self) -> &'static str {
        match self.kind {
            Kind::Validation | Kind::TooLarge => "Validation",
            Kind::Empty => "Empty",
            Kind::Overloaded => "Overloaded",
            Kind::Unauthorized => "Unauthorized",
            Kind::Unhealthy => "Unhealthy",
            Kind::Timeout | Kind::Backend => "Backend",
        }
    }

    fn openai_type(&self) -> &'static str {
        match self.kind {
            Kind::Validation | Kind::Empty | Kind::TooLarge => "invalid_request_error",
            Kind::Overloaded => "rate_limit_exceeded",
            Kind::Unauthorized => "authentication_error",
            Kind::Unhealthy | Kind::Timeout | Kind::Backend => "server_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.flavor {
            Flavor::Tei => (
                self.status,
                Json(TeiError {
                    error_type: self.tei_type().to_string(),
                    error: self.message,
                }),
            )
                .into_response(),
            Flavor::OpenAi => (
                self.status,
                Json(OpenAiError {
                    error: OpenAiErrorBody {
                        kind: self.openai_type().to_string(),
                        message: self.message,
                        param: None,
                        code: None,
                    },
                }),
            )
                .into_response(),
        };
        if self.close {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if self.kind == Kind::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
