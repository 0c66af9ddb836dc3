//! Client authentication with SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL's
//! `scram-sha-256` method: the node keeps verifiers of passwords (a salt, an iteration count,
//! and two keys derived from the salted password), never a password, and a client proves it
//! knows the password without sending it. pgwire implements the exchange's
//! messages (`ScramServerAuth`); this module decides who may log in.
//!
//! A role logs in with its own password (`CREATE ROLE … LOGIN PASSWORD`, kept as a verifier in
//! the replicated state); `postgres` with the node's password file until `ALTER ROLE postgres
//! PASSWORD` gives it one. A name with no password to prove (no such role, no password) goes
//! through the same exchange against a secret no password matches, and fails as a wrong
//! password does: the answer does not tell whether a role exists (PostgreSQL's "mock
//! authentication"). A `NOLOGIN` role proves its password, then is refused (28000).

use std::sync::Mutex;

use pgwire::api::auth::sasl::scram::{
    ScramSecret, ScramServerAuth, ScramServerAuthWaitingForClientFinal,
};

use sqlkeeper_session::{ClientError, Login, Verifier};

use sqlkeeper_sql::SUPERUSER;

/// What a client must prove to connect: the password of its role (`CREATE ROLE … PASSWORD`,
/// `roles.rs`), or for `postgres`, unless `ALTER ROLE postgres PASSWORD` gave it one, the
/// password of the node's password file.
pub struct ClientAuth {
    superuser: Verifier,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientAuth { superuser: SCRAM-SHA-256 verifier }")
    }
}

impl ClientAuth {
    /// The superuser's password, kept only as a SCRAM verifier with a fresh random salt.
    pub fn superuser_password(password: &str) -> ClientAuth {
        ClientAuth {
            superuser: Verifier::of_password(password),
        }
    }

    /// The verifier `user` must prove, from its role's row (`login`, `None` if it has none),
    /// and whether the role may log in once it proved it (`NOLOGIN`: PostgreSQL checks that
    /// after the password, 28000). No verifier: no such role, or no password.
    pub(crate) fn verifier_of(&self, user: &str, login: Option<Login>) -> (Option<Verifier>, bool) {
        match login {
            // `postgres` without a password of its own has the password file's.
            Some(Login {
                may_log_in,
                verifier: None,
            }) if user == SUPERUSER => (Some(self.superuser.clone()), may_log_in),
            Some(Login {
                may_log_in,
                verifier,
            }) => (verifier, may_log_in),
            None if user == SUPERUSER => (Some(self.superuser.clone()), true),
            None => (None, false),
        }
    }

    /// The server-first message for a client-first message of `user` who must prove
    /// `verifier`, and the state that checks the client's proof. Without a verifier the
    /// exchange runs against a secret no password matches (random keys, a salt derived from
    /// the name so that it is the same on every attempt, as a real role's would be), and
    /// fails as a wrong password does.
    /// `bound`: the connection is TLS and SCRAM-SHA-256-PLUS was offered, bound to this
    /// certificate ([`ChannelBinding`]).
    pub(crate) fn first(
        &self,
        user: &str,
        verifier: Option<Verifier>,
        client_first: &[u8],
        bound: Option<&ChannelBinding>,
    ) -> Result<(String, ScramServerAuthWaitingForClientFinal), ClientError> {
        let v = verifier.unwrap_or_else(|| Verifier {
            salt: Verifier::with_salt(user, &self.superuser.server_key, 1).stored_key[..16]
                .to_vec(),
            iterations: sqlkeeper_session::SCRAM_ITERATIONS,
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        });
        let secret = ScramSecret::Verifier {
            salt: v.salt,
            iterations: v.iterations as usize,
            stored_key: v.stored_key,
            server_key: v.server_key,
        };
        let plain = ScramServerAuth::new();
        bound
            .map_or(&plain, |b| &b.0)
            .on_client_first_message_with_secret(client_first, secret)
            .map_err(|e| {
                tracing::info!(user, error = %e, "SCRAM client-first message refused");
                failed(user)
            })
    }
}

/// SCRAM-SHA-256-PLUS (RFC 5929's `tls-server-end-point`): the proof also covers the hash of
/// the node's TLS certificate, so a man in the middle that terminates TLS with another
/// certificate cannot relay the login. Offered on TLS connections, as PostgreSQL does; a
/// client there that says it could bind but saw no -PLUS offered (`y`) is refused as a
/// downgrade.
pub(crate) struct ChannelBinding(ScramServerAuth);

impl ChannelBinding {
    /// Binding to the first certificate of `cert_pem`; `None` when its signature algorithm
    /// has no `tls-server-end-point` hash (Ed25519), when only SCRAM-SHA-256 is offered.
    pub(crate) fn of_certificate(cert_pem: &[u8]) -> Option<ChannelBinding> {
        let mut scram = ScramServerAuth::new();
        match scram.configure_certificate(cert_pem) {
            Ok(()) => Some(ChannelBinding(scram)),
            Err(e) => {
                tracing::warn!(error = %e, "no SCRAM channel binding for this certificate");
                None
            }
        }
    }
}

/// A connection's exchange between the server-first message and the client's proof, and
/// whether its role may log in once the proof is right.
#[derive(Default)]
pub(crate) struct Exchange(pub(crate) Mutex<Option<(ScramServerAuthWaitingForClientFinal, bool)>>);

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
    use pgwire::api::auth::sasl::scram::{gen_salted_password, random_nonce};

    /// A client's side of the exchange, written from RFC 5802 with pgwire's message parsers'
    /// formats: `n,,n=,r=NONCE`, then `c=biws,r=NONCE,p=PROOF`.
    fn login(auth: &ClientAuth, user: &str, password: &str) -> Result<String, String> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let nonce = random_nonce();
        let bare = format!("n=,r={nonce}");
        let (verifier, _) = auth.verifier_of(user, None);
        let (server_first, waiting) = auth
            .first(user, verifier, format!("n,,{bare}").as_bytes(), None)
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
        // A role's row decides: its own password, or none (NOLOGIN, no password).
        let alice = Verifier::of_password("alice's");
        let row = |may_log_in, verifier: Option<&Verifier>| {
            Some(Login {
                may_log_in,
                verifier: verifier.cloned(),
            })
        };
        assert_eq!(
            auth.verifier_of("alice", row(true, Some(&alice))),
            (Some(alice.clone()), true)
        );
        assert_eq!(
            auth.verifier_of("alice", row(false, Some(&alice))),
            (Some(alice.clone()), false)
        );
        assert_eq!(auth.verifier_of("alice", row(true, None)), (None, true));
        assert_eq!(auth.verifier_of("alice", None), (None, false));
        assert_eq!(
            auth.verifier_of(SUPERUSER, row(true, Some(&alice))),
            (Some(alice.clone()), true)
        );
        // Garbage instead of a client-first message.
        assert_eq!(
            auth.first(SUPERUSER, None, b"\xff\x00", None)
                .unwrap_err()
                .sqlstate,
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
            let _ = auth.first(SUPERUSER, None, first, None);
        }
        let (_, waiting) = auth.first(SUPERUSER, None, b"n,,n=,r=abc", None).unwrap();
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
            let _ = auth.first(SUPERUSER, None, &bytes, None);
            let _ = waiting.on_client_final_message(&bytes);
        }
    }
}
