//! Dynamic batching: requests from every connection wait in one queue; a worker thread takes
//! as many as fit a token budget, tokenizes them, embeds them as one call into the encoder
//! (which sorts and packs them without padding), and hands each request its own rows back.
//!
//! A request whose client has gone (its reply channel closed) is dropped before it costs any
//! encoder time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use sbert::{Prompt, SentenceEmbedder, TokenizedText};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// What a request asks to embed.
#[derive(Debug, Clone)]
pub(crate) enum Inputs {
    /// Texts, tokenized by the model's tokenizer (with its special tokens), after the model's
    /// prompt of the given name, or else its default prompt if it has one.
    Texts(Vec<String>, Option<String>),
    /// Token ids, used as given.
    Ids(Vec<Vec<u32>>),
}

impl Inputs {
    pub(crate) fn len(&self) -> usize {
        match self {
            Inputs::Texts(t, _) => t.len(),
            Inputs::Ids(i) => i.len(),
        }
    }
}

/// Embeddings of one request, in its input order, with the tokens they cost.
#[derive(Debug)]
pub(crate) struct Embedded {
    pub(crate) vectors: Vec<Vec<f32>>,
    pub(crate) tokens: usize,
}

/// Why a request was not embedded.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum EngineError {
    /// The input is at fault (too long with truncation off, bad token ids, tokenizer refusal).
    #[error("{0}")]
    Validation(String),
    /// The model failed.
    #[error("{0}")]
    Backend(String),
}

pub(crate) struct Job {
    inputs: Inputs,
    truncate: bool,
    reply: oneshot::Sender<Result<Embedded, EngineError>>,
    queued: Instant,
}

/// The handle request handlers submit to; the worker thread ends when every handle is gone.
#[derive(Clone)]
pub(crate) struct Engine {
    queue: mpsc::Sender<Job>,
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .finish()
    }
}

impl Engine {
    /// Starts the worker thread over `model`.
    pub(crate) fn start(
        model: Arc<SentenceEmbedder>,
        max_batch_tokens: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        let (queue, jobs) = mpsc::channel::<Job>();
        let depth = Arc::new(AtomicUsize::new(0));
        let worker_depth = depth.clone();
        std::thread::Builder::new()
            .name("sbert-batcher".into())
            .spawn(move || worker(&model, &jobs, max_batch_tokens, &worker_depth, &metrics))
            .expect("spawning the batching thread");
        Self { queue, depth }
    }

    /// Queues `inputs`; the answer comes on the returned channel.
    pub(crate) fn submit(
        &self,
        inputs: Inputs,
        truncate: bool,
    ) -> oneshot::Receiver<Result<Embedded, EngineError>> {
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            inputs,
            truncate,
            reply,
            queued: Instant::now(),
        };
        if let Err(mpsc::SendError(job)) = self.queue.send(job) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            let _ = job.reply.send(Err(EngineError::Backend(
                "the batching thread has stopped".into(),
            )));
        }
        answer
    }

    /// Requests waiting for the worker.
    pub(crate) fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// A job tokenized and ready for a batch.
struct Ready {
    tokenized: Vec<TokenizedText>,
    tokens: usize,
    reply: oneshot::Sender<Result<Embedded, EngineError>>,
    queued: Instant,
}

fn prepare(model: &SentenceEmbedder, job: Job) -> Option<Ready> {
    if job.reply.is_closed() {
        return None;
    }
    let tokenized = match job.inputs {
        Inputs::Texts(texts, name) => {
            match model.tokenize(&texts, Prompt::named_or_default(name.as_deref())) {
                Ok(t) => t,
                Err(e) => {
                    let _ = job.reply.send(Err(EngineError::Validation(e.to_string())));
                    return None;
                }
            }
        }
        Inputs::Ids(ids) => ids
            .into_iter()
            .map(|ids| {
                let truncated = ids.len() > model.max_seq_length();
                TokenizedText {
                    ids,
                    truncated,
                    prompt_tokens: 0,
                }
            })
            .collect(),
    };
    if !job.truncate {
        if let Some(i) = tokenized.iter().position(|t| t.truncated) {
            let _ = job.reply.send(Err(EngineError::Validation(format!(
                "input {i} is longer than the model's limit of {} tokens and truncate is false",
                model.max_seq_length()
            ))));
            return None;
        }
    }
    let mut tokenized = tokenized;
    for t in &mut tokenized {
        t.ids.truncate(model.max_seq_length());
    }
    let tokens = tokenized.iter().map(|t| t.ids.len()).sum();
    Some(Ready {
        tokenized,
        tokens,
        reply: job.reply,
        queued: job.queued,
    })
}

fn worker(
    model: &SentenceEmbedder,
    jobs: &mpsc::Receiver<Job>,
    max_batch_tokens: usize,
    depth: &AtomicUsize,
    metrics: &Metrics,
) {
    let mut carried: Option<Ready> = None;
    loop {
        let mut batch: Vec<Ready> = Vec::new();
        let mut tokens = 0;
        if let Some(r) = carried.take() {
            tokens += r.tokens;
            batch.push(r);
        }
        while batch.is_empty() {
            let Ok(job) = jobs.recv() else { return };
            depth.fetch_sub(1, Ordering::Relaxed);
            if let Some(r) = prepare(model, job) {
                tokens += r.tokens;
                batch.push(r);
            }
        }
        // Fill the budget with whatever else is waiting; a request that does not fit opens
        // the next batch (one request over the budget alone still runs: the encoder splits it).
        while tokens < max_batch_tokens {
            let Ok(job) = jobs.try_recv() else { break };
            depth.fetch_sub(1, Ordering::Relaxed);
            let Some(r) = prepare(model, job) else {
                continue;
            };
            if tokens + r.tokens > max_batch_tokens {
                carried = Some(r);
                break;
            }
            tokens += r.tokens;
            batch.push(r);
        }
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        for r in &batch {
            metrics.observe_queue_time(started.duration_since(r.queued));
        }
        let all: Vec<TokenizedText> = batch
            .iter()
            .flat_map(|r| r.tokenized.iter().cloned())
            .collect();
        metrics.observe_batch(all.len(), tokens);
        let result = embed(model, &all);
        metrics.observe_inference(started.elapsed());
        match result {
            Ok(mut rows) => {
                // Hand rows back from the end so each request's block is split off once.
                for r in batch.into_iter().rev() {
                    let vectors = rows.split_off(rows.len() - r.tokenized.len());
                    let _ = r.reply.send(Ok(Embedded {
                        vectors,
                        tokens: r.tokens,
                    }));
                }
            }
            Err(error) if batch.len() == 1 => {
                let r = batch.pop().expect("one request");
                let _ = r.reply.send(Err(error));
            }
            Err(_) => {
                // One bad request must not fail its neighbours: each alone.
                for r in batch {
                    let result = embed(model, &r.tokenized).map(|vectors| Embedded {
                        vectors,
                        tokens: r.tokens,
                    });
                    let _ = r.reply.send(result);
                }
            }
        }
    }
}

fn embed(
    model: &SentenceEmbedder,
    tokenized: &[TokenizedText],
) -> Result<Vec<Vec<f32>>, EngineError> {
    let unnormalized = sbert::EncodeOptions::default().normalize(false);
    let rows = model
        .embed_tokenized(tokenized, &unnormalized)
        .map(|e| e.to_vecs());
    rows.map_err(|e| match e {
        sbert::Error::InvalidArgument(m) => EngineError::Validation(m),
        other => EngineError::Backend(other.to_string()),
    })
}
