//! The integration tests of the workspace, as one binary (ripgrep style).
//!
//! `families` needs all-mpnet-base-v2 (`models/fetch.sh all-mpnet-base-v2`); `golden` needs
//! the real model (`models/fetch.sh`, or `SBERT_MODEL_DIR`) and the shared
//! fixtures (`../shared`, or `SBERT_SHARED_DIR`); `static_model` needs potion-base-8M
//! (`models/fetch.sh potion-base-8M`); `sparse` needs SPLADE-tiny (`models/fetch.sh
//! splade-tiny`); everything else runs on `models/tiny`.

mod common;

mod applications;

mod bad_input;
mod families;
mod golden;
mod hub_cache;
mod quantization;
mod rerank;
mod senteval;
mod sparse;
mod static_model;
mod sts;
mod tiny_model;
