//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677) in PostgreSQL's form,
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), as `pg_authid`
//! keeps them: what a role's password is stored as, so that neither the log nor the state
//! holds a password. A `PASSWORD 'secret'` becomes one here, in the session, with a fresh
//! random salt, before the statement is replicated; a password a client already hashed (psql's
//! `\password` sends `SCRAM-SHA-256$…`) is kept as it is.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use std::num::NonZeroU32;

use crate::ClientError;

/// PBKDF2 iterations of a verifier made here: PostgreSQL's default (`scram_iterations`), the
/// minimum RFC 7677 asks for. Each login costs the client and the node this many HMACs.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Bytes of a verifier's random salt (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
const SALT_BYTES: usize = 16;

/// Most iterations a stored verifier may ask a client for: past PostgreSQL's own limit
/// (`INT_MAX`) nothing is meaningful, and a node checks nothing itself at login (it sends the
/// count to the client), so this only refuses nonsense.
const ITERATIONS_MAX: u32 = i32::MAX as u32;

/// A SCRAM-SHA-256 verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// The salt of the salted password.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`: what a client's proof is checked against.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`: what the server signs its last message with.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier { SCRAM-SHA-256, keys not shown }")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message)
        .as_ref()
        .to_vec()
}

impl Verifier {
    /// The verifier of `password` with a fresh random salt. The password is normalized with
    /// SASLprep, as clients normalize it (a password that is not valid for SASLprep is used as
    /// it is, as PostgreSQL does).
    pub fn of_password(password: &str) -> Verifier {
        let salt: [u8; SALT_BYTES] = rand::random();
        Verifier::with_salt(password, &salt, SCRAM_ITERATIONS)
    }

    /// The verifier of `password` with `salt` and `iterations`.
    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> Verifier {
        let normalized = stringprep::saslprep(password)
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| password.to_string());
        let mut salted = [0u8; digest::SHA256_OUTPUT_LEN];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN),
            salt,
            normalized.as_bytes(),
            &mut salted,
        );
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            salt: salt.to_vec(),
            iterations,
            stored_key: digest::digest(&digest::SHA256, &client_key)
                .as_ref()
                .to_vec(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// Reads PostgreSQL's form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iterations_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iterations_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok()?;
        let key = |k: &str| {
            STANDARD
                .decode(k)
                .ok()
                .filter(|k| k.len() == digest::SHA256_OUTPUT_LEN)
        };
        let v = Verifier {
            salt: STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?,
            iterations,
            stored_key: key(stored)?,
            server_key: key(server)?,
        };
        (1..=ITERATIONS_MAX).contains(&iterations).then_some(v)
    }

    /// The value a role's password is stored as: an already hashed SCRAM verifier as it is,
    /// anything else hashed here. An MD5 hash (`md5…`, 35 characters) cannot log in over
    /// SCRAM, so it is refused rather than stored.
    pub fn stored_form(password: &str) -> Result<String, ClientError> {
        if password.starts_with("SCRAM-SHA-256$") {
            return match Verifier::parse(password) {
                Some(v) => Ok(v.to_string()),
                None => Err(ClientError::new(
                    "22023",
                    "invalid SCRAM-SHA-256 secret (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)",
                )),
            };
        }
        let md5 = password.len() == 35
            && password.starts_with("md5")
            && password[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if md5 {
            return Err(ClientError::new(
                "0A000",
                "MD5 password hashes are not supported: give the password, or a SCRAM-SHA-256 secret",
            ));
        }
        Ok(Verifier::of_password(password).to_string())
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_are_postgres_form_and_read_back() {
        // RFC 7677's test vector: user "user", password "pencil", salt
        // W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations; its ServerSignature and ClientProof
        // follow from these keys.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", &salt, 4096);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(Verifier::parse(&text), Some(v.clone()));
        assert_eq!(Verifier::stored_form(&text).unwrap(), text);
        // Fresh salts: the same password gives another verifier each time.
        let (a, b) = (Verifier::of_password("x"), Verifier::of_password("x"));
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.iterations, SCRAM_ITERATIONS);
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
            "SCRAM-SHA-256$4096:$AAAA:AAAA",
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$short:short",
            "SCRAM-SHA-256$x:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA",
        ] {
            assert_eq!(Verifier::parse(bad), None, "{bad}");
            assert_eq!(Verifier::stored_form(bad).unwrap_err().sqlstate, "22023");
        }
        assert_eq!(
            Verifier::stored_form("md5d41d8cd98f00b204e9800998ecf8427e")
                .unwrap_err()
                .sqlstate,
            "0A000"
        );
        // A plain password is hashed.
        assert!(Verifier::parse(&Verifier::stored_form("md5 is my password").unwrap()).is_some());
    }
}
