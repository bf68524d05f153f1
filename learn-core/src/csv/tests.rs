use proptest::prelude::*;

use super::*;

fn schema(task: Task) -> ModelSchema {
    ModelSchema {
        name: "m".into(),
        task,
        features: vec!["threads".into(), "memory".into()],
        target: "y".into(),
        hidden_layers: vec![],
        target_scale: Default::default(),
        log_features: Vec::new(),
    }
}

fn parse(text: &str) -> Result<Dataset, CsvError> {
    parse_csv(
        text.as_bytes(),
        &schema(Task::Regression),
        CsvLimits::default(),
    )
}

#[test]
fn reads_columns_in_schema_order_and_ignores_the_rest() {
    let text = "\u{feff}y, note ,memory,threads\n\
                1.5,\"a, b\", 40 ,3\n\
                \n\
                -2e-1,x,41.25,\"4\"\r\n";
    let d = parse(text).unwrap();
    assert_eq!(d.features, vec!["threads", "memory"]);
    assert_eq!(d.target, "y");
    assert_eq!(d.x, vec![3.0, 40.0, 4.0, 41.25]);
    assert_eq!(d.y, vec![1.5, -0.2]);
}

#[test]
fn every_missing_column_is_named() {
    let err = parse("memory,other\n1,2\n").unwrap_err();
    assert_eq!(
        err,
        CsvError::MissingColumns {
            missing: vec!["threads".into(), "y".into()]
        }
    );
    assert!(
        err.to_string().contains(r#"no column "threads" or "y""#),
        "{err}"
    );
}

#[test]
fn header_problems_are_typed() {
    assert_eq!(parse(""), Err(CsvError::Empty));
    assert_eq!(parse("\n\n"), Err(CsvError::Empty));
    assert_eq!(parse("threads,memory,y\n"), Err(CsvError::NoRows));
    assert_eq!(
        parse("threads,memory,y,memory\n1,2,3,4\n"),
        Err(CsvError::DuplicateColumn {
            name: "memory".into()
        })
    );
}

#[test]
fn non_utf8_is_reported_with_its_line() {
    let mut bytes = b"threads,memory,y\n1,2,3\n4,".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b",6\n");
    let err = parse_csv(&bytes, &schema(Task::Regression), CsvLimits::default()).unwrap_err();
    assert_eq!(err, CsvError::NotUtf8 { line: 3 });
}

#[test]
fn every_bad_row_is_reported_by_line_and_column() {
    let text = "threads,memory,y\n\
                1,2,3\n\
                abc,2,3\n\
                1,2\n\
                \"multi\nline\",inf,\n\
                1,1e39,NaN\n\
                5,6,7\n";
    let err = parse(text).unwrap_err();
    let errors = err.row_errors();
    let at = |line: u64, column: Option<&str>| {
        errors
            .iter()
            .find(|e| e.line == line && e.column.as_deref() == column)
            .map(|e| e.reason.clone())
    };
    assert_eq!(
        at(3, Some("threads")),
        Some(RowErrorKind::NotANumber {
            value: "abc".into()
        })
    );
    assert_eq!(
        at(4, None),
        Some(RowErrorKind::FieldCount {
            expected: 3,
            found: 2
        })
    );
    assert!(matches!(
        at(5, Some("threads")),
        Some(RowErrorKind::NotANumber { .. })
    ));
    assert!(matches!(
        at(5, Some("memory")),
        Some(RowErrorKind::NonFinite { .. })
    ));
    assert_eq!(at(5, Some("y")), Some(RowErrorKind::Empty));
    // The quoted newline makes the next row start on line 7.
    assert!(matches!(
        at(7, Some("memory")),
        Some(RowErrorKind::NonFinite { .. })
    ));
    assert!(matches!(
        at(7, Some("y")),
        Some(RowErrorKind::NonFinite { .. })
    ));
    assert_eq!(errors.len(), 7);
    assert!(matches!(err, CsvError::BadRows { total: 7, .. }));
    assert_eq!(
        errors[0].to_string(),
        r#"line 3, column threads: "abc" is not a number"#
    );
    assert_eq!(
        errors[1].to_string(),
        "line 4: 2 fields, but the header has 3"
    );
    assert!(
        err.to_string().starts_with(
            r#"7 bad values: line 3, column threads: "abc" is not a number; line 4: "#
        ),
        "{err}"
    );
    assert!(err.to_string().ends_with("; and 4 more"), "{err}");
}

#[test]
fn row_errors_serialize_for_an_http_body() {
    let err = parse("threads,memory,y\nabc,2,3\n").unwrap_err();
    let json = serde_json::to_value(err.row_errors()).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "line": 2,
            "column": "threads",
            "reason": {"kind": "not_a_number", "value": "abc"}
        }])
    );
    let back: Vec<RowError> = serde_json::from_value(json).unwrap();
    assert_eq!(back, err.row_errors());
}

#[test]
fn at_most_a_hundred_errors_are_listed_but_all_are_counted() {
    let mut text = String::from("threads,memory,y\n");
    for _ in 0..250 {
        text.push_str("x,1,1\n");
    }
    let err = parse(&text).unwrap_err();
    assert_eq!(err.row_errors().len(), MAX_LISTED_ROW_ERRORS);
    assert!(matches!(err, CsvError::BadRows { total: 250, .. }));
    assert_eq!(err.row_errors()[99].line, 101);
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "é".repeat(100);
    let err = parse(&format!("threads,memory,y\n{long},1,1\n")).unwrap_err();
    match &err.row_errors()[0].reason {
        RowErrorKind::NotANumber { value } => {
            assert_eq!(value.chars().count(), MAX_QUOTED_CHARS + 1);
            assert!(value.ends_with('…'));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn classification_targets_must_be_zero_or_one() {
    let s = schema(Task::BinaryClassification);
    let ok = parse_csv(
        b"threads,memory,y\n1,2,0\n1,2,1.0\n",
        &s,
        CsvLimits::default(),
    )
    .unwrap();
    assert_eq!(ok.y, vec![0.0, 1.0]);
    let err = parse_csv(
        b"threads,memory,y\n1,2,0.5\n1,2,2\n",
        &s,
        CsvLimits::default(),
    )
    .unwrap_err();
    assert_eq!(err.row_errors().len(), 2);
    assert_eq!(
        err.row_errors()[0].to_string(),
        r#"line 2, column y: "0.5" is not 0 or 1, as a classification target must be"#
    );
}

#[test]
fn limits_are_enforced() {
    let text = "threads,memory,y\n1,2,3\n4,5,6\n7,8,9\n";
    let s = schema(Task::Regression);
    let small = CsvLimits {
        max_bytes: 10,
        max_rows: 100,
    };
    assert_eq!(
        parse_csv(text.as_bytes(), &s, small),
        Err(CsvError::TooLarge {
            bytes: text.len(),
            limit: 10
        })
    );
    let few = CsvLimits {
        max_bytes: 1 << 20,
        max_rows: 2,
    };
    assert_eq!(
        parse_csv(text.as_bytes(), &s, few),
        Err(CsvError::TooManyRows { limit: 2 })
    );
    let exact = CsvLimits { max_rows: 3, ..few };
    assert_eq!(parse_csv(text.as_bytes(), &s, exact).unwrap().len(), 3);
}

#[test]
fn table_csv_reads_back_as_the_selected_dataset() {
    let mut table = crate::table::Table::new(["memory", "extra", "y", "threads"]).unwrap();
    for i in 0..50 {
        let v = i as f32;
        table
            .push_row(&[v / 7.0, -v * 1e-9, v.sqrt(), 1e16 * v])
            .unwrap();
    }
    let s = schema(Task::Regression);
    let parsed = parse_csv(table.to_csv().as_bytes(), &s, CsvLimits::default()).unwrap();
    assert_eq!(parsed, table.select(&s).unwrap());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_csv(&bytes, &schema(Task::BinaryClassification), CsvLimits::default());
    }

    #[test]
    fn csv_like_text_never_panics_and_errors_point_into_the_file(
        body in "[0-9a-z.,\"\n\r e+-]{0,300}",
        limits in (0usize..400, 0usize..20),
    ) {
        let text = format!("threads,memory,y\n{body}");
        let limits = CsvLimits { max_bytes: limits.0, max_rows: limits.1 };
        match parse_csv(text.as_bytes(), &schema(Task::Regression), limits) {
            Ok(d) => prop_assert!(d.len() <= limits.max_rows),
            Err(e) => {
                let lines = text.lines().count() as u64;
                for r in e.row_errors() {
                    prop_assert!(r.line >= 2 && r.line <= lines, "{r}");
                }
            }
        }
    }
}

#[test]
fn values_whose_squares_overflow_f32_are_refused_and_the_largest_allowed_keep_moments_finite() {
    let err = parse("threads,memory,y\n1,2,3\n1e30,2,3\n").unwrap_err();
    let CsvError::BadRows { errors, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 3);
    assert_eq!(errors[0].column.as_deref(), Some("threads"));
    assert!(matches!(errors[0].reason, RowErrorKind::TooLarge { .. }));
    assert!(errors[0].to_string().contains("1e18"), "{}", errors[0]);

    let d = parse("threads,memory,y\n1e18,-1e18,1e18\n-1e18,1e18,1\n").unwrap();
    let moments = crate::plan::moments_vector(&schema(Task::Regression), &d);
    assert!(moments.iter().all(|m| m.is_finite()), "{moments:?}");
}
