//! `confirm`: the point of no return. Before an irreversible step the procedure asks;
//! `--yes` answers for automation, a terminal asks the operator, and with neither
//! the answer is no, with a message that says how to resume.

use std::io::{BufRead, IsTerminal, Write};

use crate::wit::cmk::procedure::confirm::Host;

/// Who answers a confirmation in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// `--yes`: every confirmation is answered yes (and logged).
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
    /// No terminal to ask on and no `--yes`.
    NoAnswerer,
}

/// The `confirm` capability of one run.
pub struct ConfirmCap {
    answerer: Answerer,
    /// Plan mode: nothing irreversible can happen, so nothing is asked.
    plan: bool,
    /// Without the grant every question is answered no (and recorded as denied).
    granted: bool,
    denials: crate::caps::Denials,
    audit: crate::audit::Audit,
    unconfirmed: Option<Unconfirmed>,
    /// The run's stop request (Ctrl-C): it ends a question on the terminal at once;
    /// its hold (`fleet --stop-before`) answers every question no.
    stop: crate::stop::Stop,
}

impl ConfirmCap {
    /// Why the last confirmation asked was not given, if it was not.
    pub fn unconfirmed(&self) -> Option<Unconfirmed> {
        self.unconfirmed
    }

    pub fn new(
        answerer: Answerer,
        plan: bool,
        granted: bool,
        denials: crate::caps::Denials,
    ) -> Self {
        ConfirmCap {
            answerer,
            plan,
            granted,
            denials,
            audit: crate::audit::Audit::default(),
            unconfirmed: None,
            stop: crate::stop::Stop::default(),
        }
    }

    /// A stop request (Ctrl-C) cancels a question being asked on the terminal;
    /// while the stop holds before the point of no return, the answer is no.
    pub fn with_stop(mut self, stop: crate::stop::Stop) -> Self {
        self.stop = stop;
        self
    }

    /// Every question and its answer are recorded in `audit`.
    pub fn with_audit(mut self, audit: crate::audit::Audit) -> Self {
        self.audit = audit;
        self
    }
}

/// What the operator is shown.
fn question(action: &str, details: &[(String, String)]) -> String {
    let mut q = format!("\nAbout to {action}. This cannot be undone.\n");
    if !details.is_empty() {
        q.push_str("The procedure says:\n");
    }
    for (k, v) in details.iter().take(32) {
        q.push_str(&format!("  {k}: {v}\n"));
    }
    q.push_str("Type `yes` to go on: ");
    q
}

impl Host for ConfirmCap {
    async fn ask(&mut self, action: String, details: Vec<(String, String)>) -> Result<(), String> {
        // The procedure's words: escaped before the terminal, the log or the trail.
        let text = |s: &str| crate::text::ComponentText::new(s).into_string();
        let action = text(&action);
        let details: Vec<(String, String)> = details
            .iter()
            .take(32)
            .map(|(k, v)| (text(k), text(v)))
            .collect();
        let started = std::time::Instant::now();
        let answer = if self.granted {
            self.ask_unaudited(&action, details.clone()).await
        } else {
            Err(self.denials.deny(
                "confirm",
                &action,
                "confirm is not granted to this component: the answer is no",
            ))
        };
        let outcome = match (&answer, self.answerer) {
            (Ok(()), Answerer::Yes) => "yes (--yes)",
            (Ok(()), _) => "yes (operator)",
            (Err(_), _) => "no",
        };
        let shown: serde_json::Map<String, serde_json::Value> = details
            .into_iter()
            .take(32)
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        let mut entry = crate::audit::Entry::call(
            "confirm",
            &action,
            outcome,
            started.elapsed().as_millis() as u64,
        )
        .body(Some(serde_json::Value::Object(shown)));
        entry.detail = answer.as_ref().err().cloned();
        self.audit.record(entry);
        answer
    }
}

impl ConfirmCap {
    async fn ask_unaudited(
        &mut self,
        action: &str,
        details: Vec<(String, String)>,
    ) -> Result<(), String> {
        let action = action.to_string();
        if self.plan {
            return Err("plan mode: nothing irreversible is done".into());
        }
        if let Some(why) = self.stop.withheld() {
            tracing::warn!(action = %action, "not confirmed: {why}");
            return Err(why);
        }
        match self.answerer {
            Answerer::Yes => {
                tracing::warn!(action = %action, "confirmed by --yes");
                Ok(())
            }
            Answerer::Nobody => {
                self.unconfirmed = Some(Unconfirmed::NoAnswerer);
                tracing::warn!(action = %action, "not confirmed: no terminal and no --yes");
                Err(format!(
                    "not confirmed: no terminal to ask on and no --yes; to {action}, \
                     run the same command again with --yes"
                ))
            }
            Answerer::Terminal => {
                let prompt = question(&action, &details);
                let stop = self.stop.clone();
                let answer = tokio::task::spawn_blocking(move || read_answer(&prompt, &stop))
                    .await
                    .unwrap_or(Answer::Unreadable);
                match answer {
                    Answer::Line(line) if line.trim() == "yes" => {
                        self.unconfirmed = None;
                        tracing::warn!(action = %action, "confirmed by the operator");
                        Ok(())
                    }
                    Answer::Stopped(why) => {
                        // The run's stop request says what happened; not a decline.
                        tracing::warn!(action = %action, "not confirmed: {why}");
                        Err(format!(
                            "not confirmed: {why} at the question; nothing was done: to {action}, \
                             run the same command again"
                        ))
                    }
                    _ => {
                        self.unconfirmed = Some(Unconfirmed::Declined);
                        tracing::warn!(action = %action, "declined by the operator");
                        Err(format!(
                            "declined by the operator; to {action}, run the same command again \
                             and answer `yes` (or pass --yes)"
                        ))
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_shows_every_detail() {
        let q = question(
            "activate",
            &[
                ("cluster".into(), "prod".into()),
                ("hash".into(), "h".into()),
            ],
        );
        assert!(q.contains("About to activate"));
        assert!(q.contains("  cluster: prod\n  hash: h\n"));
    }
}
