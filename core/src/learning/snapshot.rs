//! A campaign's progress as stored at every round's close.

use super::*;

/// A campaign's progress as persisted at every round's close, so a restarted
/// node resumes where it was (and never loses a finished campaign's record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) round: u32,
    pub(super) completed: bool,
    pub(super) moments: Option<Vec<f32>>,
    pub(super) global: Vec<f32>,
    pub(super) history: Vec<RoundRecord>,
    pub(super) rejections: BTreeMap<String, u64>,
    /// The median accepted sample count of round 0 (0 before it closed).
    /// Last, so progress saved by an older version fails to decode (and the
    /// campaign starts over) instead of resuming without it.
    pub(super) reference_count: u64,
    /// The control variates (drift correction). Last for the same reason.
    pub(super) controls: Option<SavedControls>,
}

/// [`ControlVariates`] as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedControls {
    pub(super) global: Vec<f32>,
    /// (author, sample count, variate), in key order.
    pub(super) members: Vec<(AuthorKey, u64, Vec<f32>)>,
}

impl SavedControls {
    pub(super) fn of(controls: &ControlVariates) -> Self {
        Self {
            global: controls.global.clone(),
            members: controls
                .members
                .iter()
                .map(|(author, m)| (*author, m.samples, m.variate.clone()))
                .collect(),
        }
    }

    pub(super) fn into_variates(self) -> ControlVariates {
        ControlVariates {
            global: self.global,
            members: self
                .members
                .into_iter()
                .map(|(author, samples, variate)| (author, MemberVariate { variate, samples }))
                .collect(),
        }
    }
}
