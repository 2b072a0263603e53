//! Secrets are never written in config files: only `*_env` and `*_file` references.

use super::ConfigSource;

/// Resolves exactly one of an environment variable or a file (a relative path is relative
/// to the config directory, like every other path in the config); `what` names the field
/// pair (`password` → `password_env` / `password_file`) for the error message.
pub fn resolve(source: &ConfigSource, env: Option<&str>, file: Option<&str>, what: &str) -> Result<String, String> {
    match (env, file) {
        (Some(var), None) => {
            std::env::var(var).map_err(|_| format!("environment variable {var} ({what}_env) is not set"))
        }
        (None, Some(path)) => std::fs::read_to_string(source.path(path))
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read {what}_file {path}: {e}")),
        _ => Err(format!("give exactly one of {what}_env or {what}_file (never the secret itself)")),
    }
}
