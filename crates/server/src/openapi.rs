//! The OpenAPI 3.1 document of every route (`GET /openapi.json`) and a page that lists them
//! (`GET /docs`).

use serde_json::{json, Value};

fn error_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn tei_errors() -> Value {
    json!({
        "400": error_response("Malformed JSON or no inputs", "TeiError"),
        "401": error_response("Missing or wrong API key", "TeiError"),
        "413": error_response("Body or batch over the limit", "TeiError"),
        "422": error_response("The request does not fit the schema, or an input is too long with truncate false", "TeiError"),
        "408": error_response("The body did not arrive within the body timeout", "TeiError"),
        "415": error_response("The body is not application/json", "TeiError"),
        "421": error_response("The Host header is not an allowed host", "TeiError"),
        "429": error_response("Too many concurrent requests", "TeiError"),
        "503": error_response("The model is loading", "TeiError"),
        "504": error_response("No answer within the request timeout", "TeiError")
    })
}

fn with_ok(mut errors: Value, ok: Value) -> Value {
    errors["200"] = ok;
    errors
}

fn json_body(schema: &str) -> Value {
    json!({
        "required": true,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn ok_json(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

/// What the document says of the loaded model, so that every request it calls valid is served.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) prompts: Vec<String>,
    pub(crate) dimension: usize,
    pub(crate) vocab_size: usize,
    pub(crate) max_batch: usize,
}

/// The document for a server that answers to `model_id`; `limits` narrow the schemas once the
/// model is loaded.
pub(crate) fn document(model_id: &str, limits: Option<&Limits>) -> Value {
    let mut doc = base_document();
    doc["components"]["schemas"]["OpenAiRequest"]["properties"]["model"] =
        json!({"enum": [model_id, null]});
    let Some(l) = limits else { return doc };
    let schemas = &mut doc["components"]["schemas"];
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
    schemas["SimilarityRequest"]["properties"]["inputs"]["properties"]["sentences"]["maxItems"] =
        json!(l.max_batch.saturating_sub(1).max(1));
    let ids = json!({
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": l.vocab_size.saturating_sub(1)},
        "minItems": 1,
        "description": "Token ids, used as given; longer than the model's limit, truncated as texts are."
    });
    schemas["OpenAiRequest"]["properties"]["input"] = json!({"oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": l.max_batch},
        ids.clone(),
        {"type": "array", "items": ids, "minItems": 1, "maxItems": l.max_batch}
    ]});
    doc
}

fn base_document() -> Value {
    let vectors = json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}});
    let mut openai_errors = tei_errors();
    for code in [
        "400", "401", "408", "413", "415", "421", "422", "429", "503", "504",
    ] {
        openai_errors[code]["content"]["application/json"]["schema"]["$ref"] =
            json!("#/components/schemas/OpenAiError");
    }
    openai_errors["404"] = error_response(
        "`model` names a model this server does not serve",
        "OpenAiError",
    );
    let embed = json!({
        "summary": "Embed texts (TEI)",
        "requestBody": json_body("EmbedRequest"),
        "responses": with_ok(tei_errors(), ok_json("One vector per input, in order", vectors.clone()))
    });
    let mut embed_alias = embed.clone();
    embed_alias["summary"] =
        json!("Alias of /embed (what TEI clients post to a bare endpoint URL)");
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sbert embedding server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Sentence embeddings with text-embeddings-inference and OpenAI compatible routes."
        },
        "paths": {
            "/embed": {"post": embed.clone()},
            "/": {"post": embed_alias},
            "/similarity": {"post": {
                "summary": "Cosine similarity of a source sentence to each of several sentences (TEI)",
                "requestBody": json_body("SimilarityRequest"),
                "responses": with_ok(tei_errors(), ok_json("One score per sentence", json!({"type": "array", "items": {"type": "number"}})))
            }},
            "/tokenize": {"post": {
                "summary": "Tokenize texts (TEI)",
                "requestBody": json_body("TokenizeRequest"),
                "responses": with_ok(tei_errors(), ok_json("Tokens per input", json!({"type": "array", "items": {"type": "array", "items": {"$ref": "#/components/schemas/Token"}}})))
            }},
            "/v1/embeddings": {"post": {
                "summary": "Embed texts or token ids (OpenAI)",
                "requestBody": json_body("OpenAiRequest"),
                "responses": with_ok(openai_errors.clone(), ok_json("Embeddings", json!({"$ref": "#/components/schemas/OpenAiResponse"})))
            }},
            "/embeddings": {"post": {
                "summary": "Alias of /v1/embeddings",
                "requestBody": json_body("OpenAiRequest"),
                "responses": with_ok(openai_errors, ok_json("Embeddings", json!({"$ref": "#/components/schemas/OpenAiResponse"})))
            }},
            "/info": {"get": {
                "summary": "Model and server limits (TEI)",
                "responses": {
                    "200": ok_json("Information", json!({"$ref": "#/components/schemas/Info"})),
                    "401": error_response("Missing or wrong API key", "TeiError"),
                    "503": error_response("The model is loading", "TeiError")
                }
            }},
            "/health": {"get": {
                "summary": "200 once the model is loaded",
                "responses": {
                    "200": ok_json("Ready", json!({"type": "object"})),
                    "503": error_response("The model is loading", "TeiError")
                }
            }},
            "/metrics": {"get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": error_response("Missing or wrong API key", "TeiError")
                }
            }},
            "/openapi.json": {"get": {
                "summary": "This document",
                "responses": {
                    "200": ok_json("OpenAPI document", json!({"type": "object"})),
                    "401": error_response("Missing or wrong API key", "TeiError")
                }
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Input": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}}
                ]},
                "EmbedRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "inputs": {"$ref": "#/components/schemas/Input"},
                        "normalize": {"type": ["boolean", "null"], "default": true},
                        "truncate": {"type": ["boolean", "null"], "default": true},
                        "truncation_direction": {"type": ["string", "null"], "enum": ["Right", "right", null]},
                        "dimensions": {"type": ["integer", "null"], "minimum": 1},
                        "prompt_name": {"type": ["string", "null"]}
                    }
                },
                "SimilarityRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "inputs": {
                            "type": "object",
                            "required": ["source_sentence", "sentences"],
                            "properties": {
                                "source_sentence": {"type": "string"},
                                "sentences": {"type": "array", "items": {"type": "string"}, "minItems": 1}
                            }
                        },
                        "truncate": {"type": ["boolean", "null"], "default": true},
                        "truncation_direction": {"type": ["string", "null"], "enum": ["Right", "right", null]},
                        "prompt_name": {"type": ["string", "null"]}
                    }
                },
                "TokenizeRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "inputs": {"$ref": "#/components/schemas/Input"},
                        "add_special_tokens": {"type": ["boolean", "null"], "default": true},
                        "prompt_name": {"type": ["string", "null"]}
                    }
                },
                "Token": {
                    "type": "object",
                    "required": ["id", "text", "special", "start", "stop"],
                    "properties": {
                        "id": {"type": "integer"},
                        "text": {"type": "string"},
                        "special": {"type": "boolean"},
                        "start": {"type": ["integer", "null"]},
                        "stop": {"type": ["integer", "null"]}
                    }
                },
                "OpenAiRequest": {
                    "type": "object",
                    "required": ["input"],
                    "properties": {
                        "input": {"oneOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                            {"type": "array", "items": {"type": "integer", "minimum": 0}},
                            {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0}}}
                        ]},
                        "model": {"type": ["string", "null"]},
                        "encoding_format": {"type": ["string", "null"], "enum": ["float", "base64", null]},
                        "dimensions": {"type": ["integer", "null"], "minimum": 1},
                        "user": {"type": ["string", "null"]}
                    }
                },
                "OpenAiResponse": {
                    "type": "object",
                    "required": ["object", "data", "model", "usage"],
                    "properties": {
                        "object": {"const": "list"},
                        "data": {"type": "array", "items": {
                            "type": "object",
                            "required": ["object", "index", "embedding"],
                            "properties": {
                                "object": {"const": "embedding"},
                                "index": {"type": "integer"},
                                "embedding": {"oneOf": [
                                    {"type": "array", "items": {"type": "number"}},
                                    {"type": "string"}
                                ]}
                            }
                        }},
                        "model": {"type": "string"},
                        "usage": {
                            "type": "object",
                            "required": ["prompt_tokens", "total_tokens"],
                            "properties": {
                                "prompt_tokens": {"type": "integer"},
                                "total_tokens": {"type": "integer"}
                            }
                        }
                    }
                },
                "Info": {
                    "type": "object",
                    "required": ["model_id", "max_input_length", "max_batch_tokens", "max_client_batch_size", "max_concurrent_requests", "version"],
                    "properties": {
                        "model_id": {"type": "string"},
                        "model_dtype": {"type": "string"},
                        "max_input_length": {"type": "integer"},
                        "max_batch_tokens": {"type": "integer"},
                        "max_client_batch_size": {"type": "integer"},
                        "max_concurrent_requests": {"type": "integer"},
                        "dimension": {"type": "integer"},
                        "version": {"type": "string"}
                    }
                },
                "TeiError": {
                    "type": "object",
                    "required": ["error", "error_type"],
                    "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}
                },
                "OpenAiError": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {
                        "type": "object",
                        "required": ["message", "type"],
                        "properties": {
                            "message": {"type": "string"},
                            "type": {"type": "string"},
                            "param": {"type": ["string", "null"]},
                            "code": {"type": ["string", "null"]}
                        }
                    }}
                }
            }
        }
    })
}

/// `GET /docs`: the routes, with a link to the document.
pub(crate) const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sbert embedding server</title>
<style>body{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}code{background:#f3f3f3;padding:0 .2em}</style>
</head><body>
<h1>sbert embedding server</h1>
<p>The full description of every route is the OpenAPI document at <a href="/openapi.json"><code>/openapi.json</code></a>.</p>
<h2>text-embeddings-inference routes</h2>
<ul>
<li><code>POST /embed</code> <code>{"inputs": "text" | ["text", …], "normalize": true, "truncate": true, "dimensions": null, "prompt_name": null}</code> → <code>[[f32, …], …]</code></li>
<li><code>POST /similarity</code> <code>{"inputs": {"source_sentence": "…", "sentences": ["…"]}}</code> → <code>[f32, …]</code></li>
<li><code>POST /tokenize</code> <code>{"inputs": "text", "add_special_tokens": true}</code> → tokens with ids and offsets</li>
<li><code>GET /info</code>, <code>GET /health</code>, <code>GET /metrics</code> (Prometheus)</li>
</ul>
<h2>OpenAI route</h2>
<ul>
<li><code>POST /v1/embeddings</code> <code>{"input": "text" | ["text"] | [ids] | [[ids]], "model": "…", "encoding_format": "float" | "base64", "dimensions": null}</code></li>
</ul>
<p>Example: <code>curl -s localhost:8080/embed -H 'content-type: application/json' -d '{"inputs": "A man is eating food."}'</code></p>
</body></html>
"#;
