//! A model file written here is read by PyTorch (the venv that
//! scripts/setup.sh installs), which rebuilds the MLP and predicts what Rust
//! predicts.

mod common;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, ensure};
use common::{disc, quick, schema, table, wave};
use mc_learn::{Model, ModelSchema, Normaliser, Task};
use mc_learn_core::TargetScale;
use rand::{SeedableRng, rngs::ChaCha8Rng};

const CHECK: &str = r#"
import json, sys
import torch
from safetensors import safe_open
from safetensors.torch import load_file

for case in json.load(open(sys.argv[1])):
    tensors = load_file(case["path"])
    with safe_open(case["path"], "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "mc-learn/1", meta
    schema = json.loads(meta["schema"])
    sizes = [len(schema["features"])] + schema["hidden_layers"] + [1]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    mlp = torch.nn.Sequential(*layers)
    state = {}
    for i in range(len(sizes) - 1):
        for part in ("weight", "bias"):
            state[f"{2 * i}.{part}"] = tensors[f"layers.{i}.{part}"]
    mlp.load_state_dict(state)
    x = torch.tensor(case["x"], dtype=torch.float32).reshape(-1, sizes[0])
    # Log-scale features: sign(x) * ln(1 + |x|), then standardised.
    for j, name in enumerate(schema["features"]):
        if name in schema.get("log_features", []):
            x[:, j] = torch.sign(x[:, j]) * torch.log1p(x[:, j].abs())
    with torch.no_grad():
        out = mlp((x - tensors["norm.feature_mean"]) / tensors["norm.feature_std"]).squeeze(1)
        if schema["task"] != "regression":
            out = torch.sigmoid(out)
        elif schema.get("target_scale", "linear") == "log":
            # ln(y) standardised with the log-normal matched to the
            # target's mean m and deviation s; outputs clamped to ±6
            # (LOG_OUTPUT_BOUND).
            m = tensors["norm.target_mean"].double()
            s = tensors["norm.target_std"].double()
            var = torch.log1p((s / m) ** 2)
            mu, sigma = (torch.log(m) - var / 2).float(), var.sqrt().float()
            out = torch.exp(out.clamp(-6.0, 6.0) * sigma + mu)
        else:
            out = out * tensors["norm.target_std"] + tensors["norm.target_mean"]
    rust = torch.tensor(case["rust"], dtype=torch.float32)
    diff = ((out - rust).abs() / rust.abs().clamp(min=1.0)).max().item()
    scale = schema.get("target_scale", "linear")
    print(f"{schema['task']} ({scale}): {len(case['rust'])} rows, max relative |torch - rust| = {diff:.3g}")
    assert diff <= 1e-5, diff
print("ok")
"#;

fn venv_python() -> anyhow::Result<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    ensure!(
        python.exists(),
        "{} does not exist: run scripts/setup.sh (it installs PyTorch 2.13.0 and links .venv)",
        python.display()
    );
    Ok(python)
}

#[test]
fn pytorch_loads_the_file_and_predicts_the_same() -> anyhow::Result<()> {
    let python = venv_python()?;
    let dir = tempfile::tempdir()?;
    let mut cases = Vec::new();
    for (task, scale, f) in [
        (
            Task::Regression,
            TargetScale::Linear,
            wave as fn(f32, f32) -> f32,
        ),
        (Task::Regression, TargetScale::Log, |a, b| wave(a, b).exp()),
        (Task::BinaryClassification, TargetScale::Linear, disc),
    ] {
        let s = ModelSchema {
            target_scale: scale,
            // One case sees feature `b` (values of both signs) on a log scale.
            log_features: match scale {
                TargetScale::Log => vec!["b".into()],
                TargetScale::Linear => Vec::new(),
            },
            ..schema(task, vec![16, 8])
        };
        let data = table(400, 30, f);
        let mut model = Model::init(
            &s,
            Normaliser::fit(&s, &data)?,
            &mut ChaCha8Rng::seed_from_u64(30),
            quick(1).device,
        )?;
        model.train(&data, &quick(5))?;
        let path = dir.path().join(format!("{task:?}-{scale:?}.safetensors"));
        model.save(&path)?;
        let loaded = Model::load(&s, &path, quick(1).device)?;
        assert_eq!(loaded.flat_weights(), model.flat_weights());
        assert_eq!(loaded.normaliser(), model.normaliser());
        let test = table(50, 31, f);
        cases.push(serde_json::json!({
            "path": path,
            "x": test.x,
            "rust": model.predict(&test)?,
        }));
    }
    let manifest = dir.path().join("cases.json");
    std::fs::write(&manifest, serde_json::to_vec(&cases)?)?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(CHECK)
        .arg(&manifest)
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    ensure!(
        out.status.success(),
        "PyTorch check failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(stdout.contains("ok"));
    Ok(())
}
