//! Writing to stdout without panicking on a closed pipe: `marketplace-operator crd | head -1`
//! must end quietly, as Unix tools do, not with a backtrace.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A reader that went away (EPIPE) is not an error; anything else
/// (a full disk behind a redirect) is.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Progress for a person: one line, and nothing if stdout is gone.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// `println!` that neither panics on a closed pipe nor fails the command.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::output::line(&format!($($arg)*)) };
}
