//! Ctrl-C in `nmk chat`: during a generation it cuts the answer at the next token (the model
//! lane then reports it cancelled and the commit trap does not judge a cut answer); anywhere
//! else it ends the process with status 130, as an unhandled Ctrl-C would. Owns only the
//! signal listener and two flags; it never touches the kernel, the model or the terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The shell's status for a process ended by SIGINT (128 + 2).
const INTERRUPTED_STATUS: i32 = 130;

/// Shared between the chat loop and the signal listener.
#[derive(Debug, Default)]
pub struct Interrupt {
    generating: AtomicBool,
    cut: AtomicBool,
}

impl Interrupt {
    /// Starts listening for Ctrl-C on its own thread. When the listener cannot start, Ctrl-C
    /// keeps its default meaning (the process ends), which is also acceptable mid-answer.
    pub fn install() -> Arc<Interrupt> {
        let state = Arc::new(Interrupt::default());
        let listener = Arc::clone(&state);
        let started = std::thread::Builder::new()
            .name("nmk-chat-ctrl-c".into())
            .spawn(move || listener.listen());
        if let Err(e) = started {
            tracing::warn!("Ctrl-C will end the process at once: {e}");
        }
        state
    }

    fn listen(&self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("Ctrl-C will end the process at once: {e}");
                return;
            }
        };
        runtime.block_on(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                if self.generating.load(Ordering::SeqCst) {
                    self.cut.store(true, Ordering::SeqCst);
                } else {
                    std::process::exit(INTERRUPTED_STATUS);
                }
            }
        });
    }

    /// Marks a generation as running (a Ctrl-C now cuts it) and clears an earlier cut.
    pub fn start_generation(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.generating.store(true, Ordering::SeqCst);
    }

    /// Marks the generation as over (a Ctrl-C now ends the process).
    pub fn end_generation(&self) {
        self.generating.store(false, Ordering::SeqCst);
    }

    /// Whether Ctrl-C asked to cut the running generation.
    pub fn cut_requested(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}
