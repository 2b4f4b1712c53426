//! `paas`: the command line for a paas platform. One file per command in `commands/`.
#![forbid(unsafe_code)]

mod archive;
mod client;
mod commands;
mod config;
mod exit;
mod manifest;
mod style;
mod terminal;
mod tty;
mod upload;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  error (the message says what went wrong)
  2  usage: a command, flag or value is wrong
  3  upload: the app folder could not be packed or uploaded
  4  staging: no buildpack could build the app
  5  start: the app was built but its instances did not start

Environment:
  PAAS_API, PAAS_TOKEN, PAAS_CA_CERT  target the API without `paas login`
  PAAS_SPACE                           the space to work in (instead of `paas target -s`)
  PAAS_PASSWORD                        the password `paas login -u USER` uses
  NO_COLOR                             no colour even on a terminal
  PAAS_HOME                            where `paas login` keeps its settings [default: ~/.paas]";

/// Push apps to a paas platform and manage them, the way `cf` does.
#[derive(Debug, Parser)]
#[command(name = "paas", version, after_help = AFTER_HELP)]
struct Cli {
    /// Do not verify the API's TLS certificate (only for a test platform you trust).
    #[arg(long, global = true)]
    skip_ssl_validation: bool,
    /// Print what commands that read (apps, app, events, revisions, buildpacks, env,
    /// routes, domains) get as JSON, and what push, restart and the like do as one JSON
    /// event per line, for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in (user and password, or a token) and save where to send requests.
    Login(commands::login::Args),
    /// Show the API, user and space the CLI works with; -s switches space.
    Target(commands::target::TargetArgs),
    /// End your login and forget what `paas login` saved.
    Logout(commands::target::Args),
    /// List the spaces you have a role in, with their use and quota.
    Spaces(commands::spaces::ListArgs),
    /// Show a space's use and quota.
    Space(commands::spaces::SpaceArgs),
    /// Make a space (platform admins).
    CreateSpace(commands::spaces::SpaceArgs),
    /// Delete a space that has no apps or services left (platform admins).
    DeleteSpace(commands::spaces::DeleteArgs),
    /// List a space's members and their roles.
    SpaceUsers(commands::spaces::SpaceArgs),
    /// Give a user a role in a space: manager, developer or auditor (space managers).
    SetSpaceRole(commands::spaces::RoleArgs),
    /// Take a user's role in a space away (space managers).
    UnsetSpaceRole(commands::spaces::RoleArgs),
    /// Limit what a space may use at once (space managers); 0 takes a limit away.
    SetSpaceQuota(commands::spaces::QuotaArgs),
    /// List users and their roles (platform admins).
    Users(commands::users::ListArgs),
    /// Make a user (platform admins).
    CreateUser(commands::users::CreateArgs),
    /// Delete a user; their logins end (platform admins).
    DeleteUser(commands::users::DeleteArgs),
    /// Change your password; your other logins end.
    Passwd(commands::users::PasswdArgs),
    /// Show who changed what, from where and when (your spaces; admins see all).
    Audit(commands::audit::Args),
    /// Show the CLI's version, and the API's.
    Version(commands::target::Args),
    /// Print a shell completion script: paas completion bash > /etc/bash_completion.d/paas
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Upload the app in a folder, build it with buildpacks and run it.
    Push(Box<commands::push::Args>),
    /// List apps.
    Apps(commands::apps::Args),
    /// Show an app: its settings, release and instances.
    App(commands::app::Args),
    /// List the cells that run instances: address, memory, instances.
    Cells(commands::cells::Args),
    /// Show an app's crashes, deploys and route changes (--follow streams new ones).
    Events(commands::events::Args),
    /// Show an app's logs: its staging, instances and platform events.
    Logs(commands::logs::Args),
    /// Run a command in a running instance and exit with its exit code.
    Exec(commands::exec::Args),
    /// List buildpacks in detection order.
    Buildpacks(commands::buildpacks::ListArgs),
    /// List the stacks apps can be built and run on (`push -s STACK`).
    Stacks(commands::buildpacks::ListArgs),
    /// Add a buildpack from a folder or a .zip, .tgz or .tar.gz archive.
    CreateBuildpack(commands::buildpacks::CreateArgs),
    /// Change a buildpack's bits, position or state.
    UpdateBuildpack(commands::buildpacks::UpdateArgs),
    /// Delete a buildpack that was added with create-buildpack.
    DeleteBuildpack(commands::buildpacks::DeleteArgs),
    /// Show an app's own environment variables, and what bound services add.
    Env(commands::env::ShowArgs),
    /// Set an environment variable of an app (applies at its next push or restart).
    SetEnv(commands::env::SetArgs),
    /// Remove an environment variable of an app.
    UnsetEnv(commands::env::UnsetArgs),
    /// Stage the app's current package again and roll its instances over.
    Restage(commands::restage::Args),
    /// Work with an app's droplet.
    #[command(subcommand)]
    Droplet(commands::droplet::Command),
    /// Start a stopped app.
    Start(commands::lifecycle::NameArgs),
    /// Stop all instances of an app (it stays stopped until started).
    Stop(commands::lifecycle::NameArgs),
    /// Replace every instance with a fresh one, rolling over.
    Restart(commands::lifecycle::RestartArgs),
    /// Add or stop instances (the others run on), or change memory or disk (rolling over)
    Scale(commands::lifecycle::ScaleArgs),
    /// List an app's revisions and what each changed
    Revisions(commands::lifecycle::NameArgs),
    /// Run an earlier revision again: its droplet, env and start command.
    Rollback(commands::lifecycle::RollbackArgs),
    /// Finish a paused canary deployment, rolling the rest of the instances over
    ContinueDeployment(commands::lifecycle::NameArgs),
    /// Take a paused canary deployment back: its canary stops
    CancelDeployment(commands::lifecycle::NameArgs),
    /// Make a user-provided service: credentials apps get in VCAP_SERVICES once bound
    CreateUserProvidedService(commands::services::CreateArgs),
    /// Change a user-provided service (bound apps see it at their next restart)
    UpdateUserProvidedService(commands::services::CreateArgs),
    /// List services and the apps bound to them
    Services(commands::services::ListArgs),
    /// Bind a service to an app (it applies at the app's next restart)
    BindService(commands::services::BindArgs),
    /// Unbind a service from an app (it applies at the app's next restart)
    UnbindService(commands::services::BindArgs),
    /// Delete a service no app is bound to
    DeleteService(commands::services::DeleteArgs),
    /// Run a one-off command of an app attached: its output here, its exit code paas's
    Run(commands::run::Args),
    /// Run a one-off command of an app in a container of its own (output in its logs)
    RunTask(commands::tasks::RunArgs),
    /// List an app's tasks (kept 30 days after they end)
    Tasks(commands::tasks::ListArgs),
    /// Terminate a running task
    TerminateTask(commands::tasks::TerminateArgs),
    /// Let an app's instances and stagings open connections to the world (not to the host
    /// or to other instances), rolling its instances over.
    AllowOutbound(commands::lifecycle::NameArgs),
    /// Take back an app's outbound access, rolling its instances over.
    DenyOutbound(commands::lifecycle::NameArgs),
    /// Stop an app and delete it.
    Delete(commands::delete::Args),
    /// List routes and the apps they are mapped to.
    Routes(commands::routes::ListArgs),
    /// Map a route (a host under a domain, optionally with a path) to an app.
    MapRoute(commands::routes::MapRouteArgs),
    /// Unmap a route from an app; the route is kept for it until deleted.
    UnmapRoute(commands::routes::MapArgs),
    /// Delete a route, unmapping it first.
    DeleteRoute(commands::routes::DeleteRouteArgs),
    /// Send a route's requests through a route service (a user-provided service made
    /// with -r https://...) before they reach the app.
    BindRouteService(commands::routes::RouteServiceArgs),
    /// Stop sending a route's requests through its route service.
    UnbindRouteService(commands::routes::RouteServiceArgs),
    /// List the domains routes can be made under.
    Domains(commands::routes::ListArgs),
    /// Add a domain for routes, optionally with its HTTPS certificate.
    CreateDomain(commands::routes::CreateDomainArgs),
    /// Delete a domain that has no routes.
    DeleteDomain(commands::routes::DeleteDomainArgs),
}

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => exit::fail(exit::Failure::general(format!("starting: {e}"))),
    };
    let skip = commands::Ctx {
        skip_ssl_validation: cli.skip_ssl_validation,
        json: cli.json,
    };
    let result = rt.block_on(async move {
        if !matches!(
            cli.command,
            Command::Login(_) | Command::Completion { .. } | Command::Version(_)
        ) {
            // A login's access token lives an hour: trade it in before it runs out.
            commands::refresh_login(skip).await;
        }
        match cli.command {
            Command::Login(a) => commands::login::run(a, skip).await,
            Command::Target(a) => commands::target::target(a, skip).await,
            Command::Logout(a) => commands::target::logout(a, skip).await,
            Command::Spaces(a) => commands::spaces::list(a, skip).await,
            Command::Space(a) => commands::spaces::show_one(a, skip).await,
            Command::CreateSpace(a) => commands::spaces::create(a, skip).await,
            Command::DeleteSpace(a) => commands::spaces::delete(a, skip).await,
            Command::SpaceUsers(a) => commands::spaces::users(a, skip).await,
            Command::SetSpaceRole(a) => commands::spaces::set_role(a, true, skip).await,
            Command::UnsetSpaceRole(a) => commands::spaces::set_role(a, false, skip).await,
            Command::SetSpaceQuota(a) => commands::spaces::set_quota(a, skip).await,
            Command::Users(a) => commands::users::list(a, skip).await,
            Command::CreateUser(a) => commands::users::create(a, skip).await,
            Command::DeleteUser(a) => commands::users::delete(a, skip).await,
            Command::Passwd(a) => commands::users::passwd(a, skip).await,
            Command::Audit(a) => commands::audit::run(a, skip).await,
            Command::Version(a) => commands::target::version(a, skip).await,
            Command::Completion { shell } => {
                use clap::CommandFactory;
                clap_complete::generate(shell, &mut Cli::command(), "paas", &mut std::io::stdout());
                Ok(())
            }
            Command::Push(a) => commands::push::run(*a, skip).await,
            Command::Apps(a) => commands::apps::run(a, skip).await,
            Command::App(a) => commands::app::run(a, skip).await,
            Command::Cells(a) => commands::cells::run(a, skip).await,
            Command::Events(a) => commands::events::run(a, skip).await,
            Command::Logs(a) => commands::logs::run(a, skip).await,
            Command::Delete(a) => commands::delete::run(a, skip).await,
            Command::Start(a) => commands::lifecycle::start(a, skip).await,
            Command::Stop(a) => commands::lifecycle::stop(a, skip).await,
            Command::Restart(a) => commands::lifecycle::restart(a, skip).await,
            Command::Scale(a) => commands::lifecycle::scale(a, skip).await,
            Command::Revisions(a) => commands::lifecycle::revisions(a, skip).await,
            Command::Rollback(a) => commands::lifecycle::rollback(a, skip).await,
            Command::ContinueDeployment(a) => {
                commands::lifecycle::continue_deployment(a, skip).await
            }
            Command::CancelDeployment(a) => commands::lifecycle::cancel_deployment(a, skip).await,
            Command::CreateUserProvidedService(a) => commands::services::create(a, skip).await,
            Command::UpdateUserProvidedService(a) => commands::services::update(a, skip).await,
            Command::Services(a) => commands::services::list(a, skip).await,
            Command::BindService(a) => commands::services::bind(a, skip).await,
            Command::UnbindService(a) => commands::services::unbind(a, skip).await,
            Command::DeleteService(a) => commands::services::delete(a, skip).await,
            Command::Run(a) => commands::run::run(a, skip).await,
            Command::RunTask(a) => commands::tasks::run(a, skip).await,
            Command::Tasks(a) => commands::tasks::list(a, skip).await,
            Command::TerminateTask(a) => commands::tasks::terminate(a, skip).await,
            Command::AllowOutbound(a) => commands::lifecycle::outbound(a, true, skip).await,
            Command::DenyOutbound(a) => commands::lifecycle::outbound(a, false, skip).await,
            Command::Restage(a) => commands::restage::run(a, skip).await,
            Command::Droplet(c) => commands::droplet::run(c, skip).await,
            Command::Env(a) => commands::env::show(a, skip).await,
            Command::SetEnv(a) => commands::env::set(a, skip).await,
            Command::UnsetEnv(a) => commands::env::unset(a, skip).await,
            Command::Buildpacks(a) => commands::buildpacks::list(a, skip).await,
            Command::Stacks(a) => commands::buildpacks::stacks(a, skip).await,
            Command::CreateBuildpack(a) => commands::buildpacks::create(a, skip).await,
            Command::UpdateBuildpack(a) => commands::buildpacks::update(a, skip).await,
            Command::DeleteBuildpack(a) => commands::buildpacks::delete(a, skip).await,
            Command::Exec(a) => commands::exec::run(a, skip).await,
            Command::Routes(a) => commands::routes::list(a, skip).await,
            Command::MapRoute(a) => commands::routes::map(a, skip).await,
            Command::UnmapRoute(a) => commands::routes::unmap(a, skip).await,
            Command::DeleteRoute(a) => commands::routes::delete(a, skip).await,
            Command::BindRouteService(a) => commands::routes::bind_route_service(a, skip).await,
            Command::UnbindRouteService(a) => commands::routes::unbind_route_service(a, skip).await,
            Command::Domains(a) => commands::routes::domains(a, skip).await,
            Command::CreateDomain(a) => commands::routes::create_domain(a, skip).await,
            Command::DeleteDomain(a) => commands::routes::delete_domain(a, skip).await,
        }
    });
    if let Err(f) = result {
        exit::fail(f);
    }
}
