//! The simulated phone: the caller's side of a simulated call. It plays agent audio in (test)
//! time, echoes each mark once the audio before it has played, and on `Clear` drops what is
//! unplayed and echoes the pending marks at once, as Twilio does.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::state::Shared;
use crate::carrier::{
    CallControl, CarrierCommand, CarrierError, CarrierEvent, CarrierLeg, ControlError,
};

/// μ-law 8 kHz: one byte per sample, 8 bytes per millisecond.
const MULAW_BYTES_PER_MS: u64 = 8;

/// Something the test has the caller's side send.
#[derive(Debug, Clone)]
pub(crate) enum Sent {
    Media { audio: String, timestamp_ms: u64 },
    Dtmf(char),
    Stop,
    Garbage,
}

/// A numbered frame from the test (numbered from 1).
pub(crate) type Frame = (u64, Sent);

/// What the call reads: the test's frames, and the phone's own mark echoes.
#[derive(Debug)]
pub(crate) enum Heard {
    Test(Sent),
    Echo(String),
}

/// The simulated caller's leg.
pub(crate) struct SimLeg {
    pub(crate) shared: Arc<Shared>,
    pub(crate) frames: mpsc::UnboundedReceiver<Frame>,
    /// When the audio received so far will have played.
    pub(crate) playout_end: Option<Instant>,
    /// Marks waiting for their audio to play, with when it will have.
    pub(crate) pending_marks: VecDeque<(String, Instant)>,
    /// Marks to echo at once (a `Clear` flushed their audio).
    pub(crate) flushed: VecDeque<String>,
    /// The test frame last handed to the call: handled once the call asks for the next one.
    pub(crate) handed_out: Option<u64>,
}

impl SimLeg {
    pub(crate) fn new(shared: Arc<Shared>, frames: mpsc::UnboundedReceiver<Frame>) -> Self {
        SimLeg {
            shared,
            frames,
            playout_end: None,
            pending_marks: VecDeque::new(),
            flushed: VecDeque::new(),
            handed_out: None,
        }
    }
}

impl CarrierLeg for SimLeg {
    type Frame = Heard;

    async fn recv(&mut self) -> Result<Option<Heard>, CarrierError> {
        if let Some(n) = self.handed_out.take() {
            self.shared
                .update(|s| s.carrier_handled = s.carrier_handled.max(n));
        }
        if let Some(name) = self.flushed.pop_front() {
            return Ok(Some(Heard::Echo(name)));
        }
        let next_mark = self.pending_marks.front().map(|(_, at)| *at);
        tokio::select! {
            frame = self.frames.recv() => match frame {
                Some((n, sent)) => {
                    self.handed_out = Some(n);
                    Ok(Some(Heard::Test(sent)))
                }
                None => {
                    self.shared.event("caller: line closed");
                    Ok(None)
                }
            },
            () = tokio::time::sleep_until(next_mark.unwrap_or_else(Instant::now)), if next_mark.is_some() => {
                let Some((name, _)) = self.pending_marks.pop_front() else {
                    return Ok(Some(Heard::Echo(String::new())));
                };
                self.shared.update(|s| {
                    s.marks_played += 1;
                    s.marks_unplayed = s.marks_unplayed.saturating_sub(1);
                    s.push_run("played", 1, |count, _| {
                        format!("caller: played up to a mark ({count} in a row)")
                    });
                });
                Ok(Some(Heard::Echo(name)))
            }
        }
    }

    fn parse<'f>(&mut self, frame: &'f Heard) -> Result<CarrierEvent<'f>, CarrierError> {
        Ok(match frame {
            Heard::Test(Sent::Media {
                audio,
                timestamp_ms,
            }) => CarrierEvent::Media {
                audio: Cow::Borrowed(audio),
                timestamp_ms: Some(*timestamp_ms),
            },
            Heard::Test(Sent::Dtmf(digit)) => CarrierEvent::Dtmf { digit: *digit },
            Heard::Test(Sent::Stop) => CarrierEvent::Stop,
            Heard::Test(Sent::Garbage) => {
                return Err(CarrierError::Malformed("not a frame".to_owned()));
            }
            Heard::Echo(name) => CarrierEvent::Mark {
                name: Cow::Borrowed(name),
            },
        })
    }

    async fn send(&mut self, command: CarrierCommand<'_>) -> Result<(), CarrierError> {
        let now = Instant::now();
        match command {
            CarrierCommand::Media { audio, mark } => {
                let bytes = audio.len();
                let played_in = Duration::from_millis(bytes as u64 / MULAW_BYTES_PER_MS);
                let start = self.playout_end.map_or(now, |end| end.max(now));
                let end = start + played_in;
                self.playout_end = Some(end);
                self.pending_marks.push_back((mark.to_owned(), end));
                let ms = played_in.as_millis() as u64;
                self.shared.update(|s| {
                    s.agent_audio_bytes += bytes;
                    s.marks_unplayed += 1;
                    s.push_run("agent_audio", ms, |count, ms| {
                        format!("call → caller: {ms} ms of agent audio in {count} chunks, each with a mark")
                    });
                });
            }
            CarrierCommand::Clear => {
                self.playout_end = None;
                let flushed = self.pending_marks.len();
                self.flushed
                    .extend(self.pending_marks.drain(..).map(|(name, _)| name));
                self.shared.update(|s| {
                    s.clears += 1;
                    s.marks_unplayed = 0;
                    s.push_event(format!(
                        "call → caller: clear ({flushed} marks flushed unplayed)"
                    ));
                });
            }
        }
        Ok(())
    }

    async fn close(self) {
        self.shared.event("call → caller: line closed");
    }
}

/// The simulated phone network's call control: it records what it is asked, and refuses
/// what the test says it should.
pub(crate) struct SimControl {
    pub(crate) shared: Arc<Shared>,
    pub(crate) refuse_hang_up: Option<String>,
    pub(crate) refuse_transfer: Option<String>,
}

impl CallControl for SimControl {
    fn hang_up<'a>(&'a self, _call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            if let Some(message) = &self.refuse_hang_up {
                self.shared
                    .event(format!("call control: hang-up refused ({message})"));
                return Err(ControlError::new(message.clone()));
            }
            self.shared.update(|s| {
                s.hang_ups += 1;
                s.push_event("call control: hung up".to_owned());
            });
            Ok(())
        })
    }

    fn transfer<'a>(
        &'a self,
        _call_id: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            if let Some(message) = &self.refuse_transfer {
                self.shared.event(format!(
                    "call control: transfer to {number} refused ({message})"
                ));
                return Err(ControlError::new(message.clone()));
            }
            self.shared.update(|s| {
                s.transfers.push(number.to_owned());
                s.push_event(format!("call control: transferred to {number}"));
            });
            Ok(())
        })
    }
}
