//! Model routing: classifies a message's complexity into a [`Tier`], explainably.
//!
//! Pure and cheap (a few microseconds): it looks at length, structure (lists, several
//! questions), code (fences, snippets, programming terms), reasoning cues ("why", "explain",
//! "compare", "step by step", "analyze", Arabic "لماذا", "اشرح", "قارن", …), lookup cues
//! ("latest", "news", "today's price" → [`Tier::Search`]), greetings and very short messages
//! (→ [`Tier::Speed`]) and tool-likely requests (order numbers, "track", "status of my order" →
//! at least [`Tier::Nano`]).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::config::Tier;

/// Complexity at or above which a message goes to [`Tier::Sonnet`].
pub const SONNET_THRESHOLD: u32 = 3;
/// Complexity at or above which a message goes to [`Tier::Complex`].
pub const COMPLEX_THRESHOLD: u32 = 6;

/// The signal scores behind a decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RouteScores {
    /// Number of words.
    pub words: u32,
    /// 0–3: longer messages score higher.
    pub length: u32,
    /// 0–3: list items, several questions, several paragraphs.
    pub structure: u32,
    /// 0–3: code fences, snippets, programming terms.
    pub code: u32,
    /// 0–6: reasoning cues, 3 per distinct strong cue ("compare", "step by step", "analyze",
    /// …) and 2 per other cue ("why", "explain", …).
    pub reasoning: u32,
    /// Number of distinct lookup (fresh information) cues.
    pub lookup: u32,
    /// Number of distinct tool-likely cues.
    pub tool: u32,
    /// `length + structure + code + reasoning`.
    pub complexity: u32,
}

/// The chosen tier and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDecision {
    /// The tier to use.
    pub tier: Tier,
    /// Human-readable reasons, most decisive first.
    pub reasons: Vec<String>,
    /// The underlying scores.
    pub scores: RouteScores,
    /// Whether the agent's pin decided.
    pub pinned: bool,
}

const GREETINGS: &[&str] = &[
    "hi",
    "hello",
    "hey",
    "hiya",
    "yo",
    "good morning",
    "good afternoon",
    "good evening",
    "thanks",
    "thank you",
    "thx",
    "ok",
    "okay",
    "bye",
    "goodbye",
    "hola",
    "bonjour",
    "salut",
    "merci",
    "مرحبا",
    "اهلا",
    "أهلا",
    "هلا",
    "السلام عليكم",
    "سلام",
    "شكرا",
    "شكراً",
    "صباح الخير",
    "مساء الخير",
];

/// English reasoning cues, matched as whole words or phrases.
const REASONING_EN: &[&str] = &[
    "why",
    "explain",
    "compare",
    "comparison",
    "step by step",
    "step-by-step",
    "analyze",
    "analyse",
    "analysis",
    "pros and cons",
    "difference between",
    "trade-off",
    "tradeoff",
    "trade-offs",
    "evaluate",
    "prove",
    "derive",
    "reasoning",
    "in detail",
    "implications",
    "strategy",
    "what if",
    "how does",
    "calculate",
    "optimize",
    "recommend",
];

/// Reasoning cues that alone make a message worth a stronger model (weight 3; others weigh 2).
const STRONG_REASONING: &[&str] = &[
    "compare",
    "comparison",
    "step by step",
    "step-by-step",
    "analyze",
    "analyse",
    "analysis",
    "pros and cons",
    "difference between",
    "trade-off",
    "tradeoff",
    "trade-offs",
    "evaluate",
    "prove",
    "derive",
    "in detail",
    "implications",
    "strategy",
    "قارن",
    "مقارنة",
    "حلل",
    "حلّل",
    "تحليل",
    "خطوة بخطوة",
    "الفرق بين",
    "إيجابيات وسلبيات",
];

/// Arabic reasoning cues, matched as substrings (Arabic attaches prefixes such as و, ف).
const REASONING_AR: &[&str] = &[
    "لماذا",
    "ليش",
    "ليه",
    "اشرح",
    "إشرح",
    "وضح",
    "وضّح",
    "قارن",
    "مقارنة",
    "حلل",
    "حلّل",
    "تحليل",
    "خطوة بخطوة",
    "الفرق بين",
    "ازاي",
    "إيجابيات وسلبيات",
];

const LOOKUP_EN: &[&str] = &[
    "latest",
    "news",
    "search",
    "search the web",
    "google",
    "look up online",
    "today's price",
    "current price",
    "stock price",
    "exchange rate",
    "weather",
    "breaking",
    "headlines",
    "who won",
    "right now",
    "this week's",
];

const LOOKUP_AR: &[&str] = &[
    "أخبار",
    "اخبار",
    "آخر الأخبار",
    "احدث",
    "أحدث",
    "سعر الصرف",
    "سعر اليوم",
    "الطقس",
    "ابحث",
];

const TOOL_EN: &[&str] = &[
    "track",
    "tracking",
    "status of my",
    "where is my",
    "my order",
    "my booking",
    "my reservation",
    "my account",
    "my balance",
    "my subscription",
    "refund",
    "cancel my",
    "reschedule",
    "book a",
    "book an",
];

const TOOL_AR: &[&str] = &[
    "طلبي",
    "طلب رقم",
    "رقم الطلب",
    "تتبع",
    "شحنتي",
    "الشحنة",
    "حجزي",
    "استرجاع",
    "استرداد",
    "إلغاء",
    "الغاء",
];

/// Programming terms, matched as whole words.
const CODE_WORDS: &[&str] = &[
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    "java",
    "kotlin",
    "sql",
    "regex",
    "bash",
    "json",
    "yaml",
    "compile",
    "compiler",
    "traceback",
    "stacktrace",
    "stack trace",
    "exception",
    "segfault",
    "refactor",
    "algorithm",
    "debug",
    "dockerfile",
    "kubernetes",
];

/// Code snippets, matched as substrings.
const CODE_SNIPPETS: &[&str] = &[
    "def ",
    "fn ",
    "#include",
    "console.log",
    "println!",
    "select * ",
    "=>",
    "();",
    "import ",
    "return ",
    "</",
    "{\n",
    "};",
    "!=",
    "==",
];

/// Whole-word / whole-phrase matcher for a list of (lowercase) cues.
fn word_regex(cues: &[&str]) -> Option<Regex> {
    let alts: Vec<String> = cues.iter().map(|c| regex::escape(c)).collect();
    Regex::new(&format!(r"(?i)(?:^|[^\w'])({})(?:$|[^\w])", alts.join("|"))).ok()
}

static REASONING_RE: LazyLock<Option<Regex>> = LazyLock::new(|| word_regex(REASONING_EN));
static LOOKUP_RE: LazyLock<Option<Regex>> = LazyLock::new(|| word_regex(LOOKUP_EN));
static TOOL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| word_regex(TOOL_EN));
static CODE_WORD_RE: LazyLock<Option<Regex>> = LazyLock::new(|| word_regex(CODE_WORDS));
/// Order/ticket/booking numbers: `#ORD-1234`, `order 12345`, `invoice no. 55821`, `طلب 1234`.
static ORDER_NUMBER_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(#\s?[a-z]{0,5}-?\d{3,}|\b(order|ord|invoice|booking|ticket|tracking|shipment|reservation|طلب|الطلب)\b\s*(number|no\.?|id|رقم)?\s*[:#]?\s*[a-z]{0,5}-?\d{3,})",
    )
    .ok()
});
static LIST_ITEM_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^\s*([-*•]|\d{1,2}[.)])\s+\S").ok());

/// Distinct matches of `re` in `text` (lowercased, in order of first appearance).
fn distinct_matches(re: &Option<Regex>, text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    if let Some(re) = re {
        // Matches share separators, so scan from each match's cue end.
        let mut start = 0;
        while let Some(caps) = re.captures_at(text, start) {
            let Some(m) = caps.get(1) else { break };
            let cue = m.as_str().to_lowercase();
            if !found.contains(&cue) {
                found.push(cue);
            }
            start = m.end();
        }
    }
    found
}

fn substring_hits(cues: &[&str], text: &str) -> Vec<String> {
    cues.iter()
        .filter(|c| text.contains(*c))
        .map(|c| (*c).to_owned())
        .collect()
}

fn is_greeting(text: &str, words: u32) -> bool {
    if words > 6 {
        return false;
    }
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let norm = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    GREETINGS.iter().any(|g| {
        norm == *g
            || norm
                .strip_prefix(g)
                .is_some_and(|rest| rest.starts_with(' '))
    })
}

/// Classifies `message` into a tier. `has_tools`: the agent has actions the model may call.
pub fn classify(message: &str, has_tools: bool) -> RouteDecision {
    let text = message.trim();
    let lower = text.to_lowercase();
    let mut reasons = Vec::new();
    let mut s = RouteScores {
        words: text.split_whitespace().count() as u32,
        ..RouteScores::default()
    };

    s.length = match s.words {
        w if w > 200 => 3,
        w if w > 80 => 2,
        w if w > 30 => 1,
        _ => 0,
    };
    if s.length > 0 {
        reasons.push(format!("long message ({} words)", s.words));
    }

    let list_items = text
        .lines()
        .filter(|l| LIST_ITEM_RE.as_ref().is_some_and(|re| re.is_match(l)))
        .count();
    let questions = text.matches(['?', '؟']).count();
    let paragraphs = text.split("\n\n").filter(|p| !p.trim().is_empty()).count();
    let mut structure = 0;
    if list_items >= 2 {
        structure += if list_items >= 4 { 2 } else { 1 };
        reasons.push(format!("{list_items} list items"));
    }
    if questions >= 2 {
        structure += if questions >= 4 { 2 } else { 1 };
        reasons.push(format!("{questions} questions"));
    }
    if paragraphs >= 3 {
        structure += 1;
        reasons.push(format!("{paragraphs} paragraphs"));
    }
    s.structure = structure.min(3);

    if text.contains("```") {
        s.code = 3;
        reasons.push("code block".to_owned());
    } else {
        let mut hits = substring_hits(CODE_SNIPPETS, &lower);
        hits.extend(distinct_matches(&CODE_WORD_RE, &lower));
        if !hits.is_empty() {
            s.code = (hits.len() as u32).min(3);
            reasons.push(format!("code cues: {}", hits.join(", ")));
        }
    }

    let mut reasoning = distinct_matches(&REASONING_RE, &lower);
    reasoning.extend(substring_hits(REASONING_AR, text));
    if !reasoning.is_empty() {
        let weight = |cue: &String| {
            if STRONG_REASONING.contains(&cue.as_str()) {
                3
            } else {
                2
            }
        };
        s.reasoning = reasoning.iter().map(weight).sum::<u32>().min(6);
        reasons.push(format!("reasoning cues: {}", reasoning.join(", ")));
    }

    let mut lookup = distinct_matches(&LOOKUP_RE, &lower);
    lookup.extend(substring_hits(LOOKUP_AR, text));
    s.lookup = lookup.len() as u32;

    let mut tool = distinct_matches(&TOOL_RE, &lower);
    tool.extend(substring_hits(TOOL_AR, text));
    if ORDER_NUMBER_RE.as_ref().is_some_and(|re| re.is_match(text)) {
        tool.push("order/reference number".to_owned());
    }
    s.tool = tool.len() as u32;

    s.complexity = s.length + s.structure + s.code + s.reasoning;
    let tool_likely = s.tool > 0;

    let mut tier = if s.complexity == 0 && !tool_likely && is_greeting(text, s.words) {
        reasons.insert(0, "greeting".to_owned());
        Tier::Speed
    } else if s.lookup > 0 && s.code == 0 && s.complexity < COMPLEX_THRESHOLD {
        reasons.insert(0, format!("needs fresh information: {}", lookup.join(", ")));
        Tier::Search
    } else if s.complexity >= COMPLEX_THRESHOLD {
        reasons.insert(0, format!("high complexity ({})", s.complexity));
        Tier::Complex
    } else if s.complexity >= SONNET_THRESHOLD {
        reasons.insert(0, format!("moderate complexity ({})", s.complexity));
        Tier::Sonnet
    } else if s.words <= 3 && !tool_likely && questions == 0 {
        reasons.insert(0, format!("very short message ({} words)", s.words));
        Tier::Speed
    } else {
        reasons.insert(0, format!("simple message (complexity {})", s.complexity));
        Tier::Nano
    };

    if tool_likely {
        reasons.push(format!("tool call likely: {}", tool.join(", ")));
        if tier == Tier::Speed {
            tier = Tier::Nano;
            reasons.push("raised to nano for tool use".to_owned());
        }
        if tier == Tier::Search && has_tools {
            tier = if s.complexity >= SONNET_THRESHOLD {
                Tier::Sonnet
            } else {
                Tier::Nano
            };
            reasons.push(format!(
                "{tier} instead of search: the agent's tools answer this"
            ));
        }
    }

    RouteDecision {
        tier,
        reasons,
        scores: s,
        pinned: false,
    }
}

/// [`classify`], unless the agent pins a tier: then the pin decides (the scores are still
/// computed and reported).
pub fn route(message: &str, has_tools: bool, pinned: Option<Tier>) -> RouteDecision {
    let mut decision = classify(message, has_tools);
    if let Some(tier) = pinned {
        decision.reasons.insert(
            0,
            format!(
                "pinned to {tier} by the agent (classified {})",
                decision.tier
            ),
        );
        decision.tier = tier;
        decision.pinned = true;
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_table() {
        let long_essay = "I run a small online store that sells handmade furniture and I have been \
            thinking about how to expand into new markets over the next two years while keeping \
            my costs under control, hiring carefully and not losing the personal touch that my \
            customers value so much, and I would like your view on the main risks involved.";
        let cases: Vec<(&str, bool, Tier)> = vec![
            ("hi", false, Tier::Speed),
            ("Hello!", false, Tier::Speed),
            ("thanks a lot 🙏", false, Tier::Speed),
            ("good morning team", true, Tier::Speed),
            ("مرحبا", false, Tier::Speed),
            ("السلام عليكم", false, Tier::Speed),
            ("ok", true, Tier::Speed),
            ("What are your business hours?", false, Tier::Nano),
            (
                "Do you deliver to Alexandria on weekends?",
                false,
                Tier::Nano,
            ),
            ("Where is my order #ORD-1234?", true, Tier::Nano),
            ("track ORD-9981", true, Tier::Nano),
            ("What's the status of my order 55821", true, Tier::Nano),
            ("hi, where is my order?", true, Tier::Nano),
            ("فين طلبي رقم 4521؟", true, Tier::Nano),
            ("I want a refund", true, Tier::Nano),
            (
                "Why was I charged twice? Can you explain the fees?",
                false,
                Tier::Sonnet,
            ),
            (
                "Compare the premium and basic plans for me",
                false,
                Tier::Sonnet,
            ),
            (
                "اشرح لي الفرق بين الباقة الأساسية والمميزة",
                false,
                Tier::Sonnet,
            ),
            (
                "قارن بين الباقات وحلل التكلفة خطوة بخطوة",
                false,
                Tier::Complex,
            ),
            ("ليش الفاتورة عالية هالشهر؟", false, Tier::Nano),
            (
                "Explain step by step why my Python script raises an exception:\n```python\nprint(1/0)\n```",
                false,
                Tier::Complex,
            ),
            (
                "Analyze the pros and cons of leasing versus buying for a delivery fleet, \
                 compare total cost over 5 years, and explain which you recommend and why.",
                false,
                Tier::Complex,
            ),
            (
                "What's the latest news about the iPhone?",
                false,
                Tier::Search,
            ),
            ("today's price of gold", false, Tier::Search),
            ("ما هي آخر الأخبار اليوم", false, Tier::Search),
            (
                "search the web for the weather in Cairo",
                false,
                Tier::Search,
            ),
            (long_essay, false, Tier::Nano),
            (
                "Questions:\n- what sizes do you have?\n- do you ship abroad?\n- can I pay cash?\n- is there a warranty?",
                false,
                Tier::Sonnet,
            ),
            (
                "fix this: fn main() { println!(\"hi\") };",
                false,
                Tier::Sonnet,
            ),
            (
                "My order #A-5521 — what's the latest on it?",
                true,
                Tier::Nano,
            ),
        ];
        assert!(cases.len() >= 20);
        let mut failures = Vec::new();
        for (msg, tools, want) in &cases {
            let d = classify(msg, *tools);
            assert!(!d.reasons.is_empty(), "{msg}: no reasons");
            if d.tier != *want {
                failures.push(format!(
                    "{msg:?}: got {} want {want}; {:?} {:?}",
                    d.tier, d.reasons, d.scores
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn reasons_explain_the_decision() {
        let d = classify("Why is the sky blue? Explain step by step.", false);
        assert_eq!(d.tier, Tier::Complex);
        assert!(d.reasons[0].contains("high complexity"), "{:?}", d.reasons);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("why") && r.contains("step by step")),
            "{:?}",
            d.reasons
        );
        assert_eq!(d.scores.reasoning, 6);
        let d = classify("Where is my order #ORD-1234?", true);
        assert!(d.reasons.iter().any(|r| r.contains("tool call likely")));
        assert!(d.scores.tool >= 2);
    }

    #[test]
    fn word_cues_need_word_boundaries() {
        // "trust" is not "rust", "planet" has no cue, "whyte" is not "why".
        let d = classify("I trust Mr Whyte with the planet", false);
        assert_eq!(d.scores.code, 0);
        assert_eq!(d.scores.reasoning, 0);
        assert_eq!(d.tier, Tier::Nano);
    }

    #[test]
    fn pin_overrides() {
        let d = route("hi", false, Some(Tier::Complex));
        assert_eq!(d.tier, Tier::Complex);
        assert!(d.pinned);
        assert!(d.reasons[0].contains("pinned to complex"));
        assert!(d.reasons[0].contains("classified speed"));
        let d = route("hi", false, None);
        assert_eq!(d.tier, Tier::Speed);
        assert!(!d.pinned);
    }

    #[test]
    fn empty_message_is_cheap() {
        assert_eq!(classify("", false).tier, Tier::Speed);
        assert_eq!(classify("   ", true).tier, Tier::Speed);
    }
}
