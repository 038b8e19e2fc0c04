//! Plays that monitors uploaded, per event: an append-only JSON Lines file
//! per event under `DB/events/`, each batch synced before it is acknowledged.
//!
//! A play is named by the log it came from (`source`) and its number there.
//! Uploading a play again stores nothing unless it grew (a later state of a
//! play under way) or ended, so retries and re-sent logs never duplicate a
//! play. A play's ended state is final, though it may end sooner than it was
//! last heard (the tracker settles where its music stopped).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use earmark_monitor::{Event, PlayRecord, UnidentifiedRecord};

use crate::report::Show;

/// One stored line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    source: String,
    #[serde(flatten)]
    item: Item,
    /// The play's final state (from `play_ended`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ended: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Item {
    Play(PlayRecord),
    Unidentified(UnidentifiedRecord),
}

/// The latest state of every play and segment of one event.
#[derive(Debug, Default)]
struct EventPlays {
    plays: BTreeMap<(String, u64), PlayRecord>,
    /// Plays whose final state is stored.
    ended: HashSet<(String, u64)>,
    unidentified: BTreeMap<(String, u64), UnidentifiedRecord>,
}

impl EventPlays {
    /// Takes in `item` (`ended`: a play's final state); whether it is new,
    /// grew or ended.
    fn absorb(&mut self, source: &str, item: &Item, ended: bool) -> bool {
        match item {
            Item::Play(play) => {
                let key = (source.to_owned(), play.play);
                // A later state reaches further, withdraws the play or ends it.
                let later = match self.plays.get(&key) {
                    None => true,
                    Some(old) => {
                        old != play
                            && !old.withdrawn
                            && !self.ended.contains(&key)
                            && (ended || play.withdrawn || old.end_s <= play.end_s)
                    }
                };
                if later {
                    self.plays.insert(key.clone(), play.clone());
                    if ended {
                        self.ended.insert(key);
                    }
                }
                later
            }
            Item::Unidentified(segment) => {
                let key = (source.to_owned(), segment.segment);
                match self.unidentified.get(&key) {
                    Some(old) if old == segment || old.end_s > segment.end_s => false,
                    _ => {
                        self.unidentified.insert(key, segment.clone());
                        true
                    }
                }
            }
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Uploaded {
    /// Plays and segments stored (new, or a later state).
    pub stored: usize,
    /// Ones already stored as sent.
    pub unchanged: usize,
}

/// Every event's uploaded plays.
#[derive(Debug)]
pub struct PlayStore {
    dir: PathBuf,
    events: Mutex<HashMap<String, Arc<Mutex<EventPlays>>>>,
}

impl PlayStore {
    /// The store in `dir` (created when the first play arrives).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            events: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, event: &str) -> PathBuf {
        self.dir.join(format!("{event}.jsonl"))
    }

    /// The event's plays, read from disk the first time.
    fn event(&self, event: &str) -> anyhow::Result<Arc<Mutex<EventPlays>>> {
        let mut events = self.events.lock().map_err(|_| poisoned())?;
        if let Some(e) = events.get(event) {
            return Ok(Arc::clone(e));
        }
        let loaded = Arc::new(Mutex::new(load(&self.file(event))?));
        events.insert(event.to_owned(), Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Stores the plays and segments among a log's `events` from `source`.
    pub fn upload(&self, event: &str, source: &str, events: &[Event]) -> anyhow::Result<Uploaded> {
        let plays = self.event(event)?;
        let mut plays = plays.lock().map_err(|_| poisoned())?;
        let mut outcome = Uploaded::default();
        let mut lines = Vec::new();
        for e in events {
            let (item, ended) = match e {
                Event::PlayStarted { play, .. } | Event::PlayHeard { play, .. } => {
                    (Item::Play(play.clone()), false)
                }
                Event::PlayEnded { play, .. } => (Item::Play(play.clone()), true),
                Event::Unidentified { segment, .. } => (Item::Unidentified(segment.clone()), false),
                _ => continue,
            };
            if plays.absorb(source, &item, ended) {
                outcome.stored += 1;
                let line = Line {
                    source: source.to_owned(),
                    item,
                    ended,
                };
                serde_json::to_writer(&mut lines, &line)?;
                lines.push(b'\n');
            } else {
                outcome.unchanged += 1;
            }
        }
        if !lines.is_empty() {
            let path = self.file(event);
            std::fs::create_dir_all(&self.dir)
                .with_context(|| format!("{}", self.dir.display()))?;
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("{}", path.display()))?;
            file.write_all(&lines)
                .and_then(|()| file.sync_data())
                .with_context(|| format!("{}", path.display()))?;
        }
        Ok(outcome)
    }

    /// The event's show: every source's plays in start order; `None` when
    /// nothing was uploaded for it.
    pub fn show(&self, event: &str) -> anyhow::Result<Option<Show>> {
        let plays = self.event(event)?;
        let plays = plays.lock().map_err(|_| poisoned())?;
        if plays.plays.is_empty() && plays.unidentified.is_empty() {
            return Ok(None);
        }
        let mut show = Show {
            source: format!("event {event}"),
            runs: None,
            plays: (plays.plays.values())
                .filter(|p| !p.withdrawn)
                .cloned()
                .collect(),
            unidentified: plays.unidentified.values().cloned().collect(),
        };
        show.plays.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        show.unidentified
            .sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        Ok(Some(show))
    }
}

/// Reads an event's file; a line cut short by a crash is skipped.
fn load(path: &Path) -> anyhow::Result<EventPlays> {
    let mut plays = EventPlays::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(plays),
        Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
    };
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(stored) = serde_json::from_slice::<Line>(line) {
            plays.absorb(&stored.source, &stored.item, stored.ended);
        }
    }
    // A torn last line would glue itself to the next append: end it.
    if bytes.last().is_some_and(|&b| b != b'\n') {
        let mut file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("{}", path.display()))?;
        file.write_all(b"\n")
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(plays)
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a request panicked while holding the play store")
}

/// Whether `id` is fit to name an event (and its file).
pub fn valid_event_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `id` is fit to name a track added through the API: it is shown
/// in cue sheets and CSV files and named in routes.
pub fn valid_track_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && !id.chars().any(|c| c.is_control() || "/\\\"".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn play(end_s: f64, withdrawn: bool) -> PlayRecord {
        let record = serde_json::json!({
            "play": 1, "track_id": "T1", "title": "", "artist": "", "isrc": null,
            "start_s": 5.0, "end_s": end_s, "started_at": null, "ended_at": null,
            "track_start_s": 0.0, "tempo": 1.0, "pitch": 1.0, "score": 9.0,
            "withdrawn": withdrawn,
        });
        serde_json::from_value(record).expect("record")
    }

    #[test]
    fn an_ended_play_keeps_its_end_though_it_was_heard_further() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PlayStore::new(dir.path().to_owned());
        let heard = Event::PlayHeard {
            at: String::new(),
            play: play(9.0, false),
        };
        let ended = Event::PlayEnded {
            at: String::new(),
            play: play(8.0, false),
            interrupted: false,
        };
        let end_s = |store: &PlayStore| {
            let shown = store.show("show").expect("show").expect("plays");
            shown.plays.iter().map(|p| p.end_s).collect::<Vec<_>>()
        };
        store
            .upload("show", "laptop", &[heard.clone(), ended])
            .expect("upload");
        assert_eq!(end_s(&store), [8.0]);
        // The log sent again: its earlier states change nothing.
        let again = store.upload("show", "laptop", &[heard]).expect("upload");
        assert_eq!((again.stored, again.unchanged), (0, 1));
        assert_eq!(end_s(&store), [8.0]);
        assert_eq!(end_s(&PlayStore::new(dir.path().to_owned())), [8.0]);
    }

    #[test]
    fn a_withdrawn_play_leaves_the_show_though_it_ends_sooner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = PlayStore::new(dir.path().to_owned());
        let at = String::new();
        let heard = Event::PlayHeard {
            at: at.clone(),
            play: play(9.0, false),
        };
        store.upload("show", "laptop", &[heard]).expect("upload");
        let shown = store.show("show").expect("show").expect("plays");
        assert_eq!(shown.plays.len(), 1);
        let ended = Event::PlayEnded {
            at,
            play: play(8.0, true),
            interrupted: false,
        };
        let uploaded = store.upload("show", "laptop", &[ended]).expect("upload");
        assert_eq!(uploaded.stored, 1);
        let shown = store.show("show").expect("show").expect("stored");
        assert!(shown.plays.is_empty());
        // As read back from disk by a restarted server.
        let again = PlayStore::new(dir.path().to_owned());
        let shown = again.show("show").expect("show").expect("stored");
        assert!(shown.plays.is_empty());
    }
}
