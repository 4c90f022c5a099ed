//! Named embedders built from configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::hash::DEFAULT_HASH_DIMENSION;
use crate::local::{DEFAULT_LOCAL_BATCH, LocalOptions};
use crate::{
    CohereEmbedder, DEFAULT_MEMO_QUERIES, EmbedError, Embedder, HashEmbedder, LocalEmbedder,
    Memoized, OpenAiEmbedder, UnknownEmbedder,
};

/// The name of the built-in hash embedder, always available.
pub const HASH_NAME: &str = "hash";
/// The default embedding model name used by the documents' API (`embedding_model`).
pub const DOCUMENTS_DEFAULT_NAME: &str = "bge-m3";

/// The `embeddings` section of the server configuration.
///
/// ```toml
/// [embeddings]
/// default = "local"                 # optional; default "hash"
///
/// [embeddings.models.local]
/// kind = "local"
/// path = "/models/all-MiniLM-L6-v2"
/// model_name = "all-MiniLM-L6-v2"   # optional, default: the directory name
///
/// [embeddings.models.openai]
/// kind = "openai"
/// base_url = "http://tei:8080/v1"   # optional, default https://api.openai.com/v1
/// api_key_env = "OPENAI_API_KEY"    # or api_key = "..."; optional
/// model = "text-embedding-3-small"
///
/// [embeddings.aliases]
/// bge-m3 = "local"                  # optional; bge-m3 defaults to the default model
/// ```
///
/// With nothing configured the registry holds `hash` (384 dimensions) and `bge-m3` is an
/// alias of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// The name used when a request names no model (a model or an alias). Default: `hash`.
    #[serde(default)]
    pub default: Option<String>,
    /// Named embedders.
    #[serde(default)]
    pub models: BTreeMap<String, EmbedderConfig>,
    /// Extra names for configured models (`alias = "model name"`).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
}

/// One named embedder, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EmbedderConfig {
    /// The built-in lexical [`HashEmbedder`].
    Hash(HashConfig),
    /// A sentence-transformer directory run in-process ([`LocalEmbedder`]).
    Local(LocalConfig),
    /// An OpenAI-compatible `/embeddings` endpoint ([`OpenAiEmbedder`]).
    #[serde(rename = "openai")]
    OpenAi(OpenAiConfig),
    /// Cohere's `/v2/embed` ([`CohereEmbedder`]).
    Cohere(CohereConfig),
}

/// Configuration of a [`HashEmbedder`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashConfig {
    /// Vector dimension (default 384, at least 8).
    #[serde(default = "default_hash_dimension")]
    pub dimension: usize,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self {
            dimension: DEFAULT_HASH_DIMENSION,
        }
    }
}

fn default_hash_dimension() -> usize {
    DEFAULT_HASH_DIMENSION
}

/// Configuration of a [`LocalEmbedder`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Directory with `config.json`, `model.safetensors`, `tokenizer.json`.
    pub path: PathBuf,
    /// Name in the model id `local:{model_name}` (default: the directory's name).
    #[serde(default)]
    pub model_name: Option<String>,
    /// Texts per forward pass (default 32).
    #[serde(default = "default_local_batch")]
    pub batch_size: usize,
    /// Token limit per text (default: the model's `max_seq_length`).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Text put before every input, for models trained with one: `"query: "` for the E5
    /// family (questions compared with questions, and with passages).
    #[serde(default)]
    pub prefix: Option<String>,
}

fn default_local_batch() -> usize {
    DEFAULT_LOCAL_BATCH
}

/// Configuration of an [`OpenAiEmbedder`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// API base, without `/embeddings` (default `https://api.openai.com/v1`).
    #[serde(default = "default_openai_base")]
    pub base_url: String,
    /// The API key (sent as a bearer token). Prefer `api_key_env`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key; it must be set when given.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The provider's model name, e.g. `text-embedding-3-small` or `BAAI/bge-m3`.
    pub model: String,
    /// Output dimension; required unless the model is a known OpenAI model.
    #[serde(default)]
    pub dimension: Option<usize>,
    /// Send `dimensions` in the request (OpenAI `text-embedding-3-*` shortening).
    #[serde(default)]
    pub send_dimensions: bool,
    /// Texts per request (default 64).
    #[serde(default = "default_openai_batch")]
    pub batch_size: usize,
    /// Whole-request timeout in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries after 429, 5xx or transport errors (default 2).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

impl std::fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("send_dimensions", &self.send_dimensions)
            .field("batch_size", &self.batch_size)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl OpenAiConfig {
    /// A configuration for `model` at `base_url` with every other field at its default.
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            model: model.into(),
            dimension: None,
            send_dimensions: false,
            batch_size: default_openai_batch(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
        }
    }
}

fn default_openai_base() -> String {
    "https://api.openai.com/v1".to_owned()
}
fn default_openai_batch() -> usize {
    64
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    2
}

/// Configuration of a [`CohereEmbedder`].
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CohereConfig {
    /// API base, without `/v2/embed` (default `https://api.cohere.com`).
    #[serde(default = "default_cohere_base")]
    pub base_url: String,
    /// The API key (sent as a bearer token). Prefer `api_key_env`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key; it must be set when given.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Cohere model, e.g. `embed-english-v3.0`, `embed-multilingual-v3.0`, `embed-v4.0`.
    pub model: String,
    /// Output dimension; required unless the model is a known Cohere model.
    #[serde(default)]
    pub dimension: Option<usize>,
    /// Send `output_dimension` in the request (embed-v4.0).
    #[serde(default)]
    pub send_dimensions: bool,
    /// Texts per request (default and maximum 96).
    #[serde(default = "default_cohere_batch")]
    pub batch_size: usize,
    /// Whole-request timeout in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries after 429, 5xx or transport errors (default 2).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
}

impl std::fmt::Debug for CohereConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CohereConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("send_dimensions", &self.send_dimensions)
            .field("batch_size", &self.batch_size)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl CohereConfig {
    /// A configuration for `model` at `base_url` with every other field at its default.
    #[must_use]
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            model: model.into(),
            dimension: None,
            send_dimensions: false,
            batch_size: default_cohere_batch(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
        }
    }
}

fn default_cohere_base() -> String {
    "https://api.cohere.com".to_owned()
}
fn default_cohere_batch() -> usize {
    96
}

/// The API key from the literal value, else from the named environment variable.
pub(crate) fn resolve_api_key(
    literal: Option<&str>,
    env: Option<&str>,
) -> Result<Option<String>, EmbedError> {
    if let Some(key) = literal.filter(|k| !k.is_empty()) {
        return Ok(Some(key.to_owned()));
    }
    match env {
        Some(var) => match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(EmbedError::Config(format!(
                "environment variable {var} (api_key_env) is not set"
            ))),
        },
        None => Ok(None),
    }
}

impl EmbedderConfig {
    /// Builds the embedder this entry describes. A `local` model is loaded from disk here
    /// (synchronously).
    pub fn build(&self) -> Result<Arc<dyn Embedder>, EmbedError> {
        Ok(match self {
            Self::Hash(c) => Arc::new(HashEmbedder::new(c.dimension)?),
            // What costs a forward pass or an HTTP call remembers its recent queries.
            Self::Local(c) => Arc::new(Memoized::new(
                LocalEmbedder::load_with(
                    &c.path,
                    LocalOptions {
                        batch_size: Some(c.batch_size),
                        max_length: c.max_length,
                        model_name: c.model_name.clone(),
                        prefix: c.prefix.clone(),
                    },
                )?,
                DEFAULT_MEMO_QUERIES,
            )),
            Self::OpenAi(c) => {
                Arc::new(Memoized::new(OpenAiEmbedder::new(c)?, DEFAULT_MEMO_QUERIES))
            }
            Self::Cohere(c) => {
                Arc::new(Memoized::new(CohereEmbedder::new(c)?, DEFAULT_MEMO_QUERIES))
            }
        })
    }
}

/// Embedders by name, with aliases and a default.
///
/// Request names (`embedding_model` in the knowledge API) resolve here; an unknown name is
/// an [`UnknownEmbedder`] listing every configured name, which the API turns into a `400`.
#[derive(Debug, Clone)]
pub struct EmbedderRegistry {
    embedders: BTreeMap<String, Arc<dyn Embedder>>,
    aliases: BTreeMap<String, String>,
    default: String,
}

impl Default for EmbedderRegistry {
    /// The zero-configuration registry: `hash` (384 dimensions), default `hash`, and
    /// `bge-m3` as an alias of it.
    fn default() -> Self {
        let mut embedders: BTreeMap<String, Arc<dyn Embedder>> = BTreeMap::new();
        embedders.insert(HASH_NAME.to_owned(), Arc::new(HashEmbedder::default()));
        let mut aliases = BTreeMap::new();
        aliases.insert(DOCUMENTS_DEFAULT_NAME.to_owned(), HASH_NAME.to_owned());
        Self {
            embedders,
            aliases,
            default: HASH_NAME.to_owned(),
        }
    }
}

impl EmbedderRegistry {
    /// Builds every configured embedder (loading local models from disk).
    ///
    /// The built-in `hash` is added unless a model of that name is configured. The default
    /// is `config.default` (a model or alias), else `hash`. Unless `bge-m3` is configured as
    /// a model or alias, it becomes an alias of the default. Aliases must name a configured
    /// model (or another alias); a name cannot be both a model and an alias.
    pub fn from_config(config: &EmbeddingsConfig) -> Result<Self, EmbedError> {
        let mut embedders: BTreeMap<String, Arc<dyn Embedder>> = BTreeMap::new();
        for (name, entry) in &config.models {
            validate_name(name)?;
            let embedder = entry.build().map_err(|e| match e {
                EmbedError::Config(msg) => EmbedError::Config(format!("model '{name}': {msg}")),
                other => other,
            })?;
            embedders.insert(name.clone(), embedder);
        }
        if !embedders.contains_key(HASH_NAME) && !config.aliases.contains_key(HASH_NAME) {
            embedders.insert(HASH_NAME.to_owned(), Arc::new(HashEmbedder::default()));
        }
        let mut registry = Self {
            embedders,
            aliases: BTreeMap::new(),
            default: HASH_NAME.to_owned(),
        };
        for alias in config.aliases.keys() {
            validate_name(alias)?;
            if registry.embedders.contains_key(alias) {
                return Err(EmbedError::Config(format!(
                    "'{alias}' is both a model and an alias"
                )));
            }
            let canonical = resolve_alias_chain(alias, &config.aliases, &registry.embedders)?;
            registry.aliases.insert(alias.clone(), canonical);
        }
        if let Some(default) = &config.default {
            registry
                .set_default(default)
                .map_err(|e| EmbedError::Config(format!("default embedding model: {e}")))?;
        }
        if !registry.embedders.contains_key(DOCUMENTS_DEFAULT_NAME)
            && !registry.aliases.contains_key(DOCUMENTS_DEFAULT_NAME)
        {
            registry
                .aliases
                .insert(DOCUMENTS_DEFAULT_NAME.to_owned(), registry.default.clone());
        }
        Ok(registry)
    }

    /// Registers (or replaces) an embedder under `name`; an alias of that name is removed.
    pub fn insert(&mut self, name: impl Into<String>, embedder: Arc<dyn Embedder>) {
        let name = name.into();
        self.aliases.remove(&name);
        self.embedders.insert(name, embedder);
    }

    /// Makes `alias` another name of `target` (a model or an existing alias).
    pub fn add_alias(
        &mut self,
        alias: impl Into<String>,
        target: &str,
    ) -> Result<(), UnknownEmbedder> {
        let canonical = self.canonical(target)?.to_owned();
        let alias = alias.into();
        if self.embedders.contains_key(&alias) {
            return Err(self.unknown(&alias));
        }
        self.aliases.insert(alias, canonical);
        Ok(())
    }

    /// Sets the default model (a model or an alias).
    pub fn set_default(&mut self, name: &str) -> Result<(), UnknownEmbedder> {
        self.default = self.canonical(name)?.to_owned();
        Ok(())
    }

    /// The embedder called `name` (a model or an alias).
    pub fn resolve(&self, name: &str) -> Result<Arc<dyn Embedder>, UnknownEmbedder> {
        let canonical = self.canonical(name)?;
        self.embedders
            .get(canonical)
            .cloned()
            .ok_or_else(|| self.unknown(name))
    }

    /// The embedder called `name`, or the default one when `name` is `None` or blank.
    pub fn resolve_or_default(
        &self,
        name: Option<&str>,
    ) -> Result<Arc<dyn Embedder>, UnknownEmbedder> {
        match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(name) => self.resolve(name),
            None => Ok(self.default_embedder()),
        }
    }

    /// The canonical (model) name of the default embedder.
    #[must_use]
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The default embedder.
    #[must_use]
    pub fn default_embedder(&self) -> Arc<dyn Embedder> {
        match self.embedders.get(&self.default) {
            Some(e) => Arc::clone(e),
            // The default is validated whenever it is set; fall back to hash regardless.
            None => Arc::new(HashEmbedder::default()),
        }
    }

    /// The model name an alias or model name stands for.
    pub fn canonical<'a>(&'a self, name: &'a str) -> Result<&'a str, UnknownEmbedder> {
        let name = name.trim();
        if self.embedders.contains_key(name) {
            return Ok(name);
        }
        match self.aliases.get(name) {
            Some(target) => Ok(target.as_str()),
            None => Err(self.unknown(name)),
        }
    }

    /// Every configured name, models and aliases, sorted.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .embedders
            .keys()
            .chain(self.aliases.keys())
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Every model name (no aliases) with its embedder.
    pub fn models(&self) -> impl Iterator<Item = (&str, &Arc<dyn Embedder>)> {
        self.embedders.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn unknown(&self, name: &str) -> UnknownEmbedder {
        UnknownEmbedder {
            name: name.to_owned(),
            configured: self.names(),
        }
    }
}

fn validate_name(name: &str) -> Result<(), EmbedError> {
    if name.is_empty() || name.trim() != name {
        return Err(EmbedError::Config(format!(
            "invalid embedding model name '{name}'"
        )));
    }
    Ok(())
}

fn resolve_alias_chain(
    alias: &str,
    aliases: &BTreeMap<String, String>,
    embedders: &BTreeMap<String, Arc<dyn Embedder>>,
) -> Result<String, EmbedError> {
    let mut current = alias;
    for _ in 0..=aliases.len() {
        let target = match aliases.get(current) {
            Some(t) => t.as_str(),
            None => break,
        };
        if embedders.contains_key(target) {
            return Ok(target.to_owned());
        }
        current = target;
    }
    Err(EmbedError::Config(format!(
        "alias '{alias}' does not lead to a configured model (configured: {})",
        embedders.keys().cloned().collect::<Vec<_>>().join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_like_json: &str) -> EmbeddingsConfig {
        serde_json::from_str(toml_like_json).unwrap()
    }

    #[test]
    fn zero_configuration_has_hash_and_bge_alias() {
        let r = EmbedderRegistry::default();
        assert_eq!(r.default_name(), "hash");
        assert_eq!(r.resolve("hash").unwrap().model_id(), "hash-384");
        assert_eq!(r.resolve("bge-m3").unwrap().model_id(), "hash-384");
        assert_eq!(r.resolve_or_default(None).unwrap().model_id(), "hash-384");
        assert_eq!(r.names(), vec!["bge-m3", "hash"]);
        let from_empty = EmbedderRegistry::from_config(&EmbeddingsConfig::default()).unwrap();
        assert_eq!(from_empty.names(), r.names());
    }

    #[test]
    fn unknown_name_lists_configured_ones() {
        let r = EmbedderRegistry::default();
        let err = r.resolve("cohere").unwrap_err();
        assert_eq!(err.name, "cohere");
        assert_eq!(err.configured, vec!["bge-m3", "hash"]);
        assert_eq!(
            err.to_string(),
            "unknown embedding model 'cohere'; configured: bge-m3, hash"
        );
    }

    #[test]
    fn config_with_models_aliases_and_default() {
        let cfg = config(
            r#"{
              "default": "small",
              "models": {
                "small": {"kind": "hash", "dimension": 64},
                "openai": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                           "model": "text-embedding-3-small"},
                "cohere": {"kind": "cohere", "base_url": "http://127.0.0.1:9",
                           "model": "embed-english-light-v3.0"}
              },
              "aliases": {"lexical": "small", "lex2": "lexical"}
            }"#,
        );
        let r = EmbedderRegistry::from_config(&cfg).unwrap();
        assert_eq!(r.default_name(), "small");
        assert_eq!(r.resolve("bge-m3").unwrap().model_id(), "hash-64");
        assert_eq!(r.resolve("lex2").unwrap().model_id(), "hash-64");
        assert_eq!(r.resolve("hash").unwrap().model_id(), "hash-384");
        let openai = r.resolve("openai").unwrap();
        assert_eq!(openai.model_id(), "openai:text-embedding-3-small");
        assert_eq!(openai.dimension(), 1536);
        assert_eq!(r.resolve("cohere").unwrap().dimension(), 384);
        assert_eq!(
            r.names(),
            vec![
                "bge-m3", "cohere", "hash", "lex2", "lexical", "openai", "small"
            ]
        );
    }

    #[test]
    fn bge_m3_can_be_configured_explicitly() {
        let cfg = config(
            r#"{"models": {"tei": {"kind": "openai", "base_url": "http://127.0.0.1:9",
                 "model": "BAAI/bge-m3", "dimension": 1024}},
                "aliases": {"bge-m3": "tei"}}"#,
        );
        let r = EmbedderRegistry::from_config(&cfg).unwrap();
        assert_eq!(r.default_name(), "hash");
        assert_eq!(
            r.resolve("bge-m3").unwrap().model_id(),
            "openai:BAAI/bge-m3"
        );
    }

    #[test]
    fn invalid_configurations_are_rejected() {
        let bad_alias = config(r#"{"aliases": {"x": "nope"}}"#);
        assert!(matches!(
            EmbedderRegistry::from_config(&bad_alias),
            Err(EmbedError::Config(_))
        ));
        let cycle = config(r#"{"aliases": {"x": "y", "y": "x"}}"#);
        assert!(EmbedderRegistry::from_config(&cycle).is_err());
        let bad_default = config(r#"{"default": "missing"}"#);
        let err = EmbedderRegistry::from_config(&bad_default).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        let unknown_dim =
            config(r#"{"models": {"o": {"kind": "openai", "model": "custom-model"}}}"#);
        let err = EmbedderRegistry::from_config(&unknown_dim).unwrap_err();
        assert!(err.to_string().contains("dimension"), "{err}");
        let missing_env = config(
            r#"{"models": {"o": {"kind": "openai", "model": "text-embedding-3-small",
                 "api_key_env": "CORTEX_EMBED_TEST_SURELY_UNSET_VAR"}}}"#,
        );
        let err = EmbedderRegistry::from_config(&missing_env).unwrap_err();
        assert!(
            err.to_string()
                .contains("CORTEX_EMBED_TEST_SURELY_UNSET_VAR")
        );
        let local_missing = config(r#"{"models": {"l": {"kind": "local", "path": "/nope"}}}"#);
        assert!(matches!(
            EmbedderRegistry::from_config(&local_missing),
            Err(EmbedError::ModelLoad { .. })
        ));
        assert!(
            serde_json::from_str::<EmbeddingsConfig>(
                r#"{"models": {"h": {"kind": "hash", "dimensoin": 3}}}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<EmbeddingsConfig>(r#"{"models": {"h": {"kind": "magic"}}}"#)
                .is_err()
        );
    }

    #[test]
    fn api_keys_are_redacted_in_debug() {
        let cfg: EmbedderConfig =
            serde_json::from_str(r#"{"kind": "openai", "model": "m", "api_key": "sk-secret"}"#)
                .unwrap();
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("sk-secret") && shown.contains("redacted"),
            "{shown}"
        );
    }

    #[test]
    fn runtime_insert_alias_and_default() {
        let mut r = EmbedderRegistry::default();
        r.insert("small", Arc::new(HashEmbedder::new(32).unwrap()));
        r.add_alias("tiny", "small").unwrap();
        r.set_default("tiny").unwrap();
        assert_eq!(r.default_name(), "small");
        assert_eq!(
            r.resolve_or_default(Some("  ")).unwrap().model_id(),
            "hash-32"
        );
        assert!(r.add_alias("x", "missing").is_err());
        assert!(r.set_default("missing").is_err());
    }
}
