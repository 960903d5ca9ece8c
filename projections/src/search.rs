//! Product search with tantivy: BM25 over name, SKU, category and description, typo tolerance,
//! prefix matching on the last word (search as you type), facets by category and price bucket,
//! and the catalogue's filters.
//!
//! # Exactly once
//! Documents and the checkpoint reach disk in one tantivy commit: the checkpoint is the commit
//! payload, so after a crash the index and its checkpoint agree and what was not committed is
//! simply applied again.
//!
//! # Commits on a timer
//! A commit writes a new segment (and sizes a fresh term table for the next one), reloads the
//! readers and feeds the merges, so one per batch was most of the projection's cost under
//! load. A batch's documents go to the writer at once and are committed by the worker's timed
//! work ([`Consumer::tick`]) once the oldest of them has waited [`COMMIT_INTERVAL`]. Until
//! then the processed position ([`Consumer::checkpoint`], where the next batch starts) is ahead
//! of the visible one ([`Consumer::visible`], the last commit, which read-your-writes and the
//! status pages use), and the documents not yet committed are kept in memory so the next
//! batch folds onto them. A failed commit drops the writer and its uncommitted documents and
//! moves the processed position back to the last commit. Batches without product events move
//! both positions when nothing waits for a commit (the index is already what it would be).
//!
//! # Layout on disk
//! `<dir>/CURRENT` names the live index directory (`index-<uuid>`). `shop replay search` builds a
//! fresh index beside it, catches up with the log, then replaces `CURRENT` with a rename; the
//! worker of a running shop notices on its next batch, switches its readers and writer over and
//! removes the old directory. Searches keep answering from the old index until then.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use store::{EventStore, LogCursor, LogEvent};
use tantivy::collector::{Count, FacetCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{Facet, FacetOptions, Field, IndexRecordOption, Schema, Value as _, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::detail::{by_product, fold_all};
use worker_kit::Consumer;

use crate::own::{decode, encode, Checkpoint};
use crate::{ProjectionError, RebuildReport};

pub const NAME: &str = "search";

/// Price buckets (minor units, upper bound exclusive) reported as facets.
const BUCKETS: [(i64, Option<i64>); 5] =
    [(0, Some(1_000)), (1_000, Some(5_000)), (5_000, Some(10_000)), (10_000, Some(50_000)), (50_000, None)];

/// Commit at least every this many log events, even when none of them touched a product, so a
/// restart does not re-read much of the log.
const IDLE_COMMIT_EVENTS: i64 = 100_000;

/// How long documents may wait in the writer for a commit (see the module's documentation).
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(40);

fn index_error(e: tantivy::TantivyError) -> ProjectionError {
    ProjectionError::Malformed(format!("search index: {e}"))
}

fn io_error(e: std::io::Error) -> ProjectionError {
    ProjectionError::Malformed(format!("search index directory: {e}"))
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    tenant: Field,
    name: Field,
    sku: Field,
    category_text: Field,
    description: Field,
    category: Field,
    price_bucket: Field,
    price: Field,
    visible: Field,
    published: Field,
    featured: Field,
    doc: Field,
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    b.add_text_field("key", STRING);
    b.add_text_field("tenant", STRING);
    b.add_text_field("name", TEXT);
    b.add_text_field("sku", TEXT);
    b.add_text_field("category_text", TEXT);
    b.add_text_field("description", TEXT);
    b.add_facet_field("category", FacetOptions::default());
    b.add_facet_field("price_bucket", FacetOptions::default());
    b.add_i64_field("price", INDEXED | FAST);
    b.add_u64_field("visible", INDEXED);
    b.add_u64_field("published", INDEXED);
    b.add_u64_field("featured", INDEXED);
    b.add_text_field("doc", STORED);
    b.build()
}

impl Fields {
    fn of(schema: &Schema) -> Result<Self, ProjectionError> {
        let f = |name: &str| schema.get_field(name).map_err(index_error);
        Ok(Self {
            key: f("key")?,
            tenant: f("tenant")?,
            name: f("name")?,
            sku: f("sku")?,
            category_text: f("category_text")?,
            description: f("description")?,
            category: f("category")?,
            price_bucket: f("price_bucket")?,
            price: f("price")?,
            visible: f("visible")?,
            published: f("published")?,
            featured: f("featured")?,
            doc: f("doc")?,
        })
    }

    fn key_term(&self, tenant: &str, id: &str) -> Term {
        Term::from_field_text(self.key, &format!("{tenant}:{id}"))
    }

    /// The indexed form of a product document (as `detail::fold` makes it).
    fn document(&self, tenant: &str, id: &str, doc: &Value) -> TantivyDocument {
        let text = |k: &str| doc[k].as_str().unwrap_or_default();
        let flag = |k: &str| u64::from(doc[k].as_bool().unwrap_or(false));
        let price = doc["price"]["amount"].as_i64().unwrap_or(0);
        let mut d = TantivyDocument::default();
        d.add_text(self.key, format!("{tenant}:{id}"));
        d.add_text(self.tenant, tenant);
        d.add_text(self.name, text("name"));
        d.add_text(self.sku, text("sku"));
        d.add_text(self.category_text, text("category").replace(['/', '-'], " "));
        d.add_text(self.description, text("description"));
        d.add_facet(self.category, Facet::from_path(text("category").split('/').filter(|s| !s.is_empty())));
        d.add_facet(self.price_bucket, Facet::from_path([format!("b{}", bucket_of(price))]));
        d.add_i64(self.price, price);
        d.add_u64(self.visible, flag("published") * (1 - flag("discontinued")));
        d.add_u64(self.published, flag("published"));
        d.add_u64(self.featured, flag("featured"));
        d.add_text(self.doc, doc.to_string());
        d
    }
}

fn bucket_of(price: i64) -> usize {
    BUCKETS.iter().position(|(lo, hi)| price >= *lo && hi.is_none_or(|hi| price < hi)).unwrap_or(0)
}

/// One index directory, open for reading (and for writing in the process that keeps it).
struct Live {
    dir_name: String,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    state: Mutex<WriteState>,
}

struct WriteState {
    writer: Option<IndexWriter>,
    /// Where the index is, committed or not: where the next batch starts.
    checkpoint: Checkpoint,
    /// Where the last commit left it: what readers see.
    committed: Checkpoint,
    /// Log events processed since the last commit.
    uncommitted: i64,
    /// Documents in the writer but not yet committed, and when the first of them came.
    pending: HashMap<(String, String), Value>,
    pending_since: Option<Instant>,
}

impl WriteState {
    /// What readers see: everything processed while no document waits for a commit.
    fn visible(&self) -> Checkpoint {
        if self.pending.is_empty() {
            self.checkpoint
        } else {
            self.committed
        }
    }

    /// Forgets what was not committed: the writer's documents (dropping it discards them) and
    /// the processed position past the last commit.
    fn discard(&mut self) {
        self.writer = None;
        self.pending.clear();
        self.pending_since = None;
        self.checkpoint = self.committed;
        self.uncommitted = 0;
    }
}

impl Live {
    fn open(path: &Path, dir_name: &str) -> Result<Self, ProjectionError> {
        let dir = path.join(dir_name);
        let index = if dir.join("meta.json").exists() {
            Index::open_in_dir(&dir).map_err(index_error)?
        } else {
            std::fs::create_dir_all(&dir).map_err(io_error)?;
            Index::create_in_dir(&dir, schema()).map_err(index_error)?
        };
        let fields = Fields::of(&index.schema())?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(index_error)?;
        let checkpoint = index.load_metas().map_err(index_error)?.payload.as_deref().and_then(decode);
        Ok(Self {
            dir_name: dir_name.to_owned(),
            index,
            reader,
            fields,
            state: Mutex::new(WriteState {
                writer: None,
                checkpoint,
                committed: checkpoint,
                uncommitted: 0,
                pending: HashMap::new(),
                pending_since: None,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, WriteState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkpoint(&self) -> Checkpoint {
        self.state().checkpoint
    }

    fn visible(&self) -> Checkpoint {
        self.state().visible()
    }

    /// The stored document of a product, as of the last commit.
    fn load(&self, searcher: &tantivy::Searcher, tenant: &str, id: &str) -> Result<Option<Value>, ProjectionError> {
        let query = TermQuery::new(self.fields.key_term(tenant, id), IndexRecordOption::Basic);
        let Some((_, address)) = searcher.search(&query, &TopDocs::with_limit(1).order_by_score()).map_err(index_error)?.into_iter().next()
        else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
        Ok(doc.get_first(self.fields.doc).and_then(|v| v.as_str().map(serde_json::from_str)).transpose()?)
    }

    /// Applies a batch of `count` log events read from `from` and ending at `last`, of which
    /// `events` holds (at least) the product events: documents are taken from what waits for a
    /// commit, else from `cache` when it has them (a rebuild keeps every document there), else
    /// from the index. The documents go to the writer; they are committed with the new
    /// checkpoint when `commit_after` has passed since the oldest uncommitted one (at once with
    /// `Duration::ZERO`), otherwise by a later [`Live::commit_due`].
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        events: &[LogEvent],
        (last, count): (LogCursor, usize),
        from: Checkpoint,
        mut cache: Option<&mut HashMap<(String, String), Value>>,
        threads: usize,
        fault: bool,
        commit_after: Duration,
    ) -> Result<(), ProjectionError> {
        let mut state = self.state();
        if state.checkpoint != from {
            return Err(ProjectionError::Concurrent);
        }
        let mut docs = Vec::new();
        let searcher = self.reader.searcher();
        for ((tenant, id), product_events) in by_product(events)? {
            let key = (tenant, id);
            let stored = match state.pending.get(&key).cloned().or_else(|| cache.as_deref_mut().and_then(|c| c.remove(&key))) {
                Some(doc) => Some(doc),
                None => self.load(&searcher, &key.0, &key.1)?,
            };
            if let Some(doc) = fold_all(stored, &key.1, &product_events)? {
                docs.push((key, doc));
            }
        }
        let next = (last, from.map_or(0, |(_, n)| n) + count as i64);
        state.uncommitted += count as i64;
        if docs.is_empty() && !fault {
            state.checkpoint = Some(next);
            // Nothing waits and nothing changed: the index is already what readers see here.
            if state.pending.is_empty() && state.uncommitted < IDLE_COMMIT_EVENTS {
                state.committed = state.checkpoint;
                return Ok(());
            }
            return self.commit_if_due(&mut state, commit_after);
        }
        if state.writer.is_none() {
            state.writer = Some(self.writer(threads)?);
        }
        let Some(writer) = state.writer.as_mut() else {
            return Err(ProjectionError::Malformed("no index writer".into()));
        };
        let added = (|| {
            for ((tenant, id), doc) in &docs {
                writer.delete_term(self.fields.key_term(tenant, id));
                writer.add_document(self.fields.document(tenant, id, doc))?;
            }
            if fault {
                return Err(tantivy::TantivyError::InternalError("injected fault".into()));
            }
            Ok(())
        })();
        if let Err(e) = added {
            state.discard();
            #[cfg(feature = "faults")]
            if fault {
                return Err(ProjectionError::Injected);
            }
            return Err(index_error(e));
        }
        if !docs.is_empty() {
            state.pending_since.get_or_insert_with(Instant::now);
        }
        match cache {
            // A rebuild keeps every document in its cache and commits each batch.
            Some(cache) => cache.extend(docs),
            None => state.pending.extend(docs),
        }
        state.checkpoint = Some(next);
        self.commit_if_due(&mut state, commit_after)
    }

    /// Commits the writer with the processed position once the oldest uncommitted document
    /// has waited `after` (at once when none waits: the position alone is being recorded).
    fn commit_if_due(&self, state: &mut WriteState, after: Duration) -> Result<(), ProjectionError> {
        let due = state.pending_since.is_none_or(|since| since.elapsed() >= after);
        let Some(next) = state.checkpoint else { return Ok(()) };
        if !due || state.committed == state.checkpoint {
            return Ok(());
        }
        if state.writer.is_none() {
            state.writer = Some(self.writer(1)?);
        }
        let Some(writer) = state.writer.as_mut() else {
            return Err(ProjectionError::Malformed("no index writer".into()));
        };
        let result = (|| {
            let mut commit = writer.prepare_commit()?;
            commit.set_payload(&encode(next.0, next.1));
            commit.commit()?;
            self.reader.reload()
        })();
        if let Err(e) = result {
            state.discard();
            return Err(index_error(e));
        }
        state.committed = state.checkpoint;
        state.uncommitted = 0;
        state.pending.clear();
        state.pending_since = None;
        Ok(())
    }

    fn writer(&self, threads: usize) -> Result<IndexWriter, ProjectionError> {
        self.index.writer_with_num_threads(threads, 32_000_000 * threads).map_err(index_error)
    }

    /// Whether uncommitted documents have waited `after`.
    fn commit_is_due(&self, after: Duration) -> bool {
        self.state().pending_since.is_some_and(|since| since.elapsed() >= after)
    }

    /// The timed commit: `true` when it committed something.
    fn commit_due(&self, after: Duration) -> Result<bool, ProjectionError> {
        let mut state = self.state();
        if state.pending.is_empty() {
            return Ok(false);
        }
        self.commit_if_due(&mut state, after)?;
        Ok(state.pending.is_empty())
    }

    /// Releases the writer (and its lock), after merges finish.
    fn close_writer(&self) -> Result<(), ProjectionError> {
        let writer = self.state().writer.take();
        if let Some(w) = writer {
            w.wait_merging_threads().map_err(index_error)?;
        }
        Ok(())
    }
}

/// A search query, already checked.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub tenant: String,
    pub text: String,
    pub category: Option<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub featured: Option<bool>,
    /// Admins only; others always search published products.
    pub published: Option<bool>,
    pub admin: bool,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SearchResults {
    /// Matching products (all pages).
    pub total: usize,
    pub items: Vec<Hit>,
    pub facets: Facets,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Hit {
    pub score: f32,
    #[serde(flatten)]
    pub product: Value,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Facets {
    /// Product counts of the categories directly below the `category` filter (or the top).
    pub categories: Vec<CategoryCount>,
    pub price: Vec<PriceBucket>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CategoryCount {
    pub category: String,
    pub count: u64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PriceBucket {
    /// Inclusive, minor units.
    pub min: i64,
    /// Exclusive; absent for the top bucket.
    pub max: Option<i64>,
    pub count: u64,
}

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
}

fn facet_of(category: &str) -> Facet {
    Facet::from_path(category.split('/').filter(|s| !s.is_empty()))
}

/// Edits allowed for a word of `len` characters: none for short words (too many false hits).
fn typo_distance(len: usize) -> u8 {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

impl Live {
    fn text_query(&self, text: &str) -> Result<Box<dyn Query>, ProjectionError> {
        let f = self.fields;
        let mut analyzer = self.index.tokenizer_for_field(f.name).map_err(index_error)?;
        let mut words = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            words.push(token.text.clone());
        }
        if words.is_empty() {
            return Ok(Box::new(AllQuery));
        }
        // The last word may be unfinished unless the query ends with a space.
        let typing = !text.ends_with(char::is_whitespace);
        let weighted = [(f.name, 3.0), (f.sku, 2.5), (f.category_text, 1.5), (f.description, 1.0)];
        let mut all = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (field, boost) in weighted {
                let term = Term::from_field_text(field, word);
                any.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(TermQuery::new(term.clone(), IndexRecordOption::WithFreqs)), boost)),
                ));
                let distance = typo_distance(word.chars().count());
                if distance > 0 {
                    any.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(FuzzyTermQuery::new(term.clone(), distance, true)), boost * 0.3)),
                    ));
                }
                if typing && i + 1 == words.len() && field != f.description {
                    any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(FuzzyTermQuery::new_prefix(term, 0, true)), boost * 0.5))));
                }
            }
            all.push((Occur::Must, Box::new(BooleanQuery::new(any)) as Box<dyn Query>));
        }
        Ok(Box::new(BooleanQuery::new(all)))
    }

    fn search(&self, r: &SearchRequest) -> Result<SearchResults, ProjectionError> {
        let f = self.fields;
        let mut clauses = vec![(Occur::Must, self.text_query(&r.text)?)];
        let term =
            |field: Field, v: u64| Box::new(TermQuery::new(Term::from_field_u64(field, v), IndexRecordOption::Basic)) as Box<dyn Query>;
        clauses.push(filter(Box::new(TermQuery::new(Term::from_field_text(f.tenant, &r.tenant), IndexRecordOption::Basic))));
        match (r.admin, r.published) {
            (false, _) => clauses.push(filter(term(f.visible, 1))),
            (true, Some(p)) => clauses.push(filter(term(f.published, u64::from(p)))),
            (true, None) => {}
        }
        if let Some(featured) = r.featured {
            clauses.push(filter(term(f.featured, u64::from(featured))));
        }
        if let Some(category) = &r.category {
            clauses.push(filter(Box::new(TermQuery::new(Term::from_facet(f.category, &facet_of(category)), IndexRecordOption::Basic))));
        }
        if r.min_price.is_some() || r.max_price.is_some() {
            let bound = |v: Option<i64>| v.map_or(Bound::Unbounded, |v| Bound::Included(Term::from_field_i64(f.price, v)));
            clauses.push(filter(Box::new(RangeQuery::new(bound(r.min_price), bound(r.max_price)))));
        }
        let query = BooleanQuery::new(clauses);
        let parent = r.category.as_deref().map_or_else(Facet::root, facet_of);
        let mut categories = FacetCollector::for_field("category");
        categories.add_facet(parent.clone());
        let mut buckets = FacetCollector::for_field("price_bucket");
        buckets.add_facet(Facet::root());
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(r.limit.max(1)).and_offset(r.offset).order_by_score();
        let (top, total, categories, buckets) = searcher.search(&query, &(top, Count, categories, buckets)).map_err(index_error)?;
        let mut items = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address).map_err(index_error)?;
            let mut product: Value =
                doc.get_first(f.doc).and_then(|v| v.as_str().map(serde_json::from_str)).transpose()?.unwrap_or_default();
            if let Some(p) = product.as_object_mut() {
                p.remove("version");
            }
            items.push(Hit { score, product });
        }
        let categories =
            categories.get(parent).map(|(facet, count)| CategoryCount { category: facet.to_path().join("/"), count }).collect();
        let counts: BTreeMap<String, u64> = buckets.get(Facet::root()).map(|(facet, count)| (facet.to_path_string(), count)).collect();
        let price = BUCKETS
            .iter()
            .enumerate()
            .map(|(i, (min, max))| PriceBucket { min: *min, max: *max, count: counts.get(&format!("/b{i}")).copied().unwrap_or(0) })
            .collect();
        Ok(SearchResults { total, items, facets: Facets { categories, price } })
    }
}

/// The product search read model: an on-disk tantivy index kept by a worker.
pub struct ProductSearch {
    store: EventStore,
    dir: PathBuf,
    live: RwLock<Arc<Live>>,
    commit_interval: Duration,
    /// Queries running at once, one per core: a burst of searches waits here, not in new
    /// threads of the blocking pool (each with its stack and heap arenas).
    queries: tokio::sync::Semaphore,
    /// Tests: the next batch fails after adding its documents, before its commit.
    #[cfg(feature = "faults")]
    fault: std::sync::atomic::AtomicBool,
}

fn current_name(dir: &Path) -> Result<Option<String>, ProjectionError> {
    match std::fs::read_to_string(dir.join("CURRENT")) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(e)),
    }
}

/// Points `CURRENT` at `name`, atomically (write beside it, then rename over it).
fn set_current(dir: &Path, name: &str) -> Result<(), ProjectionError> {
    let tmp = dir.join("CURRENT.tmp");
    std::fs::write(&tmp, name).map_err(io_error)?;
    std::fs::rename(&tmp, dir.join("CURRENT")).map_err(io_error)
}

/// Removes an index directory nobody writes to any more (its writer lock is free).
fn remove_if_unused(dir: &Path, name: &str) {
    let path = dir.join(name);
    let unused = Index::open_in_dir(&path).and_then(|i| i.writer_with_num_threads::<TantivyDocument>(1, 15_000_000)).is_ok();
    if unused {
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove an old search index");
        }
    }
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProjectionError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, ProjectionError>> {
    async move { tokio::task::spawn_blocking(f).await.map_err(|e| ProjectionError::Malformed(format!("search task: {e}")))? }
}

impl ProductSearch {
    /// Opens (or creates) the index under `dir`.
    pub fn open(store: EventStore, dir: &Path) -> Result<Self, ProjectionError> {
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let name = match current_name(dir)? {
            Some(name) => name,
            None => {
                let name = format!("index-{}", uuid::Uuid::now_v7());
                set_current(dir, &name)?;
                name
            }
        };
        let live = Live::open(dir, &name)?;
        Ok(Self {
            store,
            dir: dir.to_owned(),
            live: RwLock::new(Arc::new(live)),
            commit_interval: COMMIT_INTERVAL,
            queries: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
            #[cfg(feature = "faults")]
            fault: Default::default(),
        })
    }

    /// How long documents may wait for a commit ([`COMMIT_INTERVAL`] unless set; zero commits
    /// every batch).
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Commits whatever waits for a commit, now (shutdown, tools, tests).
    pub async fn flush(&self) -> Result<(), ProjectionError> {
        let live = self.follow_current()?;
        blocking(move || live.commit_due(Duration::ZERO).map(drop)).await
    }

    /// Tests: makes the next batch fail after its documents are added, before the commit, as a
    /// crash there would.
    #[cfg(feature = "faults")]
    pub fn inject_fault(&self) {
        self.fault.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a replacement is being built (`shop replay`).
    pub fn rebuilding(&self) -> bool {
        self.dir.join("REBUILDING").exists()
    }

    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Switches to the index `CURRENT` names if a rebuild replaced it, and removes the old one.
    fn follow_current(&self) -> Result<Arc<Live>, ProjectionError> {
        let live = self.live();
        match current_name(&self.dir)? {
            Some(name) if name != live.dir_name => {
                let next = Arc::new(Live::open(&self.dir, &name)?);
                *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&next);
                live.close_writer()?;
                remove_if_unused(&self.dir, &live.dir_name);
                tracing::info!(index = %name, "search switched to a rebuilt index");
                Ok(next)
            }
            _ => Ok(live),
        }
    }

    pub async fn search(&self, request: SearchRequest) -> Result<SearchResults, ProjectionError> {
        let live = self.live();
        let _running = self.queries.acquire().await.map_err(|e| ProjectionError::Malformed(format!("search queue: {e}")))?;
        blocking(move || live.search(&request)).await
    }

    /// Builds a new index from the whole log beside the live one, catches up, and makes it
    /// the live one. `progress(done, head)` is called as events are read.
    pub async fn rebuild(&self, mut progress: impl FnMut(i64, i64)) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        let name = format!("index-{}", uuid::Uuid::now_v7());
        std::fs::write(self.dir.join("REBUILDING"), &name).map_err(io_error)?;
        let fresh = Arc::new(Live::open(&self.dir, &name)?);
        // Fold the log into memory (one document per product), then index every document once.
        let (mut docs, cursor, mut done) = crate::detail::fold_log(&self.store, &mut progress).await?;
        let written = Arc::clone(&fresh);
        docs = blocking(move || {
            let mut state = written.state();
            let mut writer: IndexWriter = written.index.writer(256_000_000).map_err(index_error)?;
            for ((tenant, id), doc) in &docs {
                writer.add_document(written.fields.document(tenant, id, doc)).map_err(index_error)?;
            }
            let mut commit = writer.prepare_commit().map_err(index_error)?;
            commit.set_payload(&encode(cursor, done));
            commit.commit().map_err(index_error)?;
            written.reader.reload().map_err(index_error)?;
            state.writer = Some(writer);
            state.checkpoint = Some((cursor, done));
            state.committed = state.checkpoint;
            Ok(docs)
        })
        .await?;
        // Catch up with what was written meanwhile, with the documents still at hand.
        loop {
            let from = fresh.checkpoint();
            let events = self.store.read_log(from.map(|c| c.0).unwrap_or_default(), 20_000).await?;
            if events.is_empty() {
                break;
            }
            done += events.len() as i64;
            let (f, batch) = (Arc::clone(&fresh), events);
            docs = blocking(move || {
                let mut docs = docs;
                let end = batch.last().map(|e| e.cursor).unwrap_or_default();
                f.apply(&batch, (end, batch.len()), from, Some(&mut docs), 2, false, Duration::ZERO)?;
                Ok(docs)
            })
            .await?;
            progress(done, done);
        }
        drop(docs);
        let f = Arc::clone(&fresh);
        blocking(move || f.close_writer()).await?;
        let old = self.live();
        set_current(&self.dir, &name)?;
        let _ = std::fs::remove_file(self.dir.join("REBUILDING"));
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        // A running shop still writing the old index removes it when it switches over.
        old.close_writer()?;
        remove_if_unused(&self.dir, &old.dir_name);
        Ok(RebuildReport { events: done, elapsed: started.elapsed() })
    }
}

#[async_trait]
impl Consumer for ProductSearch {
    type Error = ProjectionError;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        Ok(self.follow_current()?.checkpoint())
    }

    async fn visible(&self) -> Result<Checkpoint, ProjectionError> {
        Ok(self.follow_current()?.visible())
    }

    async fn tick(&self) -> Result<bool, ProjectionError> {
        let live = self.live();
        if !live.commit_is_due(self.commit_interval) {
            return Ok(false);
        }
        let after = self.commit_interval;
        blocking(move || live.commit_due(after)).await
    }

    async fn consume(&self, from: Checkpoint, events: &[LogEvent]) -> Result<(), ProjectionError> {
        let live = self.follow_current()?;
        #[cfg(feature = "faults")]
        let fault = self.fault.swap(false, std::sync::atomic::Ordering::SeqCst);
        #[cfg(not(feature = "faults"))]
        let fault = false;
        let Some(last) = events.last().map(|e| e.cursor) else {
            return Ok(());
        };
        // Only product events change documents: the rest only move the checkpoint.
        let products: Vec<LogEvent> = events.iter().filter(|e| e.aggregate_type == "product").cloned().collect();
        let count = events.len();
        let after = self.commit_interval;
        blocking(move || live.apply(&products, (last, count), from, None, 1, fault, after)).await
    }
}

#[cfg(test)]
mod tests {
    use store::LogCursor;

    use super::*;

    #[test]
    fn prices_fall_into_one_bucket_each() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(999), 0);
        assert_eq!(bucket_of(1_000), 1);
        assert_eq!(bucket_of(49_999), 3);
        assert_eq!(bucket_of(10_000_000), 4);
    }

    #[test]
    fn short_words_allow_no_typos() {
        assert_eq!(typo_distance(3), 0);
        assert_eq!(typo_distance(6), 1);
        assert_eq!(typo_distance(9), 2);
    }

    #[test]
    fn checkpoints_round_trip() {
        let c = LogCursor { transaction_id: 7, position: 42 };
        assert_eq!(decode(&encode(c, 9)), Some((c, 9)));
        assert_eq!(decode("garbage"), None);
    }
}
