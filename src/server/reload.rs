//! Reload without restart: on SIGHUP, on a change under the config directory (debounced),
//! or on `POST /admin/reload`, compile a new snapshot and swap it whole. In-flight requests
//! keep the snapshot they started with; an invalid config is logged with file, line and
//! reason, counted, and changes nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum_server::tls_rustls::RustlsConfig;

use crate::config::compile::CompileOptions;
use crate::config::{self, ConfigError, ConfigSource, Gateway};
use crate::telemetry;

/// Quiet time after the last file event before reloading (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(400);

/// Compiles and swaps snapshots for one config directory.
pub struct Reloader {
    dir: PathBuf,
    options: CompileOptions,
    gateway: Arc<ArcSwap<Gateway>>,
    tls: Arc<OnceLock<RustlsConfig>>,
    hash: Mutex<String>,
    // One reload at a time; triggers that arrive meanwhile wait and then see the newest files.
    running: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader for `dir`; `options.retained` carries state across snapshots.
    pub(crate) fn new(
        dir: PathBuf,
        options: CompileOptions,
        gateway: Arc<ArcSwap<Gateway>>,
        tls: Arc<OnceLock<RustlsConfig>>,
    ) -> Arc<Self> {
        let hash = ConfigSource::Dir(dir.clone()).fingerprint();
        telemetry::config_loaded(None, &hash);
        Arc::new(Reloader { dir, options, gateway, tls, hash: Mutex::new(hash), running: tokio::sync::Mutex::new(()) })
    }

    /// Compiles the directory and swaps the snapshot; on error the old one keeps serving.
    pub async fn reload(&self, trigger: &str) -> Result<String, ConfigError> {
        let _one_at_a_time = self.running.lock().await;
        let (dir, options) = (self.dir.clone(), self.options.clone());
        // Compiling reads files and parses WSDLs: keep it off the request threads.
        let compiled = tokio::task::spawn_blocking(move || {
            let source = ConfigSource::Dir(dir);
            config::compile(&source, &options).map(|g| (g, source.fingerprint()))
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigError(vec![config::ConfigProblem {
                file: "".into(),
                line: None,
                message: format!("reload task failed: {e}"),
            }]))
        })
        .and_then(|(gateway, hash)| self.keeps_auth(&gateway).map(|()| (gateway, hash)));
        match compiled {
            Ok((gateway, hash)) => {
                // New certificates apply to new connections; open ones keep theirs.
                if let (Some(live), Some(config)) = (self.tls.get(), gateway.server.tls.clone()) {
                    live.reload_from_config(config);
                }
                let gateway = Arc::new(gateway);
                self.options.retained.commit_sessions(&gateway.backends);
                self.gateway.store(gateway);
                let mut current = self.hash.lock().unwrap_or_else(|p| p.into_inner());
                telemetry::config_loaded(Some(&current), &hash);
                telemetry::reload(true);
                tracing::info!(trigger, config = %hash, "config reloaded");
                *current = hash.clone();
                Ok(hash)
            }
            Err(e) => {
                telemetry::reload(false);
                for p in &e.0 {
                    tracing::error!(trigger, problem = %ConfigSource::display_path(&self.dir, p), "config reload rejected; the previous config keeps serving");
                }
                Err(e)
            }
        }
    }

    /// A reload that drops `auth:` would open every route at once (a bad merge, a file
    /// truncated by an editor): refused unless the new config says `allow_anonymous: true`.
    fn keeps_auth(&self, new: &Gateway) -> Result<(), ConfigError> {
        if self.gateway.load().auth.is_none() || new.auth.is_some() {
            return Ok(());
        }
        if new.server.allow_anonymous {
            tracing::error!(
                "the reloaded config has no auth: section; every route is now open to anyone (allow_anonymous: true)"
            );
            return Ok(());
        }
        Err(ConfigError(vec![config::ConfigProblem {
            file: "gateway.yaml".into(),
            line: None,
            message: "the new config has no auth: section, which would open every route to anyone; restore auth:, or add server.allow_anonymous: true to mean it".into(),
        }]))
    }

    /// Reloads on SIGHUP and on file changes under the directory, until the process ends.
    pub fn watch(self: &Arc<Self>) -> Result<(), String> {
        #[cfg(unix)]
        {
            let me = self.clone();
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let _ = me.reload("SIGHUP").await;
                }
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        // Watched by its real path, so event paths compare with the data directory's.
        let root = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let (dir, gateway, watched) = (self.dir.clone(), self.gateway.clone(), root.clone());
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let Ok(e) = event else { return };
            if e.kind.is_access() {
                return;
            }
            // The queue's store under the config directory changes with every accepted
            // write; those changes are not config, and would keep the debounce from ever
            // settling (so a new sensor file would wait until the writes stop).
            let data = gateway.load().delivery.data_dir.as_ref().and_then(|d| {
                if d.is_absolute() { Some(d.clone()) } else { d.strip_prefix(&dir).ok().map(|rel| watched.join(rel)) }
            });
            if let Some(data) = data
                && !e.paths.is_empty()
                && e.paths.iter().all(|p| p.starts_with(&data))
            {
                return;
            }
            let _ = tx.send(());
        })
        .map_err(|e| format!("cannot watch the config directory: {e}"))?;
        notify::Watcher::watch(&mut watcher, &root, notify::RecursiveMode::Recursive)
            .map_err(|e| format!("cannot watch {}: {e}", self.dir.display()))?;
        let me = self.clone();
        tokio::spawn(async move {
            let _keep_watching = watcher;
            while rx.recv().await.is_some() {
                // Debounce: wait until the directory has been quiet for a moment.
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let _ = me.reload("file change").await;
            }
        });
        Ok(())
    }
}
