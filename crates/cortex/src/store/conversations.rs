use async_trait::async_trait;
use uuid::Uuid;

use super::direct::{Arg, args, direct_row};
use super::{SqlStore, StoreResult, fmt_ts, new_id, now};

/// One stored message of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// One model call of a turn: its model, tokens and cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCost {
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_microusd: i64,
}

/// A finished chat turn and what it cost, written together.
#[derive(Debug, Clone)]
pub struct Turn {
    pub agent_id: Uuid,
    pub conversation_id: Uuid,
    pub customer_id: String,
    pub user_message: String,
    pub reply: String,
    /// `nano`, `cache`, `extractive`, …
    pub model_used: String,
    /// The provider model that answered (empty for cache and extractive answers).
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Integer micro-USD; debited from a metered company's credits with the turn.
    pub cost_microusd: i64,
    pub cached: bool,
    pub tool_rounds: i64,
    pub latency_ms: i64,
    /// The turn's model calls, one usage row each (none for a cached or extractive answer:
    /// then one row of the totals above).
    pub calls: Vec<CallCost>,
}

/// Conversation history and usage metering.
#[async_trait]
pub trait ConversationStore {
    /// The last `limit` messages of a conversation, oldest first.
    async fn history(
        &self,
        company_id: Uuid,
        conversation_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<StoredMessage>>;
    /// Persist both messages of a turn and its usage event in one transaction.
    async fn record_turn(&self, company_id: Uuid, turn: &Turn) -> StoreResult<()>;
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    role: String,
    content: String,
}
direct_row!(MessageRow { role, content });

/// PostgreSQL: a turn with one model call, its usage row and the debit in one statement. The
/// parameters are the messages' ten then the usage row's fourteen, as `record_turn` builds them.
const PG_TURN: &str = concat!(
    "WITH m AS (INSERT INTO conversation_messages (id, company_id, agent_id, conversation_id, customer_id,",
    " role, content, created_at) VALUES ($1, $2, $3, $4, $5, 'user', $6, $7),",
    " ($8, $2, $3, $4, $5, 'assistant', $9, $10)),",
    " u AS (INSERT INTO usage_events (id, company_id, agent_id, conversation_id, model_used, model,",
    " input_tokens, output_tokens, cost_usd, cost_microusd, cached, tool_rounds, latency_ms, created_at)",
    " VALUES ($11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24))",
    " UPDATE companies SET credits_microusd = credits_microusd - $20",
    " WHERE id = $2 AND credits_microusd IS NOT NULL AND $20 <> 0"
);

#[async_trait]
impl ConversationStore for SqlStore {
    async fn history(
        &self,
        company_id: Uuid,
        conversation_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<StoredMessage>> {
        let mut rows: Vec<MessageRow> = self
            .fetch_rows(
                "SELECT role, content FROM conversation_messages WHERE company_id = $1 AND conversation_id = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT $3",
                args![company_id.to_string(), conversation_id.to_string(), limit],
            )
            .await?;
        rows.reverse();
        Ok(rows
            .into_iter()
            .map(|r| StoredMessage {
                role: r.role,
                content: r.content,
            })
            .collect())
    }

    async fn record_turn(&self, company_id: Uuid, t: &Turn) -> StoreResult<()> {
        let company = company_id.to_string();
        let (agent, conv) = (t.agent_id.to_string(), t.conversation_id.to_string());
        let at = now();
        // The reply sorts after the message even within one microsecond.
        let (user_at, reply_at) = (fmt_ts(at), fmt_ts(at + chrono::Duration::microseconds(1)));
        // Both messages in one statement: fewer round trips on the hot path.
        let mut statements: Vec<(&'static str, Vec<Arg>)> = vec![(
            "INSERT INTO conversation_messages (id, company_id, agent_id, conversation_id, customer_id, role, content, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'user', $6, $7), ($8, $2, $3, $4, $5, 'assistant', $9, $10)",
            args![
                new_id().to_string(),
                &company,
                &agent,
                &conv,
                &t.customer_id,
                &t.user_message,
                &user_at,
                new_id().to_string(),
                &t.reply,
                &reply_at,
            ],
        )];
        let totals = [CallCost {
            model: t.model.clone(),
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_microusd: t.cost_microusd,
        }];
        let calls = if t.calls.is_empty() {
            &totals[..]
        } else {
            &t.calls[..]
        };
        for (i, c) in calls.iter().enumerate() {
            // The turn's own figures (cached, rounds, latency) go with its last call.
            let last = i + 1 == calls.len();
            statements.push((
                "INSERT INTO usage_events (id, company_id, agent_id, conversation_id, model_used, model, input_tokens, \
                 output_tokens, cost_usd, cost_microusd, cached, tool_rounds, latency_ms, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                args![
                    new_id().to_string(),
                    &company,
                    &agent,
                    &conv,
                    &t.model_used,
                    &c.model,
                    c.input_tokens,
                    c.output_tokens,
                    c.cost_microusd as f64 / 1e6,
                    c.cost_microusd,
                    i64::from(t.cached && last),
                    if last { t.tool_rounds } else { 0 },
                    if last { t.latency_ms } else { 0 },
                    &reply_at,
                ],
            ));
        }
        if self.backend() == super::Backend::Postgres && calls.len() == 1 {
            // One round trip instead of five (BEGIN, two inserts, the debit, COMMIT): a single
            // statement is its own transaction.
            let args: Vec<Arg> = statements.into_iter().flat_map(|(_, a)| a).collect();
            return self.write_all(vec![(PG_TURN, args)]).await;
        }
        if let Some(debit) = super::runs::debit_statement(&company, t.cost_microusd) {
            statements.push(debit);
        }
        self.write_all(statements).await
    }
}
