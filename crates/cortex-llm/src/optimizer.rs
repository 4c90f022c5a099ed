//! Token optimizer: fits the prompt context into a token budget by priority.
//!
//! Priority (highest first): identity (system prompt with personality and dialect — never cut),
//! the current message (never cut), tool definitions, memory facts, knowledge chunks, history
//! (newest kept, oldest dropped first), FAQs. Memory and knowledge are taken in rank order; the
//! first one that does not fit is truncated at a token boundary when at least
//! [`MIN_TRUNCATED_TOKENS`] tokens remain, and the lower-ranked ones are dropped. If identity and
//! message alone exceed the budget they are kept anyway, everything else is dropped and the
//! report says so. The algorithm is a single pass: it always terminates.

use serde::{Deserialize, Serialize};

use crate::tokens::{self, TOKENS_PER_MESSAGE};
use crate::types::{Message, Role, ToolDef};

/// Smallest remainder worth filling with a truncated memory fact or knowledge chunk.
pub const MIN_TRUNCATED_TOKENS: usize = 24;
/// Tokens a memory fact or knowledge chunk costs besides its text (bullet, separators).
pub const ITEM_OVERHEAD: usize = 2;
/// Tokens an FAQ costs besides its question and answer text.
pub const FAQ_OVERHEAD: usize = 4;

/// A memory fact or knowledge chunk with its relevance rank (higher is more relevant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RankedText {
    /// The text.
    pub text: String,
    /// Relevance; higher is kept first.
    pub score: f32,
}

impl RankedText {
    /// A ranked text.
    pub fn new(text: impl Into<String>, score: f32) -> Self {
        RankedText {
            text: text.into(),
            score,
        }
    }
}

/// A question/answer pair of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Faq {
    /// The question.
    pub question: String,
    /// The answer.
    pub answer: String,
}

/// Everything that may go into a prompt.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContextInput {
    /// The system prompt (identity, personality, dialect). Never cut.
    pub identity: String,
    /// The customer's current message. Never cut.
    pub message: String,
    /// Tool definitions, most important first.
    pub tools: Vec<ToolDef>,
    /// Memory facts (any order; ranked by score).
    pub memory: Vec<RankedText>,
    /// Knowledge chunks (any order; ranked by score).
    pub knowledge: Vec<RankedText>,
    /// Earlier turns, oldest first (without the current message).
    pub history: Vec<Message>,
    /// FAQs, most relevant first.
    pub faqs: Vec<Faq>,
}

/// How many items of each kind were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct Dropped {
    /// Tool definitions.
    pub tools: usize,
    /// Memory facts.
    pub memory: usize,
    /// Knowledge chunks.
    pub knowledge: usize,
    /// History messages.
    pub history: usize,
    /// FAQs.
    pub faqs: usize,
}

/// What the optimizer did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerReport {
    /// The budget in tokens.
    pub budget: usize,
    /// Tokens of the whole input.
    pub before: usize,
    /// Tokens of what was kept.
    pub after: usize,
    /// `(before - after) / before` in percent, rounded to one decimal (0 when `before` is 0).
    pub savings_pct: f64,
    /// Identity and message alone exceed the budget (they were kept anyway).
    pub over_budget: bool,
    /// Dropped items per kind.
    pub dropped: Dropped,
    /// Number of items kept in truncated form.
    pub truncated: usize,
}

/// The kept context (same shapes as [`ContextInput`]; memory and knowledge in rank order,
/// history oldest first) and the report.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizedContext {
    /// The identity, unchanged.
    pub identity: String,
    /// The message, unchanged.
    pub message: String,
    /// Kept tools.
    pub tools: Vec<ToolDef>,
    /// Kept memory facts, most relevant first.
    pub memory: Vec<RankedText>,
    /// Kept knowledge chunks, most relevant first.
    pub knowledge: Vec<RankedText>,
    /// Kept history, oldest first.
    pub history: Vec<Message>,
    /// Kept FAQs.
    pub faqs: Vec<Faq>,
    /// What was done.
    pub report: OptimizerReport,
}

fn text_cost(text: &str) -> usize {
    tokens::count_tokens(text) + TOKENS_PER_MESSAGE
}

fn item_cost(item: &RankedText) -> usize {
    tokens::count_tokens(&item.text) + ITEM_OVERHEAD
}

fn faq_cost(faq: &Faq) -> usize {
    tokens::count_tokens(&faq.question) + tokens::count_tokens(&faq.answer) + FAQ_OVERHEAD
}

/// Token cost of everything in `input` as the optimizer counts it.
pub fn input_tokens(input: &ContextInput) -> usize {
    text_cost(&input.identity)
        + text_cost(&input.message)
        + tokens::count_tool_tokens(&input.tools)
        + input.memory.iter().map(item_cost).sum::<usize>()
        + input.knowledge.iter().map(item_cost).sum::<usize>()
        + input
            .history
            .iter()
            .map(tokens::message_tokens)
            .sum::<usize>()
        + input.faqs.iter().map(faq_cost).sum::<usize>()
}

/// Keeps ranked items in descending score order while they fit; truncates the first that does
/// not when enough room remains; drops the rest. Returns (kept, dropped, truncated).
fn fill_ranked(
    mut items: Vec<RankedText>,
    remaining: &mut usize,
) -> (Vec<RankedText>, usize, usize) {
    // Stable sort: equal scores keep their input order.
    items.sort_by(|a, b| b.score.total_cmp(&a.score));
    let total = items.len();
    let mut kept = Vec::new();
    let mut truncated = 0;
    for item in items {
        let cost = item_cost(&item);
        if cost <= *remaining {
            *remaining -= cost;
            kept.push(item);
            continue;
        }
        if *remaining >= MIN_TRUNCATED_TOKENS {
            let text = tokens::truncate_to_tokens(&item.text, *remaining - ITEM_OVERHEAD);
            let cost = tokens::count_tokens(&text) + ITEM_OVERHEAD;
            if !text.is_empty() && cost <= *remaining {
                *remaining -= cost;
                kept.push(RankedText { text, ..item });
                truncated += 1;
            }
        }
        break;
    }
    let dropped = total - kept.len();
    (kept, dropped, truncated)
}

/// Fits `input` into `budget` tokens (see the module documentation for the rules).
pub fn optimize(input: ContextInput, budget: usize) -> OptimizedContext {
    let before = input_tokens(&input);
    let core = text_cost(&input.identity) + text_cost(&input.message);
    let mut dropped = Dropped::default();
    let mut truncated = 0;
    let over_budget = core > budget;
    let mut remaining = budget.saturating_sub(core);

    let mut tools = Vec::new();
    for tool in input.tools {
        let cost = tokens::tool_def_tokens(&tool);
        if cost <= remaining {
            remaining -= cost;
            tools.push(tool);
        } else {
            dropped.tools += 1;
        }
    }

    let (memory, d, t) = fill_ranked(input.memory, &mut remaining);
    dropped.memory = d;
    truncated += t;
    let (knowledge, d, t) = fill_ranked(input.knowledge, &mut remaining);
    dropped.knowledge = d;
    truncated += t;

    // History: newest first, stop at the first that does not fit (no gaps in the conversation).
    let total_history = input.history.len();
    let mut history: Vec<Message> = Vec::new();
    for msg in input.history.into_iter().rev() {
        let cost = tokens::message_tokens(&msg);
        if cost > remaining {
            break;
        }
        remaining -= cost;
        history.push(msg);
    }
    history.reverse();
    // A tool result whose assistant tool call was cut is invalid for the providers: drop it.
    while history.first().is_some_and(|m| m.role == Role::Tool) {
        let msg = history.remove(0);
        remaining += tokens::message_tokens(&msg);
    }
    dropped.history = total_history - history.len();

    let mut faqs = Vec::new();
    for faq in input.faqs {
        let cost = faq_cost(&faq);
        if cost <= remaining {
            remaining -= cost;
            faqs.push(faq);
        } else {
            dropped.faqs += 1;
        }
    }

    let after = if over_budget {
        core
    } else {
        budget - remaining
    };
    let savings_pct = if before == 0 {
        0.0
    } else {
        let pct = (before.saturating_sub(after)) as f64 * 100.0 / before as f64;
        (pct * 10.0).round() / 10.0
    };
    OptimizedContext {
        identity: input.identity,
        message: input.message,
        tools,
        memory,
        knowledge,
        history,
        faqs,
        report: OptimizerReport {
            budget,
            before,
            after,
            savings_pct,
            over_budget,
            dropped,
            truncated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::count_tokens;
    use crate::types::ToolCall;

    fn sentence(n: usize) -> String {
        // Roughly one token per word.
        (0..n)
            .map(|i| ["apple", "river", "stone", "cloud"][i % 4])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn base() -> ContextInput {
        ContextInput {
            identity: "You are Nour, a friendly support agent. Speak Egyptian Arabic.".into(),
            message: "Where is my order #1234?".into(),
            tools: vec![ToolDef {
                name: "get_order_status".into(),
                description: "Look up an order by id".into(),
                parameters: serde_json::json!({"type":"object","properties":{"order_id":{"type":"string"}}}),
            }],
            memory: vec![
                RankedText::new("Prefers Arabic", 0.4),
                RankedText::new("Lives in Cairo and orders every month", 0.9),
            ],
            knowledge: vec![
                RankedText::new(sentence(60), 0.2),
                RankedText::new(sentence(40), 0.8),
                RankedText::new(sentence(50), 0.5),
            ],
            history: vec![
                Message::user(sentence(30)),
                Message::assistant(sentence(30)),
                Message::user(sentence(10)),
                Message::assistant(sentence(10)),
            ],
            faqs: vec![Faq {
                question: "What are your hours?".into(),
                answer: "9 to 6, Sunday to Thursday.".into(),
            }],
        }
    }

    #[test]
    fn everything_fits_in_a_large_budget() {
        let input = base();
        let total = input_tokens(&input);
        let out = optimize(input.clone(), 100_000);
        assert_eq!(out.report.before, total);
        assert_eq!(out.report.after, total);
        assert_eq!(out.report.savings_pct, 0.0);
        assert!(!out.report.over_budget);
        assert_eq!(out.report.dropped, Dropped::default());
        assert_eq!(out.history, input.history);
        assert_eq!(out.faqs, input.faqs);
        // Ranked: highest score first.
        assert_eq!(out.memory[0].text, "Lives in Cairo and orders every month");
        assert!((out.knowledge[0].score - 0.8).abs() < f32::EPSILON);
    }

    #[test]
    fn drops_by_priority_under_pressure() {
        let input = base();
        let core = text_cost(&input.identity) + text_cost(&input.message);
        let tools = tokens::count_tool_tokens(&input.tools);
        let memory: usize = input.memory.iter().map(item_cost).sum();
        let best_chunk = item_cost(&input.knowledge[1]);
        // Room for core, tools, memory, the best knowledge chunk and a bit (< MIN_TRUNCATED).
        let budget = core + tools + memory + best_chunk + 10;
        let out = optimize(input.clone(), budget);
        let r = &out.report;
        assert!(r.after <= budget, "{r:?}");
        assert_eq!(out.tools.len(), 1);
        assert_eq!(out.memory.len(), 2);
        assert_eq!(out.knowledge.len(), 1);
        assert_eq!(out.knowledge[0].text, input.knowledge[1].text);
        assert_eq!(r.dropped.knowledge, 2);
        assert_eq!(r.truncated, 0);
        // History needs more than 10 tokens per message: all dropped, and so are FAQs (13+).
        assert_eq!(r.dropped.history, 4);
        assert_eq!(r.dropped.faqs, 1);
        assert!(r.before > r.after);
        let expected = ((r.before - r.after) as f64 * 1000.0 / r.before as f64).round() / 10.0;
        assert_eq!(r.savings_pct, expected);
    }

    #[test]
    fn history_keeps_newest_and_never_leaves_orphan_tool_results() {
        let mut input = base();
        input.memory.clear();
        input.knowledge.clear();
        input.faqs.clear();
        input.tools.clear();
        let core = text_cost(&input.identity) + text_cost(&input.message);
        let newest_two: usize = input.history[2..].iter().map(tokens::message_tokens).sum();
        let out = optimize(input.clone(), core + newest_two + 5);
        assert_eq!(out.history, input.history[2..].to_vec());
        assert_eq!(out.report.dropped.history, 2);

        let call = ToolCall {
            id: "c1".into(),
            name: "get_order_status".into(),
            arguments: "{}".into(),
        };
        input.history = vec![
            Message::user(sentence(40)),
            Message::assistant_tool_calls("", vec![call]),
            Message::tool_result("c1", "get_order_status", sentence(5)),
            Message::assistant("It ships tomorrow."),
        ];
        let tail: usize = input.history[2..].iter().map(tokens::message_tokens).sum();
        let out = optimize(input.clone(), core + tail + 1);
        // The tool result fitted but its call did not: it is dropped too.
        assert_eq!(out.history, vec![Message::assistant("It ships tomorrow.")]);
        assert_eq!(out.report.dropped.history, 3);
    }

    #[test]
    fn long_knowledge_chunk_is_truncated_at_a_token_boundary() {
        let mut input = base();
        input.memory.clear();
        input.tools.clear();
        input.history.clear();
        input.faqs.clear();
        input.knowledge = vec![
            RankedText::new(sentence(500), 1.0),
            RankedText::new("x", 0.1),
        ];
        let core = text_cost(&input.identity) + text_cost(&input.message);
        let out = optimize(input.clone(), core + 100);
        assert_eq!(out.knowledge.len(), 1);
        assert_eq!(out.report.truncated, 1);
        assert_eq!(out.report.dropped.knowledge, 1);
        let kept = &out.knowledge[0].text;
        assert!(input.knowledge[0].text.starts_with(kept.as_str()));
        assert!(count_tokens(kept) + ITEM_OVERHEAD <= 100);
        assert!(count_tokens(kept) >= 90);
        assert!(out.report.after <= core + 100);
    }

    #[test]
    fn identity_and_message_over_budget_are_kept_and_reported() {
        let mut input = base();
        input.identity = sentence(300);
        let core = text_cost(&input.identity) + text_cost(&input.message);
        let out = optimize(input.clone(), 50);
        assert!(out.report.over_budget);
        assert_eq!(out.identity, input.identity);
        assert_eq!(out.message, input.message);
        assert!(out.tools.is_empty() && out.memory.is_empty() && out.knowledge.is_empty());
        assert!(out.history.is_empty() && out.faqs.is_empty());
        assert_eq!(out.report.after, core);
        assert_eq!(out.report.dropped.history, 4);
        // Zero budget terminates too.
        let out = optimize(input, 0);
        assert!(out.report.over_budget);
    }

    #[test]
    fn empty_input() {
        let out = optimize(ContextInput::default(), 10);
        assert_eq!(out.report.savings_pct, 0.0);
        assert!(!out.report.over_budget);
        assert_eq!(out.report.before, out.report.after);
    }
}
