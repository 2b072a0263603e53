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
pub fn random_secret() -> String {
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
    // Names sort by creation time, so the newest key is the one that signs.
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    let path = dir.join(format!("key-{stamp:015}.pem"));
    write_private(&path, &pem)?;
    Ok(format!("wrote {} ({alg:?}, kid {})\n", path.display(), key.kid))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A new client: its secret (shown once) and the config lines to paste.
pub fn new_client(id: &str, scopes: &[String]) -> Result<String, String> {
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
pub fn hash_stdin() -> Result<String, String> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret).map_err(|e| format!("cannot read the secret from stdin: {e}"))?;
    let secret = secret.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err("no secret on standard input".into());
    }
    Ok(format!("{}\n", clients::hash_secret(secret)?))
}
