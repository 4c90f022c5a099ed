//! The zero-configuration responder: with no model configured, answer from the agent's FAQs and
//! knowledge — the best match, or an honest "I don't know".

use cortex_llm::optimizer::{Faq, RankedText};

use super::text;

/// A FAQ answers when its question is at least this similar to the message.
const FAQ_THRESHOLD: f32 = 0.35;
/// Knowledge answers when a chunk shares at least this much with the message.
const KNOWLEDGE_THRESHOLD: f32 = 0.15;
pub const DONT_KNOW: &str = "I'm sorry, I don't have information about that yet. Could you rephrase, or ask something else?";

pub fn answer(message: &str, ranked_faqs: &[(Faq, f32)], knowledge: &[RankedText]) -> String {
    if let Some((faq, score)) = ranked_faqs.first()
        && *score >= FAQ_THRESHOLD
    {
        return faq.answer.clone();
    }
    let q = text::words(message);
    let best = knowledge
        .iter()
        .filter(|k| k.score >= KNOWLEDGE_THRESHOLD)
        .flat_map(|k| {
            text::sentences(
                k.text
                    .split_once(": ")
                    .map_or(k.text.as_str(), |(_, body)| body),
            )
        })
        .map(|s| (text::similarity(&q, &text::words(s)), s))
        .filter(|(score, _)| *score > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, sentence)) => sentence.to_owned(),
        None => DONT_KNOW.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faq_then_knowledge_then_dont_know() {
        let faqs = vec![(
            Faq {
                question: "What are your hours?".into(),
                answer: "9 to 6.".into(),
            },
            0.8,
        )];
        assert_eq!(answer("hours?", &faqs, &[]), "9 to 6.");
        let weak = vec![(faqs[0].0.clone(), 0.1)];
        let kb = vec![RankedText::new(
            "Shipping: We ship worldwide. Returns are free within 30 days.",
            0.4,
        )];
        assert_eq!(
            answer("Are returns free?", &weak, &kb),
            "Returns are free within 30 days."
        );
        assert_eq!(answer("Do you sell cars?", &weak, &[]), DONT_KNOW);
    }
}
