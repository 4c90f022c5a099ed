use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Page, SqlStore, StoreError, StoreResult, fmt_ts, new_id, now, one_row, parse_id, parse_ts,
};
use crate::actions::{Action, ActionDef};

#[derive(sqlx::FromRow)]
struct ActionRow {
    id: String,
    company_id: String,
    definition: String,
    created_at: String,
    updated_at: String,
}

impl TryFrom<ActionRow> for Action {
    type Error = StoreError;
    fn try_from(r: ActionRow) -> StoreResult<Self> {
        Ok(Action {
            id: parse_id(&r.id)?,
            company_id: parse_id(&r.company_id)?,
            def: serde_json::from_str(&r.definition)
                .map_err(|e| StoreError::Corrupt(format!("action: {e}")))?,
            created_at: parse_ts(&r.created_at)?,
            updated_at: parse_ts(&r.updated_at)?,
        })
    }
}

fn encode(def: &ActionDef) -> StoreResult<String> {
    serde_json::to_string(def).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Actions of a company. Names are unique per company (they are the model's tool names).
#[async_trait]
pub trait ActionStore {
    async fn create_action(&self, company_id: Uuid, def: &ActionDef) -> StoreResult<Action>;
    /// Several actions in one transaction: all are created, or none.
    async fn create_actions(
        &self,
        company_id: Uuid,
        defs: &[ActionDef],
    ) -> StoreResult<Vec<Action>>;
    async fn get_action(&self, company_id: Uuid, action_id: Uuid) -> StoreResult<Option<Action>>;
    async fn list_actions(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Action>>;
    /// The company's actions among `ids` (ids of other companies are ignored).
    async fn actions_by_ids(&self, company_id: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Action>>;
    async fn update_action(
        &self,
        company_id: Uuid,
        action_id: Uuid,
        def: &ActionDef,
    ) -> StoreResult<Action>;
    async fn delete_action(&self, company_id: Uuid, action_id: Uuid) -> StoreResult<()>;
}

#[async_trait]
impl ActionStore for SqlStore {
    async fn create_action(&self, company_id: Uuid, def: &ActionDef) -> StoreResult<Action> {
        self.create_actions(company_id, std::slice::from_ref(def))
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    async fn create_actions(
        &self,
        company_id: Uuid,
        defs: &[ActionDef],
    ) -> StoreResult<Vec<Action>> {
        let at = now();
        let mut tx = self.pool().begin().await?;
        let mut out = Vec::with_capacity(defs.len());
        for def in defs {
            let action = Action {
                id: new_id(),
                company_id,
                def: def.clone(),
                created_at: at,
                updated_at: at,
            };
            sqlx::query("INSERT INTO actions (id, company_id, name, definition, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                .bind(action.id.to_string())
                .bind(company_id.to_string())
                .bind(&def.name)
                .bind(encode(def)?)
                .bind(fmt_ts(at))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    StoreError::from_insert(e, &format!("an action named {:?}", def.name))
                })?;
            out.push(action);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn get_action(&self, company_id: Uuid, action_id: Uuid) -> StoreResult<Option<Action>> {
        sqlx::query_as::<_, ActionRow>(concat!(
            "SELECT id, company_id, definition, created_at, updated_at FROM actions",
            " WHERE company_id = $1 AND id = $2"
        ))
        .bind(company_id.to_string())
        .bind(action_id.to_string())
        .fetch_optional(self.pool())
        .await?
        .map(Action::try_from)
        .transpose()
    }

    async fn list_actions(
        &self,
        company_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Page<Action>> {
        self.company_page::<ActionRow, Action>(
            "SELECT COUNT(*) FROM actions WHERE company_id = $1",
            concat!(
                "SELECT id, company_id, definition, created_at, updated_at FROM actions",
                " WHERE company_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ),
            company_id,
            limit,
            offset,
        )
        .await
    }

    async fn actions_by_ids(&self, company_id: Uuid, ids: &[Uuid]) -> StoreResult<Vec<Action>> {
        // A company has few actions: read them all and keep the linked ones, in link order.
        let all = sqlx::query_as::<_, ActionRow>(concat!(
            "SELECT id, company_id, definition, created_at, updated_at FROM actions",
            " WHERE company_id = $1 LIMIT 1000"
        ))
        .bind(company_id.to_string())
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(Action::try_from)
        .collect::<StoreResult<Vec<_>>>()?;
        Ok(ids
            .iter()
            .filter_map(|id| all.iter().find(|a| a.id == *id).cloned())
            .collect())
    }

    async fn update_action(
        &self,
        company_id: Uuid,
        action_id: Uuid,
        def: &ActionDef,
    ) -> StoreResult<Action> {
        let done = sqlx::query("UPDATE actions SET name = $1, definition = $2, updated_at = $3 WHERE company_id = $4 AND id = $5")
            .bind(&def.name)
            .bind(encode(def)?)
            .bind(fmt_ts(now()))
            .bind(company_id.to_string())
            .bind(action_id.to_string())
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::from_insert(e, "an action with this name"))?
            .rows_affected();
        if done != 1 {
            return Err(StoreError::NotFound);
        }
        self.get_action(company_id, action_id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete_action(&self, company_id: Uuid, action_id: Uuid) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM actions WHERE company_id = $1 AND id = $2")
            .bind(company_id.to_string())
            .bind(action_id.to_string())
            .execute(self.pool())
            .await?;
        one_row(done)
    }
}
