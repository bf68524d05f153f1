//! Real process: a node SIGKILLed three times while 8 writers are writing
//! into it keeps every acknowledged write, and every one reads back with
//! exactly the text that was acknowledged (digits of floats and big integers
//! included). Writes in flight at the kill may or may not have landed; none
//! of them was acknowledged.

use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mc_testnet::{Cluster, ClusterOptions, NodeClient, wait_until};
use reqwest::{Method, StatusCode};

const WRITERS: usize = 8;
const KILLS: usize = 3;
const SIGKILL: i32 = 9;

/// The values written, chosen so that any pass through f64 / i64 shows.
fn value_text(round: usize, writer: usize, i: usize) -> String {
    format!(
        r#"{{"round":{round},"writer":{writer},"i":{i},"f":1.4000000000000001,"g":18.900000000000002,"big":18446744073709551617}}"#
    )
}

/// Writes until a write fails (the node died); returns the acknowledged
/// (key, text) pairs.
async fn write_until_it_dies(
    client: NodeClient,
    round: usize,
    writer: usize,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) {
    for i in 0.. {
        let key = format!("kill/{round}/{writer}/{i:05}");
        let text = value_text(round, writer, i);
        match client
            .put_raw(&key, text.clone().into_bytes(), "application/json")
            .await
        {
            Ok(resp) if resp.status == StatusCode::OK => {
                if let Ok(mut acked) = acked.lock() {
                    acked.push((key, text));
                }
            }
            _ => return,
        }
    }
}

#[tokio::test]
async fn sigkill_under_write_load_loses_and_changes_nothing_acknowledged() -> Result<()> {
    let mut opts = ClusterOptions::new(1).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    opts.ready_timeout = Duration::from_secs(60);
    let mut cluster = Cluster::start(opts).await.context("starting a node")?;
    let acked = Arc::new(Mutex::new(Vec::new()));
    for round in 0..KILLS {
        let client = cluster.node(0).client().clone();
        let before = acked.lock().map(|a| a.len()).unwrap_or(0);
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(write_until_it_dies(client.clone(), round, w, acked.clone())))
            .collect();
        // Kill once this round has some acknowledged writes (and more in flight).
        wait_until(
            "200 acknowledged writes this round",
            Duration::from_secs(60),
            Duration::from_millis(5),
            async || Ok(acked.lock().map(|a| a.len()).unwrap_or(0) >= before + 200),
        )
        .await?;
        let status = cluster.node_mut(0).kill_hard()?;
        assert_eq!(status.signal(), Some(SIGKILL));
        for writer in writers {
            writer.await?;
        }
        cluster.node_mut(0).restart().await?;
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    ensure!(
        acked.len() >= KILLS * 200,
        "only {} writes acknowledged",
        acked.len()
    );
    let client = cluster.node(0).client();
    let mut changed = Vec::new();
    for (key, text) in &acked {
        let path = format!("/v1/knowledge/{}", mc_testnet::client::encode_segment(key));
        let resp = client.request_raw(Method::GET, &path).await?;
        let expected = format!("\"value\":{text},");
        if resp.status != StatusCode::OK || !resp.text().contains(&expected) {
            changed.push(format!("{key}: {} {}", resp.status, resp.text()));
        }
    }
    assert!(
        changed.is_empty(),
        "{} of {} acknowledged writes lost or changed, e.g. {:?}",
        changed.len(),
        acked.len(),
        changed.first()
    );
    assert!(cluster.node_mut(0).stop().await?.is_graceful());
    Ok(())
}
