//! RFC 3261 10.3 steps 6 to 8 on plain data: plan every contact against the current
//! bindings without touching the table, then commit the plan in one go.

use super::binding::{deadline, Binding, ChangeKind, DEFAULT_Q};
use super::request::{
    too_many_contacts, ContactSpec, ContactUpdate, RegisterRequest, MAX_CALL_ID_LEN,
    MAX_CONTACTS_PER_REQUEST, MAX_CONTACT_URI_LEN, MAX_INSTANCE_LEN,
};
use super::table::LocationTable;
use super::{RegisterOutcome, RegisterRejection, RegistrarPolicy};
use crate::message::Uri;
use crate::transport::Peer;
use smallvec::SmallVec;
use std::time::Instant;

/// RFC 3261 10.3 allows 423 only for intervals below one hour, whatever the configured
/// minimum; longer intervals are granted as asked (up to the maximum).
const INTERVAL_TOO_BRIEF_CEILING: u32 = 3600;

/// What one Contact of the request will do.
#[derive(Debug, Clone, Copy)]
struct PlannedContact<'a> {
    contact: ContactUpdate<'a>,
    /// Position of the live binding it refreshes or removes; `None` for a new one.
    target: Option<usize>,
    /// Granted interval; 0 removes.
    expires: u32,
    q: u16,
}

/// Contact URI equivalence (RFC 3261 19.1.4). Phones nearly always repeat their Contact
/// byte for byte, so that is tried before parsing.
pub(super) fn contact_uris_equivalent(stored: &str, new: &str) -> bool {
    if stored == new {
        return true;
    }
    match (Uri::parse(stored), Uri::parse(new)) {
        (Ok(stored), Ok(new)) => stored.equivalent(&new),
        _ => false,
    }
}

/// RFC 5626: a contact with both `+sip.instance` and `reg-id` is identified by that pair
/// (its URI may change as the phone moves); one without is identified by its URI and never
/// matches a flow binding, so outbound and plain registrations of one AoR coexist.
fn same_identity<F>(
    flow_a: Option<(&str, u32)>,
    uri_a: &str,
    flow_b: Option<(&str, u32)>,
    uri_b: &str,
    same_uri: &F,
) -> bool
where
    F: Fn(&str, &str) -> bool,
{
    match (flow_a, flow_b) {
        // Instance ids are URNs, in practice urn:uuid, whose hex digits compare
        // case-insensitively (RFC 4122 3).
        (Some((instance_a, reg_a)), Some((instance_b, reg_b))) => {
            reg_a == reg_b && instance_a.eq_ignore_ascii_case(instance_b)
        }
        (None, None) => same_uri(uri_a, uri_b),
        _ => false,
    }
}

/// Checks one contact on its own and works out its interval (RFC 3261 10.3 step 6).
fn granted_interval(
    contact: &ContactUpdate<'_>,
    expires_header: Option<u32>,
    policy: &RegistrarPolicy,
) -> Result<u32, RegisterRejection> {
    // The URI is echoed in the 200 OK inside <>, so anything that could break out of it is
    // refused (a parsed URI never contains these).
    let uri_ok = !contact.uri.is_empty()
        && contact.uri.len() <= MAX_CONTACT_URI_LEN
        && !contact
            .uri
            .bytes()
            .any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"' || b == 0x7f);
    if !uri_ok {
        return Err(RegisterRejection::bad_request("bad Contact URI"));
    }
    if contact.q.is_some_and(|q| q > DEFAULT_Q) {
        return Err(RegisterRejection::bad_request("bad q in Contact"));
    }
    if contact
        .instance
        .is_some_and(|i| i.is_empty() || i.len() > MAX_INSTANCE_LEN)
    {
        return Err(RegisterRejection::bad_request(
            "bad +sip.instance in Contact",
        ));
    }
    let requested = contact
        .expires
        .or(expires_header)
        .unwrap_or(policy.default_expires);
    if requested > 0 && requested < policy.min_expires && requested < INTERVAL_TOO_BRIEF_CEILING {
        let mut rejection = RegisterRejection::new(423, "Interval Too Brief");
        rejection.min_expires = Some(policy.min_expires);
        return Err(rejection);
    }
    Ok(requested.min(policy.max_expires.max(1)))
}

/// RFC 3261 10.3 step 7: a request from the same phone (same Call-ID) whose CSeq is not
/// higher than the one that last touched the binding is older than, or a replay of, the
/// request the binding reflects. Applying it would roll newer state back, so the whole
/// request fails. The RFC names no status code; 400 with the fault in the reason phrase
/// lets the phone see why. A retransmission of the same REGISTER is absorbed by the
/// transaction layer before it gets here.
fn out_of_order(binding: &Binding, call_id: &str, cseq: u32) -> bool {
    *binding.call_id == *call_id && cseq <= binding.cseq
}

fn cseq_out_of_order() -> RegisterRejection {
    RegisterRejection::bad_request("CSeq out of order")
}

impl LocationTable {
    /// Applies a REGISTER given as plain data (RFC 3261 10.3 steps 6 to 8). All-or-nothing:
    /// every contact is checked against the current bindings before anything changes.
    /// The contact URIs must be parsed URIs (as [`RegisterRequest::from_message`] gives).
    pub fn apply(
        &mut self,
        now: Instant,
        request: RegisterRequest<'_>,
        source: Peer,
        policy: &RegistrarPolicy,
    ) -> Result<RegisterOutcome, RegisterRejection> {
        self.apply_with(now, request, source, policy, contact_uris_equivalent)
    }

    /// [`apply`](Self::apply) with the URI comparison passed in, so the rules can be tested
    /// without the URI parser.
    pub(super) fn apply_with<F>(
        &mut self,
        now: Instant,
        request: RegisterRequest<'_>,
        source: Peer,
        policy: &RegistrarPolicy,
        same_uri: F,
    ) -> Result<RegisterOutcome, RegisterRejection>
    where
        F: Fn(&str, &str) -> bool,
    {
        let RegisterRequest {
            aor,
            call_id,
            cseq,
            expires: expires_header,
            contacts,
        } = request;
        if call_id.is_empty() || call_id.len() > MAX_CALL_ID_LEN {
            return Err(RegisterRejection::bad_request("bad Call-ID"));
        }
        let star = contacts.iter().any(|c| matches!(c, ContactSpec::Star));
        if star && contacts.len() > 1 {
            return Err(RegisterRejection::bad_request(
                "Contact * must be the only Contact",
            ));
        }
        if star && expires_header != Some(0) {
            return Err(RegisterRejection::bad_request(
                "Contact * requires Expires: 0",
            ));
        }
        // A request can at most remove every binding and add as many again.
        let contact_limit = self
            .limits
            .max_bindings_per_aor
            .saturating_mul(2)
            .clamp(1, MAX_CONTACTS_PER_REQUEST);
        if contacts.len() > contact_limit {
            return Err(too_many_contacts());
        }

        // One hash lookup; everything below works on this entry.
        let slot = self.index.get(aor.as_str()).copied();
        let stored: &[Binding] = match slot.and_then(|s| self.entry(s)) {
            Some(entry) => &entry.bindings,
            None => &[],
        };

        if contacts.is_empty() {
            return Ok(RegisterOutcome {
                aor,
                change: None,
                slot,
            });
        }

        if star {
            for binding in stored.iter().filter(|b| !b.is_expired(now)) {
                if out_of_order(binding, call_id, cseq) {
                    return Err(cseq_out_of_order());
                }
            }
            let any_live = stored.iter().any(|b| !b.is_expired(now));
            let Some(slot) = slot else {
                return Ok(RegisterOutcome {
                    aor,
                    change: None,
                    slot: None,
                });
            };
            self.remove_all(slot);
            return Ok(RegisterOutcome {
                aor,
                change: any_live.then_some(ChangeKind::Removed),
                slot: Some(slot),
            });
        }

        let mut plan: SmallVec<[PlannedContact<'_>; 4]> = SmallVec::new();
        for spec in &contacts {
            let ContactSpec::Address(contact) = *spec else {
                continue;
            };
            let expires = granted_interval(&contact, expires_header, policy)?;
            let target = stored.iter().position(|b| {
                !b.is_expired(now)
                    && same_identity(
                        b.flow_key(),
                        &b.uri,
                        contact.flow_key(),
                        contact.uri,
                        &same_uri,
                    )
            });
            if let Some(position) = target {
                if stored
                    .get(position)
                    .is_some_and(|b| out_of_order(b, call_id, cseq))
                {
                    return Err(cseq_out_of_order());
                }
            }
            let planned = PlannedContact {
                contact,
                target,
                expires,
                q: contact.q.unwrap_or(DEFAULT_Q),
            };
            // Two contacts of one request naming the same binding: the later one wins.
            let earlier = plan.iter_mut().find(|p| match (p.target, target) {
                (Some(a), Some(b)) => a == b,
                (None, None) => same_identity(
                    p.contact.flow_key(),
                    p.contact.uri,
                    contact.flow_key(),
                    contact.uri,
                    &same_uri,
                ),
                _ => false,
            });
            match earlier {
                Some(earlier) => *earlier = planned,
                None => plan.push(planned),
            }
        }

        let live_before = stored.iter().filter(|b| !b.is_expired(now)).count();
        let removed = plan
            .iter()
            .filter(|p| p.target.is_some() && p.expires == 0)
            .count();
        let added = plan
            .iter()
            .filter(|p| p.target.is_none() && p.expires > 0)
            .count();
        let live_after = live_before.saturating_sub(removed) + added;
        if live_after > self.limits.max_bindings_per_aor {
            return Err(too_many_contacts());
        }
        // An entry holding only expired bindings still counts as an AoR until purged.
        let counted = !stored.is_empty();
        if !counted && live_after > 0 && self.live_aors >= self.limits.max_aors {
            let mut rejection =
                RegisterRejection::new(503, "Service Unavailable (location table full)");
            rejection.retry_after = Some(policy.table_full_retry_after);
            return Err(rejection);
        }

        let slot = match slot {
            Some(slot) => slot,
            None if live_after > 0 => self.allocate_slot(aor.as_str().into()),
            // Only removals of contacts that are not bound: nothing to do.
            None => {
                return Ok(RegisterOutcome {
                    aor,
                    change: None,
                    slot: None,
                })
            }
        };
        let change = self.commit(slot, now, &plan, call_id, cseq, source);
        Ok(RegisterOutcome {
            aor,
            change,
            slot: Some(slot),
        })
    }

    /// Removes every binding of `slot` (Contact: *) and logs it.
    fn remove_all(&mut self, slot: u32) {
        let stored = self.entry(slot).map_or(0, |e| e.bindings.len());
        for position in (0..stored).rev() {
            self.remove_binding_at(slot, position);
        }
        if stored > 0 {
            self.note_change(slot, ChangeKind::Removed);
        }
        self.release_if_unused(slot);
    }

    /// Carries out a validated plan on `slot`: refreshes, then additions, then removals
    /// (targets with interval 0 and bindings that already expired). Returns what the request
    /// did to the binding set and logs the change.
    fn commit(
        &mut self,
        slot: u32,
        now: Instant,
        plan: &[PlannedContact<'_>],
        call_id: &str,
        cseq: u32,
        source: Peer,
    ) -> Option<ChangeKind> {
        let mut set_changed = false;
        let mut refreshed = false;
        let mut doomed: SmallVec<[u64; 4]> = SmallVec::new();

        for planned in plan {
            let Some(position) = planned.target else {
                continue;
            };
            let entry = self.slots.get_mut(slot as usize).and_then(Option::as_mut)?;
            let Some(binding) = entry.bindings.get_mut(position) else {
                continue;
            };
            if planned.expires == 0 {
                doomed.push(binding.id);
                set_changed = true;
                continue;
            }
            self.indexes.remove(slot, binding);
            set_changed |= refresh(binding, planned, now, call_id, cseq, source);
            self.next_binding_id += 1;
            binding.recency = self.next_binding_id;
            self.indexes.insert(slot, binding);
            refreshed = true;
        }

        for planned in plan.iter().filter(|p| p.target.is_none() && p.expires > 0) {
            let id = self.next_id();
            let binding = Binding {
                uri: planned.contact.uri.into(),
                q: planned.q,
                expires_at: deadline(now, planned.expires),
                call_id: call_id.into(),
                cseq,
                instance: planned.contact.instance.map(Into::into),
                reg_id: planned.contact.reg_id,
                source,
                registered_at: now,
                updated_at: now,
                id,
                recency: id,
            };
            self.push_binding(slot, binding);
            set_changed = true;
        }

        let mut expired_removed = false;
        if let Some(entry) = self.entry(slot) {
            for binding in entry.bindings.iter().filter(|b| b.is_expired(now)) {
                doomed.push(binding.id);
                expired_removed = true;
            }
        }
        for id in doomed {
            let position = self
                .entry(slot)
                .and_then(|e| e.bindings.iter().position(|b| b.id == id));
            if let Some(position) = position {
                self.remove_binding_at(slot, position);
            }
        }

        let emptied = match self.entry_mut(slot) {
            Some(entry) => {
                entry.sort();
                entry.bindings.is_empty()
            }
            None => true,
        };
        let outcome = if emptied && set_changed {
            Some(ChangeKind::Removed)
        } else if set_changed {
            Some(ChangeKind::Changed)
        } else if refreshed {
            Some(ChangeKind::Refreshed)
        } else {
            None
        };
        let logged = if emptied && (set_changed || expired_removed) {
            Some(ChangeKind::Removed)
        } else if expired_removed {
            Some(ChangeKind::Changed)
        } else {
            outcome
        };
        if let Some(kind) = logged {
            self.note_change(slot, kind);
        }
        self.release_if_unused(slot);
        outcome
    }

    fn push_binding(&mut self, slot: u32, binding: Binding) {
        let Some(entry) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if entry.bindings.is_empty() {
            self.live_aors += 1;
        }
        self.indexes.insert(slot, &binding);
        entry.bindings.push(binding);
        self.binding_count += 1;
    }
}

/// Updates a bound contact from the request. Strings are only reallocated when they
/// differ, so a plain refresh allocates nothing. Returns true when something the overlay
/// publishes (URI as written, q, instance, reg-id) changed.
fn refresh(
    binding: &mut Binding,
    planned: &PlannedContact<'_>,
    now: Instant,
    call_id: &str,
    cseq: u32,
    source: Peer,
) -> bool {
    let contact = &planned.contact;
    let mut changed = false;
    if *binding.uri != *contact.uri {
        binding.uri = contact.uri.into();
        changed = true;
    }
    if binding.q != planned.q {
        binding.q = planned.q;
        changed = true;
    }
    if binding.instance.as_deref() != contact.instance {
        binding.instance = contact.instance.map(Into::into);
        changed = true;
    }
    if binding.reg_id != contact.reg_id {
        binding.reg_id = contact.reg_id;
        changed = true;
    }
    if *binding.call_id != *call_id {
        binding.call_id = call_id.into();
    }
    binding.cseq = cseq;
    binding.expires_at = deadline(now, planned.expires);
    binding.source = source;
    binding.updated_at = now;
    changed
}
