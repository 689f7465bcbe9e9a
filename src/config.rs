//! The configuration file of `shoal serve --config FILE` (TOML), layered under flags and
//! environment variables: flag > `SHOAL_…` variable > file > default. Every setting of the file
//! is a `serve` flag (`heartbeat_ms = 50` is `--heartbeat-ms 50`), so a value is checked by the
//! same parser either way, and a bad one is reported with the key that holds it.

use std::ffi::OsString;
use std::path::Path;

use clap::Command;
use clap::parser::ValueSource;

/// Settings that are not configuration (they select the file, or print help).
const NOT_SETTINGS: &[&str] = &["config", "help", "version"];

/// A problem with the configuration file, in one line naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

/// `args` (a `serve` command line, program name first) with the settings of the TOML file at
/// `path` appended as flags, for every setting not already given by a flag or an environment
/// variable. `command` is the `serve` command, to look settings up and check their values.
pub fn layer_file(
    command: &Command,
    args: &[OsString],
    path: &Path,
) -> Result<Vec<OsString>, ConfigError> {
    let file = path.display().to_string();
    let fail = |message: String| ConfigError {
        file: file.clone(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(one_line(&e.to_string())))?;
    let matches = command
        .clone()
        .ignore_errors(true)
        .get_matches_from(args.iter().cloned());
    let mut layered = args.to_vec();
    for (key, value) in &table {
        let id = key.replace('-', "_");
        let Some(argument) = command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id && !NOT_SETTINGS.contains(&id.as_str()))
        else {
            return Err(fail(format!(
                "unknown setting `{key}`{}",
                suggestion(command, &id)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default()
            )));
        };
        let flag = format!(
            "--{}",
            argument.get_long().unwrap_or(argument.get_id().as_str())
        );
        let Some(text) = flag_value(value) else {
            return Err(fail(format!(
                "`{key}`: {} is not a setting value (use a string, number, boolean or list)",
                value.type_str()
            )));
        };
        // The value must parse on its own, so a bad one is blamed on its key.
        let is_switch = !argument.get_action().takes_values();
        if is_switch && !matches!(value, toml::Value::Boolean(_)) {
            return Err(fail(format!(
                "`{key}`: expected true or false, got {value}"
            )));
        }
        let single = [
            OsString::from("serve"),
            OsString::from(format!("{flag}={text}")),
        ];
        if !is_switch
            && !text.is_empty()
            && let Err(error) = command.clone().try_get_matches_from(single)
        {
            return Err(fail(format!("`{key}`: {}", clap_reason(&error))));
        }
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) if is_switch => layered.push(flag.into()),
            toml::Value::Boolean(false) if is_switch => {}
            // An empty string or list leaves the setting unset (as in the example file).
            _ if text.is_empty() => {}
            _ => layered.push(format!("{flag}={text}").into()),
        }
    }
    Ok(layered)
}

/// A TOML value as a flag's text: lists joined with commas.
fn flag_value(value: &toml::Value) -> Option<String> {
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => items
            .iter()
            .map(flag_value)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        toml::Value::Datetime(_) | toml::Value::Table(_) => return None,
    })
}

/// The reason clap gives for refusing a value, without its usage text.
fn clap_reason(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    one_line(first.trim_start_matches("error: "))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The known setting closest to a misspelled one (small edit distance), if any.
fn suggestion(command: &Command, id: &str) -> Option<String> {
    command
        .get_arguments()
        .map(|a| a.get_id().as_str().to_string())
        .filter(|name| !NOT_SETTINGS.contains(&name.as_str()))
        .map(|name| (edit_distance(&name, id), name))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

/// A commented sample configuration with every setting, its help, its environment variable
/// and its default.
pub fn example(command: &Command) -> String {
    let mut out = String::from(
        "# Shoal configuration: `shoal serve --config shoal.toml`.\n\
         # Precedence: command-line flag > SHOAL_… environment variable > this file > default.\n\
         # Every setting below is shown with its default (\"\" and [] mean unset); uncomment\n\
         # a line to change it.\n",
    );
    for argument in command.get_arguments() {
        let id = argument.get_id().as_str();
        if NOT_SETTINGS.contains(&id) {
            continue;
        }
        out.push('\n');
        if let Some(help) = argument.get_help() {
            for line in help.to_string().lines() {
                out.push_str(&format!("# {line}\n"));
            }
        }
        if let Some(env) = argument.get_env() {
            out.push_str(&format!("# Environment: {}\n", env.to_string_lossy()));
        }
        let defaults: Vec<String> = argument
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let takes_value = argument.get_action().takes_values();
        let is_list = matches!(argument.get_action(), clap::ArgAction::Append);
        let value = match (takes_value, defaults.as_slice()) {
            (false, _) => "false".to_string(),
            (true, []) if is_list => "[]".to_string(),
            (true, []) => "\"\"".to_string(),
            (true, [one]) => toml_literal(one),
            (true, many) => format!(
                "[{}]",
                many.iter()
                    .map(|v| toml_literal(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push_str(&format!("# {id} = {value}\n"));
    }
    out
}

/// `text` as a TOML value: numbers stay numbers, everything else becomes a string.
fn toml_literal(text: &str) -> String {
    if text.parse::<i64>().is_ok() || text.parse::<f64>().is_ok_and(f64::is_finite) {
        text.to_string()
    } else {
        toml::Value::String(text.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("serve")
            .arg(
                Arg::new("heartbeat_ms")
                    .long("heartbeat-ms")
                    .value_parser(clap::value_parser!(u64))
                    .default_value("50")
                    .help("Heartbeat interval."),
            )
            .arg(
                Arg::new("join")
                    .long("join")
                    .value_delimiter(',')
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("non_voter")
                    .long("non-voter")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"))
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn layered(args: &[&str], text: &str) -> Result<Vec<String>, String> {
        let file = file(text);
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        layer_file(&command(), &args, file.path())
            .map(|v| v.into_iter().map(|a| a.into_string().unwrap()).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn file_settings_become_flags_unless_given_on_the_command_line() {
        let args = layered(
            &["serve"],
            "heartbeat_ms = 70\njoin = [\"http://a\", \"http://b\"]\nnon-voter = true\n",
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "serve",
                "--heartbeat-ms=70",
                "--join=http://a,http://b",
                "--non-voter"
            ]
        );
        let args = layered(&["serve", "--heartbeat-ms", "90"], "heartbeat_ms = 70").unwrap();
        assert_eq!(args, ["serve", "--heartbeat-ms", "90"]);
    }

    #[test]
    fn a_bad_key_or_value_is_named() {
        let error = layered(&["serve"], "hearbeat_ms = 70").unwrap_err();
        assert!(error.contains("unknown setting `hearbeat_ms`"), "{error}");
        assert!(error.contains("did you mean `heartbeat_ms`"), "{error}");
        let error = layered(&["serve"], "heartbeat_ms = \"soon\"").unwrap_err();
        assert!(
            error.contains("`heartbeat_ms`") && error.contains("soon"),
            "{error}"
        );
        let error = layered(&["serve"], "heartbeat_ms = ").unwrap_err();
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn the_example_lists_every_setting_with_its_default() {
        let text = example(&command());
        assert!(text.contains("# heartbeat_ms = 50"), "{text}");
        assert!(text.contains("# non_voter = false"), "{text}");
        assert!(!text.contains("config ="), "{text}");
    }
}
