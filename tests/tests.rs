//! The integration tests of the workspace, as one binary (ripgrep style).
//!
//! `golden` needs the real model (`models/fetch.sh`, or `SBERT_MODEL_DIR`) and the shared
//! fixtures (`../shared`, or `SBERT_SHARED_DIR`); everything else runs on `models/tiny`.

mod common;

mod applications;

mod bad_input;
mod golden;
mod hub_cache;
mod senteval;
mod sts;
mod tiny_model;
