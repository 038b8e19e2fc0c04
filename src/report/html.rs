//! The cue sheet as one self-contained HTML page: no scripts, no external
//! files; the review clips are embedded.

use std::fmt::Write;

use base64::Engine;

use super::{Cue, CueSheet};

/// Largest clip embedded in the page; bigger ones are linked.
const MAX_EMBEDDED_CLIP: u64 = 8 << 20;

/// Width of the timeline picture in pixels.
const WIDTH: f64 = 1000.0;
const LANE: f64 = 28.0;
const AXIS: f64 = 22.0;

/// Fill colour of each coverage.
pub fn colour(coverage: &str) -> &'static str {
    match coverage {
        "covered" => "#2f9e44",
        "not_covered" => "#e03131",
        "needs_review" => "#f59f00",
        _ => "#868e96",
    }
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds as `h:mm:ss` or `m:ss`.
fn position(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// The page.
pub fn page(sheet: &CueSheet) -> String {
    let title = match &sheet.event {
        Some(event) => format!("Cue sheet: {event}"),
        None => "Cue sheet".to_owned(),
    };
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<p class=\"meta\">{}{}</p>\n",
        esc(&title),
        esc(&title),
        esc(&sheet.show.source),
        if sheet.licences.is_empty() {
            String::new()
        } else {
            format!(" &middot; licences {}", esc(&sheet.licences.join(", ")))
        }
    );
    summary(&mut html, sheet);
    html.push_str("<h2>Timeline</h2>\n");
    timeline(&mut html, &sheet.cues);
    legend(&mut html);
    table(&mut html, &sheet.cues);
    clips(&mut html, sheet);
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;color:#212529}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:22px 0 8px}.meta{color:#666;margin:0 0 14px}\
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dee2e6;border-radius:6px;padding:8px 14px;min-width:110px}\
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}\
table{border-collapse:collapse;font-size:13px;width:100%}td,th{border-bottom:1px solid #e9ecef;padding:4px 6px;text-align:left}\
th{background:#f1f3f5}.badge{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px;white-space:nowrap}\
.legend span{display:inline-block;margin-right:14px;font-size:12px}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\
td:nth-child(2),td:nth-child(3),td:nth-child(7),td:nth-child(8){white-space:nowrap}\
svg text{font-family:DejaVu Sans,Helvetica,Arial,sans-serif}";

fn summary(html: &mut String, sheet: &CueSheet) {
    let s = &sheet.summary;
    let cards = [
        (format!("{:.1}", s.music_min), "music minutes"),
        (format!("{:.0}%", s.covered_share * 100.0), "covered share"),
        (s.plays.to_string(), "plays"),
        (s.not_covered.to_string(), "not covered"),
        (s.needs_review.to_string(), "need review"),
        (s.unidentified.to_string(), "unidentified segments"),
        (s.partly_outside.to_string(), "partly outside a period"),
    ];
    html.push_str("<div class=\"cards\">");
    for (value, label) in cards {
        let _ = write!(
            html,
            "<div class=\"card\"><b>{value}</b><span>{label}</span></div>"
        );
    }
    html.push_str("</div>\n");
    let refused: Vec<&Cue> = (sheet.cues.iter())
        .filter(|c| c.coverage == "not_covered")
        .collect();
    if !refused.is_empty() {
        html.push_str("<h2>Plays not covered</h2>\n<ul>");
        for c in refused {
            let _ = write!(
                html,
                "<li>{} {} &ndash; {} ({})</li>",
                position(c.start_s),
                esc(&c.title),
                esc(&c.artists),
                esc(&c.reason.replace('_', " "))
            );
        }
        html.push_str("</ul>\n");
    }
}

/// Lanes so that overlapping cues (crossfades) sit one above the other.
fn lanes(cues: &[Cue]) -> Vec<usize> {
    let mut ends: Vec<f64> = Vec::new();
    cues.iter()
        .map(|c| match ends.iter().position(|&e| e <= c.start_s) {
            Some(lane) => {
                ends[lane] = c.end_s;
                lane
            }
            None => {
                ends.push(c.end_s);
                ends.len() - 1
            }
        })
        .collect()
}

fn timeline(html: &mut String, cues: &[Cue]) {
    let lane_of = lanes(cues);
    let n_lanes = lane_of.iter().max().map_or(1, |m| m + 1);
    let span = cues.iter().map(|c| c.end_s).fold(60.0, f64::max);
    let height = AXIS + n_lanes as f64 * LANE + 4.0;
    let x = |s: f64| 10.0 + s / span * (WIDTH - 20.0);
    let _ = write!(
        html,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"timeline of the show\">\
         <rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#f8f9fa\"/>"
    );
    let step = [30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(7200.0);
    let mut t = 0.0;
    while t <= span {
        let _ = write!(
            html,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{AXIS}\" y2=\"{height}\" stroke=\"#dee2e6\"/>\
             <text x=\"{0:.1}\" y=\"14\" font-size=\"11\" fill=\"#495057\">{1}</text>",
            x(t),
            position(t)
        );
        t += step;
    }
    for (cue, lane) in cues.iter().zip(lane_of) {
        let (x0, x1) = (x(cue.start_s), x(cue.end_s.max(cue.start_s)));
        let w = (x1 - x0).max(2.0);
        let y = AXIS + lane as f64 * LANE + 2.0;
        let _ = write!(
            html,
            "<g><title>{} {}&#8211;{}: {} ({})</title>\
             <rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" rx=\"3\" fill=\"{}\"/>",
            cue.number,
            position(cue.start_s),
            position(cue.end_s),
            esc(&cue.title),
            cue.coverage,
            LANE - 4.0,
            colour(cue.coverage)
        );
        let fits = (w / 7.0) as usize;
        if fits >= 4 {
            let label: String = cue.title.chars().take(fits).collect();
            let _ = write!(
                html,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#fff\">{}</text>",
                x0 + 4.0,
                y + LANE / 2.0 + 2.0,
                esc(&label)
            );
        }
        html.push_str("</g>");
    }
    html.push_str("</svg>\n");
}

fn legend(html: &mut String) {
    html.push_str("<p class=\"legend\">");
    for c in ["covered", "not_covered", "needs_review", "unknown"] {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            colour(c),
            c.replace('_', " ")
        );
    }
    html.push_str("</p>\n");
}

fn table(html: &mut String, cues: &[Cue]) {
    html.push_str(
        "<h2>Cues</h2>\n<div style=\"overflow-x:auto\"><table><tr><th>#</th><th>start</th><th>end</th><th>length</th>\
         <th>title</th><th>artists</th><th>ISRC</th><th>ISWC</th><th>coverage</th>\
         <th>reason</th><th>licence</th><th>speed</th></tr>\n",
    );
    for c in cues {
        let when = |clock: &str, s: f64| {
            if clock.is_empty() {
                position(s)
            } else {
                clock.to_owned()
            }
        };
        let title = if c.similar.is_empty() {
            esc(&c.title)
        } else {
            format!(
                "{}<br><small>possible adaptation of: {}</small>",
                esc(&c.title),
                esc(&c.similar)
            )
        };
        let reason = match c.inside_s {
            Some(inside) => format!("{} ({inside:.0} s inside the period)", c.reason),
            None => c.reason.to_owned(),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td><span class=\"badge\" style=\"background:{}\">{}</span></td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            c.number,
            esc(&when(&c.start, c.start_s)),
            esc(&when(&c.end, c.end_s)),
            position(c.duration_s),
            title,
            esc(&c.artists),
            esc(&c.isrc),
            esc(&c.iswc),
            colour(c.coverage),
            c.coverage.replace('_', " "),
            esc(&reason.replace('_', " ")),
            esc(&c.licence),
            c.speed.map_or(String::new(), |s| format!("{s:.3}"))
        );
    }
    html.push_str("</table></div>\n");
}

fn clips(html: &mut String, sheet: &CueSheet) {
    let segments: Vec<&Cue> = (sheet.cues.iter())
        .filter(|c| c.kind == "unidentified")
        .collect();
    if segments.is_empty() {
        return;
    }
    html.push_str("<h2>Unidentified music</h2>\n<ul>");
    for c in segments {
        let _ = write!(
            html,
            "<li>{}&#8211;{} ",
            position(c.start_s),
            position(c.end_s)
        );
        let file = sheet
            .clips_dir
            .as_ref()
            .filter(|_| !c.clip.is_empty())
            .map(|d| d.join(&c.clip));
        match file {
            Some(path) if std::fs::metadata(&path).is_ok_and(|m| m.len() <= MAX_EMBEDDED_CLIP) => {
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let _ = write!(
                            html,
                            "<audio controls preload=\"none\" src=\"data:audio/wav;base64,{}\"></audio>",
                            base64::engine::general_purpose::STANDARD.encode(bytes)
                        );
                    }
                    Err(e) => {
                        let _ = write!(html, "(clip {}: {})", esc(&c.clip), esc(&e.to_string()));
                    }
                }
            }
            Some(_) => {
                let _ = write!(html, "<a href=\"{0}\">{0}</a>", esc(&c.clip));
            }
            None => html.push_str("(no clip kept)"),
        }
        html.push_str("</li>");
    }
    html.push_str("</ul>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossfading_cues_take_separate_lanes() {
        let cue = |start_s: f64, end_s: f64| Cue {
            start_s,
            end_s,
            ..test_cue()
        };
        let cues = [
            cue(0.0, 100.0),
            cue(90.0, 200.0),
            cue(200.0, 300.0),
            cue(250.0, 260.0),
        ];
        assert_eq!(lanes(&cues), vec![0, 1, 0, 1]);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(position(3725.0), "1:02:05");
        assert_eq!(position(65.4), "1:05");
    }

    #[test]
    fn nothing_covered_is_zero_percent_not_minus_zero() {
        let cue = Cue {
            coverage: "unknown",
            duration_s: 60.0,
            ..test_cue()
        };
        let s = crate::report::summarise(&[cue]);
        assert!(s.covered_min.is_sign_positive() && s.covered_share.is_sign_positive());
        assert_eq!(format!("{:.0}%", s.covered_share * 100.0), "0%");
    }

    fn test_cue() -> Cue {
        Cue {
            kind: "play",
            number: 1,
            start: String::new(),
            end: String::new(),
            duration_s: 0.0,
            start_s: 0.0,
            end_s: 0.0,
            track_id: String::new(),
            title: String::new(),
            artists: String::new(),
            isrc: String::new(),
            iswc: String::new(),
            coverage: "covered",
            reason: "",
            licence: String::new(),
            inside_s: None,
            confidence: None,
            speed: None,
            track_start_s: None,
            clip: String::new(),
            similar: String::new(),
        }
    }
}
