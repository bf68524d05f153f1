//! Real processes: a number written to one node reads back with every digit,
//! from that node and from a replica (issue: 1.4000000000000001 came back as
//! 1.4, 2^64 + 1 as a float).

use std::time::Duration;

use anyhow::{Context, Result};
use mc_testnet::{Cluster, ClusterOptions, wait_until};
use reqwest::{Method, StatusCode};

/// Values whose text a parse into f64 / i64 / u64 would change.
const VALUES: &[&str] = &[
    "1.4000000000000001",
    "18.900000000000002",
    "18446744073709551617",
    "1234567890123456789012345678901234567890",
    "-0",
    "-0.0",
    "5e-324",
    "1e308",
    "9007199254740993",
    r#"{"nested":[0.1,1.0,1E+2,"\u00e9 \" x"],"big":-9223372036854775809}"#,
];

#[tokio::test]
async fn numbers_keep_every_digit_on_every_node() -> Result<()> {
    let mut opts = ClusterOptions::new(2).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    opts.ready_timeout = Duration::from_secs(60);
    let cluster = Cluster::start(opts).await.context("starting two nodes")?;
    cluster.wait_connected(1, Duration::from_secs(30)).await?;
    let (writer, replica) = (cluster.node(0).client(), cluster.node(1).client());
    for (i, text) in VALUES.iter().enumerate() {
        let key = format!("exact/{i}");
        // Whitespace around the value is not part of it.
        let body = format!(" \n{text}\t").into_bytes();
        let resp = writer.put_raw(&key, body, "application/json").await?;
        assert_eq!(resp.status, StatusCode::OK, "PUT {text}: {}", resp.text());
        let expected = format!("\"value\":{text},");
        assert!(
            resp.text().contains(&expected),
            "PUT answered {}",
            resp.text()
        );
        let path = format!("/v1/knowledge/exact%2F{i}");
        for (name, client) in [("writer", writer), ("replica", replica)] {
            let mut last = String::new();
            let found = wait_until(
                &format!("{name} to serve {key}"),
                Duration::from_secs(20),
                Duration::from_millis(10),
                async || {
                    let resp = client.request_raw(Method::GET, &path).await?;
                    last = resp.text();
                    Ok(resp.status == StatusCode::OK)
                },
            )
            .await;
            found?;
            assert!(
                last.contains(&expected),
                "{name} answered {last} for {text}"
            );
        }
    }
    Ok(())
}
