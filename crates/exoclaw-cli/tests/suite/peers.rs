//! The binary against real servers: llama.cpp's `llama-server` as a configured OpenAI-compatible
//! provider, and the machine's PostgreSQL as the session store.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_llama_server_streams_the_answer() {
    let server = tokio::task::spawn_blocking(exoclaw_testkit::peers::LlamaServer::start).await.unwrap();
    let env = Env::new();
    env.config(&format!(
        "model = \"box/smollm2\"\n[agent]\nbase_prompt = \"You are a helpful assistant.\"\n[providers.box]\nkind = \"llamacpp\"\nbase_url = \"{}/v1\"\n",
        server.url()
    ));
    let out = env
        .run(&["chat", "--json", "--no-tools", "--temperature", "0", "What is the capital of France?"])
        .await;
    ok(&out);
    let events = events(&out);
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(text.contains("Paris"), "{text:?}");
    assert!(events.iter().filter(|e| matches!(e, AgentEvent::Text { .. })).count() > 3, "streamed in pieces");
    let usage = events.iter().find_map(|e| match e {
        AgentEvent::Usage { usage } => Some(*usage),
        _ => None,
    });
    assert!(usage.and_then(|u| u.output_tokens).is_some_and(|n| n > 0), "{usage:?}");
}

/// A fresh database on the machine's PostgreSQL, dropped when the guard goes.
pub(super) struct Database(String);

impl Database {
    pub(super) fn create() -> Self {
        let name = format!("exoclaw_cli_{}_{}", std::process::id(), rand_suffix());
        psql(&format!("CREATE DATABASE {name}"));
        Self(name)
    }

    pub(super) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_007
}

fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql is installed with the machine's PostgreSQL");
    assert!(
        out.status.success(),
        "psql `{sql}` failed: {}\nstart the server with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_in_postgres_when_the_config_says_so() {
    use exoclaw_testkit::script::{Answer, serve};
    let db = Database::create();
    let server = serve([Answer::text("Stored in Postgres."), Answer::text("Still there.")]).await;
    let env = Env::new();
    env.scripted(&server, &format!("[storage]\nurl = \"{}\"\n", db.url()));
    ok(&env.run(&["chat", "first"]).await);
    ok(&env.run(&["chat", "-c", "second"]).await);
    assert!(!env.home.path().join("exoclaw.db").exists(), "no SQLite file when Postgres is configured");
    let list = env.run(&["session", "list", "--json"]).await;
    ok(&list);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["message_count"], 4);
}
