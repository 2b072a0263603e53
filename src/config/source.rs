//! Where config files come from: a directory, or the copy embedded for `--dev`.

use std::path::{Path, PathBuf};

use super::ConfigProblem;

/// The sample config shipped in `config/`, embedded so `serve --dev` needs no files.
const EMBEDDED: &[(&str, &str)] = &[
    ("gateway.yaml", include_str!("../../config/gateway.yaml")),
    ("routes/items.yaml", include_str!("../../config/routes/items.yaml")),
    ("routes/production.yaml", include_str!("../../config/routes/production.yaml")),
    ("routes/queued.yaml", include_str!("../../config/routes/queued.yaml")),
    ("sensors/press-line.yaml", include_str!("../../config/sensors/press-line.yaml")),
    ("wsdl/sample-erp.wsdl", include_str!("../../config/wsdl/sample-erp.wsdl")),
];

/// A set of config files addressed by paths relative to the config directory.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Files on disk under this directory.
    Dir(PathBuf),
    /// The sample config compiled into the binary.
    Embedded,
}

impl ConfigSource {
    /// The filesystem path of a config-relative path (absolute paths stay as they are).
    pub fn path(&self, rel: &str) -> PathBuf {
        match self {
            ConfigSource::Dir(dir) => dir.join(rel),
            ConfigSource::Embedded => PathBuf::from(rel),
        }
    }

    /// Reads one file.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, ConfigProblem> {
        let problem = |message: String| ConfigProblem { file: rel.to_path_buf(), line: None, message };
        match self {
            ConfigSource::Dir(dir) => std::fs::read(dir.join(rel))
                .map_err(|e| problem(format!("cannot read {}: {e}", dir.join(rel).display()))),
            ConfigSource::Embedded => EMBEDDED
                .iter()
                .find(|(p, _)| Path::new(p) == rel)
                .map(|(_, text)| text.as_bytes().to_vec())
                .ok_or_else(|| problem("no such file in the embedded sample config".into())),
        }
    }

    /// The route files (`routes/*.yaml` and `*.yml`), sorted so the order is stable.
    pub fn route_files(&self) -> Result<Vec<PathBuf>, ConfigProblem> {
        self.yaml_files("routes")
    }

    /// The data dictionary's files (`sensors/*.yaml` and `*.yml`), sorted.
    pub(crate) fn sensor_files(&self) -> Result<Vec<PathBuf>, ConfigProblem> {
        self.yaml_files("sensors")
    }

    /// The YAML files directly in `folder`, sorted so the order is stable.
    fn yaml_files(&self, folder: &str) -> Result<Vec<PathBuf>, ConfigProblem> {
        let is_yaml = |p: &Path| p.extension().is_some_and(|e| e == "yaml" || e == "yml");
        let mut files: Vec<PathBuf> = match self {
            ConfigSource::Dir(dir) => {
                let full = dir.join(folder);
                if !full.exists() {
                    return Ok(Vec::new());
                }
                std::fs::read_dir(&full)
                    .map_err(|e| ConfigProblem {
                        file: folder.into(),
                        line: None,
                        message: format!("cannot list {}: {e}", full.display()),
                    })?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| is_yaml(p))
                    .filter_map(|p| p.file_name().map(|n| Path::new(folder).join(n)))
                    .collect()
            }
            ConfigSource::Embedded => {
                EMBEDDED.iter().map(|(p, _)| PathBuf::from(p)).filter(|p| p.starts_with(folder) && is_yaml(p)).collect()
            }
        };
        files.sort();
        Ok(files)
    }
}

impl ConfigSource {
    /// A problem with its file shown under the config directory, as a user would open it.
    pub(crate) fn display_path(dir: &Path, p: &ConfigProblem) -> String {
        ConfigProblem { file: dir.join(&p.file), ..p.clone() }.to_string()
    }
}

impl ConfigSource {
    /// SHA-256 over every file of the config (path and content), shortened: identifies the
    /// loaded config in metrics and logs.
    pub fn fingerprint(&self) -> String {
        use aws_lc_rs::digest::{Context, SHA256};
        let mut ctx = Context::new(&SHA256);
        match self {
            ConfigSource::Embedded => {
                for (p, text) in EMBEDDED {
                    ctx.update(p.as_bytes());
                    ctx.update(text.as_bytes());
                }
            }
            ConfigSource::Dir(dir) => {
                let mut files = Vec::new();
                collect_files(dir, &mut files);
                files.sort();
                for f in files {
                    ctx.update(f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().as_bytes());
                    ctx.update(&std::fs::read(&f).unwrap_or_default());
                }
            }
        }
        ctx.finish().as_ref().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
