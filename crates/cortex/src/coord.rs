//! Coordination between nodes. Embedded (no Redis): everything is in-process. Scaled out: Redis
//! pub/sub carries config-cache invalidations (an agent update is seen by every node at once) and
//! run stop requests; a Redis stream per run carries its events to viewers on other nodes.

use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use uuid::Uuid;

use crate::agents::ConfigCache;

static PING_TIMEOUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Redis pings that timed out since the process started.
pub fn ping_timeouts() -> u64 {
    PING_TIMEOUTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// What another node asked of this one.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    /// Drop an agent's cached config (`None`: every config, after a lost subscription).
    Invalidate(Option<Uuid>),
    /// Stop a run if it executes here.
    StopRun(Uuid),
    /// Forget a revoked API key.
    ForgetKey(Uuid),
    /// Subscribed again after a lost subscription.
    Connected,
}

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

    fn stop_channel(prefix: &str) -> String {
        format!("{prefix}:run-stop")
    }

    fn key_channel(prefix: &str) -> String {
        format!("{prefix}:key-revoke")
    }

    fn key_ack(prefix: &str, token: &str) -> String {
        format!("{prefix}:key-revoke-ack:{token}")
    }

    fn run_key(prefix: &str, run_id: Uuid) -> String {
        format!("{prefix}:run:{run_id}")
    }

    pub fn is_redis(&self) -> bool {
        matches!(self, Coordinator::Redis { .. })
    }

    /// Append a run's frames to its Redis stream (entry id `seq-0`), where viewers on other
    /// nodes read them; the stream expires a day after its last write. Best effort: the
    /// database has every frame too.
    pub async fn publish_run_frames(&self, run_id: Uuid, frames: &[crate::pipeline::Frame]) {
        let Coordinator::Redis { conn, prefix, .. } = self else {
            return;
        };
        if frames.is_empty() {
            return;
        }
        let key = Self::run_key(prefix, run_id);
        let mut pipe = redis::pipe();
        for f in frames {
            pipe.cmd("XADD")
                .arg(&key)
                .arg(format!("{}-0", f.seq))
                .arg("event")
                .arg(&f.name)
                .arg("data")
                .arg(&f.data)
                .ignore();
        }
        pipe.cmd("EXPIRE").arg(&key).arg(86_400).ignore();
        let mut conn = conn.clone();
        let sent = tokio::time::timeout(
            Duration::from_millis(500),
            pipe.query_async::<()>(&mut conn),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %run_id, "could not publish run events to Redis")
            }
            Err(_) => tracing::warn!(%run_id, "publishing run events to Redis timed out"),
        }
    }

    /// A run's frames after `after` from its Redis stream (empty without Redis).
    pub async fn read_run_frames(
        &self,
        run_id: Uuid,
        after: u64,
        count: usize,
    ) -> Vec<crate::pipeline::Frame> {
        let Coordinator::Redis { conn, prefix, .. } = self else {
            return Vec::new();
        };
        let mut conn = conn.clone();
        let read = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("XRANGE")
                .arg(Self::run_key(prefix, run_id))
                .arg(format!("({after}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async::<Vec<(String, Vec<String>)>>(&mut conn),
        )
        .await;
        let Ok(Ok(entries)) = read else {
            return Vec::new();
        };
        entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let seq = id.split('-').next()?.parse::<u64>().ok()?;
                let mut name = None;
                let mut data = None;
                for pair in fields.chunks(2) {
                    match (pair.first().map(String::as_str), pair.get(1)) {
                        (Some("event"), Some(v)) => name = Some(v.clone()),
                        (Some("data"), Some(v)) => data = Some(v.clone()),
                        _ => {}
                    }
                }
                Some(crate::pipeline::Frame {
                    seq,
                    name: name?,
                    data: data?,
                })
            })
            .collect()
    }

    /// Run ids of the run streams in Redis (`/v1/metrics/system`); empty without Redis.
    pub async fn run_stream_ids(&self) -> Vec<Uuid> {
        let Coordinator::Redis { conn, prefix, .. } = self else {
            return Vec::new();
        };
        let mut conn = conn.clone();
        let pattern = format!("{prefix}:run:*");
        let mut cursor: u64 = 0;
        let mut ids = Vec::new();
        for _ in 0..1000 {
            let page = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async::<(u64, Vec<String>)>(&mut conn)
                .await;
            let Ok((next, keys)) = page else { break };
            ids.extend(
                keys.iter()
                    .filter_map(|k| k.rsplit(':').next().and_then(|id| Uuid::parse_str(id).ok())),
            );
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        ids
    }

    /// Ask every node to stop a run (the one running it does).
    pub async fn publish_stop(&self, run_id: Uuid) {
        if let Coordinator::Redis { conn, prefix, .. } = self {
            let mut conn = conn.clone();
            if let Err(e) = conn
                .publish::<_, _, i64>(Self::stop_channel(prefix), run_id.to_string())
                .await
            {
                tracing::warn!(error = %e, %run_id, "could not publish a stop; the run's node sees it at its next lease renewal");
            }
        }
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

    /// Forget a revoked API key on every node, this one first, and return once every node
    /// subscribed has acknowledged (each acknowledges after forgetting it), so the key fails on
    /// its very next request wherever it arrives. Waits at most two seconds: a node that does
    /// not answer by then has lost its subscription, and a node without one does not use its
    /// cache (see `KeyCache::set_usable`).
    pub async fn revoke_key(&self, keys: &crate::auth::key_cache::KeyCache, key_id: Uuid) {
        keys.forget(key_id);
        let Coordinator::Redis { conn, prefix, .. } = self else {
            return;
        };
        let mut conn = conn.clone();
        let token = Uuid::new_v4().to_string();
        let receivers = match conn
            .publish::<_, _, i64>(Self::key_channel(prefix), format!("{key_id} {token}"))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, %key_id, "could not publish a key revocation; other nodes trust the key for up to auth.api_key_cache_seconds");
                return;
            }
        };
        let ack = Self::key_ack(prefix, &token);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let acked: Option<i64> = conn.get(&ack).await.unwrap_or(None);
            if acked.unwrap_or(0) >= receivers {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(%key_id, receivers, acked = acked.unwrap_or(0), "not every node acknowledged a key revocation within 2 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _: Result<i64, _> = conn.del(&ack).await;
    }

    /// Subscribe before serving, then keep applying other nodes' invalidations until `stop`.
    /// Reconnects after a lost connection; after one, every cached config is dropped, since
    /// invalidations may have been missed.
    pub async fn start_listener(
        &self,
        on: std::sync::Arc<dyn Fn(Signal) + Send + Sync>,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let Coordinator::Redis {
            client,
            prefix,
            conn,
        } = self
        else {
            return Ok(());
        };
        let channel = Self::channel(prefix);
        let stop_channel = Self::stop_channel(prefix);
        let key_channel = Self::key_channel(prefix);
        let channels = [channel.clone(), stop_channel.clone(), key_channel.clone()];
        let (mut conn, prefix) = (conn.clone(), prefix.clone());
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channels).await?;
        let client = client.clone();
        tasks.spawn(async move {
            loop {
                {
                    let mut messages = pubsub.on_message();
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            msg = messages.next() => match msg {
                                Some(m) if m.get_channel_name() == key_channel => {
                                    let payload = m.get_payload::<String>().unwrap_or_default();
                                    let Some((id, token)) = payload.split_once(' ') else { continue };
                                    if let Ok(id) = Uuid::parse_str(id) {
                                        on(Signal::ForgetKey(id));
                                    }
                                    // Acknowledged once forgotten; the revoking node waits for it.
                                    let ack = Self::key_ack(&prefix, token);
                                    let done: redis::RedisResult<()> = redis::pipe()
                                        .incr(&ack, 1).ignore()
                                        .expire(&ack, 60).ignore()
                                        .query_async(&mut conn)
                                        .await;
                                    if let Err(e) = done {
                                        tracing::warn!(error = %e, "could not acknowledge a key revocation");
                                    }
                                }
                                Some(m) => match m.get_payload::<String>().ok().and_then(|p: String| Uuid::parse_str(&p).ok()) {
                                    Some(id) if m.get_channel_name() == stop_channel => on(Signal::StopRun(id)),
                                    Some(id) => on(Signal::Invalidate(Some(id))),
                                    None => tracing::warn!("ignoring a malformed coordination message"),
                                },
                                None => break,
                            },
                        }
                    }
                }
                tracing::warn!("lost the Redis subscription; reconnecting");
                on(Signal::Invalidate(None));
                pubsub = loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if let Ok(mut p) = client.get_async_pubsub().await
                        && p.subscribe(&channels).await.is_ok()
                    {
                        break p;
                    }
                };
                on(Signal::Connected);
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
            Err(_) => {
                PING_TIMEOUTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err("timed out".into())
            }
        })
    }
}
