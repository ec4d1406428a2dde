#![doc = include_str!("../README.md")]
// This is the command-line front end: writing to stdout is its job.
#![allow(clippy::print_stdout)]

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// PrivaSIP over Tor: SIP signalling in which no one on the path learns who
/// is calling whom.
///
/// PrivaSIP encrypts the caller's (and callee's) SIP identity so that only
/// the proxies that must know it can read it; Tor hides who talks to whom
/// at the network layer. This binary holds every part: the proxy and
/// registrar, the user agent, key tools, a private Tor test network, the
/// demo (`privasip demo`: start here) and the benchmarks.
#[derive(Debug, Parser)]
#[command(
    name = "privasip",
    version,
    about,
    long_about,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Parse(cmd::parse::Args),
    Keygen(cmd::keygen::Args),
    Identity(cmd::identity::Args),
    Proxy(cmd::proxy::Args),
    User(cmd::user::Args),
    Testnet(cmd::testnet::Args),
    Bench(cmd::bench::Args),
    Ua(cmd::ua::Args),
    Demo(cmd::demo::Args),
    Audit(cmd::audit::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Parse(args) => cmd::parse::run(&args),
        Command::Keygen(args) => report(cmd::keygen::run(&args)),
        Command::Identity(args) => report(cmd::identity::run(&args)),
        Command::Proxy(args) => report(cmd::proxy::run(&args)),
        Command::User(args) => report(cmd::user::run(&args)),
        Command::Testnet(args) => report(cmd::testnet::run(&args)),
        Command::Bench(args) => report(cmd::bench::run(&args)),
        Command::Ua(args) => report(cmd::ua::run(&args)),
        Command::Demo(args) => report(cmd::demo::run(&args)),
        Command::Audit(args) => cmd::audit::run(&args),
    }
}

/// Exit 0 on success; otherwise the error and its causes on stderr, exit 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("privasip: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every subcommand and argument.
    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
