//! Client and server together, with virtual time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use super::*;

const REALM: &str = "example.com";
const URI: &str = "sip:example.com";
const SECRET: &[u8] = b"an example secret of 32 bytes...";

// RFC 7616 3.9.1.
const RFC_REALM: &str = "http-auth@example.org";
const RFC_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
const RFC_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const RFC_OPAQUE: &str = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS";
const RFC_MD5_RESPONSE: &str = "8ca523f5e9506fed4657c9700eebdbec";
const RFC_SHA256_RESPONSE: &str =
    "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";

fn store() -> CredentialStore {
    CredentialStore::new(vec![
        Credential {
            username: "alice".into(),
            realm: REALM.into(),
            secret: Secret::Password("wonderland".into()),
        },
        Credential {
            username: "bob".into(),
            realm: REALM.into(),
            secret: Secret::Ha1 {
                md5: Some(ha1_md5("bob", REALM, "builder")),
                sha256: None,
            },
        },
    ])
    .unwrap()
}

struct Fixture {
    epoch: Instant,
    server: DigestAuthenticator,
    store: CredentialStore,
}

impl Fixture {
    fn new() -> Fixture {
        let epoch = Instant::now();
        Fixture {
            epoch,
            server: DigestAuthenticator::new(SECRET, epoch),
            store: store(),
        }
    }

    fn at(&self, seconds: u64) -> Instant {
        self.epoch + Duration::from_secs(seconds)
    }

    /// The challenge for `algorithm` from a fresh 401, as a client would pick it.
    fn challenge(&mut self, seconds: u64, algorithm: Algorithm) -> String {
        let values = self
            .server
            .challenge_values(self.at(seconds), REALM, false, CLIENT);
        let index = usize::from(algorithm.hash() == HashFunction::Md5);
        let mut challenge = DigestChallenge::parse(&values[index]).unwrap();
        challenge.algorithm = algorithm;
        answer_qop(&challenge, "alice", "wonderland", 1)
    }

    fn verify<'a>(&mut self, seconds: u64, value: &'a str) -> AuthOutcome<'a> {
        let now = self.at(seconds);
        self.server
            .verify(now, "REGISTER", URI, value, REALM, CLIENT, &self.store)
    }
}

fn answer_qop(challenge: &DigestChallenge<'_>, user: &str, password: &str, nc: u32) -> String {
    authorization_value(challenge, user, password, "REGISTER", URI, "0a4f113b", nc).unwrap()
}

fn authenticated(username: &str) -> AuthOutcome<'_> {
    AuthOutcome::Authenticated {
        username: username.into(),
    }
}

/// The reason of a failed or unverified outcome, for comparing with the expected fault.
fn reason_of(outcome: AuthOutcome<'_>) -> Option<&'static str> {
    match outcome {
        AuthOutcome::Failed { reason, .. } | AuthOutcome::Unverified { reason } => Some(reason),
        _ => None,
    }
}

/// The client address every fixture challenge is issued to.
const CLIENT: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 80));

#[test]
fn rfc7616_example_responses() {
    for (algorithm, ha1, expected) in [
        (
            Algorithm::Md5,
            ha1_md5("Mufasa", RFC_REALM, "Circle of Life"),
            RFC_MD5_RESPONSE,
        ),
        (
            Algorithm::Sha256,
            ha1_sha256("Mufasa", RFC_REALM, "Circle of Life"),
            RFC_SHA256_RESPONSE,
        ),
    ] {
        let response = compute_response(&ResponseInput {
            algorithm,
            ha1: &ha1,
            nonce: RFC_NONCE,
            method: "GET",
            uri: "/dir/index.html",
            qop: Some(QopInput {
                qop: "auth",
                nc: "00000001",
                cnonce: RFC_CNONCE,
            }),
        })
        .unwrap();
        assert_eq!(response, expected);

        // The same through the challenge parser and the client helper.
        let challenge_text = format!(
            "Digest realm=\"{RFC_REALM}\", qop=\"auth, auth-int\", algorithm={algorithm}, \
             nonce=\"{RFC_NONCE}\", opaque=\"{RFC_OPAQUE}\""
        );
        let challenge = DigestChallenge::parse(&challenge_text).unwrap();
        let value = authorization_value(
            &challenge,
            "Mufasa",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            RFC_CNONCE,
            1,
        )
        .unwrap();
        let credentials = DigestCredentials::parse(&value).unwrap();
        assert_eq!(credentials.response, expected);
        assert_eq!(credentials.opaque.as_deref(), Some(RFC_OPAQUE));
        assert_eq!(credentials.qop.unwrap().nc_text, "00000001");
    }
}

#[test]
fn challenges_list_sha256_then_md5() {
    let mut fixture = Fixture::new();
    let now = fixture.at(1);
    let values = fixture.server.challenge_values(now, REALM, false, CLIENT);
    let [first, second] = values.as_slice() else {
        panic!("two challenges expected: {values:?}");
    };
    let first = DigestChallenge::parse(first).unwrap();
    let second = DigestChallenge::parse(second).unwrap();
    assert_eq!(first.algorithm, Algorithm::Sha256);
    assert_eq!(second.algorithm, Algorithm::Md5);
    assert_eq!(first.nonce, second.nonce);
    assert_eq!(first.realm, REALM);
    assert!(first.offers_qop_auth() && !first.stale);
    assert!(first.opaque.is_some());
    let values = fixture.server.challenge_values(now, REALM, true, CLIENT);
    let stale = &values[0];
    assert!(stale.ends_with(", stale=true"));
    assert!(DigestChallenge::parse(stale).unwrap().stale);
}

#[test]
fn configured_algorithms_are_challenged_in_order_and_others_refused() {
    let mut fixture = Fixture::new();
    fixture.server =
        DigestAuthenticator::new(&[9; 32], fixture.epoch).with_algorithms(&[Algorithm::Md5]);
    let now = fixture.at(1);
    let values = fixture.server.challenge_values(now, REALM, false, CLIENT);
    assert_eq!(values.len(), 1);
    assert_eq!(
        DigestChallenge::parse(&values[0]).unwrap().algorithm,
        Algorithm::Md5
    );
    // A SHA-256 answer to a nonce of ours is refused when SHA-256 is not offered.
    let sha = values[0].replace("algorithm=MD5", "algorithm=SHA-256");
    let challenge = DigestChallenge::parse(&sha).unwrap();
    let answer =
        authorization_value(&challenge, "alice", "wonderland", "REGISTER", URI, "c", 1).unwrap();
    let outcome =
        fixture
            .server
            .verify(now, "REGISTER", URI, &answer, REALM, CLIENT, &fixture.store);
    assert_eq!(reason_of(outcome), Some("algorithm not offered"));
}

#[test]
fn round_trip_every_algorithm_with_qop() {
    let mut fixture = Fixture::new();
    for algorithm in [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
    ] {
        let value = fixture.challenge(10, algorithm);
        assert!(value.contains(algorithm.as_str()));
        assert_eq!(
            fixture.verify(11, &value),
            authenticated("alice"),
            "{algorithm}"
        );
    }
}

#[test]
fn rfc2069_answers_are_refused_with_every_algorithm() {
    let mut fixture = Fixture::new();
    for index in 0..2 {
        let values = fixture
            .server
            .challenge_values(fixture.at(0), REALM, false, CLIENT);
        // An RFC 2069 client ignores qop and answers without it: such an answer has no
        // nonce count, so it could be replayed for the nonce's lifetime.
        let mut challenge = DigestChallenge::parse(&values[index]).unwrap();
        challenge.qop = None;
        let value = answer_qop(&challenge, "alice", "wonderland", 1);
        assert!(DigestCredentials::parse(&value).unwrap().qop.is_none());
        assert_eq!(reason_of(fixture.verify(1, &value)), Some("qop missing"));
    }
    assert_eq!(fixture.server.tracked_nonces(), 0);
}

#[test]
fn session_algorithm_without_qop_fails() {
    let mut fixture = Fixture::new();
    let value = fixture.challenge(0, Algorithm::Md5Sess);
    let without_qop = value
        .replace(", qop=auth", "")
        .replace(", cnonce=\"0a4f113b\"", "")
        .replace(", nc=00000001", "");
    assert_eq!(
        reason_of(fixture.verify(0, &without_qop)),
        Some("qop missing")
    );
}

#[test]
fn stale_after_lifetime() {
    let mut fixture = Fixture::new();
    fixture.server = DigestAuthenticator::new(SECRET, fixture.epoch)
        .with_nonce_lifetime(Duration::from_secs(30));
    let value = fixture.challenge(100, Algorithm::Sha256);
    assert_eq!(fixture.verify(129, &value), authenticated("alice"));
    assert_eq!(fixture.verify(130, &value), AuthOutcome::Stale);
    // Stale only vouches for good credentials.
    let values = fixture
        .server
        .challenge_values(fixture.at(100), REALM, false, CLIENT);
    let challenge = DigestChallenge::parse(&values[0]).unwrap();
    let wrong = answer_qop(&challenge, "alice", "looking-glass", 1);
    assert_eq!(
        reason_of(fixture.verify(200, &wrong)),
        Some("wrong password")
    );
}

#[test]
fn tampered_nonce_fails() {
    let mut fixture = Fixture::new();
    let value = fixture.challenge(0, Algorithm::Sha256);
    let nonce = DigestCredentials::parse(&value).unwrap().nonce.into_owned();
    // Claim a later issue time to stretch the lifetime.
    let later = format!("00000fff{}", &nonce[8..]);
    assert_eq!(
        reason_of(fixture.verify(0, &value.replace(&nonce, &later))),
        Some("bad nonce")
    );
    let truncated = &nonce[..nonce.len() - 2];
    assert_eq!(
        reason_of(fixture.verify(0, &value.replace(&nonce, truncated))),
        Some("bad nonce")
    );
    assert_eq!(fixture.verify(0, &value), authenticated("alice"));
}

#[test]
fn replayed_nc_fails_and_higher_nc_passes() {
    let mut fixture = Fixture::new();
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let challenge = DigestChallenge::parse(&values[0]).unwrap();
    let first = answer_qop(&challenge, "alice", "wonderland", 1);
    assert_eq!(fixture.verify(1, &first), authenticated("alice"));
    assert_eq!(reason_of(fixture.verify(2, &first)), Some("replayed nc"));
    let third = answer_qop(&challenge, "alice", "wonderland", 3);
    assert_eq!(fixture.verify(3, &third), authenticated("alice"));
    let second = answer_qop(&challenge, "alice", "wonderland", 2);
    assert_eq!(reason_of(fixture.verify(4, &second)), Some("replayed nc"));
    // A count forged upward without the password does not get recorded.
    let forged = third.replace("nc=00000003", "nc=00000009");
    assert_eq!(
        reason_of(fixture.verify(5, &forged)),
        Some("wrong password")
    );
    let fourth = answer_qop(&challenge, "alice", "wonderland", 4);
    assert_eq!(fixture.verify(6, &fourth), authenticated("alice"));
}

#[test]
fn evicted_nonce_gets_stale() {
    let mut fixture = Fixture::new();
    fixture.server = DigestAuthenticator::new(SECRET, fixture.epoch).with_nonce_count_capacity(1);
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let old = DigestChallenge::parse(&values[0]).unwrap();
    assert_eq!(
        fixture.verify(0, &answer_qop(&old, "alice", "wonderland", 1)),
        authenticated("alice")
    );
    let newer = fixture.challenge(5, Algorithm::Sha256);
    assert_eq!(fixture.verify(5, &newer), authenticated("alice"));
    assert_eq!(fixture.server.tracked_nonces(), 1);
    assert_eq!(
        fixture.verify(6, &answer_qop(&old, "alice", "wonderland", 2)),
        AuthOutcome::Stale
    );
}

#[test]
fn wrong_realm() {
    let mut fixture = Fixture::new();
    let value = fixture.challenge(0, Algorithm::Sha256);
    let now = fixture.at(0);
    let outcome = fixture.server.verify(
        now,
        "REGISTER",
        URI,
        &value,
        "other.example",
        CLIENT,
        &fixture.store,
    );
    assert_eq!(outcome, AuthOutcome::WrongRealm);
    // A nonce for one realm is worthless in another, even with matching credentials.
    let mut other = Fixture::new();
    other.store = CredentialStore::new(vec![Credential {
        username: "alice".into(),
        realm: "other.example".into(),
        secret: Secret::Password("wonderland".into()),
    }])
    .unwrap();
    let values = other
        .server
        .challenge_values(other.at(0), REALM, false, CLIENT);
    let mut challenge = DigestChallenge::parse(&values[0]).unwrap();
    challenge.realm = "other.example".into();
    let value = answer_qop(&challenge, "alice", "wonderland", 1);
    let outcome = other.server.verify(
        other.at(0),
        "REGISTER",
        URI,
        &value,
        "OTHER.example",
        CLIENT,
        &other.store,
    );
    assert_eq!(reason_of(outcome), Some("bad nonce"));
}

#[test]
fn wrong_password_unknown_user_and_bad_uri() {
    let mut fixture = Fixture::new();
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let challenge = DigestChallenge::parse(&values[0]).unwrap();
    let wrong = answer_qop(&challenge, "alice", "looking-glass", 1);
    assert_eq!(reason_of(fixture.verify(0, &wrong)), Some("wrong password"));
    let unknown = answer_qop(&challenge, "carol", "wonderland", 1);
    assert_eq!(reason_of(fixture.verify(0, &unknown)), Some("unknown user"));
    let wrong_case = answer_qop(&challenge, "Alice", "wonderland", 1);
    assert_eq!(
        reason_of(fixture.verify(0, &wrong_case)),
        Some("unknown user")
    );
    let other_uri = authorization_value(
        &challenge,
        "alice",
        "wonderland",
        "REGISTER",
        "sip:x",
        "c",
        1,
    )
    .unwrap();
    assert_eq!(
        reason_of(fixture.verify(0, &other_uri)),
        Some("uri mismatch")
    );
    let wrong_method =
        authorization_value(&challenge, "alice", "wonderland", "INVITE", URI, "c", 1).unwrap();
    assert_eq!(
        reason_of(fixture.verify(0, &wrong_method)),
        Some("wrong password")
    );
    let good = answer_qop(&challenge, "alice", "wonderland", 1);
    let bad_opaque = good.replace("opaque=\"", "opaque=\"0");
    assert_eq!(
        reason_of(fixture.verify(0, &bad_opaque)),
        Some("bad opaque")
    );
    let short_response = good.replace("response=\"", "response=\"0");
    assert_eq!(
        reason_of(fixture.verify(0, &short_response)),
        Some("bad response")
    );
    assert_eq!(
        reason_of(fixture.verify(0, "Digest realm=\"x")),
        Some("unterminated quoted string")
    );
    assert_eq!(fixture.verify(0, &good), authenticated("alice"));
}

#[test]
fn ha1_only_user_answers_only_its_algorithm() {
    let mut fixture = Fixture::new();
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let sha = DigestChallenge::parse(&values[0]).unwrap();
    let md5 = DigestChallenge::parse(&values[1]).unwrap();
    let value = answer_qop(&sha, "bob", "builder", 1);
    assert_eq!(
        reason_of(fixture.verify(0, &value)),
        Some("algorithm not available for user")
    );
    let value = answer_qop(&md5, "bob", "builder", 1);
    assert_eq!(fixture.verify(0, &value), authenticated("bob"));
}

#[test]
fn picks_the_value_for_the_realm() {
    let mut fixture = Fixture::new();
    let ours = fixture.challenge(0, Algorithm::Sha256);
    let theirs = "Digest username=\"alice\", realm=\"upstream.example\", nonce=\"n\", \
                  uri=\"sip:example.com\", response=\"00\"";
    let chosen = select_for_realm([theirs, ours.as_str()], "EXAMPLE.com").unwrap();
    assert_eq!(fixture.verify(0, chosen), authenticated("alice"));
    assert_eq!(fixture.verify(0, theirs), AuthOutcome::WrongRealm);
}

#[test]
fn limiter_blocks_repeated_failures_then_expires() {
    let mut fixture = Fixture::new();
    let mut limiter = FailureLimiter::<std::net::IpAddr>::default();
    let source = std::net::IpAddr::from([198, 51, 100, 7]);
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let challenge = DigestChallenge::parse(&values[0]).unwrap();
    for attempt in 0..FailureLimiter::<std::net::IpAddr>::DEFAULT_MAX_FAILURES {
        let now = fixture.at(u64::from(attempt));
        assert!(!limiter.is_blocked(now, &source));
        let guess = answer_qop(&challenge, "alice", &format!("guess{attempt}"), 1);
        let outcome = fixture.verify(u64::from(attempt), &guess);
        assert!(matches!(outcome, AuthOutcome::Failed { .. }));
        limiter.record_failure(now, &source);
    }
    assert!(limiter.is_blocked(fixture.at(10), &source));
    assert!(limiter.is_blocked(fixture.at(59), &source));
    assert!(!limiter.is_blocked(fixture.at(60), &source));
}

#[test]
fn realm_spelled_in_another_case() {
    let mut fixture = Fixture::new();
    fixture.store = CredentialStore::new(vec![Credential {
        username: "alice".into(),
        realm: "Example.COM".into(),
        secret: Secret::Password("wonderland".into()),
    }])
    .unwrap();
    // The challenge uses the lower-cased domain; the client hashes what it was given.
    let value = fixture.challenge(0, Algorithm::Sha256);
    assert_eq!(fixture.verify(0, &value), authenticated("alice"));
}

#[test]
fn debug_output_hides_secrets() {
    let fixture = Fixture::new();
    let shown = format!("{:?} {:?}", fixture.server, fixture.store);
    assert!(!shown.contains("wonderland"));
    assert!(!shown.contains(&ha1_md5("bob", REALM, "builder")));
}

#[test]
fn a_nonce_answered_from_another_address_is_unverified_not_failed() {
    let mut fixture = Fixture::new();
    let value = fixture.challenge(0, Algorithm::Sha256);
    let elsewhere = std::net::IpAddr::from([192, 0, 2, 81]);
    let outcome = fixture.server.verify(
        fixture.at(0),
        "REGISTER",
        URI,
        &value,
        REALM,
        elsewhere,
        &fixture.store,
    );
    assert_eq!(
        outcome,
        AuthOutcome::Unverified {
            reason: "bad nonce"
        }
    );
    // A wrong password on a nonce of this client is a failure that names the account.
    let values = fixture
        .server
        .challenge_values(fixture.at(0), REALM, false, CLIENT);
    let challenge = DigestChallenge::parse(&values[0]).unwrap();
    let wrong = answer_qop(&challenge, "alice", "looking-glass", 1);
    assert_eq!(
        fixture.verify(0, &wrong),
        AuthOutcome::Failed {
            reason: "wrong password",
            username: "alice".into()
        }
    );
}
