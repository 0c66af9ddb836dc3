//! Peer authentication: nodes prove to each other that they know the cluster secret
//! (`--peer-secret-file`) before any Raft, forwarding or membership request is read.
//!
//! The proof is a challenge–response over fresh nonces from both sides, so the secret never
//! crosses the network and a recorded handshake cannot be replayed:
//!
//! ```text
//! connecting node                                 accepting node
//!   Hello { from, to, nonce: c }            ──▶
//!                                           ◀──   Challenge { nonce: s, proof: HMAC(k, server | c | s | from | to) }
//!   (checks the accepting node's proof)
//!   Proof { proof: HMAC(k, client | c | s | from | to) } ──▶
//!                                           ◀──   HelloOk           (or Refused, and the connection closes)
//! ```
//!
//! Both sides prove themselves: a node never sends a write, a vote or a snapshot to a
//! listener that does not know the secret either. `k` is HMAC-SHA-256 keyed by the secret;
//! proofs are compared in constant time (`ring::hmac::verify`). The secret authenticates the
//! handshake only: traffic after it is not encrypted (`docs/architecture.md`, "Peers").

use std::fmt;
use std::sync::Arc;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::peer_tls::PeerTls;
use crate::types::NodeId;

/// Shortest secret accepted. A recorded handshake lets an eavesdropper test guesses offline
/// at HMAC speed; 32 bytes (e.g. `openssl rand -hex 16` is 32 characters) are out of reach
/// of that, a short password is not.
pub const PEER_SECRET_BYTES_MIN: usize = 32;

/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;

/// A handshake nonce.
pub type Nonce = [u8; NONCE_BYTES];

/// An HMAC-SHA-256 proof.
pub type Proof = [u8; 32];

/// Domain-separation label of this handshake's proofs (bumped with its format).
const LABEL: &[u8] = b"sqlkeeper peer handshake v1";

/// Which side of the handshake a proof speaks for: the two proofs over the same nonces differ,
/// so one side's proof can never be reflected back as the other's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    /// The accepting node.
    Server,
    /// The connecting node.
    Client,
}

/// How this node authenticates its peers: with the cluster secret, with mutual TLS
/// ([`PeerTls`]), both, or not at all (every node on loopback, the default).
#[derive(Clone, Default)]
pub struct PeerAuth {
    key: Option<Arc<hmac::Key>>,
    tls: Option<PeerTls>,
}

impl fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerAuth(secret: {}, tls: {})",
            self.key.is_some(),
            self.tls.is_some()
        )
    }
}

impl PeerAuth {
    /// No authentication: every peer that says hello is served.
    pub fn none() -> PeerAuth {
        PeerAuth::default()
    }

    /// The same, with every connection over mutual TLS.
    pub fn with_tls(self, tls: PeerTls) -> PeerAuth {
        PeerAuth {
            tls: Some(tls),
            ..self
        }
    }

    /// Mutual TLS, if configured.
    pub(crate) fn tls(&self) -> Option<&PeerTls> {
        self.tls.as_ref()
    }

    /// Authentication with `secret`, which every member must share.
    pub fn with_secret(secret: &[u8]) -> Result<PeerAuth, String> {
        if secret.len() < PEER_SECRET_BYTES_MIN {
            return Err(format!(
                "the peer secret has {} bytes; at least {PEER_SECRET_BYTES_MIN} are required \
                 (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(PeerAuth {
            key: Some(Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret))),
            tls: None,
        })
    }

    /// Whether peers must prove the secret.
    pub(crate) fn is_required(&self) -> bool {
        self.key.is_some()
    }

    /// A fresh random nonce.
    pub(crate) fn nonce() -> std::io::Result<Nonce> {
        let mut n = [0u8; NONCE_BYTES];
        SystemRandom::new()
            .fill(&mut n)
            .map_err(|_| std::io::Error::other("no randomness for a handshake nonce"))?;
        Ok(n)
    }

    fn message(side: Side, client: &Nonce, server: &Nonce, from: NodeId, to: NodeId) -> Vec<u8> {
        let side: &[u8] = match side {
            Side::Server => b"server",
            Side::Client => b"client",
        };
        let mut m = Vec::with_capacity(LABEL.len() + 8 + 2 * NONCE_BYTES + 16);
        m.extend_from_slice(LABEL);
        m.push(0);
        m.extend_from_slice(side);
        m.push(0);
        m.extend_from_slice(client);
        m.extend_from_slice(server);
        m.extend_from_slice(&from.to_be_bytes());
        m.extend_from_slice(&to.to_be_bytes());
        m
    }

    /// `side`'s proof for a handshake, or `None` without a secret.
    pub(crate) fn proof(
        &self,
        side: Side,
        client: &Nonce,
        server: &Nonce,
        from: NodeId,
        to: NodeId,
    ) -> Option<Proof> {
        let key = self.key.as_ref()?;
        let tag = hmac::sign(key, &Self::message(side, client, server, from, to));
        let mut proof = [0u8; 32];
        proof.copy_from_slice(tag.as_ref());
        Some(proof)
    }

    /// Whether `proof` is `side`'s proof for the handshake (false without a secret).
    pub(crate) fn verify(
        &self,
        side: Side,
        client: &Nonce,
        server: &Nonce,
        from: NodeId,
        to: NodeId,
        proof: &Proof,
    ) -> bool {
        self.key.as_ref().is_some_and(|key| {
            hmac::verify(key, &Self::message(side, client, server, from, to), proof).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_the_secret_the_side_the_nonces_and_the_nodes() {
        let a = PeerAuth::with_secret(&[7u8; 32]).unwrap();
        let b = PeerAuth::with_secret(&[8u8; 32]).unwrap();
        let (c, s) = (PeerAuth::nonce().unwrap(), PeerAuth::nonce().unwrap());
        assert_ne!(c, s);
        let p = a.proof(Side::Client, &c, &s, 1, 2).unwrap();
        assert!(a.verify(Side::Client, &c, &s, 1, 2, &p));
        assert!(!b.verify(Side::Client, &c, &s, 1, 2, &p), "another secret");
        assert!(!a.verify(Side::Server, &c, &s, 1, 2, &p), "the other side");
        assert!(!a.verify(Side::Client, &s, &c, 1, 2, &p), "other nonces");
        assert!(!a.verify(Side::Client, &c, &s, 3, 2, &p), "another sender");
        assert!(!a.verify(Side::Client, &c, &s, 1, 3, &p), "another target");
        assert!(!PeerAuth::none().verify(Side::Client, &c, &s, 1, 2, &p));
        assert!(PeerAuth::with_secret(b"short").is_err());
    }
}
