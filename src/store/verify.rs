//! `verify` (§8): every block of every segment decoded and checked, every catalog table read,
//! and the catalog's ledger and checksums held against the segments (§10.1, §10.2). It only
//! reads; a running writer may append meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;

use super::format::{FormatError, SegmentHeader};
use super::{
    CATALOG_FILE, Filter, Result, SEGMENTS_DIR, StoreReader, catalog, copied_before_count,
    missing_rows, read_segment, segment,
};

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: usize,
    /// Good blocks.
    pub blocks: usize,
    /// Rows decoded.
    pub rows: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Every problem, located.
    pub problems: Vec<String>,
    /// Torn tails (an append in progress or interrupted; cut by the next writer).
    pub torn_tails: Vec<String>,
    /// Other findings that are not corruption (a catalog read through an in-memory repair).
    pub notes: Vec<String>,
}

/// Checks every block of every segment (headers, checksums, full decode) and reads every
/// catalog table. `progress` is called before each segment with (index, count, path).
pub fn verify(dir: &Path, progress: &mut dyn FnMut(usize, usize, &Path)) -> Result<VerifyReport> {
    let reader = StoreReader::open(dir)?;
    // §10.1: the ledger is read before the segments, so that what a running writer appends
    // meanwhile can only make a segment hold more than its count, never less.
    let ledger_before: BTreeMap<String, catalog::SegmentRecord> = reader
        .catalog()
        .and_then(|c| Ok(c.ledger()?))
        .ok()
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, r)| !r.retiring)
        .collect();
    let files = reader.segments()?;
    let mut report = VerifyReport::default();
    let mut segment_rows = BTreeMap::new();
    for (i, id) in files.iter().enumerate() {
        let (path, month) = (reader.segment_path(*id), id.month);
        progress(i, files.len(), &path);
        // None: deleted by retention since the listing.
        let Some((bytes, unreadable)) = read_segment(&path)? else {
            continue;
        };
        report
            .problems
            .extend(unreadable.iter().map(ToString::to_string));
        report.segments += 1;
        report.bytes += bytes.len() as u64;
        match SegmentHeader::decode(&bytes) {
            Ok(h) if (i32::from(h.year), u32::from(h.month)) != (month.year, month.month) => {
                report.problems.push(format!(
                    "{}: offset 0: header says {:04}-{:02}, file name says {month}",
                    path.display(),
                    h.year,
                    h.month
                ));
            }
            // A newer format must not be misread: reported, not decoded.
            Err(e @ FormatError::UnsupportedVersion { .. }) => {
                report
                    .problems
                    .push(format!("{}: offset 0: segment header: {e}", path.display()));
                continue;
            }
            // Fine; or a damaged header (§8), reported by the read below, while the blocks,
            // which check themselves, are still checked and counted.
            Ok(_) | Err(_) => {}
        }
        let layout = segment::layout(&bytes);
        report.blocks += layout.blocks.len();
        // §8: a block whose header repeats another's (times, rows, policies, length) is a
        // copy written over what was there — a writer never appends the same block twice.
        let mut headers = std::collections::HashMap::new();
        for (index, b) in layout.blocks.iter().enumerate() {
            if let Some((first, at)) = headers.insert(b.header, (index, b.offset)) {
                report.problems.push(format!(
                    "{}: offset {} (block {index}): repeats block {first} at offset {at} (a block copied over another; the rows that were there are lost)",
                    path.display(),
                    b.offset
                ));
            }
        }
        let good = segment::rows_in(&layout.blocks);
        segment_rows.insert(id.to_string(), good);
        if let Some(record) = ledger_before.get(&id.to_string())
            && record.rows > good
        {
            let copied = File::open(&path).is_ok_and(|f| copied_before_count(&f, record));
            if copied {
                report.notes.push(format!(
                    "{}: {} rows counted by the catalog after this file was last written are not in it: a copy of the segment taken before the catalog's (a backup of a running `serve`), not damage",
                    path.display(),
                    record.rows - good
                ));
            } else {
                report.problems.push(format!(
                    "{}: {}",
                    path.display(),
                    missing_rows(good, record.rows)
                ));
            }
        }
        if let Some(t) = &layout.torn_tail {
            report.torn_tails.push(format!(
                "{}: offset {}: {} bytes of an incomplete append ({})",
                path.display(),
                t.offset,
                t.len,
                t.error
            ));
        }
        let mut rows = 0_u64;
        let problems = segment::read_rows(&path, &bytes, &Filter::default(), &mut |_| rows += 1);
        report.rows += rows;
        report
            .problems
            .extend(problems.iter().map(ToString::to_string));
    }
    verify_catalog(dir, &reader, &segment_rows, &mut report);
    Ok(report)
}

/// The catalog's part of [`verify`]: every table read, the record checksums (§10.2), the
/// findings writers recorded and the ledger against the segments' rows (§10.1).
fn verify_catalog(
    dir: &Path,
    reader: &StoreReader,
    segment_rows: &BTreeMap<String, u64>,
    report: &mut VerifyReport,
) {
    let catalog = reader.catalog();
    let checked = catalog.and_then(|c| {
        if c.repaired() {
            report.notes.push(format!(
                "{}: not closed cleanly (its writer is running, was killed, or this is a copy taken while one ran); read through a repair in memory, the file is unchanged",
                dir.join(CATALOG_FILE).display()
            ));
        }
        c.policies()?;
        c.alerts()?;
        c.outbox()?;
        let p = dir.join(CATALOG_FILE);
        if !c.exists() && segment_rows.values().any(|&n| n > 0) {
            report.problems.push(format!(
                "{}: missing while the segments hold rows: the alerts, events and policy records are lost (deleted?); restore it from the backup taken with the segments",
                p.display()
            ));
        }
        report.problems.extend(
            c.checksum_problems()?
                .into_iter()
                .map(|what| format!("{}: {what}", p.display())),
        );
        report.problems.extend(c.findings()?.into_iter().map(|f| {
            format!(
                "{}: found by a writer on {}: {}",
                p.display(),
                f.at.format("%Y-%m-%d %H:%M:%S UTC"),
                f.text
            )
        }));
        // Read again after the segments: a month created or retired meanwhile is no finding.
        if let Some(ledger) = c.ledger()? {
            let known: BTreeSet<&str> = ledger.iter().map(|(m, _)| m.as_str()).collect();
            for (month, record) in &ledger {
                let path = dir.join(SEGMENTS_DIR).join(format!("{month}.seg"));
                // No rows: a segment about to be created (its record comes first).
                if !record.retiring && record.rows > 0 && !path.exists() {
                    report.problems.push(format!(
                        "{}: missing: the catalog counted {} rows in it (deleted outside retention?)",
                        path.display(),
                        record.rows
                    ));
                }
            }
            for (month, rows) in segment_rows {
                if *rows > 0 && !known.contains(month.as_str()) {
                    report.problems.push(format!(
                        "{}: {rows} rows in a segment the catalog does not know (a catalog from another data directory, or an older backup?)",
                        dir.join(SEGMENTS_DIR).join(format!("{month}.seg")).display()
                    ));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = checked {
        report.problems.push(e.to_string());
    }
}
