//! In-process sentence-transformer embeddings with candle (BERT family).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::vector::l2_normalize;
use crate::{EmbedError, Embedder};

/// Default number of texts per forward pass.
pub(crate) const DEFAULT_LOCAL_BATCH: usize = 32;

/// Options of [`LocalEmbedder::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Texts per forward pass (default 32). Texts are sorted by length before batching so
    /// that a batch pads little.
    pub batch_size: Option<usize>,
    /// Maximum tokens per text, including `[CLS]`/`[SEP]`; longer texts are truncated.
    /// Default: `max_seq_length` of `sentence_bert_config.json`, else the model's
    /// `max_position_embeddings`, capped by the latter.
    pub max_length: Option<usize>,
    /// The model's name in its model id (`local:{name}`). Default: the directory's name.
    pub model_name: Option<String>,
    /// Text put before every input, for models trained with one (E5: `query: `).
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pooling {
    Mean,
    Cls,
    Max,
    MeanSqrtLen,
}

#[derive(Debug, Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Debug, Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

struct Inner {
    /// Serialises forward passes: candle already uses every core for one batch, so
    /// concurrent requests would only contend for them (and multiply memory).
    gate: std::sync::Mutex<()>,
    model: BertModel,
    tokenizer: Tokenizer,
    pooling: Pooling,
    device: Device,
    pad_id: u32,
    batch_size: usize,
    prefix: String,
}

/// A BERT sentence-transformer (all-MiniLM-L6-v2, bge-small, e5-small, …) run in-process
/// with candle on the CPU (`local`).
///
/// The model directory holds `config.json` (a BERT config), `model.safetensors` and
/// `tokenizer.json`; `sentence_bert_config.json` (maximum sequence length) and
/// `1_Pooling/config.json` (pooling mode: mean by default, or CLS, max, mean-sqrt-len) are
/// read when present. Output vectors are pooled over the attention mask and L2-normalised.
/// Nothing is downloaded: the files must be on disk.
///
/// Inference runs in batches on tokio's blocking pool (`spawn_blocking`), so it never stalls
/// the async runtime. The model id is `local:{name}`.
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
    model_id: String,
    dimension: usize,
    max_length: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.dimension)
            .field("max_length", &self.max_length)
            .field("batch_size", &self.inner.batch_size)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn load_err(path: &Path, message: impl std::fmt::Display) -> EmbedError {
    EmbedError::ModelLoad {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|e| load_err(path, e))?;
    serde_json::from_str(&text).map_err(|e| load_err(path, e))
}

fn infer_err(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Inference(e.to_string())
}

impl LocalEmbedder {
    /// Loads the model in `dir` with default options (synchronous: reads ~100 MB for MiniLM).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        Self::load_with(dir, LocalOptions::default())
    }

    /// Loads the model in `dir` with the given options.
    pub fn load_with(dir: impl AsRef<Path>, options: LocalOptions) -> Result<Self, EmbedError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(load_err(dir, "not a directory"));
        }
        let config_path = dir.join("config.json");
        let config: BertConfig = read_json(&config_path)?;
        if let Some(model_type) = &config.model_type
            && !matches!(model_type.as_str(), "bert")
        {
            return Err(load_err(
                &config_path,
                format!("model_type '{model_type}' is not supported (BERT only)"),
            ));
        }

        let pooling = read_pooling(dir)?;
        let st_max = {
            let path = dir.join("sentence_bert_config.json");
            if path.is_file() {
                read_json::<SentenceBertConfig>(&path)?.max_seq_length
            } else {
                None
            }
        };
        let max_length = options
            .max_length
            .or(st_max)
            .unwrap_or(config.max_position_embeddings)
            .min(config.max_position_embeddings);
        if max_length < 2 {
            return Err(load_err(
                dir,
                format!("max_length {max_length} is too small"),
            ));
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| load_err(&tokenizer_path, e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| load_err(&tokenizer_path, e))?;
        let pad_id = tokenizer
            .token_to_id("[PAD]")
            .unwrap_or(u32::try_from(config.pad_token_id).unwrap_or(0));

        let weights_path = dir.join("model.safetensors");
        let bytes = std::fs::read(&weights_path).map_err(|e| load_err(&weights_path, e))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| load_err(&weights_path, e))?;
        let model = BertModel::load(vb, &config).map_err(|e| load_err(&weights_path, e))?;

        let name = match options.model_name {
            Some(name) if !name.trim().is_empty() => name,
            _ => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned()),
        };
        let batch_size = options.batch_size.unwrap_or(DEFAULT_LOCAL_BATCH).max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                gate: std::sync::Mutex::new(()),
                model,
                tokenizer,
                pooling,
                device,
                pad_id,
                batch_size,
                prefix: options.prefix.unwrap_or_default(),
            }),
            model_id: format!("local:{name}"),
            dimension: config.hidden_size,
            max_length,
            dir: dir.to_path_buf(),
        })
    }

    /// Maximum tokens per text (longer texts are truncated).
    #[must_use]
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Embeds synchronously on the calling thread (what [`Embedder::embed`] runs on the
    /// blocking pool). Use from non-async code only.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.inner.embed(texts)
    }
}

fn read_pooling(dir: &Path) -> Result<Pooling, EmbedError> {
    let path = dir.join("1_Pooling").join("config.json");
    if !path.is_file() {
        return Ok(Pooling::Mean);
    }
    let cfg: PoolingConfig = read_json(&path)?;
    let modes = [
        (cfg.pooling_mode_mean_tokens, Pooling::Mean),
        (cfg.pooling_mode_cls_token, Pooling::Cls),
        (cfg.pooling_mode_max_tokens, Pooling::Max),
        (cfg.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
    ];
    let enabled: Vec<Pooling> = modes.iter().filter(|(on, _)| *on).map(|m| m.1).collect();
    match enabled.as_slice() {
        [] => Ok(Pooling::Mean),
        [one] => Ok(*one),
        _ => Err(load_err(
            &path,
            "several pooling modes at once are not supported",
        )),
    }
}

impl Inner {
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let prefixed: Vec<String>;
        let inputs: Vec<&str> = if self.prefix.is_empty() {
            texts.iter().map(String::as_str).collect()
        } else {
            prefixed = texts
                .iter()
                .map(|t| format!("{}{t}", self.prefix))
                .collect();
            prefixed.iter().map(String::as_str).collect()
        };
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(infer_err)?;
        // Sort by length so that each batch pads as little as possible.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let _running = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for batch in order.chunks(self.batch_size) {
            let vectors = self.forward_batch(batch.iter().map(|&i| &encodings[i]))?;
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward_batch<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = &'a tokenizers::Encoding> + Clone,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let rows = batch.len();
        let width = batch
            .clone()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = Vec::with_capacity(rows * width);
        let mut types = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for enc in batch {
            let n = enc.get_ids().len();
            ids.extend_from_slice(enc.get_ids());
            types.extend_from_slice(enc.get_type_ids());
            mask.extend(std::iter::repeat_n(1u32, n));
            ids.extend(std::iter::repeat_n(self.pad_id, width - n));
            types.extend(std::iter::repeat_n(0u32, width - n));
            mask.extend(std::iter::repeat_n(0u32, width - n));
        }
        let ids = Tensor::from_vec(ids, (rows, width), &self.device).map_err(infer_err)?;
        let types = Tensor::from_vec(types, (rows, width), &self.device).map_err(infer_err)?;
        let mask = Tensor::from_vec(mask, (rows, width), &self.device).map_err(infer_err)?;
        let hidden = self
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(infer_err)?;
        let pooled = pool(&hidden, &mask, self.pooling).map_err(infer_err)?;
        let mut vectors = pooled.to_vec2::<f32>().map_err(infer_err)?;
        for v in &mut vectors {
            l2_normalize(v);
        }
        Ok(vectors)
    }
}

/// Pools `(batch, seq, hidden)` token states into `(batch, hidden)` over the attention mask.
fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, s, 1)
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?; // (b, h)
            let counts = mask_f.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
            let denom = if pooling == Pooling::Mean {
                counts
            } else {
                counts.sqrt()?
            };
            summed.broadcast_div(&denom)
        }
        Pooling::Max => {
            // Padding positions get a large negative value so they never win the max.
            let penalty = ((mask_f.ones_like()? - &mask_f)? * -1e9f64)?;
            hidden.broadcast_add(&penalty)?.max(1)
        }
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || inner.embed(&texts))
            .await
            .map_err(|e| EmbedError::Inference(format!("embedding task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_a_load_error() {
        let err = LocalEmbedder::load("/nonexistent/cortex-model").unwrap_err();
        assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err}");
    }

    #[test]
    fn directory_without_weights_is_a_load_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
                "hidden_dropout_prob": 0.1, "max_position_embeddings": 16,
                "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
                "pad_token_id": 0, "model_type": "bert"}"#,
        )
        .unwrap();
        let err = LocalEmbedder::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn pooling_masks_padding() {
        let dev = Device::Cpu;
        // batch 1, seq 3, hidden 2; last position is padding with huge values.
        let hidden =
            Tensor::from_vec(vec![1f32, 2., 3., 4., 100., -100.], (1, 3, 2), &dev).unwrap();
        let mask = Tensor::from_vec(vec![1u32, 1, 0], (1, 3), &dev).unwrap();
        let mean = pool(&hidden, &mask, Pooling::Mean)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(mean, vec![vec![2.0, 3.0]]);
        let max = pool(&hidden, &mask, Pooling::Max)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(max, vec![vec![3.0, 4.0]]);
        let cls = pool(&hidden, &mask, Pooling::Cls)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(cls, vec![vec![1.0, 2.0]]);
        let sqrt = pool(&hidden, &mask, Pooling::MeanSqrtLen)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let s2 = 2f32.sqrt();
        assert!((sqrt[0][0] - 4.0 / s2).abs() < 1e-5 && (sqrt[0][1] - 6.0 / s2).abs() < 1e-5);
    }
}
