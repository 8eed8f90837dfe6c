//! The host: compiles a plugin once (the compiled code cached on disk), runs each call in an
//! instance limited to what was granted, and turns every way a call can go wrong — a trap, the
//! time limit, fuel, memory, a cancelled turn — into a [`CallFailure`], never a crash of exoclaw.
//!
//! Instances are pooled: a call takes an idle one (or makes one, ≈ the cost of instantiating the
//! compiled module) and gives it back when the call succeeded; an instance that failed in any way
//! is thrown away, so the next call starts clean.

use crate::error::{CallFailure, PluginError};
use crate::installed::Installed;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How many idle instances a plugin keeps for the next calls.
const IDLE_INSTANCES: usize = 4;

/// Loads plugins: where compiled modules are cached, and the home `~/` paths resolve against.
#[derive(Debug, Clone, Default)]
pub struct PluginHost {
    cache_config: Option<PathBuf>,
    home: Option<PathBuf>,
}

impl PluginHost {
    /// A host that compiles every plugin afresh (tests, one-off checks).
    pub fn uncached() -> Self {
        Self::default()
    }

    /// A host caching compiled modules in `cache_dir` (created), so a plugin is compiled once per
    /// version, across restarts.
    pub fn cached(cache_dir: &Path) -> Result<Self, PluginError> {
        // The engine's cache cleaner deletes whatever else is in its folder: the settings file
        // sits beside it, not in it.
        let compiled = cache_dir.join("compiled");
        std::fs::create_dir_all(&compiled).map_err(|e| PluginError::io(&compiled, &e))?;
        let directory = std::path::absolute(&compiled).map_err(|e| PluginError::io(&compiled, &e))?;
        let config = cache_dir.join("wasmtime-cache.toml");
        let text = format!("[cache]\ndirectory = {}\n", toml_string(&directory.to_string_lossy()));
        std::fs::write(&config, text).map_err(|e| PluginError::io(&config, &e))?;
        Ok(Self { cache_config: Some(config), home: None })
    }

    /// Resolves `~/` in granted paths against `home`.
    pub fn with_home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }

    /// Compiles `plugin` under its manifest's capabilities — refused if they go beyond its grant —
    /// with `config` holding the values of the configuration keys it may read (others are
    /// dropped).
    pub fn load(
        &self,
        plugin: &Installed,
        config: &BTreeMap<String, String>,
    ) -> Result<LoadedPlugin, PluginError> {
        plugin.check_granted()?;
        let name = plugin.name().to_owned();
        let capabilities = &plugin.manifest.capabilities;
        let wasm_path = plugin.wasm_path();
        let wasm = std::fs::read(&wasm_path).map_err(|e| PluginError::io(&wasm_path, &e))?;
        let mut manifest = extism::Manifest::new([extism::Wasm::data(wasm)])
            .with_memory_max(capabilities.memory_mib.saturating_mul(16))
            .with_timeout(Duration::from_millis(capabilities.timeout_ms))
            .with_allowed_hosts(capabilities.hosts.iter().cloned());
        for path in &capabilities.paths {
            let host = path.resolve(&plugin.dir, self.home.as_deref());
            if !host.is_dir() {
                return Err(PluginError::Load {
                    plugin: name,
                    reason: format!("the folder {} it was granted does not exist", host.display()),
                });
            }
            let host = host.to_string_lossy();
            let source = if path.write { host.into_owned() } else { format!("ro:{host}") };
            manifest = manifest.with_allowed_path(source, &path.guest);
        }
        for key in &capabilities.config {
            if let Some(value) = config.get(key) {
                manifest = manifest.with_config_key(key, value);
            }
        }
        let mut builder = extism::PluginBuilder::new(manifest).with_wasi(true);
        builder = match &self.cache_config {
            Some(file) => builder.with_cache_config(file),
            None => builder.with_cache_disabled(),
        };
        if let Some(fuel) = capabilities.fuel {
            builder = builder.with_fuel_limit(fuel);
        }
        let compiled =
            builder.compile().map_err(|e| PluginError::Load { plugin: name.clone(), reason: root(&e) })?;
        let mut loaded = LoadedPlugin {
            name,
            memory_mib: capabilities.memory_mib,
            timeout: Duration::from_millis(capabilities.timeout_ms),
            compiled,
            idle: Mutex::new(Vec::new()),
            description: Vec::new(),
        };
        // Every plugin exports `describe`: calling it now instantiates the module (Extism does so
        // lazily), so one that cannot run under its limits fails here, at load, not in a turn.
        let mut instance = loaded.instance()?;
        loaded.description =
            loaded.run(&mut instance, "describe", b"", None).map_err(|error| match error {
                PluginError::Call { plugin, failure, .. } => {
                    PluginError::Load { plugin, reason: format!("its `describe` failed: {failure}") }
                }
                other => other,
            })?;
        loaded.give_back(instance);
        Ok(loaded)
    }
}

/// A compiled plugin, ready to call.
pub struct LoadedPlugin {
    name: String,
    memory_mib: u32,
    timeout: Duration,
    compiled: extism::CompiledPlugin,
    idle: Mutex<Vec<extism::Plugin>>,
    /// What its `describe` answered at load.
    description: Vec<u8>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("name", &self.name).finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What its `describe` export answered when it was loaded.
    pub fn description(&self) -> &[u8] {
        &self.description
    }

    /// Calls the export `function` with `input` on this thread (it blocks for up to the plugin's
    /// time limit: from async code use [`LoadedPlugin::call`]).
    pub fn call_blocking(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        let mut instance = self.instance()?;
        self.run(&mut instance, function, input, None).inspect(|_| self.give_back(instance))
    }

    /// Calls the export `function` with `input` on a blocking thread; `cancel` stops it at once.
    pub async fn call(
        self: &Arc<Self>,
        function: &str,
        input: Vec<u8>,
        cancel: &CancellationToken,
    ) -> Result<Vec<u8>, PluginError> {
        let mut instance = self.instance()?;
        let handle = instance.cancel_handle();
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let this = Arc::clone(self);
        let (function_name, flag) = (function.to_owned(), Arc::clone(&cancelled));
        let mut task = tokio::task::spawn_blocking(move || {
            let result = this.run(&mut instance, &function_name, &input, Some(&flag));
            if result.is_ok() {
                this.give_back(instance);
            }
            result
        });
        let joined = tokio::select! {
            joined = &mut task => joined,
            () = cancel.cancelled() => {
                cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = handle.cancel();
                task.await
            }
        };
        joined.unwrap_or_else(|e| {
            Err(self.failure(function, CallFailure::Trapped(format!("the host task ended: {e}"))))
        })
    }

    fn run(
        &self,
        instance: &mut extism::Plugin,
        function: &str,
        input: &[u8],
        cancelled: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Vec<u8>, PluginError> {
        if !instance.function_exists(function) {
            return Err(PluginError::Interface {
                plugin: self.name.clone(),
                function: function.to_owned(),
                problem: "the module does not export it".to_owned(),
            });
        }
        match instance.call::<&[u8], &[u8]>(function, input) {
            Ok(output) => Ok(output.to_vec()),
            Err(error) => {
                let cancelled = cancelled.is_some_and(|flag| flag.load(std::sync::atomic::Ordering::SeqCst));
                let failure = self.classify(&error, cancelled);
                if !matches!(failure, CallFailure::Reported(_)) {
                    tracing::warn!(plugin = %self.name, function, "plugin call failed: {failure}");
                }
                Err(self.failure(function, failure))
            }
        }
    }

    fn failure(&self, function: &str, failure: CallFailure) -> PluginError {
        PluginError::Call { plugin: self.name.clone(), function: function.to_owned(), failure }
    }

    fn classify(&self, error: &extism::Error, cancelled: bool) -> CallFailure {
        let root = root(error);
        let whole = format!("{error:?}");
        if root == "timeout" {
            return if cancelled { CallFailure::Cancelled } else { CallFailure::TimedOut(self.timeout) };
        }
        if root == "oom" {
            return CallFailure::OutOfMemory(self.memory_mib);
        }
        if root.contains("out of fuel") || root.contains("all fuel consumed") {
            return CallFailure::OutOfFuel;
        }
        if whole.contains("wasm backtrace") || whole.contains("wasm trap") {
            return CallFailure::Trapped(root);
        }
        CallFailure::Reported(root)
    }

    fn instance(&self) -> Result<extism::Plugin, PluginError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(instance) => Ok(instance),
            None => extism::Plugin::new_from_compiled(&self.compiled).map_err(|e| {
                let reason = match root(&e) {
                    oom if oom == "oom" => {
                        format!(
                            "its module needs more than its {} MiB of memory (its memory_mib)",
                            self.memory_mib
                        )
                    }
                    other => other,
                };
                PluginError::Load { plugin: self.name.clone(), reason }
            }),
        }
    }

    fn give_back(&self, instance: extism::Plugin) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_INSTANCES
        {
            idle.push(instance);
        }
    }

    /// Drops the idle instances, so the next call makes a fresh one (benchmarks of cold calls).
    pub fn drop_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// The innermost cause of an engine error, which is what says what happened.
fn root(error: &extism::Error) -> String {
    error.root_cause().to_string()
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
