//! Lexical text helpers shared by the interim retrieval, the answer cache and the extractive
//! responder: normalisation, word sets, and a cosine over them.

use std::collections::HashSet;

const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "to", "of", "and", "or", "in", "on", "at",
    "for", "with", "by", "it", "this", "that", "do", "does", "did", "i", "you", "we", "my", "your",
    "our", "me", "can", "could", "would", "please", "what", "how", "when", "where", "which", "who",
    "hi", "hello", "there", "about", "from", "as", "any",
];

/// Lower-case, punctuation to spaces, whitespace collapsed. Codes such as `ORD-1234` keep their dash.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii() && (ch.is_ascii_alphanumeric() || ch == '-' || ch == '#') {
            out.push(ch.to_ascii_lowercase());
        } else if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

/// The words of a query worth a full-text look-up, as written (lowercased, no folding): stop
/// words and one-letter words dropped, at most `max`, in order.
pub fn search_words(s: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in normalize(s).split(' ') {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        if w.chars().count() < 2 || STOPWORDS.contains(&w) || out.iter().any(|o| o == w) {
            continue;
        }
        out.push(w.to_owned());
        if out.len() == max {
            break;
        }
    }
    out
}

/// The content words of a text (stop words dropped, a plural `s` folded).
pub fn words(s: &str) -> HashSet<String> {
    normalize(s)
        .split(' ')
        .filter_map(content_word)
        .map(str::to_owned)
        .collect()
}

/// A word of a [`normalize`]d text as [`words`] keeps it (a plural `s` folded), or `None` for
/// an empty word or a stop word.
pub fn content_word(w: &str) -> Option<&str> {
    if w.is_empty() || STOPWORDS.contains(&w) {
        None
    } else if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        Some(&w[..w.len() - 1])
    } else {
        Some(w)
    }
}

/// Cosine similarity of two word sets (0–1).
pub fn similarity(a: &HashSet<String>, b: &HashSet<String>) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let common = a.intersection(b).count() as f32;
    common / ((a.len() as f32).sqrt() * (b.len() as f32).sqrt())
}

/// Split a text into sentences (on `.`, `!`, `?` and line breaks).
pub fn sentences(s: &str) -> Vec<&str> {
    s.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_similarity() {
        assert_eq!(normalize("  What are your HOURS?! "), "what are your hours");
        assert_eq!(
            normalize("Order #ORD-1234, please"),
            "order #ord-1234 please"
        );
        let q = words("What are your business hours?");
        assert!(similarity(&q, &words("business hours")) > 0.9);
        assert!(similarity(&q, &words("Where is my order?")) < 0.1);
        assert_eq!(similarity(&q, &HashSet::new()), 0.0);
        assert_eq!(
            sentences("One. Two! Three?\nFour"),
            vec!["One.", "Two!", "Three?", "Four"]
        );
    }
}
