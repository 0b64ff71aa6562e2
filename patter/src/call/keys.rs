//! Keys the caller presses, for the model: batched over a short gap into one message,
//! "The caller pressed 1 2 #", held while the agent is answering. Keys a tool collects never
//! get here (see `CallContext::collect_digits`), and a batch that falls due while a tool has
//! started collecting goes to the tool instead: a caller who starts typing a PIN while the
//! agent is still asking for it does not tell the model.

use tokio::time::Instant;

/// The keys pressed since the last message.
#[derive(Debug, Default)]
pub(crate) struct KeyBatch {
    keys: String,
    /// When the batch goes, if no key comes first; `None` while held or empty.
    due: Option<Instant>,
}

impl KeyBatch {
    /// A key, with the time the batch now goes.
    pub(crate) fn press(&mut self, key: char, due: Instant) {
        self.keys.push(key);
        self.due = Some(due);
    }

    /// When the batch goes.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.due
    }

    /// Keeps the keys a while longer (the agent is answering): they are looked at again at
    /// `due`, for a tool that may have started collecting, or for the model.
    pub(crate) fn hold(&mut self, due: Instant) {
        self.due = Some(due);
    }

    /// Hands every waiting key to the tool collecting keys, if one is; `true` if it did.
    pub(crate) fn hand_to_collector(&mut self, keypad: &crate::tool::Keypad) -> bool {
        if self.keys.is_empty() || !keypad.is_collecting() {
            return false;
        }
        for key in self.take_keys().chars() {
            keypad.offer(key);
        }
        true
    }

    /// The keys themselves, emptying the batch.
    pub(crate) fn take_keys(&mut self) -> String {
        self.due = None;
        std::mem::take(&mut self.keys)
    }

    /// The message for the model, emptying the batch.
    pub(crate) fn take(&mut self) -> Option<String> {
        self.due = None;
        if self.keys.is_empty() {
            return None;
        }
        let keys: Vec<String> = self.keys.chars().map(String::from).collect();
        self.keys.clear();
        Some(format!("The caller pressed {}", keys.join(" ")))
    }
}

/// Resolves at `due`; never without it.
pub(crate) async fn when_due(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_one_message_and_the_batch_empties() {
        let mut batch = KeyBatch::default();
        assert_eq!(batch.take(), None);
        let now = Instant::now();
        batch.press('1', now);
        batch.press('2', now);
        batch.press('#', now);
        let later = now + std::time::Duration::from_secs(1);
        batch.hold(later);
        assert_eq!(batch.due(), Some(later));
        assert_eq!(batch.take().as_deref(), Some("The caller pressed 1 2 #"));
        assert_eq!(batch.take(), None);
    }
}
