//! A sharded cluster on NATS, started and stopped here: nats-server with
//! JetStream, 3 shards x 2 replicas and a gateway, each its own process. The
//! gateway answers as one node would, keeps answering when a replica of
//! every shard dies, says which shards are missing when none is left, and
//! grows the catalog through JetStream. A scan job whose worker is killed
//! completes on another worker, its result stored once.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::{Server, add_key, code, form, json};
use crate::util::{Fixture, earmark, path, run, stderr};

const SHARDS: u32 = 3;

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nats-server with JetStream on a free port, its store in `dir`.
fn nats_server(dir: &Path) -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
            dir.join("jetstream").display()
        ),
    )
    .expect("write nats.conf");
    let child = Command::new("nats-server")
        .args(["-c", path(&config)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (scripts/setup.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Process(child), format!("nats://127.0.0.1:{port}"))
}

/// A shard replica serving `db`, returned once it listens on NATS.
fn replica(db: &Path, shard: u32, name: &str, nats: &str) -> Process {
    let mut child = earmark()
        .args(["serve", "--db", path(db), "--nats", nats, "--replica", name])
        .args(["--shard", &format!("{shard}/{SHARDS}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a shard");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines.next().expect("shard stopped").expect("read");
        if line.contains("replica") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Process(child)
}

fn identify(server: &Server, key: &str, clip: &[u8]) -> (u16, Value) {
    let (status, body) = server.post("/v1/identify", Some(key), "audio/wav", clip);
    (status, json(&body))
}

#[test]
fn a_sharded_cluster_answers_like_one_node_survives_dead_replicas_and_grows() {
    let fx = Fixture::songs(8, 30.0);
    fx.index();
    let dir = fx.dir.path();
    let mut replicas = Vec::new();
    let (_nats, nats) = nats_server(dir);
    for (k, db) in (1..).zip(index_shards(&fx, dir)) {
        for r in ["a", "b"] {
            let copy = dir.join(format!("shard{k}{r}"));
            copy_dir(&db, &copy);
            replicas.push(Some(replica(&copy, k, r, &nats)));
        }
    }
    let gateway_db = dir.join("gateway");
    std::fs::create_dir_all(&gateway_db).expect("mkdir");
    let admin = add_key(&gateway_db, "admin", &[]);
    let single_key = add_key(&fx.db(), "lookup", &[]);
    let gateway = Server::start(
        &gateway_db,
        &["--gateway", "--shards", "3", "--nats", &nats],
    );
    let single = Server::start(&fx.db(), &[]);

    // The same answers as one node: clean and noisy clips of every song,
    // and music that is not in the catalog.
    let mut clips: Vec<Vec<u8>> = (0..fx.songs.len())
        .flat_map(|i| [fx.clip(i, 8.0, 8.0, None), fx.clip(i, 15.0, 8.0, Some(0.0))])
        .map(|p| std::fs::read(p).expect("clip"))
        .collect();
    let stranger = Fixture::songs_from(100, 1, 12.0);
    clips.push(std::fs::read(stranger.clip(0, 2.0, 8.0, None)).expect("clip"));
    let mut matched = 0;
    for clip in &clips {
        let (status, one) = identify(&single, &single_key, clip);
        let (status_c, many) = identify(&gateway, &admin, clip);
        assert_eq!((status, status_c), (200, 200), "{many}");
        assert_eq!(
            one["match"], many["match"],
            "gateway and single node differ"
        );
        assert!(many["nats_hop_ms"].as_f64().is_some());
        matched += usize::from(!many["match"].is_null());
    }
    assert!(matched >= fx.songs.len() + 2, "{matched} matches");
    assert!(identify(&gateway, &admin, clips.last().expect("clip")).1["match"].is_null());

    // Tracks are looked up across shards.
    let (status, body) = gateway.get("/v1/tracks/song5", Some(&admin));
    assert_eq!((status, json(&body)["id"].as_str()), (200, Some("song5")));
    let (status, body) = gateway.get("/v1/tracks?q=song", Some(&admin));
    assert_eq!((status, json(&body)["total"].as_u64()), (200, Some(8)));

    // A new recording goes to its shard's replicas through JetStream and is
    // found by the next query; the same one again is refused.
    let newcomer = Fixture::songs_from(200, 1, 30.0);
    let audio = std::fs::read(&newcomer.songs[0].0).expect("song");
    let (content_type, body) = form(&audio, &[("id", "new1"), ("title", "Newcomer")]);
    let (status, answer) = gateway.post("/v1/tracks", Some(&admin), &content_type, &body);
    assert_eq!(status, 201, "{answer}");
    let clip = std::fs::read(newcomer.clip(0, 10.0, 8.0, None)).expect("clip");
    assert_eq!(
        identify(&gateway, &admin, &clip).1["match"]["track_id"],
        "new1"
    );
    let (status, answer) = gateway.post("/v1/tracks", Some(&admin), &content_type, &body);
    assert_eq!((status, code(&answer)), (409, "exists".to_owned()));

    // Steady load while one replica of every shard is killed: no request
    // fails.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, url, key, clips) = (
            Arc::clone(&stop),
            gateway.url.clone(),
            admin.clone(),
            clips.clone(),
        );
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let mut statuses = Vec::new();
            for clip in clips.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let response = agent
                    .post(format!("{url}/v1/identify"))
                    .header("Authorization", &format!("Bearer {key}"))
                    .send(clip.as_slice());
                statuses.push(response.map_or(0, |r| r.status().as_u16()));
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for k in 0..SHARDS as usize {
        replicas[2 * k] = None;
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let statuses = load.join().expect("load");
    assert!(statuses.len() >= 10, "{} requests", statuses.len());
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    // The surviving replicas indexed the new recording too.
    assert_eq!(
        identify(&gateway, &admin, &clip).1["match"]["track_id"],
        "new1"
    );

    // With no replica of shard 2 left, the answer names it.
    replicas[3] = None;
    let (status, answer) = identify(&gateway, &admin, &clips[0]);
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "shards_unavailable");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("shard 2 "), "{message}");
}

/// Indexes `fx`'s songs as the shards of a cluster in `dir`; their
/// directories.
fn index_shards(fx: &Fixture, dir: &Path) -> Vec<PathBuf> {
    (1..=SHARDS)
        .map(|k| {
            let db = dir.join(format!("shard{k}"));
            let (shard, music) = (format!("{k}/{SHARDS}"), fx.music());
            let out = run(&[
                "index",
                "add",
                "--db",
                path(&db),
                "--shard",
                &shard,
                path(&music),
            ]);
            assert!(out.status.success(), "{}", stderr(&out));
            db
        })
        .collect()
}

/// `earmark worker` named `name`, its log lines sent to `lines`.
fn worker(name: &str, nats: &str, lines: std::sync::mpsc::Sender<String>) -> Process {
    let mut child = earmark()
        .args(["worker", "--nats", nats, "--shards", "3", "--name", name])
        .args(["--ack-wait-s", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker");
    let log = BufReader::new(child.stderr.take().expect("stderr"));
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    Process(child)
}

/// Waits for a log line containing `what`.
fn wait_for(lines: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no {what:?} in the log"));
        if line.contains(what) {
            return line;
        }
    }
}

#[test]
fn a_scan_job_whose_worker_dies_completes_on_another_and_is_stored_once() {
    let fx = Fixture::songs(4, 30.0);
    let dir = fx.dir.path();
    let (_nats, nats) = nats_server(dir);
    let _replicas: Vec<Process> = (1..)
        .zip(index_shards(&fx, dir))
        .map(|(k, db)| replica(&db, k, "a", &nats))
        .collect();
    // Eight minutes: the four songs, four times over.
    let show: Vec<f32> = (0..4)
        .flat_map(|_| fx.songs.iter().flat_map(|(_, s)| s.iter().copied()))
        .collect();
    let recording = dir.join("show.wav");
    earmark_engine::testutil::write_wav(&recording, crate::util::RATE, 1, &show).expect("write");
    let out_dir = dir.join("out");

    let (first_log, first) = std::sync::mpsc::channel();
    let doomed = worker("first", &nats, first_log);
    wait_for(&first, "waiting for jobs");
    let scan = earmark()
        .args([
            "scan",
            "--cluster",
            &nats,
            "--json",
            "--out",
            path(&out_dir),
        ])
        .arg(&recording)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scan --cluster");
    wait_for(&first, "scanning");
    drop(doomed); // SIGKILL, mid-recording
    let (second_log, second) = std::sync::mpsc::channel();
    let _survivor = worker("second", &nats, second_log);
    let stored = wait_for(&second, "stored");
    assert!(stored.contains("show.wav"), "{stored}");

    let out = scan.wait_with_output().expect("scan --cluster");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json)
        .collect();
    let plays: Vec<&str> = (lines.iter())
        .filter_map(|l| l["track_id"].as_str())
        .collect();
    assert!(plays.len() >= 12, "{plays:?}");
    assert!(plays.iter().all(|t| t.starts_with("song")), "{plays:?}");
    // The first worker never stored it; the second stored it once.
    assert!(first.try_iter().all(|l| !l.contains("stored")));
    assert!(second.try_iter().all(|l| !l.contains("stored")));
    let manifest = std::fs::read_to_string(out_dir.join("manifest.jsonl")).expect("manifest");
    assert_eq!(manifest.lines().count(), 1);

    // Scanned again: the manifest says it is done.
    let again = run(&[
        "scan",
        "--cluster",
        &nats,
        "--out",
        path(&out_dir),
        path(&recording),
    ]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("1 already scanned"),
        "{}",
        stderr(&again)
    );
}

/// Copies a catalog directory (its files; catalogs have no subfolders).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read catalog") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}
