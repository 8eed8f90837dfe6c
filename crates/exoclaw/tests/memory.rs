//! Layered memory through the runtime, against a scripted model and a real SQLite store: recall
//! across a long conversation within the budget, facts that change, and archival that survives
//! a SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use exoclaw::exoclaw_core::{AgentRuntime, FactStore, SessionStore, SummaryStore, Target, TurnInput};
use exoclaw::exoclaw_types::{ChatRequest, Role, SessionId};
use exoclaw::{Config, Runtime};
use exoclaw_memory::archive::SUMMARY_PROMPT;
use exoclaw_memory::facts::EXTRACTION_PROMPT;
use exoclaw_memory::{Estimate, LOCAL_OWNER, TokenCounter};
use exoclaw_testkit::provider::{Outcome, RespondingProvider};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Summaries say nothing specific, so that what is recalled comes from search; fact extraction
/// answers `facts`; chat turns answer "Noted.".
fn model(facts: &'static str) -> Arc<RespondingProvider> {
    Arc::new(RespondingProvider::new("script", move |request| match request.system.as_deref() {
        Some(SUMMARY_PROMPT) => Outcome::Text("The user has been chatting about everyday topics.".into()),
        Some(EXTRACTION_PROMPT) => Outcome::Text(facts.into()),
        _ => Outcome::Text("Noted.".into()),
    }))
}

fn chat_requests(provider: &RespondingProvider) -> Vec<ChatRequest> {
    let internal = [Some(SUMMARY_PROMPT), Some(EXTRACTION_PROMPT)];
    provider.requests().into_iter().filter(|r| !internal.contains(&r.system.as_deref())).collect()
}

async fn runtime(db: &Path, memory: &str, provider: Arc<RespondingProvider>) -> Runtime {
    let toml = format!("model = \"script/m\"\n[memory]\n{memory}\n");
    let config = Config::parse(&toml, Path::new("test.toml")).unwrap();
    let store = exoclaw::exoclaw_store::Store::open(&db.display().to_string()).await.unwrap();
    Runtime::builder().config(config).store(store).provider(provider).build().await.unwrap()
}

async fn say(runtime: &Runtime, session: SessionId, text: &str) {
    let report =
        runtime.submit(Target::Session(session), TurnInput::message(text)).unwrap().report().await.unwrap();
    assert_eq!(report.error, None);
    // The after-turn work (indexing, facts, archival) runs in the background; let it finish so
    // the next turn sees it, as a user typing would.
    assert!(runtime.settle(Duration::from_secs(30)).await);
}

/// Starts a new session with `text`, waiting for the turn's after-turn work; gives the session.
async fn start(runtime: &Runtime, text: &str) -> SessionId {
    let report = runtime
        .submit(Target::New { agent: None }, TurnInput::message(text))
        .unwrap()
        .report()
        .await
        .unwrap();
    assert!(runtime.settle(Duration::from_secs(30)).await);
    report.session_id
}

/// Runs a turn of `text` on `target`; gives its report and the warnings it showed.
async fn warned(
    runtime: &Runtime,
    target: Target,
    text: &str,
) -> (exoclaw::exoclaw_core::TurnReport, Vec<String>) {
    use exoclaw::exoclaw_types::AgentEvent;
    let events = std::sync::Mutex::new(Vec::new());
    let handle = runtime.submit(target, TurnInput::message(text)).unwrap();
    let report = handle.finish(&|e| events.lock().unwrap().push(e)).await.unwrap();
    let warnings = events
        .into_inner()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            AgentEvent::Warning { message } => Some(message),
            _ => None,
        })
        .collect();
    (report, warnings)
}

const TOPICS: &[&str] = &[
    "the best way to water tomatoes in July",
    "how to fix a squeaky door hinge",
    "a good recipe for lentil soup",
    "which running shoes suit flat feet",
    "the rules of cricket in short",
    "how compound interest works",
    "a reading list about the Roman empire",
    "how to repot an orchid",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_from_turn_5_is_in_the_context_at_turn_55_and_every_request_fits_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let runtime = runtime(&dir.path().join("m.db"), "budget = 1200", provider.clone()).await;
    let session = start(&runtime, "Hello there.").await;
    for turn in 2..=60 {
        let text = match turn {
            5 => "By the way, my sister Alice teaches piano in Lisbon.".to_owned(),
            55 => "Remind me: in which city does my sister Alice teach piano?".to_owned(),
            n => format!("Question {n}: tell me about {}.", TOPICS[n % TOPICS.len()]),
        };
        say(&runtime, session, &text).await;
    }

    let requests = chat_requests(&provider);
    assert_eq!(requests.len(), 60);
    for (turn, request) in requests.iter().enumerate() {
        let tokens: usize = request.messages.iter().map(|m| Estimate.message(m)).sum();
        assert!(tokens <= 1200, "turn {}: {tokens} tokens over the 1200 budget", turn + 1);
    }
    let at_55 = &requests[54];
    assert!(at_55.messages.last().unwrap().text().contains("which city"));
    assert!(
        at_55.messages.len() <= 22,
        "only the memory, the 20-message window and the question are sent: {} messages",
        at_55.messages.len()
    );
    let memory = &at_55.messages[0];
    assert_eq!(memory.role, Role::System);
    assert!(memory.text().contains("my sister Alice teaches piano in Lisbon"), "{}", memory.text());
    let store = runtime.store();
    assert_eq!(store.messages(session).await.unwrap().len(), 120, "every message is kept");
    let summary = store.summary(session).await.unwrap().expect("archived");
    assert!(summary.through >= 100, "archival kept up: through {}", summary.through);
}

/// An OpenAI model's turns are counted with its encoding: every request within the budget as
/// `o200k_base` counts it, and more of the conversation sent than the estimate allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gpt_4o_conversation_is_counted_with_o200k_and_every_request_fits_the_budget() {
    use exoclaw_memory::{Encoding, Tiktoken};
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let toml = "model = \"script/gpt-4o\"\n[memory]\nbudget = 1200\nwindow = 200\n";
    let config = Config::parse(toml, Path::new("test.toml")).unwrap();
    let store =
        exoclaw::exoclaw_store::Store::open(&dir.path().join("m.db").display().to_string()).await.unwrap();
    let runtime =
        Runtime::builder().config(config).store(store).provider(provider.clone()).build().await.unwrap();
    // Turns never wait for the encoding's table (they count with the estimate until it is
    // built); this test is about the turns after it is.
    let counters = Arc::clone(runtime.token_counters());
    tokio::task::spawn_blocking(move || counters.exact("script/gpt-4o")).await.unwrap();
    let session = start(&runtime, "Hello there.").await;
    for turn in 2..=60 {
        say(&runtime, session, &format!("Question {turn}: tell me about {}.", TOPICS[turn % TOPICS.len()]))
            .await;
    }
    let o200k = Tiktoken::new(Encoding::O200kBase).unwrap();
    let requests = chat_requests(&provider);
    assert_eq!(requests.len(), 60);
    for (turn, request) in requests.iter().enumerate() {
        let tokens: usize = request.messages.iter().map(|m| o200k.message(m)).sum();
        assert!(tokens <= 1200, "turn {}: {tokens} tokens over the 1200 budget", turn + 1);
    }
    // The estimate would have sent at most this many of the last request's messages.
    let last = &requests[59].messages;
    let mut estimated = 0;
    let mut left = 1200;
    for message in last.iter().rev() {
        match Estimate.message(message) {
            cost if cost <= left => (left, estimated) = (left - cost, estimated + 1),
            _ => break,
        }
    }
    assert!(last.len() > estimated, "{} messages sent; the estimate allows {estimated}", last.len());
}

/// Who paid for a turn besides the budgets (a gateway's virtual key, say): charged every call.
#[derive(Debug, Default)]
struct Purse {
    /// (held, spent) US dollars.
    books: std::sync::Mutex<(f64, f64)>,
}

impl exoclaw::exoclaw_core::Payer for Purse {
    fn reserve(
        &self,
        _priced_as: &str,
        estimate: exoclaw::exoclaw_core::Estimate,
    ) -> Result<exoclaw::exoclaw_core::Hold, exoclaw::exoclaw_core::PayerRefusal> {
        let usd = estimate.usd.unwrap_or(0.0);
        self.books.lock().unwrap().0 += usd;
        Ok(exoclaw::exoclaw_core::Hold { usd })
    }

    fn settle(&self, hold: exoclaw::exoclaw_core::Hold, cost_usd: Option<f64>) {
        let mut books = self.books.lock().unwrap();
        books.0 -= hold.usd;
        books.1 += cost_usd.unwrap_or(0.0);
    }
}

/// Memory's own model calls are metered like the turn's: recorded in the usage ledger for the
/// session and agent they serve, marked with their purpose and priced, counted by the budgets
/// and charged to whoever paid for the turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memorys_summaries_and_facts_are_metered_recorded_and_paid_by_the_turns_payer() {
    use exoclaw::exoclaw_core::{CallScope, UsageStore};
    use exoclaw::exoclaw_types::CallPurpose;
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let memory = "window = 4\nfacts = \"model\"\n\n[prices]\n\"script/*\" = { input = 1.0, output = 2.0 }\n\n\
                  [[budgets]]\nname = \"all\"\nwindow = \"total\"\nmax_tokens = 10_000_000";
    let runtime = runtime(&dir.path().join("m.db"), memory, provider.clone()).await;
    let purse = Arc::new(Purse::default());
    let mut session = None;
    for turn in 1..=4 {
        let target = session.map_or(Target::New { agent: None }, Target::Session);
        let input =
            TurnInput::message(format!("Question {turn}: tell me about {}.", TOPICS[turn % TOPICS.len()]))
                .with_payer(purse.clone());
        let report = runtime.submit(target, input).unwrap().report().await.unwrap();
        assert_eq!(report.error, None);
        session = Some(report.session_id);
        assert!(runtime.settle(Duration::from_secs(30)).await);
    }
    let session = session.unwrap();

    let ledger = runtime.store().usage_since(chrono::DateTime::UNIX_EPOCH).await.unwrap();
    let of = |purpose: CallPurpose| ledger.iter().filter(|r| r.purpose == purpose).collect::<Vec<_>>();
    assert_eq!(of(CallPurpose::Answer).len(), 4);
    assert_eq!(of(CallPurpose::Facts).len(), 4, "one extraction per user message: {ledger:#?}");
    let summaries = of(CallPurpose::Summary);
    assert!(!summaries.is_empty(), "8 messages past a window of 4 were archived: {ledger:#?}");
    let asked = provider.requests();
    let asked_for = |prompt: &str| asked.iter().filter(|r| r.system.as_deref() == Some(prompt)).count();
    assert_eq!(summaries.len(), asked_for(SUMMARY_PROMPT), "every summary call is recorded");
    for record in of(CallPurpose::Summary).into_iter().chain(of(CallPurpose::Facts)) {
        assert_eq!(record.session_id, Some(session));
        assert_eq!(
            (record.agent.as_str(), record.provider.as_str(), record.model.as_str()),
            ("default", "script", "m")
        );
        let usage = &record.usage;
        let usd = (usage.input_tokens.unwrap() as f64 + 2.0 * usage.output_tokens.unwrap() as f64) / 1e6;
        assert!((record.cost_usd.expect("priced") - usd).abs() < 1e-12, "{record:?}");
    }
    // The budget counted every call, memory's included, and the payer paid for all of them.
    let tokens: u64 =
        ledger.iter().map(|r| r.usage.input_tokens.unwrap() + r.usage.output_tokens.unwrap()).sum();
    let status = runtime.metering().budgets.status(&CallScope { session: Some(session), agent: "default" });
    assert_eq!(status[0].spent_tokens, tokens);
    let cost: f64 = ledger.iter().map(|r| r.cost_usd.unwrap()).sum();
    let (held, spent) = *purse.books.lock().unwrap();
    assert!(held.abs() < 1e-12, "nothing stays held: {held}");
    assert!((spent - cost).abs() < 1e-12, "the payer paid {spent} of the {cost} the ledger holds");
}

/// A budget that refuses memory's model loses nothing: the summary waits (the window grows, every
/// message kept), facts come from the patterns, and archival runs once the budget allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_refuses_memorys_model_leaves_archival_waiting_and_loses_nothing() {
    use exoclaw::exoclaw_core::{FactStore, SummaryStore, UsageStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let provider = model(r#"{"facts": []}"#);
    // A dollar budget refuses a model without a price: the summariser has none.
    let settings = |summariser_price: &str| {
        format!(
            "window = 4\nfacts = \"model\"\nmodel = \"script/summariser\"\n\n[prices]\n\"script/m\" = {{ input = 1.0, output = 2.0 }}\n\
             {summariser_price}\n[[budgets]]\nname = \"dollars\"\nwindow = \"total\"\nmax_usd = 100.0"
        )
    };
    let runtime = runtime(&db, &settings(""), provider.clone()).await;
    let session = start(&runtime, "I live in Paris.").await;
    for turn in 2..=4 {
        say(&runtime, session, &format!("Question {turn}: tell me about {}.", TOPICS[turn % TOPICS.len()]))
            .await;
    }
    let internal = |p: &RespondingProvider| {
        p.requests()
            .iter()
            .filter(|r| {
                r.system.as_deref() == Some(SUMMARY_PROMPT) || r.system.as_deref() == Some(EXTRACTION_PROMPT)
            })
            .count()
    };
    assert_eq!(internal(&provider), 0, "the refused model is never asked");
    let store = runtime.store();
    assert_eq!(store.summary(session).await.unwrap(), None, "archival waits");
    assert_eq!(store.messages(session).await.unwrap().len(), 8, "every message kept");
    let facts = store.facts(LOCAL_OWNER, false).await.unwrap();
    assert!(facts.iter().any(|f| f.object.contains("Paris")), "the patterns found it: {facts:?}");
    let ledger = store.usage_since(chrono::DateTime::UNIX_EPOCH).await.unwrap();
    assert!(ledger.iter().all(|r| r.purpose.is_answer()), "a refused call records nothing: {ledger:#?}");
    drop(runtime);

    // Priced now: the next turn's archival folds the waiting messages in.
    let runtime = self::runtime(
        &db,
        &settings("\"script/summariser\" = { input = 1.0, output = 2.0 }"),
        provider.clone(),
    )
    .await;
    say(&runtime, session, "One more question.").await;
    let summary = runtime.store().summary(session).await.unwrap().expect("archived once allowed");
    assert!(summary.through >= 4, "through {}", summary.through);
    assert!(internal(&provider) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fact_that_changes_supersedes_the_old_one_which_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let runtime = runtime(&dir.path().join("m.db"), "facts = \"patterns\"", provider.clone()).await;
    let report = runtime
        .submit(Target::New { agent: None }, TurnInput::message("I live in Paris."))
        .unwrap()
        .report()
        .await
        .unwrap();
    assert!(runtime.settle(Duration::from_secs(30)).await);
    say(&runtime, report.session_id, "Big news: I moved to Lyon last month.").await;

    let facts = runtime.store().facts(LOCAL_OWNER, true).await.unwrap();
    let lyon = facts.iter().find(|f| f.object == "Lyon").expect("Lyon learned");
    let paris = facts.iter().find(|f| f.object == "Paris").expect("Paris kept");
    assert!(lyon.is_current() && lyon.predicate == "lives_in");
    assert!(!paris.is_current(), "Paris is superseded");
    assert_eq!(paris.superseded_by, Some(lyon.id));
    assert_eq!(runtime.store().facts(LOCAL_OWNER, false).await.unwrap().len(), 1);

    // Both are in what the model is told, the old one as what it was before.
    say(&runtime, report.session_id, "Where did I say I live before?").await;
    let last = chat_requests(&provider).pop().unwrap();
    assert!(
        last.messages[0].text().contains("lives in: Lyon (previously: Paris)"),
        "{}",
        last.messages[0].text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_from_the_model_are_validated_and_the_patterns_step_in_when_they_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"facts": [{"subject": "user", "predicate": "works at", "object": "Acme", "confidence": 0.9, "single_valued": true}]}"#;
    let valid = runtime(&dir.path().join("m.db"), "facts = \"model\"", model(good)).await;
    valid
        .submit(Target::New { agent: None }, TurnInput::message("I started a new job today."))
        .unwrap()
        .report()
        .await
        .unwrap();
    assert!(valid.settle(Duration::from_secs(30)).await);
    let facts = valid.store().facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(
        facts.iter().map(|f| (f.predicate.as_str(), f.object.as_str())).collect::<Vec<_>>(),
        [("works_at", "Acme")]
    );

    let dir = tempfile::tempdir().unwrap();
    let invalid =
        runtime(&dir.path().join("m.db"), "facts = \"model\"", model("The user works at Initech.")).await;
    invalid
        .submit(Target::New { agent: None }, TurnInput::message("I work at Initech."))
        .unwrap()
        .report()
        .await
        .unwrap();
    assert!(invalid.settle(Duration::from_secs(30)).await);
    let facts = invalid.store().facts(LOCAL_OWNER, false).await.unwrap();
    assert_eq!(
        facts.iter().map(|f| (f.predicate.as_str(), f.object.as_str())).collect::<Vec<_>>(),
        [("works_at", "Initech")]
    );
}

/// Not a test: the process the SIGKILL test starts and kills mid-archival. It opens the runtime
/// on `EXOCLAW_TEST_DB`, whose start sweep archives the session left there; the summary request
/// writes `EXOCLAW_TEST_MARKER` and never answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper process that archival_survives_a_sigkill starts itself"]
async fn archival_child_process() {
    let Ok(db) = std::env::var("EXOCLAW_TEST_DB") else { return };
    let marker = std::env::var("EXOCLAW_TEST_MARKER").unwrap();
    let provider = Arc::new(RespondingProvider::new("script", move |request| {
        if request.system.as_deref() == Some(SUMMARY_PROMPT) {
            std::fs::write(&marker, "summarising").unwrap();
            Outcome::Stall
        } else {
            Outcome::Text("ok".into())
        }
    }));
    let runtime = runtime(Path::new(&db), "window = 4", provider).await;
    runtime.settle(Duration::from_secs(600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archival_survives_a_sigkill_and_completes_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let marker = dir.path().join("summarising");
    // A session of 10 messages, stored by a runtime that never archived (window 100).
    let session = {
        let runtime = runtime(&db, "window = 100", model(r#"{"facts": []}"#)).await;
        let first = runtime
            .submit(Target::New { agent: None }, TurnInput::message("Hello."))
            .unwrap()
            .report()
            .await
            .unwrap();
        for (n, topic) in TOPICS.iter().enumerate().take(6).skip(2) {
            say(&runtime, first.session_id, &format!("Message {n} about {topic}.")).await;
        }
        runtime.store().close().await;
        first.session_id
    };

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "archival_child_process", "--nocapture"])
        .env("EXOCLAW_TEST_DB", &db)
        .env("EXOCLAW_TEST_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if marker.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(marker.exists(), "the child never asked for a summary");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let provider = model(r#"{"facts": []}"#);
    let runtime = runtime(&db, "window = 4", provider.clone()).await;
    assert_eq!(runtime.store().messages(session).await.unwrap().len(), 10, "nothing lost");
    assert!(runtime.settle(Duration::from_secs(30)).await);
    let summary = runtime.store().summary(session).await.unwrap().expect("archived on the next start");
    assert_eq!(summary.through, 6);
    assert_eq!(summary.text, "The user has been chatting about everyday topics.");
    assert_eq!(runtime.store().messages(session).await.unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_remembers_with_a_tool_and_finds_it_again_in_another_session() {
    use exoclaw::exoclaw_core::{Decision, FixedApprover};
    use exoclaw::exoclaw_types::ToolCall;
    let provider = Arc::new(RespondingProvider::new("script", |request| {
        let last = request.messages.last().unwrap();
        if last.role == Role::Tool {
            return Outcome::Text("Done.".into());
        }
        let call = |name: &str, arguments| {
            Outcome::ToolCall(ToolCall { id: "c1".into(), name: name.into(), arguments })
        };
        match last.text().as_str() {
            "Please remember that my locker code is 4711." => {
                call("remember", serde_json::json!({"text": "The user's locker code is 4711."}))
            }
            "What is my locker code?" => call("memory_search", serde_json::json!({"query": "locker code"})),
            _ => Outcome::Text("ok".into()),
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse("model = \"script/m\"\n", Path::new("test.toml")).unwrap();
    let store =
        exoclaw::exoclaw_store::Store::open(&dir.path().join("m.db").display().to_string()).await.unwrap();
    let runtime = Runtime::builder()
        .config(config)
        .store(store)
        .provider(provider.clone())
        .approver(Arc::new(FixedApprover(Decision::Approve)))
        .build()
        .await
        .unwrap();
    let names: Vec<String> = runtime.agents()[0].tools.iter().map(|t| t.name.clone()).collect();
    assert!(
        ["memory_search", "remember", "forget"].iter().all(|t| names.iter().any(|n| n == t)),
        "{names:?}"
    );

    let first = runtime
        .submit(
            Target::New { agent: None },
            TurnInput::message("Please remember that my locker code is 4711."),
        )
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(first.text(), "Done.");
    assert!(runtime.settle(Duration::from_secs(30)).await);
    let second = runtime
        .submit(Target::New { agent: None }, TurnInput::message("What is my locker code?"))
        .unwrap()
        .report()
        .await
        .unwrap();
    let result = second.messages.iter().find(|m| m.role == Role::Tool).expect("memory_search ran");
    assert!(format!("{:?}", result.parts).contains("The user's locker code is 4711."), "{:?}", result.parts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arcadedb_memory_store_stopped_mid_session_leaves_turns_going_and_catches_up() {
    let mut server = exoclaw_testkit::arcadedb::ArcadeDbServer::start();
    let url = server.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let runtime = runtime(&dir.path().join("m.db"), &format!("url = \"{url}\""), provider.clone()).await;
    let session = start(&runtime, "My bicycle is a green Peugeot.").await;
    let memory = runtime.memory().unwrap().store().clone();
    assert_eq!(memory.indexed_messages(session).await.unwrap(), 2, "indexed in ArcadeDB");

    server.stop();
    let (report, warnings) = warned(&runtime, Target::Session(session), "I also own a red kayak.").await;
    assert_eq!(report.text(), "Noted.", "the turn goes on without its memory store");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("recent messages alone"), "{}", warnings[0]);
    let sent = chat_requests(&provider).pop().unwrap();
    assert!(sent.messages.iter().any(|m| m.text() == "My bicycle is a green Peugeot."), "the window is sent");
    assert!(runtime.settle(Duration::from_secs(60)).await);

    server.restart();
    say(&runtime, session, "Thanks!").await;
    assert_eq!(memory.indexed_messages(session).await.unwrap(), 6, "what the outage missed is indexed");
    let hits = memory.search_text(LOCAL_OWNER, "kayak", 5).await.unwrap();
    assert_eq!(hits[0].entry.text, "I also own a red kayak.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_session_starts_its_memory_over() {
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let runtime = runtime(&dir.path().join("m.db"), "window = 4", provider.clone()).await;
    let session = start(&runtime, "Hello.").await;
    for n in 2..=4 {
        say(&runtime, session, &format!("Old message {n} about the aquarium.")).await;
    }
    assert!(runtime.store().summary(session).await.unwrap().is_some(), "archived before the clear");

    runtime.clear_session(session).await.unwrap();
    assert_eq!(runtime.store().summary(session).await.unwrap(), None, "the old summary is gone");
    assert_eq!(runtime.memory().unwrap().store().indexed_messages(session).await.unwrap(), 0);
    say(&runtime, session, "A fresh start.").await;
    let sent = chat_requests(&provider).pop().unwrap();
    assert!(!sent.messages.iter().any(|m| m.text().contains("everyday topics")), "no old summary: {sent:?}");
    assert_eq!(sent.messages.last().unwrap().text(), "A fresh start.");
    assert_eq!(
        runtime.memory().unwrap().store().indexed_messages(session).await.unwrap(),
        2,
        "indexed from the start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arcadedb_memory_store_down_at_start_is_connected_when_it_answers_and_caught_up() {
    let mut server = exoclaw_testkit::arcadedb::ArcadeDbServer::start();
    let url = server.fresh_database();
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    // Starts: the store not answering is no error.
    let runtime = runtime(&dir.path().join("m.db"), &format!("url = \"{url}\""), provider.clone()).await;
    let (report, warnings) =
        warned(&runtime, Target::New { agent: None }, "My bicycle is a green Peugeot.").await;
    assert_eq!(report.text(), "Noted.", "the turn is answered without its memory store");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("has not answered since exoclaw started"), "{}", warnings[0]);
    assert!(warnings[0].contains("recent messages alone"), "{}", warnings[0]);
    assert!(runtime.settle(Duration::from_secs(60)).await);
    let memory = runtime.memory().unwrap().store().clone();
    assert!(memory.indexed_messages(report.session_id).await.is_err(), "not connected yet");

    server.restart();
    // Connected in the background (retried with backoff): wait for it, then for its catch-up.
    let connected = async {
        while memory.indexed_messages(report.session_id).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), connected).await.expect("connected once it answers");
    assert!(runtime.settle(Duration::from_secs(60)).await);
    assert_eq!(memory.indexed_messages(report.session_id).await.unwrap(), 2, "the missed turn is caught up");

    // Another session remembers it.
    start(&runtime, "Which bicycle do I have?").await;
    let sent = chat_requests(&provider).pop().unwrap();
    assert!(sent.messages.iter().any(|m| m.text().contains("green Peugeot")), "recalled: {sent:?}");
}

#[tokio::test]
async fn a_malformed_memory_url_is_an_error_at_start_that_says_the_form() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "model = \"script/m\"\n[memory]\nurl = \"arcadedb://root:secret-pw@127.0.0.1:2480\"\n";
    let config = Config::parse(toml, Path::new("test.toml")).unwrap();
    let store =
        exoclaw::exoclaw_store::Store::open(&dir.path().join("m.db").display().to_string()).await.unwrap();
    let error =
        Runtime::builder().config(config).store(store).provider(model("{}")).build().await.unwrap_err();
    let error = error.to_string();
    assert!(error.contains("arcadedb://USER:PASSWORD@HOST:PORT/DATABASE"), "{error}");
    assert!(error.contains("[memory] url"), "{error}");
    assert!(!error.contains("secret-pw"), "{error}");
}

#[tokio::test]
async fn a_postgres_memory_store_that_does_not_answer_at_start_leaves_turns_going() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: the server is down.
    let runtime =
        runtime(&dir.path().join("m.db"), "url = \"postgres://exoclaw@127.0.0.1:9/memory\"", model("{}"))
            .await;
    let report = runtime
        .submit(Target::New { agent: None }, TurnInput::message("Hello."))
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.error, None);
    assert_eq!(report.text(), "Noted.");
}

/// The context's text sent to the model for its last chat turn.
fn last_context(provider: &RespondingProvider) -> String {
    let last = chat_requests(provider).pop().unwrap();
    last.messages.iter().map(|m| m.text()).collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_setting_a_past_conversation_is_recalled_by_meaning_with_the_embedded_model() {
    // The default embedding model, all-MiniLM-L6-v2, in the model cache where the peer script
    // puts it (the runtime looks there when nothing says otherwise).
    exoclaw_testkit::peers::minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    // Facts off: what is recalled comes from search alone ("my bicycle is…" is a fact's pattern).
    let on = runtime(&dir.path().join("m.db"), "facts = \"off\"", provider.clone()).await;
    start(&on, "My bicycle is a green Peugeot from 1984.").await;
    start(&on, "Pizza on Fridays, always.").await;

    // No word of the question is in the first session: only its meaning finds it, and a
    // conversation about something else stays out.
    let (report, warnings) = warned(&on, Target::New { agent: None }, "What do I ride?").await;
    assert_eq!(report.error, None);
    assert!(warnings.is_empty(), "{warnings:?}");
    let context = last_context(&provider);
    assert!(context.contains("My bicycle is a green Peugeot from 1984."), "{context}");
    assert!(!context.contains("Pizza"), "an unrelated excerpt: {context}");

    // Turned off, the same question finds nothing.
    let dir = tempfile::tempdir().unwrap();
    let provider = model(r#"{"facts": []}"#);
    let off =
        runtime(&dir.path().join("m.db"), "facts = \"off\"\nembeddings = \"off\"", provider.clone()).await;
    start(&off, "My bicycle is a green Peugeot from 1984.").await;
    start(&off, "What do I ride?").await;
    assert!(!last_context(&provider).contains("Peugeot"), "{}", last_context(&provider));
}
