//! Feed pages built once and handed to every subscriber that asks for the same one.
//!
//! Caught-up mirrors all ask for the entries after the same cursor right after each commit. A
//! page (the entries after a cursor, each with its inclusion proof against the latest
//! checkpoint, cosignatures included) is built by the first subscriber that asks; the others
//! wait for it and get the same `Arc`; a subscriber whose cursor falls inside a page built
//! against the same checkpoint gets that page's tail (mirrors that lag read at different
//! cursors). A page is keyed by its cursor and by the checkpoint its proofs are against (size
//! and cosignature count), so nobody gets proofs against an older checkpoint than the one it
//! just read. A few pages are kept, bounded in count and bytes; a
//! subscriber keeps the page it is sending after it is evicted, so its memory stays one page
//! plus its queue. The build runs before any sending: a slow subscriber never holds a page
//! others wait for, and if its task ends mid-build the next one waiting builds instead.

use super::blocking;
use crate::HubBackend;
use crate::metrics::HubMetrics;
use crate::quotas;
use rcpfed_proto::v1;
use rcpfed_store::{StoredCheckpoint, StoredStatement};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OnceCell;
use tonic::Status;

/// Pages kept for subscribers that come later (a caught-up mirror asks within one commit of
/// the others; one far behind reads pages nobody else wants).
pub const CACHED_FEED_PAGES: usize = 16;
/// Bytes of the pages kept (a page holds at most about [`quotas::FEED_BATCH_BYTES`] of
/// entries plus their proofs).
pub const CACHED_FEED_BYTES: usize = 16 << 20;

/// Entries after a cursor, as the feed sends them.
#[derive(Debug)]
pub struct FeedPage {
    entries: Vec<v1::SubscribeFeedResponse>,
    /// The entries' encoded size.
    bytes: usize,
}

impl FeedPage {
    /// Where the entries after `after` start, if this page holds the next one.
    fn start_after(&self, after: u64) -> Option<usize> {
        let start = self.entries.partition_point(|e| e.feed_index <= after);
        let next = after.checked_add(1)?;
        (self.entries.get(start)?.feed_index == next).then_some(start)
    }
}

/// What a page is built from: the cursor and the checkpoint its proofs are against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PageKey {
    after: u64,
    checkpoint_size: u64,
    cosignatures: u32,
}

/// A page being built or built; waiters share the cell.
type Slot = Arc<OnceCell<Arc<FeedPage>>>;

/// The feed pages kept, oldest first.
pub struct FeedPages {
    slots: Mutex<Vec<(PageKey, Slot)>>,
    metrics: HubMetrics,
}

impl FeedPages {
    pub fn new(metrics: HubMetrics) -> Self {
        FeedPages {
            slots: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// The entries after `after` with proofs against the latest checkpoint: a page built
    /// here, or one another subscriber built (from this cursor, or from an earlier one
    /// against the same checkpoint, whose tail this is). None while no entry follows the
    /// cursor.
    pub async fn page(
        &self,
        store: &Arc<dyn HubBackend>,
        after: u64,
    ) -> Result<Option<PageFrom>, Status> {
        let read = Arc::clone(store);
        let checkpoint = blocking("reading the latest checkpoint", move || {
            read.latest_checkpoint()
        })
        .await?;
        // Every commit of entries carries its checkpoint: none yet is an empty log.
        let Some(checkpoint) = checkpoint else {
            return Ok(None);
        };
        if after >= checkpoint.size {
            return Ok(None);
        }
        let key = PageKey {
            after,
            checkpoint_size: checkpoint.size,
            cosignatures: checkpoint.cosignature_count,
        };
        let slot = match self.slot(key) {
            Kept::Tail(page, start) => {
                self.metrics.feed_page_shared();
                return Ok(Some(PageFrom { page, start }));
            }
            Kept::Slot(slot) => slot,
        };
        let mut built_here = false;
        let page = slot
            .get_or_try_init(|| {
                built_here = true;
                let store = Arc::clone(store);
                async move {
                    let built = blocking("building a feed page", move || {
                        Ok::<_, rcpfed_store::StoreError>(build(store.as_ref(), after, &checkpoint))
                    })
                    .await??;
                    Ok::<_, Status>(Arc::new(built))
                }
            })
            .await?;
        let page = Arc::clone(page);
        if built_here {
            self.metrics.feed_page_built();
            self.evict();
        } else {
            self.metrics.feed_page_shared();
        }
        Ok(Some(PageFrom { page, start: 0 }))
    }

    /// The kept page for `key`: its slot (being built or built), the tail of a page built
    /// from an earlier cursor against the same checkpoint, or a new slot (the oldest evicted
    /// past the bounds).
    fn slot(&self, key: PageKey) -> Kept {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, slot)) = slots.iter().find(|(k, _)| *k == key) {
            return Kept::Slot(Arc::clone(slot));
        }
        let tail = slots
            .iter()
            .filter(|(k, _)| {
                k.after < key.after
                    && k.checkpoint_size == key.checkpoint_size
                    && k.cosignatures == key.cosignatures
            })
            .filter_map(|(_, slot)| slot.get())
            .find_map(|page| Some((Arc::clone(page), page.start_after(key.after)?)));
        if let Some((page, start)) = tail {
            return Kept::Tail(page, start);
        }
        let slot = Slot::default();
        slots.push((key, Arc::clone(&slot)));
        let evicted = evict_past_bounds(&mut slots);
        // Pages are freed outside the lock.
        drop(slots);
        drop(evicted);
        Kept::Slot(slot)
    }

    /// Drops the oldest pages past the bounds (a page just built adds its bytes).
    fn evict(&self) {
        let evicted =
            evict_past_bounds(&mut self.slots.lock().unwrap_or_else(PoisonError::into_inner));
        drop(evicted);
    }

    /// Pages kept now (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// What [`FeedPages::slot`] found.
enum Kept {
    /// A built page whose entries from this position on follow the cursor.
    Tail(Arc<FeedPage>, usize),
    /// The cursor's own slot.
    Slot(Slot),
}

/// A page as one subscriber sends it: the entries after its cursor.
#[derive(Debug)]
pub struct PageFrom {
    page: Arc<FeedPage>,
    start: usize,
}

impl PageFrom {
    /// The entries after the cursor, in feed order (none when the store holds no entry after
    /// the cursor that the checkpoint covers).
    pub fn entries(&self) -> &[v1::SubscribeFeedResponse] {
        self.page.entries.get(self.start..).unwrap_or_default()
    }
}

/// Takes the oldest pages out past the bounds; the caller frees them after the lock.
fn evict_past_bounds(slots: &mut Vec<(PageKey, Slot)>) -> Vec<(PageKey, Slot)> {
    let bytes = |slots: &[(PageKey, Slot)]| -> usize {
        slots
            .iter()
            .filter_map(|(_, slot)| slot.get())
            .map(|page| page.bytes)
            .sum()
    };
    let mut excess = slots.len().saturating_sub(CACHED_FEED_PAGES);
    while excess < slots.len() && bytes(&slots[excess..]) > CACHED_FEED_BYTES {
        excess += 1;
    }
    slots.drain(..excess).collect()
}

/// The entries after `after` that `checkpoint` covers (at most a batch, bounded in rows and
/// bytes), each with its inclusion proof against it. Entries committed after the checkpoint
/// was read wait for the next page: their proofs need a later checkpoint.
fn build(
    store: &dyn HubBackend,
    after: u64,
    checkpoint: &StoredCheckpoint,
) -> Result<FeedPage, Status> {
    let mut rows = store
        .list_feed(after, quotas::FEED_BATCH_ROWS, quotas::FEED_BATCH_BYTES)
        .map_err(|e| store_status("reading the feed", e))?;
    rows.retain(|row| row.feed_index <= checkpoint.size);
    let leaves: Vec<u64> = rows.iter().map(|row| row.feed_index - 1).collect();
    let proofs = crate::log::log_proofs(store, &leaves, checkpoint)
        .map_err(|e| store_status("building inclusion proofs", e))?;
    let entries = rows
        .iter()
        .zip(proofs)
        .map(|(row, proof)| feed_item(row, proof))
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = entries.iter().map(prost::Message::encoded_len).sum();
    Ok(FeedPage { entries, bytes })
}

fn store_status(what: &str, e: rcpfed_store::StoreError) -> Status {
    rcpfed_grpc::status::store_status(what, &e)
}

/// A stored entry as a feed message. One that no longer decodes is damage to the log: INTERNAL,
/// and the stream ends, rather than a hole every mirror would stall on.
fn feed_item(st: &StoredStatement, log: v1::LogProof) -> Result<v1::SubscribeFeedResponse, Status> {
    let what = format!("feed entry {} as stored", st.feed_index);
    Ok(v1::SubscribeFeedResponse {
        feed_index: st.feed_index,
        envelope: Some(super::stored_envelope(&what, &st.envelope)?),
        receipt: Some(super::stored_envelope(&what, &st.receipt)?),
        log: Some(log),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::testkit::obs;
    use crate::ingest::{Ingest, IngestOutcome, ReceiptSigner};
    use rcpfed_core::Digest;
    use rcpfed_core::keys::SecretKey;
    use rcpfed_core::statement::ObservationAction;
    use rcpfed_store::{Cosignature, SqliteHubStore};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn HubBackend>,
        metrics: HubMetrics,
    }

    /// A hub store with `entries` statements of one node committed through the sequencer.
    async fn log_of(entries: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store: Arc<dyn HubBackend> =
            Arc::new(SqliteHubStore::open(&dir.path().join("hub.sqlite")).expect("store"));
        let key = SecretKey::from_seed(&[7; 32]);
        let metrics = HubMetrics::register(&mut prometheus_client::registry::Registry::default());
        let ingest = Ingest::start(
            Arc::clone(&store),
            ReceiptSigner {
                federation_id: crate::ingest::testkit::FEDERATION.into(),
                hub_id: "gfmd".into(),
                key: key.clone(),
            },
            metrics.clone(),
        )
        .expect("sequencer");
        let mut prev: Option<Digest> = None;
        for seq in 1..=entries {
            let st = crate::ingest::testkit::snapshot(
                &key,
                "colombo",
                seq,
                prev,
                &format!("INDICATOR_{seq}"),
                vec![obs(ObservationAction::Append, "BGD", Some(1.0))],
            );
            prev = Some(st.digest);
            match ingest.submit(st).await {
                Ok(IngestOutcome::Accepted { .. }) => {}
                other => panic!("expected acceptance, got {other:?}"),
            }
        }
        Fixture {
            _dir: dir,
            store,
            metrics,
        }
    }

    fn latest(store: &Arc<dyn HubBackend>) -> StoredCheckpoint {
        store
            .latest_checkpoint()
            .expect("read")
            .expect("a checkpoint")
    }

    /// Two subscribers at the same cursor get one page, built once, with every entry after
    /// the cursor and its proof against the latest checkpoint.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_subscribers_at_the_same_cursor_share_one_built_page() {
        let f = log_of(3).await;
        let pages = FeedPages::new(f.metrics.clone());
        let (first, second) = tokio::join!(pages.page(&f.store, 0), pages.page(&f.store, 0));
        let first = first.expect("page").expect("entries after 0");
        let second = second.expect("page").expect("entries after 0");
        assert!(Arc::ptr_eq(&first.page, &second.page), "one page for both");
        assert_eq!(f.metrics.feed_pages(), (1, 1), "(built, shared)");
        let indexes: Vec<u64> = first.entries().iter().map(|e| e.feed_index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        let checkpoint = latest(&f.store);
        let want =
            crate::log::log_proofs(f.store.as_ref(), &[0, 1, 2], &checkpoint).expect("proofs");
        let got: Vec<v1::LogProof> = first
            .entries()
            .iter()
            .map(|e| e.log.clone().expect("a proof"))
            .collect();
        assert_eq!(got, want);
        // A third subscriber later, same checkpoint: still the same page.
        let third = pages
            .page(&f.store, 0)
            .await
            .expect("page")
            .expect("entries");
        assert!(Arc::ptr_eq(&first.page, &third.page));
        assert_eq!(f.metrics.feed_pages(), (1, 2));
    }

    /// A new cosignature makes a new page whose proofs carry it: nobody is handed a page
    /// against an older view of the checkpoint than the one it read.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_cosignature_builds_a_new_page_that_carries_it() {
        let f = log_of(2).await;
        let pages = FeedPages::new(f.metrics.clone());
        let before = pages
            .page(&f.store, 1)
            .await
            .expect("page")
            .expect("entry 2");
        let checkpoint = latest(&f.store);
        let line = "— witness-a AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        f.store
            .add_cosignature(&Cosignature {
                size: checkpoint.size,
                witness_id: "witness-a".into(),
                line: line.into(),
                timestamp: 1,
            })
            .expect("cosignature stored");
        let after = pages
            .page(&f.store, 1)
            .await
            .expect("page")
            .expect("entry 2");
        assert!(!Arc::ptr_eq(&before.page, &after.page));
        assert_eq!(f.metrics.feed_pages(), (2, 0));
        let note = |page: &PageFrom| page.entries()[0].log.clone().expect("a proof").checkpoint;
        assert!(!note(&before).contains(line));
        assert!(note(&after).ends_with(line), "{}", note(&after));
    }

    /// A cursor inside a page built against the same checkpoint gets that page's tail, built
    /// nowhere again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_cursor_gets_the_tail_of_a_page_built_from_an_earlier_one() {
        let f = log_of(6).await;
        let pages = FeedPages::new(f.metrics.clone());
        let whole = pages
            .page(&f.store, 0)
            .await
            .expect("page")
            .expect("entries");
        let tail = pages
            .page(&f.store, 4)
            .await
            .expect("page")
            .expect("entries");
        assert!(Arc::ptr_eq(&whole.page, &tail.page));
        let indexes: Vec<u64> = tail.entries().iter().map(|e| e.feed_index).collect();
        assert_eq!(indexes, [5, 6]);
        assert_eq!(tail.entries(), &whole.entries()[4..]);
        assert_eq!(f.metrics.feed_pages(), (1, 1));
    }

    /// A caught-up cursor has no page; the cache keeps at most its bound of pages, and a
    /// subscriber keeps the page it holds after it is evicted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn caught_up_has_no_page_and_the_cache_is_bounded() {
        let entries = CACHED_FEED_PAGES as u64 + 4;
        let f = log_of(entries).await;
        let pages = FeedPages::new(f.metrics.clone());
        assert!(pages.page(&f.store, entries).await.expect("read").is_none());
        // From the last cursor back, so no kept page holds the next one's entries.
        let oldest = pages
            .page(&f.store, entries - 1)
            .await
            .expect("page")
            .expect("entries");
        for after in (0..entries - 1).rev() {
            let page = pages
                .page(&f.store, after)
                .await
                .expect("page")
                .expect("entries");
            let first = page.entries().first().expect("an entry").feed_index;
            assert_eq!(first, after + 1);
            assert_eq!(page.entries().len() as u64, entries - after);
        }
        assert_eq!(pages.kept(), CACHED_FEED_PAGES);
        assert_eq!(f.metrics.feed_pages(), (entries, 0));
        let held: Vec<u64> = oldest.entries().iter().map(|e| e.feed_index).collect();
        assert_eq!(held, [entries], "still held after its eviction");
    }
}
