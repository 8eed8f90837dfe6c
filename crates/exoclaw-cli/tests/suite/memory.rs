//! `exoclaw memory` as a user meets it, after real turns against a scripted model: the facts
//! learned, search, forgetting and export.

use super::*;
use exoclaw_testkit::script::{Answer, serve};
use serde_json::Value;

/// Two turns of one session: "I live in Paris.", then "I moved to Lyon.". The one-shot chat
/// waits for the memory work after each answer, so everything is indexed once it returns.
async fn moved_to_lyon(env: &Env) -> ScriptedServer {
    let server = serve([Answer::text("Paris is lovely."), Answer::text("Enjoy Lyon!")]).await;
    env.scripted(&server, "");
    ok(&env.run(&["chat", "I live in Paris."]).await);
    ok(&env.run(&["chat", "--continue", "I moved to Lyon."]).await);
    server
}

/// `--json` output parsed.
fn json(out: &Output) -> Value {
    ok(out);
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

/// The `lives_in` facts of `facts --all --json`, as `(id, object, current, superseded_by)`.
async fn lives_in(env: &Env) -> Vec<(i64, String, bool, Option<i64>)> {
    let facts = json(&env.run(&["memory", "facts", "--all", "--json"]).await);
    facts
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["predicate"] == "lives_in")
        .map(|f| {
            (
                f["id"].as_i64().unwrap(),
                f["object"].as_str().unwrap().to_owned(),
                f["current"].as_bool().unwrap(),
                f["superseded_by"].as_i64(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_supersedes_where_the_user_lives_and_the_old_place_is_kept() {
    let env = Env::new();
    let _server = moved_to_lyon(&env).await;
    let facts = lives_in(&env).await;
    let lyon = facts.iter().find(|f| f.1 == "Lyon").unwrap_or_else(|| panic!("{facts:?}"));
    let paris = facts.iter().find(|f| f.1 == "Paris").unwrap_or_else(|| panic!("{facts:?}"));
    assert!(lyon.2 && lyon.3.is_none(), "Lyon is current: {facts:?}");
    assert!(!paris.2 && paris.3 == Some(lyon.0), "Paris is superseded by Lyon: {facts:?}");

    let current = json(&env.run(&["memory", "facts", "--json"]).await);
    let objects: Vec<&str> =
        current.as_array().unwrap().iter().filter_map(|f| f["object"].as_str()).collect();
    assert_eq!(objects, ["Lyon"], "without --all, the current facts only");

    let table = env.run(&["memory", "facts", "--all"]).await;
    ok(&table);
    let text = stdout(&table);
    let paris_line = text.lines().find(|l| l.contains("Paris")).unwrap_or_else(|| panic!("{text}"));
    assert!(paris_line.contains(&format!("superseded by {}", lyon.0)), "{text}");
    assert!(text.lines().any(|l| l.contains("Lyon") && l.contains("current")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_the_message_that_named_the_place() {
    let env = Env::new();
    let _server = moved_to_lyon(&env).await;
    let hits = json(&env.run(&["memory", "search", "Lyon", "--json"]).await);
    let hits = hits.as_array().unwrap();
    let texts: Vec<&str> = hits.iter().filter_map(|h| h["text"].as_str()).collect();
    assert_eq!(texts.len(), 2, "the two messages that say Lyon, and nothing else: {texts:?}");
    let said = hits.iter().find(|h| h["text"] == "I moved to Lyon.").unwrap_or_else(|| panic!("{hits:#?}"));
    assert_eq!(said["who"], "user");
    assert_eq!(said["matched"], "words", "offline without the embedding model: by words alone");
    assert!(hits.iter().any(|h| h["text"] == "Enjoy Lyon!" && h["who"] == "assistant"), "{hits:#?}");

    let table = env.run(&["memory", "search", "moved", "to", "Lyon"]).await;
    ok(&table);
    let text = stdout(&table);
    assert!(text.starts_with("ID  "), "a table with a header: {text}");
    assert!(
        text.lines().any(|l| l.contains("user") && l.contains("words") && l.ends_with("I moved to Lyon.")),
        "{text}"
    );

    let none = env.run(&["memory", "search", "Tokyo"]).await;
    ok(&none);
    assert!(stdout(&none).contains("nothing in local's memory matches `Tokyo`"), "{}", stdout(&none));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_a_fact_asks_first_and_with_yes_removes_it() {
    let env = Env::new();
    let _server = moved_to_lyon(&env).await;
    let lyon = lives_in(&env).await.into_iter().find(|f| f.1 == "Lyon").unwrap();
    let id = lyon.0.to_string();

    let unasked = env.run(&["memory", "forget", "--fact", &id]).await;
    assert_eq!(unasked.status.code(), Some(2), "nobody at a terminal to confirm: {}", stderr(&unasked));
    assert!(stderr(&unasked).contains("--yes"), "{}", stderr(&unasked));
    assert_eq!(lives_in(&env).await.len(), 2, "nothing forgotten without confirmation");

    let out = env.run(&["memory", "forget", "--fact", &id, "--yes"]).await;
    ok(&out);
    assert_eq!(stdout(&out), "forgot 1 fact\n");
    let left = lives_in(&env).await;
    assert!(left.iter().all(|f| f.0 != lyon.0), "{left:?}");
    assert!(left.iter().any(|f| f.1 == "Paris"), "the superseded fact stays: {left:?}");

    let again = env.run(&["memory", "forget", "--fact", &id, "--yes"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("exoclaw memory facts --all"), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_entries_containing_a_text_hides_them_from_search() {
    let env = Env::new();
    let _server = moved_to_lyon(&env).await;
    let out = env.run(&["memory", "forget", "--containing", "lyon", "--yes"]).await;
    ok(&out);
    // "I moved to Lyon." and "Enjoy Lyon!".
    assert_eq!(stdout(&out), "forgot 2 entries\n");
    let hits = json(&env.run(&["memory", "search", "Lyon", "--json"]).await);
    assert_eq!(hits, serde_json::json!([]));
    let paris = json(&env.run(&["memory", "search", "Paris", "--json"]).await);
    assert!(!paris.as_array().unwrap().is_empty(), "other entries stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_gives_every_entry_and_fact_as_json_lines() {
    let env = Env::new();
    let _server = moved_to_lyon(&env).await;
    let out = env.run(&["memory", "export"]).await;
    ok(&out);
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |kind: &str| lines.iter().filter(|l| l["type"] == kind).collect::<Vec<_>>();
    let entries = of("entry");
    let texts: Vec<&str> = entries.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(
        texts,
        ["Enjoy Lyon!", "I moved to Lyon.", "Paris is lovely.", "I live in Paris."],
        "every message, newest first"
    );
    assert!(entries.iter().all(|e| e["owner"] == "local" && e["session"].is_string()));
    let objects: Vec<&str> = of("fact").iter().filter_map(|f| f["object"].as_str()).collect();
    assert_eq!(objects.len(), 2, "superseded facts too: {objects:?}");
    assert!(objects.contains(&"Lyon") && objects.contains(&"Paris"));

    let file = env.ws().join("memory.jsonl");
    let to_file = env.run(&["memory", "export", "-o", file.to_str().unwrap()]).await;
    ok(&to_file);
    assert_eq!(read(&file), stdout(&out));
    assert!(stdout(&to_file).is_empty());
    assert!(stderr(&to_file).contains("exported 4 entries, 2 facts and 0 summaries"), "{}", stderr(&to_file));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_turned_off_is_a_usage_error_that_says_how_to_turn_it_on() {
    let env = Env::new();
    let server = serve([]).await;
    env.scripted(&server, "[memory]\nenabled = false\n");
    let out = env.run(&["memory", "facts"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("memory is turned off"), "{}", stderr(&out));
    assert!(stderr(&out).contains("enabled = true"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knowledge_base_reaches_the_model_and_memory_knowledge_says_what_it_indexed() {
    let env = Env::new();
    let handbook = env.ws().join("handbook");
    std::fs::create_dir_all(&handbook).unwrap();
    std::fs::write(
        handbook.join("leave.md"),
        "# Holidays\n\nEvery employee gets twenty-seven days of paid leave a year.\n",
    )
    .unwrap();
    std::fs::write(handbook.join("broken.md"), [0xffu8, 0xfe, 0x00]).unwrap();
    let server = serve([Answer::text("Twenty-seven.")]).await;
    let knowledge = format!("[memory]\nknowledge = {{ \"*\" = [{:?}] }}\n", handbook.display().to_string());
    env.scripted(&server, &knowledge);

    // A first turn right after start: the handbook is indexed before it is answered.
    ok(&env.run(&["chat", "How many days of paid leave do I get?"]).await);
    let requests = server.requests();
    let sent: Vec<String> = exoclaw_testkit::script::request_messages(&requests[0].body)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    let memory_block = sent.iter().find(|m| m.contains("## From the knowledge base")).unwrap_or_else(|| {
        panic!("no knowledge section in {sent:#?}");
    });
    assert!(
        memory_block.contains("### leave.md › Holidays\nEvery employee gets twenty-seven days"),
        "{memory_block}"
    );

    let out = env.run(&["memory", "knowledge"]).await;
    assert_eq!(out.status.code(), Some(1), "a document could not be read: {}", stderr(&out));
    assert!(stdout(&out).contains("every agent: "), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("1 document: 0 indexed now (0 passages), 0 removed, 1 unchanged"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("broken.md is not UTF-8 text"), "{}", stderr(&out));

    let hits =
        json(&env.run(&["memory", "search", "--owner", "knowledge:*", "paid", "leave", "--json"]).await);
    assert!(hits[0]["text"].as_str().unwrap().starts_with("leave.md › Holidays"), "{hits}");
    let mine = env.run(&["memory", "search", "paid", "leave"]).await;
    assert!(
        !stdout(&mine).contains("leave.md"),
        "the user's own memory holds no knowledge: {}",
        stdout(&mine)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_knowledge_without_a_knowledge_base_says_how_to_add_one() {
    let env = Env::new();
    let server = serve([]).await;
    env.scripted(&server, "");
    let out = env.run(&["memory", "knowledge"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no knowledge base is configured"), "{}", stderr(&out));
}
