//! `veneer import-wsdl`: a WSDL (a file, or with `--allow-url` a download of it and its
//! imports) turned into a routes file, with the checks a user's arguments need.

use std::path::PathBuf;

/// Downloads a WSDL set into `wsdl/<backend>/` of the config directory (`--out`'s parent's
/// parent), or of the current directory.
pub(crate) async fn download_wsdl(
    url: &str,
    backend: &str,
    out: Option<&std::path::Path>,
    options: &crate::import::fetch::FetchOptions,
) -> Result<PathBuf, String> {
    if backend.is_empty() || !backend.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("--backend must be letters, digits, '-' or '_'".into());
    }
    let config_dir = out.and_then(|o| o.parent()).and_then(|p| p.parent()).unwrap_or(std::path::Path::new("."));
    let dir = config_dir.join("wsdl").join(backend);
    let main = crate::import::fetch::download(url, &dir, backend, options).await?;
    eprintln!("downloaded {url} and its imports into {}", dir.display());
    Ok(main)
}

/// A local WSDL outside the config directory (`--out`'s parent's parent) is copied with its
/// imports into `wsdl/<backend>/` there, so the routes file names it relative to the config
/// and the config works wherever it is deployed; one inside is used where it is.
pub(crate) async fn local_wsdl(
    file: &std::path::Path,
    backend: &str,
    out: Option<&std::path::Path>,
) -> Result<PathBuf, String> {
    let Some(config_dir) = out.and_then(|o| o.parent()).and_then(|p| p.parent()) else {
        return Ok(file.to_path_buf());
    };
    let inside = match (std::fs::canonicalize(config_dir), std::fs::canonicalize(file)) {
        (Ok(dir), Ok(f)) => f.starts_with(dir),
        // Unreadable: import_wsdl says so with the path as given.
        _ => return Ok(file.to_path_buf()),
    };
    if inside {
        return Ok(file.to_path_buf());
    }
    if backend.is_empty() || !backend.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("--backend must be letters, digits, '-' or '_'".into());
    }
    let dir = config_dir.join("wsdl").join(backend);
    let main = crate::import::fetch::copy_local(file, &dir, backend).await?;
    eprintln!(
        "copied {} and its imports into {} (the config names files inside its directory)",
        file.display(),
        dir.display()
    );
    Ok(main)
}

/// What `import-wsdl` imports into: the backend's name, its endpoint and port overrides.
pub(crate) struct ImportTarget<'a> {
    /// The backend's name in the config.
    pub backend: &'a str,
    /// Its endpoint, when not the WSDL's.
    pub endpoint: Option<&'a str>,
    /// The WSDL port (or service/port) to use.
    pub port: Option<&'a str>,
}

/// Reads a WSDL file and writes (or returns) a routes file for it; problems are messages
/// that say what to fix.
pub(crate) fn import_wsdl(
    file: &std::path::Path,
    target: &ImportTarget<'_>,
    out: Option<&std::path::Path>,
    version: Option<&str>,
) -> Result<String, String> {
    use crate::schema::wsdl::{self, ReadOptions};
    let (backend, endpoint) = (target.backend, target.endpoint);
    if file.to_string_lossy().contains("://") {
        return Err(
            "give a WSDL file, or pass --allow-url to download it and its imports once into files (the gateway never fetches a WSDL at run time)".into(),
        );
    }
    if backend.is_empty() || !backend.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err("--backend must be letters, digits, '-' or '_'".into());
    }
    let soap_version = match version {
        None => None,
        Some("1.1") => Some(crate::schema::SoapVersion::V11),
        Some("1.2") => Some(crate::schema::SoapVersion::V12),
        Some(v) => return Err(format!("--soap-version {v} is unknown; use 1.1 or 1.2")),
    };
    let bytes = crate::schema::imports::read_file(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let base = file.parent().map(std::path::Path::to_path_buf);
    // Imports may reach anywhere in the config directory the routes go to, as `check` allows.
    let root = out.and_then(|o| o.parent()).and_then(|p| p.parent()).map(std::path::Path::to_path_buf);
    let port = target.port.map(str::to_string);
    let model = wsdl::read(&bytes, ReadOptions { soap_version, base, root, port, ..Default::default() })
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if model.operations.is_empty() {
        return Err(format!("{}: no SOAP operation to import", file.display()));
    }
    for k in &model.skipped {
        let at = k.file.clone().unwrap_or_else(|| file.display().to_string());
        eprintln!("{at}:{}: operation {} left out: {}", k.line, k.operation, k.reason);
    }
    // The config references the WSDL relative to the config directory (out's parent's parent).
    let config_dir = out.and_then(|o| o.parent()).and_then(|p| p.parent());
    // Without --out the config directory is unknown: the path as given, to be adjusted.
    let absolute = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let wsdl_path = config_dir
        .and_then(|d| std::fs::canonicalize(d).ok())
        .and_then(|d| absolute.strip_prefix(&d).ok().map(|p| p.to_string_lossy().into_owned()))
        .unwrap_or_else(|| file.to_string_lossy().into_owned());
    let endpoint = endpoint
        .map(str::to_string)
        .or(model.endpoint.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080/CHANGE-ME".into());
    let yaml = crate::import::routes_yaml(
        &model,
        &crate::import::ImportOptions { backend, endpoint: &endpoint, wsdl_path: &wsdl_path, port: target.port },
    );
    match out {
        Some(path) => {
            std::fs::write(path, &yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(format!(
                "wrote {} ({} routes); run `veneer check` on its config directory\n",
                path.display(),
                model.operations.len()
            ))
        }
        None => Ok(yaml),
    }
}
