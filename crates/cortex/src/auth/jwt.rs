//! HS256 portal session tokens.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::Role;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub company_id: Uuid,
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies session tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_seconds: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2),
        }
    }

    pub fn issue(
        &self,
        user_id: Uuid,
        company_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            company_id,
            email: email.to_owned(),
            role,
            iat: now,
            exp: now.saturating_add(self.ttl_seconds),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// Verify signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_forgeries_do_not() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let t = keys
            .issue(Uuid::nil(), Uuid::max(), "a@b.c", Role::Admin)
            .unwrap();
        let c = keys.verify(&t).unwrap();
        assert_eq!(c.company_id, Uuid::max());
        let other = JwtKeys::new(b"another-secret-another-secret-xx", 60);
        assert!(other.verify(&t).is_none());
        let expired = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 0);
        let mut claims = c.clone();
        claims.exp = Utc::now().timestamp() - 60;
        let t2 = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &expired.encoding)
            .unwrap();
        assert!(keys.verify(&t2).is_none());
    }
}
