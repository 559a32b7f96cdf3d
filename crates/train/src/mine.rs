//! Hard-negative mining: for each (anchor, positive) pair, the corpus texts most similar to the
//! anchor that are not its positives, with the semantics of sentence-transformers'
//! `util.mine_hard_negatives` (exact cosine search).

use std::collections::HashMap;

use rand::seq::IndexedRandom;
use rand::SeedableRng;
use sbert::{DType, TextEmbedder};

use crate::data::PairExample;
use crate::{Result, TrainError};

/// How candidates are picked from the ranked window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// The most similar candidates of the window (sentence-transformers' default).
    Top,
    /// A seeded random sample of the window, then sorted by similarity.
    Random {
        /// The sampler's seed.
        seed: u64,
    },
}

/// The settings of [`mine_hard_negatives`]; defaults are sentence-transformers'.
#[derive(Debug, Clone, PartialEq)]
pub struct MineOptions {
    /// Skip this many of the most similar candidates (0): they may be unlabelled positives.
    pub range_min: usize,
    /// Consider candidates up to this rank. Default: `range_min + num_negatives` plus the
    /// most positives any anchor has, ten times the negatives with a margin or a maximum score.
    pub range_max: Option<usize>,
    /// A negative must score at least this much below the anchor's (least similar) positive.
    pub absolute_margin: Option<f64>,
    /// A negative must score below `positive − |positive| · relative_margin`.
    pub relative_margin: Option<f64>,
    /// A negative must score at most this.
    pub max_score: Option<f64>,
    /// A negative must score at least this.
    pub min_score: Option<f64>,
    /// Negatives per anchor (3).
    pub num_negatives: usize,
    /// How the negatives are picked from the window.
    pub sampling: Sampling,
}

impl Default for MineOptions {
    fn default() -> Self {
        Self {
            range_min: 0,
            range_max: None,
            absolute_margin: None,
            relative_margin: None,
            max_score: None,
            min_score: None,
            num_negatives: 3,
            sampling: Sampling::Top,
        }
    }
}

/// What [`mine_hard_negatives`] found.
#[derive(Debug, Clone)]
pub struct Mined {
    /// One (anchor, positive, negative) row per negative found, pair by pair in input order.
    pub triplets: Vec<PairExample>,
    /// Pairs that got fewer than `num_negatives` negatives (the filters left too few).
    pub short: usize,
}

/// Mines hard negatives for `pairs` (query and positive; a negative there is ignored) from
/// `corpus` and the positives (each distinct text once): for each distinct anchor, the corpus
/// is ranked by cosine similarity, the anchor itself and its positives are left out, the margin
/// and score filters applied, and the negatives taken from ranks `range_min..range_max`.
///
/// # Errors
/// On no pairs, `num_negatives` of 0, a window that cannot hold `num_negatives`, a score or
/// margin that is not a number, or when encoding fails.
pub fn mine_hard_negatives(
    model: &(impl TextEmbedder + ?Sized),
    pairs: &[PairExample],
    corpus: &[String],
    options: &MineOptions,
) -> Result<Mined> {
    mine(model, pairs, corpus, None, options)
}

/// [`mine_hard_negatives`] over a corpus embedded already (an index's texts and stored
/// embeddings, `(corpus.len(), dim)`, by the same model): only the anchors and the positives
/// missing from it are embedded.
///
/// # Errors
/// As [`mine_hard_negatives`], and when the embeddings do not have one row per corpus text
/// or the model's width.
pub fn mine_hard_negatives_embedded(
    model: &(impl TextEmbedder + ?Sized),
    pairs: &[PairExample],
    corpus: &[String],
    embeddings: &sbert::Tensor,
    options: &MineOptions,
) -> Result<Mined> {
    if embeddings.dims2()?.0 != corpus.len() {
        return Err(TrainError::Invalid(format!(
            "{} corpus embeddings for {} texts",
            embeddings.dims2()?.0,
            corpus.len()
        )));
    }
    mine(model, pairs, corpus, Some(embeddings), options)
}

fn mine(
    model: &(impl TextEmbedder + ?Sized),
    pairs: &[PairExample],
    corpus: &[String],
    embedded: Option<&sbert::Tensor>,
    options: &MineOptions,
) -> Result<Mined> {
    let invalid = |m: String| Err(TrainError::Invalid(m));
    if pairs.is_empty() {
        return invalid("no (anchor, positive) pairs to mine negatives for".into());
    }
    if options.num_negatives == 0 {
        return invalid("the number of negatives must be at least 1".into());
    }
    let numbers = [
        options.absolute_margin,
        options.relative_margin,
        options.max_score,
        options.min_score,
    ];
    if numbers.iter().flatten().any(|x| !x.is_finite()) {
        return invalid("margins and score limits must be numbers".into());
    }
    // Distinct anchors with their positives; the corpus: the given texts, then the positives.
    let mut corpus_ids: HashMap<&str, usize> = HashMap::new();
    let mut texts: Vec<&str> = Vec::new();
    // The row of `corpus` of each distinct given text (the first of a repeated one).
    let mut given_rows: Vec<u32> = Vec::new();
    for (row, t) in corpus
        .iter()
        .map(String::as_str)
        .chain(pairs.iter().map(|p| p.positive.as_str()))
        .enumerate()
    {
        corpus_ids.entry(t).or_insert_with(|| {
            if row < corpus.len() {
                given_rows.push(row as u32);
            }
            texts.push(t);
            texts.len() - 1
        });
    }
    let mut anchor_ids: HashMap<&str, usize> = HashMap::new();
    let mut anchors: Vec<&str> = Vec::new();
    let mut positives: Vec<Vec<usize>> = Vec::new();
    for p in pairs {
        let a = *anchor_ids.entry(p.query.as_str()).or_insert_with(|| {
            anchors.push(p.query.as_str());
            positives.push(Vec::new());
            anchors.len() - 1
        });
        let c = corpus_ids[p.positive.as_str()];
        if !positives[a].contains(&c) {
            positives[a].push(c);
        }
    }
    let most_positives = positives.iter().map(Vec::len).max().unwrap_or(0);
    let filtered = options.absolute_margin.is_some()
        || options.relative_margin.is_some()
        || options.max_score.is_some();
    let range_max = options.range_max.unwrap_or(
        options.range_min + options.num_negatives * if filtered { 10 } else { 1 } + most_positives,
    );
    if options.range_min >= range_max {
        return invalid(format!(
            "range_min {} must be below range_max {range_max}",
            options.range_min
        ));
    }
    if options.num_negatives > range_max - options.range_min {
        return invalid(format!(
            "cannot mine {} negatives from ranks {}..{range_max}",
            options.num_negatives, options.range_min
        ));
    }

    let embed = |t: &[&str]| -> Result<sbert::Tensor> {
        Ok(sbert::normalize(
            &model.embed_texts(t)?.to_dtype(DType::F32)?,
        )?)
    };
    let corpus_e = match embedded {
        None => embed(&texts)?,
        Some(known) => {
            // The given corpus comes first in `texts`.
            let rows = sbert::Tensor::new(given_rows.as_slice(), known.device())?;
            let known = known.index_select(&rows, 0)?;
            let known = sbert::normalize(&known.to_dtype(DType::F32)?)?;
            let given = known.dim(0)?;
            if given == texts.len() {
                known
            } else {
                let rest = embed(&texts[given..])?;
                if rest.dim(1)? != known.dim(1)? {
                    return Err(TrainError::Invalid(format!(
                        "the corpus embeddings have {} dimensions, the model's {}",
                        known.dim(1)?,
                        rest.dim(1)?
                    )));
                }
                sbert::Tensor::cat(&[&known, &rest], 0)?
            }
        }
    };
    let mut negatives: Vec<Vec<usize>> = Vec::with_capacity(anchors.len());
    let mut rng = match options.sampling {
        Sampling::Random { seed } => Some(rand::rngs::StdRng::seed_from_u64(seed)),
        Sampling::Top => None,
    };
    const CHUNK: usize = 256;
    for (c, chunk) in anchors.chunks(CHUNK).enumerate() {
        let scores: Vec<Vec<f32>> = embed(chunk)?.matmul(&corpus_e.t()?)?.to_vec2()?;
        for (i, row) in scores.iter().enumerate() {
            let a = c * CHUNK + i;
            let own = &positives[a];
            let itself = corpus_ids.get(anchors[a]).copied();
            // The least similar positive bounds the margins.
            let positive = own
                .iter()
                .map(|&p| f64::from(row[p]))
                .fold(f64::INFINITY, f64::min);
            let keep = |id: usize, s: f64| {
                Some(id) != itself
                    && !own.contains(&id)
                    && options.absolute_margin.is_none_or(|m| s + m <= positive)
                    && options
                        .relative_margin
                        .is_none_or(|m| s <= positive - positive.abs() * m)
                    && options.max_score.is_none_or(|m| s <= m)
                    && options.min_score.is_none_or(|m| s >= m)
            };
            let mut ranked: Vec<(usize, f64)> = row
                .iter()
                .enumerate()
                .map(|(id, &s)| (id, f64::from(s)))
                .filter(|&(id, s)| keep(id, s))
                .collect();
            ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            let window: Vec<(usize, f64)> = ranked
                .into_iter()
                .skip(options.range_min)
                .take(range_max - options.range_min)
                .collect();
            let mut picked: Vec<(usize, f64)> = match rng.as_mut() {
                None => window.into_iter().take(options.num_negatives).collect(),
                Some(rng) => window
                    .choose_multiple(rng, options.num_negatives)
                    .copied()
                    .collect(),
            };
            picked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            negatives.push(picked.into_iter().map(|(id, _)| id).collect());
        }
    }
    let mut triplets = Vec::new();
    let mut short = 0;
    for p in pairs {
        let found = &negatives[anchor_ids[p.query.as_str()]];
        if found.len() < options.num_negatives {
            short += 1;
        }
        triplets.extend(found.iter().map(|&n| PairExample {
            query: p.query.clone(),
            positive: p.positive.clone(),
            negative: Some(texts[n].to_string()),
        }));
    }
    Ok(Mined { triplets, short })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> sbert::SentenceEmbedder {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        sbert::SentenceEmbedder::from_dir(dir, &sbert::Device::Cpu).expect("tiny")
    }

    fn pair(q: &str, p: &str) -> PairExample {
        PairExample {
            query: q.into(),
            positive: p.into(),
            negative: None,
        }
    }

    /// Negatives are the most similar corpus texts that are neither the anchor nor one of its
    /// positives, in similarity order; the margin and window settings filter as documented.
    #[test]
    fn negatives_are_the_closest_non_positives() {
        let model = tiny();
        let pairs = vec![
            pair("the cat sat on the mat", "a cat is sitting on a mat"),
            pair("the cat sat on the mat", "the cat sits"),
            pair("a man plays guitar", "a man is playing music"),
        ];
        let corpus: Vec<String> = [
            "the dog sat on the mat",
            "a cat on a rug",
            "stocks fell sharply",
            "the cat sat on the mat",
            "a cat on a rug",
            "a woman plays the piano",
        ]
        .map(String::from)
        .to_vec();
        let options = MineOptions {
            num_negatives: 2,
            ..MineOptions::default()
        };
        let mined = mine_hard_negatives(&model, &pairs, &corpus, &options).expect("mine");
        assert_eq!(mined.triplets.len(), 6);
        assert_eq!(mined.short, 0);
        // Reference: rank the corpus by cosine for each anchor, by hand.
        let texts: Vec<String> = corpus
            .iter()
            .cloned()
            .chain(pairs.iter().map(|p| p.positive.clone()))
            .collect();
        let cos = |a: &str, b: &str| {
            let e = sbert::normalize(&model.embed_texts(&[a, b]).expect("e")).expect("n");
            let v: Vec<Vec<f32>> = e.to_vec2().expect("v");
            v[0].iter().zip(&v[1]).map(|(x, y)| x * y).sum::<f32>()
        };
        for (k, p) in pairs.iter().enumerate() {
            let own: Vec<&str> = pairs
                .iter()
                .filter(|q| q.query == p.query)
                .map(|q| q.positive.as_str())
                .collect();
            let mut ranked: Vec<(&str, f32)> = texts
                .iter()
                .map(String::as_str)
                .filter(|t| *t != p.query && !own.contains(t))
                .map(|t| (t, cos(&p.query, t)))
                .collect();
            ranked.sort_by(|x, y| y.1.total_cmp(&x.1));
            ranked.dedup_by(|x, y| x.0 == y.0);
            let got: Vec<&str> = mined.triplets[2 * k..2 * k + 2]
                .iter()
                .map(|t| t.negative.as_deref().expect("negative"))
                .collect();
            let want: Vec<&str> = ranked.iter().take(2).map(|r| r.0).collect();
            assert_eq!(got, want, "pair {k}");
            assert!(mined.triplets[2 * k].positive == p.positive);
        }

        // A margin of 2 (cosines lie in [−1, 1]) leaves nothing: every pair comes up short.
        let strict = MineOptions {
            absolute_margin: Some(2.0),
            ..options.clone()
        };
        let mined = mine_hard_negatives(&model, &pairs, &corpus, &strict).expect("mine");
        assert!(mined.triplets.is_empty());
        assert_eq!(mined.short, 3);
        // Skipping the closest candidate shifts the window by one.
        let skip = MineOptions {
            range_min: 1,
            num_negatives: 1,
            ..MineOptions::default()
        };
        let top2 = mine_hard_negatives(&model, &pairs[2..], &corpus, &options).expect("mine");
        let shifted = mine_hard_negatives(&model, &pairs[2..], &corpus, &skip).expect("mine");
        assert_eq!(shifted.triplets[0].negative, top2.triplets[1].negative);
        // Over the corpus embedded beforehand (as an index stores it): the same negatives.
        let stored = model
            .embed_texts(&corpus.iter().map(String::as_str).collect::<Vec<_>>())
            .expect("embed");
        let embedded =
            mine_hard_negatives_embedded(&model, &pairs, &corpus, &stored, &options).expect("mine");
        let plain = mine_hard_negatives(&model, &pairs, &corpus, &options).expect("mine");
        let negatives = |m: &Mined| -> Vec<Option<String>> {
            m.triplets.iter().map(|t| t.negative.clone()).collect()
        };
        assert_eq!(negatives(&embedded), negatives(&plain));
        let bad = MineOptions {
            range_min: 5,
            range_max: Some(5),
            ..MineOptions::default()
        };
        assert!(mine_hard_negatives(&model, &pairs, &corpus, &bad).is_err());
    }
}
