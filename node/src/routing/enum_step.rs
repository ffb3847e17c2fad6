//! The ENUM step of the routing chain: the NAPTR records of a number's domain, walked
//! (non-terminal records followed, loops caught) to the first usable SIP URI.

use super::e164::{apply_regexp, sip_steps, EnumStep, E164};
use super::Trace;
use crate::routing::chain::MAX_DNS_TTL;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use std::time::Instant;

/// Non-terminal NAPTRs followed for one number, at most.
const MAX_NAPTR_HOPS: usize = 4;

/// Why ENUM gave nothing usable.
pub(super) enum EnumFailure {
    /// DNS did not answer: try again later.
    Temporary(String),
    /// The records are broken (bad regexp, loop): a configuration fault at the zone.
    Broken(String),
}

/// The first usable ENUM result for `number` under `suffix`: the URI and until when it
/// holds; None when the tree has no SIP record for it.
pub(super) async fn lookup(
    dns: &TokioResolver,
    number: &E164,
    suffix: &str,
    trace: &mut Trace,
) -> Result<Option<(String, Instant)>, EnumFailure> {
    let mut name = number.domain(suffix);
    let mut visited: Vec<String> = Vec::new();
    let mut until = Instant::now() + MAX_DNS_TTL;
    for _ in 0..MAX_NAPTR_HOPS {
        visited.push(name.to_ascii_lowercase());
        let lookup = match dns.lookup(name.as_str(), RecordType::NAPTR).await {
            Ok(lookup) => lookup,
            Err(error) if error.is_no_records_found() => {
                if alias_led_elsewhere(&error, &name) {
                    // The resolver followed CNAMEs (as far as it goes) and found no
                    // NAPTR at the end: a CNAME loop or a dangling alias in the zone.
                    tracing::warn!(%name, "ENUM: CNAME chain without a NAPTR at its end");
                    trace.note(|| format!("ENUM: {name}: CNAME chain leads to no NAPTR"));
                    return Err(EnumFailure::Broken(
                        "ENUM: CNAME chain leads nowhere".to_owned(),
                    ));
                }
                trace.note(|| format!("ENUM: {name}: no NAPTR"));
                return Ok(None);
            }
            Err(error) => {
                tracing::warn!(%name, %error, "ENUM lookup failed");
                trace.note(|| format!("ENUM: {name}: {error}"));
                return Err(EnumFailure::Temporary("ENUM lookup failed".to_owned()));
            }
        };
        until = until.min(lookup.valid_until());
        let records: Vec<_> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::NAPTR(naptr) => Some(naptr.clone()),
                _ => None,
            })
            .collect();
        let steps = sip_steps(&records);
        if steps.is_empty() {
            trace.note(|| format!("ENUM: {name}: no E2U+sip record"));
            return Ok(None);
        }
        let mut broken = None;
        let mut next = None;
        for step in steps {
            match step {
                EnumStep::Rewrite(regexp) => match apply_regexp(&regexp, number) {
                    Ok(target) => {
                        trace.note(|| format!("ENUM: {name}: NAPTR {regexp:?} gives {target}"));
                        return Ok(Some((target, until)));
                    }
                    Err(error) => {
                        tracing::warn!(%name, %error, "unusable ENUM record");
                        trace.note(|| format!("ENUM: {name}: {error}"));
                        broken = Some(error.short().to_owned());
                    }
                },
                EnumStep::Continue(replacement) => {
                    next = Some(replacement);
                    break;
                }
            }
        }
        match next {
            Some(replacement) => {
                if visited.contains(&replacement.to_ascii_lowercase()) {
                    tracing::warn!(%name, %replacement, "ENUM NAPTR loop");
                    trace.note(|| {
                        format!("ENUM: {name}: non-terminal NAPTR back to {replacement}: a loop")
                    });
                    return Err(EnumFailure::Broken("ENUM NAPTR loop".to_owned()));
                }
                trace.note(|| format!("ENUM: {name}: non-terminal NAPTR to {replacement}"));
                name = replacement;
            }
            None => {
                return Err(EnumFailure::Broken(
                    broken.unwrap_or_else(|| "no usable ENUM record".to_owned()),
                ))
            }
        }
    }
    tracing::warn!(%name, "ENUM: too many non-terminal NAPTRs");
    trace.note(|| format!("ENUM: more than {MAX_NAPTR_HOPS} non-terminal NAPTRs"));
    Err(EnumFailure::Broken("ENUM NAPTR loop".to_owned()))
}

/// True when a "no records" answer is for another name than the one asked: the resolver
/// followed aliases to it.
fn alias_led_elsewhere(error: &NetError, asked: &str) -> bool {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { query, .. })) => {
            let answered = query.name().to_ascii();
            !answered
                .trim_end_matches('.')
                .eq_ignore_ascii_case(asked.trim_end_matches('.'))
        }
        _ => false,
    }
}
