//! Self-extension: when work recurs, the model writes a program, the deterministic plane proves
//! it on held-out instances in the sandbox, and the kernel keeps it as a learned primitive that
//! answers with zero model tokens.
//!
//! [`synthesis`] builds the prompt and takes the program out of the reply; [`pipeline`] admits or
//! refuses a program (every verdict a ledger entry) and runs the attempt loop; [`registry`]
//! stores admitted programs, re-checks them before serving them, and installs them in a
//! scheduler. [`escalate`] is the escalation ladder: greedy, diverse samples, repairs, research,
//! then an honest abstention, every rung judged by the same pipeline.

pub mod escalate;
pub mod pipeline;
pub mod registry;
pub mod synthesis;

pub use pipeline::{
    Admission, AttemptRecord, LearnConfig, LearnError, LearnEvent, LearnOutcome, Provenance,
    Purpose, RefusalReason, admit, gate_config, learn, record_admission,
};
pub use registry::{
    PrimitiveRecord, PrimitiveRegistry, Recheck, RefusedPrimitive, RegateWith, RegistryError,
    ReloadReport, VerifiedPrimitive, install,
};
pub use synthesis::{ExtractError, auto_import, extract_code, prompt};
