//! Feeds arbitrary bytes to the CSV importer for a built-in schema: a
//! dataset or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mc_learn_core::csv::{CsvLimits, parse_csv};
use mc_learn_core::schema::builtin_named;

fuzz_target!(|data: &[u8]| {
    let schema = builtin_named("anomaly").expect("built in");
    if let Ok(dataset) = parse_csv(data, &schema, CsvLimits::default()) {
        assert_eq!(dataset.x.len(), dataset.y.len() * schema.features.len());
    }
});
