//! Credentials: Argon2id passwords, HS256 portal session tokens, `ctx_` API keys, and the
//! resolved identity of a caller. Nothing here knows HTTP.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod key_cache;
pub mod password;

use uuid::Uuid;

/// Who is calling, after authentication. Every tenant-scoped operation takes its `company_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub company_id: Uuid,
    pub principal: Principal,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A portal user holding a session token.
    User {
        user_id: Uuid,
        role: crate::store::Role,
    },
    /// A server-side API key.
    ApiKey { key_id: Uuid },
    /// An embedded widget's session (`sdk_…` from `/v1/sdk/init`): chat with one agent only.
    Sdk { public_key_id: Uuid, agent_id: Uuid },
}

impl Identity {
    /// Company admins manage keys, agents and actions. API keys act for their company with the
    /// scopes they were given.
    pub fn is_admin(&self) -> bool {
        match &self.principal {
            Principal::User { role, .. } => *role == crate::store::Role::Admin,
            Principal::ApiKey { .. } => self.has_scope("admin"),
            Principal::Sdk { .. } => false,
        }
    }

    /// `*` grants every scope; `area:*` grants every scope of `area`.
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scopes.iter().any(|s| {
            s == "*"
                || s == wanted
                || s.strip_suffix(":*")
                    .is_some_and(|area| wanted.starts_with(&format!("{area}:")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[&str]) -> Identity {
        Identity {
            company_id: Uuid::nil(),
            principal: Principal::ApiKey {
                key_id: Uuid::nil(),
            },
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scopes_match_exactly_by_star_and_by_area() {
        assert!(key(&["*"]).has_scope("chat"));
        assert!(key(&["chat"]).has_scope("chat"));
        assert!(!key(&["chat"]).has_scope("agents:write"));
        assert!(key(&["agents:*"]).has_scope("agents:write"));
        assert!(!key(&["agents:*"]).has_scope("agentsx:write"));
        assert!(key(&["*"]).is_admin());
        assert!(!key(&["chat"]).is_admin());
    }
}
