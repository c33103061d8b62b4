//! The scanner agrees with the serde_json check it replaced, on documents shaped like
//! segments, on mutilated ones, and on the captured SDK datagrams.

use std::borrow::Cow;

use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::*;

/// The serde_json check the scanner replaced, kept as the reference.
fn reference(body: &str) -> Result<(), RejectReason> {
    #[derive(Deserialize)]
    struct DocumentIds<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        trace_id: Option<Cow<'a, str>>,
    }
    fn check_ids(doc: &DocumentIds) -> Result<(), RejectReason> {
        let id_ok = doc.id.as_deref().is_some_and(is_segment_id);
        let trace_ok = doc.trace_id.as_deref().is_some_and(is_trace_id);
        if id_ok && trace_ok {
            Ok(())
        } else {
            Err(RejectReason::BadIds)
        }
    }
    match body.trim_start().as_bytes().first() {
        Some(b'{') => {
            let doc: DocumentIds = serde_json::from_str(body).map_err(|_| NOT_JSON)?;
            check_ids(&doc)
        }
        Some(b'[') => {
            let docs: Vec<DocumentIds> = serde_json::from_str(body).map_err(|_| NOT_JSON)?;
            if docs.is_empty() {
                return Err(RejectReason::EmptyBody);
            }
            docs.iter().try_for_each(check_ids)
        }
        _ => Err(NOT_JSON),
    }
}

/// Where the two may differ by design: an array element that is an array (serde read it as
/// `[id, trace_id]`).
fn has_array_document(body: &str) -> bool {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Array(items)) => items.iter().any(Value::is_array),
        _ => false,
    }
}

fn agree(body: &str) -> Result<(), TestCaseError> {
    if has_array_document(body) {
        return Ok(());
    }
    prop_assert_eq!(check_body(body), reference(body), "body: {:?}", body);
    Ok(())
}

const ID: &str = "70de5b6f19ff9a0a";
const TRACE_ID: &str = "1-581cf771-a006649127e371903a2de979";

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        Just(Value::from(ID)),
        Just(Value::from(TRACE_ID)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("id".to_owned()),
        Just("trace_id".to_owned()),
        Just("name".to_owned()),
        any::<String>(),
    ]
}

/// A document: sometimes with good ids, sometimes with bad, missing or mistyped ones.
fn document() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((key(), value()), 0..5),
        prop_oneof![
            Just(Some(Value::from(ID))),
            leaf().prop_map(Some),
            Just(None)
        ],
        prop_oneof![
            Just(Some(Value::from(TRACE_ID))),
            leaf().prop_map(Some),
            Just(None)
        ],
    )
        .prop_map(|(fields, id, trace_id)| {
            let mut map: Map<String, Value> = fields.into_iter().collect();
            if let Some(id) = id {
                map.insert("id".into(), id);
            }
            if let Some(trace_id) = trace_id {
                map.insert("trace_id".into(), trace_id);
            }
            Value::Object(map)
        })
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        document().prop_map(|d| d.to_string()),
        proptest::collection::vec(document(), 0..4).prop_map(|d| Value::Array(d).to_string()),
        document().prop_map(|d| serde_json::to_string_pretty(&d).unwrap_or_default()),
        value().prop_map(|v| v.to_string()),
    ]
}

/// Bytes that matter to JSON's grammar, to break bodies with.
const GRAMMAR: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "\\u",
    "\\ud800",
    "0",
    "-",
    ".",
    "e",
    " ",
    "\u{1}",
    "null",
    "tru",
    "01",
    "1.",
    "\"id\":1,",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn agrees_on_well_formed_bodies(body in body()) {
        agree(&body)?;
    }

    #[test]
    fn agrees_on_truncated_bodies(body in body(), cut in any::<prop::sample::Index>()) {
        let mut end = cut.index(body.len() + 1);
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        agree(&body[..end])?;
    }

    #[test]
    fn agrees_on_bodies_with_grammar_inserted(
        body in body(),
        at in any::<prop::sample::Index>(),
        piece in prop::sample::select(GRAMMAR),
    ) {
        let mut at = at.index(body.len() + 1);
        while !body.is_char_boundary(at) {
            at -= 1;
        }
        let mut broken = body.clone();
        broken.insert_str(at, piece);
        agree(&broken)?;
    }

    #[test]
    fn agrees_on_any_text(text in any::<String>()) {
        agree(&text)?;
    }
}

#[test]
fn agrees_on_the_captured_sdk_datagrams() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("xray-udp-") && name.ends_with(".bin")) {
            continue;
        }
        let datagram = std::fs::read(&path).expect("fixture");
        let newline = datagram.iter().position(|&b| b == b'\n').expect("header");
        let body = std::str::from_utf8(&datagram[newline + 1..]).expect("utf-8");
        assert_eq!(check_body(body), Ok(()), "{name}");
        assert_eq!(reference(body), Ok(()), "{name}");
        seen += 1;
    }
    assert!(seen >= 3, "the captured datagrams are there");
}

#[test]
fn edge_cases_agree() {
    let cases = [
        json!({"id": ID, "trace_id": TRACE_ID}).to_string(),
        format!(r#"{{"\u0069d":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"id":"\u0037{}","trace_id":"{TRACE_ID}"}}"#, &ID[1..]),
        format!(r#"{{"id":"{ID}","id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"id":null,"trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"id":7,"trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"\ud800":1,"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":"\ud800","id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":[[[[{{}}]]]],"id":"{ID}","trace_id":"{TRACE_ID}"}} "#),
        format!(r#"{{"x":1e400,"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":-0.5E-3,"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":01,"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":1.,"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"x":[1,],"id":"{ID}","trace_id":"{TRACE_ID}"}}"#),
        format!(r#"{{"id":"{ID}","trace_id":"{TRACE_ID}",}}"#),
        format!(r#"[{{"id":"{ID}","trace_id":"{TRACE_ID}"}},5]"#),
        format!(r#"[{{"id":"{ID}","trace_id":"{TRACE_ID}"}}] x"#),
        "[] x".to_owned(),
        "[]".to_owned(),
        "{}".to_owned(),
        "\u{a0}{}".to_owned(),
        format!(
            r#"{{"deep":{}{},"id":"{ID}","trace_id":"{TRACE_ID}"}}"#,
            "[".repeat(20_000),
            "]".repeat(20_000)
        ),
    ];
    for body in &cases {
        assert_eq!(check_body(body), reference(body), "{body:.200}");
    }
}
