//! `/v1/connections`: named credentials for actions. Secrets are write-only: they are sealed
//! (AES-256-GCM) before they reach the database and no endpoint returns them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::error::{ApiError, ApiResult, FieldError};
use super::extract::{
    ApiJson, Caller, Checks, PageInfo, Pagination, Validate, missing, path_id, require_admin,
};
use crate::actions::{AuthType, Credentials};
use crate::state::AppState;
use crate::store::{ActionStore, Connection, ConnectionStore};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConnection {
    /// 1–100 characters, unique in the company.
    pub name: String,
    /// `api_key`, `bearer`, `basic` or `oauth2`.
    pub auth_type: AuthType,
    pub credentials: Credentials,
}

fn credential_errors(auth_type: AuthType, creds: &Credentials, c: &mut Checks) {
    c.check(
        auth_type != AuthType::None,
        "auth_type",
        "auth_type is one of api_key, bearer, basic, oauth2",
        "enum",
    );
    for (field, msg) in creds.problems(auth_type) {
        c.push(FieldError {
            loc: vec!["body".into(), "credentials".into(), field.into()],
            msg,
            kind: "value_error".into(),
        });
    }
}

impl Validate for NewConnection {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        c.len("name", &self.name, 1, 100);
        credential_errors(self.auth_type, &self.credentials, &mut c);
        c.finish()
    }
}

/// Rename, or replace the credentials (rotation); the auth type stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

impl Validate for ConnectionUpdate {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Checks::default();
        if let Some(name) = &self.name {
            c.len("name", name, 1, 100);
        }
        c.finish()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    #[schema(value_type = String)]
    pub id: Uuid,
    pub name: String,
    pub auth_type: AuthType,
    /// The non-secret parts: header_name, username, token_url, client_id, scope.
    #[schema(value_type = Object)]
    pub public: Value,
    /// Always true: the secrets are stored, never shown.
    pub has_credentials: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        Self {
            id: c.id,
            name: c.name,
            auth_type: c.auth_type,
            public: c.public,
            has_credentials: true,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    pub success: bool,
    pub connections: Vec<ConnectionView>,
    pub pagination: PageInfo,
}

fn secret_box(state: &AppState) -> ApiResult<&crate::secrets::SecretBox> {
    state
        .secrets
        .as_deref()
        .ok_or_else(|| ApiError::ServiceUnavailable {
            message: "Connections need secrets.encryption_key (CORTEX_SECRETS__ENCRYPTION_KEY) on PostgreSQL".into(),
            detail: None,
        })
}

fn seal(state: &AppState, id: Uuid, creds: &Credentials) -> ApiResult<String> {
    let plain = serde_json::to_vec(creds).map_err(ApiError::internal)?;
    secret_box(state)?
        .seal(&plain, &id.to_string())
        .map_err(ApiError::internal)
}

/// Store credentials under a name; actions refer to them by `connection_id`.
#[utoipa::path(post, path = "/v1/connections", tag = "actions", request_body = NewConnection, security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = ConnectionView), (status = 401), (status = 403), (status = 409), (status = 422), (status = 503)))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<NewConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    require_admin(&caller, "connections")?;
    let id = crate::store::new_id();
    let at = crate::store::now();
    let conn = Connection {
        id,
        company_id: caller.company_id,
        name: body.name.trim().to_owned(),
        auth_type: body.auth_type,
        public: body.credentials.public(),
        sealed: seal(&state, id, &body.credentials)?,
        created_at: at,
        updated_at: at,
    };
    state.store.create_connection(&conn).await?;
    Ok((StatusCode::CREATED, Json(conn.into())))
}

#[utoipa::path(get, path = "/v1/connections", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("limit" = Option<i64>, Query), ("offset" = Option<i64>, Query)),
    responses((status = 200, body = ConnectionList), (status = 401), (status = 422)))]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    page: Pagination,
) -> ApiResult<Json<ConnectionList>> {
    let found = state
        .store
        .list_connections(caller.company_id, page.limit, page.offset)
        .await?;
    Ok(Json(ConnectionList {
        success: true,
        connections: found.items.into_iter().map(Into::into).collect(),
        pagination: page.info(found.total),
    }))
}

async fn owned(state: &AppState, company_id: Uuid, id: &str) -> ApiResult<Connection> {
    state
        .store
        .get_connection(company_id, path_id(id, "Connection")?)
        .await?
        .ok_or_else(|| ApiError::not_found("Connection"))
}

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ConnectionView), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ConnectionView>> {
    Ok(Json(owned(&state, caller.company_id, &id).await?.into()))
}

#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "actions", request_body = ConnectionUpdate, security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ConnectionView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConnectionUpdate>,
) -> ApiResult<Json<ConnectionView>> {
    require_admin(&caller, "connections")?;
    let mut conn = owned(&state, caller.company_id, &id).await?;
    if let Some(creds) = &body.credentials {
        let mut c = Checks::default();
        credential_errors(conn.auth_type, creds, &mut c);
        c.finish().map_err(ApiError::validation)?;
        conn.public = creds.public();
        conn.sealed = seal(&state, conn.id, creds)?;
    }
    if let Some(name) = body.name {
        conn.name = name.trim().to_owned();
    }
    state
        .store
        .update_connection(&conn)
        .await
        .map_err(missing("Connection"))?;
    Ok(Json(owned(&state, caller.company_id, &id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "actions", security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path)), responses((status = 200, description = "Deleted"), (status = 401), (status = 403), (status = 404), (status = 409, description = "Actions still use it")))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&caller, "connections")?;
    let conn = owned(&state, caller.company_id, &id).await?;
    let users = actions_using(&state, caller.company_id, conn.id).await?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "The connection is used by actions: {}",
            users.join(", ")
        )));
    }
    state
        .store
        .delete_connection(caller.company_id, conn.id)
        .await
        .map_err(missing("Connection"))?;
    Ok(Json(
        json!({"success": true, "id": conn.id, "deleted": true}),
    ))
}

/// Names of the company's actions whose credentials come from `connection_id`.
async fn actions_using(
    state: &AppState,
    company_id: Uuid,
    connection_id: Uuid,
) -> ApiResult<Vec<String>> {
    const PAGE: i64 = 200;
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let page = state.store.list_actions(company_id, PAGE, offset).await?;
        names.extend(
            page.items
                .iter()
                .filter(|a| a.def.connection_id == Some(connection_id))
                .map(|a| a.def.name.clone()),
        );
        offset += PAGE;
        if page.items.len() < PAGE as usize {
            return Ok(names);
        }
    }
}

/// An action that authenticates must name a connection of the company with its auth type.
pub async fn check_connection(
    state: &AppState,
    company_id: Uuid,
    def: &crate::actions::ActionDef,
) -> ApiResult<()> {
    if def.auth_type == AuthType::None {
        return Ok(());
    }
    let field = |msg: &str| {
        ApiError::validation(vec![FieldError::body("connection_id", msg, "value_error")])
    };
    let Some(id) = def.connection_id else {
        return Err(field(
            "an action with an auth_type other than none needs a connection_id",
        ));
    };
    match state.store.get_connection(company_id, id).await? {
        None => Err(field("no such connection")),
        Some(c) if c.auth_type != def.auth_type => Err(field(
            "the connection's auth_type differs from the action's",
        )),
        Some(_) => Ok(()),
    }
}
