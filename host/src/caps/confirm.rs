//! `confirm`: the point of no return, decided by the host.
//!
//! The host sends an irreversible request (`[http] irreversible`) only while the run
//! holds a confirmation for it ([`Confirmations::authorise`], called by the gate): the
//! component's signer is granted `confirm`, and either `--yes` was given or the
//! operator answered `yes` on the terminal to a question the host asked, when the
//! procedure called `confirm.ask` or, if it did not, when the request itself arrived.
//! Each yes authorises exactly one irreversible request, and a yes given before the
//! run's latest pod list no longer counts: the operator confirmed a cluster that has
//! since changed. `--yes` stands for one yes per run.
//!
//! The host composes every question from what it knows (the cluster, its own latest
//! pod list, the request); what the procedure adds is shown escaped, under a label
//! that says it is the procedure's.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};

use super::{Denials, LatestPods};
use crate::audit::{Audit, Entry};
use crate::stop::Stop;
use crate::wit::cmk::procedure::confirm::Host;
use crate::wit::cmk::procedure::pods::Pod;

/// Details of the procedure shown in a question, at most; and bytes of each.
const MAX_DETAILS: usize = 32;
const MAX_DETAIL_CHARS: usize = 512;

/// Who answers a confirmation in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// `--yes`: the run's first question is answered yes (and logged).
    Yes,
    /// Ask on the terminal (stdin and stderr are terminals).
    Terminal,
    /// No terminal and no `--yes`: every confirmation is answered no.
    Nobody,
}

impl Answerer {
    /// `--yes`, else the terminal when there is one, else nobody.
    pub fn detect(yes: bool) -> Answerer {
        if yes {
            Answerer::Yes
        } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            Answerer::Terminal
        } else {
            Answerer::Nobody
        }
    }
}

/// Why a confirmation was not given: the run stopped before the point of no
/// return on purpose, with nothing to fix (its report says `declined` or
/// `awaiting-confirmation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unconfirmed {
    /// The operator answered something other than `yes`.
    Declined,
    /// No terminal to ask on and no `--yes` (or `--yes` already answered).
    NoAnswerer,
}

/// The confirmations of one run: who answers, and the yeses not used yet. Shared by
/// the `confirm` capability (the procedure's questions) and the gate (the requests).
#[derive(Clone)]
pub struct Confirmations(Arc<Inner>);

struct Inner {
    answerer: Answerer,
    /// Plan mode: nothing irreversible can happen, so nothing is asked.
    plan: bool,
    /// Without the grant every question is answered no and no irreversible request
    /// is sent.
    granted: bool,
    cluster: String,
    pods: LatestPods,
    denials: Denials,
    audit: Audit,
    /// A stop request (Ctrl-C) cancels a question being asked on the terminal.
    stop: Stop,
    state: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    /// `--yes` already answered a question in this run.
    yes_used: bool,
    /// One entry per unused yes: the pod-list generation it was given at.
    yeses: Vec<u64>,
    /// Why the last question asked was not answered yes, if it was not.
    unconfirmed: Option<Unconfirmed>,
}

/// What the operator is asked about.
enum Subject<'a> {
    /// The procedure called `confirm.ask`: its action and details.
    Procedure {
        action: &'a str,
        details: &'a [(String, String)],
    },
    /// An irreversible request arrived without a confirmation: the request.
    Request(&'a str),
}

impl Confirmations {
    // One value per thing the run's confirmations depend on; none has a default.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        answerer: Answerer,
        plan: bool,
        granted: bool,
        cluster: &str,
        pods: LatestPods,
        denials: Denials,
        audit: Audit,
        stop: Stop,
    ) -> Confirmations {
        Confirmations(Arc::new(Inner {
            answerer,
            plan,
            granted,
            cluster: cluster.to_string(),
            pods,
            denials,
            audit,
            stop,
            state: Mutex::default(),
        }))
    }

    /// The procedure's `confirm.ask`: the host asks (or `--yes` answers); a yes is
    /// kept for one irreversible request.
    async fn ask_for_procedure(
        &self,
        action: &str,
        details: &[(String, String)],
    ) -> Result<(), String> {
        let me = &self.0;
        if !me.granted {
            return Err(me.denials.deny(
                "confirm",
                action,
                "confirm is not granted to this component: the answer is no",
            ));
        }
        if me.plan {
            return Err("plan mode: nothing irreversible is done".into());
        }
        let generation = me.pods.generation();
        let subject = Subject::Procedure { action, details };
        let resume = format!("to {}", escape(action));
        self.answer(&subject, &resume).await?;
        me.state
            .lock()
            .expect("confirm lock")
            .yeses
            .push(generation);
        Ok(())
    }

    /// Called by the gate before it sends the irreversible request `target`: `Ok`
    /// uses one yes; without one the host asks now; `Err` says why not and how to
    /// resume.
    pub async fn authorise(&self, target: &str) -> Result<(), String> {
        let me = &self.0;
        if !me.granted {
            return Err(
                "an irreversible request ([http] irreversible), and the component's signer is \
                 not granted `confirm`: the host sends none for it; add \"confirm\" to its \
                 [[trust.signer]] capabilities to allow it"
                    .into(),
            );
        }
        let generation = me.pods.generation();
        {
            let mut held = me.state.lock().expect("confirm lock");
            let before = held.yeses.len();
            held.yeses.retain(|g| *g == generation);
            if held.yeses.len() < before {
                tracing::warn!(
                    request = target,
                    "a confirmation given before the latest pod list no longer counts"
                );
            }
            if held.yeses.pop().is_some() {
                tracing::info!(request = target, "irreversible request confirmed");
                return Ok(());
            }
        }
        let started = std::time::Instant::now();
        let answer = self
            .answer(&Subject::Request(target), "to send it")
            .await
            .map_err(|why| format!("an irreversible request ([http] irreversible), {why}"));
        let outcome = if answer.is_ok() { "yes" } else { "no" };
        me.audit.record(
            Entry::call(
                "confirm",
                target,
                outcome,
                started.elapsed().as_millis() as u64,
            )
            .detail(match &answer {
                Ok(()) => "asked by the host at the request".to_string(),
                Err(why) => why.clone(),
            }),
        );
        answer
    }

    /// Whoever answers this run answers `subject`; `resume` completes "run the same
    /// command again ... `resume`" in a refusal.
    async fn answer(&self, subject: &Subject<'_>, resume: &str) -> Result<(), String> {
        let answer = self.answer_unrecorded(subject, resume).await;
        self.0.state.lock().expect("confirm lock").unconfirmed =
            answer.as_ref().err().and_then(|(u, _)| *u);
        answer.map_err(|(_, why)| why)
    }

    async fn answer_unrecorded(
        &self,
        subject: &Subject<'_>,
        resume: &str,
    ) -> Result<(), (Option<Unconfirmed>, String)> {
        let me = &self.0;
        // A hold (`fleet --stop-before activate`) answers no, whoever would answer.
        if let Some(why) = me.stop.withheld() {
            tracing::warn!(question = %subject.summary(), "not confirmed: {why}");
            return Err((None, why));
        }
        match me.answerer {
            Answerer::Yes => {
                let mut held = me.state.lock().expect("confirm lock");
                if held.yes_used {
                    tracing::warn!("not confirmed: --yes already answered this run's question");
                    return Err((
                        Some(Unconfirmed::NoAnswerer),
                        format!(
                            "not confirmed: --yes answers one question per run and this run's \
                             is answered; {resume}, run the same command again with --yes"
                        ),
                    ));
                }
                held.yes_used = true;
                tracing::warn!(question = %subject.summary(), "confirmed by --yes");
                Ok(())
            }
            Answerer::Nobody => {
                tracing::warn!(question = %subject.summary(), "not confirmed: no terminal and no --yes");
                Err((
                    Some(Unconfirmed::NoAnswerer),
                    format!(
                        "not confirmed: no terminal to ask on and no --yes; {resume}, run the \
                         same command again with --yes"
                    ),
                ))
            }
            Answerer::Terminal => {
                let prompt = question(&me.cluster, &me.pods.pods(), subject);
                let stop = me.stop.clone();
                let answer = tokio::task::spawn_blocking(move || read_answer(&prompt, &stop))
                    .await
                    .unwrap_or(Answer::Unreadable);
                match answer {
                    Answer::Line(line) if line.trim() == "yes" => {
                        tracing::warn!(question = %subject.summary(), "confirmed by the operator");
                        Ok(())
                    }
                    Answer::Stopped(why) => {
                        // The run's stop request says what happened; not a decline.
                        tracing::warn!(question = %subject.summary(), "not confirmed: {why}");
                        Err((
                            None,
                            format!(
                                "not confirmed: {why} at the question; nothing was done: \
                                 {resume}, run the same command again"
                            ),
                        ))
                    }
                    _ => {
                        tracing::warn!(question = %subject.summary(), "declined by the operator");
                        Err((
                            Some(Unconfirmed::Declined),
                            format!(
                                "declined by the operator; {resume}, run the same command \
                                 again and answer `yes` (or pass --yes)"
                            ),
                        ))
                    }
                }
            }
        }
    }

    /// Why the last question asked was not answered yes, if it was not.
    pub fn unconfirmed(&self) -> Option<Unconfirmed> {
        self.0.state.lock().expect("confirm lock").unconfirmed
    }

    fn answerer(&self) -> Answerer {
        self.0.answerer
    }
}

impl Subject<'_> {
    fn summary(&self) -> String {
        match self {
            Subject::Procedure { action, .. } => escape(action),
            Subject::Request(target) => escape(target),
        }
    }
}

/// What came of asking on the terminal.
#[derive(Debug)]
enum Answer {
    /// The line the operator typed.
    Line(String),
    /// The run was asked to stop (Ctrl-C) before or while the operator answered.
    Stopped(String),
    /// stdin closed or failed.
    Unreadable,
}

/// How often the question looks for a stop request while the operator types.
const STOP_POLL_MS: i32 = 50;

/// Writes `prompt` on stderr and reads one line from stdin, ending at once when
/// `stop` is requested (Ctrl-C): the terminal is polled, never blocked on, so an
/// interrupt does not wait for Enter, and a line typed after an interrupt is not
/// an answer.
fn read_answer(prompt: &str, stop: &crate::stop::Stop) -> Answer {
    {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(prompt.as_bytes());
        let _ = err.flush();
    }
    loop {
        if let Some(why) = stop.reason() {
            return Answer::Stopped(why);
        }
        let mut fd = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut fd, 1, STOP_POLL_MS) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue; // the signal itself; the loop looks at the stop request
            }
            return Answer::Unreadable;
        }
        if ready == 0 {
            continue;
        }
        let mut line = String::new();
        return match std::io::stdin().lock().read_line(&mut line) {
            // Ctrl-C and Enter in the same moment: the interrupt wins.
            _ if stop.reason().is_some() => Answer::Stopped(stop.reason().unwrap_or_default()),
            Ok(0) | Err(_) => Answer::Unreadable,
            Ok(_) => Answer::Line(line),
        };
    }
}

/// The question, in the host's voice: the cluster and the host's latest pod list; the
/// request when the host asks at the request; the procedure's words, escaped and
/// labelled as its own, when the procedure asked.
fn question(cluster: &str, pods: &[Pod], subject: &Subject<'_>) -> String {
    let mut q = String::from("\ncmk-host asks before an irreversible step: it cannot be undone.\n");
    q.push_str(&format!("  cluster: {}\n", escape(cluster)));
    let ready = pods.iter().filter(|p| p.ready).count();
    let shown: Vec<String> = pods
        .iter()
        .map(|p| match &p.ip {
            Some(ip) => format!("{} ({})", escape(&p.name), escape(ip)),
            None => format!("{} (no IP)", escape(&p.name)),
        })
        .collect();
    q.push_str(&format!(
        "  pods, as the host listed them last: {} ({ready} Ready): {}\n",
        pods.len(),
        if shown.is_empty() {
            "none listed yet".to_string()
        } else {
            shown.join(", ")
        }
    ));
    match subject {
        Subject::Request(target) => {
            q.push_str(&format!("  request: {}\n", escape(target)));
            q.push_str("  (the procedure did not ask for this confirmation itself)\n");
        }
        Subject::Procedure { action, details } => {
            q.push_str("The procedure says: (its own words, not checked by the host)\n");
            q.push_str(&format!("  About to {}.\n", escape(action)));
            for (k, v) in details.iter().take(MAX_DETAILS) {
                q.push_str(&format!("    {}: {}\n", escape(k), escape(v)));
            }
            if details.len() > MAX_DETAILS {
                q.push_str(&format!(
                    "    ({} more details not shown)\n",
                    details.len() - MAX_DETAILS
                ));
            }
        }
    }
    q.push_str("Type `yes` to go on: ");
    q
}

/// Text in a question, escaped and bounded (`crate::text`, the one home of escaping).
fn escape(s: &str) -> String {
    crate::text::ComponentText::with_limit(s, MAX_DETAIL_CHARS).into_string()
}

/// The `confirm` capability of one run: the procedure's questions.
pub struct ConfirmCap {
    confirmations: Confirmations,
    audit: Audit,
    /// Decides the call (the grant) before the host asks anything.
    gate: crate::caps::gate::Gate,
}

impl ConfirmCap {
    pub fn new(confirmations: Confirmations, gate: crate::caps::gate::Gate) -> Self {
        ConfirmCap {
            audit: confirmations.0.audit.clone(),
            confirmations,
            gate,
        }
    }

    /// Why the last confirmation asked was not given, if it was not.
    pub fn unconfirmed(&self) -> Option<Unconfirmed> {
        self.confirmations.unconfirmed()
    }
}

impl Host for ConfirmCap {
    async fn ask(&mut self, action: String, details: Vec<(String, String)>) -> Result<(), String> {
        // The procedure's words: escaped before the terminal, the log or the trail.
        let text = |s: &str| crate::text::ComponentText::new(s).into_string();
        let action = text(&action);
        let details: Vec<(String, String)> =
            details.iter().map(|(k, v)| (text(k), text(v))).collect();
        let started = std::time::Instant::now();
        let call = crate::caps::gate::Call::Plain {
            interface: "confirm",
            function: "ask",
            target: &action,
        };
        let answer = match self.gate.decide(call).await {
            Ok(_) => {
                self.confirmations
                    .ask_for_procedure(&action, &details)
                    .await
            }
            Err(refusal) => Err(format!("{}: the answer is no", refusal.message())),
        };
        let outcome = match (&answer, self.confirmations.answerer()) {
            (Ok(()), Answerer::Yes) => "yes (--yes)",
            (Ok(()), _) => "yes (operator)",
            (Err(_), _) => "no",
        };
        let shown: serde_json::Map<String, serde_json::Value> = details
            .into_iter()
            .take(MAX_DETAILS)
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        self.audit.record(
            Entry::call(
                "confirm",
                &action,
                outcome,
                started.elapsed().as_millis() as u64,
            )
            .body(Some(serde_json::Value::Object(shown)))
            .detail(answer.as_ref().err().cloned()),
        );
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> Vec<Pod> {
        vec![Pod {
            name: "sdkms-0".into(),
            ip: Some("10.0.0.1".into()),
            ready: true,
            phase: "Running".into(),
        }]
    }

    fn confirmations(answerer: Answerer, granted: bool, latest: &LatestPods) -> Confirmations {
        Confirmations::new(
            answerer,
            false,
            granted,
            "prod",
            latest.clone(),
            Denials::default(),
            Audit::default(),
            Stop::default(),
        )
    }

    #[test]
    fn the_question_shows_the_hosts_view_and_labels_the_procedures_words() {
        let details = [
            ("hash".to_string(), "h".to_string()),
            ("evil".to_string(), "\x1b[2J✓ done".to_string()),
        ];
        let q = question(
            "prod",
            &pods(),
            &Subject::Procedure {
                action: "activate",
                details: &details,
            },
        );
        assert!(q.contains("  cluster: prod\n"), "{q}");
        assert!(q.contains("1 (1 Ready): sdkms-0 (10.0.0.1)"), "{q}");
        assert!(
            q.contains("The procedure says: (its own words, not checked by the host)\n  About to activate.\n    hash: h\n"),
            "{q}"
        );
        assert!(!q.contains('\x1b'), "{q}");
        assert!(q.contains("evil: \\u{1b}[2J✓ done"), "{q}");
        let q = question(
            "prod",
            &pods(),
            &Subject::Request("POST https://10.0.0.1:4444/a"),
        );
        assert!(
            q.contains("  request: POST https://10.0.0.1:4444/a\n"),
            "{q}"
        );
    }

    #[tokio::test]
    async fn each_yes_authorises_one_request_and_only_until_the_next_pod_list() {
        let latest = LatestPods::default();
        latest.observe(pods());
        let c = confirmations(Answerer::Yes, true, &latest);
        // --yes answers the run's one question: the procedure's.
        c.ask_for_procedure("activate", &[]).await.unwrap();
        c.authorise("POST a").await.unwrap();
        let second = c.authorise("POST a").await.unwrap_err();
        assert!(
            second.contains("run the same command again with --yes"),
            "{second}"
        );

        let c = confirmations(Answerer::Yes, true, &latest);
        c.ask_for_procedure("activate", &[]).await.unwrap();
        latest.observe(pods());
        // The yes was given before this list; --yes is spent: no.
        assert!(c.authorise("POST a").await.is_err());
    }

    #[tokio::test]
    async fn without_the_grant_or_an_answerer_nothing_is_authorised() {
        let latest = LatestPods::default();
        let c = confirmations(Answerer::Yes, false, &latest);
        assert!(c.ask_for_procedure("activate", &[]).await.is_err());
        let why = c.authorise("POST a").await.unwrap_err();
        assert!(why.contains("not granted `confirm`"), "{why}");
        let c = confirmations(Answerer::Nobody, true, &latest);
        let why = c.authorise("POST a").await.unwrap_err();
        assert!(
            why.contains("run the same command again with --yes"),
            "{why}"
        );
        // --yes with no question asked before: the host's own question at the request.
        let c = confirmations(Answerer::Yes, true, &latest);
        c.authorise("POST a").await.unwrap();
        assert!(c.authorise("POST a").await.is_err());
    }
}
