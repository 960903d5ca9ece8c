//! The newest stretch of the global log, decoded once per process and shared by every reader
//! of this store and its clones.
//!
//! `shop serve` runs six log readers (the SQL projections, the product documents, search, the
//! saga, the notifier, the relay). They all follow the head of the log, so without this each
//! of them queried the same rows and parsed the same JSON: under load, decoding the log was
//! about a seventh of the process's CPU (`pg_log_event` in the session 14 profile,
//! `bench/README.md`). Here the head of the log is queried and decoded once per process: a read is
//! served from the window as far as it reaches and queries only from its end on, and readers
//! queue on the window, so one arriving during another's query finds its events there.
//!
//! Why serving from the window is as safe as the query: a read returns every event after its
//! cursor up to the last one it returns (ordered by cursor, and on PostgreSQL only transactions
//! that can no longer commit). So a read from `after` that returned `e1..en` proves the log
//! holds exactly those events in `(after, en]`. The window only ever grows by a read that
//! starts at its end, so it is always one such proven stretch, and a reader inside it gets what
//! the query would have given (or a prefix of it, when the window ends first).
//!
//! Events are kept as stored (personal fields sealed): each reader opens its own copy, so an
//! erasure takes effect on events already in the window.

use std::collections::VecDeque;

use crate::{LogCursor, LogEvent};

/// Events kept at most: a few batches (readers read 500 at a time), a few MiB.
pub(crate) const CAPACITY: usize = 1024;

/// A proven stretch of the log: every event in `(start, end]`, in log order.
#[derive(Debug, Default)]
pub(crate) struct Window {
    start: LogCursor,
    events: VecDeque<LogEvent>,
}

/// What the window can do for a read from `after`.
pub(crate) enum Hit {
    /// These events, the next ones after `after` (never empty).
    Events(Vec<LogEvent>),
    /// `after` is the window's end: nothing newer is known; a read from here extends it.
    AtEnd,
    /// `after` is past the end, or nothing is known yet: a read from here starts a new window.
    Ahead,
    /// `after` is before the window (a reader catching up, a rebuild): read around it.
    Behind,
}

impl Window {
    pub(crate) fn end(&self) -> LogCursor {
        self.events.back().map_or(self.start, |e| e.cursor)
    }

    pub(crate) fn get(&self, after: LogCursor, limit: usize) -> Hit {
        let end = self.end();
        if after > end || (self.events.is_empty() && after != self.start) {
            return Hit::Ahead;
        }
        if after == end {
            return Hit::AtEnd;
        }
        if after < self.start {
            return Hit::Behind;
        }
        let first = self.events.partition_point(|e| e.cursor <= after);
        Hit::Events(self.events.range(first..).take(limit).cloned().collect())
    }

    /// Records that a read from `after` returned `events` (all of them, in order). A read from
    /// the window's end extends it; one from anywhere else replaces it.
    pub(crate) fn record(&mut self, after: LogCursor, events: &[LogEvent]) {
        if after != self.end() {
            self.start = after;
            self.events.clear();
        }
        self.events.extend(events.iter().cloned());
        while self.events.len() > CAPACITY {
            if let Some(dropped) = self.events.pop_front() {
                self.start = dropped.cursor;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: i64) -> LogEvent {
        LogEvent {
            cursor: LogCursor { transaction_id: position / 10, position },
            aggregate_type: "thing".into(),
            aggregate_id: "a".into(),
            sequence: position,
            event_type: "happened".into(),
            event_version: "1".into(),
            payload: serde_json::json!({ "n": position }),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn positions(hit: Hit) -> Vec<i64> {
        match hit {
            Hit::Events(events) => events.iter().map(|e| e.cursor.position).collect(),
            Hit::AtEnd => vec![-1],
            Hit::Ahead => vec![-2],
            Hit::Behind => vec![-3],
        }
    }

    #[test]
    fn serves_only_what_a_read_proved() {
        let mut w = Window::default();
        let c = |p: i64| event(p).cursor;
        // Nothing known: the first read from the start extends the empty window at its end.
        assert_eq!(positions(w.get(LogCursor::default(), 10)), [-1]);
        // A reader further on knows nothing the window could serve.
        assert_eq!(positions(w.get(c(5), 10)), [-2]);
        w.record(c(5), &[event(7), event(8), event(12)]);
        // Inside: the events after the cursor, up to the limit.
        assert_eq!(positions(w.get(c(5), 2)), [7, 8]);
        assert_eq!(positions(w.get(c(7), 10)), [8, 12]);
        // A cursor between two events (it names no event) is still inside the proven stretch.
        assert_eq!(positions(w.get(c(9), 10)), [12]);
        assert_eq!(positions(w.get(c(12), 10)), [-1]);
        // Before the window: 5 itself is its start (nothing after 5 is unknown), 4 is not.
        assert_eq!(positions(w.get(c(4), 10)), [-3]);
        // Extending from the end keeps the stretch; a read from elsewhere replaces it.
        w.record(c(12), &[event(13)]);
        assert_eq!(positions(w.get(c(5), 10)), [7, 8, 12, 13]);
        w.record(c(40), &[event(41)]);
        assert_eq!(positions(w.get(c(13), 10)), [-3]);
        assert_eq!(positions(w.get(c(40), 10)), [41]);
        // An empty read from the end changes nothing.
        w.record(c(41), &[]);
        assert_eq!(positions(w.get(c(40), 10)), [41]);
    }

    #[test]
    fn keeps_at_most_its_capacity_and_moves_its_start() {
        let mut w = Window::default();
        let events: Vec<LogEvent> = (1..=(CAPACITY as i64 + 10)).map(event).collect();
        w.record(LogCursor::default(), &events);
        assert_eq!(w.events.len(), CAPACITY);
        assert_eq!(w.start, event(10).cursor);
        assert_eq!(positions(w.get(event(9).cursor, 1)), [-3]);
        assert_eq!(positions(w.get(event(10).cursor, 1)), [11]);
    }
}
