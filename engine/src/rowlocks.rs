//! Row locks of the transaction blocks of one node, for what PostgreSQL's row locks give a
//! `READ COMMITTED` transaction: a block that reads a row another block changed and has not
//! committed yet sees it only after that block ended, instead of failing with 40001 at its
//! `COMMIT`. Design: `docs/transactions.md` (Row locks).
//!
//! A block's write steps *hold* the rows they update or delete (`table`, row id; not rows the
//! step inserted) until the block ends. A step that touches a row another live block holds does
//! not wait (its row count is the same whatever that block does, and the log replays it after
//! that block's commit), but the block now *depends* on the holder for that row. Before a later
//! read of the row's table is recorded, or when the touching step itself returns rows
//! (`RETURNING`), the block waits until the holder ended (committed and applied here, or rolled
//! back), takes the row itself (or depends on whoever took it meanwhile), then runs the
//! statement again on the state that includes the holder's commit. Waits that would form a
//! cycle fail with 40P01 instead. Locks live only on this node: blocks on different nodes still
//! meet at `COMMIT` (40001), as before.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Rows one block holds, at most. Past it the block goes on holding what it holds without
/// adding more: other blocks that touch its further rows do not learn to wait for it and may
/// get 40001 at `COMMIT`, as without row locks. Bounds the memory of a block that updates a
/// whole large table (about 100 bytes a row).
pub const ROW_LOCKS_PER_BLOCK_MAX: usize = 100_000;

/// How often a waiting block looks whether its statement was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(10);

/// A row: its table and row id.
pub(crate) type Row = (String, i64);

#[derive(Default)]
struct State {
    /// Each held row and the block that holds it.
    held: HashMap<Row, u64>,
    /// The rows each live block holds (a block is live here from its first held row until it
    /// ends).
    by_block: HashMap<u64, Vec<Row>>,
    /// Which block each waiting block waits for.
    waits: HashMap<u64, u64>,
}

/// The row locks of a node's blocks.
#[derive(Default)]
pub(crate) struct RowLocks {
    state: Mutex<State>,
    ended: Condvar,
}

/// Why a block did not get to run after a wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WaitError {
    /// The statement was cancelled while it waited.
    Cancelled,
    /// Waiting would close a cycle of waiting blocks.
    Deadlock,
}

impl RowLocks {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `rows` for `block` and returns the rows another live block holds, each with
    /// that block.
    pub(crate) fn take(&self, block: u64, rows: Vec<Row>) -> Vec<(Row, u64)> {
        let mut st = self.state();
        let mut others = Vec::new();
        let mut mine = Vec::new();
        let room =
            ROW_LOCKS_PER_BLOCK_MAX.saturating_sub(st.by_block.get(&block).map_or(0, Vec::len));
        for row in rows {
            match st.held.get(&row) {
                Some(&holder) if holder == block => {}
                Some(&holder) => others.push((row, holder)),
                None if mine.len() < room => mine.push(row),
                None => {}
            }
        }
        if !mine.is_empty() {
            for row in &mine {
                st.held.insert(row.clone(), block);
            }
            st.by_block.entry(block).or_default().extend(mine);
        }
        others
    }

    /// The rows of `depends` whose holder ended, looked up under one lock.
    pub(crate) fn ended(&self, depends: &HashMap<Row, u64>) -> Vec<Row> {
        let st = self.state();
        depends
            .iter()
            .filter(|(_, h)| !st.by_block.contains_key(*h))
            .map(|(row, _)| row.clone())
            .collect()
    }

    /// Whether `block` holds rows (has not ended).
    pub(crate) fn live(&self, block: u64) -> bool {
        self.state().by_block.contains_key(&block)
    }

    /// Releases every row `block` holds and wakes the blocks waiting.
    pub(crate) fn release(&self, block: u64) {
        let mut st = self.state();
        if let Some(rows) = st.by_block.remove(&block) {
            for row in rows {
                if st.held.get(&row) == Some(&block) {
                    st.held.remove(&row);
                }
            }
            drop(st);
            self.ended.notify_all();
        }
    }

    /// Registers that `me` waits for `holder`, unless that closes a cycle of waits. Called
    /// while the writer connection is held, so that two blocks cannot register a cycle at once.
    pub(crate) fn enter_wait(&self, me: u64, holder: u64) -> Result<(), WaitError> {
        let mut st = self.state();
        let mut at = holder;
        while let Some(&next) = st.waits.get(&at) {
            if next == me {
                return Err(WaitError::Deadlock);
            }
            at = next;
        }
        st.waits.insert(me, holder);
        Ok(())
    }

    /// Waits until the block `me` waits for ([`RowLocks::enter_wait`]) ended, or until
    /// `cancelled()`.
    pub(crate) fn wait(&self, me: u64, cancelled: impl Fn() -> bool) -> Result<(), WaitError> {
        let mut st = self.state();
        let r = loop {
            match st.waits.get(&me) {
                Some(holder) if st.by_block.contains_key(holder) => {}
                _ => break Ok(()),
            }
            if cancelled() {
                break Err(WaitError::Cancelled);
            }
            st = self
                .ended
                .wait_timeout(st, CANCEL_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        st.waits.remove(&me);
        r
    }
}

/// The rows a block holds, released when it is dropped (the block ended, or its commit was
/// applied).
pub struct RowHold {
    locks: Arc<RowLocks>,
    block: u64,
}

impl RowHold {
    pub(crate) fn new(locks: Arc<RowLocks>, block: u64) -> RowHold {
        RowHold { locks, block }
    }
}

impl std::fmt::Debug for RowHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowHold({})", self.block)
    }
}

impl Drop for RowHold {
    fn drop(&mut self) {
        self.locks.release(self.block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: &str, id: i64) -> Row {
        (t.to_string(), id)
    }

    #[test]
    fn rows_are_held_until_release_and_waits_end_then_or_detect_cycles() {
        let locks = Arc::new(RowLocks::default());
        assert!(locks.take(1, vec![row("a", 1), row("a", 2)]).is_empty());
        assert!(locks.live(1));
        assert_eq!(
            locks.take(2, vec![row("a", 2), row("b", 9)]),
            vec![(row("a", 2), 1)]
        );
        // Block 2 holds b/9, not a/2.
        assert_eq!(locks.take(1, vec![row("b", 9)]), vec![(row("b", 9), 2)]);
        // 2 waits for 1; 1 waiting for 2 would close the cycle.
        locks.enter_wait(2, 1).unwrap();
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || locks.wait(2, || false))
        };
        assert_eq!(locks.enter_wait(1, 2), Err(WaitError::Deadlock));
        drop(RowHold::new(locks.clone(), 1));
        assert_eq!(waiter.join().unwrap(), Ok(()));
        assert!(!locks.live(1));
        assert!(locks.take(3, vec![row("a", 1)]).is_empty(), "released");
        locks.enter_wait(4, 3).unwrap();
        assert_eq!(locks.wait(4, || true), Err(WaitError::Cancelled));
        assert!(locks.state().waits.is_empty());
    }
}
