//! The agent's system prompt: a Jinja2 template (minijinja), compiled once per loaded agent,
//! executed with a fuel limit so a tenant's template cannot loop forever.

use std::collections::HashSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Instructions executed per render at most; a `{% for %}` over a huge range runs out.
const FUEL: u64 = 200_000;
/// Longest rendered prompt, in bytes.
const MAX_RENDERED: usize = 256 * 1024;
const NAME: &str = "system_prompt";

/// The template used when an agent has no system prompt of its own.
pub const DEFAULT_TEMPLATE: &str = "You are {{ agent.name }}{% if personality.name %}, {{ personality.name }}{% endif %}.\
{% if personality.description %}\n{{ personality.description }}{% endif %}\
{% if dialect.name %}\nAnswer in {{ dialect.name }}{% if dialect.primary_language %} ({{ dialect.primary_language }}){% endif %}.{% endif %}\n\
Answer the customer's question helpfully and concisely. If you do not know, say so.";

/// A template error with its position, for the 422 at save time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    pub line: Option<usize>,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let mut message = e.kind().to_string();
        if let Some(detail) = e.detail() {
            message = format!("{message}: {detail}");
        }
        if let Some(line) = e.line() {
            message = format!("{message} (line {line})");
        }
        TemplateError {
            message,
            line: e.line(),
        }
    }
}

/// The variables a template sees.
#[derive(Debug, Serialize)]
pub struct PromptContext<'a> {
    pub agent: serde_json::Value,
    pub personality: &'a crate::agents::Personality,
    pub dialect: &'a crate::agents::Dialect,
    pub customer: serde_json::Value,
    pub memory: Vec<String>,
    pub knowledge: Vec<String>,
    pub faqs: Vec<serde_json::Value>,
    pub scenarios: &'a [crate::agents::Scenario],
    pub channel: &'a str,
    pub metadata: &'a serde_json::Map<String, serde_json::Value>,
    pub now: String,
    /// A run's `mode` (`code`, `chat`, …); absent for chats.
    pub mode: Option<&'a str>,
}

/// A compiled prompt template.
pub struct PromptTemplate {
    env: Environment<'static>,
    /// The context variables the template refers to; those it does not are appended as sections.
    pub uses: HashSet<String>,
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("uses", &self.uses)
            .finish()
    }
}

impl PromptTemplate {
    /// Compile `source` (the default template when empty).
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let source = if source.trim().is_empty() {
            DEFAULT_TEMPLATE
        } else {
            source
        };
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_recursion_limit(50);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_template_owned(NAME, source.to_owned())?;
        let uses = env.get_template(NAME)?.undeclared_variables(false);
        Ok(Self { env, uses })
    }

    /// Render with the given variables.
    pub fn render(&self, ctx: &PromptContext<'_>) -> Result<String, TemplateError> {
        let out = self.env.get_template(NAME)?.render(ctx)?;
        if out.len() > MAX_RENDERED {
            return Err(TemplateError {
                message: format!("rendered prompt exceeds {MAX_RENDERED} bytes"),
                line: None,
            });
        }
        Ok(out)
    }

    /// Render once with a sample of every variable, as a chat would fill them, so a template
    /// that compiles but cannot render (an unknown filter or function, a division by zero, a
    /// loop that runs out of fuel) is refused when it is saved, not on every chat after.
    pub fn test_render(&self, spec: &crate::agents::AgentSpec) -> Result<(), TemplateError> {
        let metadata = serde_json::Map::from_iter([(
            "source".to_owned(),
            serde_json::Value::String("sample".into()),
        )]);
        let faqs = spec
            .workflow_faqs
            .iter()
            .map(|f| serde_json::json!({"question": f.question, "answer": f.answer}))
            .collect();
        self.render(&PromptContext {
            agent: serde_json::json!({"id": "00000000-0000-0000-0000-000000000000", "name": spec.name}),
            personality: &spec.personality,
            dialect: &spec.dialect,
            customer: serde_json::json!({"id": "sample-customer"}),
            memory: vec!["A sample fact about the customer".into()],
            knowledge: vec!["A sample passage from the knowledge base".into()],
            faqs,
            scenarios: &spec.scenarios,
            channel: "web",
            metadata: &metadata,
            now: chrono::Utc::now().to_rfc3339(),
            mode: None,
        })
        .map(drop)
    }

    /// Whether the template places `var` itself.
    pub fn uses(&self, var: &str) -> bool {
        self.uses.contains(var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{Dialect, Personality};

    fn ctx<'a>(
        p: &'a Personality,
        d: &'a Dialect,
        m: &'a serde_json::Map<String, serde_json::Value>,
    ) -> PromptContext<'a> {
        PromptContext {
            agent: serde_json::json!({"name": "Support"}),
            personality: p,
            dialect: d,
            customer: serde_json::json!({"id": "c1"}),
            memory: vec!["Prefers Arabic".into()],
            knowledge: vec!["Open 9-6".into()],
            faqs: vec![],
            scenarios: &[],
            channel: "web",
            metadata: m,
            now: "2026-01-01T00:00:00Z".into(),
            mode: None,
        }
    }

    #[test]
    fn renders_variables_and_reports_what_it_uses() {
        let t = PromptTemplate::compile("Hi {{ customer.id }} on {{ channel }}: {{ memory | join(', ') }} {{ agent.name | upper }}").unwrap();
        let (p, d, m) = (
            Personality::default(),
            Dialect::default(),
            serde_json::Map::new(),
        );
        assert_eq!(
            t.render(&ctx(&p, &d, &m)).unwrap(),
            "Hi c1 on web: Prefers Arabic SUPPORT"
        );
        assert!(t.uses("memory") && t.uses("customer") && !t.uses("knowledge"));
    }

    #[test]
    fn syntax_errors_name_the_line_and_loops_run_out_of_fuel() {
        let e = PromptTemplate::compile("ok\n{% if %}").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let t = PromptTemplate::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap();
        let (p, d, m) = (
            Personality::default(),
            Dialect::default(),
            serde_json::Map::new(),
        );
        assert!(t.render(&ctx(&p, &d, &m)).is_err());
    }

    #[test]
    fn default_template_mentions_the_agent() {
        let t = PromptTemplate::compile("").unwrap();
        let p = Personality {
            name: "Friendly".into(),
            ..Default::default()
        };
        let d = Dialect {
            name: "Egyptian Arabic".into(),
            primary_language: "ar".into(),
        };
        let m = serde_json::Map::new();
        let out = t.render(&ctx(&p, &d, &m)).unwrap();
        assert!(out.starts_with("You are Support, Friendly."), "{out}");
        assert!(out.contains("Egyptian Arabic (ar)"));
    }
}
