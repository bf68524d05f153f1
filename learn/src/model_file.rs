//! A model as a safetensors file, readable by PyTorch.
//!
//! The file holds, all little-endian f32:
//!
//! - `layers.{i}.weight` (`[out, in]`) and `layers.{i}.bias` (`[out]`) for
//!   every Linear layer `i`, the names of a PyTorch `nn.Linear` state dict;
//! - `norm.feature_mean` and `norm.feature_std` (`[features]`),
//!   `norm.target_mean` and `norm.target_std` (`[1]`): the [`Normaliser`];
//!
//! and in the header's metadata, `schema` (the [`ModelSchema`] as JSON) and
//! `format` ([`FORMAT`]). In PyTorch a prediction is
//! `mlp((x - feature_mean) / feature_std) * target_std + target_mean` for
//! regression and `sigmoid(mlp((x - feature_mean) / feature_std))` for
//! classification, with ReLU between the layers. A regression schema with
//! `"target_scale": "log"` predicts `exp(clamp(mlp(…), ±6) · σ + μ)` instead, with
//! `σ² = ln(1 + target_std²/target_mean²)` and `μ = ln(target_mean) − σ²/2`
//! ([`Normaliser::log_target`]).
//!
//! Reading checks everything a peer could get wrong: the schema, every
//! tensor's name, dtype and shape, that no tensor is missing or extra, and
//! that every value is finite.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mc_learn_core::ModelSchema;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use tch::Device;

use crate::mlp::param_name;
use crate::{Model, ModelError, Normaliser};

/// The `format` metadata value of files this version writes.
pub const FORMAT: &str = "mc-learn/1";

/// Why a model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The bytes are not a valid safetensors file.
    #[error("not a safetensors file: {0}")]
    Format(#[from] safetensors::SafeTensorError),
    /// The header has no `schema` metadata.
    #[error("the file has no schema metadata")]
    NoSchema,
    /// The `schema` metadata is not a schema.
    #[error("the file's schema metadata is not valid: {0}")]
    BadSchema(#[source] serde_json::Error),
    /// The file is for a different model.
    #[error(
        "the file is for model {found:?}, which differs from the expected schema of {expected:?}"
    )]
    SchemaMismatch {
        /// The expected model's name.
        expected: String,
        /// The file's model's name.
        found: String,
    },
    /// A tensor the model needs is not in the file.
    #[error("tensor {0:?} is missing")]
    MissingTensor(String),
    /// The file has a tensor the model does not use.
    #[error("unexpected tensor {0:?}")]
    UnexpectedTensor(String),
    /// A tensor is not f32 or has the wrong shape.
    #[error("tensor {name:?} is {dtype} {shape:?}, expected F32 {expected:?}")]
    WrongTensor {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The shape the schema implies.
        expected: Vec<usize>,
    },
    /// The weights or normaliser were refused by the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The schema in a model file's metadata, without reading the tensors.
pub fn read_schema(bytes: &[u8]) -> Result<ModelSchema, FileError> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get("schema"))
        .ok_or(FileError::NoSchema)?;
    serde_json::from_str(json).map_err(FileError::BadSchema)
}

impl Model {
    /// The model as safetensors bytes (see the module docs for the layout).
    ///
    /// # Panics
    ///
    /// Only if libtorch cannot copy a parameter to the CPU (see
    /// [`Model::flat_weights`]).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, FileError> {
        let flat = self.flat_weights();
        let n = self.normaliser();
        let mut tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)> = BTreeMap::new();
        for (name, shape, range) in layout(self.schema()) {
            tensors.insert(name, (shape, le_bytes(&flat[range])));
        }
        let f = n.n_features();
        tensors.insert(
            "norm.feature_mean".into(),
            (vec![f], le_bytes(&n.feature_mean)),
        );
        tensors.insert(
            "norm.feature_std".into(),
            (vec![f], le_bytes(&n.feature_std)),
        );
        tensors.insert(
            "norm.target_mean".into(),
            (vec![1], le_bytes(&[n.target_mean])),
        );
        tensors.insert(
            "norm.target_std".into(),
            (vec![1], le_bytes(&[n.target_std])),
        );
        let views = tensors
            .iter()
            .map(|(name, (shape, data))| {
                Ok((
                    name.as_str(),
                    TensorView::new(Dtype::F32, shape.clone(), data)?,
                ))
            })
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        let schema_json = serde_json::to_string(self.schema()).map_err(FileError::BadSchema)?;
        let metadata = HashMap::from([
            ("schema".to_owned(), schema_json),
            ("format".to_owned(), FORMAT.to_owned()),
        ]);
        let mut bytes = safetensors::serialize(views, Some(metadata))?;
        canonicalise_header(&mut bytes);
        Ok(bytes)
    }

    /// Reads a model of `schema` from safetensors bytes onto `device`,
    /// checking everything (see the module docs).
    pub fn from_safetensors_bytes(
        schema: &ModelSchema,
        bytes: &[u8],
        device: Device,
    ) -> Result<Self, FileError> {
        let found = read_schema(bytes)?;
        if &found != schema {
            return Err(FileError::SchemaMismatch {
                expected: schema.name.clone(),
                found: found.name,
            });
        }
        let file = SafeTensors::deserialize(bytes)?;
        let f = schema.features.len();
        let mut expected: Vec<(String, Vec<usize>)> = layout(schema)
            .into_iter()
            .map(|(name, shape, _)| (name, shape))
            .collect();
        let weight_tensors = expected.len();
        for (name, shape) in [
            ("norm.feature_mean", vec![f]),
            ("norm.feature_std", vec![f]),
            ("norm.target_mean", vec![1]),
            ("norm.target_std", vec![1]),
        ] {
            expected.push((name.to_owned(), shape));
        }
        if let Some(extra) = file
            .names()
            .into_iter()
            .find(|name| !expected.iter().any(|(e, _)| e == name))
        {
            return Err(FileError::UnexpectedTensor(extra.to_owned()));
        }
        let mut values = Vec::with_capacity(expected.len());
        for (name, shape) in &expected {
            let view = file
                .tensor(name)
                .map_err(|_| FileError::MissingTensor(name.clone()))?;
            if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
                return Err(FileError::WrongTensor {
                    name: name.clone(),
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    expected: shape.clone(),
                });
            }
            values.push(from_le_bytes(view.data()));
        }
        let flat: Vec<f32> = values[..weight_tensors].concat();
        let norm = &values[weight_tensors..];
        let normaliser = Normaliser {
            feature_mean: norm[0].clone(),
            feature_std: norm[1].clone(),
            target_mean: norm[2][0],
            target_std: norm[3][0],
        };
        Ok(Model::from_flat(schema, normaliser, &flat, device)?)
    }

    /// Writes [`Model::to_safetensors_bytes`] to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FileError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_safetensors_bytes()?).map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a model of `schema` from the file at `path` onto `device`.
    pub fn load(
        schema: &ModelSchema,
        path: impl AsRef<Path>,
        device: Device,
    ) -> Result<Self, FileError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FileError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_safetensors_bytes(schema, &bytes, device)
    }
}

/// Name, shape and flat-vector range of every layer tensor, in flat order.
fn layout(schema: &ModelSchema) -> Vec<(String, Vec<usize>, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (index, pair) in schema.layer_sizes().windows(2).enumerate() {
        let (inputs, outputs) = (pair[0], pair[1]);
        let n = inputs * outputs;
        out.push((
            param_name(index, "weight"),
            vec![outputs, inputs],
            offset..offset + n,
        ));
        offset += n;
        out.push((
            param_name(index, "bias"),
            vec![outputs],
            offset..offset + outputs,
        ));
        offset += outputs;
    }
    out
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_le_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Rewrites the JSON header with its keys (and the metadata's) in sorted
/// order. safetensors writes the metadata from a `HashMap`, whose order
/// changes from process to process; nodes holding the same model must
/// produce byte-identical files. Reordering keeps the header's length, so
/// tensor offsets and padding are untouched.
fn canonicalise_header(bytes: &mut [u8]) {
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    else {
        return;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return;
    };
    let text_len = header.iter().rposition(|b| *b != b' ').map_or(0, |p| p + 1);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&header[..text_len]) else {
        return;
    };
    let sorted = sort_keys(value);
    let Ok(canonical) = serde_json::to_vec(&sorted) else {
        return;
    };
    if canonical.len() == text_len {
        bytes[8..8 + text_len].copy_from_slice(&canonical);
    }
}

fn sort_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_learn_core::Task;
    use rand::{SeedableRng, rngs::ChaCha8Rng};

    fn schema() -> ModelSchema {
        ModelSchema {
            name: "m".into(),
            task: Task::Regression,
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            hidden_layers: vec![4],
            target_scale: Default::default(),
            log_features: Vec::new(),
        }
    }

    fn model() -> Model {
        let normaliser = Normaliser {
            feature_mean: vec![1.0, 2.0],
            feature_std: vec![3.0, 4.0],
            target_mean: 5.0,
            target_std: 6.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        Model::init(&schema(), normaliser, &mut rng, Device::Cpu).unwrap()
    }

    #[test]
    fn equal_models_give_byte_identical_files() {
        // The metadata comes from a HashMap whose order varies per instance.
        let first = model().to_safetensors_bytes().unwrap();
        for _ in 0..20 {
            assert_eq!(model().to_safetensors_bytes().unwrap(), first);
        }
        assert!(Model::from_safetensors_bytes(&schema(), &first, Device::Cpu).is_ok());
    }

    /// Rewrites a file's tensors through `edit` (same metadata).
    fn rewrite(
        bytes: &[u8],
        edit: impl FnOnce(&mut BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>),
    ) -> Vec<u8> {
        let file = SafeTensors::deserialize(bytes).unwrap();
        let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
        let mut tensors: BTreeMap<_, _> = file
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
            .collect();
        edit(&mut tensors);
        let views: Vec<_> = tensors
            .iter()
            .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize(views, meta.metadata().clone()).unwrap()
    }

    #[test]
    fn bytes_round_trip() {
        let m = model();
        let bytes = m.to_safetensors_bytes().unwrap();
        assert_eq!(read_schema(&bytes).unwrap(), schema());
        let back = Model::from_safetensors_bytes(&schema(), &bytes, Device::Cpu).unwrap();
        assert_eq!(back.flat_weights(), m.flat_weights());
        assert_eq!(back.normaliser(), m.normaliser());
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let bytes = model().to_safetensors_bytes().unwrap();
        let read = |b: &[u8]| Model::from_safetensors_bytes(&schema(), b, Device::Cpu).unwrap_err();

        assert!(matches!(
            read(&bytes[..bytes.len() - 1]),
            FileError::Format(_)
        ));
        assert!(matches!(read(b"not a file"), FileError::Format(_)));

        let mut other = schema();
        other.hidden_layers = vec![5];
        assert!(matches!(
            Model::from_safetensors_bytes(&other, &bytes, Device::Cpu),
            Err(FileError::SchemaMismatch { .. })
        ));

        let missing = rewrite(&bytes, |t| {
            t.remove("layers.1.bias");
        });
        assert!(matches!(read(&missing), FileError::MissingTensor(n) if n == "layers.1.bias"));

        let extra = rewrite(&bytes, |t| {
            t.insert("layers.9.bias".into(), (Dtype::F32, vec![1], vec![0; 4]));
        });
        assert!(matches!(read(&extra), FileError::UnexpectedTensor(n) if n == "layers.9.bias"));

        let reshaped = rewrite(&bytes, |t| {
            t.get_mut("layers.0.weight").unwrap().1 = vec![2, 4];
        });
        assert!(matches!(read(&reshaped), FileError::WrongTensor { .. }));

        let nan = rewrite(&bytes, |t| {
            t.get_mut("layers.0.bias").unwrap().2[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        assert!(matches!(
            read(&nan),
            FileError::Model(ModelError::NonFiniteWeight { .. })
        ));

        let zero_std = rewrite(&bytes, |t| {
            t.get_mut("norm.target_std").unwrap().2 = 0f32.to_le_bytes().to_vec();
        });
        assert!(matches!(
            read(&zero_std),
            FileError::Model(ModelError::BadMoments(_))
        ));

        let no_meta = safetensors::serialize(
            [("x", TensorView::new(Dtype::F32, vec![1], &[0; 4]).unwrap())],
            None,
        )
        .unwrap();
        assert!(matches!(read(&no_meta), FileError::NoSchema));
    }
}
