//! [`Rule`]: which aggregation a campaign uses, and its string form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::AggregateError;

/// How a round's accepted updates become the next global model.
///
/// Its string form (used by [`Display`](fmt::Display), [`FromStr`] and serde)
/// is one of `fedavg`, `median`, `trimmed-mean:<trim>` (e.g.
/// `trimmed-mean:0.2`) and `multi-krum:f=<f>,m=<m>` (e.g.
/// `multi-krum:f=2,m=5`), so a campaign's rule fits in a config file or a
/// CRDT document as one short string.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Rule {
    /// Mean weighted by each update's sample count (McMahan et al.'s FedAvg).
    /// Fast and exact, but one bad update can move it arbitrarily far, and it
    /// trusts the sample counts that participants claim.
    FedAvg,
    /// Coordinate-wise median (the mean of the two middle values when the
    /// count is even). Ignores sample counts.
    Median,
    /// Coordinate-wise trimmed mean: per coordinate, drop the
    /// `floor(trim · n)` smallest and as many largest values and average the
    /// rest. Ignores sample counts.
    TrimmedMean {
        /// Fraction dropped at each side, in `[0, 0.5)`.
        trim: f32,
    },
    /// Multi-Krum (Blanchard et al., 2017): score each update by the sum of
    /// squared distances to its `n − f − 2` nearest other updates, keep the
    /// `m` best-scored and average them uniformly. Needs `n ≥ f + 3`
    /// updates; its guarantee holds while `n > 2f + 2`. Ignores sample counts.
    MultiKrum {
        /// How many Byzantine updates the rule is meant to tolerate.
        f: usize,
        /// How many updates are averaged (capped at the number received).
        m: usize,
    },
}

impl Rule {
    /// Checks the rule's parameters.
    pub fn validate(&self) -> Result<(), AggregateError> {
        match *self {
            Rule::TrimmedMean { trim } if !(0.0..0.5).contains(&trim) => {
                Err(AggregateError::InvalidRule {
                    rule: self.to_string(),
                    reason: "the trim fraction must be at least 0 and below 0.5",
                })
            }
            Rule::MultiKrum { m: 0, .. } => Err(AggregateError::InvalidRule {
                rule: self.to_string(),
                reason: "multi-krum must keep at least one update (m ≥ 1)",
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::FedAvg => f.write_str("fedavg"),
            Rule::Median => f.write_str("median"),
            Rule::TrimmedMean { trim } => write!(f, "trimmed-mean:{trim}"),
            Rule::MultiKrum { f: byz, m } => write!(f, "multi-krum:f={byz},m={m}"),
        }
    }
}

impl FromStr for Rule {
    type Err = AggregateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| AggregateError::InvalidRule {
            rule: s.to_owned(),
            reason,
        };
        let text = s.trim();
        let (name, args) = match text.split_once(':') {
            Some((name, args)) => (name, Some(args)),
            None => (text, None),
        };
        let rule = match (name, args) {
            ("fedavg", None) => Rule::FedAvg,
            ("median", None) => Rule::Median,
            ("trimmed-mean", Some(trim)) => Rule::TrimmedMean {
                trim: trim
                    .parse()
                    .map_err(|_| invalid("the trim fraction is not a number"))?,
            },
            ("multi-krum", Some(args)) => {
                let (mut byz, mut m) = (None, None);
                for arg in args.split(',') {
                    let (key, value) = arg
                        .split_once('=')
                        .ok_or_else(|| invalid("multi-krum arguments are f=<n>,m=<n>"))?;
                    let value: usize = value
                        .parse()
                        .map_err(|_| invalid("multi-krum arguments must be whole numbers"))?;
                    let slot = match key {
                        "f" => &mut byz,
                        "m" => &mut m,
                        _ => return Err(invalid("multi-krum takes only f and m")),
                    };
                    if slot.replace(value).is_some() {
                        return Err(invalid("a multi-krum argument is repeated"));
                    }
                }
                match (byz, m) {
                    (Some(f), Some(m)) => Rule::MultiKrum { f, m },
                    _ => return Err(invalid("multi-krum needs both f and m")),
                }
            }
            ("fedavg" | "median", Some(_)) => return Err(invalid("this rule takes no arguments")),
            ("trimmed-mean" | "multi-krum", None) => {
                return Err(invalid("this rule needs arguments after ':'"));
            }
            _ => {
                return Err(invalid(
                    "unknown rule (expected fedavg, median, trimmed-mean:<trim> or multi-krum:f=<f>,m=<m>)",
                ));
            }
        };
        rule.validate()?;
        Ok(rule)
    }
}

impl TryFrom<String> for Rule {
    type Error = AggregateError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Rule> for String {
    fn from(rule: Rule) -> Self {
        rule.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_round_trip() {
        for (text, rule) in [
            ("fedavg", Rule::FedAvg),
            ("median", Rule::Median),
            ("trimmed-mean:0.2", Rule::TrimmedMean { trim: 0.2 }),
            ("trimmed-mean:0", Rule::TrimmedMean { trim: 0.0 }),
            ("multi-krum:f=2,m=5", Rule::MultiKrum { f: 2, m: 5 }),
        ] {
            assert_eq!(text.parse::<Rule>().unwrap(), rule);
            assert_eq!(rule.to_string(), text);
        }
        assert_eq!(
            "multi-krum:m=5,f=2".parse::<Rule>().unwrap(),
            Rule::MultiKrum { f: 2, m: 5 }
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let rule = Rule::MultiKrum { f: 3, m: 10 };
        let json = serde_json::to_string(&rule).unwrap();
        assert_eq!(json, "\"multi-krum:f=3,m=10\"");
        assert_eq!(serde_json::from_str::<Rule>(&json).unwrap(), rule);
        let bytes = postcard::to_stdvec(&Rule::TrimmedMean { trim: 0.1 }).unwrap();
        assert_eq!(
            postcard::from_bytes::<Rule>(&bytes).unwrap(),
            Rule::TrimmedMean { trim: 0.1 }
        );
        assert!(serde_json::from_str::<Rule>("\"trimmed-mean:0.7\"").is_err());
    }

    #[test]
    fn bad_strings_are_rejected_with_a_reason() {
        for text in [
            "",
            "mean",
            "fedavg:1",
            "median:",
            "trimmed-mean",
            "trimmed-mean:x",
            "trimmed-mean:0.5",
            "trimmed-mean:-0.1",
            "trimmed-mean:NaN",
            "multi-krum",
            "multi-krum:f=2",
            "multi-krum:f=2,m=0",
            "multi-krum:f=2,m=5,f=3",
            "multi-krum:f=-1,m=5",
            "multi-krum:f=1,k=5",
            "multi-krum:f2,m5",
        ] {
            let err = text.parse::<Rule>().unwrap_err();
            assert!(
                matches!(err, AggregateError::InvalidRule { .. }),
                "{text:?} gave {err:?}"
            );
        }
    }
}
