//! Hostile model names, sent by each provider to a real HTTP server on loopback, which records the
//! path and query it actually received: a name never adds a path segment, a query parameter, a
//! fragment or another method to the URL. Names no vendor could know are refused before anything
//! is sent, as invalid requests that neither fall over nor count against a breaker.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw_core::{ErrorKind, Provider};
use exoclaw_providers::router::{RetryPolicy, Router, Routes};
use exoclaw_providers::{Anthropic, Gemini, OpenAiCompatible, ProviderOptions, presets};
use exoclaw_testkit::conformance::{drain, text_of};
use exoclaw_testkit::fixtures::{AnthropicWire, GeminiWire, OpenAiWire, WireFixtures};
use exoclaw_testkit::provider::ScriptedProvider;
use exoclaw_testkit::server::{Reply, ScriptedServer};
use exoclaw_types::{ChatRequest, Message};
use std::sync::Arc;

/// The example: a query that would replace the method's parameters and carry a key.
const QUERY: &str = "x?alt=sse&key=ATTACKER#";
/// The other example: a climb out of `models/` to another path on the vendor's host.
const CLIMB: &str = "../../../evil";
/// A header injection attempt, and an escape sequence for the operator's terminal.
const CONTROL: [&str; 2] = ["x\r\nHost: evil.example", "x\u{1b}[2J"];

fn request(model: &str) -> ChatRequest {
    ChatRequest::new(model, vec![Message::user("hi")])
}

fn options(server: &ScriptedServer, path: &str) -> ProviderOptions {
    ProviderOptions::default().base_url(format!("{}{path}", server.url())).api_key("k")
}

/// Asserts `model` is refused as an invalid request naming it, without a request being sent.
async fn refused(provider: &dyn Provider, server: &ScriptedServer, model: &str, why: &str) {
    let sent = server.requests().len();
    let err = provider.complete(request(model)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{model:?}: {err}");
    assert!(
        err.message.contains("the model name") && err.message.contains(why),
        "{model:?}: {}",
        err.message
    );
    let err = provider.stream(request(model)).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{model:?}: {err}");
    assert_eq!(server.requests().len(), sent, "{model:?} reached the server");
}

#[tokio::test]
async fn gemini_encodes_a_name_into_one_path_segment_and_refuses_climbing_out() {
    let (whole, _) = GeminiWire.text_response();
    let (chunks, _) = GeminiWire.text_stream();
    let server = ScriptedServer::start([
        Reply::json(200, &whole),
        Reply::sse(chunks.clone()),
        Reply::json(200, &whole),
        Reply::sse(chunks),
    ])
    .await;
    let gemini = Gemini::new(options(&server, "/v1beta").name("gem")).unwrap();

    let answer = gemini.complete(request(QUERY)).await.unwrap();
    assert_eq!(answer.message.text(), "Hello, world!");
    let (events, err) = drain(gemini.stream(request(QUERY)).await.unwrap()).await;
    assert!(err.is_none() && text_of(&events) == "Hello, world!", "{err:?}");
    // The API's own resource-name form is still accepted, prefix and all.
    gemini.complete(request("models/gemini-2.5-flash")).await.unwrap();
    let (_, err) = drain(gemini.stream(request("models/gemini-2.5-flash")).await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");

    let seen: Vec<(String, Option<String>)> =
        server.requests().into_iter().map(|r| (r.path, r.query)).collect();
    let hostile = "/v1beta/models/x%3Falt%3Dsse%26key%3DATTACKER%23";
    assert_eq!(
        seen,
        [
            (format!("{hostile}:generateContent"), None),
            (format!("{hostile}:streamGenerateContent"), Some("alt=sse".to_owned())),
            ("/v1beta/models/gemini-2.5-flash:generateContent".to_owned(), None),
            ("/v1beta/models/gemini-2.5-flash:streamGenerateContent".to_owned(), Some("alt=sse".to_owned())),
        ],
        "the name stays inside its segment: no `key` parameter, no fragment"
    );

    refused(&gemini, &server, CLIMB, "`/`").await;
    refused(&gemini, &server, "models/../../evil", "`/`").await;
    refused(&gemini, &server, "..", "relative path segment").await;
    refused(&gemini, &server, "", "empty").await;
    for name in CONTROL {
        refused(&gemini, &server, name, "control characters").await;
    }
}

#[tokio::test]
async fn anthropic_sends_any_name_in_the_body_only() {
    let (whole, _) = AnthropicWire.text_response();
    let server = ScriptedServer::start([Reply::json(200, &whole), Reply::json(200, &whole)]).await;
    let anthropic = Anthropic::new(options(&server, "")).unwrap();
    for name in [QUERY, CLIMB] {
        anthropic.complete(request(name)).await.unwrap();
    }
    for (recorded, name) in server.requests().iter().zip([QUERY, CLIMB]) {
        assert_eq!((recorded.path.as_str(), recorded.query.as_deref()), ("/v1/messages", None));
        assert_eq!(recorded.body["model"], name, "the name reaches the vendor verbatim, as JSON");
    }
    refused(&anthropic, &server, "", "empty").await;
    for name in CONTROL {
        refused(&anthropic, &server, name, "control characters").await;
    }
}

#[tokio::test]
async fn every_openai_compatible_preset_sends_any_name_in_the_body_only() {
    let (whole, _) = OpenAiWire.text_response();
    for preset in presets::PRESETS {
        let server = ScriptedServer::start([Reply::json(200, &whole), Reply::json(200, &whole)]).await;
        let provider = OpenAiCompatible::new(preset, options(&server, "/v1")).unwrap();
        for name in [QUERY, CLIMB] {
            provider.complete(request(name)).await.unwrap();
        }
        for (recorded, name) in server.requests().iter().zip([QUERY, CLIMB]) {
            assert_eq!(
                (recorded.path.as_str(), recorded.query.as_deref()),
                ("/v1/chat/completions", None),
                "{}",
                preset.name
            );
            assert_eq!(recorded.body["model"], name, "{}", preset.name);
        }
        refused(&provider, &server, "", "empty").await;
        for name in CONTROL {
            refused(&provider, &server, name, "control characters").await;
        }
    }
}

#[tokio::test]
async fn through_the_router_a_refused_name_neither_falls_over_nor_counts_against_the_breaker() {
    let server = ScriptedServer::start([]).await;
    let gemini: Arc<dyn Provider> = Arc::new(Gemini::new(options(&server, "/v1beta").name("gem")).unwrap());
    let backup = Arc::new(ScriptedProvider::new("backup", []));
    let builder = Router::builder("router")
        .retry(RetryPolicy::default())
        .breaker(1, std::time::Duration::from_secs(30))
        .provider(gemini, false)
        .provider(backup.clone(), false);
    let routes = Routes::new(builder.provider_names()).rule("*", "gem").unwrap();
    let router = builder.build(routes.fallbacks("*", &["backup/b"]).unwrap());
    for _ in 0..5 {
        // Routed by the rule `*`, whose fallback is `backup/b`.
        let err = router.complete(request(CLIMB)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
    }
    assert!(server.requests().is_empty());
    assert_eq!(backup.calls(), 0, "a malformed name is not sent elsewhere either");
    let gem = router.status().into_iter().find(|s| s.name == "gem").unwrap();
    assert_eq!((gem.state.as_str(), gem.failures), ("closed", 0), "{gem:?}");
}
