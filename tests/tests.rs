//! The integration tests of the workspace, as one binary (ripgrep style).
//!
//! `families` needs all-mpnet-base-v2 (`models/fetch.sh all-mpnet-base-v2`); `golden` needs
//! the real model (`models/fetch.sh`, or `SBERT_MODEL_DIR`) and the shared
//! fixtures (`../shared`, or `SBERT_SHARED_DIR`); everything else runs on `models/tiny`.

mod common;

mod applications;

mod bad_input;
mod families;
mod golden;
mod hub_cache;
mod quantization;
mod senteval;
mod sts;
mod tiny_model;
