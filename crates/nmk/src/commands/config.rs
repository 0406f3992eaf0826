//! `nmk config`: which config file is read and the settings every command would see, each with
//! where it came from. Reads only; the layering itself lives in `crate::config`.

use anyhow::Result;
use clap::Subcommand;

use super::Output;
use crate::config::{Settings, Source};
use crate::exit::Code;

/// `nmk config …`.
#[derive(Debug, Subcommand)]
#[command(
    after_help = "Examples:\n  nmk config show\n  nmk config path\n  NMK_THREADS=4 nmk config show --json"
)]
pub enum ConfigCommand {
    /// Print the effective settings and where each came from (flag, env, file or default).
    #[command(
        after_help = "Examples:\n  nmk config show\n  nmk config show --json\n  \
        NMK_MODEL=qwen2.5-coder-0.5b-instruct nmk config show\n  \
        nmk config show -- run --model smollm2-360m-instruct --max-tokens 64 \"hi\"\n  \
        nmk --config ./nmk.toml config show"
    )]
    Show {
        /// A command line (after `--`) whose settings to show, flags included, as that
        /// command would see them; without one, the settings before any command's flags.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// Print which config file is read (and whether it exists).
    #[command(
        after_help = "Examples:\n  nmk config path\n  nmk --home /tmp/nmk config path --json\n  \
        NMK_CONFIG=./nmk.toml nmk config path"
    )]
    Path,
}

/// Runs `nmk config …`. `declared` is the command line's definition as written (its defaults
/// are the built-in ones).
pub fn run(
    settings: &Settings,
    out: &Output,
    cmd: ConfigCommand,
    declared: &clap::Command,
) -> Result<Code> {
    match cmd {
        ConfigCommand::Path => {
            if out.json {
                out.print_json(&serde_json::json!({
                    "path": settings.path().display().to_string(),
                    "source": settings.path_source().as_str(),
                    "exists": settings.present(),
                }));
            } else {
                println!(
                    "{} ({}, {})",
                    settings.path().display(),
                    path_reason(settings.path_source()),
                    if settings.present() {
                        "exists"
                    } else {
                        "missing: built-in defaults apply"
                    }
                );
            }
            Ok(Code::Success)
        }
        ConfigCommand::Show { command } => show(settings, out, &command, declared),
    }
}

fn path_reason(source: Source) -> &'static str {
    match source {
        Source::Flag => "from --config",
        Source::Env => "from $NMK_CONFIG",
        _ => "the home's nmk.toml",
    }
}

fn show(
    settings: &Settings,
    out: &Output,
    command: &[String],
    declared: &clap::Command,
) -> Result<Code> {
    let matches = if command.is_empty() {
        None
    } else {
        let line = std::iter::once("nmk".to_string()).chain(command.iter().cloned());
        match settings.layer(declared.clone()).try_get_matches_from(line) {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("error: the command line to show does not parse:\n{e}");
                return Ok(Code::Usage);
            }
        }
    };
    let effective = settings.effective(declared, matches.as_ref());
    if out.json {
        let settings_json: Vec<_> = effective
            .iter()
            .map(|e| {
                serde_json::json!({
                    "key": e.key,
                    "value": e.value,
                    "source": e.source.as_str(),
                    "env": e.env,
                    "applies_to": e.applies_to,
                })
            })
            .collect();
        out.print_json(&serde_json::json!({
            "config": {
                "path": settings.path().display().to_string(),
                "source": settings.path_source().as_str(),
                "exists": settings.present(),
            },
            "command": command,
            "settings": settings_json,
        }));
        return Ok(Code::Success);
    }
    println!(
        "config file: {} ({}{})",
        settings.path().display(),
        path_reason(settings.path_source()),
        if settings.present() { "" } else { ", missing" }
    );
    let width = effective.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let value_width = effective.iter().map(|e| e.value.len()).max().unwrap_or(0);
    let env_width = effective.iter().map(|e| e.env.len()).max().unwrap_or(0);
    println!(
        "{:width$}  {:value_width$}  {:<7}  {:env_width$}  applies to",
        "key", "value", "source", "environment"
    );
    for e in &effective {
        println!(
            "{:width$}  {:value_width$}  {:<7}  {:env_width$}  {}",
            e.key,
            e.value,
            e.source.as_str(),
            e.env,
            e.applies_to.join(", "),
        );
    }
    Ok(Code::Success)
}
