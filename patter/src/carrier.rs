//! The carrier seam: the caller's side of a call.
//!
//! A [`CarrierLeg`] is one call's media connection with the telephone network (a Twilio
//! Media Stream), or with whatever plays the caller (a browser, a test). The call reads its
//! frames, has the leg [`parse`](CarrierLeg::parse) each into a [`CarrierEvent`], and sends
//! [`CarrierCommand`]s: agent audio followed by a mark the leg echoes once that audio has
//! played, and `Clear` to drop audio not played yet. Audio on a leg is always G.711 μ-law
//! at 8 kHz, as base64.
//!
//! [`CallControl`] is separate: acting on the call as a whole (hang up, transfer), which a
//! phone network offers and a browser or a test may not.
//!
//! By the time a leg reaches the call it has been admitted (signature, per-call token, a
//! free call slot): the leg's own module decides that, before any engine session opens.

use std::borrow::Cow;
use std::future::Future;

use futures_util::future::BoxFuture;

pub use crate::audio::AudioChunk;

/// One call's media connection on the caller's side.
///
/// The call reads with [`recv`](CarrierLeg::recv) inside a `select!` with its other
/// inputs, so `recv` must be cancel-safe: dropping its future loses no frame.
pub trait CarrierLeg: Send + 'static {
    /// One message as it arrives, owned; [`CarrierLeg::parse`] reads the event out of it.
    type Frame: Send;

    /// Waits for the next frame; `Ok(None)` once the leg has closed.
    fn recv(&mut self) -> impl Future<Output = Result<Option<Self::Frame>, CarrierError>> + Send;

    /// Reads a frame. A frame that cannot be read is [`CarrierError::Malformed`]: the call
    /// counts it and goes on.
    fn parse<'f>(&mut self, frame: &'f Self::Frame) -> Result<CarrierEvent<'f>, CarrierError>;

    /// Sends a command. An error means the leg is gone.
    fn send(
        &mut self,
        command: CarrierCommand<'_>,
    ) -> impl Future<Output = Result<(), CarrierError>> + Send;

    /// Closes the leg. The call bounds how long this may take.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Something the caller's side said.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierEvent<'a> {
    /// Caller audio: base64 G.711 μ-law 8 kHz.
    Media {
        /// The audio, as it arrived.
        audio: Cow<'a, str>,
        /// The leg's clock: milliseconds since the media started, if the leg keeps one.
        /// Barge-in truncation measures how much the caller heard by it.
        timestamp_ms: Option<u64>,
    },
    /// The audio sent before this mark has played (or was dropped by a `Clear`).
    Mark {
        /// The mark's name, as the call sent it.
        name: Cow<'a, str>,
    },
    /// The caller pressed a key: `0`-`9`, `*`, `#`, or `A`-`D`.
    Dtmf {
        /// The key.
        digit: char,
    },
    /// The caller's side ended the media (the caller hung up, or the call moved on).
    Stop,
    /// Anything the call does not act on.
    Ignored,
}

/// What the call asks of the caller's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CarrierCommand<'a> {
    /// Agent audio (G.711 μ-law 8 kHz), then a mark to echo once it has played.
    Media {
        /// The audio.
        audio: AudioChunk<'a>,
        /// The mark's name.
        mark: &'a str,
    },
    /// Drop the agent audio not played yet; pending marks are echoed at once.
    Clear,
}

/// Why a carrier leg failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CarrierError {
    /// The connection failed.
    #[error("the caller's connection failed: {0}")]
    Io(String),
    /// A frame that could not be read; the call goes on.
    #[error("malformed frame from the caller's side: {0}")]
    Malformed(String),
}

/// Acting on a call as a whole, beyond its media: what a phone network offers.
///
/// Object-safe; the call holds an `Arc<dyn CallControl>`. Nothing here is on the audio path.
pub trait CallControl: Send + Sync + 'static {
    /// Ends the call.
    fn hang_up<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Connects the caller to `number` (E.164) instead of the agent.
    fn transfer<'a>(
        &'a self,
        call_id: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>>;

    /// Starts recording the call, caller and agent on separate channels; the carrier
    /// reports the finished recording on its own (Twilio: the recording status callback).
    /// Carriers without recordings refuse.
    fn start_recording<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        let _ = call_id;
        Box::pin(async { Err(ControlError::new("this call cannot be recorded")) })
    }

    /// The agent cannot go on (its engine is unreachable or failed): the carrier itself
    /// tells the caller `outage`'s message, then hangs up or transfers to its fallback, so
    /// the caller is never left in silence. Carriers that cannot speak just hang up.
    fn apologise<'a>(
        &'a self,
        call_id: &'a str,
        outage: &'a Outage,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        let _ = outage;
        self.hang_up(call_id)
    }
}

/// What a caller hears when the agent cannot take or go on with their call: said by the
/// carrier itself (Twilio: `<Say>`), then a hang-up, or a transfer to `fallback`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outage {
    /// The words.
    pub message: String,
    /// The carrier's voice for them (Twilio: `alice`, `Polly.Joanna`, …); its default if
    /// `None`.
    pub voice: Option<String>,
    /// Where to send the caller after the message (E.164), instead of hanging up.
    pub fallback: Option<String>,
}

/// What callers hear by default when the agent is unavailable.
pub const DEFAULT_OUTAGE_MESSAGE: &str =
    "Sorry, we can't take your call right now. Please try again in a few minutes. Goodbye.";

impl Default for Outage {
    fn default() -> Self {
        Outage {
            message: DEFAULT_OUTAGE_MESSAGE.to_owned(),
            voice: None,
            fallback: None,
        }
    }
}

impl Outage {
    /// The default message, hang-up after it.
    pub fn new() -> Self {
        Outage::default()
    }

    /// Says `message` instead.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// In this voice of the carrier's.
    pub fn voice(mut self, voice: impl Into<String>) -> Self {
        self.voice = Some(voice.into());
        self
    }

    /// Then transfers the caller to `number` instead of hanging up.
    pub fn fallback(mut self, number: impl Into<String>) -> Self {
        self.fallback = Some(number.into());
        self
    }
}

/// Why a call-control request failed; the model is told the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    message: String,
}

impl ControlError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ControlError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Call control for legs that have none (a browser softphone, say): hanging up succeeds
/// (the call's end closes the leg), a transfer is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallControl;

impl CallControl for NoCallControl {
    fn hang_up<'a>(&'a self, _call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async { Ok(()) })
    }

    fn transfer<'a>(
        &'a self,
        _call_id: &'a str,
        _number: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async { Err(ControlError::new("this call cannot be transferred")) })
    }
}

/// Call control for calls with no line to act on (a text conversation, a browser
/// softphone): a hang-up or a transfer always goes through, and ends the call; the call's
/// end closes its leg, and the transfer's number is in the call's end reason.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndingControl;

impl CallControl for EndingControl {
    fn hang_up<'a>(&'a self, _call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async { Ok(()) })
    }

    fn transfer<'a>(
        &'a self,
        _call_id: &'a str,
        _number: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async { Ok(()) })
    }
}
