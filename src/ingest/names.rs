//! The run's names (storage accounts, buckets) as the parsers share them,
//! and how a name a parser reads becomes the run's id.
//!
//! Owns the run's interners while usage is read. Each piece starts from a
//! read-only snapshot of them ([`PieceNames`]): a name the snapshot knows
//! takes its run id at once; any other name takes an id of the piece's own,
//! marked with [`NEW`], and [`PieceNames::finish`] (when the piece is handed
//! on, in streaming order) gives only those names run ids. Once the run has
//! seen a month's accounts, a piece hashes each of its names once against
//! the snapshot and maps nothing when it is handed on.
//!
//! It also keeps the last Parquet dictionary whose entries all have run ids
//! ([`SharedNames::last`]): the first row group of a piece is matched
//! against it, as a row group is against the one before it, so that a
//! piece rarely hashes a name at all.
//!
//! Ids are the same as if each piece interned its names on its own and they
//! were mapped to the run's ids when it is handed on: a name the run does
//! not know yet is numbered by the first piece handed on with it, in the
//! order that piece first read its new names. A run id a piece uses came
//! from the run's interner as it was when the piece began, or from a
//! dictionary another parser mapped since, so it names a name some earlier
//! piece already handed on.
//!
//! It must not read any encoding, nor decide what a record is.

use std::sync::{Arc, Mutex};

use arrow_array::ArrayRef;

use crate::model::Interner;

/// The mark of a piece's own id (the rest of the bits): a name the run did
/// not know when the piece began. Run ids stay below it.
pub(crate) const NEW: u32 = 1 << 31;

/// A text column's dictionary (its distinct values, `Utf8`) and the id of
/// each entry (`None`: an entry that names nothing, such as an empty
/// account id).
#[derive(Clone)]
pub(crate) struct Known {
    pub(crate) values: ArrayRef,
    pub(crate) ids: Arc<Vec<Option<u32>>>,
}

/// One kind of the run's names (accounts or buckets), shared by the parsers.
#[derive(Default)]
pub(crate) struct SharedNames {
    /// The run's interner. Pieces hold snapshots of it; a piece's new names
    /// are added when it is handed on, to a copy only if a piece still
    /// holds a snapshot of the old one.
    interner: Mutex<Arc<Interner>>,
    /// The last dictionary a parser mapped to run ids only.
    last: Mutex<Option<Known>>,
}

impl SharedNames {
    /// The names of `interner`, shared.
    pub(crate) fn new(interner: Interner) -> Arc<Self> {
        Arc::new(SharedNames { interner: Mutex::new(Arc::new(interner)), last: Mutex::new(None) })
    }

    /// A piece's view of the run's names as they are now.
    pub(crate) fn piece(self: &Arc<Self>) -> PieceNames {
        let known = self.interner.lock().expect("never poisoned").clone();
        PieceNames {
            new: known.empty_like(),
            known,
            shared: self.clone(),
            kept: None,
            #[cfg(test)]
            lookups: 0,
        }
    }

    /// The last dictionary mapped to run ids only.
    pub(crate) fn last(&self) -> Option<Known> {
        self.last.lock().expect("never poisoned").clone()
    }

    fn publish(&self, known: Known) {
        *self.last.lock().expect("never poisoned") = Some(known);
    }

    /// The run's interner, taken out (it is left empty).
    pub(crate) fn take(&self) -> Interner {
        let run = std::mem::take(&mut *self.interner.lock().expect("never poisoned"));
        Arc::try_unwrap(run).unwrap_or_else(|run| (*run).clone())
    }
}

/// The run's names of both kinds, shared by the parsers.
#[derive(Clone, Default)]
pub(crate) struct RunNames {
    pub(crate) accounts: Arc<SharedNames>,
    pub(crate) buckets: Arc<SharedNames>,
}

impl RunNames {
    /// The run's names: its `accounts` so far, no bucket yet.
    pub(crate) fn new(accounts: Interner) -> Self {
        RunNames { accounts: SharedNames::new(accounts), buckets: Arc::default() }
    }
}

/// One piece's names of one kind: run ids for the names the run knew when
/// the piece began, ids marked [`NEW`] for the others.
pub(crate) struct PieceNames {
    shared: Arc<SharedNames>,
    /// The run's names when the piece began.
    known: Arc<Interner>,
    /// Names `known` lacks, numbered from 0 (hashed as `known` hashes).
    new: Interner,
    /// The reader's last dictionary, whose ids are not all the run's yet;
    /// shared once they are.
    kept: Option<Known>,
    /// Names looked up (hashed), for tests.
    #[cfg(test)]
    lookups: usize,
}

impl PieceNames {
    /// The id of `name`: its run id, or a marked id of this piece's own.
    #[inline]
    pub(crate) fn id(&mut self, name: &str) -> u32 {
        #[cfg(test)]
        {
            self.lookups += 1;
        }
        let hash = self.known.hash(name);
        match self.known.get_hashed(hash, name) {
            Some(id) => id,
            None => {
                let id = self.new.id_hashed(hash, name);
                assert!(id < NEW, "fewer than 2^31 names new to a piece");
                NEW | id
            }
        }
    }

    /// The name of `id` (a run id this piece's snapshot knows, or one of
    /// this piece's own).
    #[cfg(test)]
    pub(crate) fn name(&self, id: u32) -> Option<&str> {
        if id & NEW != 0 {
            let i = id & !NEW;
            ((i as usize) < self.new.len()).then(|| self.new.name(i))
        } else {
            ((id as usize) < self.known.len()).then(|| self.known.name(id))
        }
    }

    /// The last dictionary any parser mapped to run ids only.
    pub(crate) fn last(&self) -> Option<Known> {
        self.shared.last()
    }

    /// Names this piece looked up.
    #[cfg(test)]
    pub(crate) fn lookups(&self) -> usize {
        self.lookups
    }

    /// The run's names this piece takes its ids from.
    #[cfg(test)]
    pub(crate) fn run(&self) -> Arc<SharedNames> {
        self.shared.clone()
    }

    /// Shares a dictionary the reader just mapped with these ids, for the
    /// first row group of later pieces: now if its ids are all run ids,
    /// else once the piece is handed on.
    pub(crate) fn share(&mut self, known: Known) {
        if known.ids.iter().flatten().all(|&id| id & NEW == 0) {
            self.kept = None;
            self.shared.publish(known);
        } else {
            self.kept = Some(known);
        }
    }

    /// Gives this piece's new names run ids (the ones they already have, or
    /// the next ones, in the order the piece first read them): the run id
    /// of each, by its own id; `None` if the piece read no new name, when
    /// every id it handed out is the run's.
    pub(crate) fn finish(self) -> Option<Vec<u32>> {
        let PieceNames { shared, known, new, kept, .. } = self;
        // This piece's snapshot alone must not make the run copy its names.
        drop(known);
        if new.is_empty() {
            return None;
        }
        let mut ids = Vec::with_capacity(new.len());
        {
            let mut run = shared.interner.lock().expect("never poisoned");
            // Names an earlier piece handed on since the snapshot are only
            // looked up: the run's names are copied (if a snapshot of them
            // is still held) only to add one.
            let mut names = new.names();
            while let Some(name) = names.next() {
                if let Some(id) = run.get(name) {
                    ids.push(id);
                } else {
                    let run = Arc::make_mut(&mut run);
                    ids.push(run.id(name));
                    ids.extend(names.map(|name| run.id(name)));
                    break;
                }
            }
        }
        assert!(ids.iter().all(|&id| id < NEW), "fewer than 2^31 distinct names");
        if let Some(Known { values, ids: kept }) = kept {
            let ids = kept.iter().map(|id| id.map(|id| run_id(id, &ids))).collect();
            shared.publish(Known { values, ids: Arc::new(ids) });
        }
        Some(ids)
    }
}

/// The run id of a piece's `id`, given the run ids of its new names.
#[inline]
pub(crate) fn run_id(id: u32, new: &[u32]) -> u32 {
    if id & NEW == 0 { id } else { new[(id & !NEW) as usize] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::StringArray;

    /// Ids as each piece interning its names on its own and mapping them to
    /// the run's ids when handed on, in order (what every id must equal).
    fn reference(pieces: &[&[&str]]) -> Vec<Vec<u32>> {
        let mut run = Interner::default();
        pieces
            .iter()
            .map(|names| {
                let local = Interner::seeded(names.iter().copied());
                let to_run: Vec<u32> = local.names().map(|n| run.id(n)).collect();
                names.iter().map(|n| to_run[local.get(n).unwrap() as usize]).collect()
            })
            .collect()
    }

    fn read(piece: &mut PieceNames, names: &[&str]) -> Vec<u32> {
        names.iter().map(|n| piece.id(n)).collect()
    }

    #[test]
    fn a_known_name_takes_its_run_id_and_a_new_one_a_marked_id_until_the_piece_is_handed_on() {
        let run = SharedNames::new(Interner::seeded(["sa-1", "sa-2"]));
        let mut piece = run.piece();
        let ids = read(&mut piece, &["sa-2", "sa-9", "sa-1", "sa-8", "sa-9"]);
        assert_eq!(ids, [1, NEW, 0, NEW | 1, NEW]);
        assert_eq!(
            (piece.name(NEW | 1), piece.name(1), piece.name(NEW | 2), piece.name(2)),
            (Some("sa-8"), Some("sa-2"), None, None)
        );
        let new = piece.finish().unwrap();
        assert_eq!(new, [2, 3]);
        let mapped: Vec<u32> = ids.iter().map(|&id| run_id(id, &new)).collect();
        assert_eq!(mapped, reference(&[&["sa-1", "sa-2"], &["sa-2", "sa-9", "sa-1", "sa-8", "sa-9"]])[1]);
        // A later piece knows them, and hands on nothing to map.
        let mut later = run.piece();
        assert_eq!(read(&mut later, &["sa-8", "sa-9", "sa-1"]), [3, 2, 0]);
        assert_eq!(later.finish(), None);
        assert_eq!(run.take().names().collect::<Vec<_>>(), ["sa-1", "sa-2", "sa-9", "sa-8"]);
    }

    #[test]
    fn pieces_racing_with_new_names_number_them_in_the_order_they_are_handed_on() {
        let pieces: [&[&str]; 4] =
            [&["a", "b"], &["c", "x", "a", "y"], &["y", "d", "x", "b", "e"], &["e", "f", "c", "y", "d"]];
        let run = SharedNames::new(Interner::default());
        let mut first = run.piece();
        let first_ids = read(&mut first, pieces[0]);
        let first_new = first.finish().unwrap();
        // Pieces 1 and 2 both begin before 1 is handed on; 3 begins after
        // 1 is handed on and is read before 2 is handed on.
        let (mut p1, mut p2) = (run.piece(), run.piece());
        let ids2 = read(&mut p2, pieces[2]);
        let ids1 = read(&mut p1, pieces[1]);
        let new1 = p1.finish().unwrap();
        let mut p3 = run.piece();
        let ids3 = read(&mut p3, pieces[3]);
        let new2 = p2.finish().unwrap();
        let new3 = p3.finish().unwrap();
        let got: Vec<Vec<u32>> = [(first_ids, first_new), (ids1, new1), (ids2, new2), (ids3, new3)]
            .into_iter()
            .map(|(ids, new)| ids.iter().map(|&id| run_id(id, &new)).collect())
            .collect();
        assert_eq!(got, reference(&pieces));
        assert_eq!(run.take().names().collect::<Vec<_>>(), ["a", "b", "c", "x", "y", "d", "e", "f"]);
    }

    #[test]
    fn a_snapshot_held_by_a_piece_keeps_its_names_while_the_run_grows() {
        let run = SharedNames::new(Interner::seeded(["a"]));
        let mut old = run.piece();
        let mut adds = run.piece();
        assert_eq!(read(&mut adds, &["b"]), [NEW]);
        assert_eq!(adds.finish(), Some(vec![1]));
        // The old snapshot still lacks "b"; the run has it, and does not
        // copy its names (which `held` still holds) to give "b" its id.
        let held = run.piece();
        assert_eq!(read(&mut old, &["b", "a"]), [NEW, 0]);
        assert_eq!(old.finish(), Some(vec![1]));
        assert!(Arc::ptr_eq(&held.known, &run.piece().known));
        assert_eq!(run.piece().name(1), Some("b"));
    }

    fn dictionary(names: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(names.to_vec()))
    }

    #[test]
    fn a_dictionary_is_shared_once_its_ids_are_all_the_runs() {
        let run = SharedNames::new(Interner::seeded(["a"]));
        let mut piece = run.piece();
        let ids = vec![Some(piece.id("a")), None, Some(piece.id("b"))];
        piece.share(Known { values: dictionary(&["a", " ", "b"]), ids: Arc::new(ids) });
        assert!(run.last().is_none(), "a dictionary with a new name waits for its run ids");
        assert_eq!(piece.finish(), Some(vec![1]));
        let last = run.last().expect("shared when the piece is handed on");
        assert_eq!(*last.ids, [Some(0), None, Some(1)]);
        let mut known = run.piece();
        let ids = vec![Some(known.id("b"))];
        known.share(Known { values: dictionary(&["b"]), ids: Arc::new(ids) });
        assert_eq!(*run.last().unwrap().ids, [Some(1)]);
        assert_eq!(known.finish(), None);
    }
}
