//! `shop`: every role of the shop in one binary. See `shop --help`.

use std::io::BufRead;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shop::{Application, Config, Roles};

/// glibc malloc showed up at ~15% of the command path under load; mimalloc is cheaper there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "shop", version, about = "An event-sourced commerce backend")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

// `CommandApi` names the role `shop command-api`, not a kind of `Command`.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run every role in one process (the embedded default when DATABASE_URL is unset).
    Serve,
    /// Run the command API only.
    CommandApi,
    /// Run the query API only (read models must be kept by `shop project` or `shop serve`).
    QueryApi,
    /// Run the projection workers only.
    Project,
    /// Run the relay to Kafka only (needs KAFKA_BROKERS).
    Relay {
        /// Publish history again: move the relay back to `--from` and exit; the running relay
        /// (or the next one started) publishes from there.
        #[arg(long, requires = "from")]
        republish: bool,
        /// Global log position to publish again from.
        #[arg(long)]
        from: Option<i64>,
    },
    /// Run the order saga only (stock, payment, confirmation and compensation of orders).
    Saga,
    /// Run the notifier only (e-mail for account, order and stock events).
    Notify,
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild read models from the event log into shadow tables and swap them in when they
    /// have caught up; reads keep working throughout.
    Replay {
        /// Projection to rebuild (`catalogue`, `stock`, `users`, `orders`, `product_detail`, `search`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        projection: Option<String>,
        /// Rebuild every projection.
        #[arg(long)]
        all: bool,
        /// Only report what would be rebuilt.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        /// `customer` or `admin` (admins are customers too).
        #[arg(long, default_value = "customer")]
        role: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Display name; defaults to the part of the e-mail address before the `@`.
        #[arg(long)]
        name: Option<String>,
    },
}

/// `mi_option_purge_delay` in mimalloc.h (v3): how long freed memory stays resident before it
/// goes back to the system, in milliseconds.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory may stay resident for reuse: mimalloc v2's default. mimalloc v3 keeps
/// it for a second, and under the bench's mix that held `shop serve` at 174-188 MiB where its
/// live heap peaked near 70 MiB (heaptrack); with 10 ms the mix peaked at 136 MiB at the same
/// throughput (`bench/README.md`, session 15).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Returns freed memory to the system after [`PURGE_DELAY_MS`], unless `MIMALLOC_PURGE_DELAY`
/// says otherwise.
fn return_freed_memory_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; mimalloc reads it on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
    }
}

fn main() -> anyhow::Result<()> {
    return_freed_memory_soon();
    let cli = Cli::try_parse().unwrap_or_else(|e| exit_naming_the_variable(e));
    // Built before the runtime: the OTLP exporter's blocking HTTP client must not live inside it.
    let traces = shop::telemetry::init(&cli.config, cli.command.role_name())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("failed to start the runtime")?;
    let result = runtime.block_on(run(cli));
    // A blocking task still running (a broker probe waits up to 2 s) does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    // Sends the spans still queued.
    if let Some(provider) = traces {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "traces not flushed");
        }
    }
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => Application::build(&cli.config).await?.run_until_stopped().await,
        Command::CommandApi => Application::build_roles(&cli.config, Roles::CommandApi).await?.run_until_stopped().await,
        Command::QueryApi => Application::build_roles(&cli.config, Roles::QueryApi).await?.run_until_stopped().await,
        Command::Project => Application::build_roles(&cli.config, Roles::Projections).await?.run_until_stopped().await,
        Command::Relay { republish: true, from: Some(from) } => shop::kafka::republish(&cli.config, from).await,
        Command::Relay { .. } => Application::build_roles(&cli.config, Roles::Relay).await?.run_until_stopped().await,
        Command::Saga => Application::build_roles(&cli.config, Roles::Saga).await?.run_until_stopped().await,
        Command::Notify => Application::build_roles(&cli.config, Roles::Notifier).await?.run_until_stopped().await,
        Command::Migrate => {
            shop::migrate(&cli.config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay { projection, all, dry_run } => shop::replay(&cli.config, projection.as_deref(), all, dry_run).await,
        Command::User(UserCommand::Create { email, role, tenant, name }) => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("failed to read the password from standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let done = shop::create_user(&cli.config, &tenant, &email, name.as_deref(), &role, password).await?;
            // The id is the command's output, for scripts.
            println!("{}", done.id);
            Ok(())
        }
    }
}

impl Command {
    /// The role, for the service name of exported traces (`shop-<role>`).
    fn role_name(&self) -> &'static str {
        match self {
            Command::Serve => "serve",
            Command::CommandApi => "command-api",
            Command::QueryApi => "query-api",
            Command::Project => "projections",
            Command::Relay { .. } => "relay",
            Command::Saga => "saga",
            Command::Notify => "notifier",
            Command::Migrate => "migrate",
            Command::Replay { .. } => "replay",
            Command::User(_) => "user",
        }
    }
}

/// A bad value stops the process with a message that names the environment variable it came
/// from (clap's own names only the flag).
fn exit_naming_the_variable(e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue};
    use clap::CommandFactory;
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.split_whitespace().next().unwrap_or_default().to_owned(),
        _ => e.exit(),
    };
    let command = Cli::command();
    let env = command.get_arguments().find(|a| a.get_long().is_some_and(|l| format!("--{l}") == flag)).and_then(|a| a.get_env());
    match env {
        Some(env) => {
            eprint!("{} (or {flag}) is not valid: {e}", env.to_string_lossy());
            std::process::exit(2)
        }
        None => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_soon() {
        // SAFETY: reads a plain integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert!(std::env::var_os("MIMALLOC_PURGE_DELAY").is_none(), "the test sets the option itself");
        // The option this names is the purge delay: v3's default, and the only option of 1,000.
        assert_eq!(get(), 1000, "MI_OPTION_PURGE_DELAY names mimalloc's purge delay");
        return_freed_memory_soon();
        assert_eq!(get(), PURGE_DELAY_MS);
    }
}
