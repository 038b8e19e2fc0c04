//! `earmark catalog import` and `earmark licence`: the rights side of the
//! catalog.

use anyhow::Context;
use earmark_engine::fingerprint::SCHEME;
use earmark_index::licence::read_licence;
use earmark_index::rights::read_metadata;
use earmark_index::{Catalog, CatalogWriter, Licence};

use crate::Outcome;
use crate::cli::{ImportArgs, LicenceAddArgs, LicenceListArgs, LicenceRemoveArgs, LicenceShowArgs};

/// `earmark catalog import`.
pub fn import(args: &ImportArgs) -> anyhow::Result<Outcome> {
    let rows = read_metadata(&args.file)?;
    let count = rows.len();
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    let linked = writer.import_rights(rows)?;
    println!(
        "{}: {count} rows: {} added, {} updated, {} name no indexed recording",
        args.file.display(),
        linked.added,
        linked.updated,
        linked.unknown.len()
    );
    for (line, link) in &linked.unknown {
        println!("  line {line}: {link} is not in the catalog");
    }
    Ok(Outcome::Done)
}

/// `earmark licence add`: every file is checked before any is stored.
pub fn add(args: &LicenceAddArgs) -> anyhow::Result<Outcome> {
    let licences = args
        .files
        .iter()
        .map(|f| read_licence(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    let ids: Vec<String> = licences.iter().map(|l| l.id.clone()).collect();
    writer
        .add_licences(licences, args.replace)
        .with_context(|| {
            let files: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
            files.join(", ")
        })?;
    println!("stored licence {}", ids.join(", "));
    Ok(Outcome::Done)
}

/// `earmark licence list`.
pub fn list(args: &LicenceListArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open(&args.db)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(catalog.licences())?);
        return Ok(Outcome::Done);
    }
    println!(
        "{:<16} {:<8} {:<20} {:<33} licensee",
        "id", "kind", "event", "period"
    );
    for l in catalog.licences() {
        println!(
            "{:<16} {:<8} {:<20} {:<33} {}",
            l.id,
            kind(l),
            l.event,
            period(l),
            l.licensee
        );
    }
    Ok(Outcome::Done)
}

/// `earmark licence show`.
pub fn show(args: &LicenceShowArgs) -> anyhow::Result<Outcome> {
    let catalog = Catalog::open(&args.db)?;
    let licence = catalog
        .licences()
        .iter()
        .find(|l| l.id == args.id)
        .with_context(|| format!("no licence {} in {}", args.id, args.db.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(licence)?);
        return Ok(Outcome::Done);
    }
    println!("licence   {} ({})", licence.id, kind(licence));
    println!("licensee  {}", licence.licensee);
    println!(
        "event     {}{}",
        licence.event,
        licence
            .event_name
            .as_ref()
            .map_or(String::new(), |n| format!(" ({n})"))
    );
    if let Some(venue) = &licence.venue {
        println!("venue     {venue}");
    }
    println!("period    {}", period(licence));
    let works = match licence.kind {
        earmark_index::LicenceKind::Blanket => ("excludes", &licence.exclude),
        earmark_index::LicenceKind::Tracks => ("covers", &licence.works),
    };
    for (what, list) in [
        ("works", &works.1.works),
        ("ISRCs", &works.1.isrcs),
        ("tracks", &works.1.tracks),
    ] {
        if !list.is_empty() {
            println!("{:<9} {what}: {}", works.0, list.join(", "));
        }
    }
    Ok(Outcome::Done)
}

/// `earmark licence remove`.
pub fn remove(args: &LicenceRemoveArgs) -> anyhow::Result<Outcome> {
    let mut writer = CatalogWriter::open(&args.db, SCHEME)?;
    writer.remove_licence(&args.id)?;
    println!("removed licence {}", args.id);
    Ok(Outcome::Done)
}

fn kind(l: &Licence) -> &'static str {
    match l.kind {
        earmark_index::LicenceKind::Blanket => "blanket",
        earmark_index::LicenceKind::Tracks => "tracks",
    }
}

/// The period in the licence's own time zone.
fn period(l: &Licence) -> String {
    format!(
        "{} to {} {}",
        l.period.local(l.period.from),
        l.period.local(l.period.to),
        l.period.time_zone
    )
}
