//! The config file `nmk.toml` and how settings are layered: a command-line flag beats an
//! environment variable, which beats the config file, which beats the built-in default.
//!
//! Owns: finding the file (`--config`, else `$NMK_CONFIG`, else `<home>/nmk.toml`), parsing it
//! strictly (unknown keys are errors), the table of covered settings (each with its key, its
//! environment variable and the command arguments it feeds), and layering them onto the clap
//! command before the command line is parsed. It may not touch any command's behaviour: a
//! command sees only its (layered) arguments, so every command keeps a single source of truth.
//!
//! The layering rides on clap itself: each covered argument gets the setting's environment
//! variable as its `env` and the file's value as its default, so clap applies
//! flag > env > default, and `ArgMatches::value_source` tells which one won.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use serde::Deserialize;

/// The model commands load when neither a flag, `$NMK_MODEL` nor the config file names one.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The name of the config file inside the nmk home.
pub const FILE_NAME: &str = "nmk.toml";

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "NMK_CONFIG";

/// The environment variable naming the nmk home.
pub const HOME_ENV: &str = "NMK_HOME";

/// Largest config file read; anything bigger is not a hand-written config.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One setting the config file covers.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Its dotted key in `nmk.toml` (`model`, `run.max_tokens`, `serve.port`).
    pub key: &'static str,
    /// The environment variable that overrides the file.
    pub env: &'static str,
    /// The arguments it feeds: a subcommand path and the argument's id there. Arguments of
    /// commands that do not exist in this build are skipped.
    pub targets: &'static [(&'static [&'static str], &'static str)],
}

/// Every setting the config file covers.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "model",
        env: "NMK_MODEL",
        targets: &[
            (&["run"], "model"),
            (&["tokenize"], "model"),
            (&["bench"], "model"),
            (&["train-head"], "model"),
            (&["prove"], "model"),
            (&["demo"], "model"),
            (&["chat"], "model"),
            (&["serve"], "model"),
        ],
    },
    Setting {
        key: "threads",
        env: "NMK_THREADS",
        targets: &[
            (&["run"], "threads"),
            (&["tokenize"], "threads"),
            (&["bench"], "threads"),
            (&["train-head"], "threads"),
            (&["learn"], "threads"),
            (&["chat"], "threads"),
            (&["serve"], "threads"),
        ],
    },
    Setting {
        key: "run.max_tokens",
        env: "NMK_RUN_MAX_TOKENS",
        targets: &[(&["run"], "max_tokens")],
    },
    Setting {
        key: "run.temperature",
        env: "NMK_RUN_TEMPERATURE",
        targets: &[(&["run"], "temp")],
    },
    Setting {
        key: "run.seed",
        env: "NMK_RUN_SEED",
        targets: &[(&["run"], "seed")],
    },
    Setting {
        key: "learn.model",
        env: "NMK_LEARN_MODEL",
        targets: &[(&["learn"], "model"), (&["serve"], "learn_model")],
    },
    Setting {
        key: "serve.host",
        env: "NMK_SERVE_HOST",
        targets: &[(&["serve"], "host")],
    },
    Setting {
        key: "serve.port",
        env: "NMK_SERVE_PORT",
        targets: &[(&["serve"], "port")],
    },
    Setting {
        key: "serve.max_queue",
        env: "NMK_SERVE_MAX_QUEUE",
        targets: &[(&["serve"], "max_queue")],
    },
    Setting {
        key: "serve.max_lanes",
        env: "NMK_SERVE_MAX_LANES",
        targets: &[(&["serve"], "max_lanes")],
    },
    Setting {
        key: "serve.max_tokens",
        env: "NMK_SERVE_MAX_TOKENS",
        targets: &[(&["serve"], "max_tokens")],
    },
    Setting {
        key: "serve.deadline_s",
        env: "NMK_SERVE_DEADLINE_S",
        targets: &[(&["serve"], "deadline_s")],
    },
];

/// Why the config could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file was named explicitly (flag or environment) but cannot be read.
    #[error("config file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than any hand-written config.
    #[error("config file {path}: {bytes} bytes, larger than the {max} allowed")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The cap.
        max: u64,
    },
    /// The file is not TOML, has an unknown key or a value of the wrong type.
    #[error("config file {path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser said (it names the key and the line).
        message: String,
    },
    /// The file holds the server's API key, which is read only from the environment or a flag.
    #[error(
        "config file {path}: key `serve.api_key` is not read from a file; set NMK_API_KEY or \
         pass --api-key (a secret in a file is easy to commit or share by accident, so keeping \
         one there is left to the user's own tooling)"
    )]
    SecretInFile {
        /// The file.
        path: PathBuf,
    },
}

/// The shape of `nmk.toml`; any other key is an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    model: Option<String>,
    threads: Option<usize>,
    #[serde(default)]
    run: RunFile,
    #[serde(default)]
    learn: LearnFile,
    #[serde(default)]
    serve: ServeFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnFile {
    model: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    host: Option<String>,
    port: Option<u16>,
    max_queue: Option<usize>,
    max_lanes: Option<usize>,
    max_tokens: Option<usize>,
    deadline_s: Option<u64>,
}

impl FileConfig {
    /// The file's value for a setting, as the text clap would parse.
    fn value(&self, key: &str) -> Option<String> {
        fn text<T: ToString>(v: &Option<T>) -> Option<String> {
            v.as_ref().map(ToString::to_string)
        }
        match key {
            "model" => text(&self.model),
            "threads" => text(&self.threads),
            "run.max_tokens" => text(&self.run.max_tokens),
            "run.temperature" => text(&self.run.temperature),
            "run.seed" => text(&self.run.seed),
            "learn.model" => text(&self.learn.model),
            "serve.host" => text(&self.serve.host),
            "serve.port" => text(&self.serve.port),
            "serve.max_queue" => text(&self.serve.max_queue),
            "serve.max_lanes" => text(&self.serve.max_lanes),
            "serve.max_tokens" => text(&self.serve.max_tokens),
            "serve.deadline_s" => text(&self.serve.deadline_s),
            _ => None,
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// An environment variable.
    Env,
    /// The config file.
    File,
    /// The built-in default.
    #[default]
    Default,
}

impl Source {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// The `--config` and `--home` the command line names, read before clap parses it (the config
/// decides clap's defaults, so it must be known first).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `--config PATH`.
    pub config: Option<PathBuf>,
    /// `--home PATH`.
    pub home: Option<PathBuf>,
}

impl Invocation {
    /// Scans the arguments (the first is the program) for `--config` and `--home`, in either
    /// `--flag VALUE` or `--flag=VALUE` form, up to a `--` terminator.
    pub fn scan(args: impl IntoIterator<Item = OsString>) -> Self {
        let mut found = Invocation::default();
        let mut args = args.into_iter().skip(1);
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str() else { continue };
            if text == "--" {
                break;
            }
            for (flag, slot) in [("--config", &mut found.config), ("--home", &mut found.home)] {
                if text == flag {
                    *slot = args.next().map(PathBuf::from);
                } else if let Some(value) =
                    text.strip_prefix(flag).and_then(|r| r.strip_prefix('='))
                {
                    *slot = Some(PathBuf::from(value));
                }
            }
        }
        found
    }
}

/// The config file in use (if any) and the environment, ready to layer onto the command line.
#[derive(Debug, Default)]
pub struct Settings {
    path: PathBuf,
    path_source: Source,
    present: bool,
    file: FileConfig,
}

/// The config file that applies and why.
pub fn locate(invocation: &Invocation) -> (PathBuf, Source) {
    if let Some(p) = &invocation.config {
        return (p.clone(), Source::Flag);
    }
    if let Some(p) = env_value(CONFIG_ENV) {
        return (PathBuf::from(p), Source::Env);
    }
    let home = invocation
        .home
        .clone()
        .or_else(|| env_value(HOME_ENV).map(PathBuf::from))
        .unwrap_or_else(nmk_kernel::store::default_home);
    (home.join(FILE_NAME), Source::Default)
}

/// An environment variable's value; unset, empty or not Unicode counts as unset.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Reads the config file the invocation selects. A file named by `--config` or
    /// `$NMK_CONFIG` must exist; the one in the home may be missing (then built-in defaults
    /// apply).
    pub fn load(invocation: &Invocation) -> Result<Self, ConfigError> {
        let (path, path_source) = locate(invocation);
        let explicit = path_source != Source::Default;
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            // A home that is not a directory is the command's error to report (a runtime
            // one), not the config's.
            Err(e)
                if !explicit
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
            {
                return Ok(Settings {
                    path,
                    path_source,
                    present: false,
                    file: FileConfig::default(),
                });
            }
            Err(source) => return Err(ConfigError::Unreadable { path, source }),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path,
                bytes: meta.len(),
                max: MAX_FILE_BYTES,
            });
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(source) => return Err(ConfigError::Unreadable { path, source }),
        };
        let file = parse(&path, &text)?;
        Ok(Settings {
            path,
            path_source,
            present: true,
            file,
        })
    }

    /// The config file this run reads (or would read, when it is missing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why that file: `flag` (--config), `env` ($NMK_CONFIG) or `default` (the home's).
    pub fn path_source(&self) -> Source {
        self.path_source
    }

    /// Whether the file exists (a missing home config means built-in defaults).
    pub fn present(&self) -> bool {
        self.present
    }

    /// The model a command should load: the flag, else `$NMK_MODEL`, else the file's `model`,
    /// else [`DEFAULT_MODEL`]. For commands whose `--model` is not layered by [`Settings::layer`]
    /// (a command owned elsewhere may call it instead of joining [`SETTINGS`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn model(&self, flag: Option<&str>) -> String {
        self.resolve("model", flag, DEFAULT_MODEL).0
    }

    /// A setting's value and source: the flag, else its environment variable, else the file,
    /// else `default`.
    pub fn resolve(&self, key: &str, flag: Option<&str>, default: &str) -> (String, Source) {
        if let Some(f) = flag {
            return (f.to_string(), Source::Flag);
        }
        let setting = SETTINGS.iter().find(|s| s.key == key);
        // Set-but-empty counts as set, as it does for clap's own `env`.
        if let Some(v) = setting.and_then(|s| std::env::var(s.env).ok()) {
            return (v, Source::Env);
        }
        if let Some(v) = self.file.value(key) {
            return (v, Source::File);
        }
        (default.to_string(), Source::Default)
    }

    /// Layers the covered settings onto a command: each covered argument reads its setting's
    /// environment variable and defaults to the file's value (its built-in default otherwise).
    pub fn layer(&self, mut command: clap::Command) -> clap::Command {
        for setting in SETTINGS {
            let file_value = self.file.value(setting.key);
            for (path, arg_id) in setting.targets {
                command = layer_arg(command, path, arg_id, setting.env, file_value.as_deref());
            }
        }
        command
    }

    /// Every covered setting with its effective value and source. `command` is the command as
    /// declared (not layered: its defaults are the built-in ones). With `matches` (a command
    /// line parsed by the layered command), the values that command would see, flags included;
    /// without, what any command would see before its own flags.
    pub fn effective(
        &self,
        command: &clap::Command,
        matches: Option<&clap::ArgMatches>,
    ) -> Vec<Effective> {
        let leaf = matches.map(leaf_of);
        SETTINGS
            .iter()
            .map(|s| {
                let default = builtin_default(command, s).unwrap_or_default();
                let from_command = leaf.as_ref().and_then(|(path, m)| {
                    let (_, id) = s.targets.iter().find(|(p, _)| p == &path.as_slice())?;
                    let raw = m.get_raw(id)?.next()?.to_string_lossy().into_owned();
                    let source = match m.value_source(id)? {
                        ValueSource::CommandLine => Source::Flag,
                        ValueSource::EnvVariable => Source::Env,
                        _ if self.file.value(s.key).is_some() => Source::File,
                        _ => Source::Default,
                    };
                    Some((raw, source))
                });
                let (value, source) =
                    from_command.unwrap_or_else(|| self.resolve(s.key, None, &default));
                Effective {
                    key: s.key,
                    env: s.env,
                    value,
                    source,
                    applies_to: s
                        .targets
                        .iter()
                        .filter(|(p, id)| find_arg(command, p, id).is_some())
                        .map(|(p, _)| p.join(" "))
                        .collect(),
                }
            })
            .collect()
    }
}

/// One setting as a command would see it.
#[derive(Debug, Clone)]
pub struct Effective {
    /// Its key in `nmk.toml`.
    pub key: &'static str,
    /// Its environment variable.
    pub env: &'static str,
    /// The value (as text).
    pub value: String,
    /// Where it came from.
    pub source: Source,
    /// The commands it feeds.
    pub applies_to: Vec<String>,
}

fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let malformed = |e: toml::de::Error| ConfigError::Malformed {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(malformed)?;
    if table
        .get("serve")
        .and_then(|s| s.as_table())
        .is_some_and(|s| s.contains_key("api_key"))
    {
        return Err(ConfigError::SecretInFile {
            path: path.to_path_buf(),
        });
    }
    toml::from_str(text).map_err(malformed)
}

/// The subcommand path of parsed matches and the deepest subcommand's matches.
fn leaf_of(matches: &clap::ArgMatches) -> (Vec<&str>, &clap::ArgMatches) {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    (path, m)
}

fn find_subcommand<'a>(command: &'a clap::Command, path: &[&str]) -> Option<&'a clap::Command> {
    path.iter()
        .try_fold(command, |c, name| c.find_subcommand(name))
}

fn find_arg<'a>(command: &'a clap::Command, path: &[&str], id: &str) -> Option<&'a clap::Arg> {
    find_subcommand(command, path)?
        .get_arguments()
        .find(|a| a.get_id() == id)
}

fn builtin_default(command: &clap::Command, setting: &Setting) -> Option<String> {
    setting.targets.iter().find_map(|(p, id)| {
        let arg = find_arg(command, p, id)?;
        let v = arg.get_default_values().first()?;
        Some(v.to_string_lossy().into_owned())
    })
}

/// Gives one argument of one subcommand (if both exist) the environment variable and, when the
/// file has a value, that value as its default. Mutation is in place so help order is kept.
fn layer_arg(
    command: clap::Command,
    path: &[&str],
    arg_id: &str,
    env: &'static str,
    file_value: Option<&str>,
) -> clap::Command {
    let Some((first, rest)) = path.split_first() else {
        return command.mut_args(|a| {
            if a.get_id() != arg_id {
                return a;
            }
            let a = a.env(env);
            match file_value {
                Some(v) => a.default_value(v.to_string()),
                None => a,
            }
        });
    };
    command.mut_subcommands(|sub| {
        if sub.get_name() == *first {
            layer_arg(sub, rest, arg_id, env, file_value)
        } else {
            sub
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(args: &[&str]) -> Invocation {
        Invocation::scan(args.iter().map(OsString::from))
    }

    #[test]
    fn scan_reads_both_forms_and_stops_at_the_terminator() {
        let i = scan(&["nmk", "--config", "a.toml", "run", "--home=h", "x"]);
        assert_eq!(i.config.as_deref(), Some(Path::new("a.toml")));
        assert_eq!(i.home.as_deref(), Some(Path::new("h")));
        let i = scan(&["nmk", "run", "--", "--config", "a.toml"]);
        assert!(i.config.is_none());
        let i = scan(&["nmk", "--configx=a.toml"]);
        assert!(i.config.is_none());
    }

    #[test]
    fn unknown_keys_and_secrets_are_refused_by_name() {
        let p = Path::new("/x/nmk.toml");
        let e = parse(p, "[run]\nmax_tokenz = 3\n").unwrap_err().to_string();
        assert!(e.contains("/x/nmk.toml") && e.contains("max_tokenz"), "{e}");
        let e = parse(p, "[serve]\napi_key = \"s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("serve.api_key") && e.contains("NMK_API_KEY"),
            "{e}"
        );
        let e = parse(p, "threads = \"four\"\n").unwrap_err().to_string();
        assert!(e.contains("threads"), "{e}");
        let ok = parse(p, "model = \"m\"\n[serve]\nport = 9\n").unwrap();
        let with_file = Settings {
            file: ok,
            ..Settings::default()
        };
        assert_eq!(with_file.model(Some("flagged")), "flagged");
        // NMK_MODEL is not set under `cargo test` unless the caller sets it; then the env wins.
        let expect = std::env::var("NMK_MODEL").unwrap_or_else(|_| "m".into());
        assert_eq!(with_file.model(None), expect);
        let ok = parse(p, "model = \"m\"\n[serve]\nport = 9\n").unwrap();
        assert_eq!(ok.value("model").as_deref(), Some("m"));
        assert_eq!(ok.value("serve.port").as_deref(), Some("9"));
        assert_eq!(ok.value("threads"), None);
    }

    #[test]
    fn every_setting_has_a_file_key() {
        let full = "model='a'\nthreads=2\n[run]\nmax_tokens=1\ntemperature=0.5\nseed=3\n\
                    [learn]\nmodel='b'\n[serve]\nhost='h'\nport=1\nmax_queue=1\nmax_lanes=1\nmax_tokens=1\n\
                    deadline_s=1\n";
        let f = parse(Path::new("f"), full).unwrap();
        for s in SETTINGS {
            assert!(f.value(s.key).is_some(), "{} has no file key", s.key);
        }
        assert!(FileConfig::default().value("model").is_none());
    }
}
