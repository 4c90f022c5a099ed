//! Token counting with tiktoken's `o200k_base` encoding (the GPT-4o/4.1/5 family), loaded once
//! from the BPE file bundled in `tiktoken-rs` (works offline).
//!
//! Counts are exact for OpenAI's current models and a close estimate for others (Anthropic's
//! tokenizer is not public). They are used to budget prompts and to fill in usage when a provider
//! reports none.

use std::sync::OnceLock;

use tiktoken_rs::CoreBPE;

use crate::types::{ChatRequest, Message, ToolCall, ToolDef, Usage};

/// Tokens every chat message costs besides its content (role and separators).
pub const TOKENS_PER_MESSAGE: usize = 3;
/// Tokens that prime the assistant's reply at the end of a prompt.
pub const TOKENS_REPLY_PRIMING: usize = 3;

fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| match tiktoken_rs::o200k_base() {
        Ok(bpe) => Some(bpe),
        Err(err) => {
            tracing::warn!(error = %err, "o200k_base tokenizer unavailable; estimating tokens");
            None
        }
    })
    .as_ref()
}

/// Loads the tokenizer now (a few hundred milliseconds, once per process) so that the first
/// request does not pay for it; call it at startup, e.g. inside `spawn_blocking`.
pub fn preload() {
    let _ = bpe();
}

/// Number of tokens of `text` (special-token text such as `<|endoftext|>` counts as plain text).
///
/// Counts are remembered by content: the fixed parts of a prompt (an agent's FAQs, its knowledge
/// passages, a customer's facts) recur chat after chat, and encoding them costs microseconds
/// each time while a look-up costs a hash. At most [`REMEMBERED`] texts, forgotten all at once
/// when full.
pub fn count_tokens(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    let key = (xxhash_rust::xxh3::xxh3_128(text.as_bytes()), text.len());
    if let Some(n) = remembered().lock().ok().and_then(|m| m.get(&key).copied()) {
        return n;
    }
    let n = match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len(),
        // Rough estimate: four characters per token.
        None => text.chars().count().div_ceil(4),
    };
    if let Ok(mut m) = remembered().lock() {
        if m.len() >= REMEMBERED {
            m.clear();
        }
        m.insert(key, n);
    }
    n
}

/// Texts whose count is remembered (see [`count_tokens`]).
const REMEMBERED: usize = 8192;

type Counts = std::sync::Mutex<std::collections::HashMap<(u128, usize), usize>>;

fn remembered() -> &'static Counts {
    static COUNTS: OnceLock<Counts> = OnceLock::new();
    COUNTS.get_or_init(Default::default)
}

/// Tokens of one message in a chat prompt: [`TOKENS_PER_MESSAGE`] plus its role, content, name
/// and tool calls (without the reply priming).
pub fn message_tokens(message: &Message) -> usize {
    let mut n = TOKENS_PER_MESSAGE + count_tokens(message.role.as_str());
    n += count_tokens(&message.content);
    if let Some(name) = &message.name {
        n += count_tokens(name) + 1;
    }
    if let Some(id) = &message.tool_call_id {
        n += count_tokens(id);
    }
    n += message
        .tool_calls
        .iter()
        .map(tool_call_tokens)
        .sum::<usize>();
    n
}

/// Tokens of a chat prompt made of `messages`, including per-message overhead and the reply
/// priming (OpenAI's documented counting scheme).
pub fn count_message_tokens(messages: &[Message]) -> usize {
    if messages.is_empty() {
        return 0;
    }
    messages.iter().map(message_tokens).sum::<usize>() + TOKENS_REPLY_PRIMING
}

/// Tokens of one tool call (id, name and argument text, plus a small overhead).
pub fn tool_call_tokens(call: &ToolCall) -> usize {
    3 + count_tokens(&call.id) + count_tokens(&call.name) + count_tokens(&call.arguments)
}

/// Tokens one tool definition adds to a prompt (its name, description and JSON schema).
pub fn tool_def_tokens(tool: &ToolDef) -> usize {
    let schema = if tool.parameters.is_null() {
        String::new()
    } else {
        tool.parameters.to_string()
    };
    8 + count_tokens(&tool.name) + count_tokens(&tool.description) + count_tokens(&schema)
}

/// Tokens of all tool definitions.
pub fn count_tool_tokens(tools: &[ToolDef]) -> usize {
    tools.iter().map(tool_def_tokens).sum()
}

/// The longest prefix of `text` that is at most `max_tokens` tokens and ends on a token
/// boundary (never inside a UTF-8 character).
pub fn truncate_to_tokens(text: &str, max_tokens: usize) -> String {
    if max_tokens == 0 {
        return String::new();
    }
    let Some(bpe) = bpe() else {
        return text.chars().take(max_tokens * 4).collect();
    };
    let tokens = bpe.encode_ordinary(text);
    if tokens.len() <= max_tokens {
        return text.to_owned();
    }
    let Ok(bytes) = bpe.decode_bytes(&tokens[..max_tokens]) else {
        return String::new();
    };
    // A token may end in the middle of a multi-byte character: keep the valid prefix.
    match std::str::from_utf8(&bytes) {
        Ok(s) => s.to_owned(),
        Err(e) => String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
    }
}

/// Usage counted locally for `request` and an answer made of `content` and `tool_calls`; used
/// when a provider reports no usage.
pub fn estimate_usage(request: &ChatRequest, content: &str, tool_calls: &[ToolCall]) -> Usage {
    let input = count_message_tokens(&request.messages) + count_tool_tokens(&request.tools);
    let output = count_tokens(content) + tool_calls.iter().map(tool_call_tokens).sum::<usize>();
    Usage {
        input_tokens: input as u64,
        output_tokens: output as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_strings() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello world"), 2);
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(10);
        let n = count_tokens(&long);
        assert!((90..=110).contains(&n), "{n}");
        // Arabic is tokenized too (o200k has good Arabic coverage).
        let ar = count_tokens("مرحبا، كيف حالك اليوم؟");
        assert!((3..=15).contains(&ar), "{ar}");
    }

    #[test]
    fn message_overhead() {
        let msgs = vec![Message::system("hello world"), Message::user("hello world")];
        let content = 2 * count_tokens("hello world");
        let n = count_message_tokens(&msgs);
        assert_eq!(
            n,
            content
                + 2 * TOKENS_PER_MESSAGE
                + count_tokens("system")
                + count_tokens("user")
                + TOKENS_REPLY_PRIMING
        );
        assert_eq!(count_message_tokens(&[]), 0);
    }

    #[test]
    fn truncation_respects_budget_and_utf8() {
        let text = "كلمة عربية طويلة جدا ".repeat(50);
        for max in [1, 2, 3, 7, 20] {
            let cut = truncate_to_tokens(&text, max);
            assert!(count_tokens(&cut) <= max, "{max}");
            assert!(text.starts_with(&cut));
        }
        assert_eq!(truncate_to_tokens("short", 100), "short");
        assert_eq!(truncate_to_tokens("short", 0), "");
        let cut = truncate_to_tokens("one two three four five six", 3);
        assert_eq!(cut, "one two three");
    }

    #[test]
    fn estimate_counts_both_sides() {
        let req = ChatRequest::new("m", vec![Message::user("What is the capital of France?")]);
        let usage = estimate_usage(&req, "Paris.", &[]);
        assert_eq!(usage.output_tokens, count_tokens("Paris.") as u64);
        assert_eq!(
            usage.input_tokens,
            count_message_tokens(&req.messages) as u64
        );
    }
}
