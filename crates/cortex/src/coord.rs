//! Coordination between nodes. Embedded (no Redis): everything is in-process. Scaled out: Redis
//! pub/sub carries config-cache invalidations, so an agent update is seen by every node at once.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use uuid::Uuid;

use crate::agents::ConfigCache;

/// The node's link to its peers.
#[derive(Clone)]
pub enum Coordinator {
    /// A single node: nothing to tell anyone.
    Local,
    Redis {
        conn: redis::aio::ConnectionManager,
        client: redis::Client,
        prefix: String,
    },
}

impl Coordinator {
    /// Connect to Redis (when configured) with a short timeout, so a wrong URL fails the start.
    pub async fn connect(url: Option<&str>, prefix: &str) -> anyhow::Result<Self> {
        let Some(url) = url else {
            return Ok(Coordinator::Local);
        };
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| anyhow::anyhow!("Redis at {url} did not answer within 5 s"))??;
        Ok(Coordinator::Redis {
            conn,
            client,
            prefix: prefix.to_owned(),
        })
    }

    fn channel(prefix: &str) -> String {
        format!("{prefix}:config-invalidate")
    }

    /// Tell every node (this one included, through the cache directly) to drop an agent's config.
    pub async fn invalidate_agent(&self, cache: &ConfigCache, agent_id: Uuid) {
        cache.invalidate(agent_id);
        if let Coordinator::Redis { conn, prefix, .. } = self {
            let mut conn = conn.clone();
            if let Err(e) = conn
                .publish::<_, _, i64>(Self::channel(prefix), agent_id.to_string())
                .await
            {
                tracing::error!(error = %e, %agent_id, "could not publish a config invalidation; other nodes may serve it for up to 5 minutes");
            }
        }
    }

    /// Subscribe before serving, then keep applying other nodes' invalidations until `stop`.
    /// Reconnects after a lost connection; after one, every cached config is dropped, since
    /// invalidations may have been missed.
    pub async fn start_listener(
        &self,
        cache: std::sync::Arc<dyn Fn(Option<Uuid>) + Send + Sync>,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let Coordinator::Redis { client, prefix, .. } = self else {
            return Ok(());
        };
        let channel = Self::channel(prefix);
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        let client = client.clone();
        tasks.spawn(async move {
            loop {
                {
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            msg = messages.next() => match msg {
                                Some(m) => match m.get_payload::<String>().ok().and_then(|p: String| Uuid::parse_str(&p).ok()) {
                                    Some(id) => cache(Some(id)),
                                    None => tracing::warn!("ignoring a malformed config invalidation"),
                                },
                                None => break,
                            },
                        }
                    }
                }
                tracing::warn!("lost the Redis subscription; reconnecting");
                cache(None);
                pubsub = loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if let Ok(mut p) = client.get_async_pubsub().await
                        && p.subscribe(&channel).await.is_ok()
                    {
                        break p;
                    }
                };
            }
        });
        Ok(())
    }

    /// A real round trip (PING), for `/health/detailed`.
    pub async fn ping(&self) -> Option<Result<(), String>> {
        let Coordinator::Redis { conn, .. } = self else {
            return None;
        };
        let mut conn = conn.clone();
        let pong = tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        Some(match pong {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        })
    }
}
