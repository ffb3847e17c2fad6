//! The forger's Kademlia record store: for a target's registration key it serves a forged
//! record (this is how a forger answers GET_VALUE), for anything else the plain memory store.

use std::borrow::Cow;
use std::sync::Arc;

use libp2p::kad::store::{MemoryStore, RecordStore, Result as StoreResult};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;
use overlay::network::{now_unix, now_unix_millis};

use super::forgery::{Forger, Variant};
use super::Counters;

pub(crate) struct ForgingStore {
    inner: MemoryStore,
    forger: Forger,
    counters: Arc<Counters>,
    /// Set while the forger starts a lookup of its own: the local store must not answer it
    /// with a forgery, nor count one.
    own_lookup: bool,
}

impl ForgingStore {
    pub(crate) fn new(local: PeerId, forger: Forger, counters: Arc<Counters>) -> ForgingStore {
        ForgingStore {
            inner: MemoryStore::new(local),
            forger,
            counters,
            own_lookup: false,
        }
    }

    pub(crate) fn forger(&self) -> &Forger {
        &self.forger
    }

    pub(crate) fn forger_mut(&mut self) -> &mut Forger {
        &mut self.forger
    }

    pub(crate) fn set_own_lookup(&mut self, own: bool) {
        self.own_lookup = own;
    }
}

impl RecordStore for ForgingStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        if let Some(index) = self.forger.target_of(key.as_ref()) {
            if self.own_lookup {
                return None;
            }
            let value = self
                .forger
                .forge(index, Variant::Combined, now_unix(), now_unix_millis());
            if let Some(value) = value {
                self.counters.forged_answer();
                return Some(Cow::Owned(Record {
                    key: key.clone(),
                    value,
                    publisher: None,
                    expires: None,
                }));
            }
        }
        self.inner.get(key)
    }

    /// Target records are made up on every get, never kept (`put_record` stores the value
    /// it puts locally first; that copy is not wanted).
    fn put(&mut self, record: Record) -> StoreResult<()> {
        if self.forger.target_of(record.key.as_ref()).is_some() {
            return Ok(());
        }
        self.inner.put(record)
    }

    fn remove(&mut self, key: &RecordKey) {
        self.inner.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> StoreResult<()> {
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        self.inner.remove_provider(key, provider);
    }
}
