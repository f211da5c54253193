//! Loading a server's configuration: the YAML file named by `--config` (or
//! every default without one), then the shared flags over it. Flags only
//! one binary has are applied by that binary after loading.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::args::ProcessArgs;
use super::config::ProcessConfig;
use crate::security::SecurityConfig;
use crate::{Error, Result};

/// The configuration `args` ask for: the file named by `--config` parsed as
/// `C` (or `C::default()` without one), with every shared flag that was
/// given laid over it.
///
/// # Errors
/// [`Error::ReadConfig`] when the file cannot be read,
/// [`Error::ParseConfig`] when it is not valid for `C`; both name the file.
pub fn load_config<C: ProcessConfig>(args: &ProcessArgs) -> Result<C> {
    let mut config = match &args.config {
        Some(path) => read(path)?,
        None => C::default(),
    };
    apply(args, &mut config);
    Ok(config)
}

fn read<C: DeserializeOwned>(path: &Path) -> Result<C> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    serde_yaml::from_str(&text).map_err(|source| Error::ParseConfig {
        path: path.to_path_buf(),
        source,
    })
}

/// Sets each key whose flag was given; the rest stay as loaded.
fn apply<C: ProcessConfig>(args: &ProcessArgs, config: &mut C) {
    let keys = config.process_keys();
    if let Some(v) = &args.data_dir {
        *keys.data_dir = v.clone();
    }
    if let Some(v) = &args.listen {
        *keys.listen = v.clone();
    }
    if let Some(v) = &args.status_listen {
        *keys.status_listen = v.clone();
    }
    if let Some(v) = &args.log_level {
        *keys.log_level = v.clone();
    }
    // clap makes the three TLS flags all-or-none.
    if let (Some(ca_path), Some(cert_path), Some(key_path)) =
        (&args.ca_path, &args.cert_path, &args.key_path)
    {
        // Flags name the files; the rest of the section stays as
        // configured.
        let kept = keys.security.take();
        *keys.security = Some(SecurityConfig {
            ca_path: ca_path.clone(),
            cert_path: cert_path.clone(),
            key_path: key_path.clone(),
            admin_allowed_cn: kept
                .as_ref()
                .map(|s| s.admin_allowed_cn.clone())
                .unwrap_or_default(),
            status_tls: kept.is_some_and(|s| s.status_tls),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::process::ProcessKeys;

    /// A stand-in for a process's config type, with one key of its own.
    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        data_dir: PathBuf,
        listen: String,
        status_listen: String,
        log_level: String,
        members: u32,
        security: Option<SecurityConfig>,
    }

    impl Default for Config {
        fn default() -> Self {
            Config {
                data_dir: "default-data".into(),
                listen: "127.0.0.1:7000".into(),
                status_listen: "127.0.0.1:7001".into(),
                log_level: "info".into(),
                members: 1,
                security: None,
            }
        }
    }

    impl ProcessConfig for Config {
        fn process_keys(&mut self) -> ProcessKeys<'_> {
            ProcessKeys {
                data_dir: &mut self.data_dir,
                listen: &mut self.listen,
                status_listen: &mut self.status_listen,
                log_level: &mut self.log_level,
                security: &mut self.security,
            }
        }
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), text).expect("write");
        f
    }

    fn with_file(f: &tempfile::NamedTempFile) -> ProcessArgs {
        ProcessArgs {
            config: Some(f.path().to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn no_file_and_no_flags_is_the_default() {
        let c: Config = load_config(&ProcessArgs::default()).expect("loads");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn the_file_overrides_defaults_and_flags_override_the_file() {
        let f =
            file("listen: 10.0.0.1:1\nstatus_listen: 10.0.0.1:2\nlog_level: debug\nmembers: 3\n");
        let only_file: Config = load_config(&with_file(&f)).expect("loads");
        assert_eq!(only_file.listen, "10.0.0.1:1");
        assert_eq!(only_file.data_dir, PathBuf::from("default-data"));
        assert_eq!(only_file.members, 3);

        let args = ProcessArgs {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some("flag-data".into()),
            ..with_file(&f)
        };
        let c: Config = load_config(&args).expect("loads");
        assert_eq!(c.listen, "127.0.0.1:0", "flag over file");
        assert_eq!(c.data_dir, PathBuf::from("flag-data"), "flag over default");
        assert_eq!(c.status_listen, "10.0.0.1:2", "file kept without a flag");
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.members, 3, "keys without a shared flag are the file's");
    }

    #[test]
    fn tls_flags_set_the_paths_and_keep_the_rest_of_the_section() {
        let f = file(
            "security:\n  ca_path: file-ca\n  cert_path: file-cert\n  key_path: file-key\n  \
             admin_allowed_cn: [ops]\n  status_tls: true\n",
        );
        let args = ProcessArgs {
            ca_path: Some("ca".into()),
            cert_path: Some("cert".into()),
            key_path: Some("key".into()),
            ..with_file(&f)
        };
        let c: Config = load_config(&args).expect("loads");
        let s = c.security.expect("security set");
        assert_eq!(
            (s.ca_path, s.cert_path, s.key_path),
            ("ca".into(), "cert".into(), "key".into())
        );
        assert_eq!(s.admin_allowed_cn, ["ops"]);
        assert!(s.status_tls);

        let without_file = ProcessArgs {
            config: None,
            ..args
        };
        let c: Config = load_config(&without_file).expect("loads");
        let s = c.security.expect("security set");
        assert!(s.admin_allowed_cn.is_empty() && !s.status_tls);
    }

    #[test]
    fn a_missing_file_and_an_unknown_key_name_the_file() {
        let missing = ProcessArgs {
            config: Some("/nonexistent/nokv.yaml".into()),
            ..Default::default()
        };
        let err = load_config::<Config>(&missing).unwrap_err();
        assert!(matches!(err, Error::ReadConfig { .. }), "{err:?}");
        assert_eq!(err.to_string(), "reading /nonexistent/nokv.yaml");

        let f = file("bogus: 1\n");
        let err = load_config::<Config>(&with_file(&f)).unwrap_err();
        assert!(matches!(err, Error::ParseConfig { .. }), "{err:?}");
        assert!(err.to_string().contains(&f.path().display().to_string()));
        let cause = std::error::Error::source(&err).expect("the YAML error");
        assert!(cause.to_string().contains("bogus"), "{cause}");
    }
}
