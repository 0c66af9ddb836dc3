//! Client authentication with SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL's
//! `scram-sha-256` method: the node keeps a verifier of the superuser's password (a salt, an
//! iteration count, and two keys derived from the salted password), never the password, and a
//! client proves it knows the password without sending it. pgwire implements the exchange's
//! messages (`ScramServerAuth`); this module decides who may log in.
//!
//! Only the superuser `postgres` exists so far. Any other user name goes through the same
//! exchange against a secret no password matches, and fails as a wrong password does: the
//! answer does not tell whether a role exists (PostgreSQL's "mock authentication").

use std::sync::Mutex;

use pgwire::api::auth::sasl::scram::{
    gen_salted_password, ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal,
};

use sqlkeeper_session::ClientError;

/// The role a password file configures.
pub const SUPERUSER: &str = "postgres";

/// PBKDF2 iterations of a verifier made here: PostgreSQL's default (`scram_iterations`), the
/// minimum RFC 7677 asks for. Each login costs the client and the node this many HMACs.
const SCRAM_ITERATIONS: usize = 4096;

/// Bytes of a verifier's random salt (PostgreSQL's `SCRAM_DEFAULT_SALT_LEN`).
const SALT_BYTES: usize = 16;

/// What a client must prove to connect.
pub struct ClientAuth {
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth { superuser: SCRAM-SHA-256 verifier }")
    }
}

impl ClientAuth {
    /// The superuser's password, kept only as a SCRAM verifier with a fresh random salt.
    pub fn superuser_password(password: &str) -> ClientAuth {
        let salt = rand::random::<[u8; SALT_BYTES]>().to_vec();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        match ScramSecret::verifier_from_salted_password(salt, salted, SCRAM_ITERATIONS) {
            ScramSecret::Verifier {
                salt,
                stored_key,
                server_key,
                ..
            } => ClientAuth {
                salt,
                stored_key,
                server_key,
            },
            ScramSecret::SaltedPassword { .. } => unreachable!("a verifier is made"),
        }
    }

    /// The secret `user` must prove: the superuser's verifier, or for any other name one that
    /// no password matches (random keys, a salt derived from the name so that it is the same
    /// on every attempt, as a real role's would be).
    fn secret_for(&self, user: &str) -> ScramSecret {
        if user == SUPERUSER {
            return ScramSecret::Verifier {
                salt: self.salt.clone(),
                iterations: SCRAM_ITERATIONS,
                stored_key: self.stored_key.clone(),
                server_key: self.server_key.clone(),
            };
        }
        let salt = gen_salted_password(user, &self.server_key, 1)[..SALT_BYTES].to_vec();
        ScramSecret::Verifier {
            salt,
            iterations: SCRAM_ITERATIONS,
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }

    /// The server-first message for a client-first message of `user`, and the state that
    /// checks the client's proof.
    pub(crate) fn first(
        &self,
        user: &str,
        client_first: &[u8],
    ) -> Result<(String, ScramServerAuthWaitingForClientFinal), ClientError> {
        ScramServerAuth::new()
            .on_client_first_message_with_secret(client_first, self.secret_for(user))
            .map_err(|e| {
                tracing::info!(user, error = %e, "SCRAM client-first message refused");
                failed(user)
            })
    }
}

/// A connection's exchange between the server-first message and the client's proof.
#[derive(Default)]
pub(crate) struct Exchange(pub(crate) Mutex<Option<ScramServerAuthWaitingForClientFinal>>);

/// PostgreSQL's answer to a failed login, whatever failed (FATAL: the connection closes).
pub(crate) fn failed(user: &str) -> ClientError {
    ClientError::fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgwire::api::auth::sasl::scram::random_nonce;

    /// A client's side of the exchange, written from RFC 5802 with pgwire's message parsers'
    /// formats: `n,,n=,r=NONCE`, then `c=biws,r=NONCE,p=PROOF`.
    fn login(auth: &ClientAuth, user: &str, password: &str) -> Result<String, String> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let nonce = random_nonce();
        let bare = format!("n=,r={nonce}");
        let (server_first, waiting) = auth
            .first(user, format!("n,,{bare}").as_bytes())
            .map_err(|e| e.sqlstate.to_string())?;
        let fields: std::collections::HashMap<&str, &str> = server_first
            .split(',')
            .filter_map(|f| f.split_once('='))
            .collect();
        let salt = STANDARD.decode(fields["s"]).unwrap();
        let iterations: usize = fields["i"].parse().unwrap();
        let salted = gen_salted_password(password, &salt, iterations);
        let hmac = |key: &[u8], msg: &[u8]| {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg)
                .as_ref()
                .to_vec()
        };
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = ring::digest::digest(&ring::digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={}", fields["r"]);
        let message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(stored_key.as_ref(), message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let client_final = format!("{without_proof},p={}", STANDARD.encode(proof));
        waiting
            .on_client_final_message(client_final.as_bytes())
            .map_err(|_| "28P01".to_string())
    }

    #[test]
    fn only_the_right_password_of_the_superuser_logs_in() {
        let auth = ClientAuth::superuser_password("s3cret ☃");
        assert!(login(&auth, SUPERUSER, "s3cret ☃").is_ok_and(|f| f.starts_with("v=")));
        assert_eq!(login(&auth, SUPERUSER, "s3cret"), Err("28P01".into()));
        assert_eq!(login(&auth, SUPERUSER, ""), Err("28P01".into()));
        // Another role: the same exchange, the same failure, with its password or any other.
        assert_eq!(login(&auth, "alice", "s3cret ☃"), Err("28P01".into()));
        // A salt per name that does not change between attempts.
        let salt = |user: &str| match auth.secret_for(user) {
            ScramSecret::Verifier { salt, .. } => salt,
            ScramSecret::SaltedPassword { salt, .. } => salt,
        };
        assert_eq!(salt("alice"), salt("alice"));
        assert_ne!(salt("alice"), salt("bob"));
        // Garbage instead of a client-first message.
        assert_eq!(
            auth.first(SUPERUSER, b"\xff\x00").unwrap_err().sqlstate,
            "28P01"
        );
    }

    /// Client bytes never reach a panic: malformed and random SCRAM messages at both steps
    /// are a failed login.
    #[test]
    fn malformed_scram_messages_fail_the_login() {
        let auth = ClientAuth::superuser_password("pw");
        let firsts: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=",
            b"n,,r=",
            b"y,,n=,r=",
            b"p=x,,n=,r=a",
            b"n,a=x,n=,r=abc",
            b"n,,n=,r=abc,",
            b"n,,m=ext,n=,r=a",
            b"\xff\xfe",
            b"n,,n=,r=\xe2\x98",
        ];
        let finals: &[&[u8]] = &[
            b"",
            b"c=",
            b"c=biws",
            b"c=biws,r=",
            b"c=biws,r=x,p=",
            b"c=biws,r=x,p=!!!",
            b"c=####,r=x,p=AAAA",
            b"r=x,p=AAAA",
            b"c=biws,p=AAAA",
            b"\x00",
        ];
        for first in firsts {
            let _ = auth.first(SUPERUSER, first);
        }
        let (_, waiting) = auth.first(SUPERUSER, b"n,,n=,r=abc").unwrap();
        for last in finals {
            assert!(waiting.on_client_final_message(last).is_err());
        }
        // Random bytes, and random printable fields, from a fixed seed.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"nyp=,rcsi-_abcAZ09+/\xff";
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = auth.first(SUPERUSER, &bytes);
            let _ = waiting.on_client_final_message(&bytes);
        }
    }
}
