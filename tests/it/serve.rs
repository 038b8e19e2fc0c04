//! `earmark serve`: every route, every role and its refusals, bad bodies,
//! a track added while identify requests run, a restart that keeps uploaded
//! plays, and a monitor's plays queued until the service is reachable.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use earmark_engine::testutil::write_wav;

use crate::util::{Fixture, RATE, earmark, path, run, stderr, stdout};

/// A running `earmark serve`, killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    agent: ureq::Agent,
}

impl Server {
    pub(crate) fn start(db: &Path, extra: &[&str]) -> Self {
        let mut child = earmark()
            .args(["serve", "--db", path(db), "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start earmark serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("serve stopped before listening")
                .expect("read");
            if let Some((_, url)) = line.split_once("listening on ") {
                break url.trim().to_owned();
            }
        };
        // Keep draining the log so the server never blocks on it.
        std::thread::spawn(move || lines.for_each(drop));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self { child, url, agent }
    }

    pub(crate) fn get(&self, route: &str, key: Option<&str>) -> (u16, String) {
        let mut request = self.agent.get(format!("{}{route}", self.url));
        if let Some(k) = key {
            request = request.header("Authorization", &format!("Bearer {k}"));
        }
        answer(request.call(), route)
    }

    pub(crate) fn post(
        &self,
        route: &str,
        key: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let mut request = self
            .agent
            .post(format!("{}{route}", self.url))
            .header("Content-Type", content_type);
        if let Some(k) = key {
            request = request.header("Authorization", &format!("Bearer {k}"));
        }
        answer(request.send(body), route)
    }
}

impl Server {
    /// Announces a body of `bytes` and reads the answer without sending it:
    /// a server that reads an oversized body before refusing it would hang.
    fn announce_body(&self, route: &str, key: &str, bytes: usize) -> (u16, String) {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "POST {route} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: audio/wav\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    route: &str,
) -> (u16, String) {
    let mut response = response.unwrap_or_else(|e| panic!("{route}: {e}"));
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}

pub(crate) fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The error code of an error answer.
pub(crate) fn code(text: &str) -> String {
    json(text)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A multipart form with an `audio` file part and text fields.
pub(crate) fn form(audio: &[u8], fields: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "earmark-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"clip.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Keys of each role; the monitor key is for event `show-a` only.
struct Keys {
    admin: String,
    lookup: String,
    monitor: String,
}

pub(crate) fn add_key(db: &Path, role: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "keys",
        "add",
        "--db",
        path(db),
        "--role",
        role,
        "--name",
        role,
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_owned()
}

/// Three indexed songs with rights (song0 managed, song1 not, song2 none),
/// a blanket licence for event `show-a`, and a key of each role.
fn service_fixture() -> (Fixture, Keys) {
    let fx = Fixture::songs(3, 30.0);
    fx.index();
    fx.license(
        "id,managed,isrc\nsong0,yes,CNE012600001\nsong1,no,\n",
        r#"{"id": "L1", "kind": "blanket", "licensee": "L", "event": "show-a",
            "from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}"#,
    );
    let keys = Keys {
        admin: add_key(&fx.db(), "admin", &[]),
        lookup: add_key(&fx.db(), "lookup", &[]),
        monitor: add_key(&fx.db(), "monitor", &["--event", "show-a"]),
    };
    (fx, keys)
}

/// A monitor's log of a show playing song0 then song1 (20 s each).
fn monitor_log(fx: &Fixture, upload: &[&str]) -> std::path::PathBuf {
    let show: Vec<f32> = [
        &fx.songs[0].1[..20 * RATE as usize],
        &fx.songs[1].1[..20 * RATE as usize],
    ]
    .into_iter()
    .flat_map(|s| s.iter().copied())
    .collect();
    let recording = fx.dir.path().join("show.wav");
    write_wav(&recording, RATE, 1, &show).expect("write");
    let log = fx.dir.path().join("show.jsonl");
    let db = fx.db();
    let mut args = vec![
        "monitor",
        "--plain",
        "--event",
        "show-a",
        "--db",
        path(&db),
        "--log",
        path(&log),
        "--input",
        path(&recording),
    ];
    args.extend_from_slice(upload);
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    log
}

fn track_ids(report: &Value) -> Vec<String> {
    report["cues"]
        .as_array()
        .expect("cues")
        .iter()
        .filter(|c| c["kind"] == "play")
        .map(|c| c["track_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn every_route_answers_each_role_and_refuses_what_it_may_not_do() {
    let (fx, keys) = service_fixture();
    let server = Server::start(&fx.db(), &["--max-body-mb", "4", "--max-clip-s", "20"]);
    let (admin, lookup, monitor) = (
        Some(keys.admin.as_str()),
        Some(keys.lookup.as_str()),
        Some(keys.monitor.as_str()),
    );
    let clip = std::fs::read(fx.clip(1, 5.0, 10.0, Some(10.0))).expect("clip");
    let wav = "audio/wav";

    // Public routes.
    let (status, body) = server.get("/healthz", None);
    assert_eq!((status, json(&body)["tracks"].as_u64()), (200, Some(3)));
    let (status, body) = server.get("/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(json(&body)["openapi"], "3.1.0");

    // Identify: the lookup and admin roles; raw body or multipart.
    for key in [lookup, admin] {
        let (status, body) = server.post("/v1/identify", key, wav, &clip);
        assert_eq!(status, 200, "{body}");
        assert_eq!(json(&body)["match"]["track_id"], "song1", "{body}");
        let offset = json(&body)["match"]["offset_s"].as_f64().expect("offset");
        assert!((offset - 5.0).abs() < 0.1, "{body}");
    }
    let (content_type, multipart) = form(&clip, &[]);
    let (status, body) = server.post("/v1/identify", lookup, &content_type, &multipart);
    assert_eq!(
        (status, json(&body)["match"]["track_id"].clone()),
        (200, "song1".into())
    );
    let silence = fx.dir.path().join("silence.wav");
    write_wav(&silence, RATE, 1, &vec![0.0; 5 * RATE as usize]).expect("write");
    let (status, body) = server.post(
        "/v1/identify",
        lookup,
        wav,
        &std::fs::read(&silence).expect("read"),
    );
    assert_eq!((status, json(&body)["match"].clone()), (200, Value::Null));

    // Refusals: no key, a made-up key, the wrong role.
    let (status, body) = server.post("/v1/identify", None, wav, &clip);
    assert_eq!((status, code(&body)), (401, "unauthorized".into()));
    let (status, body) = server.post("/v1/identify", Some("em_00000000_ffff"), wav, &clip);
    assert_eq!((status, code(&body)), (401, "unauthorized".into()));
    let (status, body) = server.post("/v1/identify", monitor, wav, &clip);
    assert_eq!((status, code(&body)), (403, "forbidden".into()));

    // Bad bodies: not audio, truncated audio, too big, too long.
    let (status, body) = server.post("/v1/identify", lookup, wav, b"this is not audio");
    assert_eq!((status, code(&body)), (422, "bad_audio".into()), "{body}");
    let (status, body) = server.post("/v1/identify", lookup, wav, &clip[..30]);
    assert_eq!((status, code(&body)), (422, "bad_audio".into()), "{body}");
    let (status, body) = server.announce_body("/v1/identify", &keys.lookup, 5 << 20);
    assert_eq!((status, code(&body)), (413, "too_large".into()), "{body}");
    let long = std::fs::read(fx.clip(0, 0.0, 25.0, None)).expect("clip");
    let (status, body) = server.post("/v1/identify", lookup, wav, &long);
    assert_eq!((status, code(&body)), (413, "too_long".into()), "{body}");

    // Tracks and search.
    let (status, body) = server.get("/v1/tracks/song0", lookup);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["rights"]["managed"], true);
    let (status, body) = server.get("/v1/tracks/nothing", lookup);
    assert_eq!((status, code(&body)), (404, "not_found".into()));
    let (_, body) = server.get("/v1/tracks?q=SONG2", lookup);
    assert_eq!(json(&body)["total"], 1);
    let (_, body) = server.get("/v1/tracks?isrc=CN-E01-26-00001", lookup);
    assert_eq!(json(&body)["tracks"][0]["id"], "song0", "{body}");
    let (status, _) = server.get("/v1/tracks?limit=many", lookup);
    assert_eq!(status, 400);
    let (status, _) = server.get("/v1/tracks", monitor);
    assert_eq!(status, 403);

    // Coverage: by track id or ISRC, by event or licence, with a time.
    let ask = |query: &str| {
        let (status, body) =
            server.post("/v1/coverage", lookup, "application/json", query.as_bytes());
        assert_eq!(status, 200, "{query}: {body}");
        let d = &json(&body)["decision"];
        (
            d["coverage"].as_str().unwrap_or("").to_owned(),
            d["reason"].as_str().unwrap_or("").to_owned(),
        )
    };
    let at = r#""start": "2026-11-28T19:00:00+08:00""#;
    assert_eq!(
        ask(&format!(
            r#"{{"track_id": "song0", "event": "show-a", {at}}}"#
        )),
        ("covered".into(), "".into())
    );
    assert_eq!(
        ask(&format!(
            r#"{{"isrc": "CNE012600001", "licence": "L1", {at}}}"#
        )),
        ("covered".into(), "".into())
    );
    assert_eq!(
        ask(r#"{"track_id": "song0", "event": "show-a", "start": "2028-01-01T00:00:00Z"}"#),
        ("not_covered".into(), "outside_period".into())
    );
    assert_eq!(
        ask(r#"{"track_id": "song1", "event": "show-a"}"#),
        ("not_covered".into(), "not_in_repertoire".into())
    );
    assert_eq!(
        ask(r#"{"track_id": "song2", "event": "show-a"}"#),
        ("needs_review".into(), "no_rights_metadata".into())
    );
    assert_eq!(
        ask(r#"{"track_id": "song0", "event": "other"}"#),
        ("not_covered".into(), "no_licence".into())
    );
    for (query, want) in [
        (r#"{"track_id": "song0"}"#, 400),
        (r#"{"track_id": "nothing", "event": "show-a"}"#, 404),
        (r#"{"track_id": "song0", "licence": "L9"}"#, 404),
        (
            r#"{"track_id": "song0", "event": "show-a", "start": "yesterday"}"#,
            400,
        ),
        ("not json", 400),
        (
            r#"{"track_id": "song0", "event": "show-a", "start": "2026-11-28T20:00:00Z",
                "end": "2026-11-28T19:00:00Z"}"#,
            400,
        ),
    ] {
        let (status, body) =
            server.post("/v1/coverage", lookup, "application/json", query.as_bytes());
        assert_eq!(status, want, "{query}: {body}");
        assert!(!code(&body).is_empty(), "{body}");
    }

    // Plays: the monitor key of the event uploads, twice, stored once.
    let log = std::fs::read(monitor_log(&fx, &[])).expect("log");
    let route = "/v1/events/show-a/plays?source=laptop-1";
    let (status, body) = server.post(route, monitor, "application/x-ndjson", &log);
    assert_eq!(status, 200, "{body}");
    let stored = json(&body)["stored"].as_u64().expect("stored");
    assert!(stored >= 2, "{body}");
    let (_, body) = server.post(route, monitor, "application/x-ndjson", &log);
    assert_eq!(json(&body)["stored"], 0, "{body}");
    let (status, _) = server.post(
        "/v1/events/show-b/plays?source=x",
        monitor,
        "application/x-ndjson",
        &log,
    );
    assert_eq!(status, 403);
    let (status, _) = server.post(route, lookup, "application/x-ndjson", &log);
    assert_eq!(status, 403);
    let (status, body) = server.post(
        route,
        monitor,
        "application/x-ndjson",
        b"{\"event\": \"nonsense\"}\n",
    );
    assert_eq!((status, code(&body)), (400, "bad_request".into()));
    let (status, _) = server.post(
        "/v1/events/show-a/plays",
        monitor,
        "application/x-ndjson",
        &log,
    );
    assert_eq!(status, 400, "a source is required");
    let (status, _) = server.post(
        "/v1/events/..%2Fetc/plays?source=x",
        admin,
        "application/x-ndjson",
        &log,
    );
    assert_eq!(status, 400, "event ids cannot name other files");

    // Reports in each format, for the roles that may read them.
    let (status, body) = server.get("/v1/events/show-a/report", lookup);
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    assert_eq!(track_ids(&report), ["song0", "song1"]);
    assert_eq!(report["cues"][0]["coverage"], "covered");
    assert_eq!(report["cues"][1]["reason"], "not_in_repertoire");
    let (status, body) = server.get("/v1/events/show-a/report?format=csv", monitor);
    assert_eq!(status, 200);
    assert!(body.starts_with("kind,number,start,end"), "{body}");
    let (status, body) = server.get("/v1/events/show-a/report?format=html", admin);
    assert!(status == 200 && body.contains("<html"), "{status}");
    let (status, _) = server.get("/v1/events/show-a/report?format=pdf", lookup);
    assert_eq!(status, 400);
    let (status, _) = server.get("/v1/events/empty/report", lookup);
    assert_eq!(status, 404);

    // Adding a track: admin only, searchable at once, never twice.
    let other = Fixture::songs_from(50, 1, 15.0);
    let new_song = std::fs::read(&other.songs[0].0).expect("song");
    let (content_type, multipart) = form(&new_song, &[("id", "new1"), ("title", "New one")]);
    let (status, _) = server.post("/v1/tracks", lookup, &content_type, &multipart);
    assert_eq!(status, 403);
    let (status, body) = server.post("/v1/tracks", admin, &content_type, &multipart);
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["title"], "New one");
    let new_clip = std::fs::read(other.clip(0, 4.0, 10.0, None)).expect("clip");
    let (_, body) = server.post("/v1/identify", lookup, wav, &new_clip);
    assert_eq!(json(&body)["match"]["track_id"], "new1", "{body}");
    let (status, body) = server.post("/v1/tracks", admin, &content_type, &multipart);
    assert_eq!((status, code(&body)), (409, "exists".into()));
    let (status, body) = server.post("/v1/tracks?id=bad", admin, wav, b"not audio at all");
    assert_eq!((status, code(&body)), (422, "bad_audio".into()));
    let route = "/v1/tracks?id=..%2Fx%0Ay%22";
    let (status, body) = server.post(route, admin, wav, &new_clip);
    assert_eq!((status, code(&body)), (400, "bad_request".into()), "{body}");

    // Metrics count what happened.
    let (status, metrics) = server.get("/metrics", None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("earmark_identifications_total{result=\"match\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/identify\""), "{metrics}");
    assert!(metrics.contains("earmark_index_tracks 4"), "{metrics}");
}

/// Every operation of the OpenAPI document reaches a route (not the
/// fallback's "no such route", not a wrong method), and paths that are not
/// in it do not.
#[test]
fn the_openapi_document_matches_the_routes() {
    let (fx, keys) = service_fixture();
    let server = Server::start(&fx.db(), &[]);
    let (_, doc) = server.get("/openapi.json", None);
    let doc = json(&doc);
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (route, methods) in paths {
        let route = route.replace("{id}", "x");
        for method in methods.as_object().expect("methods").keys() {
            let (status, body) = match method.as_str() {
                "get" => server.get(&route, Some(&keys.admin)),
                "post" => server.post(&route, Some(&keys.admin), "application/json", b"{}"),
                other => panic!("{other} is not a method the API uses"),
            };
            assert_ne!(status, 405, "{method} {route}: {body}");
            assert!(
                !(status == 404 && body.contains("no such route")),
                "{method} {route} is documented but not routed"
            );
            for (code, _) in methods[method]["responses"].as_object().expect("responses") {
                assert!(code.parse::<u16>().is_ok(), "{method} {route}: {code}");
            }
            operations += 1;
        }
    }
    assert_eq!(operations, 10, "the API has ten operations");
    // And every operation the router declares is documented: its source,
    // one `.route(path, method(handler)...)` a line, read as text.
    let declared: std::collections::BTreeSet<(String, String)> =
        include_str!("../../src/serve/mod.rs")
            .lines()
            .filter_map(|line| line.trim().strip_prefix(".route(\""))
            .filter_map(|rest| rest.split_once('"'))
            .flat_map(|(route, handlers)| {
                ["get", "post", "put", "patch", "delete"]
                    .into_iter()
                    .filter(move |m| {
                        handlers.contains(&format!(" {m}(")) || handlers.contains(&format!(".{m}("))
                    })
                    .map(move |m| (route.to_owned(), m.to_owned()))
            })
            .collect();
    let documented: std::collections::BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(route, methods)| {
            let methods = methods.as_object().expect("methods").keys();
            methods.map(move |m| (route.clone(), m.clone()))
        })
        .collect();
    assert_eq!(
        declared, documented,
        "routed operations against documented ones"
    );
    let (status, body) = server.get("/v1/nothing", Some(&keys.admin));
    assert_eq!((status, code(&body)), (404, "not_found".into()));
    assert!(body.contains("no such route"));
    let (status, body) = server.post("/healthz", None, "application/json", b"{}");
    assert_eq!((status, code(&body)), (405, "method_not_allowed".into()));
}

#[test]
fn tracks_added_while_identify_requests_run_never_disturb_them() {
    let (fx, keys) = service_fixture();
    let server = Server::start(&fx.db(), &[]);
    let clip = std::fs::read(fx.clip(2, 3.0, 8.0, None)).expect("clip");
    let more = Fixture::songs_from(60, 3, 20.0);
    let answers = std::thread::scope(|scope| {
        // One asker: the live monitor test shares these two cores in CI.
        let asking: Vec<_> = (0..1)
            .map(|_| {
                scope.spawn(|| {
                    let mut answers = Vec::new();
                    let until = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < until {
                        answers.push(server.post(
                            "/v1/identify",
                            Some(&keys.lookup),
                            "audio/wav",
                            &clip,
                        ));
                    }
                    answers
                })
            })
            .collect();
        for (i, (song, _)) in more.songs.iter().enumerate() {
            let route = format!("/v1/tracks?id=more{i}");
            let bytes = std::fs::read(song).expect("song");
            let (status, body) = server.post(&route, Some(&keys.admin), "audio/wav", &bytes);
            assert_eq!(status, 201, "{body}");
        }
        asking
            .into_iter()
            .flat_map(|t| t.join().expect("asker"))
            .collect::<Vec<_>>()
    });
    assert!(answers.len() >= 10, "only {} answers", answers.len());
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(json(body)["match"]["track_id"], "song2", "{body}");
    }
    for i in 0..3 {
        let clip = std::fs::read(more.clip(i, 5.0, 8.0, None)).expect("clip");
        let (_, body) = server.post("/v1/identify", Some(&keys.lookup), "audio/wav", &clip);
        assert_eq!(
            json(&body)["match"]["track_id"],
            format!("more{i}"),
            "{body}"
        );
    }
    let (_, body) = server.get("/healthz", None);
    assert_eq!(json(&body)["tracks"], 6);
}

/// Plays uploaded before a crash are there after a restart; a monitor's
/// plays wait in its log while the service is away and are sent once.
#[test]
fn uploaded_plays_survive_a_restart_and_queued_plays_are_sent_once() {
    let (fx, keys) = service_fixture();
    // No service yet: the monitor logs its plays and keeps them queued.
    let unreachable = "http://127.0.0.1:9";
    let log = monitor_log(&fx, &["--upload", unreachable, "--api-key", &keys.monitor]);
    let upload_log = |server: &Server, log: &std::path::Path| {
        let out = run(&[
            "upload",
            "--log",
            path(log),
            "--upload",
            &server.url,
            "--api-key",
            &keys.monitor,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let upload = |server: &Server| upload_log(server, &log);
    let server = Server::start(&fx.db(), &[]);
    let first = upload(&server);
    assert!(!first.contains(" 0 stored"), "{first}");
    assert!(
        upload(&server).contains("uploaded 0 bytes"),
        "nothing left to send"
    );
    let (_, before) = server.get("/v1/events/show-a/report?format=csv", Some(&keys.lookup));
    drop(server); // killed, not stopped

    let server = Server::start(&fx.db(), &[]);
    let (status, after) = server.get("/v1/events/show-a/report?format=csv", Some(&keys.lookup));
    assert_eq!(status, 200);
    assert_eq!(before, after);
    assert_eq!(
        after.lines().filter(|l| l.starts_with("play,")).count(),
        2,
        "{after}"
    );
    // Sending the whole log again (a lost cursor) stores nothing new.
    std::fs::remove_file(format!("{}.upload", log.display())).expect("cursor");
    assert!(upload(&server).contains(" 0 stored"));
    let (_, again) = server.get("/v1/events/show-a/report?format=csv", Some(&keys.lookup));
    assert_eq!(after, again);
    // So does a copy of the log under another name (a backup, another host).
    let copy = log.with_file_name("backup.jsonl");
    std::fs::copy(&log, &copy).expect("copy");
    assert!(upload_log(&server, &copy).contains(" 0 stored"));

    // A monitor pointed at the running service uploads as it goes.
    std::fs::remove_file(&log).expect("log");
    std::fs::remove_file(format!("{}.upload", log.display())).expect("cursor");
    monitor_log(&fx, &["--upload", &server.url, "--api-key", &keys.monitor]);
    let (_, body) = server.get("/v1/events/show-a/report", Some(&keys.lookup));
    assert_eq!(
        track_ids(&json(&body)),
        ["song0", "song0", "song1", "song1"],
        "two logs, two sources"
    );
}

#[test]
fn a_revoked_key_is_refused_by_the_running_server() {
    let (fx, keys) = service_fixture();
    let server = Server::start(&fx.db(), &[]);
    let (status, _) = server.get("/v1/tracks/song0", Some(&keys.lookup));
    assert_eq!(status, 200);
    let out = run(&["keys", "list", "--db", path(&fx.db()), "--json"]);
    let id = stdout(&out)
        .lines()
        .map(json)
        .find(|k| k["role"] == "lookup")
        .and_then(|k| k["id"].as_str().map(str::to_owned))
        .expect("the lookup key");
    assert!(
        !stdout(&out).contains("hash"),
        "secrets' hashes stay in the file"
    );
    let out = run(&["keys", "revoke", "--db", path(&fx.db()), &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = server.get("/v1/tracks/song0", Some(&keys.lookup));
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < until,
            "still accepted 5 s after revocation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, _) = server.get("/v1/tracks/song0", Some(&keys.admin));
    assert_eq!(status, 200);
}
