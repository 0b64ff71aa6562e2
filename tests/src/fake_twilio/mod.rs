//! Fakes of Twilio's side of a call: request signing, webhook POSTs, a Media Streams
//! WebSocket client, and the Calls REST API.
//!
//! * [`signature`] computes `X-Twilio-Signature` (twilio.com/docs/usage/webhooks/webhooks-security).
//! * [`post_form`], [`post_voice_webhook`], [`post_status_callback`], [`post_signed`]: the
//!   form-encoded webhook POSTs Twilio makes, over a minimal HTTP/1.1 client on loopback.
//! * [`MediaStream`]: a fake Twilio Media Streams client (twilio.com/docs/voice/media-streams/websocket-messages), with mark
//!   echoes and a checker of what the server sends.
//! * [`FakeTwilioRest`]: an HTTP server emulating the Calls create/update endpoints (§5).

mod form;
mod http;
mod media_stream;
mod rest;
mod signature;

pub use form::{form_decode, form_encode, percent_decode, percent_encode};
pub use http::{http_request, post_form, post_signed, post_status_callback, post_voice_webhook};
pub use media_stream::MediaStream;
pub use rest::{FakeTwilioRest, RestRequest};
pub use signature::{signature, signed_string};
