//! What a server's configuration offers the shared flags: each config type
//! says where the shared keys live by implementing [`ProcessConfig`]; what
//! the keys mean and how they are validated stays with the type.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use crate::security::SecurityConfig;

/// A server process's configuration as the shared flags see it.
pub trait ProcessConfig: DeserializeOwned + Default {
    /// The keys the shared flags set, borrowed from the configuration.
    fn process_keys(&mut self) -> ProcessKeys<'_>;
}

/// The keys of a configuration that the shared flags set.
pub struct ProcessKeys<'a> {
    /// `data_dir`, set by `--data-dir`.
    pub data_dir: &'a mut PathBuf,
    /// `listen`, set by `--listen`.
    pub listen: &'a mut String,
    /// `status_listen`, set by `--status-listen`.
    pub status_listen: &'a mut String,
    /// `log_level`, set by `--log-level`.
    pub log_level: &'a mut String,
    /// The `security` section, whose paths the TLS flags set.
    pub security: &'a mut Option<SecurityConfig>,
}
