//! Tool loops end to end: the binary against a scripted model behind a real HTTP endpoint.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use exoclaw_types::TurnOutcome;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_reads_a_file_and_answers_from_it() {
    let env = Env::new();
    std::fs::write(env.ws().join("notes.txt"), "the launch code is 4711\n").unwrap();
    let server = serve([
        Answer::tool("call_1", "read_file", json!({"path": "notes.txt"})),
        Answer::text("The launch code is 4711."),
    ])
    .await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "What is the launch code?"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "The launch code is 4711.\n");
    assert!(stderr(&out).contains("read_file path=notes.txt"), "{}", stderr(&out));

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let results = tool_messages(&requests[1].body);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].0, "call_1");
    assert!(results[0].1.contains("the launch code is 4711"), "{results:?}");
    // The key is sent as a bearer token and never printed.
    assert_eq!(requests[0].header("authorization"), Some("Bearer sk-test-secret"));
    assert!(!stderr(&out).contains("sk-test-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_runs_with_yes_and_is_refused_when_nobody_can_approve_it() {
    let env = Env::new();
    let file = env.ws().join("main.rs");
    std::fs::write(&file, "fn main() { println!(\"hi\"); }\n").unwrap();
    let edit = json!({"path": "main.rs", "old_string": "\"hi\"", "new_string": "\"hello\""});
    let server = serve([
        Answer::tool("e1", "edit_file", edit.clone()),
        Answer::text("I could not edit it."),
        Answer::tool("e2", "edit_file", edit),
        Answer::text("Done."),
    ])
    .await;
    env.scripted(&server, "");

    let out = env.run(&["chat", "Say hello instead"]).await;
    ok(&out);
    assert_eq!(read(&file), "fn main() { println!(\"hi\"); }\n", "changed without approval");
    assert!(stderr(&out).contains("rerun with --yes"), "{}", stderr(&out));
    let refused = tool_messages(&server.requests()[1].body);
    assert!(refused[0].1.contains("denied"), "{refused:?}");

    let out = env.run(&["chat", "--yes", "Say hello instead"]).await;
    ok(&out);
    assert_eq!(read(&file), "fn main() { println!(\"hello\"); }\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_output_and_parallel_calls_go_back_to_the_model() {
    let env = Env::new();
    std::fs::write(env.ws().join("a.txt"), "alpha").unwrap();
    std::fs::write(env.ws().join("b.txt"), "beta").unwrap();
    let server = serve([
        Answer::tools([
            ("r1", "read_file", json!({"path": "a.txt"})),
            ("r2", "read_file", json!({"path": "b.txt"})),
            ("s1", "shell", json!({"command": "echo from-the-shell; pwd"})),
        ]),
        Answer::text("Read both."),
    ])
    .await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "--yes", "--json", "Read a and b"]).await;
    ok(&out);
    let results = tool_messages(&server.requests()[1].body);
    let ids: Vec<&str> = results.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "s1"], "results come back in the calls' order");
    assert!(results[0].1.contains("alpha") && results[1].1.contains("beta"), "{results:?}");
    assert!(results[2].1.contains("from-the-shell"), "{results:?}");
    assert!(
        results[2].1.contains(env.ws().to_str().unwrap()),
        "the shell starts in the workspace: {results:?}"
    );

    let events = events(&out);
    assert!(matches!(events.first(), Some(AgentEvent::TurnStarted { .. })), "{events:?}");
    assert_eq!(
        events.last(),
        Some(&AgentEvent::Done {
            outcome: TurnOutcome::Completed,
            stop_reason: Some(exoclaw_types::StopReason::EndTurn)
        })
    );
    let finished = events.iter().filter(|e| matches!(e, AgentEvent::ToolResult { .. })).count();
    assert_eq!(finished, 3);
    let Some(AgentEvent::TurnStarted { session_id, .. }) = events.first() else { unreachable!() };
    let list = env.run(&["session", "list", "--json"]).await;
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(
        sessions[0]["id"],
        session_id.to_string(),
        "the new session is stored under the id the turn announced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_and_an_escape_attempt_are_reported_to_the_model() {
    let env = Env::new();
    let outside = env.workspace.path().parent().unwrap().join(format!("secret-{}", std::process::id()));
    std::fs::write(&outside, "do not read").unwrap();
    let server = serve([
        Answer::tools([
            ("m1", "read_file", json!({"path": "missing.txt"})),
            (
                "x1",
                "read_file",
                json!({"path": format!("../{}", outside.file_name().unwrap().to_str().unwrap())}),
            ),
            ("x2", "read_file", json!({"path": outside.to_str().unwrap()})),
        ]),
        Answer::text("Those failed."),
    ])
    .await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "read things"]).await;
    std::fs::remove_file(&outside).unwrap();
    ok(&out);
    let results = tool_messages(&server.requests()[1].body);
    assert_eq!(results.len(), 3);
    for (_, content) in &results {
        assert!(!content.contains("do not read"), "{results:?}");
    }
    assert!(results[0].1.contains("does not exist"), "{results:?}");
    assert!(results[1].1.contains("refused") && results[1].1.contains("workspace"), "{results:?}");
    assert!(results[2].1.contains("outside the workspace"), "{results:?}");
    assert!(stderr(&out).contains("✗ read_file"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_tool_times_out_and_the_turn_goes_on() {
    let env = Env::new();
    let server = serve([
        Answer::tool("h1", "shell", json!({"command": "sleep 30 & sleep 30; echo never"})),
        Answer::text("It hung."),
    ])
    .await;
    env.scripted(&server, "[agent]\ntool_timeout_secs = 1\n");
    let started = std::time::Instant::now();
    let out = env.run(&["chat", "--yes", "run it"]).await;
    ok(&out);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "the turn waited for the tool");
    let results = tool_messages(&server.requests()[1].body);
    assert!(results[0].1.contains("timed out"), "{results:?}");
    assert_eq!(stdout(&out), "It hung.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_never_stops_calling_tools_is_stopped_at_the_limit() {
    let env = Env::new();
    let server =
        serve((0..5).map(|i| Answer::tool(&format!("l{i}"), "list_dir", json!({"path": "."})))).await;
    env.scripted(&server, "[agent]\nmax_iterations = 3\n");
    let out = env.run(&["chat", "loop forever"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(server.requests().len(), 3);
    assert!(stderr(&out).contains("max_iterations"), "{}", stderr(&out));
    assert!(stderr(&out).contains("the session is kept"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_instructions_reach_the_model() {
    let env = Env::new();
    std::fs::create_dir(env.ws().join(".git")).unwrap();
    std::fs::write(env.ws().join("AGENTS.md"), "Always answer in haiku.").unwrap();
    let server = serve([Answer::text("ok")]).await;
    env.scripted(&server, "[agent]\nsystem = \"Sign with -- exo.\"\n");
    let out = env.run(&["chat", "--system", "Be terse.", "hi"]).await;
    ok(&out);
    let body = &server.request().body;
    let system = exoclaw_testkit::script::request_messages(body)[0]["content"].as_str().unwrap().to_owned();
    assert!(system.contains("Always answer in haiku."), "{system}");
    let (config, flag) = (system.find("Sign with").unwrap(), system.find("Be terse.").unwrap());
    assert!(system.find("haiku").unwrap() < config && config < flag, "{system}");
    let tools: Vec<&str> =
        body["tools"].as_array().unwrap().iter().filter_map(|t| t["function"]["name"].as_str()).collect();
    assert_eq!(tools.len(), 11, "the 8 builtin tools and the 3 memory tools are offered: {tools:?}");
    assert!(
        ["read_file", "shell", "memory_search", "remember", "forget"].iter().all(|t| tools.contains(t)),
        "{tools:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_tools_offers_none() {
    let env = Env::new();
    let server = serve([Answer::text("ok")]).await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "--no-tools", "hi"]).await);
    assert!(server.request().body.get("tools").is_none_or(|t| t.as_array().is_some_and(Vec::is_empty)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_sends_the_schema_and_refuses_an_answer_that_breaks_it() {
    let env = Env::new();
    let schema = env.ws().join("person.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}"#,
    )
    .unwrap();
    let server = serve([Answer::text(r#"{"age": 41}"#), Answer::text(r#"{"age": "forty"}"#)]).await;
    env.scripted(&server, "");
    let out = env.run(&["chat", "--no-tools", "--json-schema", schema.to_str().unwrap(), "How old?"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "{\"age\":41}\n");
    let format = &server.requests()[0].body["response_format"];
    assert_eq!(format["type"], "json_schema", "{format}");
    assert_eq!(format["json_schema"]["name"], "person", "{format}");
    assert_eq!(format["json_schema"]["schema"]["required"], json!(["age"]), "{format}");

    let out = env.run(&["chat", "--no-tools", "--json-schema", schema.to_str().unwrap(), "How old?"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "", "nothing that breaks the schema reaches stdout");
    let err = stderr(&out);
    assert!(err.contains("does not fit the schema") && err.contains("/age"), "{err}");
}
