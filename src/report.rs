//! `earmark report`: the cue sheet of a monitor's event log.

use std::io::Write;

use anyhow::Context;
use earmark_monitor::{History, PlayRecord};
use serde_json::json;

use crate::Outcome;
use crate::cli::{ReportArgs, ReportFormat};

/// A cue sheet as CSV: one row per play, the columns of [`PlayRecord`].
pub fn csv(plays: &[PlayRecord]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for play in plays {
        writer.serialize(play)?;
    }
    writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// `earmark report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<Outcome> {
    let history = History::read(&args.log)?;
    if history.events.is_empty() {
        anyhow::bail!("{}: no events in this log", args.log.display());
    }
    if history.unreadable > 0 {
        eprintln!(
            "earmark: {}: {} unreadable lines skipped",
            args.log.display(),
            history.unreadable
        );
    }
    let plays = history.plays();
    let bytes = match args.format {
        ReportFormat::Csv => csv(&plays)?,
        ReportFormat::Json => {
            let mut bytes = serde_json::to_vec_pretty(&json!({
                "log": args.log.display().to_string(),
                "runs": history.runs(),
                "plays": plays,
                "unidentified": history.unidentified(),
            }))?;
            bytes.push(b'\n');
            bytes
        }
    };
    match &args.out {
        Some(path) => crate::scan::write_atomically(path, &bytes)?,
        None => std::io::stdout()
            .write_all(&bytes)
            .context("writing the report")?,
    }
    Ok(Outcome::Done)
}
