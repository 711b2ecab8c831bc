//! `dictmon config check FILE`.

use std::path::PathBuf;

use dictmon::config;

use super::Outcome;

/// Check configuration files: unknown keys and bad values are reported with file, line and
/// column. Exit status 0 valid, 1 invalid.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Check one file.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

pub fn run(args: &Args) -> Outcome {
    let Sub::Check { file } = &args.command;
    match config::load(file) {
        Ok(c) => {
            println!(
                "{}: valid (source {:?}, interval {:?}, data in {}, HTTP on {})",
                file.display(),
                c.source,
                c.interval,
                c.data_dir.display(),
                c.listen
            );
            Outcome::Success
        }
        Err(e) => {
            println!("{e}");
            Outcome::CheckFailed
        }
    }
}
