//! How much of the agent's audio the caller has heard: marks sent and echoed, and the
//! inbound clock, for barge-in truncation and for waiting until a goodbye has played.
//!
//! An echoed mark is proof: its audio has played. Between echoes the position is estimated
//! from the inbound clock, counted from the last echo (so the carrier's own playout delay,
//! which the clock does not see, is not counted as heard), less one frame for the clock's
//! granularity, and never past the next mark not yet echoed. The estimate errs towards
//! less: the model had better repeat a word than believe the caller heard one they did
//! not (a real browser playing through the softphone showed the start-of-item clock
//! overshooting by its output latency).

use std::collections::VecDeque;

/// μ-law 8 kHz: one byte per sample, 8 bytes per millisecond.
const MULAW_BYTES_PER_MS: u64 = 8;
/// One inbound frame: how far behind the inbound clock may be.
const FRAME_MS: u64 = 20;

#[derive(Debug)]
struct Item {
    id: String,
    /// Audio forwarded for this item, in μ-law bytes.
    sent_bytes: u64,
    /// Audio Twilio confirmed played (last echoed mark), in ms.
    confirmed_ms: u64,
    /// The inbound clock when that confirmation came (the item's start before one).
    confirmed_ts: u64,
}

#[derive(Debug)]
struct PendingMark {
    id: u64,
    /// The item's audio up to this mark, in ms.
    end_ms: u64,
    same_item: bool,
}

/// A mark patter sends after a chunk of agent audio; named `p<n>` on the wire, so an echo
/// is matched by number, with nothing allocated per chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MarkId(u64);

impl MarkId {
    fn parse(name: &str) -> Option<MarkId> {
        let digits = name.strip_prefix('p')?;
        // Only the canonical form patter writes: no sign, no leading zero.
        if digits.starts_with(['0', '+']) {
            return None;
        }
        digits.parse().ok().map(MarkId)
    }
}

impl MarkId {
    /// The mark's number: later marks have larger ones.
    pub(crate) fn number(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for MarkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// The playback state of one call.
#[derive(Debug, Default)]
pub(crate) struct Playback {
    latest_inbound_ts: u64,
    item: Option<Item>,
    pending: VecDeque<PendingMark>,
    next_mark: u64,
}

impl Playback {
    /// Records the timestamp of an inbound media frame.
    pub(crate) fn on_inbound(&mut self, timestamp_ms: u64) {
        self.latest_inbound_ts = self.latest_inbound_ts.max(timestamp_ms);
    }

    /// Records `mulaw_bytes` of `item_id` forwarded to Twilio; returns the mark to send
    /// after it.
    pub(crate) fn on_forwarded(&mut self, item_id: &str, mulaw_bytes: usize) -> MarkId {
        let is_new = self.item.as_ref().is_none_or(|i| i.id != item_id);
        if is_new {
            // Re-armed on every new item, not once per response.
            for mark in &mut self.pending {
                mark.same_item = false;
            }
            self.item = Some(Item {
                id: item_id.to_owned(),
                sent_bytes: 0,
                confirmed_ms: 0,
                confirmed_ts: self.latest_inbound_ts,
            });
        }
        let mut end_ms = 0;
        if let Some(item) = &mut self.item {
            item.sent_bytes += mulaw_bytes as u64;
            end_ms = item.sent_bytes / MULAW_BYTES_PER_MS;
        }
        self.next_mark += 1;
        self.pending.push_back(PendingMark {
            id: self.next_mark,
            end_ms,
            same_item: true,
        });
        MarkId(self.next_mark)
    }

    /// Twilio echoed mark `name`: the audio before it has played. Unknown names (marks
    /// flushed by a `clear`, or never sent) are ignored. Returns the mark's number if it
    /// was one pending.
    pub(crate) fn on_mark(&mut self, name: &str) -> Option<u64> {
        let MarkId(id) = MarkId::parse(name)?;
        let index = self.pending.iter().position(|m| m.id == id)?;
        // Marks come back in order; anything before this one has played too.
        for mark in self.pending.drain(..=index) {
            if mark.same_item
                && let Some(item) = &mut self.item
                && mark.end_ms > item.confirmed_ms
            {
                item.confirmed_ms = mark.end_ms;
                item.confirmed_ts = self.latest_inbound_ts;
            }
        }
        Some(id)
    }

    /// The engine session was replaced: the item being played belongs to the old one and
    /// cannot be truncated in the new one. Its marks still come back.
    pub(crate) fn engine_replaced(&mut self) {
        self.item = None;
        for mark in &mut self.pending {
            mark.same_item = false;
        }
    }

    /// Marks sent but not yet echoed.
    pub(crate) fn pending_marks(&self) -> usize {
        self.pending.len()
    }

    /// The caller started speaking: where to truncate the item being played, if any of it
    /// is still unplayed. Resets the state either way.
    ///
    /// The position is what echoed marks confirmed, plus the inbound clock since the last
    /// echo (or since the item's first audio) less one frame, up to the first mark not yet
    /// echoed: see the module documentation.
    pub(crate) fn barge_in(&mut self) -> Option<(String, u64)> {
        let item = self.item.take();
        let unplayed = !self.pending.is_empty();
        let Some(item) = item else {
            self.pending.clear();
            return None;
        };
        if !unplayed {
            return None;
        }
        let sent_ms = item.sent_bytes / MULAW_BYTES_PER_MS;
        // Not past the first mark still pending: its audio has not played yet.
        let bound = self
            .pending
            .iter()
            .find(|m| m.same_item)
            .map_or(sent_ms, |m| m.end_ms.min(sent_ms));
        let since = self
            .latest_inbound_ts
            .saturating_sub(item.confirmed_ts)
            .saturating_sub(FRAME_MS);
        let heard = (item.confirmed_ms + since)
            .min(bound)
            .max(item.confirmed_ms);
        self.pending.clear();
        Some((item.id, heard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_the_clock_from_the_last_echo_less_a_frame() {
        let mut p = Playback::default();
        p.on_inbound(1000);
        let first = p.on_forwarded("item_a", 800); // 100 ms
        p.on_forwarded("item_a", 800); // 200 ms
        p.on_forwarded("item_a", 800); // 300 ms
        p.on_inbound(1100);
        p.on_mark(&first.to_string()); // 100 ms heard when the clock read 1100
        p.on_inbound(1170);
        assert_eq!(p.barge_in(), Some(("item_a".into(), 150)));
        assert_eq!(p.barge_in(), None);
    }

    #[test]
    fn the_estimate_stops_at_the_next_mark_not_yet_echoed() {
        let mut p = Playback::default();
        p.on_inbound(1000);
        p.on_forwarded("item_a", 800); // 100 ms
        p.on_forwarded("item_a", 800); // 200 ms
        p.on_inbound(1500); // the clock says 480 ms, but the first mark has not come back
        assert_eq!(p.barge_in(), Some(("item_a".into(), 100)));
    }

    #[test]
    fn elapsed_time_beyond_the_audio_sent_is_clamped() {
        let mut p = Playback::default();
        p.on_inbound(0);
        p.on_forwarded("item_a", 400); // 50 ms
        p.on_inbound(5000);
        assert_eq!(p.barge_in(), Some(("item_a".into(), 50)));
    }

    #[test]
    fn echoed_marks_raise_the_position_and_fully_played_audio_is_not_truncated() {
        let mut p = Playback::default();
        let first = p.on_forwarded("item_a", 1600); // 200 ms, no inbound clock yet
        let second = p.on_forwarded("item_a", 1600); // 400 ms
        p.on_mark(&first.to_string());
        assert_eq!(p.pending_marks(), 1);
        let mut q = Playback::default();
        let only = q.on_forwarded("item_b", 800);
        q.on_mark(&only.to_string());
        assert_eq!(q.barge_in(), None, "everything played");
        assert_eq!(p.barge_in(), Some(("item_a".into(), 200)));
        let _ = second;
    }

    #[test]
    fn a_new_item_rearms_the_start_time() {
        let mut p = Playback::default();
        p.on_inbound(100);
        p.on_forwarded("item_a", 8000);
        p.on_inbound(900);
        p.on_forwarded("item_b", 8000); // starts at 900
        p.on_inbound(1000);
        assert_eq!(p.barge_in(), Some(("item_b".into(), 80)));
    }

    #[test]
    fn unknown_and_flushed_marks_are_ignored() {
        let mut p = Playback::default();
        p.on_mark("never-sent");
        let name = p.on_forwarded("item_a", 80);
        assert_eq!(p.barge_in().map(|(id, _)| id), Some("item_a".into()));
        p.on_mark(&name.to_string()); // echoed by the clear: ignored
        assert_eq!(p.pending_marks(), 0);
    }
}
