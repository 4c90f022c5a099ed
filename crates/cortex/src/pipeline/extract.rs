//! After a turn with memory enabled, the model extracts durable facts about the customer in the
//! background. The output is structured through a forced tool call (`record_customer_facts`,
//! with a JSON schema), and each fact is deduplicated against what is already known: by the
//! cosine of its embedding (the server's default model) with each known fact's, or — for facts
//! without one of that model — by their words.

use cortex_llm::{ChatRequest, Message, Tier, ToolChoice, ToolDef};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use std::collections::HashSet;

use super::memory::{self, CATEGORIES};
use super::text;
use crate::state::AppState;
use crate::store::{Fact, MemoryStore, NewFact, RunStore};

pub const TOOL: &str = "record_customer_facts";
/// Facts kept per turn, and the least confidence kept.
const MAX_NEW: usize = 5;
const MIN_CONFIDENCE: f64 = 0.5;
/// Word-set similarity at or above which two facts say the same thing.
const DUPLICATE: f32 = 0.8;
/// Embedding cosine at or above which two facts say the same thing.
const DUPLICATE_COSINE: f32 = 0.9;
/// Known facts shown to the model (and compared against).
const KNOWN: i64 = 200;

const INSTRUCTIONS: &str = "You maintain a memory of durable facts about one customer of a \
business. From the exchange below, record only facts that will still be true and useful in \
later conversations: preferences, circumstances, history with the business, sentiment, \
context. Do not record the question itself, greetings, or anything the assistant said unless \
the customer confirmed it. Do not repeat known facts. Write each fact as a short third-person \
sentence (\"Prefers Arabic\"). Call record_customer_facts once; with an empty list when there \
is nothing new.";

fn tool() -> ToolDef {
    ToolDef {
        name: TOOL.into(),
        description: "Record new durable facts about the customer.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"facts": {"type": "array", "maxItems": MAX_NEW, "items": {
                "type": "object",
                "properties": {
                    "fact": {"type": "string", "maxLength": 500},
                    "category": {"type": "string", "enum": CATEGORIES},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1}
                },
                "required": ["fact", "category", "confidence"]
            }}},
            "required": ["facts"]
        }),
    }
}

#[derive(Debug, Deserialize)]
struct Extracted {
    #[serde(default)]
    facts: Vec<ExtractedFact>,
}

#[derive(Debug, Deserialize)]
struct ExtractedFact {
    fact: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
}

/// The facts in the model's answer: the tool call's arguments, or (from a model that answered
/// in text) a JSON object in the text.
fn parse(resp: &cortex_llm::ChatResponse) -> Vec<ExtractedFact> {
    let from_tool = resp
        .tool_calls
        .iter()
        .filter(|c| c.name == TOOL)
        .find_map(|c| serde_json::from_str::<Extracted>(&c.arguments).ok());
    let from_text = || {
        let text = resp.content.trim();
        let start = text.find('{')?;
        let end = text.rfind('}')?;
        serde_json::from_str::<Extracted>(text.get(start..=end)?).ok()
    };
    from_tool
        .or_else(from_text)
        .map(|e| e.facts)
        .unwrap_or_default()
}

/// A fact as compared for duplicates: its words and its embedding, if any.
struct Seen {
    words: HashSet<String>,
    embedding: Option<(String, Vec<f32>)>,
}

impl Seen {
    fn same_as(&self, other: &Seen) -> bool {
        match (&self.embedding, &other.embedding) {
            (Some((m1, v1)), Some((m2, v2))) if m1 == m2 && v1.len() == v2.len() => {
                cortex_embed::dot(v1, v2) >= DUPLICATE_COSINE
                    || text::similarity(&self.words, &other.words) >= DUPLICATE
            }
            _ => text::similarity(&self.words, &other.words) >= DUPLICATE,
        }
    }
}

/// A new fact to save.
struct Selected {
    fact: String,
    category: String,
    confidence: f64,
    embedding: Option<(String, Vec<f32>)>,
}

/// Keep the well-formed, confident, new facts (at most [`MAX_NEW`]). `embed` gives a fact's
/// embedding (`None` when there is no embedder or it failed).
async fn select<F, Fut>(candidates: Vec<ExtractedFact>, known: &[Fact], embed: F) -> Vec<Selected>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<(String, Vec<f32>)>>,
{
    let mut seen: Vec<Seen> = known
        .iter()
        .map(|k| Seen {
            words: memory::tokens(&k.fact),
            embedding: k.embedding.clone(),
        })
        .collect();
    let mut out = Vec::new();
    for c in candidates {
        let fact = c.fact.split_whitespace().collect::<Vec<_>>().join(" ");
        let confidence = c.confidence.unwrap_or(0.8).clamp(0.0, 1.0);
        if fact.is_empty() || fact.chars().count() > 500 || confidence < MIN_CONFIDENCE {
            continue;
        }
        let words = memory::tokens(&fact);
        if words.is_empty() {
            continue;
        }
        let candidate = Seen {
            words,
            embedding: embed(fact.clone()).await,
        };
        if seen.iter().any(|s| s.same_as(&candidate)) {
            continue;
        }
        let category = c
            .category
            .filter(|c| CATEGORIES.contains(&c.as_str()))
            .unwrap_or_else(|| "general".into());
        out.push(Selected {
            fact,
            category,
            confidence,
            embedding: candidate.embedding.clone(),
        });
        seen.push(candidate);
        if out.len() == MAX_NEW {
            break;
        }
    }
    out
}

/// One extraction: ask the model, save what is new. Returns the ids saved.
pub async fn extract_facts(
    state: &AppState,
    company_id: Uuid,
    agent_id: Uuid,
    customer_id: &str,
    message: &str,
    reply: &str,
) -> anyhow::Result<Vec<Uuid>> {
    let Some(llm) = &state.llm else {
        return Ok(Vec::new());
    };
    let known: Vec<Fact> = state
        .store
        .facts(company_id, customer_id, Some(agent_id), KNOWN)
        .await?;
    let mut system = INSTRUCTIONS.to_owned();
    if !known.is_empty() {
        system.push_str("\n\nKnown facts:");
        for k in &known {
            system.push_str("\n- ");
            system.push_str(&k.fact);
        }
    }
    let req = ChatRequest::new(
        "",
        vec![
            Message::system(system),
            Message::user(format!("Customer: {message}\n\nAssistant: {reply}")),
        ],
    )
    .with_tools(vec![tool()])
    .with_tool_choice(ToolChoice::Required)
    .with_temperature(0.0)
    .with_max_tokens(400);
    let tier: Tier = state.config.memory.extraction_tier;
    let out = llm.chat(tier, &req).await?;
    let usage = out.response.usage;
    metrics::counter!("cortex_tokens_total", "direction" => "input", "model" => "memory_extraction")
        .increment(usage.input_tokens);
    metrics::counter!("cortex_tokens_total", "direction" => "output", "model" => "memory_extraction")
        .increment(usage.output_tokens);
    let cost = llm.cost_usd(&out.answered_by.model, &usage);
    metrics::counter!("cortex_cost_microusd_total", "model" => "memory_extraction")
        .increment((cost * 1e6).round() as u64);
    // A metered company pays this call too.
    state
        .store
        .record_usage(
            company_id,
            None,
            &crate::store::UsageRow {
                agent_id: Some(agent_id),
                conversation_id: Uuid::nil(),
                source: "memory_extraction",
                model_used: tier.as_str().to_owned(),
                model: out.answered_by.model.clone(),
                input_tokens: usage.input_tokens as i64,
                output_tokens: usage.output_tokens as i64,
                cost_microusd: super::engine::micro_usd(cost),
            },
        )
        .await?;
    let mut saved = Vec::new();
    let embedder = state.knowledge.registry.default_embedder();
    let embed = |fact: String| {
        let embedder = embedder.clone();
        async move { memory::embed(embedder.as_ref(), &fact).await }
    };
    for s in select(parse(&out.response), &known, embed).await {
        let id = state
            .store
            .save_fact(
                company_id,
                &NewFact {
                    customer_id: customer_id.to_owned(),
                    agent_id: None,
                    fact: s.fact,
                    category: s.category,
                    confidence: s.confidence,
                    source: "extracted".into(),
                    embedding: s.embedding,
                },
            )
            .await?;
        saved.push(id);
    }
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(fact: &str, category: Option<&str>, confidence: Option<f64>) -> ExtractedFact {
        ExtractedFact {
            fact: fact.into(),
            category: category.map(Into::into),
            confidence,
        }
    }

    fn known(fact: &str, embedding: Option<(String, Vec<f32>)>) -> Fact {
        Fact {
            id: Uuid::new_v4(),
            fact: fact.into(),
            category: "general".into(),
            confidence: 1.0,
            agent_id: None,
            embedding,
        }
    }

    #[tokio::test]
    async fn selection_drops_known_duplicate_unsure_and_malformed_facts() {
        let known = vec![known("Prefers Arabic language", None)];
        let picked = select(
            vec![
                f("prefers   arabic language", Some("preference"), Some(0.9)),
                f("Lives in Alexandria", Some("context"), Some(0.95)),
                f("Lives in Alexandria.", Some("context"), Some(0.9)),
                f("Might like tea", Some("preference"), Some(0.2)),
                f("  ", None, None),
                f("Ordered a blue kettle in May", Some("purchase"), None),
            ],
            &known,
            |_| async { None },
        )
        .await;
        let picked: Vec<(String, String, f64)> = picked
            .into_iter()
            .map(|s| (s.fact, s.category, s.confidence))
            .collect();
        assert_eq!(
            picked,
            vec![
                ("Lives in Alexandria".to_owned(), "context".to_owned(), 0.95),
                (
                    "Ordered a blue kettle in May".to_owned(),
                    "general".to_owned(),
                    0.8
                ),
            ]
        );
    }

    #[tokio::test]
    async fn duplicates_by_meaning_are_dropped() {
        // Differently worded, same meaning: the embeddings (of one model) are nearly equal.
        let known = vec![known(
            "Speaks Arabic at home",
            Some(("m".into(), vec![1.0, 0.0])),
        )];
        let embed = |fact: String| async move {
            let v = if fact.contains("العربية") {
                vec![0.99, 0.141]
            } else {
                vec![0.0, 1.0]
            };
            Some(("m".to_owned(), v))
        };
        let picked = select(
            vec![
                f("يتحدث العربية في المنزل", Some("context"), Some(0.9)),
                f("Owns a red bicycle", Some("context"), Some(0.9)),
            ],
            &known,
            embed,
        )
        .await;
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].fact, "Owns a red bicycle");
        assert!(picked[0].embedding.is_some());
    }

    #[test]
    fn facts_come_from_the_tool_call_or_from_json_text() {
        let mut resp = cortex_llm::ChatResponse {
            tool_calls: vec![cortex_llm::ToolCall {
                id: "c1".into(),
                name: TOOL.into(),
                arguments: r#"{"facts": [{"fact": "Has two cats", "category": "context", "confidence": 0.9}]}"#.into(),
            }],
            ..Default::default()
        };
        assert_eq!(parse(&resp)[0].fact, "Has two cats");
        resp.tool_calls.clear();
        resp.content = "Sure: {\"facts\": [{\"fact\": \"Is vegan\"}]} done".into();
        assert_eq!(parse(&resp)[0].fact, "Is vegan");
        resp.content = "nothing".into();
        assert!(parse(&resp).is_empty());
    }
}
