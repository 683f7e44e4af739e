//! Internal errors: bugs in kestrel, as opposed to bad input. They exit with their own status
//! (70) and a panic prints one line instead of the default message and backtrace, which would
//! read as if the user had done something wrong.

use std::fmt;
use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};

/// A broken invariant found without a panic, e.g. the optimizer turning a valid graph into an
/// invalid one. Wrap the underlying error with `.context(Internal::context(..))`;
/// [`crate::exit_status`] finds it under any further context.
#[derive(Debug)]
pub struct Internal(String);

impl Internal {
    pub fn context(message: impl Into<String>) -> Internal {
        Internal(message.into())
    }
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "internal error (a bug in kestrel, not in the input): {}",
            self.0
        )
    }
}

impl std::error::Error for Internal {}

/// Replaces the default panic message with one line on standard error. Only the first panic
/// is reported: a panic on a worker thread is resumed on the main thread without the hook.
/// `RUST_BACKTRACE=1` still adds the backtrace, for whoever debugs the bug.
pub fn install_panic_hook() {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    std::panic::set_hook(Box::new(|info: &PanicHookInfo<'_>| {
        if REPORTED.swap(true, Ordering::SeqCst) {
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal error (a bug in kestrel, not in the input; please report it): \
             {message}{place}"
        );
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

/// `KESTREL_INJECT_PANIC=1` makes the command panic before it starts, so the tests can check
/// how a bug is reported without one.
pub fn injected_panic() {
    if std::env::var_os("KESTREL_INJECT_PANIC").is_some_and(|v| v == "1") {
        panic!("panic injected by KESTREL_INJECT_PANIC");
    }
}
