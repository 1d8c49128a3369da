//! Text a component supplies (step names and details, log lines, failure reasons,
//! confirmation details, hook reasons, its captured output): the one place that
//! makes it safe to show. Every such string is data, never the host's voice: its
//! control characters are shown as visible escapes (`\u{1b}`), so it cannot move the
//! cursor, clear the screen, retitle the window, reorder text (bidi overrides) or
//! start a line of its own; and it is cut at a bound, so it cannot flood the
//! terminal or the audit trail.
//!
//! A leaf: the terminal (`ui`), the log capability, the report and the audit trail
//! all use it; it uses nothing of the host.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest component text kept, in bytes (a step detail, a log line, a reason).
pub const MAX_TEXT: usize = 4096;

/// Whether `c` must not reach a terminal or a log as itself: C0 and C1 controls
/// (ESC, CR, LF, BS, TAB, DEL, CSI...), and the Unicode format characters that
/// reorder or hide text (bidi embeddings, overrides and isolates, zero-width
/// characters, the byte-order mark, tag characters).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// `s` with every unsafe character written as a visible escape (`\u{1b}`).
/// Idempotent: the escapes themselves are printable.
pub fn escape(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` appended when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What was cut from a string: its original length and digest, so the whole can
/// still be matched against a copy kept elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Cut {
    pub bytes: usize,
    pub sha256: String,
}

/// `s` escaped and bounded to `max` bytes; `Some(Cut)` when it was longer.
pub fn bounded(s: &str, max: usize) -> (String, Option<Cut>) {
    let escaped = escape(s);
    if escaped.len() <= max {
        return (escaped, None);
    }
    let digest: String = Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        cut(&escaped, max),
        Some(Cut {
            bytes: s.len(),
            sha256: digest,
        }),
    )
}

/// A string a component supplied, escaped and bounded ([`MAX_TEXT`]) when it
/// entered the host. Shown as it is: it can no longer act on a terminal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ComponentText(String);

impl ComponentText {
    pub fn new(raw: &str) -> Self {
        Self::with_limit(raw, MAX_TEXT)
    }

    /// Escaped, and cut at `max` bytes instead of [`MAX_TEXT`].
    pub fn with_limit(raw: &str, max: usize) -> Self {
        ComponentText(cut(&escape(raw), max))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl From<&str> for ComponentText {
    fn from(raw: &str) -> Self {
        ComponentText::new(raw)
    }
}

impl From<String> for ComponentText {
    fn from(raw: String) -> Self {
        ComponentText::new(&raw)
    }
}

impl fmt::Display for ComponentText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for ComponentText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ComponentText {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ComponentText {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ComponentText {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_become_visible_escapes() {
        assert_eq!(escape("plain: ok (1/2) ✓"), "plain: ok (1/2) ✓");
        assert_eq!(escape("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(
            escape("a\r\n✓ verify-activated done\u{8}"),
            "a\\u{d}\\u{a}✓ verify-activated done\\u{8}"
        );
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m", "C1 CSI");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed", "bidi override");
        assert_eq!(
            escape("\u{200b}\u{2066}\u{feff}"),
            "\\u{200b}\\u{2066}\\u{feff}"
        );
        assert_eq!(escape("\u{7f}\t"), "\\u{7f}\\u{9}");
        let once = escape("\u{1b}]0;title\u{7}");
        assert_eq!(escape(&once), once, "idempotent");
        assert!(!once.chars().any(is_unsafe));
    }

    #[test]
    fn long_text_is_cut_with_its_length_and_digest() {
        let long = "é".repeat(3000);
        let (kept, cut) = bounded(&long, 1001);
        assert!(kept.len() <= 1001 + '…'.len_utf8(), "{}", kept.len());
        assert!(kept.ends_with('…'));
        let cut = cut.unwrap();
        assert_eq!(cut.bytes, 6000);
        assert_eq!(cut.sha256.len(), 64);
        assert_eq!(bounded("short", 10), ("short".to_string(), None));
        assert_eq!(
            ComponentText::new(&"x".repeat(MAX_TEXT + 10)).len(),
            MAX_TEXT + 3
        );
    }
}
