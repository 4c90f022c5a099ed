//! Model prices (USD per million tokens) and call cost.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::Usage;

/// Price of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ModelPrice {
    /// USD per 1M input (prompt) tokens.
    pub input_per_mtok: f64,
    /// USD per 1M output (completion) tokens.
    pub output_per_mtok: f64,
}

impl ModelPrice {
    /// A price of `input` and `output` USD per million tokens.
    pub const fn new(input: f64, output: f64) -> Self {
        ModelPrice {
            input_per_mtok: input,
            output_per_mtok: output,
        }
    }

    /// Cost of `usage` at this price.
    pub fn cost_usd(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input_per_mtok
            + usage.output_tokens as f64 * self.output_per_mtok)
            / 1_000_000.0
    }
}

/// List prices of common models (USD per 1M tokens, standard tier, uncached input).
pub const BUILTIN_PRICES: &[(&str, ModelPrice)] = &[
    ("gpt-4o", ModelPrice::new(2.50, 10.00)),
    ("gpt-4o-mini", ModelPrice::new(0.15, 0.60)),
    ("gpt-4.1", ModelPrice::new(2.00, 8.00)),
    ("gpt-4.1-mini", ModelPrice::new(0.40, 1.60)),
    ("gpt-4.1-nano", ModelPrice::new(0.10, 0.40)),
    ("gpt-4-turbo", ModelPrice::new(10.00, 30.00)),
    ("gpt-4", ModelPrice::new(30.00, 60.00)),
    ("gpt-3.5-turbo", ModelPrice::new(0.50, 1.50)),
    ("gpt-5", ModelPrice::new(1.25, 10.00)),
    ("gpt-5-mini", ModelPrice::new(0.25, 2.00)),
    ("gpt-5-nano", ModelPrice::new(0.05, 0.40)),
    ("o1", ModelPrice::new(15.00, 60.00)),
    ("o1-mini", ModelPrice::new(1.10, 4.40)),
    ("o3", ModelPrice::new(2.00, 8.00)),
    ("o3-mini", ModelPrice::new(1.10, 4.40)),
    ("o4-mini", ModelPrice::new(1.10, 4.40)),
    ("claude-3-haiku", ModelPrice::new(0.25, 1.25)),
    ("claude-3-5-haiku", ModelPrice::new(0.80, 4.00)),
    ("claude-haiku-4-5", ModelPrice::new(1.00, 5.00)),
    ("claude-3-5-sonnet", ModelPrice::new(3.00, 15.00)),
    ("claude-3-7-sonnet", ModelPrice::new(3.00, 15.00)),
    ("claude-sonnet-4", ModelPrice::new(3.00, 15.00)),
    ("claude-sonnet-4-5", ModelPrice::new(3.00, 15.00)),
    ("claude-3-opus", ModelPrice::new(15.00, 75.00)),
    ("claude-opus-4", ModelPrice::new(15.00, 75.00)),
    ("claude-opus-4-1", ModelPrice::new(15.00, 75.00)),
    ("claude-opus-4-5", ModelPrice::new(5.00, 25.00)),
    ("gemini-1.5-flash", ModelPrice::new(0.075, 0.30)),
    ("gemini-2.0-flash", ModelPrice::new(0.10, 0.40)),
    ("gemini-2.5-flash", ModelPrice::new(0.30, 2.50)),
    ("gemini-2.5-pro", ModelPrice::new(1.25, 10.00)),
];

/// Model name → price. Unknown models cost 0 (self-hosted models usually are free per token).
///
/// Lookup is case-insensitive, ignores a `provider/` prefix (`openai/gpt-4o`) and matches the
/// longest known name that the model name starts with, followed by `-`, `:`, `@` or nothing
/// (so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`, `claude-3-5-haiku-latest` as
/// `claude-3-5-haiku`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    prices: BTreeMap<String, ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::builtin()
    }
}

impl PriceTable {
    /// The [`BUILTIN_PRICES`].
    pub fn builtin() -> Self {
        let mut t = Self::empty();
        for (model, price) in BUILTIN_PRICES {
            t.set(model, *price);
        }
        t
    }

    /// A table with no prices (everything costs 0).
    pub fn empty() -> Self {
        PriceTable {
            prices: BTreeMap::new(),
        }
    }

    /// Sets (or overrides) the price of `model`.
    pub fn set(&mut self, model: &str, price: ModelPrice) {
        self.prices.insert(model.to_lowercase(), price);
    }

    /// Sets every price of `overrides`.
    pub fn extend<'a>(
        &mut self,
        overrides: impl IntoIterator<Item = (&'a String, &'a ModelPrice)>,
    ) {
        for (model, price) in overrides {
            self.set(model, *price);
        }
    }

    /// The price of `model`, if known (see the type's documentation for matching).
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        let lower = model.trim().to_lowercase();
        if let Some(p) = self.prices.get(&lower) {
            return Some(*p);
        }
        let name = lower.rsplit('/').next().unwrap_or(&lower);
        if let Some(p) = self.prices.get(name) {
            return Some(*p);
        }
        self.prices
            .iter()
            .filter(|(key, _)| {
                name.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.starts_with(['-', ':', '@']))
            })
            .max_by_key(|(key, _)| key.len())
            .map(|(_, p)| *p)
    }

    /// Cost of `usage` on `model` in USD (0 for unknown models).
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> f64 {
        self.price(model).map_or(0.0, |p| p.cost_usd(usage))
    }
}

/// Cost of `usage` on `model` in USD with the built-in prices (0 for unknown models).
pub fn cost_usd(model: &str, usage: &Usage) -> f64 {
    static TABLE: std::sync::OnceLock<PriceTable> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(PriceTable::builtin)
        .cost_usd(model, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: u64, o: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
        }
    }

    #[test]
    fn builtin_costs() {
        let c = cost_usd("gpt-4o-mini", &usage(1_000_000, 1_000_000));
        assert!((c - 0.75).abs() < 1e-9, "{c}");
        let c = cost_usd("gpt-4o", &usage(1250, 28));
        assert!((c - (1250.0 * 2.5 + 28.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(cost_usd("llama3.1:8b", &usage(1000, 1000)), 0.0);
    }

    #[test]
    fn matching_rules() {
        let t = PriceTable::builtin();
        assert_eq!(t.price("gpt-4o-mini-2024-07-18"), t.price("gpt-4o-mini"));
        assert_eq!(t.price("gpt-4o-2024-08-06"), t.price("gpt-4o"));
        assert_eq!(t.price("openai/GPT-4o"), t.price("gpt-4o"));
        assert_eq!(
            t.price("claude-3-5-haiku-latest"),
            Some(ModelPrice::new(0.80, 4.00))
        );
        assert_eq!(
            t.price("claude-sonnet-4-20250514"),
            Some(ModelPrice::new(3.0, 15.0))
        );
        assert_eq!(t.price("gpt-4.1-nano"), Some(ModelPrice::new(0.10, 0.40)));
        // "gpt-4" must not price "gpt-4o-something-new" nor "gpt-45".
        assert_eq!(t.price("gpt-45"), None);
        assert_eq!(t.price("unknown"), None);
    }

    #[test]
    fn overrides_and_serde() {
        let mut t: PriceTable = serde_json::from_str(
            r#"{"my-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}"#,
        )
        .unwrap();
        assert_eq!(t.cost_usd("my-model", &usage(1_000_000, 500_000)), 2.0);
        assert_eq!(t.cost_usd("gpt-4o", &usage(1, 1)), 0.0);
        t.set("gpt-4o", ModelPrice::new(1.0, 1.0));
        assert_eq!(t.cost_usd("gpt-4o", &usage(1_000_000, 0)), 1.0);
    }
}
