//! Rights metadata: which musical work each recording is, who wrote and
//! publishes it, and whether the society manages it.
//!
//! A metadata file (CSV or JSON) is read into [`RightsRow`]s, each checked
//! field by field; [`RightsTable::link`] ties them to indexed recordings by
//! catalog id or by file path.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tracks::{Track, TrackTable};

/// Rights metadata of one indexed recording.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rights {
    /// The catalog's id of the recording.
    pub track_id: String,
    /// Title of the work.
    pub title: String,
    /// Performing artists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artists: Vec<String>,
    /// International Standard Recording Code of the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isrc: Option<String>,
    /// International Standard Musical Work Code of the work (`T-...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iswc: Option<String>,
    /// Composers and lyricists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<String>,
    /// Music publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// The collecting society that manages the work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub society: Option<String>,
    /// Whether the work is in the society's managed repertoire.
    pub managed: bool,
}

/// How a metadata row names its recording.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Link {
    /// By the catalog's id.
    Id(String),
    /// By the file it was indexed from.
    Path(String),
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id {id}"),
            Self::Path(path) => write!(f, "path {path}"),
        }
    }
}

/// One row of a metadata file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RightsRow {
    /// Line of the file it starts on.
    pub line: usize,
    /// The recording it describes.
    pub link: Link,
    /// Its metadata (`track_id` is filled in by linking).
    pub rights: Rights,
}

/// The rights metadata of a catalog, by track id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RightsTable {
    rows: BTreeMap<String, Rights>,
}

/// What [`RightsTable::link`] did with a file's rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Linked {
    /// Rows for recordings that had no metadata yet.
    pub added: usize,
    /// Rows that replaced earlier metadata.
    pub updated: usize,
    /// Rows that name no indexed recording: line and link.
    pub unknown: Vec<(usize, Link)>,
}

impl RightsTable {
    /// The metadata of a recording, by its catalog id.
    pub fn get(&self, track_id: &str) -> Option<&Rights> {
        self.rows.get(track_id)
    }

    /// Every row, in track id order.
    pub fn iter(&self) -> impl Iterator<Item = &Rights> {
        self.rows.values()
    }

    /// Number of recordings with metadata.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no recording has metadata.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds or replaces the rows that name an indexed recording; lists the
    /// others.
    pub fn link(&mut self, rows: Vec<RightsRow>, tracks: &TrackTable) -> Linked {
        let by_path: HashMap<&str, &Track> = tracks.iter().map(|t| (t.path.as_str(), t)).collect();
        let mut linked = Linked::default();
        for mut row in rows {
            let track = match &row.link {
                Link::Id(id) => tracks.by_external_id(id),
                Link::Path(path) => by_path.get(path.as_str()).copied().or_else(|| {
                    let canonical = Path::new(path).canonicalize().ok()?;
                    by_path.get(canonical.to_str()?).copied()
                }),
            };
            let Some(track) = track else {
                linked.unknown.push((row.line, row.link));
                continue;
            };
            row.rights.track_id = track.meta.external_id.clone();
            match self.rows.insert(row.rights.track_id.clone(), row.rights) {
                Some(_) => linked.updated += 1,
                None => linked.added += 1,
            }
        }
        linked
    }

    /// Serialises the table as JSON Lines.
    ///
    /// # Errors
    /// Never in practice.
    pub fn to_jsonl(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for rights in self.rows.values() {
            serde_json::to_writer(&mut out, rights).map_err(|e| Error::Limit {
                what: format!("rights of {}: {e}", rights.track_id),
                max: 0,
            })?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// Parses a table written by [`RightsTable::to_jsonl`].
    ///
    /// # Errors
    /// A message naming the line that does not parse.
    pub fn from_jsonl(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut rows = BTreeMap::new();
        for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let rights: Rights =
                serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            rows.insert(rights.track_id.clone(), rights);
        }
        Ok(Self { rows })
    }
}

/// Reads a metadata file: CSV, or JSON (an array of objects) when its name
/// ends in `.json`. Column and key names: `id` (or `track_id`) and/or `path`
/// (or `file`, `abspath`) to name the recording, `managed` (yes/no), and
/// optionally `title`, `artists` (or `artist`), `isrc`, `iswc` (or
/// `work_id`), `writers`, `publisher`, `society`. Lists in CSV cells are
/// separated by `;` or `|`. Other columns are ignored.
///
/// # Errors
/// [`Error::Invalid`] naming the line and field of the first problem:
/// a missing column, an empty or malformed value, a recording named twice,
/// or text that is not UTF-8 (UTF-16 with a byte-order mark is accepted).
pub fn read_metadata(path: &Path) -> Result<Vec<RightsRow>> {
    let bytes = std::fs::read(path).map_err(crate::error::io(path))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let text = decode_text(path, &bytes, is_json)?;
    let cells = if is_json {
        json_cells(path, &text)?
    } else {
        csv_cells(path, &text)?
    };
    let mut rows = Vec::with_capacity(cells.len());
    let mut seen: HashMap<Link, usize> = HashMap::new();
    for (line, cells) in cells {
        let invalid = |field: &str, what: String| Error::Invalid {
            path: path.to_owned(),
            line,
            field: field.to_owned(),
            what,
        };
        let row = parse_row(line, &cells).map_err(|(field, what)| invalid(field, what))?;
        if let Some(first) = seen.insert(row.link.clone(), line) {
            let field = match row.link {
                Link::Id(_) => "id",
                Link::Path(_) => "path",
            };
            return Err(invalid(
                field,
                format!("{} is also on line {first}", row.link),
            ));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The file's text: UTF-8 (a byte-order mark is dropped) or UTF-16 with a
/// byte-order mark. Otherwise the error names the first line that is not
/// UTF-8, and for CSV its column.
fn decode_text(path: &Path, bytes: &[u8], is_json: bool) -> Result<String> {
    let utf16 = |be: bool| {
        let units = bytes[2..].chunks_exact(2).map(|c| {
            let pair = [c[0], c[1]];
            if be {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        });
        char::decode_utf16(units).collect::<std::result::Result<String, _>>()
    };
    let body = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let (line, field) = match bytes {
        [0xFF, 0xFE, ..] => return utf16(false).map_err(|e| invalid_text(path, 1, "text", e)),
        [0xFE, 0xFF, ..] => return utf16(true).map_err(|e| invalid_text(path, 1, "text", e)),
        _ => match std::str::from_utf8(body) {
            Ok(text) => return Ok(text.to_owned()),
            Err(e) if is_json => {
                let line = body[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1;
                (line, "text".to_owned())
            }
            Err(_) => first_non_utf8_cell(body),
        },
    };
    Err(invalid_text(path, line, &field, "not UTF-8"))
}

fn invalid_text(path: &Path, line: usize, field: &str, what: impl std::fmt::Display) -> Error {
    Error::Invalid {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
        what: format!("{what}: save the file as UTF-8"),
    }
}

/// Line and column name of the first CSV cell that is not UTF-8.
fn first_non_utf8_cell(bytes: &[u8]) -> (usize, String) {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut headers = csv::ByteRecord::new();
    for (i, record) in reader.byte_records().enumerate() {
        let Ok(record) = record else { break };
        if i == 0 {
            headers = record.clone();
        }
        if let Some(column) = record.iter().position(|f| std::str::from_utf8(f).is_err()) {
            let line = record.position().map_or(i + 1, |p| p.line() as usize);
            let name = headers.get(column).filter(|_| i > 0);
            let field = name.map_or(format!("column {}", column + 1), |h| {
                String::from_utf8_lossy(h).into_owned()
            });
            return (line, field);
        }
    }
    (1, "text".into())
}

/// A cell of a metadata row: text, or a list (JSON arrays).
#[derive(Debug, Clone)]
enum Cell {
    Text(String),
    List(Vec<String>),
}

type Cells = HashMap<String, Cell>;

fn csv_cells(path: &Path, text: &str) -> Result<Vec<(usize, Cells)>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let invalid = |line: usize, field: &str, what: String| Error::Invalid {
        path: path.to_owned(),
        line,
        field: field.to_owned(),
        what,
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(1, "header", e.to_string()))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    check_columns(&headers).map_err(|(field, what)| invalid(1, field, what))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            invalid(line, "row", e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cells = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.clone(), Cell::Text(v.to_owned())))
            .collect();
        rows.push((line, cells));
    }
    Ok(rows)
}

/// A CSV header must name the recording and say whether it is managed.
fn check_columns(names: &[String]) -> std::result::Result<(), (&'static str, String)> {
    let has = |options: &[&str]| names.iter().any(|n| options.contains(&n.as_str()));
    if !has(&ID_KEYS) && !has(&PATH_KEYS) {
        return Err(("id", "missing column: `id` or `path` is needed".into()));
    }
    if !has(&["managed"]) {
        return Err(("managed", "missing column".into()));
    }
    Ok(())
}

fn json_cells(path: &Path, text: &str) -> Result<Vec<(usize, Cells)>> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let items: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(text).map_err(|e| Error::Invalid {
            path: path.to_owned(),
            line: e.line(),
            field: "document".into(),
            what: format!("{e}; expected an array of objects"),
        })?;
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let offset = item.get().as_ptr() as usize - text.as_ptr() as usize;
        let line = line_of(offset);
        let invalid = |field: &str, what: String| Error::Invalid {
            path: path.to_owned(),
            line,
            field: field.to_owned(),
            what,
        };
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(item.get()).map_err(|e| invalid("row", e.to_string()))?;
        let mut cells = Cells::new();
        for (key, value) in object {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => Some(s.trim().to_owned()),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let cell = match &value {
                serde_json::Value::Null => continue,
                serde_json::Value::Array(items) => Cell::List(
                    items
                        .iter()
                        .map(|v| {
                            text(v).ok_or_else(|| invalid(&key, "list of texts expected".into()))
                        })
                        .collect::<Result<_>>()?,
                ),
                v => Cell::Text(text(v).ok_or_else(|| invalid(&key, "text expected".into()))?),
            };
            cells.insert(key.to_ascii_lowercase(), cell);
        }
        rows.push((line, cells));
    }
    Ok(rows)
}

const ID_KEYS: [&str; 2] = ["id", "track_id"];
const PATH_KEYS: [&str; 3] = ["path", "file", "abspath"];

/// Checks one row's cells; an error names the field.
fn parse_row(line: usize, cells: &Cells) -> std::result::Result<RightsRow, (&'static str, String)> {
    let text =
        |keys: &[&'static str]| -> std::result::Result<Option<String>, (&'static str, String)> {
            for &key in keys {
                match cells.get(key) {
                    Some(Cell::Text(t)) if t.is_empty() => {}
                    Some(Cell::Text(t)) => return Ok(Some(t.clone())),
                    Some(Cell::List(_)) => {
                        return Err((key, "one value expected, not a list".into()));
                    }
                    None => {}
                }
            }
            Ok(None)
        };
    let list = |keys: &[&'static str]| -> Vec<String> {
        keys.iter()
            .find_map(|k| cells.get(*k))
            .map(|cell| match cell {
                Cell::Text(t) => t
                    .split([';', '|'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                Cell::List(items) => items.iter().filter(|s| !s.is_empty()).cloned().collect(),
            })
            .unwrap_or_default()
    };
    let link = match (text(&ID_KEYS)?, text(&PATH_KEYS)?) {
        (Some(id), _) => Link::Id(id),
        (None, Some(path)) => Link::Path(path),
        (None, None) => return Err(("id", "empty: the row names no recording".into())),
    };
    let managed = match text(&["managed"])? {
        Some(v) => parse_yes_no(&v).ok_or(("managed", format!("{v:?} is not yes or no")))?,
        None => return Err(("managed", "empty: say yes or no".into())),
    };
    let isrc = text(&["isrc"])?
        .map(|v| {
            normalise_isrc(&v).ok_or(("isrc", format!("{v:?} is not an ISRC (CC-XXX-YY-NNNNN)")))
        })
        .transpose()?;
    let iswc = text(&["iswc", "work_id"])?
        .map(|v| {
            normalise_iswc(&v).ok_or((
                "iswc",
                format!("{v:?} is not a valid ISWC (T-DDD.DDD.DDD-C)"),
            ))
        })
        .transpose()?;
    Ok(RightsRow {
        line,
        link,
        rights: Rights {
            track_id: String::new(),
            title: text(&["title"])?.unwrap_or_default(),
            artists: list(&["artists", "artist"]),
            isrc,
            iswc,
            writers: list(&["writers", "writer"]),
            publisher: text(&["publisher"])?,
            society: text(&["society"])?,
            managed,
        },
    })
}

fn parse_yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// An ISRC without separators, upper case: two letters, three letters or
/// digits, two digits, five digits.
pub fn normalise_isrc(v: &str) -> Option<String> {
    let s: String = v
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    let b = s.as_bytes();
    let ok = b.len() == 12
        && b[..2].iter().all(u8::is_ascii_alphabetic)
        && b[2..5].iter().all(u8::is_ascii_alphanumeric)
        && b[5..].iter().all(u8::is_ascii_digit);
    ok.then_some(s)
}

/// An ISWC as `T-DDD.DDD.DDD-C`, checked against its check digit.
pub fn normalise_iswc(v: &str) -> Option<String> {
    let s: String = v
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' '))
        .collect::<String>()
        .to_ascii_uppercase();
    let digits = s.strip_prefix('T')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
    let sum: u32 = 1 + (1..=9).map(|i| i as u32 * d[i - 1]).sum::<u32>();
    if (10 - sum % 10) % 10 != d[9] {
        return None;
    }
    Some(format!(
        "T-{}.{}.{}-{}",
        &digits[..3],
        &digits[3..6],
        &digits[6..9],
        &digits[9..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracks::{TrackId, TrackMeta};

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn error_of(name: &str, bytes: &[u8]) -> (usize, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        match read_metadata(&write(dir.path(), name, bytes)) {
            Err(Error::Invalid {
                line, field, what, ..
            }) => (line, field, what),
            other => panic!("expected an invalid-file error, got {other:?}"),
        }
    }

    const CSV: &str = "id,title,artists,isrc,iswc,writers,publisher,society,managed\n\
        A1,Song One,Ann;Bob,CN-A01-26-00001,T-034.524.680-1,Cai,Pub,MCSC,yes\n\
        A2,Song Two,Dee,,,,,,no\n";

    #[test]
    fn csv_rows_are_read_and_normalised() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = read_metadata(&write(dir.path(), "m.csv", CSV.as_bytes())).expect("read");
        assert_eq!(rows.len(), 2);
        let one = &rows[0];
        assert_eq!((one.line, &one.link), (2, &Link::Id("A1".into())));
        assert_eq!(one.rights.artists, ["Ann", "Bob"]);
        assert_eq!(one.rights.isrc.as_deref(), Some("CNA012600001"));
        assert_eq!(one.rights.iswc.as_deref(), Some("T-034.524.680-1"));
        assert!(one.rights.managed);
        assert!(!rows[1].rights.managed);
        assert_eq!(rows[1].rights.isrc, None);
    }

    #[test]
    fn json_rows_carry_their_line() {
        let json = "[\n {\"id\": \"A1\", \"managed\": true, \"artists\": [\"Ann\", \"Bob\"]},\n\n \
                    {\"path\": \"/music/b.ogg\", \"managed\": \"no\"}\n]";
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = read_metadata(&write(dir.path(), "m.json", json.as_bytes())).expect("read");
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].rights.artists, ["Ann", "Bob"]);
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].link, Link::Path("/music/b.ogg".into()));
        let (line, field, _) = error_of("m.json", b"[{\"id\": \"A\", \"managed\": \"maybe\"}]");
        assert_eq!((line, field.as_str()), (1, "managed"));
    }

    #[test]
    fn bad_files_name_line_and_field() {
        let (line, field, _) = error_of("m.csv", b"title,managed\nx,yes\n");
        assert_eq!((line, field.as_str()), (1, "id"));
        let (line, field, _) = error_of("m.csv", b"id,title\nA1,x\n");
        assert_eq!((line, field.as_str()), (1, "managed"));
        let (line, field, what) = error_of("m.csv", b"id,managed\nA1,yes\nA2,no\nA1,no\n");
        assert_eq!((line, field.as_str()), (4, "id"));
        assert!(what.contains("line 2"), "{what}");
        let (line, field, _) = error_of("m.csv", b"id,managed,iswc\nA1,yes,T-034.524.680-2\n");
        assert_eq!((line, field.as_str()), (2, "iswc"));
        let (line, field, _) = error_of("m.csv", b"id,managed,isrc\nA1,yes,\nA2,yes,XX\n");
        assert_eq!((line, field.as_str()), (3, "isrc"));
        let (line, field, _) = error_of("m.csv", b"id,managed\nA1,yes\nA2,perhaps\n");
        assert_eq!((line, field.as_str()), (3, "managed"));
        let (line, field, _) = error_of("m.csv", b"id,managed,title\nA1,yes,ok\nA2,no,Caf\xe9\n");
        assert_eq!((line, field.as_str()), (3, "title"));
        let (line, field, _) = error_of("m.csv", b"id,managed\nA1,yes,extra\n");
        assert_eq!((line, field.as_str()), (2, "row"));
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_read() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "id,title,managed\nA1,Café,yes\n".encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let rows = read_metadata(&write(dir.path(), "m.csv", &bytes)).expect("read");
        assert_eq!(rows[0].rights.title, "Café");
    }

    #[test]
    fn linking_adds_updates_and_lists_unknown_rows() {
        let track = |id: u32, name: &str| Track {
            id: TrackId(id),
            meta: TrackMeta {
                external_id: name.into(),
                ..TrackMeta::default()
            },
            duration_s: 1.0,
            path: format!("/music/{name}.ogg"),
            content_hash: name.into(),
            landmarks: 1,
        };
        let tracks = TrackTable::from_tracks(vec![track(0, "A1"), track(1, "B2")]).expect("tracks");
        let row = |line, link| RightsRow {
            line,
            link,
            rights: Rights::default(),
        };
        let mut table = RightsTable::default();
        let linked = table.link(
            vec![
                row(2, Link::Id("A1".into())),
                row(3, Link::Path("/music/B2.ogg".into())),
                row(4, Link::Id("Z9".into())),
            ],
            &tracks,
        );
        assert_eq!((linked.added, linked.updated), (2, 0));
        assert_eq!(linked.unknown, vec![(4, Link::Id("Z9".into()))]);
        assert_eq!(table.get("B2").map(|r| r.track_id.as_str()), Some("B2"));
        let again = table.link(vec![row(2, Link::Id("A1".into()))], &tracks);
        assert_eq!((again.added, again.updated), (0, 1));
        let back = RightsTable::from_jsonl(&table.to_jsonl().expect("jsonl")).expect("parse");
        assert_eq!(back, table);
    }
}
