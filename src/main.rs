//! earmark: identify the music played at an event against a licensed catalog.
//!
//! `main` parses the command line, runs the command and turns its outcome into
//! the exit code: 0 on success, 1 when a query found no match, 2 on error.

mod cli;
mod cluster;
mod cpu;
mod eval;
mod identify;
mod ingest;
mod keys;
mod monitor;
mod report;
mod rights;
mod scale;
mod scan;
mod serve;
mod similar;
mod upload;

use std::process::ExitCode;

use clap::Parser;

/// What a command reports besides errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done.
    Done,
    /// A query had no match (exit code 1).
    NoMatch,
}

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if !args.uses_network() {
        end_quietly_on_closed_pipe();
    }
    match cli::run(args) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NoMatch) => ExitCode::from(1),
        Err(e) => {
            eprintln!("earmark: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a line for a command that leaves SIGPIPE ignored (see
/// `cli::Args::uses_network`). A reader that has gone away (`earmark scan
/// ... | head`) ends the command quietly, as the signal ends the others,
/// rather than in a panic; what such a command writes to disk is whole
/// after every step, so nothing is lost.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("earmark: standard output: {e}");
        }
        std::process::exit(if e.kind() == std::io::ErrorKind::BrokenPipe {
            141
        } else {
            2
        });
    }
}

/// Lets `earmark index info ... | head` end quietly when the reader stops
/// reading, as Unix tools do, rather than panic on the failed print: the
/// default action of SIGPIPE, which Rust programs ignore. Not for network
/// commands: vectored socket writes raise SIGPIPE too when a peer hangs up.
fn end_quietly_on_closed_pipe() {
    // SAFETY: sets a signal's disposition to its default, at start-up,
    // before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
