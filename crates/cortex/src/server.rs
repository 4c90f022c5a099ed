//! Start-up and lifecycle: connect, migrate, bootstrap, serve, drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::auth::jwt::JwtKeys;
use crate::auth::password;
use crate::config::Config;
use crate::state::AppState;
use crate::store::SqlStore;

/// Documents left `processing` by a process that died are failed, so their sources say what
/// happened instead of "processing" for ever. An ingestion marks its document alive every
/// quarter of `knowledge.ingestion_lease_seconds` (`Knowledge::alive_while`); what has gone a
/// whole lease without a mark is dead. At start-up on SQLite this process is the only one, so
/// every such document is from before it; on PostgreSQL another node may be ingesting, so only
/// those past their lease.
async fn fail_interrupted_ingestions(
    store: &SqlStore,
    lease: Duration,
    at_start: bool,
) -> anyhow::Result<()> {
    use crate::store::{Backend, KnowledgeStore};
    let before = if at_start && store.backend() == Backend::Sqlite {
        chrono::Utc::now()
    } else {
        chrono::Utc::now() - chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
    };
    let failed = store
        .fail_interrupted_documents(
            before,
            "ingestion interrupted: the server stopped while processing this document; upload it again",
        )
        .await
        .context("failing interrupted ingestions")?;
    if failed > 0 {
        tracing::warn!(
            documents = failed,
            "documents left processing by a stopped server marked failed"
        );
    }
    Ok(())
}

/// Every half lease, each node fails what a dead process left `processing` past its lease, so
/// no document waits for a restart to leave that state.
fn spawn_ingestion_sweeper(state: &AppState) {
    let st = state.clone();
    let lease = state.config.knowledge.ingestion_lease();
    state.tasks.spawn(async move {
        loop {
            tokio::select! {
                () = st.shutdown.cancelled() => return,
                () = tokio::time::sleep(lease / 2) => {}
            }
            if let Err(e) = fail_interrupted_ingestions(&st.store, lease, false).await {
                tracing::warn!(error = %e, "could not fail abandoned ingestions");
            }
        }
    });
}

/// Connect to the database, apply migrations, settle the signing secret and create the first
/// admin on an empty database.
pub async fn init(config: Config) -> anyhow::Result<AppState> {
    // Metrics recorded from here on reach `/v1/metrics`.
    let _ = crate::telemetry::prometheus();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = SqlStore::connect(&config.effective_database_url())
        .await
        .context("connecting to the database")?;
    store.migrate().await.context("applying migrations")?;
    let lease = config.knowledge.ingestion_lease();
    fail_interrupted_ingestions(&store, lease, true).await?;

    let secrets = secret_box(&config, store.backend())?;
    let secret = signing_secret(&config, &store, secrets.as_deref()).await?;
    let jwt = JwtKeys::new(secret.as_bytes(), config.auth.jwt_ttl_seconds);
    let instance_id = config.instance_id.clone().unwrap_or_else(|| {
        format!(
            "cortex-{}",
            &crate::auth::api_key::random_alphanumeric(10).to_lowercase()
        )
    });

    bootstrap(&store, &config).await?;
    let llm = build_llm(&config)?;
    // Load the tokenizer and the router's patterns now, not on the first chat.
    tokio::task::spawn_blocking(|| {
        cortex_llm::tokens::preload();
        cortex_llm::router::classify("warm up", false);
    })
    .await?;
    let actions = Arc::new(crate::actions::ActionTools::new(
        store.clone(),
        secrets.clone(),
        Arc::new(
            crate::actions::NetRunner::new(&config.network)
                .context("building the outbound HTTP client")?,
        ),
    ));
    let coord =
        crate::coord::Coordinator::connect(config.redis_url.as_deref(), &config.redis_prefix)
            .await
            .context("connecting to Redis")?;
    let knowledge = {
        let (config, backend) = (config.clone(), store.backend());
        // Local embedding models are loaded from disk here.
        tokio::task::spawn_blocking(move || crate::knowledge::Knowledge::new(&config, backend))
            .await?
            .context("setting up the knowledge base")?
    };
    tracing::info!(embedding_models = %knowledge.registry.names().join(", "),
        default = knowledge.registry.default_name(), "embedding models configured");
    let sandbox = Arc::new(crate::sandbox::Sandbox::start(&config, &instance_id).await);
    let state = AppState::new(
        Arc::new(config),
        store,
        jwt,
        instance_id,
        llm,
        actions,
        coord,
        Arc::new(knowledge),
        secrets,
        sandbox,
    );
    let st = state.clone();
    let apply = Arc::new(move |signal: crate::coord::Signal| match signal {
        crate::coord::Signal::Invalidate(Some(id)) => st.agent_cache.invalidate(id),
        crate::coord::Signal::Invalidate(None) => {
            st.agent_cache.clear();
            st.keys.set_usable(false);
        }
        crate::coord::Signal::Connected => st.keys.set_usable(true),
        crate::coord::Signal::ForgetKey(id) => st.keys.forget(id),
        crate::coord::Signal::StopRun(id) => {
            if let Some(run) = st.runs.local(id) {
                run.stop(crate::runs::StopReason::User);
            }
        }
    });
    state
        .coord
        .start_listener(apply, &state.tasks, state.shutdown.clone())
        .await
        .context("subscribing to Redis")?;
    crate::runs::start_background(&state)
        .await
        .context("starting agent runs")?;
    crate::pipeline::cache::spawn_sweeper(&state);
    spawn_ingestion_sweeper(&state);
    let moved = crate::runs::move_legacy_files(&state)
        .await
        .context("moving uploaded files into workspaces")?;
    if moved > 0 {
        tracing::info!(
            files = moved,
            "uploaded files moved from the database into workspaces"
        );
    }
    Ok(state)
}

/// The configured models, else the SDK environment conventions, else none (extractive responder).
fn build_llm(config: &Config) -> anyhow::Result<Option<Arc<cortex_llm::TieredClient>>> {
    let llm_config = if config.llm.is_empty() {
        cortex_llm::LlmConfig::from_env_defaults()
    } else {
        Some(config.llm.clone())
    };
    match llm_config {
        Some(c) => {
            let client = c.build().context("building the LLM clients")?;
            let tiers: Vec<String> = cortex_llm::Tier::ALL
                .iter()
                .filter_map(|t| {
                    client.chain(*t).map(|(_, chain)| {
                        format!(
                            "{t}={}",
                            chain
                                .entries()
                                .iter()
                                .map(|e| e.model.as_str())
                                .collect::<Vec<_>>()
                                .join("|")
                        )
                    })
                })
                .collect();
            tracing::info!(tiers = %tiers.join(" "), "models configured");
            Ok(Some(Arc::new(client)))
        }
        None => {
            tracing::info!(
                "no model configured: the built-in extractive responder answers from FAQs and knowledge. \
                 To use a model, set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server) or \
                 ANTHROPIC_API_KEY, or configure [llm] providers and tiers"
            );
            Ok(None)
        }
    }
}

/// On an empty database: the first company and its admin, with the configured password or a
/// generated one shown once on the terminal.
async fn bootstrap(store: &SqlStore, config: &Config) -> anyhow::Result<()> {
    let (pw, generated) = match &config.auth.bootstrap_password {
        Some(p) => (p.expose_secret().to_owned(), false),
        None => (crate::auth::api_key::random_alphanumeric(20), true),
    };
    let pw_for_hash = pw.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw_for_hash))
        .await?
        .map_err(|e| anyhow::anyhow!("hashing the bootstrap password: {e}"))?;
    if let Some((company, user)) = store
        .bootstrap("Default", &config.auth.bootstrap_email, &hash)
        .await?
    {
        tracing::info!(company_id = %company.id, user_id = %user.id, email = %user.email, "created the first company and admin");
        if generated {
            println!(
                "\n  Cortex created the first admin. This password is shown only once:\n\n    email:    {}\n    password: {}\n\n  Log in: curl -s -X POST http://{}/portal/api/login -H 'content-type: application/json' \\\n            -d '{{\"email\":\"{}\",\"password\":\"{}\"}}'\n",
                user.email, pw, config.bind, user.email, pw
            );
        }
    }
    Ok(())
}

/// The box that seals connection credentials: the configured key, or on SQLite the data
/// directory's key file; on PostgreSQL without a configured key there is none (every node
/// must share the key, and keeping it in the same database would protect nothing).
/// The session signing secret: `auth.jwt_secret` when configured, else one generated on the
/// first start and kept in the database sealed with the secrets key (every node of a shared
/// database signs with it). A secret an earlier version stored in clear is sealed, then its clear
/// row deleted, so sessions already issued stay valid.
async fn signing_secret(
    config: &Config,
    store: &SqlStore,
    secrets: Option<&crate::secrets::SecretBox>,
) -> anyhow::Result<String> {
    const SEALED: &str = "jwt_secret_sealed";
    const CLEAR: &str = "jwt_secret";
    const BOUND_TO: &str = "settings:jwt_secret";
    if let Some(s) = &config.auth.jwt_secret {
        return Ok(s.expose_secret().to_owned());
    }
    let Some(secrets) = secrets else {
        anyhow::bail!(
            "on PostgreSQL, set auth.jwt_secret (CORTEX_AUTH__JWT_SECRET) or secrets.encryption_key \
             (CORTEX_SECRETS__ENCRYPTION_KEY): the generated session secret is kept sealed with that key"
        );
    };
    let candidate = match store.get_setting(CLEAR).await? {
        Some(clear) => clear,
        None => crate::auth::api_key::random_alphanumeric(64),
    };
    let sealed = store
        .get_or_init_setting(SEALED, &secrets.seal(candidate.as_bytes(), BOUND_TO)?)
        .await?;
    let secret = match secrets.open(&sealed, BOUND_TO).map(String::from_utf8) {
        Ok(Ok(secret)) => secret,
        // Another key sealed it (the key was replaced or lost): sessions are the only thing
        // signed with it, so a new secret costs a sign-in, not data.
        _ => {
            tracing::warn!(
                "the stored session secret does not open with this secrets key: a new one is \
                 generated, and sessions signed before are refused"
            );
            let fresh = crate::auth::api_key::random_alphanumeric(64);
            store
                .set_setting(SEALED, &secrets.seal(fresh.as_bytes(), BOUND_TO)?)
                .await?;
            fresh
        }
    };
    store.delete_setting(CLEAR).await?;
    Ok(secret)
}

fn secret_box(
    config: &Config,
    backend: crate::store::Backend,
) -> anyhow::Result<Option<Arc<crate::secrets::SecretBox>>> {
    let key = match (&config.secrets.encryption_key, backend) {
        (Some(k), _) => {
            crate::secrets::decode_key(k.expose_secret()).map_err(anyhow::Error::msg)?
        }
        (None, crate::store::Backend::Sqlite) => crate::secrets::key_file(&config.data_dir)
            .context("reading or creating the secrets key file")?,
        (None, crate::store::Backend::Postgres) => {
            tracing::warn!(
                "secrets.encryption_key is not set: connections (action credentials) are unavailable"
            );
            return Ok(None);
        }
    };
    Ok(Some(Arc::new(crate::secrets::SecretBox::new(&key)?)))
}

/// Serve until `signal` resolves, then: health answers 503 for `announce_seconds` while
/// connections are still accepted, then no new connections and in-flight requests get up to
/// `drain_seconds` to finish.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let announce = Duration::from_secs_f64(state.config.shutdown.announce_seconds);
    let drain = Duration::from_secs_f64(state.config.shutdown.drain_seconds);
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let graceful = async move {
        signal.await;
        tracing::info!(instance_id = %st.instance_id, "shutdown requested: health now answers 503");
        st.begin_shutdown();
        // Runs get the drain time, then are stopped with their events flushed.
        let runs = st.clone();
        st.tasks
            .spawn(async move { crate::runs::drain(&runs, drain).await });
        tokio::time::sleep(announce).await;
        tracing::info!("no longer accepting connections; draining in-flight requests");
        let _ = draining_tx.send(());
    };
    let server = crate::api::serve(state.clone(), listener, graceful);
    let deadline = async move {
        if draining_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        res = server => res.context("http server")?,
        () = deadline => tracing::warn!(drain_seconds = drain.as_secs_f64(), "drain time elapsed; closing remaining connections"),
    }
    state.tasks.close();
    if tokio::time::timeout(drain, state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks still running at exit");
    }
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
