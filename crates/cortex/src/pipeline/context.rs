//! Stage 03: retrieve the knowledge most relevant to the message — the top-k chunks of the
//! agent's knowledge sources (hybrid vector + keyword search, see `knowledge::search`), plus the
//! agent's inline `knowledge_documents` searched lexically paragraph by paragraph until they are
//! embedded with `POST /v1/knowledge/ingest/documents`. FAQs are ranked lexically.

use cortex_llm::optimizer::{Faq, RankedText};
use uuid::Uuid;

use super::text;
use crate::agents::{Agent, AgentSpec};
use crate::knowledge::KnowledgeError;
use crate::knowledge::model::SourceKind;
use crate::state::AppState;
use crate::store::{KnowledgeStore, StoreError};

/// The top `k` knowledge passages for `message`, best first.
pub async fn retrieve(
    state: &AppState,
    company_id: Uuid,
    agent: &Agent,
    message: &str,
    k: usize,
) -> Result<Vec<RankedText>, StoreError> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let spec = &agent.spec;
    let mut sources = Vec::with_capacity(spec.knowledge_source_ids.len());
    for id in &spec.knowledge_source_ids {
        if let Some(source) = state.store.get_source(company_id, *id).await? {
            sources.push(source);
        }
    }
    // Once the inline documents are embedded, their chunks replace the lexical search.
    let documents_embedded = sources.iter().any(|s| {
        s.kind == SourceKind::Documents && s.agent_id == Some(agent.id) && s.chunk_count > 0
    });
    let mut hits = if documents_embedded {
        Vec::new()
    } else {
        inline_documents(spec, message, k)
    };
    if !sources.is_empty() {
        match state
            .knowledge
            .search(&state.store, company_id, &sources, message, k)
            .await
        {
            Ok(found) => hits.extend(
                found
                    .into_iter()
                    .filter(|h| h.score >= state.config.knowledge.min_score)
                    .map(|h| {
                        let label = h
                            .heading_path
                            .last()
                            .cloned()
                            .unwrap_or_else(|| h.source_name.clone());
                        RankedText::new(format!("{label}: {}", h.content), h.score)
                    }),
            ),
            Err(KnowledgeError::Store(e)) => return Err(e),
            // An embedding service that is down costs the knowledge, not the answer.
            Err(e) => {
                tracing::warn!(error = %e, agent_id = %agent.id, "knowledge retrieval failed")
            }
        }
    }
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    hits.truncate(k);
    Ok(hits)
}

/// The top `k` paragraphs of the agent's knowledge documents for `message` (score > 0 only).
fn inline_documents(spec: &AgentSpec, message: &str, k: usize) -> Vec<RankedText> {
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
