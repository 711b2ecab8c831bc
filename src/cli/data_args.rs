//! Where the reader commands (`status`, `query`, `export`, `verify`) find the data: `--data-dir`,
//! else the `data_dir` of `--config FILE`, else that of the installed configuration
//! ([`INSTALLED_CONFIG`]) when it exists, else `./dictmon-data`. The configuration also gives
//! the thresholds the forensic queries measure against.

use std::path::{Path, PathBuf};

use dictmon::config::{self, Config};

use super::DEFAULT_DATA_DIR;

/// The configuration the Debian package installs; read by the reader commands when neither
/// `--data-dir` nor `--config` is given.
pub const INSTALLED_CONFIG: &str = "/etc/dictmon/dictmon.toml";

/// `--data-dir` and `--config`, for the commands that read a data directory.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data directory (or a copy of it) [default: the configuration's `data_dir`, else
    /// ./dictmon-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration to take `data_dir` (and thresholds) from [default:
    /// /etc/dictmon/dictmon.toml when it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What [`DataArgs`] resolved to.
#[derive(Debug)]
pub struct Located {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The configuration (defaults when none was read).
    pub config: Config,
}

impl DataArgs {
    /// Resolves the data directory and the configuration.
    pub fn locate(&self) -> anyhow::Result<Located> {
        self.locate_with(Path::new(INSTALLED_CONFIG))
    }

    fn locate_with(&self, installed: &Path) -> anyhow::Result<Located> {
        let file = match &self.config {
            Some(path) => Some(path.clone()),
            None if self.data_dir.is_none() && installed.exists() => Some(installed.to_owned()),
            None => None,
        };
        let config = match &file {
            Some(path) => config::load(path)?,
            None => Config::default(),
        };
        let data_dir = match (&self.data_dir, &file) {
            (Some(dir), _) => dir.clone(),
            (None, Some(_)) => config.data_dir.clone(),
            (None, None) => PathBuf::from(DEFAULT_DATA_DIR),
        };
        Ok(Located { data_dir, config })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_given_config_then_the_installed_one_then_the_default() {
        let dir = tempfile::tempdir().expect("temp");
        let installed = dir.path().join("installed.toml");
        let given = dir.path().join("given.toml");
        std::fs::write(&given, "data_dir = \"/srv/given\"\n").expect("write");
        let args = |data_dir: Option<&str>, config: Option<&Path>| DataArgs {
            data_dir: data_dir.map(PathBuf::from),
            config: config.map(Path::to_owned),
        };
        let at = |a: DataArgs| a.locate_with(&installed).expect("located").data_dir;
        assert_eq!(at(args(None, None)), PathBuf::from(DEFAULT_DATA_DIR));
        std::fs::write(&installed, "data_dir = \"/var/lib/dictmon\"\n").expect("write");
        assert_eq!(at(args(None, None)), PathBuf::from("/var/lib/dictmon"));
        assert_eq!(at(args(None, Some(&given))), PathBuf::from("/srv/given"));
        assert_eq!(at(args(Some("here"), Some(&given))), PathBuf::from("here"));
        assert_eq!(at(args(Some("here"), None)), PathBuf::from("here"));
        let broken = dir.path().join("broken.toml");
        std::fs::write(&broken, "data_dir = 3\n").expect("write");
        let e = args(None, Some(&broken))
            .locate_with(&installed)
            .expect_err("broken");
        assert!(e.to_string().contains("broken.toml"), "{e}");
    }
}
