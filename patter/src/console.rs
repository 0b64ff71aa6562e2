//! `console`: talk to your agent in text, with the model, prompt, tools and hooks its calls
//! use, and nothing but `OPENAI_API_KEY`.
//!
//! ```sh
//! cargo run --bin product_specialist -- console
//! cargo run --bin product_specialist -- console --from +15550100 --param store=north
//! echo "Is SKU-1234 in stock?" | cargo run --bin product_specialist -- console --jsonl
//! ```
//!
//! You type as the caller; every answer of the agent is shown as it arrives (the greeting,
//! and what it says after a tool), each tool call with its arguments, result and time, and
//! each turn's time to first text. `/dtmf 12#` presses keys the way a phone's keypad does,
//! `/hangup` ends the call. With `--jsonl`, each event is one JSON object per line, for
//! scripts. Piped input is a script: each line goes once the agent has answered the one
//! before, and when input ends the console hangs up, once the agent has answered what was
//! said and pressed.
//!
//! An agent binary hands its arguments over:
//!
//! ```no_run
//! # #[patter::agent(system_prompt = "You are a friendly receptionist.")]
//! # struct Receptionist;
//! # #[tokio::main]
//! # async fn main() -> std::process::ExitCode {
//! let args: Vec<String> = std::env::args().skip(1).collect();
//! if args.first().map(String::as_str) == Some("console") {
//!     return patter::console::Console::new(Receptionist).run_from_env(args).await;
//! }
//! // … serve calls as usual
//! # std::process::ExitCode::SUCCESS
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::agent::{Agent, AgentSpec};
use crate::call::{CallEnv, EndReason, Hooks, TextCall, TextEvent, TurnMetrics};
use crate::config::{ConfigBuilder, LocalConfig};
use crate::deploy::{self, Engines};
use crate::engine::{Engine, EngineKind};
use crate::tool::{CallContext, Direction};

/// The console's options: `[console] [--from NUMBER] [--to NUMBER] [--param NAME=VALUE]…
/// [--jsonl]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsoleOptions {
    /// The caller's number, for `CallContext::caller`.
    pub from: Option<String>,
    /// The number called, for `CallContext::callee`.
    pub to: Option<String>,
    /// Call parameters, for `CallContext::parameter`.
    pub params: Vec<(String, String)>,
    /// One JSON object per event instead of text.
    pub jsonl: bool,
}

/// How to use the console, for `--help` and argument errors.
pub const USAGE: &str =
    "usage: console [--from NUMBER] [--to NUMBER] [--param NAME=VALUE]... [--jsonl]
  type as the caller; /dtmf 12# presses keys, /hangup ends the call, /help shows this";

impl ConsoleOptions {
    /// Reads the arguments after the program's name; a leading `console` is skipped.
    /// `Ok(None)` means `--help` was asked for.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>, String> {
        let mut options = ConsoleOptions::default();
        let mut args = args.into_iter().peekable();
        if args.peek().map(String::as_str) == Some("console") {
            args.next();
        }
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") && flag != "--param" => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--from" => options.from = Some(value("--from")?),
                "--to" => options.to = Some(value("--to")?),
                "--param" => {
                    let pair = value("--param")?;
                    match pair.split_once('=') {
                        Some((name, v)) if !name.is_empty() => {
                            options.params.push((name.to_owned(), v.to_owned()))
                        }
                        _ => return Err(format!("--param takes NAME=VALUE, not {pair:?}")),
                    }
                }
                "--jsonl" => options.jsonl = true,
                "--help" | "-h" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(options))
    }
}

/// Why the console could not run, or how its call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The agent's tools are invalid.
    #[error("the agent is invalid: {0}")]
    Agent(String),
    /// Writing the output failed.
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The console for one agent; see the module documentation.
pub struct Console {
    agent: Result<AgentSpec, String>,
    hooks: Hooks,
}

impl fmt::Debug for Console {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Console")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// The console for `agent`, with no hooks.
    pub fn new(agent: impl Agent) -> Self {
        let agent = std::sync::Arc::new(agent).spec().map_err(|e| e.to_string());
        Console {
            agent,
            hooks: Hooks::default(),
        }
    }

    /// The hooks its calls run with (those of your `Patter`: [`crate::Patter::hooks`]).
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Runs on the terminal with the settings of the environment (`OPENAI_API_KEY`, and the
    /// optional engine, model and limit settings). Exit code 0 when the call ends normally,
    /// 1 when the engine fails, 2 for bad settings or arguments.
    pub async fn run_from_env(self, args: impl IntoIterator<Item = String>) -> ExitCode {
        let options = match ConsoleOptions::parse(args) {
            Ok(Some(options)) => options,
            Ok(None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("error: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        let config = match ConfigBuilder::from_env().build_local() {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("the console needs OPENAI_API_KEY (in the environment or a .env file)");
                return ExitCode::from(2);
            }
        };
        let echo = !std::io::stdin().is_terminal();
        match self
            .run_lines(config, options, stdin_lines(), tokio::io::stdout(), echo)
            .await
        {
            Ok(reason) => exit_code(&reason),
            Err(e @ ConsoleError::Agent(_)) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs one conversation reading the caller's lines from `input` and writing to
    /// `output`; `echo` repeats each typed line (for input that is not a terminal). Returns
    /// how the call ended.
    pub async fn run<R, W>(
        self,
        config: LocalConfig,
        options: ConsoleOptions,
        input: R,
        output: W,
        echo: bool,
    ) -> Result<EndReason, ConsoleError>
    where
        R: AsyncBufRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        self.run_lines(config, options, input.lines(), output, echo)
            .await
    }

    async fn run_lines<L, W>(
        self,
        config: LocalConfig,
        options: ConsoleOptions,
        input: L,
        output: W,
        echo: bool,
    ) -> Result<EndReason, ConsoleError>
    where
        L: LineSource,
        W: AsyncWrite + Unpin,
    {
        let agent = self.agent.map_err(ConsoleError::Agent)?;
        let agent = deploy::deployed(&config, agent);
        let engine = agent.engine;
        let env = CallEnv::new(agent)
            .hooks(self.hooks)
            .limits(config.limits.clone())
            .system_tools(config.system_tools);
        let mut context = CallContext::builder(format!("console-{}", std::process::id()))
            .direction(Direction::Inbound)
            .parameters(options.params.clone());
        if let Some(from) = &options.from {
            context = context.caller(from);
        }
        if let Some(to) = &options.to {
            context = context.callee(to);
        }
        let engines = Engines::new(&config);
        let model = match (&env.agent().model, engine) {
            (Some(model), _) => model.clone(),
            (None, EngineKind::GptLive) => engines.live.default_model().to_owned(),
            (None, _) => engines.realtime.default_model().to_owned(),
        };
        let call = match engine {
            EngineKind::GptLive => env.start_text(engines.live, context.build()),
            _ => env.start_text(engines.realtime, context.build()),
        };
        let mut out = Output::new(output, options.jsonl);
        if !options.jsonl {
            out.line(&format!(
                "console: {model} on {engine}, in text. Type as the caller; /help for commands."
            ))
            .await?;
        }
        converse(call, input, &mut out, echo).await
    }
}

fn exit_code(reason: &EndReason) -> ExitCode {
    match reason {
        EndReason::EngineLost { .. } | EndReason::EngineError { .. } => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Feeds the caller's lines in and the agent's events out until the call ends. Input that is
/// not a terminal (`echo`) is a script: each line is read once the agent has answered the
/// one before, and shown as it is sent.
async fn converse<L, W>(
    mut call: TextCall,
    mut lines: L,
    out: &mut Output<W>,
    echo: bool,
) -> Result<EndReason, ConsoleError>
where
    L: LineSource,
    W: AsyncWrite + Unpin,
{
    let mut input_open = true;
    // Lines said whose turn has not ended (a script's next line waits for them), the ones
    // not yet sent among them, and whether the turn in progress is one of them (not keys).
    let mut unanswered = 0usize;
    let mut unsent: VecDeque<String> = VecDeque::new();
    let mut line_turn = false;
    let mut reason = None;
    loop {
        tokio::select! {
            line = lines.next_line(), if input_open && !(echo && unanswered > 0) => match line {
                Ok(Some(line)) => {
                    match command(line.trim()) {
                        Command::Nothing => {}
                        Command::Say(text) => {
                            unanswered += 1;
                            unsent.push_back(text.to_owned());
                            call.say(text);
                        }
                        Command::Press(keys) => match call.press(keys) {
                            Ok(()) => {
                                let keys = keys.chars().count();
                                let plural = if keys == 1 { "" } else { "s" };
                                out.note(&format!("pressed {keys} key{plural}"), "keys").await?
                            }
                            Err(e) => out.note(&e.to_string(), "input").await?,
                        },
                        Command::HangUp => call.hang_up(),
                        Command::Help => out.note(USAGE, "help").await?,
                        Command::Unknown(text) => {
                            out.note(&format!("unknown command {text:?}; /help lists them"), "input").await?
                        }
                    }
                }
                Ok(None) | Err(_) => {
                    // The end of a script: what was said and pressed is answered first.
                    input_open = false;
                    call.hang_up_when_done();
                }
            },
            event = call.next_event() => {
                let Some(event) = event else { break };
                match &event {
                    TextEvent::Caller { text } => {
                        line_turn = unsent.front() == Some(text);
                        if line_turn {
                            unsent.pop_front();
                        }
                    }
                    TextEvent::TurnEnded(_) if std::mem::take(&mut line_turn) => {
                        unanswered = unanswered.saturating_sub(1);
                    }
                    TextEvent::Ended { reason: ended } => reason = Some(ended.clone()),
                    _ => {}
                }
                if echo || !matches!(event, TextEvent::Caller { .. }) || out.jsonl {
                    out.event(&event).await?;
                }
            }
        }
    }
    let summary = call.finish().await;
    Ok(reason.unwrap_or(summary.reason))
}

/// Where the caller's lines come from. `next_line` must be cancel-safe: the console reads
/// in a `select!` with the call's events.
trait LineSource {
    fn next_line(&mut self) -> impl Future<Output = std::io::Result<Option<String>>>;
}

impl<R: AsyncBufRead + Unpin> LineSource for tokio::io::Lines<R> {
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        tokio::io::Lines::next_line(self).await
    }
}

/// The terminal's lines, read on a thread of their own. Tokio's `stdin` reads on its
/// blocking pool, and a read that waits for a key would then keep the program from exiting
/// when the call ends; a plain thread does not.
struct StdinLines(tokio::sync::mpsc::UnboundedReceiver<std::io::Result<String>>);

fn stdin_lines() -> StdinLines {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    StdinLines(rx)
}

impl LineSource for StdinLines {
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        self.0.recv().await.transpose()
    }
}

enum Command<'a> {
    Nothing,
    Say(&'a str),
    Press(&'a str),
    HangUp,
    Help,
    Unknown(&'a str),
}

fn command(line: &str) -> Command<'_> {
    if line.is_empty() {
        return Command::Nothing;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line);
    };
    let (name, argument) = rest.split_once(' ').unwrap_or((rest, ""));
    match name {
        "dtmf" => Command::Press(argument.trim()),
        "hangup" | "quit" | "exit" => Command::HangUp,
        "help" => Command::Help,
        _ => Command::Unknown(line),
    }
}

/// Where events are written: as lines of text, or as JSON lines.
struct Output<W> {
    writer: W,
    jsonl: bool,
    /// An answer is being written as its text streams in: the line is not finished yet.
    streaming: bool,
}

impl<W: AsyncWrite + Unpin> Output<W> {
    fn new(writer: W, jsonl: bool) -> Self {
        Output {
            writer,
            jsonl,
            streaming: false,
        }
    }

    async fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.end_stream().await?;
        self.writer.write_all(text.as_bytes()).await?;
        self.writer.write_all(b"\n").await?;
        self.writer.flush().await
    }

    /// Text of the answer as it arrives: `agent: ` then each fragment on the same line.
    async fn stream(&mut self, fragment: &str) -> std::io::Result<()> {
        if !self.streaming {
            self.writer.write_all(b"agent: ").await?;
            self.streaming = true;
        }
        self.writer.write_all(fragment.as_bytes()).await?;
        self.writer.flush().await
    }

    /// Ends a streamed answer's line, if one is open.
    async fn end_stream(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.streaming) {
            self.writer.write_all(b"\n").await?;
        }
        Ok(())
    }

    /// A message of the console itself (not of the call).
    async fn note(&mut self, text: &str, kind: &str) -> std::io::Result<()> {
        if self.jsonl {
            let line = json!({ "type": "console", "kind": kind, "message": text }).to_string();
            self.line(&line).await
        } else {
            self.line(&format!("  ({text})")).await
        }
    }

    async fn event(&mut self, event: &TextEvent) -> std::io::Result<()> {
        if !self.jsonl {
            match event {
                TextEvent::AssistantDelta { text } => return self.stream(text).await,
                // The whole answer, already shown as it streamed: its line ends.
                TextEvent::Assistant { .. } if self.streaming => {
                    self.end_stream().await?;
                    return self.writer.flush().await;
                }
                _ => {}
            }
        }
        let line = if self.jsonl {
            match event_json(event) {
                Some(value) => value.to_string(),
                None => return Ok(()),
            }
        } else {
            match event_text(event) {
                Some(text) => text,
                None => return Ok(()),
            }
        };
        self.line(&line).await
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// JSON of a tool's arguments or output when it is JSON, else the text.
fn json_or_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn event_json(event: &TextEvent) -> Option<Value> {
    Some(match event {
        TextEvent::Caller { text } => json!({ "type": "user", "text": text }),
        TextEvent::Assistant { text, greeting } => {
            json!({ "type": "assistant", "text": text, "greeting": greeting })
        }
        TextEvent::AssistantDelta { .. } => return None,
        TextEvent::ToolCall {
            call_id,
            name,
            arguments,
        } => json!({
            "type": "tool_call", "call_id": call_id, "name": name,
            "arguments": json_or_text(arguments)
        }),
        TextEvent::ToolResult {
            call_id,
            name,
            output,
            ok,
            duration,
        } => json!({
            "type": "tool_result", "call_id": call_id, "name": name,
            "output": json_or_text(output), "ok": ok, "duration_ms": millis(*duration)
        }),
        TextEvent::TurnEnded(TurnMetrics {
            index,
            first_text,
            duration,
            tool_calls,
            ..
        }) => json!({
            "type": "turn_metrics", "turn": index,
            "first_text_ms": first_text.map(millis),
            "duration_ms": millis(*duration), "tool_calls": tool_calls
        }),
        TextEvent::Error {
            code,
            message,
            fatal,
        } => json!({ "type": "error", "code": code, "message": message, "fatal": fatal }),
        TextEvent::Ended { reason } => json!({
            "type": "end", "reason": reason_name(reason), "detail": reason.to_string()
        }),
    })
}

fn event_text(event: &TextEvent) -> Option<String> {
    Some(match event {
        TextEvent::Caller { text } => format!("you: {text}"),
        TextEvent::Assistant { text, .. } => format!("agent: {text}"),
        TextEvent::AssistantDelta { .. } => return None,
        TextEvent::ToolCall {
            name, arguments, ..
        } => format!("  → {name} {arguments}"),
        TextEvent::ToolResult {
            name,
            output,
            ok,
            duration,
            ..
        } => {
            let mark = if *ok { "←" } else { "✗" };
            format!("  {mark} {name} {output} ({} ms)", millis(*duration))
        }
        TextEvent::TurnEnded(metrics) => {
            let first = metrics.first_text.map_or_else(
                || "no text".to_owned(),
                |t| format!("first text {} ms", millis(t)),
            );
            format!(
                "  (turn {}: {first}, done in {} ms)",
                metrics.index,
                millis(metrics.duration)
            )
        }
        TextEvent::Error { message, code, .. } => match code {
            Some(code) => format!("error: {message} ({code})"),
            None => format!("error: {message}"),
        },
        TextEvent::Ended { reason } => format!("call ended: {reason}"),
    })
}

/// A short, stable name of an end reason, for scripts: the reason's own kind, but for the
/// two names the console printed before kinds existed.
fn reason_name(reason: &EndReason) -> &'static str {
    match reason.kind() {
        "stream_stopped" => "caller_hung_up",
        "stream_closed" => "closed",
        kind => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn answers_stream_on_one_line_and_other_events_end_it() {
        let mut out = Output::new(Vec::new(), false);
        let delta = |text: &str| TextEvent::AssistantDelta { text: text.into() };
        out.event(&delta("Let me ")).await.expect("write");
        out.event(&delta("check.")).await.expect("write");
        let whole = TextEvent::Assistant {
            text: "Let me check.".into(),
            greeting: false,
        };
        out.event(&whole).await.expect("write");
        out.event(&delta("Half")).await.expect("write");
        let call = TextEvent::ToolCall {
            call_id: "c1".into(),
            name: "check_inventory".into(),
            arguments: "{}".into(),
        };
        out.event(&call).await.expect("write");
        let written = String::from_utf8(out.writer).expect("utf-8");
        assert_eq!(
            written,
            "agent: Let me check.\nagent: Half\n  → check_inventory {}\n"
        );
    }

    #[test]
    fn options_read_every_flag_in_both_spellings() {
        let options = ConsoleOptions::parse(args(
            "console --from +15550100 --to=+15550199 --param store=north --param tier=gold --jsonl",
        ))
        .expect("valid")
        .expect("not help");
        assert_eq!(options.from.as_deref(), Some("+15550100"));
        assert_eq!(options.to.as_deref(), Some("+15550199"));
        assert_eq!(
            options.params,
            vec![
                ("store".to_owned(), "north".to_owned()),
                ("tier".to_owned(), "gold".to_owned())
            ]
        );
        assert!(options.jsonl);
        assert_eq!(ConsoleOptions::parse(args("--help")), Ok(None));
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for (given, says) in [
            ("--from", "--from needs a value"),
            ("--param store", "--param takes NAME=VALUE"),
            ("--param =x", "--param takes NAME=VALUE"),
            ("--verbose", "unknown argument \"--verbose\""),
        ] {
            let error = ConsoleOptions::parse(args(given)).expect_err(given);
            assert!(error.contains(says), "{given}: {error}");
        }
    }

    #[test]
    fn commands_are_read_from_slash_lines() {
        assert!(matches!(command("/dtmf 12#"), Command::Press("12#")));
        assert!(matches!(command("/hangup"), Command::HangUp));
        assert!(matches!(command("/nope"), Command::Unknown("/nope")));
        assert!(matches!(command("hello"), Command::Say("hello")));
        assert!(matches!(command(""), Command::Nothing));
    }
}
