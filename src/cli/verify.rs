//! `dictmon verify`: check every block of every segment and the catalog.

use std::io::IsTerminal;

use dictmon::store::verify;

use super::Outcome;
use super::data_args::DataArgs;

/// Check a data directory: every block of every segment (headers, checksums, full decode) and
/// every table of the catalog. Safe while `serve` writes, and on a read-only copy.
///
/// Exit status: 0 clean, 1 corruption found (each problem is printed with its file, byte
/// offset and block), 2 usage or I/O error.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    data: DataArgs,
}

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    let tty = std::io::stderr().is_terminal();
    let report = verify(&args.data.locate()?.data_dir, &mut |i, n, path| {
        if tty {
            eprint!("\rverifying {}/{n} {}\x1b[K", i + 1, path.display());
        }
    })?;
    if tty {
        eprint!("\r\x1b[K");
    }
    for note in &report.torn_tails {
        println!("note: {note}; not corruption: the next writer cuts it");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    for problem in &report.problems {
        println!("CORRUPT: {problem}");
    }
    let count = |n: u64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    println!(
        "checked {}, {}, {}, {}, and the catalog: {}",
        count(report.segments as u64, "segment", "segments"),
        count(report.blocks as u64, "block", "blocks"),
        count(report.rows, "snapshot", "snapshots"),
        count(report.bytes, "byte", "bytes"),
        if report.problems.is_empty() {
            "clean".to_owned()
        } else {
            format!(
                "{}; the rest of the data is readable — keep a copy of the data directory before any repair",
                count(report.problems.len() as u64, "problem", "problems")
            )
        }
    );
    Ok(if report.problems.is_empty() {
        Outcome::Success
    } else {
        Outcome::CheckFailed
    })
}
