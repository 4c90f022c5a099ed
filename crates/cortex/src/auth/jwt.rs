//! HS256 portal session tokens, and the widget's SDK session tokens (`sdk_` + an HS256 JWT
//! under a key derived for that purpose alone, so neither kind passes for the other).

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

/// What an SDK session token says: which public key issued it, for which agent and origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SdkClaims {
    /// The public key's id.
    pub sub: Uuid,
    pub company_id: Uuid,
    pub agent_id: Uuid,
    /// The page origin the session was opened from; requests from elsewhere are refused.
    pub origin: String,
    pub iat: i64,
    pub exp: i64,
}

pub const SDK_PREFIX: &str = "sdk_";

/// Signs and verifies session tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
    sdk_encoding: EncodingKey,
    sdk_decoding: DecodingKey,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl_seconds: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let sdk_secret = [b"cortex-sdk-session:".as_slice(), secret].concat();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds: i64::try_from(ttl_seconds).unwrap_or(i64::MAX / 2),
            sdk_encoding: EncodingKey::from_secret(&sdk_secret),
            sdk_decoding: DecodingKey::from_secret(&sdk_secret),
        }
    }

    /// An SDK session token (`sdk_…`) valid for `ttl_seconds`.
    pub fn issue_sdk(
        &self,
        public_key_id: Uuid,
        company_id: Uuid,
        agent_id: Uuid,
        origin: &str,
        ttl_seconds: i64,
    ) -> Result<(String, SdkClaims), jsonwebtoken::errors::Error> {
        let now = Utc::now().timestamp();
        let claims = SdkClaims {
            sub: public_key_id,
            company_id,
            agent_id,
            origin: origin.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_seconds),
        };
        let jwt =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.sdk_encoding)?;
        Ok((format!("{SDK_PREFIX}{jwt}"), claims))
    }

    /// Verify an `sdk_…` token: signature, expiry.
    pub fn verify_sdk(&self, token: &str) -> Option<SdkClaims> {
        let jwt = token.strip_prefix(SDK_PREFIX)?;
        jsonwebtoken::decode::<SdkClaims>(jwt, &self.sdk_decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
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

    #[test]
    fn sdk_and_portal_tokens_do_not_pass_for_each_other() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 60);
        let (sdk, claims) = keys
            .issue_sdk(
                Uuid::nil(),
                Uuid::max(),
                Uuid::nil(),
                "https://shop.test",
                60,
            )
            .unwrap();
        assert!(sdk.starts_with("sdk_"));
        assert_eq!(keys.verify_sdk(&sdk), Some(claims));
        assert!(
            keys.verify(&sdk[4..]).is_none(),
            "an SDK token is no portal session"
        );
        let portal = keys
            .issue(Uuid::nil(), Uuid::max(), "a@b.c", Role::Admin)
            .unwrap();
        assert!(keys.verify_sdk(&format!("sdk_{portal}")).is_none());
        let (expired, _) = keys
            .issue_sdk(
                Uuid::nil(),
                Uuid::max(),
                Uuid::nil(),
                "https://shop.test",
                -60,
            )
            .unwrap();
        assert!(keys.verify_sdk(&expired).is_none());
    }
}
