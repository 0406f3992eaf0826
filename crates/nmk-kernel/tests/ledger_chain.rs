//! Unit-level behaviour of the hash-chained proof ledger (spec §3.9, defect D1).
//!
//! Checks that the seal binds every field of a record (changing any one changes the entry hash),
//! that sealing reads no clock, that entries chain from `ContentHash::ZERO`, how the verifier
//! treats an empty ledger and a known head that is missing or rewritten, and — as property
//! tests over the JSONL export of random ledgers — that any single-byte substitution, deleted
//! line, swapped pair of lines, duplicated line or foreign sealed entry is detected, while an
//! untouched export verifies to the ledger's own head.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use nmk_det::{ContentHash, ValidationLevel, Value, hash_value};
use nmk_kernel::Verification;
use nmk_kernel::ledger::{
    Action, Head, Ledger, LedgerEntry, LedgerRecord, ModelBinding, Problem, ValidatorId,
    verify_jsonl,
};
use nmk_kernel::store::Durability;
use proptest::prelude::*;

fn h(tag: &str) -> ContentHash {
    hash_value(&Value::str(tag))
}

fn base_record() -> LedgerRecord {
    LedgerRecord {
        opcode: "solve".into(),
        op_version: "tg1".into(),
        inputs: BTreeMap::from([
            ("prompt".to_string(), h("prompt")),
            ("dep:a".to_string(), h("dep a value")),
        ]),
        result: h("result"),
        contract: h("contract"),
        validator: Some(ValidatorId::new("solve_ok", "1")),
        level: ValidationLevel::Oracle,
        verification: Verification::Verified,
        action: Action::Pass,
        logical_time: 7,
        model: Some(ModelBinding {
            model: h("model"),
            tokenizer: h("tokenizer"),
            policy: h("policy"),
        }),
        detail: Value::map([("reason", Value::str("ok")), ("n", Value::int(3))]),
    }
}

fn seal(record: LedgerRecord) -> ContentHash {
    LedgerEntry::seal(4, h("prev"), record).hash
}

#[test]
fn the_seal_binds_every_field() {
    let base = base_record();
    let mut variants: Vec<(&str, LedgerRecord)> = Vec::new();
    let mut add = |name, f: &dyn Fn(&mut LedgerRecord)| {
        let mut r = base_record();
        f(&mut r);
        assert_ne!(r, base, "variant {name} must differ from the base record");
        variants.push((name, r));
    };
    add("opcode", &|r| r.opcode = "solvf".into());
    add("op_version", &|r| r.op_version = "tg2".into());
    add("input hash", &|r| {
        r.inputs.insert("prompt".into(), h("other prompt"));
    });
    add("second input hash", &|r| {
        r.inputs.insert("dep:a".into(), h("other dep"));
    });
    add("input name", &|r| {
        let v = r.inputs.remove("dep:a").unwrap();
        r.inputs.insert("dep:b".into(), v);
    });
    add("extra input", &|r| {
        r.inputs.insert("dep:c".into(), h("c"));
    });
    add("dropped input", &|r| {
        r.inputs.remove("dep:a");
    });
    add("result", &|r| r.result = h("other result"));
    add("contract", &|r| r.contract = h("other contract"));
    add("validator name", &|r| {
        r.validator = Some(ValidatorId::new("solve_ok2", "1"));
    });
    add("validator version", &|r| {
        r.validator = Some(ValidatorId::new("solve_ok", "2"));
    });
    add("no validator", &|r| r.validator = None);
    add("level", &|r| r.level = ValidationLevel::Proven);
    add("verification", &|r| {
        r.verification = Verification::Validated
    });
    add("action", &|r| r.action = Action::Commit);
    add("logical time", &|r| r.logical_time = 8);
    add("no model", &|r| r.model = None);
    add("model hash", &|r| {
        r.model.as_mut().unwrap().model = h("other model")
    });
    add("tokenizer hash", &|r| {
        r.model.as_mut().unwrap().tokenizer = h("other tokenizer");
    });
    add("policy hash", &|r| {
        r.model.as_mut().unwrap().policy = h("other policy")
    });
    add("detail value", &|r| {
        r.detail = Value::map([("reason", Value::str("ok")), ("n", Value::int(4))]);
    });
    add("detail type", &|r| {
        r.detail = Value::map([("reason", Value::str("ok")), ("n", Value::str("3"))]);
    });
    add("detail null", &|r| r.detail = Value::Null);

    let base_hash = seal(base.clone());
    assert_eq!(base_hash, seal(base.clone()), "sealing is deterministic");
    let mut seen = BTreeMap::from([(base_hash, "base")]);
    for (name, record) in variants {
        let hash = seal(record);
        if let Some(other) = seen.insert(hash, name) {
            panic!("changing {name} gives the same entry hash as {other}");
        }
    }
    // Position and link are bound too.
    let at = |seq, prev| LedgerEntry::seal(seq, prev, base.clone()).hash;
    assert_ne!(at(4, h("prev")), at(5, h("prev")), "seq is bound");
    assert_ne!(at(4, h("prev")), at(4, h("prev2")), "prev is bound");
}

#[test]
fn a_sealed_entry_round_trips_through_its_canonical_text() {
    let entry = LedgerEntry::seal(3, h("p"), base_record());
    assert!(entry.seal_holds());
    let text = entry.to_canonical();
    let back = LedgerEntry::from_canonical(&text).unwrap();
    assert_eq!(back, entry);
    assert!(back.seal_holds());
    let mut forged = back.clone();
    forged.record.level = ValidationLevel::Proven;
    assert!(!forged.seal_holds(), "an edited field breaks the seal");
}

#[test]
fn identical_records_give_identical_hashes_on_fresh_ledgers_without_a_clock() {
    let records: Vec<LedgerRecord> = (0..5)
        .map(|i| {
            let mut r = base_record();
            r.logical_time = i;
            r.detail = Value::map([("i", Value::int(i))]);
            r
        })
        .collect();
    let a = Ledger::in_memory();
    let first: Vec<ContentHash> = records
        .iter()
        .map(|r| a.append(r.clone()).unwrap().hash)
        .collect();
    // Let the wall clock move on; a ledger that read it would now seal differently.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = Ledger::in_memory();
    let dir = tempfile::tempdir().unwrap();
    let c = Ledger::open(&dir.path().join("l.sqlite"), Durability::Process).unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            b.append(r.clone()).unwrap().hash,
            first[i],
            "memory entry {i}"
        );
        assert_eq!(
            c.append(r.clone()).unwrap().hash,
            first[i],
            "sqlite entry {i}"
        );
    }
    assert_eq!(a.head().unwrap(), b.head().unwrap());
    assert_eq!(a.head().unwrap(), c.head().unwrap());
}

#[test]
fn entries_chain_from_the_zero_hash() {
    let ledger = Ledger::in_memory();
    assert!(ledger.is_empty().unwrap());
    assert_eq!(ledger.head().unwrap(), None);
    let mut appended = Vec::new();
    for i in 0..6 {
        let mut r = base_record();
        r.logical_time = i;
        appended.push(ledger.append(r).unwrap());
    }
    assert_eq!(appended[0].seq, 0);
    assert_eq!(appended[0].prev, ContentHash::ZERO);
    for pair in appended.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(
            pair[1].prev, pair[0].hash,
            "entry {} links back",
            pair[1].seq
        );
        assert_ne!(pair[1].hash, pair[0].hash);
    }
    assert_eq!(ledger.len().unwrap(), 6);
    assert_eq!(ledger.head().unwrap(), Some(appended[5].head()));
    assert_eq!(ledger.entries(0, 100).unwrap(), appended);
    assert_eq!(ledger.entries(2, 3).unwrap(), appended[2..5].to_vec());
    assert_eq!(ledger.entries(6, 3).unwrap(), Vec::new());
    let report = ledger.verify(Some(appended[5].head())).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 6);
    assert_eq!(report.head, Some(appended[5].head()));
    // An older trusted head still verifies: the chain only grew since.
    assert!(ledger.verify(Some(appended[2].head())).unwrap().ok());
}

#[test]
fn an_empty_ledger_verifies() {
    let ledger = Ledger::in_memory();
    let report = ledger.verify(None).unwrap();
    assert!(report.ok());
    assert_eq!(report.entries, 0);
    assert_eq!(report.head, None);
    let mut out = Vec::new();
    assert_eq!(ledger.export_jsonl(&mut out).unwrap(), 0);
    assert!(out.is_empty());
    let report = verify_jsonl(&out[..], None).unwrap();
    assert!(report.ok());
    assert_eq!(report.entries, 0);
}

#[test]
fn a_known_head_beyond_the_end_is_a_truncation() {
    let ledger = Ledger::in_memory();
    let known = Head {
        seq: 0,
        hash: h("x"),
    };
    let report = ledger.verify(Some(known)).unwrap();
    assert_eq!(
        report.problems,
        vec![Problem::Truncated {
            head_seq: 0,
            entries: 0
        }]
    );
    for i in 0..3 {
        let mut r = base_record();
        r.logical_time = i;
        ledger.append(r).unwrap();
    }
    let head = ledger.head().unwrap().unwrap();
    let beyond = Head {
        seq: head.seq + 2,
        hash: head.hash,
    };
    let report = ledger.verify(Some(beyond)).unwrap();
    assert!(!report.ok());
    assert_eq!(
        report.problems,
        vec![Problem::Truncated {
            head_seq: 4,
            entries: 3
        }]
    );
}

#[test]
fn a_known_head_with_another_hash_is_a_mismatch() {
    let ledger = Ledger::in_memory();
    for i in 0..3 {
        let mut r = base_record();
        r.logical_time = i;
        ledger.append(r).unwrap();
    }
    for seq in 0..3 {
        let rewritten = Head {
            seq,
            hash: h("rewritten"),
        };
        let report = ledger.verify(Some(rewritten)).unwrap();
        assert_eq!(report.problems, vec![Problem::HeadMismatch { seq }]);
    }
    // The same through the export.
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).unwrap();
    let rewritten = Head {
        seq: 1,
        hash: h("rewritten"),
    };
    let report = verify_jsonl(&out[..], Some(rewritten)).unwrap();
    assert_eq!(report.problems, vec![Problem::HeadMismatch { seq: 1 }]);
}

// ---- property tests over the JSONL export -------------------------------------------------

fn any_string(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        // Any Unicode scalar, control characters, quotes and backslashes included.
        prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter),
        "[a-z_$\"\\\\é€😀]{0,8}",
    ]
}

fn any_detail() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::int),
        any_string(10).prop_map(Value::Str),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            prop::collection::btree_map(any_string(6), inner, 0..4).prop_map(Value::Map),
        ]
    })
}

const LEVELS: [ValidationLevel; 6] = [
    ValidationLevel::None,
    ValidationLevel::Syntax,
    ValidationLevel::Schema,
    ValidationLevel::Property,
    ValidationLevel::Oracle,
    ValidationLevel::Proven,
];
const VERIFICATIONS: [Verification; 5] = [
    Verification::Verified,
    Verification::Validated,
    Verification::Checked,
    Verification::Judgment,
    Verification::Unverified,
];
const ACTIONS: [Action; 8] = [
    Action::Emit,
    Action::Repair,
    Action::Bail,
    Action::Reject,
    Action::Pass,
    Action::Fail,
    Action::Commit,
    Action::Abort,
];

fn any_hash() -> impl Strategy<Value = ContentHash> {
    any::<[u8; 32]>().prop_map(ContentHash)
}

fn any_record() -> impl Strategy<Value = LedgerRecord> {
    (
        (any_string(12), any_string(4)),
        prop::collection::btree_map(any_string(6), any_hash(), 0..4),
        (any_hash(), any_hash()),
        prop::option::of((any_string(8), any_string(3))),
        (0..LEVELS.len(), 0..VERIFICATIONS.len(), 0..ACTIONS.len()),
        any::<u64>(),
        prop::option::of((any_hash(), any_hash(), any_hash())),
        any_detail(),
    )
        .prop_map(
            |((opcode, op_version), inputs, (result, contract), validator, (l, v, a), t, m, d)| {
                LedgerRecord {
                    opcode,
                    op_version,
                    inputs,
                    result,
                    contract,
                    validator: validator.map(|(n, ver)| ValidatorId::new(n, ver)),
                    level: LEVELS[l],
                    verification: VERIFICATIONS[v],
                    action: ACTIONS[a],
                    logical_time: t,
                    model: m.map(|(model, tokenizer, policy)| ModelBinding {
                        model,
                        tokenizer,
                        policy,
                    }),
                    detail: d,
                }
            },
        )
}

/// A ledger of 2..12 random records and its JSONL export, split into lines (without `\n`).
struct Exported {
    ledger: Ledger,
    bytes: Vec<u8>,
    lines: Vec<Vec<u8>>,
}

fn export(records: &[LedgerRecord]) -> Exported {
    let ledger = Ledger::in_memory();
    for r in records {
        ledger.append(r.clone()).unwrap();
    }
    let mut bytes = Vec::new();
    let n = ledger.export_jsonl(&mut bytes).unwrap();
    assert_eq!(n, records.len() as u64);
    let lines: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>();
    // The export ends with a newline, so the split yields one empty tail.
    assert_eq!(lines.last().map(Vec::len), Some(0));
    let lines = lines[..lines.len() - 1].to_vec();
    assert_eq!(lines.len(), records.len());
    Exported {
        ledger,
        bytes,
        lines,
    }
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn records() -> impl Strategy<Value = Vec<LedgerRecord>> {
    prop::collection::vec(any_record(), 2..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// (e) An untouched export verifies, and its head is the ledger's head.
    #[test]
    fn untouched_export_verifies(records in records()) {
        let ex = export(&records);
        let head = ex.ledger.head().unwrap();
        let report = verify_jsonl(&ex.bytes[..], head).unwrap();
        prop_assert!(report.ok(), "{:?}", report.problems);
        prop_assert_eq!(report.head, head);
        prop_assert_eq!(report.entries, records.len() as u64);
        let direct = ex.ledger.verify(head).unwrap();
        prop_assert!(direct.ok());
        // Every line is exactly the canonical text of the stored entry.
        let entries = ex.ledger.entries(0, usize::MAX).unwrap();
        for (line, entry) in ex.lines.iter().zip(&entries) {
            let text = entry.to_canonical();
            prop_assert_eq!(line.as_slice(), text.as_bytes());
            prop_assert_eq!(&LedgerEntry::from_canonical(&text).unwrap(), entry);
        }
    }

    /// (a) Any single-byte substitution anywhere in the export is detected.
    #[test]
    fn any_byte_substitution_is_detected(
        records in records(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let ex = export(&records);
        let mut bytes = ex.bytes.clone();
        let i = at.index(bytes.len());
        let new = bytes[i].wrapping_add(delta);
        bytes[i] = new;
        let head = ex.ledger.head().unwrap();
        for known in [None, head] {
            let report = verify_jsonl(&bytes[..], known).unwrap();
            prop_assert!(
                !report.ok(),
                "byte {} changed {:#04x} -> {:#04x} undetected (known head: {})",
                i, ex.bytes[i], new, known.is_some()
            );
        }
    }

    /// (b) Deleting any one line is detected; the last line only against the known head.
    #[test]
    fn deleting_a_line_is_detected(records in records(), which in any::<prop::sample::Index>()) {
        let ex = export(&records);
        let k = which.index(ex.lines.len());
        let mut lines = ex.lines.clone();
        lines.remove(k);
        let head = ex.ledger.head().unwrap().unwrap();
        let bytes = join(&lines);
        if k == lines.len() {
            // The last line: the remaining prefix is a sound chain on its own ...
            prop_assert!(verify_jsonl(&bytes[..], None).unwrap().ok());
            // ... which only the head the reader trusted exposes.
            let report = verify_jsonl(&bytes[..], Some(head)).unwrap();
            prop_assert_eq!(
                report.problems,
                vec![Problem::Truncated { head_seq: head.seq, entries: head.seq }]
            );
        } else {
            let report = verify_jsonl(&bytes[..], None).unwrap();
            prop_assert!(!report.ok());
            prop_assert!(report.problems.iter().any(|p| matches!(
                p,
                Problem::OutOfSequence { expected, found } if *expected == k as u64 && *found == k as u64 + 1
            )), "{:?}", report.problems);
            prop_assert!(!verify_jsonl(&bytes[..], Some(head)).unwrap().ok());
        }
    }

    /// (c) Swapping any two distinct lines is detected.
    #[test]
    fn swapping_two_lines_is_detected(
        records in records(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let ex = export(&records);
        let n = ex.lines.len();
        let i = a.index(n);
        let j = (i + 1 + b.index(n - 1)) % n;
        prop_assert_ne!(i, j);
        let mut lines = ex.lines.clone();
        lines.swap(i, j);
        let report = verify_jsonl(&join(&lines)[..], None).unwrap();
        prop_assert!(!report.ok());
        prop_assert!(
            report.problems.iter().any(|p| matches!(p, Problem::OutOfSequence { .. })),
            "{:?}", report.problems
        );
    }

    /// (d) Inserting a copy of a line, or a foreign validly-sealed entry, is detected.
    #[test]
    fn inserting_a_line_is_detected(
        records in records(),
        foreign_records in records(),
        which in any::<prop::sample::Index>(),
        pos in any::<prop::sample::Index>(),
        foreign in any::<bool>(),
    ) {
        let ex = export(&records);
        let n = ex.lines.len();
        let inserted = if foreign {
            // A ledger that shares no entry with ours: its opcodes are marked.
            let other: Vec<LedgerRecord> = foreign_records
                .into_iter()
                .map(|mut r| {
                    r.opcode.insert_str(0, "foreign:");
                    r
                })
                .collect();
            let fx = export(&other);
            let line = fx.lines[which.index(fx.lines.len())].clone();
            let entry = LedgerEntry::from_canonical(std::str::from_utf8(&line).unwrap()).unwrap();
            prop_assert!(entry.seal_holds(), "the foreign entry is validly sealed");
            line
        } else {
            ex.lines[which.index(n)].clone()
        };
        let p = pos.index(n + 1);
        let mut lines = ex.lines.clone();
        lines.insert(p, inserted);
        let head = ex.ledger.head().unwrap();
        for known in [None, head] {
            let report = verify_jsonl(&join(&lines)[..], known).unwrap();
            prop_assert!(
                !report.ok(),
                "inserted {} line at {} of {} undetected", if foreign { "foreign" } else { "copied" }, p, n
            );
        }
    }
}

#[test]
fn invalid_utf8_in_an_export_is_reported_not_a_panic() {
    let ledger = Ledger::in_memory();
    let mut r = base_record();
    r.opcode = "é".into();
    ledger.append(r.clone()).unwrap();
    ledger.append(r).unwrap();
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).unwrap();
    let at = out.iter().position(|&b| b == 0xc3).unwrap();
    out[at] = 0xff;
    let report = verify_jsonl(&out[..], None).unwrap();
    assert!(
        matches!(
            report.problems.first(),
            Some(Problem::Malformed { index: 0, .. })
        ),
        "{:?}",
        report.problems
    );
}

#[test]
fn distinct_lines_in_an_export_are_all_distinct_entries() {
    // Guard for the swap property: every pair of lines differs, so a swap is a real change.
    let ledger = Ledger::in_memory();
    for _ in 0..4 {
        ledger.append(base_record()).unwrap();
    }
    let mut out = Vec::new();
    ledger.export_jsonl(&mut out).unwrap();
    let lines: BTreeSet<&[u8]> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 4);
}

/// Regression: a level name whose letter case was changed is an edit, not the same entry.
#[test]
fn a_case_flipped_level_name_is_detected() {
    let ledger = Ledger::in_memory();
    ledger
        .append(LedgerRecord {
            logical_time: 1,
            ..base_record()
        })
        .unwrap();
    let mut buf = Vec::new();
    ledger.export_jsonl(&mut buf).unwrap();
    let text = String::from_utf8(buf)
        .unwrap()
        .replacen("\"ORACLE\"", "\"oRACLE\"", 1);
    assert!(!verify_jsonl(text.as_bytes(), None).unwrap().ok());
}

/// Regression: logical times beyond `i64::MAX` round-trip instead of bricking the ledger.
#[test]
fn logical_times_up_to_u64_max_round_trip() {
    let ledger = Ledger::in_memory();
    ledger
        .append(LedgerRecord {
            logical_time: u64::MAX,
            ..base_record()
        })
        .unwrap();
    ledger
        .append(LedgerRecord {
            logical_time: 1,
            ..base_record()
        })
        .unwrap();
    assert!(ledger.verify(None).unwrap().ok());
    assert_eq!(
        ledger.entries(0, 10).unwrap()[0].record.logical_time,
        u64::MAX
    );
}
