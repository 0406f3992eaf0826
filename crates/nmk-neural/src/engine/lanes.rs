//! Lanes: many sessions decoded together by a fair round-robin scheduler.
//!
//! Each lane is a [`Session`] with its own generation parameters and its own
//! [`TokenGate`](super::TokenGate). A round advances every active lane by exactly one gated
//! token, in the order the lanes were added, so no lane waits more than one round however many
//! others are busy or how long their outputs are. Because every session owns its cache, PRNG
//! and hooks, and the forward is batch- and thread-invariant, a lane's tokens and logits are
//! bitwise those of the same session run alone. A lane that fails (an engine error) ends with
//! that error; the others go on.

use std::collections::VecDeque;

use super::error::EngineError;
use super::session::{GatedGeneration, GenerateParams, Session, StopReason};
use super::token_gate::{GateCounts, TokenGate};

/// A lane's handle.
pub type LaneId = u64;

/// What happened to a lane in one round.
#[derive(Debug, Clone, PartialEq)]
pub enum LaneEvent {
    /// The lane emitted a token.
    Token {
        /// The lane.
        lane: LaneId,
        /// The token.
        token: u32,
    },
    /// The lane finished (its result is waiting in [`LaneScheduler::take_finished`]).
    Finished {
        /// The lane.
        lane: LaneId,
        /// Why, or `None` when it failed with an error.
        stop: Option<StopReason>,
    },
}

/// A finished lane.
#[derive(Debug)]
pub struct FinishedLane {
    /// The lane.
    pub id: LaneId,
    /// The session, for inspection or further use.
    pub session: Session,
    /// The generation, or the error that ended it.
    pub result: Result<GatedGeneration, EngineError>,
}

struct Lane {
    id: LaneId,
    session: Session,
    params: GenerateParams,
    gate: Box<dyn TokenGate + Send>,
    tokens: Vec<u32>,
    counts: GateCounts,
    /// Why the lane ended, when it ended without a token.
    last_stop: Option<StopReason>,
}

/// The round-robin scheduler (see the module documentation).
#[derive(Default)]
pub struct LaneScheduler {
    active: VecDeque<Lane>,
    finished: Vec<FinishedLane>,
    next_id: LaneId,
    rounds: u64,
}

impl std::fmt::Debug for LaneScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneScheduler")
            .field("active", &self.active.len())
            .field("finished", &self.finished.len())
            .field("rounds", &self.rounds)
            .finish()
    }
}

impl LaneScheduler {
    /// No lanes.
    pub fn new() -> LaneScheduler {
        LaneScheduler::default()
    }

    /// Adds a lane: `session` (prefilled by the caller) generates under `params`, each token
    /// judged by `gate`. It takes part from the next round on.
    pub fn add(
        &mut self,
        session: Session,
        params: GenerateParams,
        gate: Box<dyn TokenGate + Send>,
    ) -> LaneId {
        let id = self.next_id;
        self.next_id += 1;
        self.active.push_back(Lane {
            id,
            session,
            params,
            gate,
            tokens: Vec::new(),
            counts: GateCounts::default(),
            last_stop: None,
        });
        id
    }

    /// Lanes still generating.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// Rounds run so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Advances every active lane by one gated token, in order; returns what happened.
    pub fn round(&mut self) -> Vec<LaneEvent> {
        let mut events = Vec::with_capacity(self.active.len());
        let n = self.active.len();
        for _ in 0..n {
            let Some(mut lane) = self.active.pop_front() else {
                break;
            };
            match step(&mut lane) {
                Ok(Some(token)) => {
                    events.push(LaneEvent::Token {
                        lane: lane.id,
                        token,
                    });
                    if lane.tokens.len() >= lane.params.max_tokens {
                        events.push(self.finish(lane, Ok(StopReason::MaxTokens)));
                    } else {
                        self.active.push_back(lane);
                    }
                }
                Ok(None) => {
                    // Ended without a token: the gate or a stop token ended it.
                    let stop = lane.last_stop.take().unwrap_or(StopReason::MaxTokens);
                    events.push(self.finish(lane, Ok(stop)));
                }
                Err(e) => events.push(self.finish(lane, Err(e))),
            }
        }
        self.rounds += 1;
        events
    }

    /// Runs rounds until no lane is active; returns every event in order.
    pub fn run(&mut self) -> Vec<LaneEvent> {
        let mut all = Vec::new();
        while !self.active.is_empty() {
            all.extend(self.round());
        }
        all
    }

    /// Removes and returns the finished lanes (in the order they finished).
    pub fn take_finished(&mut self) -> Vec<FinishedLane> {
        std::mem::take(&mut self.finished)
    }

    fn finish(&mut self, lane: Lane, result: Result<StopReason, EngineError>) -> LaneEvent {
        let stop = result.as_ref().ok().copied();
        let id = lane.id;
        self.finished.push(FinishedLane {
            id,
            session: lane.session,
            result: result.map(|stop| GatedGeneration {
                tokens: lane.tokens,
                stop,
                counts: lane.counts,
            }),
        });
        LaneEvent::Finished { lane: id, stop }
    }
}

/// One gated step of a lane: `Ok(Some(token))` when a token was emitted, `Ok(None)` when the
/// generation ended (the reason kept in the lane).
fn step(lane: &mut Lane) -> Result<Option<u32>, EngineError> {
    if lane.params.max_tokens == 0 {
        lane.last_stop = Some(StopReason::MaxTokens);
        return Ok(None);
    }
    // One token at a time through the same gated loop: the same operations, in the same
    // order, as one long `generate_gated` call.
    let max = lane.params.max_tokens;
    lane.params.max_tokens = 1;
    let g = lane
        .session
        .generate_gated(&lane.params, lane.gate.as_mut(), &mut |_| {});
    lane.params.max_tokens = max;
    let g = g?;
    lane.counts.accepted += g.counts.accepted;
    lane.counts.resampled += g.counts.resampled;
    match g.tokens.first() {
        Some(&t) => {
            lane.tokens.push(t);
            Ok(Some(t))
        }
        None => {
            lane.last_stop = Some(g.stop);
            Ok(None)
        }
    }
}
