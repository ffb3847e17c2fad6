//! Requests the node sends on its own behalf (a user agent client inside the proxy): OPTIONS
//! to a phone's flow to see whether it is still there, a stored MESSAGE delivered when its
//! user registers. Each gets its own Via branch, Call-ID, From tag and CSeq, runs as a
//! non-INVITE client transaction, and ends in exactly one [`ServerEvent::RequestDone`]
//! with the final status: the response's, 408 when none came (Timer F), 503 when it could
//! not be sent.

use super::{ClientCtx, ServerEvent, SipServer};
use crate::message::Message;
use crate::transaction::{ClientKey, TransactionError};
use crate::transport::Peer;
use bytes::Bytes;
use std::fmt::Write;
use std::time::Instant;

/// Identifies one request the node originated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request to originate. The server adds Via, Max-Forwards, the From tag, Call-ID, CSeq
/// and Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// A method other than INVITE and ACK (OPTIONS, MESSAGE, NOTIFY, ...).
    pub method: String,
    pub request_uri: String,
    /// The From URI (the node's identity, or the original sender of a stored message).
    pub from: String,
    /// The To URI.
    pub to: String,
    /// Where to send it: a binding's flow, an overlay node, an address.
    pub peer: Peer,
    /// Further header lines, as `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Content type and body, if any.
    pub body: Option<(String, Bytes)>,
}

/// Why a request could not be originated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginateError {
    #[error("INVITE and ACK are not originated by the node")]
    Method,
    #[error("the node does not listen on the transport of {0}")]
    NoListener(String),
    #[error("the request would not be valid SIP: {0}")]
    Invalid(&'static str),
    #[error("transaction table full")]
    TableFull,
}

impl SipServer {
    /// Sends `request` in a client transaction of its own. Its end is reported once, as
    /// [`ServerEvent::RequestDone`], drained with [`SipServer::poll_event`].
    pub fn originate(
        &mut self,
        now: Instant,
        request: OutgoingRequest,
    ) -> Result<RequestId, OriginateError> {
        let method = request.method.to_ascii_uppercase();
        if method == "INVITE" || method == "ACK" {
            return Err(OriginateError::Method);
        }
        let transport = request.peer.transport;
        let sent_by = self
            .identity
            .sent_by(transport)
            .ok_or_else(|| OriginateError::NoListener(request.request_uri.clone()))?;
        let branch = self.ids.plain_branch();
        let tag = self.ids.tag();
        let call_id = format!("{}-{}", self.ids.tag(), self.ids.tag());
        let mut text = String::with_capacity(512);
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{via_transport} {sent_by};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={tag}\r\n\
             To: <{to}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\n",
            uri = request.request_uri,
            via_transport = transport.via_token(),
            from = request.from,
            to = request.to,
        );
        for (name, value) in &request.headers {
            let _ = write!(text, "{name}: {value}\r\n");
        }
        let body: &[u8] = match &request.body {
            Some((content_type, body)) => {
                let _ = write!(text, "Content-Type: {content_type}\r\n");
                body
            }
            None => &[],
        };
        let _ = write!(text, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(body);
        // What goes out must be what this node would accept itself.
        {
            let parsed = Message::parse(&bytes).map_err(|e| OriginateError::Invalid(e.what))?;
            if let Err(rejection) = parsed.validate() {
                tracing::debug!(reason = %rejection.reason, "originated request invalid");
                return Err(OriginateError::Invalid("request does not validate"));
            }
        }
        self.originated_next = self.originated_next.wrapping_add(1);
        let id = self.originated_next;
        let key = ClientKey::new(&branch, &method);
        match self.transactions.start_client(
            now,
            key,
            request.peer,
            Bytes::from(bytes),
            ClientCtx::Originated(id),
        ) {
            Ok(_) => Ok(RequestId(id)),
            Err(TransactionError::TableFull) => Err(OriginateError::TableFull),
            Err(_) => Err(OriginateError::Invalid("no client transaction")),
        }
    }

    /// A final outcome of an originated request, reported to the node.
    pub(super) fn originated_done(&mut self, id: u64, status: u16) {
        self.events.push_back(ServerEvent::RequestDone {
            id: RequestId(id),
            status,
        });
    }
}
