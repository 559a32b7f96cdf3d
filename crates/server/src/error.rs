//! Errors in each API's own shape: TEI's `{"error", "error_type"}` and OpenAI's
//! `{"error": {"message", "type", "param", "code"}}`, with a status that says what happened.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
        let body = match self.flavor {
            Flavor::Tei => json!({"error": self.message, "error_type": self.tei_type()}),
            Flavor::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.openai_type(),
                "param": null,
                "code": null,
            }}),
        };
        let mut response = (self.status, Json(body)).into_response();
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
