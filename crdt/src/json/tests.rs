use proptest::prelude::*;

use super::*;
use crate::{ActorId, KnowledgeBase};

/// Numbers where a parse into `f64` or `i64` changes the text.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "0.0",
    "-0.0",
    "5e-324",
    "2.2250738585072014e-308",
    "1e308",
    "1.7976931348623157e308",
    "9007199254740991",
    "9007199254740992",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "18446744073709551617",
    "-9223372036854775809",
    "1234567890123456789012345678901234567890",
    "1.4000000000000001",
    "18.900000000000002",
    "0.1",
    "1.0",
    "1E+2",
    "-1.5e-7",
];

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(EDGE_NUMBERS).prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        // Rust prints the shortest text that reads back as the same double.
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        "[1-9][0-9]{20,45}".prop_map(|digits| digits),
    ]
}

fn string() -> impl Strategy<Value = String> {
    // Text with the characters that need escapes, plus explicit escapes.
    prop_oneof![
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just(r#""\u00e9 \ud83d\ude80 \" \\ \/ \b\f\n\r\t""#.to_owned()),
        Just(r#""  spaced  inside  ""#.to_owned()),
    ]
}

fn space() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["", " ", "\n", "\t ", "\r\n  "][..])
}

/// Random JSON text, with random insignificant whitespace.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        number(),
        string(),
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                prop::collection::vec((inner.clone(), space()), 0..6),
                space()
            )
                .prop_map(|(items, end)| {
                    let body: Vec<String> = items
                        .into_iter()
                        .map(|(v, s)| format!("{s}{v}{s}"))
                        .collect();
                    format!("[{}{end}]", body.join(","))
                }),
            prop::collection::vec((string(), inner, space()), 0..6).prop_map(|fields| {
                let body: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v, s)| format!("{s}{k}{s}:{s}{v}"))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// Same structure and strings by serde_json's reading of both texts (the
/// digits of numbers are compared separately, by `numbers_of`).
fn same_meaning(a: &str, b: &str) -> bool {
    let a: serde_json::Value = serde_json::from_str(a).unwrap();
    let b: serde_json::Value = serde_json::from_str(b).unwrap();
    a == b
}

/// The number literals of a JSON text, in order (outside strings).
fn numbers_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every number keeps every digit and every string its escapes through
    /// a put, a get, a save and a load, and through a second replica.
    #[test]
    fn any_json_reads_back_exactly(text in json_text()) {
        let value = Json::parse(&text).unwrap();
        prop_assert!(same_meaning(value.as_str(), &text));
        prop_assert_eq!(numbers_of(value.as_str()), numbers_of(&text));

        let mut kb = KnowledgeBase::new(ActorId::from(&b"json-a"[..]));
        kb.put("k", &value, "author", 7).unwrap();
        prop_assert_eq!(&kb.get("k").unwrap().unwrap().value, &value);

        let snapshot = kb.compact();
        let loaded = KnowledgeBase::load(Some(&snapshot), [], ActorId::from(&b"json-b"[..])).unwrap();
        prop_assert_eq!(&loaded.get("k").unwrap().unwrap().value, &value);

        let mut replica = KnowledgeBase::new(ActorId::from(&b"json-c"[..]));
        replica.apply_changes(&snapshot).unwrap();
        let entry = replica.get("k").unwrap().unwrap();
        // Embedded in a larger document, the text is written verbatim.
        let shown = serde_json::to_string(&entry.value).unwrap();
        prop_assert_eq!(shown.as_str(), value.as_str());
    }
}

#[test]
fn edge_numbers_keep_their_text() {
    for number in EDGE_NUMBERS {
        let value = Json::parse(&format!(" [ {number} ] ")).unwrap();
        assert_eq!(value.as_str(), format!("[{number}]"));
    }
}

#[test]
fn whitespace_inside_strings_is_kept() {
    let value = Json::parse("{ \"a b\" : \" x \\\" y \" }").unwrap();
    assert_eq!(value.as_str(), "{\"a b\":\" x \\\" y \"}");
}

#[test]
fn invalid_text_is_refused() {
    for bad in ["", "{", "[1,]", "01", "1 2", "NaN", "\"\\x\"", "{\"a\" 1}"] {
        assert!(Json::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(Json::from_slice(&[0xff, 0xfe]).is_err());
}

#[test]
fn deserialising_keeps_the_text() {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        v: Json,
    }
    let w: Wrapper = serde_json::from_str(r#"{"v": 18446744073709551617}"#).unwrap();
    assert_eq!(w.v.as_str(), "18446744073709551617");
    let n: serde_json::Value = w.v.to_value();
    assert!(n.is_number());
}
