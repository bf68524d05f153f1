//! Real process + an independent Automerge implementation: the documents a
//! node exports (`GET /v1/documents`, `GET /v1/documents/{id}`) load in the
//! JavaScript `@automerge/automerge` package (installed by scripts/setup.sh
//! into interop/js) and hold exactly the entries the API serves, digits
//! included.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use mc_testnet::{Cluster, ClusterOptions};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/js")
}

#[derive(Debug, Deserialize)]
struct DocumentInfo {
    id: String,
    entries: usize,
    heads: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct JsView {
    heads: Vec<String>,
    entries: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct StoredEntry {
    v: Box<serde_json::value::RawValue>,
    a: String,
    t: u64,
}

#[tokio::test]
async fn exported_documents_load_in_javascript_automerge() -> Result<()> {
    let modules = js_dir().join("node_modules/@automerge/automerge");
    if !modules.is_dir() {
        if std::env::var_os("CI").is_some() {
            bail!("{} is missing: run scripts/setup.sh", modules.display());
        }
        eprintln!(
            "SKIPPED automerge_js: {} is missing (run interop/js/install.sh)",
            modules.display()
        );
        return Ok(());
    }
    let mut opts = ClusterOptions::new(1).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    opts.ready_timeout = Duration::from_secs(60);
    let cluster = Cluster::start(opts).await.context("starting a node")?;
    let client = cluster.node(0).client();
    for i in 0..40 {
        client
            .put(
                &format!("runbook/{i:02}"),
                &json!({"step": i, "ok": i % 2 == 0}),
            )
            .await?;
    }
    let exact = "18446744073709551617";
    client
        .put_raw("exact/big", exact.as_bytes().to_vec(), "application/json")
        .await?;

    let listing = client.request_raw(Method::GET, "/v1/documents").await?;
    ensure!(
        listing.status == StatusCode::OK,
        "GET /v1/documents: {}",
        listing.text()
    );
    let docs: Vec<DocumentInfo> = listing.json()?;
    ensure!(
        docs.len() == usize::from(mc_protocols::KNOWLEDGE_SHARDS),
        "expected every knowledge shard, got {}",
        docs.len()
    );
    ensure!(
        docs.iter().map(|d| d.entries).sum::<usize>() == 41,
        "{docs:?}"
    );

    let served = client.list("").await?;
    let dir = tempfile::tempdir()?;
    let mut seen = 0;
    for doc in &docs {
        let path = format!("/v1/documents/{}", doc.id);
        let resp = client.request_raw(Method::GET, &path).await?;
        ensure!(resp.status == StatusCode::OK, "GET {path}: {}", resp.text());
        let file = dir.path().join(doc.id.replace('/', "-"));
        std::fs::write(&file, &resp.body)?;
        let out = Command::new("node")
            .arg(js_dir().join("read-automerge.mjs"))
            .arg(&file)
            .output()
            .context("running node")?;
        ensure!(
            out.status.success(),
            "node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let view: JsView = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stdout).into_owned())?;
        let mut js_heads = view.heads.clone();
        js_heads.sort();
        assert_eq!(js_heads, doc.heads, "{}: heads", doc.id);
        assert_eq!(view.entries.len(), doc.entries, "{}: entry count", doc.id);
        for (key, text) in &view.entries {
            let stored: StoredEntry = serde_json::from_str(text)
                .with_context(|| format!("{}: entry {key} is {text}", doc.id))?;
            let api = served
                .iter()
                .find(|e| e.key == *key)
                .with_context(|| format!("{key} is in the document but not served"))?;
            assert_eq!(stored.a, api.author, "{key}: author");
            assert_eq!(stored.t, api.updated_at, "{key}: time");
            let value: serde_json::Value = serde_json::from_str(stored.v.get())?;
            assert_eq!(value, api.value, "{key}: value");
            if key == "exact/big" {
                assert_eq!(
                    stored.v.get(),
                    exact,
                    "every digit survives in the document"
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 41, "every entry was read by JavaScript");

    let missing = client
        .request_raw(Method::GET, "/v1/documents/knowledge/999")
        .await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.api_error()?.error, "unknown_document");
    Ok(())
}
