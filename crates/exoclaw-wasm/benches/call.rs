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
