//! Admin commands that make credentials: `veneer keys new`, `veneer client new`,
//! `veneer client hash`. Each returns what to print; secrets are printed once, never stored.

use std::io::Read;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;

use crate::auth::{clients, keys};

/// A random 256-bit secret, base64url.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    // The system RNG failing is unrecoverable and would make every secret guessable: abort.
    SystemRandom::new().fill(&mut bytes).unwrap_or_else(|_| std::process::abort());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes a new private key file readable only by its owner; prints its key id.
pub fn new_key(dir: &Path, alg: &str) -> Result<String, String> {
    let alg = match alg {
        "ES256" => Algorithm::ES256,
        "EdDSA" | "Ed25519" => Algorithm::EdDSA,
        other => return Err(format!("--alg {other} is not supported; use ES256 or EdDSA")),
    };
    let pem = keys::generate_pem(alg)?;
    let key = keys::from_pem(&pem)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Names sort by creation time, so the newest key is the one that signs: a stamp in
    // milliseconds, past every key already there (two keys in one millisecond, or a clock
    // set back, still sort in the order they were made).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut stamp = newest_stamp(dir).map_or(now, |newest| now.max(newest + 1));
    loop {
        let path = dir.join(format!("key-{stamp:015}.pem"));
        match write_private(&path, &pem) {
            Ok(()) => return Ok(format!("wrote {} ({alg:?}, kid {})\n", path.display(), key.kid)),
            // Another `keys new` took this name a moment ago.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => stamp += 1,
            Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
        }
    }
}

/// The largest stamp among `key-<stamp>.pem` files in `dir`.
fn newest_stamp(dir: &Path) -> Option<u128> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("key-")?.strip_suffix(".pem")?.parse().ok())
        .max()
}

/// Creates `path` (never overwriting) readable only by its owner.
#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

/// Creates `path` (never overwriting).
#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)?.write_all(text.as_bytes())
}

/// A new client: its secret (shown once) and the config lines to paste.
pub(crate) fn new_client(id: &str, scopes: &[String]) -> Result<String, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
        return Err("--id must be letters, digits, '-', '.' or '_'".into());
    }
    let secret = random_secret();
    let hash = clients::hash_secret(&secret)?;
    let scopes = scopes.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ");
    Ok(format!(
        "client_id:     {id}\nclient_secret: {secret}\n\n(The secret is shown only now. Add these lines under auth.clients in gateway.yaml:)\n\n    - id: {id}\n      secret_hash: \"{hash}\"\n      scopes: [{scopes}]\n"
    ))
}

/// Hashes a secret read from standard input.
pub(crate) fn hash_stdin() -> Result<String, String> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret).map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
    let secret = secret.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err("no secret on standard input".into());
    }
    Ok(format!("{}\n", clients::hash_secret(secret)?))
}
