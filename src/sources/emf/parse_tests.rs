//! The captured `aws-embedded-metrics` documents are accepted; each EMF rule is enforced with
//! its own reason.

use serde_json::json;

use super::*;

const FIXTURES: [(&str, &str); 6] = [
    (
        "emf-1",
        include_str!("../../../tests/fixtures/emf-1-basic-tcp.json"),
    ),
    (
        "emf-2",
        include_str!("../../../tests/fixtures/emf-2-multi-dimension-sets-tcp.json"),
    ),
    (
        "emf-3",
        include_str!("../../../tests/fixtures/emf-3-split-part1-100-metrics-tcp.json"),
    ),
    (
        "emf-4",
        include_str!("../../../tests/fixtures/emf-4-split-part2-metrics-and-100-values-tcp.json"),
    ),
    (
        "emf-5",
        include_str!("../../../tests/fixtures/emf-5-split-part3-remaining-values-tcp.json"),
    ),
    (
        "emf-6",
        include_str!("../../../tests/fixtures/emf-6-basic-udp-datagram.json"),
    ),
];

fn emf(text: &str) -> EmfDocument {
    match parse(text.trim_end().as_bytes()) {
        Ok(Parsed::Emf(doc)) => doc,
        other => panic!("{other:?} for {text}"),
    }
}

fn invalid(doc: &serde_json::Value) -> Invalid {
    match parse(doc.to_string().as_bytes()) {
        Err(Rejected::Invalid(reason)) => reason,
        other => panic!("{other:?} for {doc}"),
    }
}

/// A valid document with `metrics` metrics (value 1 each) and one dimension set of `dims`.
fn document(metrics: usize, dims: usize) -> serde_json::Value {
    let mut root = serde_json::Map::new();
    let names: Vec<String> = (0..metrics).map(|i| format!("M{i}")).collect();
    let keys: Vec<String> = (0..dims).map(|i| format!("D{i}")).collect();
    for n in &names {
        root.insert(n.clone(), json!(1));
    }
    for k in &keys {
        root.insert(k.clone(), json!("v"));
    }
    let defs: Vec<_> = names.iter().map(|n| json!({"Name": n})).collect();
    root.insert(
        "_aws".into(),
        json!({"Timestamp": 1795822181000u64, "CloudWatchMetrics": [
            {"Namespace": "NS", "Dimensions": [keys], "Metrics": defs}
        ]}),
    );
    serde_json::Value::Object(root)
}

#[test]
fn every_captured_document_is_accepted() {
    for (name, text) in FIXTURES {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let doc = emf(line);
            assert!(!doc.directives.is_empty(), "{name}");
            assert_eq!(doc.log_group.as_deref(), Some("/probe/emf"), "{name}");
        }
    }
}

#[test]
fn the_basic_document_reads_fully() {
    let doc = emf(FIXTURES[0].1);
    assert_eq!(doc.timestamp_ms, 1_795_822_181_000);
    assert_eq!(doc.log_stream.as_deref(), Some("emf-stream"));
    let d = &doc.directives[0];
    assert_eq!(d.namespace, "Probe/EMF");
    assert_eq!(d.dimension_sets.len(), 1);
    assert_eq!(
        d.dimension_sets[0][4],
        ("Operation".into(), "GetOrder".into())
    );
    assert_eq!(
        d.metrics[0],
        Metric {
            name: "Latency".into(),
            unit: Unit::MILLISECONDS,
            storage_resolution: 60,
            values: vec![100.0, 150.5],
        }
    );
    assert_eq!(d.metrics[1].storage_resolution, 1);
    assert_eq!(d.metrics[2].unit, Unit::BYTES);
    let multi = emf(FIXTURES[1].1);
    assert_eq!(multi.directives[0].dimension_sets.len(), 2);
    let split = emf(FIXTURES[3].1);
    let hist = split.directives[0]
        .metrics
        .iter()
        .find(|m| m.name == "Hist");
    assert_eq!(hist.map(|m| m.values.len()), Some(100));
}

#[test]
fn json_without_aws_is_plain() {
    assert_eq!(
        parse(br#"{"level":"info","msg":"hi"}"#),
        Ok(Parsed::PlainJson)
    );
    assert_eq!(parse(b"[1,2]"), Ok(Parsed::PlainJson));
    assert_eq!(parse(b"42"), Ok(Parsed::PlainJson));
}

#[test]
fn not_json_and_too_large() {
    assert_eq!(parse(b"hello world"), Err(Rejected::NotJson));
    assert_eq!(parse(b"{\"a\":"), Err(Rejected::NotJson));
    assert_eq!(parse(&[0xff, 0xfe]), Err(Rejected::NotJson));
    assert_eq!(
        parse(b"{\"a\": NaN}"),
        Err(Rejected::NotJson),
        "NaN, but not EMF"
    );
    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(parse(&big), Err(Rejected::TooLarge));
}

#[test]
fn the_limits_are_enforced_at_their_edge() {
    assert!(matches!(
        parse(document(100, 30).to_string().as_bytes()),
        Ok(Parsed::Emf(_))
    ));
    assert_eq!(invalid(&document(101, 1)), Invalid::TooManyMetrics(101));
    assert_eq!(invalid(&document(1, 31)), Invalid::TooManyDimensionKeys(31));
    let mut doc = document(1, 1);
    doc["M0"] = json!((0..101).collect::<Vec<_>>());
    assert_eq!(invalid(&doc), Invalid::TooManyValues("M0".into(), 101));
    doc["M0"] = json!((0..100).collect::<Vec<_>>());
    assert!(matches!(
        parse(doc.to_string().as_bytes()),
        Ok(Parsed::Emf(_))
    ));
}

#[test]
fn nan_from_a_python_client_is_non_finite() {
    let text = document(1, 1).to_string().replace("\"M0\":1", "\"M0\":NaN");
    assert!(text.contains("NaN"), "{text}");
    assert_eq!(
        parse(text.as_bytes()),
        Err(Rejected::Invalid(Invalid::NonFinite))
    );
    let text = document(1, 1)
        .to_string()
        .replace("\"M0\":1", "\"M0\":[1,-Infinity]");
    assert_eq!(
        parse(text.as_bytes()),
        Err(Rejected::Invalid(Invalid::NonFinite))
    );
    // A NaN inside a string is just text.
    assert_eq!(
        null_non_finite_literals(r#"{"a":"NaN \" NaN"}"#),
        None,
        "nothing outside strings"
    );
}

#[test]
fn each_rule_has_its_reason() {
    let mut doc = document(1, 1);
    doc["_aws"] = json!("x");
    assert_eq!(invalid(&doc), Invalid::Shape("_aws"));
    let mut doc = document(1, 1);
    doc["_aws"]["Timestamp"] = json!("soon");
    assert_eq!(invalid(&doc), Invalid::Timestamp);
    let mut doc = document(1, 1);
    doc["_aws"].as_object_mut().map(|a| a.remove("Timestamp"));
    assert_eq!(invalid(&doc), Invalid::Timestamp);
    let mut doc = document(1, 1);
    doc["D0"] = json!(5);
    assert_eq!(invalid(&doc), Invalid::Dimension("D0".into()));
    let mut doc = document(1, 1);
    doc["M0"] = json!("12");
    assert_eq!(invalid(&doc), Invalid::MetricValue("M0".into()));
    let mut doc = document(1, 1);
    doc.as_object_mut().map(|o| o.remove("M0"));
    assert_eq!(invalid(&doc), Invalid::MetricValue("M0".into()));
    let mut doc = document(1, 1);
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Furlongs");
    assert_eq!(invalid(&doc), Invalid::Unit("Furlongs".into()));
    let mut doc = document(1, 1);
    doc["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] = json!(5);
    assert_eq!(invalid(&doc), Invalid::StorageResolution);
    let mut doc = document(1, 1);
    doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("");
    assert_eq!(invalid(&doc), Invalid::Namespace);
    let mut doc = document(1, 1);
    doc["_aws"]["CloudWatchMetrics"] = json!({});
    assert_eq!(invalid(&doc), Invalid::Shape("_aws.CloudWatchMetrics"));
}

#[test]
fn members_are_found_in_small_and_large_documents_and_the_last_repeat_counts() {
    // 3 metrics + 2 dimensions + `_aws`: scanned; with 40 more members: indexed.
    let small = document(3, 2);
    assert_eq!(emf(&small.to_string()).directives[0].metrics.len(), 3);
    let mut large = document(3, 2);
    for i in 0..40 {
        large[format!("extra{i}")] = json!({"nested": [i]});
    }
    let doc = emf(&large.to_string());
    assert_eq!(doc.directives[0].dimension_sets[0].len(), 2);
    assert_eq!(doc.directives[0].metrics[2].values, vec![1.0]);
    // A repeated key: the last value is the one read, with or without an index.
    for extra in [0, 40] {
        let mut text = document(1, 1).to_string();
        text.pop();
        for i in 0..extra {
            text.push_str(&format!(",\"x{i}\":{i}"));
        }
        text.push_str(",\"M0\":7}");
        assert_eq!(emf(&text).directives[0].metrics[0].values, vec![7.0]);
    }
}

/// The general reading alone: the root's members as raw text and `_aws` and the members it
/// names as `Value` trees (the whole line as a tree when the members cannot be read), as every
/// document was read before the typed reading existed.
fn general_reading(text: &str) -> Result<Parsed, Rejected> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(Rejected::TooLarge);
    }
    let Ok(root) = serde_json::from_str::<Members>(text) else {
        return Ok(general(text)?.map_or(Parsed::PlainJson, Parsed::Emf));
    };
    let Some(aws) = root.get("_aws") else {
        return Ok(Parsed::PlainJson);
    };
    let aws: Value = serde_json::from_str(aws.get()).map_err(|_| Rejected::NotJson)?;
    Ok(Parsed::Emf(super::document(&root, &aws)?))
}

/// Both public readings give the general reading's answer; `check_text` keeps its routing
/// facts.
fn assert_readings_agree(text: &str) {
    let expected = general_reading(text);
    assert_eq!(parse_text(text), expected, "parse_text for {text}");
    let checked = check_text(text);
    match (&expected, checked) {
        (Ok(Parsed::Emf(doc)), Ok(Routed::Emf(summary))) => {
            assert_eq!(summary.timestamp_ms, doc.timestamp_ms, "{text}");
            assert_eq!(summary.log_group.as_deref(), doc.log_group.as_deref());
            assert_eq!(summary.log_stream.as_deref(), doc.log_stream.as_deref());
        }
        (Ok(Parsed::PlainJson), Ok(Routed::PlainJson)) => {}
        (Err(e), Err(c)) => assert_eq!(&c, e, "check_text for {text}"),
        (e, c) => panic!("check_text {c:?}, general {e:?} for {text}"),
    }
}

#[test]
fn the_typed_reading_agrees_on_the_fixtures_and_every_rule() {
    for (_, text) in FIXTURES {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            assert_readings_agree(line.trim_end());
        }
    }
    let escaped = r#"{"_aws":{"Timestamp":1,"LogGroupName":"/a\"b","CloudWatchMetrics":[{"Namespace":"N\u0041","Dimensions":[["k\"1"]],"Metrics":[{"Name":"m\\x","Unit":"Count"}]}]},"k\"1":"v\u00e9","m\\x":[1,2.5]}"#;
    assert_readings_agree(escaped);
    let doc = emf(escaped);
    assert_eq!(doc.log_group.as_deref(), Some("/a\"b"));
    assert_eq!(doc.directives[0].namespace, "NA");
    assert_eq!(
        doc.directives[0].dimension_sets[0],
        vec![("k\"1".to_owned(), "v\u{e9}".to_owned())]
    );
}

/// A JSON snippet for one member of a generated document: valid values and wrong types.
fn pick(
    options: &'static [&'static str],
) -> impl proptest::strategy::Strategy<Value = &'static str> {
    proptest::sample::select(options)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_are_classified_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let _ = parse(&bytes);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            assert_readings_agree(text);
        }
    }

    #[test]
    fn mangled_documents_are_classified_without_panicking(cut in 0usize..300, junk in "[\\[\\]{}\",:0-9a-zNaI]{0,5}") {
        let text = document(3, 2).to_string();
        let cut = cut.min(text.len());
        let mangled = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        let _ = parse(mangled.as_bytes());
        assert_readings_agree(&mangled);
    }

    #[test]
    fn the_typed_reading_agrees_with_the_general_one(
        timestamp in pick(&["1795822181000", "1.5e12", "-1", "1e15", "\"1\"", "null"]),
        group in pick(&["", r#","LogGroupName":"/g""#, r#","LogGroupName":"""#, r#","LogGroupName":null"#, r#","LogGroupName":7"#, r#","LogGroupName":"a\"b""#]),
        namespace in pick(&[r#""NS""#, r#""""#, "3", r#""N\u0053""#]),
        dimensions in pick(&["", r#","Dimensions":[["D0","D1"]]"#, r#","Dimensions":null"#, r#","Dimensions":[["D0"],[]]"#, r#","Dimensions":[[1]]"#, r#","Dimensions":{}"#, r#","Dimensions":[["Missing"]]"#]),
        d0 in pick(&[r#""v""#, r#""""#, "5", "null", r#""a\"b""#]),
        unit in pick(&["", r#","Unit":"Count""#, r#","Unit":"Furlongs""#, r#","Unit":null"#, r#","Unit":1"#]),
        resolution in pick(&["", r#","StorageResolution":1"#, r#","StorageResolution":60"#, r#","StorageResolution":5"#, r#","StorageResolution":1.0"#, r#","StorageResolution":"1""#, r#","StorageResolution":null"#]),
        name in pick(&[r#""M0""#, r#""""#, "null", r#""M\u0030""#]),
        value in pick(&["1", "[1,2,1]", "[]", r#"[1,"x"]"#, r#""1""#, "null", "1e400", "{}"]),
        repeat in pick(&["", r#","M0":2"#, r#","_aws":{}"#]),
        extra_metrics in 0usize..3,
        many_values in proptest::bool::ANY,
    ) {
        let value = if many_values {
            format!("[{}]", vec!["1"; 101].join(","))
        } else {
            value.to_owned()
        };
        let mut metrics = vec![format!(r#"{{"Name":{name}{unit}{resolution}}}"#)];
        metrics.extend((0..extra_metrics).map(|i| format!(r#"{{"Name":"X{i}"}}"#)));
        let extra_values: String = (0..extra_metrics).map(|i| format!(r#","X{i}":{i}"#)).collect();
        let text = format!(
            r#"{{"_aws":{{"Timestamp":{timestamp}{group},"CloudWatchMetrics":[{{"Namespace":{namespace}{dimensions},"Metrics":[{}]}}]}},"D0":{d0},"D1":"w","M0":{value}{extra_values}{repeat}}}"#,
            metrics.join(",")
        );
        assert_readings_agree(&text);
    }
}
