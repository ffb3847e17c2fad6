//! The server side: challenges and the check of `Authorization` values.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::credentials::CredentialStore;
use super::digest::{response_digest, Algorithm, QopInput, ResponseInput};
use super::header::{push_quoted, DigestCredentials};
use super::hex;
use super::nonce::{NonceCheck, NonceCodec};
use super::replay::{CountCheck, NonceCountTable};

/// The result of checking one `Authorization` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome<'a> {
    /// The response is right, the nonce fresh and the nonce count new.
    Authenticated { username: Cow<'a, str> },
    /// The credentials are right but the nonce is too old (or its count history was
    /// evicted): challenge again with `stale=true`, so the client retries without asking
    /// its user.
    Stale,
    /// The value is for another realm: challenge for the expected one.
    WrongRealm,
    /// Not an answer to a nonce this client was sent: a malformed value, a forged nonce,
    /// or a nonce issued to another address. Challenge again, but count it against no one:
    /// anyone can send such a value with a spoofed source address.
    Unverified { reason: &'static str },
    /// An answer to a genuine nonce of this client that is wrong: wrong password, unknown
    /// user, bad uri, missing qop, replayed nonce count, ... Answer 401 (407) with a new
    /// challenge, and count it against the source and `username` (403 once a limit trips).
    Failed {
        reason: &'static str,
        username: Cow<'a, str>,
    },
}

/// Issues digest challenges and checks the answers (RFC 3261 22.4, RFC 7616, RFC 8760).
///
/// A nonce carries its issue time, a salt and a MAC, so issuing one costs no memory. With
/// qop=auth, the highest nonce count per nonce is kept in a bounded table and counts that
/// do not increase are rejected; when the table is full the oldest entries are evicted and
/// a client whose nonce was evicted is sent a stale challenge. Every challenge offers
/// qop=auth, so answers without qop (RFC 2069 style, which have no count and could be
/// replayed for the nonce's lifetime) are refused. A nonce is bound to the address it was
/// sent to.
pub struct DigestAuthenticator {
    nonces: NonceCodec,
    counts: NonceCountTable,
    /// Derived from the secret; returned unchanged by clients (RFC 7616 3.3).
    opaque: String,
    /// Algorithms challenged with, most preferred first; answers with any other algorithm
    /// fail, so an operator who drops MD5 really drops it.
    algorithms: Vec<Algorithm>,
}

impl DigestAuthenticator {
    pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);
    /// Enough for about 870 new nonces a second over the default lifetime; an entry
    /// costs roughly 50 bytes.
    pub const DEFAULT_NONCE_COUNT_CAPACITY: usize = 1 << 18;

    /// `secret` keys the nonce MACs; take at least 32 bytes from a CSPRNG, fresh for each
    /// start, since issue times count from `epoch`. `epoch` is any instant no later than
    /// the first `now` passed in.
    pub fn new(secret: &[u8], epoch: Instant) -> DigestAuthenticator {
        let nonces = NonceCodec::new(secret, epoch, Self::DEFAULT_NONCE_LIFETIME);
        let mut opaque_bytes = [0u8; 24];
        let derived = nonces.derive(b"opaque");
        let opaque = hex::encode_into(&derived[..12], &mut opaque_bytes);
        let opaque = String::from_utf8_lossy(opaque).into_owned();
        DigestAuthenticator {
            nonces,
            counts: NonceCountTable::new(Self::DEFAULT_NONCE_COUNT_CAPACITY),
            opaque,
            algorithms: Self::DEFAULT_ALGORITHMS.to_vec(),
        }
    }

    /// SHA-256 first, then MD5 for older phones (RFC 8760 2.4).
    pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

    /// Which algorithms to challenge with, most preferred first. Some phones (and SIPp)
    /// answer only the first challenge of a 401 and fail when it is not MD5: deployments
    /// with such phones list MD5 first. An empty list keeps the default.
    pub fn with_algorithms(mut self, algorithms: &[Algorithm]) -> DigestAuthenticator {
        if !algorithms.is_empty() {
            self.algorithms = algorithms.to_vec();
        }
        self
    }

    /// How long a nonce stays fresh (default 300 s).
    pub fn with_nonce_lifetime(mut self, lifetime: Duration) -> DigestAuthenticator {
        self.nonces.set_lifetime(lifetime);
        self
    }

    /// How many nonces' counts are remembered (at least 1). Size it for the rate of new
    /// nonces times the nonce lifetime; below that, clients are sent stale challenges
    /// (one extra round trip) sooner than the lifetime says.
    pub fn with_nonce_count_capacity(mut self, capacity: usize) -> DigestAuthenticator {
        self.counts = NonceCountTable::new(capacity);
        self
    }

    pub fn nonce_lifetime(&self) -> Duration {
        self.nonces.lifetime()
    }

    /// The values of the `WWW-Authenticate` (or `Proxy-Authenticate`) headers for a 401
    /// (or 407): one per configured algorithm, most preferred first (by default SHA-256,
    /// then MD5; RFC 8760 2.4). All carry the same nonce.
    pub fn challenge_values(
        &mut self,
        now: Instant,
        realm: &str,
        stale: bool,
        client: IpAddr,
    ) -> Vec<String> {
        let nonce = self.nonces.issue(now, realm, client);
        let nonce = std::str::from_utf8(&nonce).unwrap_or_default();
        self.algorithms
            .iter()
            .map(|&algorithm| self.challenge_value(realm, nonce, algorithm, stale))
            .collect()
    }

    fn challenge_value(
        &self,
        realm: &str,
        nonce: &str,
        algorithm: Algorithm,
        stale: bool,
    ) -> String {
        let mut value = String::with_capacity(realm.len() + nonce.len() + self.opaque.len() + 80);
        value.push_str("Digest realm=");
        push_quoted(&mut value, realm);
        value.push_str(", nonce=\"");
        value.push_str(nonce);
        value.push_str("\", opaque=\"");
        value.push_str(&self.opaque);
        value.push_str("\", algorithm=");
        value.push_str(algorithm.as_str());
        value.push_str(", qop=\"auth\"");
        if stale {
            value.push_str(", stale=true");
        }
        value
    }

    /// Checks one `Authorization` (or `Proxy-Authorization`) value of a request with
    /// `method` and `request_uri`; pick the value with [`super::select_for_realm`] when a
    /// request carries several. The `uri` parameter must equal the Request-URI (exactly or
    /// ignoring ASCII case). Realm and user lookups follow [`CredentialStore`]. `client` is
    /// the request's source address, which the nonce must have been issued to.
    #[allow(clippy::too_many_arguments)]
    pub fn verify<'a>(
        &mut self,
        now: Instant,
        method: &str,
        request_uri: &str,
        header_value: &'a str,
        expected_realm: &str,
        client: IpAddr,
        store: &CredentialStore,
    ) -> AuthOutcome<'a> {
        let credentials = match DigestCredentials::parse(header_value) {
            Ok(credentials) => credentials,
            Err(error) => {
                return AuthOutcome::Unverified {
                    reason: error.reason(),
                }
            }
        };
        if !credentials.realm.eq_ignore_ascii_case(expected_realm) {
            return AuthOutcome::WrongRealm;
        }
        let (key, expired) =
            match self
                .nonces
                .check(now, &credentials.nonce, &credentials.realm, client)
            {
                NonceCheck::Invalid => {
                    return AuthOutcome::Unverified {
                        reason: "bad nonce",
                    }
                }
                NonceCheck::Fresh(key) => (key, false),
                NonceCheck::Expired(key) => (key, true),
            };
        let failed = |reason: &'static str| AuthOutcome::Failed {
            reason,
            username: credentials.username.clone(),
        };
        if credentials
            .opaque
            .as_deref()
            .is_some_and(|opaque| opaque != self.opaque)
        {
            return failed("bad opaque");
        }
        let Some(user) = store.lookup(&credentials.username, &credentials.realm) else {
            return failed("unknown user");
        };
        // The -sess variant of an offered algorithm uses the same hash and is accepted.
        let hash = credentials.algorithm.hash();
        if !self.algorithms.iter().any(|offered| offered.hash() == hash) {
            return failed("algorithm not offered");
        }
        let Some(ha1) = user.ha1(hash, &credentials.username, &credentials.realm) else {
            return failed("algorithm not available for user");
        };
        if credentials.uri != request_uri && !credentials.uri.eq_ignore_ascii_case(request_uri) {
            return failed("uri mismatch");
        }
        // The challenge offered qop=auth; an answer without it has no nonce count and could
        // be replayed from the same address for the nonce's lifetime (RFC 7616 3.3).
        if credentials.qop.is_none() {
            return failed("qop missing");
        }
        let qop = credentials.qop.as_ref().map(|qop| QopInput {
            qop: &qop.qop,
            nc: &qop.nc_text,
            cnonce: &qop.cnonce,
        });
        let Some(expected) = response_digest(&ResponseInput {
            algorithm: credentials.algorithm,
            ha1: ha1.as_str(),
            nonce: &credentials.nonce,
            method,
            uri: &credentials.uri,
            qop,
        }) else {
            return failed("session algorithm without qop");
        };
        let mut given = [0u8; 32];
        let given = given
            .get_mut(..expected.as_bytes().len())
            .unwrap_or_default();
        if hex::decode_exact(credentials.response.as_bytes(), given).is_none() {
            return failed("bad response");
        }
        if !hex::constant_time_eq(expected.as_bytes(), given) {
            return failed("wrong password");
        }
        if expired {
            return AuthOutcome::Stale;
        }
        if let Some(qop) = &credentials.qop {
            match self.counts.check(key, qop.nc, self.expired_through(now)) {
                CountCheck::Accepted => {}
                CountCheck::Replayed => return failed("replayed nc"),
                CountCheck::Forgotten => return AuthOutcome::Stale,
            }
        }
        AuthOutcome::Authenticated {
            username: credentials.username,
        }
    }

    /// The latest issue time (seconds since the epoch) of nonces already expired at `now`.
    fn expired_through(&self, now: Instant) -> Option<u32> {
        let elapsed = Duration::from_secs(self.nonces.seconds_since_epoch(now));
        let limit = elapsed.checked_sub(self.nonces.lifetime())?.as_secs();
        Some(u32::try_from(limit).unwrap_or(u32::MAX))
    }

    /// Number of nonces whose count is remembered.
    pub fn tracked_nonces(&self) -> usize {
        self.counts.len()
    }
}

/// Leaves out the opaque and anything derived from the secret.
impl fmt::Debug for DigestAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuthenticator")
            .field("nonce_lifetime", &self.nonces.lifetime())
            .field("tracked_nonces", &self.counts.len())
            .finish_non_exhaustive()
    }
}
