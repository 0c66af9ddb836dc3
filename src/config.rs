//! `--config FILE` (`SQLKEEPER_CONFIG`): every flag of `sqlkeeper start` from a TOML file, as
//! `key = value` with the flag's name (`node-id = 2` or `node_id = 2`, `tls-required = true`).
//! Precedence: a flag on the command line, then its environment variable, then the file, then
//! the default. The file's settings become command-line flags that clap then parses like any
//! other, so they are checked exactly as flags are; an unknown key is an error.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::CommandFactory;

/// `args` (the process's, program name first) with the settings of the config file, if one is
/// given, appended as flags where neither the command line nor the environment sets them.
pub fn with_config_file<C: CommandFactory>(args: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    let given: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // Only `start` (named or not) reads a config file.
    if given
        .get(1)
        .is_some_and(|a| ["demo", "backup", "restore", "help"].contains(&a.as_str()))
    {
        return Ok(args);
    }
    let path = given
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| given.get(i + 1).cloned())
        .or_else(|| {
            given
                .iter()
                .find_map(|a| a.strip_prefix("--config=").map(str::to_string))
        })
        .or_else(|| std::env::var("SQLKEEPER_CONFIG").ok());
    let Some(path) = path.map(PathBuf::from) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read --config {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("--config {} is not valid TOML", path.display()))?;
    let command = C::command();
    let start = command
        .find_subcommand("start")
        .context("the start command")?;
    let mut args = args;
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = start
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            bail!("--config {}: unknown setting {key:?}", path.display());
        };
        let flag = format!("--{long}");
        // Checked whether or not it is used: a file that is wrong is wrong.
        let takes_value = arg.get_action().takes_values();
        let as_args: Vec<OsString> = match value {
            toml::Value::Boolean(true) if !takes_value => vec![flag.clone().into()],
            toml::Value::Boolean(false) if !takes_value => Vec::new(),
            toml::Value::String(s) if takes_value => vec![flag.clone().into(), s.into()],
            toml::Value::Integer(i) if takes_value => {
                vec![flag.clone().into(), i.to_string().into()]
            }
            other => bail!(
                "--config {}: {key} = {other} is not a {} value",
                path.display(),
                if takes_value {
                    "string or integer"
                } else {
                    "boolean"
                }
            ),
        };
        let on_command_line = given
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        let in_environment = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if !on_command_line && !in_environment {
            args.extend(as_args);
        }
    }
    Ok(args)
}
