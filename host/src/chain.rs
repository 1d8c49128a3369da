//! An error and its sources as one line, for messages an operator reads: the
//! outer error alone ("client error (Connect)") rarely says what happened.
//! A leaf, used wherever a library error becomes a message.

/// `e` and its sources, as one line ("client error (Connect): tcp connect error:
/// Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
