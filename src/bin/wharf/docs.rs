//! `wharf completions SHELL` and `wharf manpage`: both generated from the
//! same clap definitions as the flags themselves, so they cannot drift.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::cli::Cli;

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "wharf", &mut script);
    print(&script)
}

/// Prints one manual page, wharf(1), with every subcommand's flags in it:
/// the usual title, name, synopsis, description and options, then a
/// section per subcommand, and the version.
pub fn manpage() -> anyhow::Result<ExitCode> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let man = Man::new(command.clone()).manual("User Commands");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;

    let subcommands: Vec<_> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .collect();
    let mut list = Roff::default();
    list.control("SH", ["COMMANDS"]);
    for sub in &subcommands {
        list.control("TP", []);
        list.text([bold(format!("wharf {}", sub.get_name()))]);
        if let Some(about) = sub.get_about() {
            list.text([roman(about.to_string())]);
        }
    }
    list.control("PP", []);
    list.text([roman(
        "Each command's options follow, in a section of its own; every command takes -h or --help.",
    )]);
    list.to_writer(&mut page)?;

    for sub in subcommands {
        let name = sub.get_name().to_owned();
        // Under a heading of their own: `.SH "WHARF SERVE OPTIONS"`.
        let heading = format!("wharf {name} options");
        // --help is said once above, not in every section.
        let sub = sub.clone().mut_args(|arg| {
            let help = arg.get_id() == "help";
            arg.help_heading(heading.clone()).hide(help)
        });
        let sub_man = Man::new(sub.clone());
        if sub.get_arguments().any(|arg| !arg.is_hide_set()) {
            sub_man.render_options_section(&mut page)?;
        }
        if let Some(after) = sub.get_after_long_help().or_else(|| sub.get_after_help()) {
            let mut extra = Roff::default();
            for line in after.to_string().lines() {
                extra.text([roman(line)]);
                extra.control("br", []);
            }
            extra.to_writer(&mut page)?;
        }
    }
    man.render_version_section(&mut page)?;
    print(&page)
}

/// Writes `bytes` to stdout. A reader that stops early (`| head`) is not an
/// error.
fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write to stdout"),
    }
}
