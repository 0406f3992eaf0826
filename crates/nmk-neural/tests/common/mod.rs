//! Helpers shared by the engine tests.
#![allow(dead_code)]

pub mod reference;
