//! `vpsd import-v1` (SPEC §16): every order of a v1 order-service database
//! into the configured store, whole or not at all.
//!
//! Two passes over one read-only snapshot of the v1 database. The first
//! maps every order and looks each id up in the store: an order imported
//! before is skipped, an id the store holds for a different order stops
//! the import before anything is written. The second writes each order
//! (its row, items, history and task) with one import operation, so an
//! interrupted run leaves whole orders, and a rerun skips them and
//! completes the rest. `--dry-run` is the first pass alone.

mod map;
mod source;

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::backend::store::{StoreHandle, WriteOp};
use crate::catalog::Catalog;
use crate::domain::error::Rejection;
use crate::domain::lifecycle::Change;
use crate::domain::time::now_millis;
use crate::domain::Order;
pub use map::{CatalogSlugs, Settings};
use source::{Cursor, Snapshot, V1Order};
pub use source::{Orphan, V1Source, V1_TABLES};

/// Orders read, mapped and written at a time.
const PAGE: i64 = 500;

/// What an import did, or would do with `--dry-run`.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub dry_run: bool,
    /// Orders imported (or to import), by their v1 status.
    pub by_status: BTreeMap<String, u64>,
    pub history_rows: u64,
    pub items: u64,
    pub tasks: u64,
    /// Orders the store already holds from an earlier run.
    pub skipped: u64,
    /// Orders not imported, with why.
    pub refused: Vec<(Uuid, String)>,
    /// Rows of the other tables whose order does not exist.
    pub orphans: Vec<Orphan>,
}

impl ImportReport {
    pub fn imported(&self) -> u64 {
        self.by_status.values().sum()
    }

    fn add(&mut self, one: ImportReport) {
        for (status, n) in one.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.history_rows += one.history_rows;
        self.items += one.items;
        self.tasks += one.tasks;
    }
}

pub use crate::backend::store::Progress;

pub struct Importer<'a> {
    /// `None` only for a dry run before any store exists: every order is
    /// then new, and nothing is created just to be looked in.
    pub store: Option<&'a StoreHandle>,
    pub catalog: &'a dyn Catalog,
    pub settings: Settings<'a>,
}

/// How an order stands against the store.
enum Standing {
    New(Box<Change>),
    Imported,
    Refused(String),
    /// The store holds this id for a different order: stops the import.
    Conflict(String),
}

impl Importer<'_> {
    pub fn run(
        &self,
        source: &mut V1Source,
        dry_run: bool,
        progress: Progress<'_>,
    ) -> Result<ImportReport, String> {
        let mut snapshot = source.snapshot()?;
        let total = snapshot.count_orders()?;
        let mut report = ImportReport {
            dry_run,
            orphans: snapshot.orphans()?,
            ..ImportReport::default()
        };
        let mut slugs = SlugCache::default();
        let mut conflicts = Vec::new();
        let mut counted = 0;
        self.each_page(&mut snapshot, &mut slugs, |page| {
            for (v1, standing) in page {
                match standing {
                    Standing::New(change) => count(&mut report, &v1, &change),
                    Standing::Imported => report.skipped += 1,
                    Standing::Conflict(which) => conflicts.push(which),
                    Standing::Refused(why) => report.refused.push((v1.id, why)),
                }
                counted += 1;
            }
            progress("checking", counted, total);
            Ok(())
        })?;
        if let Some(first) = conflicts.first() {
            return Err(format!(
                "nothing imported: the store holds {} order id(s) of the v1 database for other orders; first: {}",
                conflicts.len(),
                first
            ));
        }
        if !dry_run {
            let store = self.store.ok_or("no store to import into")?;
            self.write_all(
                store,
                &mut snapshot,
                &mut slugs,
                &mut report,
                total,
                progress,
            )?;
        }
        Ok(report)
    }

    /// The second pass: each new order written whole. The counts are
    /// taken again from what is written: another importer may have written
    /// some since the first pass.
    fn write_all(
        &self,
        store: &StoreHandle,
        snapshot: &mut Snapshot<'_>,
        slugs: &mut SlugCache,
        report: &mut ImportReport,
        total: u64,
        progress: Progress<'_>,
    ) -> Result<(), String> {
        let before = std::mem::take(report);
        report.orphans = before.orphans;
        report.refused = before.refused;
        report.skipped = before.skipped;
        let mut done = 0;
        self.each_page(snapshot, slugs, |page| {
            done += page.len() as u64;
            let mut written = Vec::new();
            let mut ops = Vec::new();
            for (v1, standing) in page {
                if let Standing::New(change) = standing {
                    let mut counted = ImportReport::default();
                    count(&mut counted, &v1, &change);
                    written.push(counted);
                    ops.push(WriteOp::Import { change });
                }
            }
            for (result, counted) in store.write_all_blocking(ops).into_iter().zip(written) {
                match result {
                    Ok(Ok(_)) => report.add(counted),
                    Ok(Err(Rejection::AlreadyStored)) => report.skipped += 1,
                    Ok(Err(other)) => return Err(format!("the store refused an order: {other:?}")),
                    Err(e) => {
                        return Err(format!(
                            "stopped after {} orders were imported whole: {e}; run it again to import the rest",
                            report.imported()
                        ))
                    }
                }
            }
            progress("importing", done, total);
            Ok(())
        })
    }

    fn each_page(
        &self,
        snapshot: &mut Snapshot<'_>,
        slugs: &mut SlugCache,
        mut each: impl FnMut(Vec<(V1Order, Standing)>) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut cursor = Cursor::default();
        let now = now_millis();
        loop {
            let page = snapshot.page(&mut cursor, PAGE)?;
            if page.is_empty() {
                return Ok(());
            }
            let mut judged = Vec::with_capacity(page.len());
            for v1 in page {
                let standing = self.judge(&v1, slugs, now)?;
                judged.push((v1, standing));
            }
            each(judged)?;
        }
    }

    fn judge(&self, v1: &V1Order, slugs: &mut SlugCache, now: i64) -> Result<Standing, String> {
        let found = slugs.get(self.catalog, &v1.plan_id, &v1.image_id)?;
        let change = match map::map_order(v1, found.as_ref(), &self.settings, now) {
            Ok(change) => change,
            Err(why) => return Ok(Standing::Refused(why)),
        };
        let stored = match self.store {
            Some(store) => store
                .get_order(v1.id)
                .map_err(|e| format!("cannot read the store: {e}"))?,
            None => None,
        };
        Ok(match stored {
            None => Standing::New(Box::new(change)),
            Some(record) if same_order(&record.order, &change.order) => Standing::Imported,
            Some(record) => Standing::Conflict(format!(
                "order {} (stored for user {:?}, v1 has user {:?})",
                v1.id, record.order.user_id, v1.user_id
            )),
        })
    }
}

/// An order an earlier run imported: same owner, creation and plan.
fn same_order(stored: &Order, imported: &Order) -> bool {
    stored.user_id == imported.user_id
        && stored.created_at == imported.created_at
        && stored.plan_id == imported.plan_id
}

fn count(report: &mut ImportReport, v1: &V1Order, change: &Change) {
    *report.by_status.entry(v1.status.clone()).or_default() += 1;
    report.history_rows += change.history.len() as u64;
    report.items += change.order.items.len() as u64;
    report.tasks += u64::from(matches!(
        change.task,
        crate::domain::lifecycle::TaskEffect::Write(_)
    ));
}

/// The catalog's droplet size and image slug per (plan, image), asked once.
#[derive(Default)]
struct SlugCache {
    known: HashMap<(String, String), Option<CatalogSlugs>>,
}

impl SlugCache {
    fn get(
        &mut self,
        catalog: &dyn Catalog,
        plan_id: &str,
        image_id: &str,
    ) -> Result<Option<CatalogSlugs>, String> {
        let key = (plan_id.to_string(), image_id.to_string());
        if let Some(found) = self.known.get(&key) {
            return Ok(found.clone());
        }
        let unavailable = |e: crate::catalog::CatalogUnavailable| {
            format!("the catalog is unavailable: {e}; nothing more imported")
        };
        let size = catalog
            .plan(plan_id)
            .map_err(unavailable)?
            .and_then(|p| p.size_slug);
        let image = catalog
            .image(image_id)
            .map_err(unavailable)?
            .map(|i| i.slug);
        let found = size.zip(image).map(|(size_slug, image_slug)| CatalogSlugs {
            size_slug,
            image_slug,
        });
        self.known.insert(key, found.clone());
        Ok(found)
    }
}
