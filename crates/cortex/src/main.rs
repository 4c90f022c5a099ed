//! The `cortex` binary: `serve`, `migrate`, `admin …`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cortex::auth::{api_key, password};
use cortex::config::Config;
use cortex::store::{ApiKeyStore, CompanyStore, NewApiKey, Role, RunStore, SqlStore, UserStore};

/// mimalloc: per-thread free lists suit a server that allocates and frees per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cortex",
    version,
    about = "Self-hosted, multi-tenant AI agent backend"
)]
struct Cli {
    /// TOML configuration file (optional; environment variables CORTEX_… override it).
    #[arg(long, global = true, env = "CORTEX_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the SQLite database and local files (default: ./data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve {
        /// Listen address (default 127.0.0.1:8080; env CORTEX_BIND).
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Operator tools that work directly on the database.
    #[command(subcommand)]
    Admin(Admin),
    /// Print the OpenAPI document and exit.
    Openapi,
}

#[derive(Subcommand)]
enum Admin {
    /// Create a company (tenant) and print its id.
    CreateCompany {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free")]
        plan: String,
    },
    /// Create a portal user in a company.
    CreateUser {
        #[arg(long)]
        company_id: uuid::Uuid,
        #[arg(long)]
        email: String,
        /// Read from CORTEX_NEW_USER_PASSWORD when omitted.
        #[arg(long, env = "CORTEX_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
        role: String,
    },
    /// Create an API key and print the raw key (shown only once).
    CreateKey {
        #[arg(long)]
        company_id: uuid::Uuid,
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (default "*").
        #[arg(long, value_delimiter = ',', default_value = "*")]
        scopes: Vec<String>,
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..=365))]
        expires_in_days: Option<i64>,
    },
    /// Put a company on a plan (`free`, `pro`, `enterprise`, or one configured under [plans]).
    SetPlan {
        #[arg(long)]
        company_id: uuid::Uuid,
        #[arg(long)]
        plan: String,
    },
    /// Meter a company with a prepaid balance in USD, top it up, or make it unmetered again.
    #[command(group(clap::ArgGroup::new("change").required(true).args(["set", "add", "unmetered"])))]
    Credits {
        #[arg(long)]
        company_id: uuid::Uuid,
        /// Set the balance to this many USD (e.g. 25 or 0.50).
        #[arg(long)]
        set: Option<f64>,
        /// Add this many USD (negative to deduct); an unmetered company starts from 0.
        #[arg(long, allow_negative_numbers = true)]
        add: Option<f64>,
        /// No balance: every call is allowed and only recorded.
        #[arg(long)]
        unmetered: bool,
    },
}

fn main() -> ExitCode {
    // The isolated document-conversion worker (hidden): it must not parse arguments, read the
    // configuration or start a runtime, so it comes before anything else.
    if std::env::args().nth(1).as_deref() == Some(cortex::knowledge::WORKER_SUBCOMMAND) {
        let code = cortex_ingest::worker_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cortex: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    if let Some(Command::Serve { bind: Some(bind) }) = &cli.command {
        config.bind = *bind;
    }
    let tracing = cortex::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cortex: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(
        cli.command.unwrap_or(Command::Serve { bind: None }),
        config,
    ));
    drop(runtime);
    tracing.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cortex: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } => {
            let bind = config.bind;
            let state = cortex::server::init(config).await?;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding {bind}"))?;
            tracing::info!(addr = %listener.local_addr()?, database = state.store.backend().name(),
                instance_id = %state.instance_id, "cortex listening");
            cortex::server::serve(state, listener, cortex::server::shutdown_signal()).await
        }
        Command::Migrate => {
            let store = open_store(&config).await?;
            println!("migrations applied ({})", store.backend().name());
            Ok(())
        }
        Command::Openapi => {
            println!("{}", cortex::api::openapi_json());
            Ok(())
        }
        Command::Admin(admin) => {
            let store = open_store(&config).await?;
            admin_command(&store, &config, admin).await
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    std::fs::create_dir_all(&config.data_dir)?;
    let store = SqlStore::connect(&config.effective_database_url()).await?;
    store.migrate().await?;
    Ok(store)
}

fn usd_to_micro(usd: f64) -> anyhow::Result<i64> {
    anyhow::ensure!(
        usd.is_finite() && usd.abs() < 1e12,
        "the amount must be a finite number of USD"
    );
    Ok((usd * 1e6).round() as i64)
}

async fn admin_command(store: &SqlStore, config: &Config, admin: Admin) -> anyhow::Result<()> {
    match admin {
        Admin::SetPlan { company_id, plan } => {
            anyhow::ensure!(
                config.plans.contains_key(&plan),
                "unknown plan {plan:?}; configured: {}",
                config.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            );
            store
                .set_plan(company_id, &plan)
                .await
                .map_err(|_| anyhow::anyhow!("no company {company_id}"))?;
            println!("{company_id}: plan {plan}");
        }
        Admin::Credits {
            company_id,
            set,
            add,
            unmetered,
        } => {
            anyhow::ensure!(
                store.get_company(company_id).await?.is_some(),
                "no company {company_id}"
            );
            let balance = if unmetered {
                store.set_credits(company_id, None).await?;
                None
            } else if let Some(usd) = set {
                let micro = usd_to_micro(usd)?;
                store.set_credits(company_id, Some(micro)).await?;
                Some(micro)
            } else {
                Some(
                    store
                        .add_credits(company_id, usd_to_micro(add.unwrap_or(0.0))?)
                        .await?,
                )
            };
            match balance {
                Some(m) => println!("{company_id}: credits {:.6} USD", m as f64 / 1e6),
                None => println!("{company_id}: unmetered"),
            }
        }
        Admin::CreateCompany { name, plan } => {
            let c = store.create_company(&name, &plan).await?;
            println!("{}", c.id);
        }
        Admin::CreateUser {
            company_id,
            email,
            password: pw,
            role,
        } => {
            anyhow::ensure!(
                store.get_company(company_id).await?.is_some(),
                "no company {company_id}"
            );
            anyhow::ensure!(
                pw.len() >= 8,
                "the password must have at least 8 characters"
            );
            let hash = password::hash(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            let role = Role::parse(&role).unwrap_or(Role::Member);
            let u = store.create_user(company_id, &email, &hash, role).await?;
            println!("{}", u.id);
        }
        Admin::CreateKey {
            company_id,
            name,
            scopes,
            expires_in_days,
        } => {
            anyhow::ensure!(
                store.get_company(company_id).await?.is_some(),
                "no company {company_id}"
            );
            let generated = api_key::generate();
            store
                .create_key(
                    company_id,
                    NewApiKey {
                        user_id: None,
                        name,
                        key_prefix: generated.prefix,
                        key_hash: generated.hash,
                        scopes,
                        expires_at: expires_in_days
                            .map(|d| chrono::Utc::now() + chrono::Duration::days(d)),
                    },
                )
                .await?;
            println!("{}", generated.raw);
        }
    }
    Ok(())
}
