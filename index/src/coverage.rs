//! Coverage: whether the licences of an event cover a play.
//!
//! No licence for the event: not covered. No rights metadata for the track:
//! needs review. Otherwise each licence judges the part of the play inside
//! its period; a licence that covers it wins, else the refusal closest to
//! covering is given: a licence that only missed the period, then one in
//! force that refuses the work (excluded, not managed, not listed).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::licence::{Licence, LicenceKind};
use crate::rights::Rights;

/// The three answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// A licence covers the play.
    Covered,
    /// No licence covers the play.
    NotCovered,
    /// A person must decide.
    NeedsReview,
}

impl Coverage {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Covered => "covered",
            Self::NotCovered => "not_covered",
            Self::NeedsReview => "needs_review",
        }
    }
}

/// Why a play is not covered or needs review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Played outside every licence's period.
    OutsidePeriod,
    /// The licence excludes the work or recording.
    WorkExcluded,
    /// The work is not in the society's managed repertoire.
    NotInRepertoire,
    /// A per-track licence does not list the work.
    NotInLicence,
    /// The event has no licence.
    NoLicence,
    /// The music matched nothing in the catalog.
    Unidentified,
    /// The track has no rights metadata.
    NoRightsMetadata,
}

impl Reason {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutsidePeriod => "outside_period",
            Self::WorkExcluded => "work_excluded",
            Self::NotInRepertoire => "not_in_repertoire",
            Self::NotInLicence => "not_in_licence",
            Self::NoLicence => "no_licence",
            Self::Unidentified => "unidentified",
            Self::NoRightsMetadata => "no_rights_metadata",
        }
    }

    /// How strongly a refusal explains itself, for choosing among licences.
    fn weight(self) -> u8 {
        match self {
            Self::WorkExcluded => 3,
            Self::NotInRepertoire => 2,
            Self::NotInLicence => 1,
            _ => 0,
        }
    }
}

/// The coverage of one play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The answer.
    pub coverage: Coverage,
    /// Why, unless covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The licence that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licence: Option<String>,
    /// Set when only part of the play lies in the licence's period: the
    /// seconds inside it, which were judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_s: Option<f64>,
    /// False when the play's time is unknown and no period was checked.
    pub period_checked: bool,
}

impl Decision {
    fn new(coverage: Coverage, reason: Option<Reason>) -> Self {
        Self {
            coverage,
            reason,
            licence: None,
            inside_s: None,
            period_checked: false,
        }
    }

    /// Music that matched nothing: a person must listen to it.
    pub fn unidentified() -> Self {
        Self::new(Coverage::NeedsReview, Some(Reason::Unidentified))
    }

    /// Whether part of the play lies outside the deciding licence's period.
    pub fn partly_outside(&self) -> bool {
        self.inside_s.is_some()
    }
}

impl std::fmt::Display for Decision {
    /// `covered by BL`, `not_covered (work_excluded, BL)`, with
    /// `, 120 s inside the period` when it straddles the period's edge.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.coverage.as_str())?;
        let details: Vec<String> = [
            self.reason.map(|r| r.as_str().to_owned()),
            self.licence.clone(),
            self.inside_s.map(|s| format!("{s:.0} s inside the period")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !details.is_empty() {
            write!(f, " ({})", details.join(", "))?;
        }
        Ok(())
    }
}

/// When a play was heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heard {
    /// Its start.
    pub start: Timestamp,
    /// Its end.
    pub end: Timestamp,
}

/// Decides whether `licences` (those of the play's event) cover a play of
/// the recording with `rights`, heard at `heard` if that is known.
pub fn decide(rights: Option<&Rights>, heard: Option<Heard>, licences: &[&Licence]) -> Decision {
    if licences.is_empty() {
        return Decision::new(Coverage::NotCovered, Some(Reason::NoLicence));
    }
    let Some(rights) = rights else {
        return Decision::new(Coverage::NeedsReview, Some(Reason::NoRightsMetadata));
    };
    let mut covered: Option<Decision> = None;
    let mut refused: Option<(u8, Decision)> = None;
    for licence in licences {
        let mut decision = Decision::new(Coverage::NotCovered, None);
        decision.licence = Some(licence.id.clone());
        decision.period_checked = heard.is_some();
        let mut in_period = true;
        if let Some(h) = heard {
            let length = h.end.duration_since(h.start).as_secs_f64();
            let inside = if length > 0.0 {
                licence.period.overlap_s(h.start, h.end)
            } else if (licence.period.from..licence.period.to).contains(&h.start) {
                length
            } else {
                -1.0
            };
            in_period = inside > 0.0 || (inside == 0.0 && length == 0.0);
            if in_period && inside + 0.01 < length {
                decision.inside_s = Some((inside * 100.0).round() / 100.0);
            }
        }
        let refusal = match licence.kind {
            LicenceKind::Blanket if licence.exclude.names(rights) => Some(Reason::WorkExcluded),
            LicenceKind::Blanket if !rights.managed => Some(Reason::NotInRepertoire),
            LicenceKind::Tracks if !licence.works.names(rights) => Some(Reason::NotInLicence),
            _ => None,
        };
        // The refusal closest to covering explains best: only the period
        // missed, then a licence in force that refuses the work.
        let weight = match (in_period, refusal) {
            (true, None) => {
                decision.coverage = Coverage::Covered;
                let whole = |d: &Decision| d.inside_s.unwrap_or(f64::INFINITY);
                if covered.as_ref().is_none_or(|c| whole(&decision) > whole(c)) {
                    covered = Some(decision);
                }
                continue;
            }
            (false, None) => 4,
            (true, Some(reason)) => reason.weight(),
            (false, Some(_)) => 0,
        };
        decision.reason = Some(if in_period {
            refusal.unwrap_or(Reason::OutsidePeriod)
        } else {
            Reason::OutsidePeriod
        });
        if refused.as_ref().is_none_or(|(w, _)| weight > *w) {
            refused = Some((weight, decision));
        }
    }
    covered
        .or(refused.map(|(_, d)| d))
        .unwrap_or_else(|| Decision::new(Coverage::NotCovered, Some(Reason::NoLicence)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::licence::{Period, Works};

    fn at(hour: i8, minute: i8) -> Timestamp {
        jiff::civil::date(2026, 11, 28)
            .at(hour, minute, 0, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp())
            .expect("time")
    }

    fn heard(from: (i8, i8), to: (i8, i8)) -> Option<Heard> {
        Some(Heard {
            start: at(from.0, from.1),
            end: at(to.0, to.1),
        })
    }

    fn blanket(id: &str, exclude: Works) -> Licence {
        Licence {
            id: id.into(),
            kind: LicenceKind::Blanket,
            licensee: "L".into(),
            event: "show".into(),
            event_name: None,
            venue: None,
            period: Period {
                from: at(19, 0),
                to: at(22, 0),
                time_zone: "UTC".into(),
            },
            exclude,
            works: Works::default(),
        }
    }

    fn per_track(id: &str, tracks: &[&str]) -> Licence {
        Licence {
            kind: LicenceKind::Tracks,
            works: Works {
                tracks: tracks.iter().map(|t| t.to_string()).collect(),
                ..Works::default()
            },
            exclude: Works::default(),
            ..blanket(id, Works::default())
        }
    }

    fn rights(id: &str, managed: bool) -> Rights {
        Rights {
            track_id: id.into(),
            iswc: Some(format!("T-000.000.00{}-0", id.len())),
            isrc: Some(format!("CNA01260000{}", id.len())),
            managed,
            ..Rights::default()
        }
    }

    fn answer(d: &Decision) -> (Coverage, Option<Reason>, Option<&str>) {
        (d.coverage, d.reason, d.licence.as_deref())
    }

    #[test]
    fn a_managed_work_inside_the_period_is_covered() {
        let l = blanket("BL", Works::default());
        let d = decide(Some(&rights("A", true)), heard((20, 0), (20, 3)), &[&l]);
        assert_eq!(answer(&d), (Coverage::Covered, None, Some("BL")));
        assert!(d.period_checked && !d.partly_outside());
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let r = rights("A", true);
        let l = blanket("BL", Works::default());
        let d = decide(Some(&r), heard((22, 0), (22, 3)), &[&l]);
        assert_eq!(
            answer(&d),
            (
                Coverage::NotCovered,
                Some(Reason::OutsidePeriod),
                Some("BL")
            )
        );
        let d = decide(Some(&r), heard((18, 50), (18, 59)), &[&l]);
        assert_eq!(d.reason, Some(Reason::OutsidePeriod));
        let d = decide(Some(&rights("A", false)), heard((20, 0), (20, 3)), &[&l]);
        assert_eq!(d.reason, Some(Reason::NotInRepertoire));
        let d = decide(Some(&r), heard((20, 0), (20, 3)), &[]);
        assert_eq!(
            answer(&d),
            (Coverage::NotCovered, Some(Reason::NoLicence), None)
        );
        let d = decide(None, heard((20, 0), (20, 3)), &[&l]);
        assert_eq!(
            answer(&d),
            (Coverage::NeedsReview, Some(Reason::NoRightsMetadata), None)
        );
        assert_eq!(Decision::unidentified().coverage, Coverage::NeedsReview);
    }

    #[test]
    fn exclusions_by_work_recording_or_track_refuse() {
        let r = rights("A", true);
        let by = [
            Works {
                works: vec![r.iswc.clone().unwrap_or_default()],
                ..Works::default()
            },
            Works {
                isrcs: vec![r.isrc.clone().unwrap_or_default()],
                ..Works::default()
            },
            Works {
                tracks: vec!["A".into()],
                ..Works::default()
            },
        ];
        for exclude in by {
            let l = blanket("BL", exclude);
            let d = decide(Some(&r), heard((20, 0), (20, 3)), &[&l]);
            assert_eq!(d.reason, Some(Reason::WorkExcluded));
            let other = decide(Some(&rights("BB", true)), heard((20, 0), (20, 3)), &[&l]);
            assert_eq!(other.coverage, Coverage::Covered);
        }
    }

    #[test]
    fn a_play_straddling_the_end_is_judged_by_its_part_inside_and_flagged() {
        let l = blanket("BL", Works::default());
        let d = decide(Some(&rights("A", true)), heard((21, 58), (22, 2)), &[&l]);
        assert_eq!(d.coverage, Coverage::Covered);
        assert_eq!(d.inside_s, Some(120.0));
        let d = decide(Some(&rights("A", false)), heard((21, 58), (22, 2)), &[&l]);
        assert_eq!(
            (d.reason, d.inside_s),
            (Some(Reason::NotInRepertoire), Some(120.0))
        );
        // Starting exactly at the end is outside; ending exactly at the start too.
        let d = decide(Some(&rights("A", true)), heard((22, 0), (22, 2)), &[&l]);
        assert_eq!(d.reason, Some(Reason::OutsidePeriod));
        let d = decide(Some(&rights("A", true)), heard((18, 58), (19, 0)), &[&l]);
        assert_eq!(d.reason, Some(Reason::OutsidePeriod));
    }

    #[test]
    fn a_per_track_licence_covers_what_the_blanket_excludes() {
        let r = rights("A", true);
        let bl = blanket(
            "BL",
            Works {
                tracks: vec!["A".into()],
                ..Works::default()
            },
        );
        let pt = per_track("PT", &["A"]);
        let d = decide(Some(&r), heard((20, 0), (20, 3)), &[&bl, &pt]);
        assert_eq!(answer(&d), (Coverage::Covered, None, Some("PT")));
        let d = decide(
            Some(&rights("BB", false)),
            heard((20, 0), (20, 3)),
            &[&pt, &bl],
        );
        assert_eq!(
            answer(&d),
            (
                Coverage::NotCovered,
                Some(Reason::NotInRepertoire),
                Some("BL")
            )
        );
        let d = decide(Some(&rights("BB", true)), heard((20, 0), (20, 3)), &[&pt]);
        assert_eq!(d.reason, Some(Reason::NotInLicence));
    }

    #[test]
    fn the_refusal_closest_to_covering_is_given() {
        let excluding = |id: &str| {
            blanket(
                id,
                Works {
                    tracks: vec!["A".into()],
                    ..Works::default()
                },
            )
        };
        let when = heard((20, 0), (20, 3));
        // A managed work after the blanket's period: the period is why, not
        // the per-track licence in force that does not list it.
        let mut bl = blanket("BL", Works::default());
        bl.period.to = at(19, 30);
        let pt = per_track("PT", &["other"]);
        let d = decide(Some(&rights("A", true)), when, &[&pt, &bl]);
        assert_eq!(
            answer(&d),
            (
                Coverage::NotCovered,
                Some(Reason::OutsidePeriod),
                Some("BL")
            )
        );
        // An unmanaged work after it: the licence in force explains.
        let d = decide(Some(&rights("A", false)), when, &[&bl, &pt]);
        assert_eq!(
            answer(&d),
            (Coverage::NotCovered, Some(Reason::NotInLicence), Some("PT"))
        );
        // Excluded says more than not listed.
        let d = decide(Some(&rights("A", true)), when, &[&pt, &excluding("EX")]);
        assert_eq!(
            answer(&d),
            (Coverage::NotCovered, Some(Reason::WorkExcluded), Some("EX"))
        );
    }

    #[test]
    fn without_a_time_only_the_works_are_judged() {
        let l = blanket("BL", Works::default());
        let d = decide(Some(&rights("A", true)), None, &[&l]);
        assert_eq!(d.coverage, Coverage::Covered);
        assert!(!d.period_checked);
    }
}
