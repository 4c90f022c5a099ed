//! ES256 tokens of an external identity provider, verified against the keys it publishes at a
//! configured JWKS URL. Keys are cached and fetched again when a token names an unknown `kid`
//! (at most every 30 s) or when they are 10 minutes old.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::store::Role;

const REFRESH_AFTER: Duration = Duration::from_secs(600);
const MIN_REFETCH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How external tokens map onto Cortex identities.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: String,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud`, when set.
    pub audience: Option<String>,
    /// The claim holding the company id (a UUID of an existing company).
    pub company_claim: String,
    /// The claim holding the role; `admin` makes a company admin, anything else a member.
    pub role_claim: String,
}

/// A verified external token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// `sub` when it is a UUID; otherwise a UUID v5 derived from `iss` and `sub`, so one
    /// external user always has the same id.
    pub user_id: Uuid,
    pub company_id: Uuid,
    pub role: Role,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

pub struct Jwks {
    settings: JwksSettings,
    http: reqwest::Client,
    validation: Validation,
    keys: tokio::sync::RwLock<KeySet>,
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> Self {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss]);
        }
        match &settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            validation,
            keys: tokio::sync::RwLock::default(),
        }
    }

    /// Whether a token is one of ours to check (ES256), before any key is looked up.
    pub fn handles(token: &str) -> bool {
        jsonwebtoken::decode_header(token).is_ok_and(|h| h.alg == Algorithm::ES256)
    }

    /// Signature, algorithm, expiry, issuer and audience; then the identity claims.
    pub async fn verify(&self, token: &str) -> Option<External> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::ES256 {
            return None;
        }
        let kid = header.kid.unwrap_or_default();
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .ok()?
            .claims;
        let sub = claims.get("sub")?.as_str()?;
        let user_id = Uuid::parse_str(sub).unwrap_or_else(|_| {
            let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
            Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("{iss}#{sub}").as_bytes())
        });
        let company_id = claims
            .get(&self.settings.company_claim)?
            .as_str()
            .and_then(|c| Uuid::parse_str(c).ok())?;
        let role = match claims
            .get(&self.settings.role_claim)
            .and_then(Value::as_str)
        {
            Some("admin") => Role::Admin,
            _ => Role::Member,
        };
        Some(External {
            user_id,
            company_id,
            role,
        })
    }

    /// The key named `kid` (an empty `kid` matches a set of exactly one key).
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let set = self.keys.read().await;
            let fresh = set.fetched.is_some_and(|t| t.elapsed() < REFRESH_AFTER);
            if fresh && let Some(k) = pick(&set.keys, kid) {
                return Some(k);
            }
        }
        let mut set = self.keys.write().await;
        // Another request may have refreshed while this one waited.
        let recent = set.fetched.is_some_and(|t| t.elapsed() < MIN_REFETCH);
        if !recent {
            match self.fetch().await {
                Ok(keys) => {
                    *set = KeySet {
                        keys,
                        fetched: Some(Instant::now()),
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %self.settings.url, "could not fetch the JWKS");
                    // Keep serving the keys we have; try again after MIN_REFETCH.
                    set.fetched = Some(Instant::now() - REFRESH_AFTER + MIN_REFETCH);
                }
            }
        }
        pick(&set.keys, kid)
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, DecodingKey>> {
        let set: JwkSet = self
            .http
            .get(&self.settings.url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let es256 = matches!(
                &jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec)
                    if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256
            );
            if !es256 {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
            }
        }
        Ok(keys)
    }
}

fn pick(keys: &HashMap<String, DecodingKey>, kid: &str) -> Option<DecodingKey> {
    if let Some(k) = keys.get(kid) {
        return Some(k.clone());
    }
    if kid.is_empty() && keys.len() == 1 {
        return keys.values().next().cloned();
    }
    None
}
