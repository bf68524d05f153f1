//! What a model is: a name, a task, named numeric feature columns, a target
//! column and an MLP architecture.
//!
//! A schema is all two nodes need to agree on to train the same model: the
//! layer sizes follow from it ([`ModelSchema::layer_sizes`]), and so does the
//! number of parameters a weight update must carry
//! ([`ModelSchema::num_params`]). The built-in schemas ([`builtin`]) are the
//! seed's operations models; a consortium declares its own over any numeric
//! columns of its data.

use serde::{Deserialize, Serialize};

/// The seed's operations features, in the order the built-in models use.
pub const OPS_FEATURES: [&str; 7] = [
    "hour_of_day",
    "day_of_week",
    "thread_count",
    "avg_thread_duration",
    "mcp_connection_count",
    "error_rate_1h_ago",
    "memory_usage_percent",
];

/// The [`OPS_FEATURES`] the built-in models see on a log scale
/// ([`ModelSchema::log_features`]): load, work and capacity, which differ by
/// orders of magnitude between organisations.
pub const OPS_LOG_FEATURES: [&str; 3] = [
    "thread_count",
    "avg_thread_duration",
    "mcp_connection_count",
];

/// Target column of the built-in `latency` model (milliseconds).
pub const TARGET_LATENCY: &str = "latency_ms";
/// Target column of the built-in `error_rate` model (fraction, 0–1).
pub const TARGET_ERROR_RATE: &str = "error_rate";
/// Target column of the built-in `memory` model: memory use one hour ahead (%).
pub const TARGET_MEMORY: &str = "memory_usage_percent_next_hour";
/// Target column of the built-in `anomaly` classifier (0 or 1).
pub const TARGET_ANOMALY: &str = "anomaly";

/// Longest model or column name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Most feature columns a schema may have.
pub const MAX_FEATURES: usize = 256;
/// Most hidden layers a schema may have.
pub const MAX_HIDDEN_LAYERS: usize = 8;
/// Widest hidden layer a schema may have.
pub const MAX_LAYER_WIDTH: u32 = 1024;

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// A real-valued target; scored by R² and MAE.
    Regression,
    /// A 0/1 target; the model outputs a logit, scored by accuracy,
    /// precision, recall and F1 at probability 0.5.
    BinaryClassification,
}

/// The scale on which a regression model learns its target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetScale {
    /// The target as it is.
    #[default]
    Linear,
    /// Its natural logarithm: errors count relative to the value, so an
    /// organisation whose latency is 30 ms matters as much as one at
    /// 3,000 ms. The target must be positive; predictions are positive.
    Log,
}

impl TargetScale {
    /// Whether this is [`TargetScale::Linear`] (left out of the JSON form).
    pub fn is_linear(&self) -> bool {
        *self == TargetScale::Linear
    }
}

/// A model declaration. Its JSON form is the body of `POST /v1/models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSchema {
    /// Model name: 1–64 characters from `[A-Za-z0-9_.-]`.
    pub name: String,
    /// Regression or binary classification.
    pub task: Task,
    /// Input columns, in the order the model sees them.
    pub features: Vec<String>,
    /// The column to predict.
    pub target: String,
    /// Widths of the hidden layers (ReLU between layers); may be empty for a
    /// linear model.
    #[serde(default = "default_hidden_layers")]
    pub hidden_layers: Vec<u32>,
    /// The scale the target is learnt on (regression only; `linear` when
    /// left out).
    #[serde(default, skip_serializing_if = "TargetScale::is_linear")]
    pub target_scale: TargetScale,
    /// Features the model sees on a log scale, `sign(x)·ln(1 + |x|)`
    /// ([`log_scale`]) before standardisation: columns whose values differ
    /// by orders of magnitude between rows or organisations (counts, sizes,
    /// durations). Each must be one of `features`; none when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_features: Vec<String>,
}

/// The log scale of [`ModelSchema::log_features`]: `sign(x)·ln(1 + |x|)`.
/// Defined for every real value (0 stays 0, negative values mirror positive
/// ones), monotone, close to `ln x` for large `x` and to `x` near zero.
pub fn log_scale(x: f32) -> f32 {
    if x == 0.0 {
        0.0
    } else {
        x.signum() * x.abs().ln_1p()
    }
}

fn default_hidden_layers() -> Vec<u32> {
    vec![32, 16]
}

/// Why a schema was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The model name is empty, too long or has a character outside `[A-Za-z0-9_.-]`.
    #[error("invalid model name {0:?}: use 1-{MAX_NAME_LEN} characters from A-Z a-z 0-9 _ . -")]
    BadName(String),
    /// A column name is empty, too long or has a comma, quote or control character.
    #[error(
        "invalid column name {0:?}: 1-{MAX_NAME_LEN} characters, no commas, quotes or control characters"
    )]
    BadColumn(String),
    /// No feature columns.
    #[error("a model needs at least one feature column")]
    NoFeatures,
    /// Too many feature columns.
    #[error("{0} feature columns; at most {MAX_FEATURES}")]
    TooManyFeatures(usize),
    /// A column is named twice among the features.
    #[error("feature column {0:?} is listed twice")]
    DuplicateFeature(String),
    /// The target is also a feature.
    #[error("target column {0:?} is also a feature")]
    TargetIsFeature(String),
    /// A log target scale on a classifier.
    #[error("target_scale \"log\" needs task \"regression\"")]
    LogScaleNeedsRegression,
    /// A log-scale feature that is not one of the features.
    #[error("log_features names {0:?}, which is not one of the features")]
    UnknownLogFeature(String),
    /// A column is named twice among the log-scale features.
    #[error("log feature {0:?} is listed twice")]
    DuplicateLogFeature(String),
    /// Too many hidden layers, or one of width 0 or above the maximum.
    #[error("hidden layers {0:?}: at most {MAX_HIDDEN_LAYERS} layers of width 1-{MAX_LAYER_WIDTH}")]
    BadLayers(Vec<u32>),
}

impl ModelSchema {
    /// Checks names, columns and layers.
    pub fn validate(&self) -> Result<(), SchemaError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_NAME_LEN
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(SchemaError::BadName(self.name.clone()));
        }
        if self.features.is_empty() {
            return Err(SchemaError::NoFeatures);
        }
        if self.features.len() > MAX_FEATURES {
            return Err(SchemaError::TooManyFeatures(self.features.len()));
        }
        for column in self.features.iter().chain(std::iter::once(&self.target)) {
            let ok = !column.is_empty()
                && column.len() <= MAX_NAME_LEN
                && !column
                    .chars()
                    .any(|c| c.is_control() || matches!(c, ',' | '"'));
            if !ok {
                return Err(SchemaError::BadColumn(column.clone()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.features {
            if !seen.insert(f.as_str()) {
                return Err(SchemaError::DuplicateFeature(f.clone()));
            }
        }
        if seen.contains(self.target.as_str()) {
            return Err(SchemaError::TargetIsFeature(self.target.clone()));
        }
        if self.hidden_layers.len() > MAX_HIDDEN_LAYERS
            || self
                .hidden_layers
                .iter()
                .any(|&w| w == 0 || w > MAX_LAYER_WIDTH)
        {
            return Err(SchemaError::BadLayers(self.hidden_layers.clone()));
        }
        if self.target_scale == TargetScale::Log && self.task != Task::Regression {
            return Err(SchemaError::LogScaleNeedsRegression);
        }
        let mut logged = std::collections::BTreeSet::new();
        for f in &self.log_features {
            if !seen.contains(f.as_str()) {
                return Err(SchemaError::UnknownLogFeature(f.clone()));
            }
            if !logged.insert(f.as_str()) {
                return Err(SchemaError::DuplicateLogFeature(f.clone()));
            }
        }
        Ok(())
    }

    /// Per feature, in order, whether the model sees it on a log scale.
    pub fn log_mask(&self) -> Vec<bool> {
        self.features
            .iter()
            .map(|f| self.log_features.contains(f))
            .collect()
    }

    /// Row-major feature values as the model sees them: [`log_scale`]
    /// applied to the columns of [`ModelSchema::log_features`]. Borrows
    /// `x` when there are none.
    pub fn model_inputs<'a>(&self, x: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.log_features.is_empty() {
            return std::borrow::Cow::Borrowed(x);
        }
        let mask = self.log_mask();
        let f = mask.len().max(1);
        std::borrow::Cow::Owned(
            x.iter()
                .enumerate()
                .map(|(i, &v)| if mask[i % f] { log_scale(v) } else { v })
                .collect(),
        )
    }

    /// Widths of every layer, input to output: `[features, hidden…, 1]`.
    pub fn layer_sizes(&self) -> Vec<usize> {
        let mut sizes = Vec::with_capacity(self.hidden_layers.len() + 2);
        sizes.push(self.features.len());
        sizes.extend(self.hidden_layers.iter().map(|&w| w as usize));
        sizes.push(1);
        sizes
    }

    /// Number of trainable parameters (weights and biases of every layer).
    pub fn num_params(&self) -> usize {
        self.layer_sizes()
            .windows(2)
            .map(|w| w[0] * w[1] + w[1])
            .sum()
    }
}

/// The built-in operations models: `latency`, `error_rate` and `memory`
/// (regression) and the `anomaly` classifier, all over [`OPS_FEATURES`].
/// Latency is learnt on a log scale: it is multiplicative in load and work,
/// and organisations' latencies differ by orders of magnitude. Every model
/// sees the load and work features ([`OPS_LOG_FEATURES`]) on a log scale:
/// a small organisation runs tens of threads and a large one hundreds, and
/// pool utilisation, a ratio of two of them, becomes a difference.
pub fn builtin() -> Vec<ModelSchema> {
    let ops = |name: &str, task, target: &str, target_scale| ModelSchema {
        name: name.to_owned(),
        task,
        features: OPS_FEATURES.iter().map(|s| (*s).to_owned()).collect(),
        target: target.to_owned(),
        hidden_layers: default_hidden_layers(),
        target_scale,
        log_features: OPS_LOG_FEATURES.iter().map(|s| (*s).to_owned()).collect(),
    };
    use TargetScale::{Linear, Log};
    vec![
        ops("latency", Task::Regression, TARGET_LATENCY, Log),
        ops("error_rate", Task::Regression, TARGET_ERROR_RATE, Linear),
        ops("memory", Task::Regression, TARGET_MEMORY, Linear),
        ops(
            "anomaly",
            Task::BinaryClassification,
            TARGET_ANOMALY,
            Linear,
        ),
    ]
}

/// The built-in schema called `name`, if there is one.
pub fn builtin_named(name: &str) -> Option<ModelSchema> {
    builtin().into_iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_sized() {
        for s in builtin() {
            s.validate().unwrap();
            // 7·32+32 + 32·16+16 + 16·1+1
            assert_eq!(s.num_params(), 256 + 528 + 17, "{}", s.name);
        }
        assert!(builtin_named("anomaly").is_some());
        assert!(builtin_named("nope").is_none());
    }

    #[test]
    fn log_features_are_transformed_in_place_of_their_columns() {
        let s: ModelSchema = serde_json::from_str(
            r#"{"name":"m","task":"regression","features":["a","b"],"target":"y","log_features":["b"]}"#,
        )
        .unwrap();
        s.validate().unwrap();
        assert_eq!(s.log_mask(), vec![false, true]);
        let x = [5.0, 0.0, 5.0, (1.0f32).exp_m1(), -3.0, -(1.0f32).exp_m1()];
        let seen = s.model_inputs(&x);
        assert_eq!(seen[0], 5.0, "a is left alone");
        assert_eq!(seen[1], 0.0, "0 stays 0");
        assert!((seen[3] - 1.0).abs() < 1e-6, "ln(1 + (e - 1)) = 1");
        assert_eq!(seen[4], -3.0);
        assert!((seen[5] + 1.0).abs() < 1e-6, "negative values mirror");
        assert!(log_scale(f32::NAN).is_nan());
        let plain = ModelSchema {
            log_features: vec![],
            ..s
        };
        assert!(matches!(
            plain.model_inputs(&x),
            std::borrow::Cow::Borrowed(_)
        ));
        for b in builtin() {
            assert_eq!(b.log_mask().iter().filter(|&&l| l).count(), 3, "{}", b.name);
        }
    }

    #[test]
    fn json_defaults_and_rejections() {
        let s: ModelSchema = serde_json::from_str(
            r#"{"name":"m","task":"regression","features":["a","b"],"target":"y"}"#,
        )
        .unwrap();
        assert_eq!(s.hidden_layers, vec![32, 16]);
        assert_eq!(s.target_scale, TargetScale::Linear);
        assert_eq!(s.layer_sizes(), vec![2, 32, 16, 1]);
        assert!(
            !serde_json::to_string(&s).unwrap().contains("target_scale"),
            "a linear scale is left out, so older declarations keep their form"
        );
        let log: ModelSchema = serde_json::from_str(
            r#"{"name":"m","task":"regression","features":["a"],"target":"y","target_scale":"log"}"#,
        )
        .unwrap();
        assert_eq!(log.target_scale, TargetScale::Log);
        let mut bad = log.clone();
        bad.task = Task::BinaryClassification;
        assert_eq!(bad.validate(), Err(SchemaError::LogScaleNeedsRegression));
        let mut bad = s.clone();
        bad.target = "a".into();
        assert_eq!(
            bad.validate(),
            Err(SchemaError::TargetIsFeature("a".into()))
        );
        let mut bad = s.clone();
        bad.name = "no spaces".into();
        assert!(matches!(bad.validate(), Err(SchemaError::BadName(_))));
        let mut bad = s.clone();
        bad.hidden_layers = vec![0];
        assert!(matches!(bad.validate(), Err(SchemaError::BadLayers(_))));
        let mut bad = s.clone();
        bad.log_features = vec!["z".into()];
        assert_eq!(
            bad.validate(),
            Err(SchemaError::UnknownLogFeature("z".into()))
        );
        bad.log_features = vec!["a".into(), "a".into()];
        assert_eq!(
            bad.validate(),
            Err(SchemaError::DuplicateLogFeature("a".into()))
        );
        let mut bad = s;
        bad.features.push("b".into());
        assert!(matches!(
            bad.validate(),
            Err(SchemaError::DuplicateFeature(_))
        ));
        assert!(
            serde_json::from_str::<ModelSchema>(
                r#"{"name":"m","task":"regression","features":["a"],"target":"y","extra":1}"#
            )
            .is_err()
        );
    }
}
