//! Stage 03: retrieve the knowledge most relevant to the message. Until the knowledge base
//! (sources, chunks, vectors) lands, the agent's own `knowledge_documents` are searched
//! lexically, paragraph by paragraph; FAQs are ranked the same way.

use cortex_llm::optimizer::{Faq, RankedText};

use super::text;
use crate::agents::AgentSpec;

/// The top `k` paragraphs of the agent's knowledge documents for `message` (score > 0 only).
pub fn retrieve(spec: &AgentSpec, message: &str, k: usize) -> Vec<RankedText> {
    if k == 0 {
        return Vec::new();
    }
    let q = text::words(message);
    let mut hits: Vec<RankedText> = spec
        .knowledge_documents
        .iter()
        .flat_map(|doc| {
            doc.content
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(move |p| (doc.title.as_str(), p))
        })
        .filter_map(|(title, para)| {
            let score = text::similarity(&q, &text::words(&format!("{title} {para}")));
            (score > 0.0).then(|| RankedText::new(format!("{title}: {para}"), score))
        })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    hits
}

/// The agent's FAQs, most relevant to `message` first.
pub fn ranked_faqs(spec: &AgentSpec, message: &str) -> Vec<(Faq, f32)> {
    let q = text::words(message);
    let mut faqs: Vec<(Faq, f32)> = spec
        .workflow_faqs
        .iter()
        .map(|f| {
            let score = text::similarity(&q, &text::words(&f.question));
            (
                Faq {
                    question: f.question.clone(),
                    answer: f.answer.clone(),
                },
                score,
            )
        })
        .collect();
    faqs.sort_by(|a, b| b.1.total_cmp(&a.1));
    faqs
}
