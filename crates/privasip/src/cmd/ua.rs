//! `privasip ua`: the user agent (the paper's Alice and Bob).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_agent::{Agent, CallRecord};
use privasip_ua::UaEvent;

/// Run a SIP user agent: register, call, answer.
///
/// Signalling only (no media). Plain SIP or PrivaSIP-1/-2 as the
/// configuration says; over UDP or TCP to the home proxy.
///
/// Examples:
///   privasip ua --config alice.toml register
///   privasip ua --config alice.toml call sip:bob@b.example --count 10 --interval 1
///   privasip ua --config bob.toml listen
///
/// `call` prints one line per call (times from INVITE sent); `--json`
/// prints one JSON object per call instead. Exit status: 0 if every call
/// was answered, 1 otherwise.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The user agent's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Append every message sent and received to FILE, as on the wire
    /// (what an observer of this hop sees, before Tor if any). It holds
    /// Digest responses: a new FILE is created readable by you alone.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Register once and exit.
    Register,
    /// Call a SIP URI, hang up after --hold seconds.
    Call {
        /// Whom to call, e.g. sip:bob@b.example.
        target: String,
        /// How many calls, one after the other.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Seconds between the end of one call and the next.
        #[arg(long, default_value_t = 0.0)]
        interval: f64,
        /// Seconds to stay in an answered call before BYE.
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
        /// Hang up (CANCEL) a call not answered after this many seconds;
        /// it then ends with 487.
        #[arg(long, value_name = "SECONDS", value_parser = seconds)]
        cancel_after: Option<f64>,
        /// Register before calling.
        #[arg(long)]
        register: bool,
        /// One JSON object per call on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Register and answer calls until Ctrl-C (or --for seconds).
    Listen {
        /// Stop after this many seconds.
        #[arg(long = "for", value_name = "SECONDS")]
        duration: Option<f64>,
    },
}

/// A duration in seconds: finite and not negative.
fn seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

pub(crate) fn run(args: &Args) -> Result<()> {
    privasip_node::init_logs();
    let loaded = privasip_node::ua::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let trace = args.trace.as_deref().map(open_trace).transpose()?;
        let mut agent = privasip_node::ua::start(loaded, &args.config, trace).await?;
        match &args.action {
            Action::Register => {
                let e = agent.register().await?;
                println!("registered for {e} s");
                Ok(())
            }
            Action::Listen { duration } => listen(&mut agent, *duration).await,
            Action::Call {
                target,
                count,
                interval,
                hold,
                cancel_after,
                register,
                json,
            } => {
                if *register {
                    agent.register().await?;
                }
                let plan = Calls {
                    count: *count,
                    interval: *interval,
                    hold: *hold,
                    cancel_after: *cancel_after,
                    json: *json,
                };
                call(&mut agent, target, &plan).await
            }
        }
    })
}

/// The trace holds Digest responses (enough for an offline password
/// guess): created private, never readable by others.
fn open_trace(path: &std::path::Path) -> Result<std::fs::File> {
    std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        0o600,
    )
    .open(path)
    .with_context(|| format!("cannot open {}", path.display()))
}

/// `listen`: registers, answers until Ctrl-C or `duration` seconds,
/// unregisters.
async fn listen(agent: &mut Agent, duration: Option<f64>) -> Result<()> {
    let e = agent.register().await?;
    eprintln!("registered for {e} s; answering calls (Ctrl-C stops)");
    let deadline = duration.map(|s| Instant::now() + Duration::from_secs_f64(s));
    agent
        .run_until(deadline, |_, ev| {
            match ev {
                UaEvent::Incoming { call, caller } => {
                    println!("call {}: incoming from {}", call.0, caller.expose());
                }
                UaEvent::Ended { call } => println!("call {}: ended", call.0),
                UaEvent::Failed { call, status } => {
                    println!("call {}: failed {status}", call.0);
                }
                UaEvent::Registered { expires } => {
                    eprintln!("registration refreshed for {expires} s");
                }
                UaEvent::RegistrationFailed { status } => {
                    eprintln!("registration refresh failed: {status}");
                }
                _ => {}
            }
            false
        })
        .await?;
    if agent.unregister().await? {
        eprintln!("unregistered");
    } else {
        eprintln!("the registrar did not confirm the unregistration");
    }
    Ok(())
}

/// What `call` was asked for.
struct Calls {
    count: usize,
    interval: f64,
    hold: f64,
    cancel_after: Option<f64>,
    json: bool,
}

/// `call`: the calls one after the other, a report line each; an error
/// unless every one was answered (or cancelled as asked).
async fn call(agent: &mut Agent, target: &str, plan: &Calls) -> Result<()> {
    let mut all_ok = true;
    for n in 1..=plan.count {
        let rec = agent.call(target, plan.hold, plan.cancel_after).await?;
        all_ok &= rec.answered_ms.is_some() || (rec.cancelled && rec.status == Some(487));
        report(n, &rec, plan.json);
        if n < plan.count && plan.interval > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(plan.interval)).await;
        }
    }
    if !agent.unregister().await? {
        eprintln!("the registrar did not confirm the unregistration");
    }
    if !all_ok {
        bail!("not every call was answered");
    }
    Ok(())
}

fn report(n: usize, r: &CallRecord, json: bool) {
    let outcome = match (r.answered_ms, r.status) {
        (Some(_), _) if r.ended => "answered",
        (Some(_), _) if r.cancelled => "answered-despite-cancel",
        (Some(_), _) => "answered-no-bye",
        (None, Some(487)) if r.cancelled => "cancelled",
        (None, Some(_)) => "failed",
        (None, None) => "no-answer",
    };
    if json {
        let line = serde_json::json!({
            "call": n,
            "invite_sent_ms": 0,
            "trying_ms": r.trying_ms.map(millis),
            "ringing_ms": r.ringing_ms.map(millis),
            "answered_ms": r.answered_ms.map(millis),
            "status": r.status,
            "outcome": outcome,
        });
        println!("{line}");
    } else {
        let part = |name: &str, v: Option<f64>| v.map(|x| format!("{name} {x:.1} ms"));
        let parts: Vec<String> = [
            part("100", r.trying_ms),
            part("180", r.ringing_ms),
            part("200", r.answered_ms),
        ]
        .into_iter()
        .flatten()
        .collect();
        println!(
            "call {n}: {outcome}{}{}",
            r.status.map_or(String::new(), |s| format!(" ({s})")),
            if parts.is_empty() {
                String::new()
            } else {
                format!(", {}", parts.join(", "))
            }
        );
    }
}

/// Milliseconds to the microsecond.
fn millis(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
