//! # nmk-kernel — the scheduler plane
//!
//! The dispatcher and sole commit path. It owns admission (fail-closed), capabilities, budgets,
//! the task graph and its run loop, the commit trap, the event trace and its checker, the
//! hash-chained proof ledger with its SQLite store, the per-token output gate, dynamic k and the
//! cost model, the router (with the disposal of an entry-trap head's proposal), the governed
//! fact loop, the memory store it consults before every task, the orchestrator and delegation,
//! and self-extension.
//!
//! What it may not touch: correctness. It never judges a result itself; every verdict comes from
//! a validator registered with it, or from `nmk-det`, and is written to the ledger with that
//! validator's identity. It reaches a model only through its own `Proposer` trait, implemented
//! by the binary; it does not depend on `nmk-neural`.

pub mod admission;
pub mod artifact;
pub mod budget;
pub mod capability;
pub mod commit_trap;
pub mod delegation;
pub mod fact_loop;
pub mod k_policy;
pub mod learn;
pub mod ledger;
pub mod memory;
pub mod ops;
pub mod orchestrator;
pub mod output_gate;
pub mod plan;
pub mod proposer;
pub mod research;
pub mod router;
pub mod scheduler;
pub mod store;
pub mod task;
pub mod tools;
pub mod trace;
pub mod verification;

pub use admission::Reject;
pub use ledger::{
    Action, Head, Ledger, LedgerEntry, LedgerError, LedgerRecord, ValidatorId, VerifyReport,
};
pub use scheduler::{RunSummary, Scheduler, SchedulerError};
pub use store::Durability;
pub use task::{Task, TaskSpec, TaskStatus};
pub use verification::Verification;
