//! Model tiers and the serde-deserializable LLM configuration.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::anthropic::AnthropicProvider;
use crate::chain::{ModelChain, TieredClient};
use crate::error::LlmError;
use crate::http::{HttpSettings, RetryPolicy};
use crate::openai::OpenAiProvider;
use crate::pricing::{ModelPrice, PriceTable};
use crate::provider::Provider;

/// A class of model, chosen per message by the [`crate::router`]; each maps to an ordered list
/// of provider models in [`LlmConfig::tiers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Greetings, thanks, one-liners: the fastest, cheapest model.
    Speed,
    /// Ordinary short questions and simple tool use.
    Nano,
    /// Longer or structured questions, explanations, code.
    Sonnet,
    /// Deep multi-step reasoning, long analyses.
    Complex,
    /// Questions about current events or live data.
    Search,
}

impl Tier {
    /// Every tier, cheapest first.
    pub const ALL: [Tier; 5] = [
        Tier::Speed,
        Tier::Nano,
        Tier::Sonnet,
        Tier::Complex,
        Tier::Search,
    ];

    /// The lowercase name (`"speed"`, `"nano"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Speed => "speed",
            Tier::Nano => "nano",
            Tier::Sonnet => "sonnet",
            Tier::Complex => "complex",
            Tier::Search => "search",
        }
    }

    /// The tiers whose models stand in, in this order, when this tier has none configured.
    pub fn substitutes(self) -> &'static [Tier] {
        match self {
            Tier::Speed => &[Tier::Nano, Tier::Sonnet, Tier::Complex, Tier::Search],
            Tier::Nano => &[Tier::Speed, Tier::Sonnet, Tier::Complex, Tier::Search],
            Tier::Sonnet => &[Tier::Complex, Tier::Nano, Tier::Speed, Tier::Search],
            Tier::Complex => &[Tier::Sonnet, Tier::Nano, Tier::Speed, Tier::Search],
            Tier::Search => &[Tier::Nano, Tier::Sonnet, Tier::Speed, Tier::Complex],
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = LlmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| LlmError::Config(format!("unknown tier {s:?}")))
    }
}

/// Wire protocol of a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI `/chat/completions` (OpenAI, vLLM, Ollama, LiteLLM, Groq, Together, OpenRouter…).
    #[default]
    #[serde(alias = "openai-compatible", alias = "openai_compatible")]
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
}

/// One provider endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL; default `https://api.openai.com/v1` or `https://api.anthropic.com`.
    pub base_url: Option<String>,
    /// API key (never printed).
    pub api_key: Option<SecretString>,
    /// Per-call timeout in seconds (default 60; see [`HttpSettings::timeout`]).
    pub timeout_secs: f64,
    /// Connect timeout in seconds (default 10).
    pub connect_timeout_secs: f64,
    /// Retries after a transient failure (default 2).
    pub retries: u32,
    /// Longest `Retry-After` waited for, in seconds (default 10).
    pub max_retry_after_secs: f64,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// `anthropic-version` header for [`ProviderKind::Anthropic`].
    pub anthropic_version: Option<String>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            kind: ProviderKind::OpenAi,
            base_url: None,
            api_key: None,
            timeout_secs: 60.0,
            connect_timeout_secs: 10.0,
            retries: 2,
            max_retry_after_secs: 10.0,
            headers: BTreeMap::new(),
            anthropic_version: None,
        }
    }
}

/// Default base URL of OpenAI.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Default base URL of Anthropic.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

fn secs(value: f64, name: &str) -> Result<Duration, LlmError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| LlmError::Config(format!("{name} must be a positive number of seconds")))
}

impl ProviderConfig {
    /// The HTTP settings this configuration describes.
    pub fn http_settings(&self) -> Result<HttpSettings, LlmError> {
        let base_url = match (&self.base_url, self.kind) {
            (Some(url), _) if !url.trim().is_empty() => url.trim().to_owned(),
            (_, ProviderKind::OpenAi) => OPENAI_DEFAULT_BASE_URL.to_owned(),
            (_, ProviderKind::Anthropic) => ANTHROPIC_DEFAULT_BASE_URL.to_owned(),
        };
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(LlmError::Config(format!(
                "base_url {base_url:?} must start with http:// or https://"
            )));
        }
        Ok(HttpSettings {
            base_url,
            api_key: self.api_key.clone(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: secs(self.timeout_secs, "timeout_secs")?,
            connect_timeout: secs(self.connect_timeout_secs, "connect_timeout_secs")?,
            retry: RetryPolicy {
                max_retries: self.retries,
                max_retry_after: Duration::try_from_secs_f64(self.max_retry_after_secs)
                    .map_err(|_| LlmError::Config("max_retry_after_secs is invalid".into()))?,
                ..RetryPolicy::default()
            },
        })
    }

    /// Builds the provider client, named `name`.
    pub fn build(&self, name: &str) -> Result<Arc<dyn Provider>, LlmError> {
        let settings = self.http_settings()?;
        Ok(match self.kind {
            ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(name, settings)?),
            ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(
                name,
                settings,
                self.anthropic_version.as_deref(),
            )?),
        })
    }
}

/// One model of a tier: a provider key of [`LlmConfig::providers`] and the provider's model name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Key of the provider in [`LlmConfig::providers`].
    pub provider: String,
    /// Model name sent to the provider.
    pub model: String,
}

/// Default model names per tier for one provider family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultModels {
    /// Model of [`Tier::Speed`].
    pub speed: String,
    /// Model of [`Tier::Nano`].
    pub nano: String,
    /// Model of [`Tier::Sonnet`].
    pub sonnet: String,
    /// Model of [`Tier::Complex`].
    pub complex: String,
    /// Model of [`Tier::Search`].
    pub search: String,
}

impl DefaultModels {
    /// OpenAI: gpt-4o-mini for speed/nano/search, gpt-4o for sonnet/complex.
    pub fn openai() -> Self {
        DefaultModels {
            speed: "gpt-4o-mini".into(),
            nano: "gpt-4o-mini".into(),
            sonnet: "gpt-4o".into(),
            complex: "gpt-4o".into(),
            search: "gpt-4o-mini".into(),
        }
    }

    /// Anthropic: Claude Haiku 3.5 for speed/nano/search, Claude Sonnet 4 for sonnet/complex.
    pub fn anthropic() -> Self {
        DefaultModels {
            speed: "claude-3-5-haiku-latest".into(),
            nano: "claude-3-5-haiku-latest".into(),
            sonnet: "claude-sonnet-4-20250514".into(),
            complex: "claude-sonnet-4-20250514".into(),
            search: "claude-3-5-haiku-latest".into(),
        }
    }

    /// The model of `tier`.
    pub fn get(&self, tier: Tier) -> &str {
        match tier {
            Tier::Speed => &self.speed,
            Tier::Nano => &self.nano,
            Tier::Sonnet => &self.sonnet,
            Tier::Complex => &self.complex,
            Tier::Search => &self.search,
        }
    }

    fn get_mut(&mut self, tier: Tier) -> &mut String {
        match tier {
            Tier::Speed => &mut self.speed,
            Tier::Nano => &mut self.nano,
            Tier::Sonnet => &mut self.sonnet,
            Tier::Complex => &mut self.complex,
            Tier::Search => &mut self.search,
        }
    }
}

/// The whole LLM configuration, e.g. in TOML:
///
/// ```toml
/// [providers.openai]
/// kind = "openai"
/// api_key = "sk-…"
/// timeout_secs = 30
///
/// [providers.local]
/// kind = "openai"
/// base_url = "http://127.0.0.1:11434/v1"
/// retries = 0
///
/// [tiers]
/// speed = [{ provider = "local", model = "llama3.2:3b" }, { provider = "openai", model = "gpt-4o-mini" }]
/// sonnet = [{ provider = "openai", model = "gpt-4o" }]
///
/// [prices."llama3.2:3b"]
/// input_per_mtok = 0.0
/// output_per_mtok = 0.0
/// ```
///
/// A tier without models borrows those of a substitute tier ([`Tier::substitutes`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LlmConfig {
    /// Provider endpoints by name.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Ordered models per tier: the first answers, the next ones are fallbacks.
    pub tiers: BTreeMap<Tier, Vec<ModelRef>>,
    /// Price overrides and additions (model → USD per 1M tokens) over the built-in table.
    pub prices: BTreeMap<String, ModelPrice>,
}

impl LlmConfig {
    /// Whether no model is configured for any tier.
    pub fn is_empty(&self) -> bool {
        self.tiers.values().all(Vec::is_empty)
    }

    /// Configuration from the process environment following the SDK conventions; `None` when
    /// neither OpenAI nor Anthropic is configured. See [`LlmConfig::from_env_lookup`].
    pub fn from_env_defaults() -> Option<Self> {
        Self::from_env_lookup(|name| std::env::var(name).ok())
    }

    /// Configuration from environment variables read through `lookup` (empty values count as
    /// unset):
    ///
    /// - `OPENAI_API_KEY` and/or `OPENAI_BASE_URL` (default [`OPENAI_DEFAULT_BASE_URL`]): a
    ///   provider `openai` with [`DefaultModels::openai`] for every tier;
    /// - `ANTHROPIC_API_KEY` (and `ANTHROPIC_BASE_URL`, default [`ANTHROPIC_DEFAULT_BASE_URL`]):
    ///   a provider `anthropic` with [`DefaultModels::anthropic`];
    /// - both: OpenAI first, Anthropic as the fallback of every tier;
    /// - `CORTEX_OPENAI_MODEL_<TIER>` / `CORTEX_ANTHROPIC_MODEL_<TIER>` (e.g.
    ///   `CORTEX_OPENAI_MODEL_COMPLEX=gpt-4.1`) override a tier's model name;
    /// - `CORTEX_LLM_TIMEOUT_SECS` and `CORTEX_LLM_RETRIES` override the call timeout and retries.
    pub fn from_env_lookup(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut base = ProviderConfig::default();
        if let Some(t) = var("CORTEX_LLM_TIMEOUT_SECS").and_then(|v| v.parse::<f64>().ok()) {
            base.timeout_secs = t;
        }
        if let Some(r) = var("CORTEX_LLM_RETRIES").and_then(|v| v.parse::<u32>().ok()) {
            base.retries = r;
        }
        let mut config = LlmConfig::default();
        let families = [
            (
                "openai",
                ProviderKind::OpenAi,
                "OPENAI_API_KEY",
                "OPENAI_BASE_URL",
                "CORTEX_OPENAI_MODEL_",
                DefaultModels::openai(),
                true,
            ),
            (
                "anthropic",
                ProviderKind::Anthropic,
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_BASE_URL",
                "CORTEX_ANTHROPIC_MODEL_",
                DefaultModels::anthropic(),
                false,
            ),
        ];
        for (name, kind, key_var, url_var, model_prefix, mut models, url_alone) in families {
            let key = var(key_var);
            let url = var(url_var);
            // A keyless local OpenAI-compatible server (Ollama, vLLM) is configured by its URL.
            if key.is_none() && !(url_alone && url.is_some()) {
                continue;
            }
            for tier in Tier::ALL {
                let env = format!("{model_prefix}{}", tier.as_str().to_uppercase());
                if let Some(m) = var(&env) {
                    *models.get_mut(tier) = m;
                }
            }
            config.providers.insert(
                name.to_owned(),
                ProviderConfig {
                    kind,
                    base_url: url,
                    api_key: key.map(SecretString::from),
                    ..base.clone()
                },
            );
            for tier in Tier::ALL {
                config.tiers.entry(tier).or_default().push(ModelRef {
                    provider: name.to_owned(),
                    model: models.get(tier).to_owned(),
                });
            }
        }
        (!config.is_empty()).then_some(config)
    }

    /// Checks that every tier entry names a configured provider and every provider's settings are
    /// valid.
    pub fn validate(&self) -> Result<(), LlmError> {
        for (name, p) in &self.providers {
            p.http_settings()
                .map_err(|e| LlmError::Config(format!("provider {name}: {e}")))?;
        }
        for (tier, models) in &self.tiers {
            for m in models {
                if !self.providers.contains_key(&m.provider) {
                    return Err(LlmError::Config(format!(
                        "tier {tier} uses unknown provider {:?}",
                        m.provider
                    )));
                }
                if m.model.trim().is_empty() {
                    return Err(LlmError::Config(format!(
                        "tier {tier} has an empty model name"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Builds one client per provider (shared by all tiers that use it), a [`ModelChain`] per
    /// tier and the price table (built-in prices plus [`LlmConfig::prices`]).
    pub fn build(&self) -> Result<TieredClient, LlmError> {
        self.validate()?;
        let mut providers: BTreeMap<&str, Arc<dyn Provider>> = BTreeMap::new();
        for (name, p) in &self.providers {
            providers.insert(name, p.build(name)?);
        }
        let mut chains = BTreeMap::new();
        for (tier, models) in &self.tiers {
            let mut chain = ModelChain::default();
            for m in models {
                let provider = providers.get(m.provider.as_str()).ok_or_else(|| {
                    LlmError::Config(format!("unknown provider {:?}", m.provider))
                })?;
                chain.push(Arc::clone(provider), m.model.clone());
            }
            if !chain.is_empty() {
                chains.insert(*tier, chain);
            }
        }
        let mut prices = PriceTable::builtin();
        prices.extend(&self.prices);
        Ok(TieredClient::new(chains, prices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn tier_serde_and_parse() {
        assert_eq!(serde_json::to_string(&Tier::Sonnet).unwrap(), "\"sonnet\"");
        let t: Tier = serde_json::from_str("\"search\"").unwrap();
        assert_eq!(t, Tier::Search);
        assert_eq!("Complex".parse::<Tier>().unwrap(), Tier::Complex);
        assert!("huge".parse::<Tier>().is_err());
        for t in Tier::ALL {
            assert!(!t.substitutes().contains(&t));
            assert_eq!(t.substitutes().len(), 4);
        }
    }

    #[test]
    fn nothing_configured_is_none() {
        assert!(LlmConfig::from_env_lookup(env(&[])).is_none());
        assert!(LlmConfig::from_env_lookup(env(&[("OPENAI_API_KEY", "  ")])).is_none());
        assert!(LlmConfig::from_env_lookup(env(&[("ANTHROPIC_BASE_URL", "http://x")])).is_none());
    }

    #[test]
    fn openai_env_defaults() {
        let c = LlmConfig::from_env_lookup(env(&[
            ("OPENAI_API_KEY", "sk-test"),
            ("CORTEX_OPENAI_MODEL_COMPLEX", "gpt-4.1"),
            ("CORTEX_LLM_RETRIES", "5"),
        ]))
        .unwrap();
        let p = &c.providers["openai"];
        assert_eq!(p.kind, ProviderKind::OpenAi);
        assert_eq!(p.retries, 5);
        assert_eq!(p.api_key.as_ref().unwrap().expose_secret(), "sk-test");
        let s = p.http_settings().unwrap();
        assert_eq!(s.base_url, OPENAI_DEFAULT_BASE_URL);
        assert_eq!(c.tiers[&Tier::Speed][0].model, "gpt-4o-mini");
        assert_eq!(c.tiers[&Tier::Sonnet][0].model, "gpt-4o");
        assert_eq!(c.tiers[&Tier::Complex][0].model, "gpt-4.1");
        assert_eq!(c.tiers.len(), 5);
        let client = c.build().unwrap();
        assert_eq!(
            client.chain(Tier::Nano).unwrap().1.entries()[0].model,
            "gpt-4o-mini"
        );
        // The key never shows in Debug output.
        assert!(!format!("{c:?}").contains("sk-test"));
    }

    #[test]
    fn keyless_local_server_and_both_families() {
        let c =
            LlmConfig::from_env_lookup(env(&[("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")]))
                .unwrap();
        assert!(c.providers["openai"].api_key.is_none());
        let c = LlmConfig::from_env_lookup(env(&[
            ("OPENAI_API_KEY", "sk"),
            ("ANTHROPIC_API_KEY", "ak"),
        ]))
        .unwrap();
        let speed = &c.tiers[&Tier::Speed];
        assert_eq!(speed.len(), 2);
        assert_eq!(speed[0].provider, "openai");
        assert_eq!(speed[1].provider, "anthropic");
        assert_eq!(speed[1].model, "claude-3-5-haiku-latest");
        assert_eq!(
            c.providers["anthropic"].http_settings().unwrap().base_url,
            ANTHROPIC_DEFAULT_BASE_URL
        );
    }

    #[test]
    fn deserializes_toml_like_config_and_validates() {
        let json = r#"{
            "providers": {
                "local": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "retries": 0,
                          "timeout_secs": 0.5, "some_future_field": true},
                "claude": {"kind": "anthropic", "api_key": "k"}
            },
            "tiers": {
                "speed": [{"provider": "local", "model": "llama"}, {"provider": "claude", "model": "claude-3-5-haiku-latest"}],
                "complex": [{"provider": "claude", "model": "claude-sonnet-4-20250514"}]
            },
            "prices": {"llama": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}
        }"#;
        let c: LlmConfig = serde_json::from_str(json).unwrap();
        c.validate().unwrap();
        let s = c.providers["local"].http_settings().unwrap();
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert_eq!(s.retry.max_retries, 0);
        let client = c.build().unwrap();
        // Nano is not configured: it borrows speed's chain.
        let (tier, chain) = client.chain(Tier::Nano).unwrap();
        assert_eq!(tier, Tier::Speed);
        assert_eq!(chain.entries().len(), 2);
        assert_eq!(client.chain(Tier::Sonnet).unwrap().0, Tier::Complex);
        let cost = client.cost_usd(
            "llama",
            &crate::Usage {
                input_tokens: 1_000_000,
                output_tokens: 0,
            },
        );
        assert!((cost - 0.1).abs() < 1e-12);

        let mut bad = c.clone();
        bad.tiers.entry(Tier::Search).or_default().push(ModelRef {
            provider: "nope".into(),
            model: "m".into(),
        });
        assert!(matches!(bad.build(), Err(LlmError::Config(_))));
        let mut bad = c.clone();
        if let Some(p) = bad.providers.get_mut("local") {
            p.base_url = Some("ftp://x".into());
        }
        assert!(bad.validate().is_err());
    }
}
