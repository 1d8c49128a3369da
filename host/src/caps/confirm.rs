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
        }
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
                let answer = tokio::task::spawn_blocking(move || {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(prompt.as_bytes());
                    let _ = err.flush();
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map(|_| line)
                })
                .await;
                match answer {
                    Ok(Ok(line)) if line.trim() == "yes" => {
                        self.unconfirmed = None;
                        tracing::warn!(action = %action, "confirmed by the operator");
                        Ok(())
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
