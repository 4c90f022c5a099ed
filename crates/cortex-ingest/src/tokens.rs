//! Token counting with the `cl100k_base` encoding (bundled, no network).

use tiktoken_rs::CoreBPE;

/// The shared `cl100k_base` encoder (loaded once, on first use).
pub(crate) fn bpe() -> &'static CoreBPE {
    tiktoken_rs::cl100k_base_singleton()
}

/// Number of `cl100k_base` tokens of `text` (special-token text counts as ordinary text).
pub fn count_tokens(text: &str) -> usize {
    bpe().encode_ordinary(text).len()
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_known_strings() {
        assert_eq!(super::count_tokens(""), 0);
        assert_eq!(super::count_tokens("hello world"), 2);
    }
}
