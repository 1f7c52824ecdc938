//! Document numbers (spec 5.3): `<seller_id>-<YYYY>-<n>`, one sequence per
//! seller, `n` counting from 1 over all months, years and document types.
//!
//! The sequence lives beside the revisions, one object per number taken:
//! `invoice_numbers/<seller_id>/<n>.json` (the id as one key segment, see
//! [`super::key_segment`]), written create-only. Whoever
//! creates the object owns the number, so two months publishing at once
//! never take the same one (the loser tries the next). A number is taken
//! only right before a final revision is published and is never given
//! back.
//!
//! A run that dies after taking numbers and before its manifest leaves
//! them taken. So that the next run of that month (which writes the same
//! revision number) does not leave a gap, each number taken is also noted
//! under the month, `billing_month=M/_invoice_numbers/revision=N/<seller>/<n>.json`;
//! the next attempt at revision N reuses those numbers first (same buyer,
//! currency and kind first, then in ascending order).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::EinvoiceError;
use crate::manifest::{DocumentKind, month_prefix};
use crate::model::BillingMonth;
use crate::storage::{StorageError, Store};

/// The folder of every seller's sequence under the output root.
pub const NUMBERS_PREFIX: &str = "invoice_numbers";

/// A document that needs a number, in publish order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// Seller id.
    pub seller_id: String,
    /// Buyer id.
    pub buyer_id: String,
    /// Currency.
    pub currency: String,
    /// Invoice or credit note.
    pub kind: DocumentKind,
}

/// What a number was taken for (the content of its objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claim {
    billing_month: String,
    revision: u32,
    seller_id: String,
    buyer_id: String,
    currency: String,
    kind: DocumentKind,
    number: String,
}

/// The document number of `seller`'s `n`-th document issued in `year`.
pub fn format_number(seller: &str, year: i32, n: u64) -> String {
    format!("{seller}-{year:04}-{n}")
}

/// The `n` of an object key `<prefix><n>.json`.
fn n_of(key: &str, prefix: &str) -> Option<u64> {
    key.strip_prefix(prefix)?.strip_suffix(".json")?.parse().ok()
}

async fn list(store: &Store, prefix: &str) -> Result<Vec<String>, StorageError> {
    Ok(store.list_or_empty(prefix).await?.into_iter().map(|o| o.key).collect())
}

/// Takes a number for each of `wanted` (in that order, per seller
/// ascending), for revision `revision` of `month`, published in `year`.
pub async fn take(
    store: &Store,
    month: BillingMonth,
    revision: u32,
    year: i32,
    wanted: &[Wanted],
) -> Result<Vec<String>, EinvoiceError> {
    let mut by_seller: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, w) in wanted.iter().enumerate() {
        by_seller.entry(&w.seller_id).or_default().push(i);
    }
    let mut out = vec![String::new(); wanted.len()];
    for (seller, idx) in by_seller {
        let notes =
            format!("{}/_invoice_numbers/revision={revision}/{}/", month_prefix(month), super::key_segment(seller));
        // Numbers an earlier attempt at this revision took.
        let mut earlier: Vec<(u64, Claim)> = Vec::new();
        for key in list(store, &notes).await? {
            if let (Some(n), Some(data)) = (n_of(&key, &notes), store.get_opt(&key).await?)
                && let Ok(c) = serde_json::from_slice::<Claim>(&data)
            {
                earlier.push((n, c));
            }
        }
        earlier.sort_by_key(|(n, _)| *n);
        // A number taken before keeps the text it was taken as (its year
        // too, should the rerun come after New Year): the sequence's record
        // and the document then name the same number.
        let mut given: Vec<Option<(u64, String)>> = vec![None; idx.len()];
        for (slot, &i) in idx.iter().enumerate() {
            let w = &wanted[i];
            if let Some(pos) = earlier
                .iter()
                .position(|(_, c)| c.buyer_id == w.buyer_id && c.currency == w.currency && c.kind == w.kind)
            {
                let (n, c) = earlier.remove(pos);
                given[slot] = Some((n, c.number));
            }
        }
        let mut leftover = earlier.into_iter().map(|(n, c)| (n, c.number));
        for g in given.iter_mut().filter(|g| g.is_none()) {
            *g = leftover.next();
        }
        // New numbers for the rest: the next free one, create-only.
        let seq = format!("{NUMBERS_PREFIX}/{}/", super::key_segment(seller));
        let mut next = list(store, &seq).await?.iter().filter_map(|k| n_of(k, &seq)).max().unwrap_or(0) + 1;
        for (slot, &i) in idx.iter().enumerate() {
            let w = &wanted[i];
            let (n, number) = match given[slot].take() {
                Some(taken) => taken,
                None => loop {
                    let number = format_number(seller, year, next);
                    if store
                        .put_if_absent(&format!("{seq}{next}.json"), claim(month, revision, w, number.clone()))
                        .await?
                    {
                        break (next, number);
                    }
                    next += 1;
                },
            };
            // The note is this revision's own (the month lock is held): replaced freely.
            store.put(&format!("{notes}{n}.json"), claim(month, revision, w, number.clone())).await?;
            out[i] = number;
        }
    }
    Ok(out)
}

fn claim(month: BillingMonth, revision: u32, w: &Wanted, number: String) -> Bytes {
    let c = Claim {
        billing_month: month.to_string(),
        revision,
        seller_id: w.seller_id.clone(),
        buyer_id: w.buyer_id.clone(),
        currency: w.currency.clone(),
        kind: w.kind,
        number,
    };
    Bytes::from(serde_json::to_vec_pretty(&c).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStore;

    fn w(seller: &str, buyer: &str, kind: DocumentKind) -> Wanted {
        Wanted { seller_id: seller.into(), buyer_id: buyer.into(), currency: "EUR".into(), kind }
    }

    #[tokio::test]
    async fn numbers_count_per_seller_never_repeat_and_an_interrupted_revision_reuses_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
        let (oct, nov): (BillingMonth, BillingMonth) = ("2026-10".parse().unwrap(), "2026-11".parse().unwrap());
        use DocumentKind::*;
        let a = [w("ic", "d", Invoice), w("ic", "m", Invoice), w("d", "p", Invoice)];
        let got = take(&store, oct, 3, 2026, &a).await.unwrap();
        assert_eq!(got, ["ic-2026-1", "ic-2026-2", "d-2026-1"]);
        // Another month continues each sequence; a new year keeps counting.
        let got = take(&store, nov, 1, 2027, &[w("ic", "m", CreditNote), w("ic", "m", Invoice)]).await.unwrap();
        assert_eq!(got, ["ic-2027-3", "ic-2027-4"]);
        // October's revision 3 again (its run died before the manifest):
        // the same documents get the same numbers, a new one the next free.
        let again = [w("ic", "m", Invoice), w("ic", "x", Invoice), w("ic", "d", Invoice)];
        let got = take(&store, oct, 3, 2026, &again).await.unwrap();
        assert_eq!(got, ["ic-2026-2", "ic-2026-5", "ic-2026-1"]);
        // Fewer documents than before: the earlier numbers are used first, no gap.
        let got = take(&store, oct, 3, 2026, &[w("ic", "y", Invoice)]).await.unwrap();
        assert_eq!(got, ["ic-2026-1"]);
        // Retried after New Year: a number taken in 2026 keeps its text, as
        // the sequence records it; a new one is of the new year.
        let later = [w("ic", "m", Invoice), w("ic", "z", Invoice), w("ic", "q", Invoice), w("ic", "r", Invoice)];
        let got = take(&store, oct, 3, 2027, &later).await.unwrap();
        assert_eq!(got, ["ic-2026-2", "ic-2026-1", "ic-2026-5", "ic-2027-6"]);
        let recorded = |n: u64| {
            let data = std::fs::read(dir.path().join(format!("{NUMBERS_PREFIX}/ic/{n}.json"))).unwrap();
            serde_json::from_slice::<Claim>(&data).unwrap().number
        };
        assert_eq!((recorded(2), recorded(6)), ("ic-2026-2".to_owned(), "ic-2027-6".to_owned()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_months_taking_numbers_at_once_never_share_one() {
        let dir = tempfile::tempdir().unwrap();
        let runs: Vec<_> = ["2026-09", "2026-10", "2026-11", "2026-12"]
            .into_iter()
            .map(|m| {
                let store = Store::Local(LocalStore::new(dir.path().to_path_buf()));
                let month: BillingMonth = m.parse().unwrap();
                tokio::spawn(async move {
                    let wanted: Vec<_> = (0..5).map(|b| w("ic", &format!("b{b}"), DocumentKind::Invoice)).collect();
                    take(&store, month, 1, 2026, &wanted).await.unwrap()
                })
            })
            .collect();
        let mut all: Vec<String> = Vec::new();
        for r in runs {
            all.extend(r.await.unwrap());
        }
        all.sort_by_key(|n| n.rsplit('-').next().unwrap().parse::<u64>().unwrap());
        let expected: Vec<_> = (1..=20).map(|n| format!("ic-2026-{n}")).collect();
        assert_eq!(all, expected, "every number once, none skipped");
    }
}
