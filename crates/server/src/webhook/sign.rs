//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): a
//! secret is `whsec_` and the base64 of its key; a request carries
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`, a space-separated list of `v1,` and the base64 of
//! HMAC-SHA256 over `{id}.{timestamp}.{body}` — one per secret that signs
//! (two during a rotation), so any Standard Webhooks library verifies it
//! with either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};

const PREFIX: &str = "whsec_";
/// Bytes of a new secret's key.
const KEY_BYTES: usize = 32;

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key)?;
    Ok(format!("{PREFIX}{}", STANDARD.encode(key)))
}

/// One `v1,` signature of the request by `secret`; `None` for a secret
/// that is not `whsec_` and base64.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(PREFIX)?).ok()?;
    let mut mac = Hmac::<sha2_hmac::Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: a signature by each secret, space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .into_iter()
        .filter_map(|s| sign(s, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_the_same() {
        // The example of the specification's reference libraries.
        let signed = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            signed.as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn a_rotation_signs_with_both_secrets() -> Result<(), getrandom::Error> {
        let (old, new) = (new_secret()?, new_secret()?);
        assert!(new.starts_with("whsec_") && new != old);
        let header = signature_header([new.as_str(), old.as_str()], "e1", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(Some(parts[0].to_owned()), sign(&new, "e1", 1, b"{}"));
        assert_eq!(Some(parts[1].to_owned()), sign(&old, "e1", 1, b"{}"));
        // Another body, instant or id signs otherwise.
        assert_ne!(sign(&new, "e1", 1, b"{}"), sign(&new, "e1", 2, b"{}"));
        assert_ne!(sign(&new, "e1", 1, b"{}"), sign(&new, "e2", 1, b"{}"));
        assert_eq!(sign("not-a-secret", "e1", 1, b"{}"), None);
        Ok(())
    }
}
