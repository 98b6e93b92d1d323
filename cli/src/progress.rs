//! Progress on standard error (docs/design.md §7): an `indicatif` bar when standard
//! error is a terminal, nothing otherwise. `DARTEMU_PROGRESS` overrides the
//! choice: `always` draws the bar even when standard error is piped (the
//! tests use it), `never` draws nothing, `auto` (or unset) decides by the
//! terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use std::io::{IsTerminal, Write};

/// The environment variable that forces progress on or off.
pub const ENV: &str = "DARTEMU_PROGRESS";

/// When to draw progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// When standard error is a terminal (the default).
    Auto,
    /// Always (standard error gets the bar's escape sequences even when piped).
    Always,
    /// Never.
    Never,
}

/// `DARTEMU_PROGRESS` was set to something other than `auto`, `always` or `never`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ENV}={0:?}: expected auto, always or never")]
pub struct BadMode(pub String);

impl Mode {
    /// Reads [`ENV`]; unset or empty is [`Mode::Auto`].
    pub fn from_env() -> Result<Mode, BadMode> {
        match std::env::var(ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Mode::Auto),
            Err(std::env::VarError::NotUnicode(v)) => Err(BadMode(v.to_string_lossy().into_owned())),
            Ok(v) => match v.as_str() {
                "" | "auto" => Ok(Mode::Auto),
                "always" => Ok(Mode::Always),
                "never" => Ok(Mode::Never),
                _ => Err(BadMode(v)),
            },
        }
    }

    /// Whether a bar is drawn.
    pub fn enabled(self) -> bool {
        match self {
            Mode::Auto => std::io::stderr().is_terminal(),
            Mode::Always => true,
            Mode::Never => false,
        }
    }

    /// A bar of `len` steps drawn with `template` (indicatif's syntax), or a
    /// hidden one when progress is off.
    pub fn bar(self, len: u64, template: &str) -> ProgressBar {
        if !self.enabled() {
            return ProgressBar::hidden();
        }
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            // indicatif draws nothing on a piped `stderr()` target: write the
            // same escape sequences to the pipe ourselves.
            ProgressDrawTarget::term_like(Box::new(PipedStderr))
        };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::with_draw_target(Some(len), target).with_style(style)
    }
}

/// Standard error as an ANSI terminal of 100 columns, for [`Mode::Always`].
#[derive(Debug)]
struct PipedStderr;

impl PipedStderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }
}

impl TermLike for PipedStderr {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}A"))?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}B"))?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}C"))?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.put(&format!("\x1b[{n}D"))?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        self.put("\r\x1b[2K")
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
