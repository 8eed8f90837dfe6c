//! What a plugin call costs: on a warm pooled instance, on a fresh instance of the compiled
//! module (cold), and loading a plugin with and without the on-disk compile cache. The floor, in
//! the same run: the same echo as a native tool through the same `Tool` interface.
//!
//! `cargo bench -p exoclaw-wasm --bench call`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use exoclaw_core::{Tool, ToolContext, ToolError};
use exoclaw_types::{ToolEffect, ToolSpec};
use exoclaw_wasm::{PluginDir, PluginHost};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

struct NativeEcho;

#[async_trait]
impl Tool for NativeEcho {
    fn spec(&self) -> ToolSpec {
        ToolSpec { name: "echo".into(), description: String::new(), input_schema: json!({"type": "object"}) }
    }
    fn effect(&self) -> ToolEffect {
        ToolEffect::ReadOnly
    }
    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<String, ToolError> {
        Ok(json!({"tool": "echo", "arguments": args}).to_string())
    }
}

fn bench(c: &mut Criterion) {
    let source = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let manifest = source.path().join("plugin.toml");
    std::fs::write(&manifest, "name = \"echo\"\nversion = \"1\"\nkind = \"tool\"\n").unwrap();
    let wat = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/echo_tool.wat");
    std::fs::copy(wat, source.path().join("echo.wasm")).unwrap();
    let plugins = PluginDir::new(home.path());
    let installed = plugins.install(&manifest, Default::default()).unwrap();
    let cached_host = PluginHost::cached(&plugins.cache_dir()).unwrap();
    let config = BTreeMap::new();
    let plugin = Arc::new(cached_host.load(&installed, &config).unwrap());
    let tool: Arc<dyn Tool> = Arc::new(exoclaw_wasm::plugin_tools(&plugin, "").unwrap().remove(0));
    let native: Arc<dyn Tool> = Arc::new(NativeEcho);
    let input = json!({"tool": "echo", "arguments": {"text": "hello"}}).to_string().into_bytes();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ctx = ToolContext::new(std::env::temp_dir());

    let mut group = c.benchmark_group("plugin_call");
    group.bench_function("native_tool_floor", |b| {
        b.iter(|| runtime.block_on(native.call(json!({"text": "hello"}), &ctx)).unwrap())
    });
    group
        .bench_function("warm_pooled_instance", |b| b.iter(|| plugin.call_blocking("call", &input).unwrap()));
    group.bench_function("warm_as_tool", |b| {
        b.iter(|| runtime.block_on(tool.call(json!({"text": "hello"}), &ctx)).unwrap())
    });
    group.bench_function("cold_fresh_instance", |b| {
        b.iter(|| {
            plugin.drop_idle();
            plugin.call_blocking("call", &input).unwrap()
        })
    });
    // A real plugin: the Rust PDK example (serde_json inside, WASI), built by
    // scripts/peers/wasm-plugins.sh.
    let manifest = exoclaw_testkit::peers::example_plugin("word-tools").join("plugin.toml");
    let asked = exoclaw_wasm::Manifest::load(&manifest).unwrap().capabilities;
    let word_tools = plugins.install(&manifest, asked).unwrap();
    let word_tools = Arc::new(cached_host.load(&word_tools, &config).unwrap());
    let count =
        json!({"tool": "word_count", "arguments": {"text": "one two three"}}).to_string().into_bytes();
    group.bench_function("rust_pdk_warm", |b| b.iter(|| word_tools.call_blocking("call", &count).unwrap()));
    group.bench_function("rust_pdk_cold", |b| {
        b.iter(|| {
            word_tools.drop_idle();
            word_tools.call_blocking("call", &count).unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("plugin_load");
    group.sample_size(10);
    group.bench_function("compile_uncached", |b| {
        b.iter(|| PluginHost::uncached().load(&installed, &config).unwrap())
    });
    group.bench_function("compile_cache_hit", |b| b.iter(|| cached_host.load(&installed, &config).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
