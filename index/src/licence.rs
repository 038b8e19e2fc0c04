//! Licences sold for events: blanket licences over the society's managed
//! repertoire, and per-track licences naming their works.
//!
//! A licence file is TOML or JSON:
//!
//! ```toml
//! id = "SFW26-BL"
//! kind = "blanket"                  # or "tracks"
//! licensee = "Shanghai Fashion Week Co."
//! event = "sfw-2026-aw"
//! event_name = "Shanghai Fashion Week AW 2026"
//! venue = "Xintiandi Hall 1"
//! time_zone = "Asia/Shanghai"
//! from = "2026-11-28T19:00"         # local time, a whole day, or with an offset
//! to = "2026-11-28T23:00"
//! [exclude]                         # blanket only; `[works]` for "tracks"
//! works = ["T-034.524.680-1"]       # ISWCs
//! isrcs = ["CNA012600001"]
//! tracks = ["A0042"]                # catalog ids
//! ```

use std::path::Path;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rights::{Rights, normalise_isrc, normalise_iswc};

/// What a licence grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceKind {
    /// Every work of the society's managed repertoire, but the exclusions.
    Blanket,
    /// The listed works only.
    Tracks,
}

/// Works named by a licence: by ISWC, ISRC or catalog id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Works {
    /// ISWCs of works.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub works: Vec<String>,
    /// ISRCs of recordings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isrcs: Vec<String>,
    /// Catalog ids of recordings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracks: Vec<String>,
}

impl Works {
    /// Whether these works include the recording.
    pub fn names(&self, rights: &Rights) -> bool {
        let has =
            |list: &[String], v: &Option<String>| v.as_ref().is_some_and(|v| list.contains(v));
        has(&self.works, &rights.iswc)
            || has(&self.isrcs, &rights.isrc)
            || self.tracks.contains(&rights.track_id)
    }

    fn is_empty(&self) -> bool {
        self.works.is_empty() && self.isrcs.is_empty() && self.tracks.is_empty()
    }

    /// The same works with codes in their normal form; an error names the
    /// bad code.
    fn normalised(mut self, field: &str) -> std::result::Result<Self, (String, String)> {
        for w in &mut self.works {
            *w = normalise_iswc(w).ok_or((
                format!("{field}.works"),
                format!("{w:?} is not a valid ISWC"),
            ))?;
        }
        for i in &mut self.isrcs {
            *i = normalise_isrc(i)
                .ok_or((format!("{field}.isrcs"), format!("{i:?} is not an ISRC")))?;
        }
        Ok(self)
    }
}

/// When a licence applies: from its start up to (not including) its end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// First instant covered.
    pub from: Timestamp,
    /// First instant no longer covered.
    pub to: Timestamp,
    /// IANA time zone the licence's times are written in.
    pub time_zone: String,
}

impl Period {
    /// Seconds of `[start, end)` inside the period.
    pub fn overlap_s(&self, start: Timestamp, end: Timestamp) -> f64 {
        let from = start.max(self.from);
        let to = end.min(self.to);
        if to <= from {
            0.0
        } else {
            to.duration_since(from).as_secs_f64()
        }
    }

    /// An instant as local time in the licence's zone.
    pub fn local(&self, t: Timestamp) -> String {
        match TimeZone::get(&self.time_zone) {
            Ok(tz) => tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string(),
            Err(_) => t.to_string(),
        }
    }
}

/// A licence sold for an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "LicenceFile", try_from = "LicenceFile")]
pub struct Licence {
    /// The licence's number.
    pub id: String,
    /// Blanket or per-track.
    pub kind: LicenceKind,
    /// Who bought it.
    pub licensee: String,
    /// The event it is for; monitor logs and scans name it.
    pub event: String,
    /// The event's name.
    pub event_name: Option<String>,
    /// Where the event takes place.
    pub venue: Option<String>,
    /// When it applies.
    pub period: Period,
    /// Blanket licences: works left out of the repertoire.
    pub exclude: Works,
    /// Per-track licences: the works covered.
    pub works: Works,
}

/// A licence as its file is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LicenceFile {
    id: String,
    kind: LicenceKind,
    licensee: String,
    event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    venue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    from: When,
    to: When,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exclude: Option<Works>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    works: Option<Works>,
}

/// A time as a licence file writes it.
#[derive(Debug, Clone, PartialEq)]
enum When {
    /// With an offset: one instant.
    Instant(Timestamp),
    /// Local time in the licence's zone.
    Local(DateTime),
    /// A whole day in the licence's zone.
    Day(Date),
}

impl FromStr for When {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        // A date alone would also parse as a local time (its midnight).
        let day = (s.len() <= 10).then(|| Date::from_str(s).ok()).flatten();
        if let Ok(t) = Timestamp::from_str(s) {
            Ok(Self::Instant(t))
        } else if let Some(d) = day {
            Ok(Self::Day(d))
        } else if let Ok(dt) = DateTime::from_str(s) {
            Ok(Self::Local(dt))
        } else {
            Err(format!(
                "{s:?} is not a date or time (write 2026-11-28T19:00, 2026-11-28, \
                 or 2026-11-28T19:00+08:00)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for When {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Instant(t) => s.collect_str(t),
            Self::Local(dt) => s.collect_str(dt),
            Self::Day(d) => s.collect_str(d),
        }
    }
}

impl When {
    /// The instant it names; a day starts at its midnight, or ends at the
    /// next one when `end` is set.
    fn resolve(&self, tz: Option<&TimeZone>, end: bool) -> std::result::Result<Timestamp, String> {
        let local = |dt: DateTime| {
            let tz = tz.ok_or("no time_zone given for a local time")?;
            tz.to_timestamp(dt).map_err(|e| e.to_string())
        };
        match self {
            Self::Instant(t) => Ok(*t),
            Self::Local(dt) => local(*dt),
            Self::Day(d) if end => local(d.tomorrow().map_err(|e| e.to_string())?.into()),
            Self::Day(d) => local((*d).into()),
        }
    }
}

impl From<Licence> for LicenceFile {
    fn from(l: Licence) -> Self {
        let (exclude, works) = match l.kind {
            LicenceKind::Blanket => (Some(l.exclude), None),
            LicenceKind::Tracks => (None, Some(l.works)),
        };
        Self {
            id: l.id,
            kind: l.kind,
            licensee: l.licensee,
            event: l.event,
            event_name: l.event_name,
            venue: l.venue,
            time_zone: Some(l.period.time_zone),
            from: When::Instant(l.period.from),
            to: When::Instant(l.period.to),
            exclude,
            works,
        }
    }
}

impl TryFrom<LicenceFile> for Licence {
    type Error = String;

    fn try_from(f: LicenceFile) -> std::result::Result<Self, String> {
        f.check()
            .map_err(|(field, what)| format!("{field}: {what}"))
    }
}

impl LicenceFile {
    /// The licence, or the field that is wrong and why.
    fn check(self) -> std::result::Result<Licence, (String, String)> {
        let bad = |field: &str, what: String| (field.to_owned(), what);
        for (field, value) in [
            ("id", &self.id),
            ("licensee", &self.licensee),
            ("event", &self.event),
        ] {
            if value.trim().is_empty() {
                return Err(bad(field, "empty".into()));
            }
        }
        let tz = match &self.time_zone {
            Some(name) => Some(TimeZone::get(name).map_err(|_| {
                bad(
                    "time_zone",
                    format!("{name:?} is not an IANA time zone (e.g. Asia/Shanghai)"),
                )
            })?),
            None => None,
        };
        let from = self
            .from
            .resolve(tz.as_ref(), false)
            .map_err(|e| bad("from", e))?;
        let to = self
            .to
            .resolve(tz.as_ref(), true)
            .map_err(|e| bad("to", e))?;
        if to <= from {
            return Err(bad(
                "to",
                format!("the period ends ({to}) before it begins ({from})"),
            ));
        }
        let time_zone = match (&self.time_zone, &tz) {
            (Some(name), _) => name.clone(),
            (None, _) => "UTC".to_owned(),
        };
        let (exclude, works) = match self.kind {
            LicenceKind::Blanket => {
                if self.works.is_some() {
                    return Err(bad(
                        "works",
                        "a blanket licence covers the repertoire; list exceptions under [exclude]"
                            .into(),
                    ));
                }
                (
                    self.exclude.unwrap_or_default().normalised("exclude")?,
                    Works::default(),
                )
            }
            LicenceKind::Tracks => {
                if self.exclude.is_some() {
                    return Err(bad("exclude", "only blanket licences exclude works".into()));
                }
                let works = self.works.unwrap_or_default().normalised("works")?;
                if works.is_empty() {
                    return Err(bad(
                        "works",
                        "a per-track licence must list its works".into(),
                    ));
                }
                (Works::default(), works)
            }
        };
        Ok(Licence {
            id: self.id.trim().to_owned(),
            kind: self.kind,
            licensee: self.licensee,
            event: self.event.trim().to_owned(),
            event_name: self.event_name,
            venue: self.venue,
            period: Period {
                from,
                to,
                time_zone,
            },
            exclude,
            works,
        })
    }
}

/// Reads a licence file: JSON when its name ends in `.json`, else TOML.
///
/// # Errors
/// [`Error::Invalid`] naming the line and field of the problem: a missing
/// or unknown field, a bad date or time zone, a period that ends before it
/// begins, a malformed code, or text that is not UTF-8.
pub fn read_licence(path: &Path) -> Result<Licence> {
    let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
    let invalid = |line: usize, field: String, what: String| Error::Invalid {
        path: path.to_owned(),
        line,
        field,
        what,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        invalid(
            line,
            "text".into(),
            "not UTF-8: save the file as UTF-8".into(),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let file: LicenceFile = if is_json {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let line = e.inner().line();
            let what = strip_location(&e.inner().to_string());
            invalid(line, field_of(e.path(), &what), what)
        })?
    } else {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            let line = e.span().map_or(1, |s| line_at(text, s.start));
            invalid(line, "document".into(), e.message().to_owned())
        })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let line = e.inner().span().map_or(1, |s| line_at(text, s.start));
            let what = e.inner().message().to_owned();
            invalid(line, field_of(e.path(), &what), what)
        })?
    };
    file.check().map_err(|(field, what)| {
        let key = field.split('.').next_back().unwrap_or(&field);
        invalid(line_of_key(text, key, is_json), field.clone(), what)
    })
}

/// The field an error is about: its path, or the field it says is missing.
fn field_of(path: &serde_path_to_error::Path, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path.to_string().as_str(), missing) {
        ("." | "", Some(field)) => field.to_owned(),
        ("." | "", None) => "document".into(),
        (p, _) => p.to_owned(),
    }
}

/// serde_json's message without its trailing " at line L column C".
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `key` is set (the first one), or 1.
fn line_of_key(text: &str, key: &str, is_json: bool) -> usize {
    let quoted = format!("\"{key}\"");
    let sets = |rest: &str| rest.trim_start().starts_with(['=', ':']);
    text.lines()
        .position(|line| {
            if is_json {
                line.match_indices(&quoted)
                    .any(|(i, _)| sets(&line[i + quoted.len()..]))
            } else {
                let line = line.trim_start();
                [key, quoted.as_str()]
                    .iter()
                    .any(|k| line.strip_prefix(k).is_some_and(sets))
            }
        })
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const BLANKET: &str = r#"
id = "SFW26-BL"
kind = "blanket"
licensee = "Shanghai Fashion Week Co."
event = "sfw-2026-aw"
venue = "Hall 1"
time_zone = "Asia/Shanghai"
from = "2026-11-28T19:00"
to = "2026-11-28"

[exclude]
works = ["T-034.524.680-1"]
isrcs = ["cn-a01-26-00001"]
"#;

    fn read(name: &str, text: &str) -> Result<Licence> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        read_licence(&path)
    }

    fn error_of(name: &str, text: &str) -> (usize, String, String) {
        match read(name, text) {
            Err(Error::Invalid {
                line, field, what, ..
            }) => (line, field, what),
            other => panic!("expected an invalid-file error, got {other:?}"),
        }
    }

    #[test]
    fn a_blanket_licence_is_read_in_its_time_zone() {
        let licence = read("l.toml", BLANKET).expect("licence");
        assert_eq!(licence.kind, LicenceKind::Blanket);
        // 19:00 in Shanghai is 11:00 UTC; a whole day `to` ends at midnight.
        assert_eq!(licence.period.from.to_string(), "2026-11-28T11:00:00Z");
        assert_eq!(licence.period.to.to_string(), "2026-11-28T16:00:00Z");
        assert_eq!(licence.exclude.isrcs, ["CNA012600001"]);
        assert_eq!(
            licence.period.local(licence.period.from),
            "2026-11-28 19:00"
        );
        // Stored and read back unchanged.
        let json = serde_json::to_string(&licence).expect("json");
        let back: Licence = serde_json::from_str(&json).expect("back");
        assert_eq!(back, licence);
    }

    #[test]
    fn json_licences_and_offsets_are_read() {
        let json = r#"{"id": "T1", "kind": "tracks", "licensee": "L", "event": "e",
            "from": "2026-11-28T19:00+08:00", "to": "2026-11-28T20:00:00Z",
            "works": {"tracks": ["A0001"]}}"#;
        let licence = read("l.json", json).expect("licence");
        assert_eq!(licence.works.tracks, ["A0001"]);
        assert_eq!(licence.period.time_zone, "UTC");
        assert_eq!(
            licence
                .period
                .overlap_s(licence.period.from, licence.period.to),
            9.0 * 3600.0
        );
    }

    #[test]
    fn bad_licences_name_line_and_field() {
        let with = |from: &str, to: &str| BLANKET.replace(from, to);
        let (line, field, _) = error_of("l.toml", &with("2026-11-28T19:00", "2026-13-28T19:00"));
        assert_eq!((line, field.as_str()), (8, "from"));
        let (line, field, what) = error_of(
            "l.toml",
            &with("to = \"2026-11-28\"", "to = \"2026-11-27\""),
        );
        assert_eq!((line, field.as_str()), (9, "to"), "{what}");
        let (line, field, _) = error_of("l.toml", &with("Asia/Shanghai", "Mars/Olympus"));
        assert_eq!((line, field.as_str()), (7, "time_zone"));
        let (line, field, _) = error_of("l.toml", &with("licensee =", "licencee ="));
        assert_eq!((line, field.as_str()), (4, "licencee"));
        let (line, field, _) = error_of("l.toml", &with("T-034.524.680-1", "T-034.524.680-9"));
        assert_eq!((line, field.as_str()), (12, "exclude.works"));
        let (line, field, _) = error_of("l.toml", &with("\"blanket\"", "\"sometimes\""));
        assert_eq!((line, field.as_str()), (3, "kind"));
        let (line, field, _) = error_of(
            "l.json",
            "{\"id\": \"x\",\n \"kind\": \"blanket\",\n \"from\": 5}",
        );
        assert_eq!((line, field.as_str()), (3, "from"));
        let (_, field, _) = error_of("l.toml", &with("[exclude]", "[works]"));
        assert_eq!(field, "works");
        let (_, field, _) = error_of(
            "l.toml",
            "id = \"x\"\nkind = \"tracks\"\nlicensee = \"L\"\n",
        );
        assert_eq!(field, "event");
    }
}
