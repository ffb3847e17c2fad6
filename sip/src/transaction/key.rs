//! Transaction keys (RFC 3261 17.1.3 and 17.2.3), independent of the message parser: the
//! caller extracts the fields and the key copies them into one boxed byte string.
//!
//! Layout of the bytes: `[method code][flavour][fields...]`, each field a little-endian `u32`
//! length followed by its bytes. The method code keeps ACK apart from INVITE so the layer
//! knows an ACK arrived, while hashing and equality treat ACK as INVITE (the ACK for a
//! non-2xx final belongs to the INVITE's transaction).

use super::TransactionKind;
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// The RFC 3261 magic cookie that starts a branch built by a compliant element.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Method codes in byte 0. Other methods carry their name as the last field.
const METHOD_OTHER: u8 = 0;
const METHOD_INVITE: u8 = 1;
const METHOD_CANCEL: u8 = 2;
const METHOD_ACK: u8 = 3;

/// Flavours in byte 1, so that keys built by different rules never compare equal.
const FLAVOUR_RFC3261: u8 = 1;
const FLAVOUR_RFC2543: u8 = 2;
const FLAVOUR_CLIENT: u8 = 3;

fn method_code(method: &str) -> u8 {
    // Method names are case-sensitive (RFC 3261 7.1).
    match method {
        "INVITE" => METHOD_INVITE,
        "CANCEL" => METHOD_CANCEL,
        "ACK" => METHOD_ACK,
        _ => METHOD_OTHER,
    }
}

/// The code used for matching: an ACK matches the INVITE's transaction.
fn matching_code(code: u8) -> u8 {
    if code == METHOD_ACK {
        METHOD_INVITE
    } else {
        code
    }
}

/// Writes key bytes into a buffer sized exactly once, so a key costs one allocation.
struct KeyWriter {
    bytes: Vec<u8>,
}

impl KeyWriter {
    fn new(code: u8, flavour: u8, field_bytes: usize, fields: usize) -> KeyWriter {
        let mut bytes = Vec::with_capacity(2 + field_bytes + 4 * fields);
        bytes.push(code);
        bytes.push(flavour);
        KeyWriter { bytes }
    }

    fn len_prefix(&mut self, len: usize) {
        // Fields longer than 4 GiB cannot arrive in a SIP message; saturate rather than wrap.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        self.len_prefix(value.len());
        self.bytes.extend_from_slice(value);
    }

    /// A field compared case-insensitively (host names, Via parameters per RFC 3261 7.3.1).
    fn field_lowercase(&mut self, value: &[u8]) {
        self.len_prefix(value.len());
        self.bytes.extend(value.iter().map(u8::to_ascii_lowercase));
    }

    /// The method name for methods without a code of their own.
    fn method_if_other(&mut self, code: u8, method: &str) {
        if code == METHOD_OTHER {
            self.field(method.as_bytes());
        }
    }

    fn finish(self) -> Box<[u8]> {
        self.bytes.into_boxed_slice()
    }
}

/// Extra bytes a method name adds to a key.
fn method_len(code: u8, method: &str) -> (usize, usize) {
    if code == METHOD_OTHER {
        (method.len(), 1)
    } else {
        (0, 0)
    }
}

/// The hash of a key's matching form, keyed by the layer's random state so that remote
/// parties cannot choose colliding keys.
fn hash_parts(state: &impl BuildHasher, code: u8, rest: &[u8]) -> u64 {
    let mut hasher = state.build_hasher();
    hasher.write_u8(matching_code(code));
    hasher.write(rest);
    hasher.finish()
}

fn split(bytes: &[u8]) -> (u8, &[u8]) {
    match bytes.split_first() {
        Some((code, rest)) => (*code, rest),
        None => (METHOD_OTHER, &[]),
    }
}

/// Identifies a server transaction (RFC 3261 17.2.3): built from the request the caller
/// received, either from an RFC 3261 branch or with the RFC 2543 fallback.
#[derive(Clone)]
pub struct ServerKey {
    bytes: Box<[u8]>,
}

impl ServerKey {
    /// Whether `branch` was built by an RFC 3261 element and can be used with
    /// [`ServerKey::rfc3261`].
    pub fn is_rfc3261_branch(branch: &str) -> bool {
        branch.starts_with(MAGIC_COOKIE)
    }

    /// The key of a request whose top Via carries an RFC 3261 branch: the branch, the Via
    /// sent-by (host and port as written; the host compared case-insensitively) and the
    /// request method. An ACK matches its INVITE's transaction; a CANCEL has its own.
    pub fn rfc3261(
        branch: &str,
        sent_by_host: &str,
        sent_by_port: Option<u16>,
        method: &str,
    ) -> ServerKey {
        let code = method_code(method);
        let (method_bytes, method_fields) = method_len(code, method);
        let mut writer = KeyWriter::new(
            code,
            FLAVOUR_RFC3261,
            branch.len() + sent_by_host.len() + 3 + method_bytes,
            2 + method_fields,
        );
        // Parameter values compare case-insensitively unless a header says otherwise (7.3.1).
        writer.field_lowercase(branch.as_bytes());
        writer.field_lowercase(sent_by_host.as_bytes());
        match sent_by_port {
            Some(port) => {
                writer.bytes.push(1);
                writer.bytes.extend_from_slice(&port.to_be_bytes());
            }
            None => writer.bytes.extend_from_slice(&[0, 0, 0]),
        }
        writer.method_if_other(code, method);
        ServerKey {
            bytes: writer.finish(),
        }
    }

    /// The RFC 2543 fallback key, for requests without a magic-cookie branch: Request-URI,
    /// From tag, Call-ID, CSeq number and method, and the top Via header value, each as
    /// written. The To tag is left out so that the ACK for a non-2xx final, which carries the
    /// tag this element added to the response, still matches the INVITE.
    pub fn rfc2543(
        request_uri: &str,
        from_tag: Option<&str>,
        call_id: &str,
        cseq_number: u32,
        cseq_method: &str,
        top_via: &str,
    ) -> ServerKey {
        let code = method_code(cseq_method);
        let (method_bytes, method_fields) = method_len(code, cseq_method);
        let from_tag_len = from_tag.map_or(0, str::len);
        let mut writer = KeyWriter::new(
            code,
            FLAVOUR_RFC2543,
            request_uri.len() + 1 + from_tag_len + call_id.len() + 4 + top_via.len() + method_bytes,
            4 + method_fields,
        );
        writer.field(request_uri.as_bytes());
        match from_tag {
            Some(tag) => {
                writer.bytes.push(1);
                writer.field(tag.as_bytes());
            }
            None => {
                writer.bytes.push(0);
                writer.field(&[]);
            }
        }
        writer.field(call_id.as_bytes());
        writer.bytes.extend_from_slice(&cseq_number.to_le_bytes());
        writer.field(top_via.as_bytes());
        writer.method_if_other(code, cseq_method);
        ServerKey {
            bytes: writer.finish(),
        }
    }

    /// Whether the key was built from an ACK.
    pub fn is_ack(&self) -> bool {
        split(&self.bytes).0 == METHOD_ACK
    }

    /// Whether the key was built from a CANCEL.
    pub fn is_cancel(&self) -> bool {
        split(&self.bytes).0 == METHOD_CANCEL
    }

    /// The kind of transaction this request creates; `None` for ACK, which never creates one.
    pub fn kind(&self) -> Option<TransactionKind> {
        match split(&self.bytes).0 {
            METHOD_ACK => None,
            METHOD_INVITE => Some(TransactionKind::Invite),
            _ => Some(TransactionKind::NonInvite),
        }
    }

    pub(crate) fn hash_with(&self, state: &impl BuildHasher) -> u64 {
        let (code, rest) = split(&self.bytes);
        hash_parts(state, code, rest)
    }

    /// The hash of the INVITE key with the same fields as this (CANCEL) key.
    pub(crate) fn invite_hash_with(&self, state: &impl BuildHasher) -> u64 {
        hash_parts(state, METHOD_INVITE, split(&self.bytes).1)
    }

    /// Whether `self` is the INVITE key with the same fields as `cancel`.
    pub(crate) fn is_invite_for(&self, cancel: &ServerKey) -> bool {
        let (code, rest) = split(&self.bytes);
        code == METHOD_INVITE && rest == split(&cancel.bytes).1
    }
}

impl PartialEq for ServerKey {
    fn eq(&self, other: &ServerKey) -> bool {
        let (code, rest) = split(&self.bytes);
        let (other_code, other_rest) = split(&other.bytes);
        matching_code(code) == matching_code(other_code) && rest == other_rest
    }
}

impl Eq for ServerKey {}

impl std::hash::Hash for ServerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (code, rest) = split(&self.bytes);
        state.write_u8(matching_code(code));
        state.write(rest);
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ServerKey")
            .field(
                &String::from_utf8_lossy(&self.bytes)
                    .escape_debug()
                    .to_string(),
            )
            .finish()
    }
}

/// Identifies a client transaction (RFC 3261 17.1.3): the branch this element put in its
/// Via, and the CSeq method (a CANCEL shares the INVITE's branch).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    bytes: Box<[u8]>,
}

impl ClientKey {
    /// The key of a request sent with `branch` in its top Via, or of a response whose top Via
    /// carries `branch` and whose CSeq method is `cseq_method`.
    pub fn new(branch: &str, cseq_method: &str) -> ClientKey {
        let code = method_code(cseq_method);
        let (method_bytes, method_fields) = method_len(code, cseq_method);
        let mut writer = KeyWriter::new(
            code,
            FLAVOUR_CLIENT,
            branch.len() + method_bytes,
            1 + method_fields,
        );
        writer.field_lowercase(branch.as_bytes());
        writer.method_if_other(code, cseq_method);
        ClientKey {
            bytes: writer.finish(),
        }
    }

    /// The kind of transaction this request creates; `None` for ACK, which is never a
    /// client transaction of its own (RFC 3261 17.1.1.3, 13.2.2.4).
    pub fn kind(&self) -> Option<TransactionKind> {
        match split(&self.bytes).0 {
            METHOD_ACK => None,
            METHOD_INVITE => Some(TransactionKind::Invite),
            _ => Some(TransactionKind::NonInvite),
        }
    }

    pub(crate) fn hash_with(&self, state: &impl BuildHasher) -> u64 {
        let (code, rest) = split(&self.bytes);
        // Client keys never hold ACK, so the matching code is the code itself.
        hash_parts(state, code, rest)
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientKey")
            .field(
                &String::from_utf8_lossy(&self.bytes)
                    .escape_debug()
                    .to_string(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;

    #[test]
    fn ack_matches_invite_but_cancel_does_not() {
        let invite = ServerKey::rfc3261("z9hG4bKabc", "Host.example", Some(5060), "INVITE");
        let ack = ServerKey::rfc3261("z9hG4bKabc", "host.example", Some(5060), "ACK");
        let cancel = ServerKey::rfc3261("z9hG4bKabc", "host.example", Some(5060), "CANCEL");
        let state = RandomState::new();
        assert_eq!(invite, ack);
        assert_eq!(invite.hash_with(&state), ack.hash_with(&state));
        assert!(ack.is_ack() && !invite.is_ack());
        assert_ne!(invite, cancel);
        assert!(invite.is_invite_for(&cancel));
        assert_eq!(cancel.invite_hash_with(&state), invite.hash_with(&state));
        assert_eq!(ack.kind(), None);
        assert_eq!(invite.kind(), Some(TransactionKind::Invite));
        assert_eq!(cancel.kind(), Some(TransactionKind::NonInvite));
    }

    #[test]
    fn fields_do_not_run_together() {
        let a = ServerKey::rfc3261("z9hG4bKab", "chost", None, "OPTIONS");
        let b = ServerKey::rfc3261("z9hG4bKabc", "host", None, "OPTIONS");
        assert_ne!(a, b);
        let port = ServerKey::rfc3261("z9hG4bKab", "host", Some(5060), "OPTIONS");
        let no_port = ServerKey::rfc3261("z9hG4bKab", "host", None, "OPTIONS");
        assert_ne!(port, no_port);
        let register = ServerKey::rfc3261("z9hG4bKab", "host", None, "REGISTER");
        assert_ne!(register, no_port);
    }

    #[test]
    fn rfc2543_keys_differ_from_rfc3261_and_ignore_nothing_else() {
        let key = |uri, tag, cseq, via| ServerKey::rfc2543(uri, tag, "call@x", cseq, "INVITE", via);
        let base = key("sip:a@b", Some("t1"), 1, "SIP/2.0/UDP h:5060");
        assert_eq!(base, key("sip:a@b", Some("t1"), 1, "SIP/2.0/UDP h:5060"));
        assert_ne!(base, key("sip:a@c", Some("t1"), 1, "SIP/2.0/UDP h:5060"));
        assert_ne!(base, key("sip:a@b", None, 1, "SIP/2.0/UDP h:5060"));
        assert_ne!(base, key("sip:a@b", Some(""), 1, "SIP/2.0/UDP h:5060"));
        assert_ne!(base, key("sip:a@b", Some("t1"), 2, "SIP/2.0/UDP h:5060"));
        assert_ne!(base, key("sip:a@b", Some("t1"), 1, "SIP/2.0/TCP h:5060"));
        let ack = ServerKey::rfc2543(
            "sip:a@b",
            Some("t1"),
            "call@x",
            1,
            "ACK",
            "SIP/2.0/UDP h:5060",
        );
        assert_eq!(base, ack);
    }

    #[test]
    fn client_keys_separate_methods_on_one_branch() {
        let invite = ClientKey::new("z9hG4bKx", "INVITE");
        let cancel = ClientKey::new("z9hG4bKx", "CANCEL");
        assert_ne!(invite, cancel);
        assert_eq!(invite, ClientKey::new("z9hG4bKX", "INVITE"));
        assert_eq!(ClientKey::new("z9hG4bKx", "ACK").kind(), None);
    }
}
