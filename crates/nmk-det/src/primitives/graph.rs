//! `shortest_path` on a small directed graph with non-negative integer weights.
//!
//! Edges are directed `(from, to, weight)` triples (a tuple or a list of three integers); an
//! undirected edge is two triples. Self-loops and parallel edges are allowed. Weights are capped at
//! 10**12 and nodes at 10_000, so no path sum can come near `i64::MAX` (10**12 * 10**4 = 10**16);
//! sums are still checked.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::PrimitiveError;
use super::args::{arity, int, int_value, invalid, out_of_range, seq_capped, too_large};
use crate::gate::Rng;
use crate::value::Value;

/// The most nodes a graph may have.
pub const MAX_NODES: i64 = 10_000;
/// The most edges a graph may have.
pub const MAX_EDGES: usize = 100_000;
/// The largest edge weight.
pub const MAX_WEIGHT: i64 = 1_000_000_000_000;

/// A validated instance: node count, edges, source, destination.
struct Instance {
    n: usize,
    edges: Vec<(usize, usize, u64)>,
    src: usize,
    dst: usize,
}

fn node(v: i64, n: i64, param: &'static str) -> Result<usize, PrimitiveError> {
    if (0..n).contains(&v) {
        usize::try_from(v).map_err(|_| out_of_range(param, "not a node"))
    } else {
        Err(out_of_range(param, format!("node {v} is not in 0..{n}")))
    }
}

fn parse(args: &[Value]) -> Result<Instance, PrimitiveError> {
    arity(args, 4)?;
    let n = int(args, 0, "n")?;
    if n < 1 {
        return Err(out_of_range("n", "a graph needs at least one node"));
    }
    if n > MAX_NODES {
        return Err(too_large("n", n as usize, MAX_NODES as usize));
    }
    let raw = seq_capped(args, 1, "edges", MAX_EDGES)?;
    let mut edges = Vec::with_capacity(raw.len());
    for e in raw {
        // Sets are refused: their order is canonical, not the caller's, so (from, to) would blur.
        let triple = match e {
            Value::List(items) | Value::Tuple(items) => items.as_slice(),
            other => {
                return Err(PrimitiveError::Type {
                    param: "edges",
                    expected: "tuple",
                    got: other.type_name(),
                });
            }
        };
        let [from, to, weight] = triple else {
            return Err(invalid("edges", "every edge is (from, to, weight)"));
        };
        let from = node(int_value(from, "edges")?, n, "edges")?;
        let to = node(int_value(to, "edges")?, n, "edges")?;
        let weight = int_value(weight, "edges")?;
        if !(0..=MAX_WEIGHT).contains(&weight) {
            return Err(out_of_range(
                "edges",
                format!("weight {weight} is not in 0..=10**12"),
            ));
        }
        edges.push((from, to, weight as u64));
    }
    let src = node(int(args, 2, "src")?, n, "src")?;
    let dst = node(int(args, 3, "dst")?, n, "dst")?;
    Ok(Instance {
        n: n as usize,
        edges,
        src,
        dst,
    })
}

fn distance_value(d: Option<u64>) -> Value {
    d.map_or(Value::Null, Value::int)
}

/// `shortest_path(n, edges, src, dst) -> int | None`: Dijkstra with a binary heap, stopping as
/// soon as `dst` is settled. O((n + m) log n).
pub fn shortest_path(args: &[Value]) -> Result<Value, PrimitiveError> {
    let g = parse(args)?;
    let mut adjacency: Vec<Vec<(usize, u64)>> = vec![Vec::new(); g.n];
    for &(from, to, w) in &g.edges {
        if let Some(out) = adjacency.get_mut(from) {
            out.push((to, w));
        }
    }
    let mut best: Vec<Option<u64>> = vec![None; g.n];
    let mut heap = BinaryHeap::new();
    if let Some(slot) = best.get_mut(g.src) {
        *slot = Some(0);
    }
    heap.push(Reverse((0u64, g.src)));
    while let Some(Reverse((d, u))) = heap.pop() {
        if u == g.dst {
            return Ok(Value::int(d));
        }
        if best.get(u).copied().flatten() != Some(d) {
            continue; // A stale entry: u was already reached more cheaply.
        }
        for &(v, w) in adjacency.get(u).map(Vec::as_slice).unwrap_or(&[]) {
            let Some(candidate) = d.checked_add(w) else {
                continue;
            };
            if let Some(slot) = best.get_mut(v)
                && slot.is_none_or(|old| candidate < old)
            {
                *slot = Some(candidate);
                heap.push(Reverse((candidate, v)));
            }
        }
    }
    Ok(Value::Null)
}

/// Oracle for `shortest_path`: Bellman–Ford relaxation over the edge list until nothing changes
/// (at most n - 1 rounds with non-negative weights). O(n * m); only used on small graphs.
pub fn shortest_path_oracle(args: &[Value]) -> Result<Value, PrimitiveError> {
    let g = parse_oracle(args)?;
    let mut dist: Vec<Option<u64>> = (0..g.n).map(|i| (i == g.src).then_some(0)).collect();
    for _ in 0..g.n {
        let mut changed = false;
        for &(from, to, w) in &g.edges {
            let Some(Some(du)) = dist.get(from).copied() else {
                continue;
            };
            let Some(candidate) = du.checked_add(w) else {
                continue;
            };
            if let Some(dv) = dist.get_mut(to)
                && dv.is_none_or(|old| candidate < old)
            {
                *dv = Some(candidate);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(distance_value(dist.get(g.dst).copied().flatten()))
}

/// The oracle's own validation, written as straight-line checks over the raw values so that it
/// does not share the primitive's parser.
fn parse_oracle(args: &[Value]) -> Result<Instance, PrimitiveError> {
    arity(args, 4)?;
    let n = int(args, 0, "n")?;
    if !(1..=MAX_NODES).contains(&n) {
        return Err(out_of_range("n", "node count out of range"));
    }
    let in_graph = |x: i64| (0..n).contains(&x);
    let edges_value = seq_capped(args, 1, "edges", MAX_EDGES)?;
    let mut edges = Vec::new();
    for e in edges_value {
        let items = match e {
            Value::List(items) | Value::Tuple(items) => items,
            _ => return Err(invalid("edges", "edge is not a sequence")),
        };
        if items.len() != 3 {
            return Err(invalid("edges", "edge is not a triple"));
        }
        let mut nums = [0i64; 3];
        for (slot, item) in nums.iter_mut().zip(items) {
            *slot = item
                .as_i64()
                .ok_or_else(|| invalid("edges", "edge holds a non-integer"))?;
        }
        let [a, b, w] = nums;
        if !in_graph(a) || !in_graph(b) || !(0..=MAX_WEIGHT).contains(&w) {
            return Err(out_of_range("edges", "bad edge"));
        }
        edges.push((a as usize, b as usize, w as u64));
    }
    let src = int(args, 2, "src")?;
    let dst = int(args, 3, "dst")?;
    if !in_graph(src) || !in_graph(dst) {
        return Err(out_of_range("src", "endpoint outside the graph"));
    }
    Ok(Instance {
        n: n as usize,
        edges,
        src: src as usize,
        dst: dst as usize,
    })
}

/// Generator for `shortest_path`: graphs of 1–12 nodes with 0–30 edges, zero weights, self-loops,
/// parallel edges, `src == dst`, unreachable destinations (sparse graphs), the occasional huge
/// weight, and invalid instances (node outside the graph, negative weight, malformed edge,
/// empty graph) that both sides must refuse.
pub fn shortest_path_generate(rng: &mut Rng) -> Vec<Value> {
    let n = rng.range_i64(1, 12);
    let m = rng.below(31) as usize;
    let mut edges: Vec<Value> = (0..m)
        .map(|_| {
            let a = rng.range_i64(0, n - 1);
            let b = if rng.below(10) == 0 {
                a
            } else {
                rng.range_i64(0, n - 1)
            };
            let w = match rng.below(10) {
                0 => 0,
                1 => MAX_WEIGHT,
                _ => rng.range_i64(0, 20),
            };
            let triple = vec![Value::int(a), Value::int(b), Value::int(w)];
            if rng.coin() {
                Value::Tuple(triple)
            } else {
                Value::List(triple)
            }
        })
        .collect();
    let mut n_value = n;
    let mut src = rng.range_i64(0, n - 1);
    let dst = if rng.below(8) == 0 {
        src
    } else {
        rng.range_i64(0, n - 1)
    };
    match rng.below(30) {
        0 => edges.push(Value::Tuple(vec![
            Value::int(0),
            Value::int(n),
            Value::int(1),
        ])),
        1 => edges.push(Value::Tuple(vec![
            Value::int(0),
            Value::int(0),
            Value::int(-1),
        ])),
        2 => edges.push(Value::Tuple(vec![Value::int(0), Value::int(0)])),
        3 => src = n,
        4 => n_value = 0,
        5 => edges.push(Value::Tuple(vec![
            Value::int(0),
            Value::int(0),
            Value::str("1"),
        ])),
        _ => {}
    }
    vec![
        Value::int(n_value),
        Value::List(edges),
        Value::int(src),
        Value::int(dst),
    ]
}
